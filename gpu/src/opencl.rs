//! The OpenCL back end: `opencl3` over the system's OpenCL library, loaded at run time.

use std::ops::ControlFlow;
use std::ptr;
use std::sync::Mutex;

use opencl3::command_queue::CommandQueue;
use opencl3::context::Context;
use opencl3::device::{CL_DEVICE_TYPE_ALL, CL_DEVICE_TYPE_GPU, Device};
use opencl3::kernel::{ExecuteKernel, Kernel};
use opencl3::memory::{Buffer, CL_MEM_READ_ONLY, CL_MEM_READ_WRITE};
use opencl3::platform::get_platforms;
use opencl3::types::{CL_BLOCKING, cl_uint, cl_ulong};

use crate::{
    Backend, DEGREE, G1Xyzz, GpuError, GpuResult, LabelJob, MsmPlan, ParentSource, PoseidonJob,
    label_chunks, limbs, opencl_source,
};

fn api(call: &'static str) -> impl FnOnce(opencl3::error_codes::ClError) -> GpuError {
    move |e| GpuError::Api {
        backend: Backend::OpenCl,
        call,
        detail: e.to_string(),
    }
}

/// A context, a queue and the built label kernel on one OpenCL device.
pub(crate) struct OpenCl {
    // The kernel's arguments are set per launch: one launch at a time.
    state: Mutex<State>,
    context: Context,
    /// About how many work items of the MSM kernel run at once.
    parallelism: u32,
    /// Whether the device is a GPU (a CPU device runs one work-group per thread, so the MSM's
    /// heavy work items go one per group there).
    is_gpu: bool,
}

struct State {
    queue: CommandQueue,
    label: Kernel,
    poseidon: Kernel,
    msm_buckets: Kernel,
    msm_windows: Kernel,
    msm_combine: Kernel,
}

impl OpenCl {
    /// The first device (GPUs first; only GPUs with `gpu_only`), kernels built.
    pub(crate) fn open(gpu_only: bool) -> GpuResult<(OpenCl, String)> {
        let no = |why: String| GpuError::NoDevice {
            backend: Backend::OpenCl,
            why,
        };
        // The ICD loader and some drivers do not survive discovery from two threads at once
        // (PoCL then lists no device): one opening at a time in a process.
        static OPENING: Mutex<()> = Mutex::new(());
        let _one = OPENING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let platforms = get_platforms().map_err(|e| no(format!("no OpenCL platform ({e})")))?;
        let mut devices: Vec<(bool, Device)> = Vec::new();
        let mut refused = Vec::new();
        for p in &platforms {
            let ids = p.get_devices(CL_DEVICE_TYPE_ALL).unwrap_or_else(|e| {
                refused.push(format!("{}: {e}", p.name().unwrap_or_default()));
                Vec::new()
            });
            for id in ids {
                let d = Device::new(id);
                let gpu = d.dev_type().is_ok_and(|t| t & CL_DEVICE_TYPE_GPU != 0);
                if gpu || !gpu_only {
                    devices.push((gpu, d));
                }
            }
        }
        devices.sort_by_key(|(gpu, _)| !*gpu);
        let Some((is_gpu, device)) = devices.into_iter().next() else {
            return Err(no(if gpu_only {
                "no OpenCL GPU on any platform".into()
            } else {
                format!(
                    "no OpenCL device on any platform (install a GPU driver, or pocl-opencl-icd){}",
                    if refused.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; platforms that refused to list devices: {}",
                            refused.join(", ")
                        )
                    }
                )
            }));
        };
        let name = device.name().unwrap_or_else(|_| "an OpenCL device".into());
        let context = Context::from_device(&device).map_err(api("clCreateContext"))?;
        let queue = CommandQueue::create_default_with_properties(&context, 0, 0)
            .map_err(api("clCreateCommandQueueWithProperties"))?;
        let program =
            opencl3::program::Program::create_and_build_from_source(&context, &opencl_source(), "")
                .map_err(|log| GpuError::Build {
                    backend: Backend::OpenCl,
                    device: name.clone(),
                    log,
                })?;
        let label = Kernel::create(&program, "lode_label").map_err(api("clCreateKernel"))?;
        let poseidon = Kernel::create(&program, "lode_poseidon").map_err(api("clCreateKernel"))?;
        let kernel = |name| Kernel::create(&program, name).map_err(api("clCreateKernel"));
        let (msm_buckets, msm_windows, msm_combine) = (
            kernel("lode_msm_buckets")?,
            kernel("lode_msm_windows")?,
            kernel("lode_msm_combine")?,
        );
        // A GPU's compute unit runs hundreds of work items at once; a CPU's one thread each, a
        // few in turn balancing the load.
        let units = device.max_compute_units().unwrap_or(1).max(1);
        let parallelism = units.saturating_mul(if is_gpu { 256 } else { 4 });
        tracing::info!(device = %name, "OpenCL device ready");
        Ok((
            OpenCl {
                state: Mutex::new(State {
                    queue,
                    label,
                    poseidon,
                    msm_buckets,
                    msm_windows,
                    msm_combine,
                }),
                context,
                parallelism,
                is_gpu,
            },
            name,
        ))
    }

    /// A device buffer of `len` words (at least one: OpenCL has no empty buffers).
    fn buffer(&self, len: usize, flags: u64) -> GpuResult<Buffer<cl_uint>> {
        // SAFETY: no host pointer is given; the buffer is owned by the returned value.
        unsafe { Buffer::<cl_uint>::create(&self.context, flags, len.max(1), ptr::null_mut()) }
            .map_err(api("clCreateBuffer"))
    }

    pub(crate) fn label_layer(
        &self,
        job: &LabelJob<'_>,
        parents: &mut ParentSource<'_>,
        prev: Option<&[u32]>,
        out: &mut [u32],
        progress: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> GpuResult<()> {
        let state = self
            .state
            .lock()
            .map_err(|_| GpuError::Invalid("an earlier launch panicked"))?;
        let sectors = job.replica_ids.len();
        let key = write(&state.queue, self.buffer(8, CL_MEM_READ_ONLY)?, &job.key)?;
        let ids: Vec<u32> = job.replica_ids.iter().flatten().copied().collect();
        let ids = write(
            &state.queue,
            self.buffer(ids.len(), CL_MEM_READ_ONLY)?,
            &ids,
        )?;
        let cur = self.buffer(out.len(), CL_MEM_READ_WRITE)?;
        let prev_buf = match prev {
            Some(p) => write(&state.queue, self.buffer(p.len(), CL_MEM_READ_ONLY)?, p)?,
            None => self.buffer(1, CL_MEM_READ_ONLY)?,
        };
        let chunk = (job.nodes.min(crate::LABEL_CHUNK) as usize).saturating_mul(DEGREE);
        let mut parents_buf = self.buffer(chunk, CL_MEM_READ_ONLY)?;
        let mut host = vec![0u32; chunk];
        let (sectors_arg, mask, has_prev) = (
            sectors as cl_uint,
            job.nodes.wrapping_sub(1),
            cl_uint::from(prev.is_some()),
        );
        for (start, count) in label_chunks(job.nodes) {
            let host = host
                .get_mut(..(count as usize).saturating_mul(DEGREE))
                .ok_or(GpuError::Invalid("a launch larger than its chunk"))?;
            parents(start, host);
            // SAFETY: a blocking write of `host` into a buffer at least as long.
            unsafe {
                state
                    .queue
                    .enqueue_write_buffer(&mut parents_buf, CL_BLOCKING, 0, host, &[])
            }
            .map_err(api("clEnqueueWriteBuffer"))?;
            // SAFETY: the arguments match `lode_label`'s parameters in order and type; every
            // buffer holds what the kernel indexes (checked by `LabelJob::check` and the chunk
            // sizes), and the launch is waited for before the buffers are dropped.
            unsafe {
                ExecuteKernel::new(&state.label)
                    .set_arg(&key)
                    .set_arg(&ids)
                    .set_arg(&job.layer)
                    .set_arg(&start)
                    .set_arg(&count)
                    .set_arg(&parents_buf)
                    .set_arg(&cur)
                    .set_arg(&prev_buf)
                    .set_arg(&has_prev)
                    .set_arg(&sectors_arg)
                    .set_arg(&mask)
                    .set_global_work_size(sectors)
                    .enqueue_nd_range(&state.queue)
            }
            .map_err(api("clEnqueueNDRangeKernel"))?;
            state.queue.finish().map_err(api("clFinish"))?;
            if progress(u64::from(start) + u64::from(count)).is_break() {
                return Err(GpuError::Cancelled);
            }
        }
        // SAFETY: a blocking read of the whole layer into `out`, of the buffer's length.
        unsafe {
            state
                .queue
                .enqueue_read_buffer(&cur, CL_BLOCKING, 0, out, &[])
        }
        .map_err(api("clEnqueueReadBuffer"))?;
        Ok(())
    }
}

impl OpenCl {
    /// A device buffer holding `data` (64-bit words).
    fn buffer_of_u64(&self, queue: &CommandQueue, data: &[u64]) -> GpuResult<Buffer<cl_ulong>> {
        // SAFETY: no host pointer is given; the buffer is owned by the returned value.
        let mut buf = unsafe {
            Buffer::<cl_ulong>::create(
                &self.context,
                CL_MEM_READ_ONLY,
                data.len().max(1),
                ptr::null_mut(),
            )
        }
        .map_err(api("clCreateBuffer"))?;
        // SAFETY: a blocking write of `data` into a buffer created with at least its length.
        unsafe { queue.enqueue_write_buffer(&mut buf, CL_BLOCKING, 0, data, &[]) }
            .map_err(api("clEnqueueWriteBuffer"))?;
        Ok(buf)
    }

    pub(crate) fn poseidon(
        &self,
        job: &PoseidonJob<'_>,
        hashes: u32,
        inputs: &[u32],
        out: &mut [u32],
    ) -> GpuResult<()> {
        let state = self
            .state
            .lock()
            .map_err(|_| GpuError::Invalid("an earlier launch panicked"))?;
        let q = &state.queue;
        let input = write(q, self.buffer(inputs.len(), CL_MEM_READ_ONLY)?, inputs)?;
        let constants = self.buffer_of_u64(q, &limbs(job.constants))?;
        let result = self.buffer(out.len(), CL_MEM_READ_WRITE)?;
        // SAFETY: the arguments match `lode_poseidon`'s parameters in order and type; `check`
        // sized the inputs, outputs and constants for `hashes` hashes of this arity, and the
        // launch is waited for before the buffers are dropped.
        unsafe {
            ExecuteKernel::new(&state.poseidon)
                .set_arg(&input)
                .set_arg(&job.arity)
                .set_arg(&hashes)
                .set_arg(&constants)
                .set_arg(&job.full_rounds)
                .set_arg(&job.partial_rounds)
                .set_arg(&result)
                .set_global_work_size(hashes as usize)
                .enqueue_nd_range(q)
        }
        .map_err(api("clEnqueueNDRangeKernel"))?;
        // SAFETY: a blocking read of the outputs into `out`, of the buffer's length.
        unsafe { q.enqueue_read_buffer(&result, CL_BLOCKING, 0, out, &[]) }
            .map_err(api("clEnqueueReadBuffer"))?;
        Ok(())
    }
}

impl OpenCl {
    /// About how many work items of the MSM kernel run at once.
    pub(crate) fn parallelism(&self) -> u32 {
        self.parallelism
    }

    /// A device buffer of `len` 64-bit words for the kernels to write.
    fn scratch_u64(&self, len: usize) -> GpuResult<Buffer<cl_ulong>> {
        // SAFETY: no host pointer is given; the buffer is owned by the returned value.
        unsafe {
            Buffer::<cl_ulong>::create(
                &self.context,
                CL_MEM_READ_WRITE,
                len.max(1),
                ptr::null_mut(),
            )
        }
        .map_err(api("clCreateBuffer"))
    }

    /// The three launches of the MSM (see `kernels/msm.c`); `bases` holds 12 words per point and
    /// `scalars` 4, `n` of each.
    pub(crate) fn msm_g1(
        &self,
        plan: MsmPlan,
        n: u32,
        bases: &[u64],
        scalars: &[u64],
    ) -> GpuResult<G1Xyzz> {
        let state = self
            .state
            .lock()
            .map_err(|_| GpuError::Invalid("an earlier launch panicked"))?;
        let q = &state.queue;
        let b = self.buffer_of_u64(q, bases)?;
        let s = self.buffer_of_u64(q, scalars)?;
        let buckets = self.scratch_u64(plan.bucket_words())?;
        let partial = self.scratch_u64(plan.items().saturating_mul(24))?;
        let sums = self.scratch_u64((plan.windows as usize).saturating_mul(24))?;
        let result = self.scratch_u64(24)?;
        // SAFETY (the three launches): the arguments match the kernels' parameters in order and
        // type; the buffers are sized from the same plan the kernels index by (`items` buckets
        // of 2^c - 1 points, `items` partial sums, `windows` window sums, one result), bases and
        // scalars hold `n` points, and every launch is waited for (the blocking read) before
        // the buffers are dropped.
        unsafe {
            let mut launch = ExecuteKernel::new(&state.msm_buckets);
            launch
                .set_arg(&b)
                .set_arg(&s)
                .set_arg(&n)
                .set_arg(&plan.c)
                .set_arg(&plan.windows)
                .set_arg(&plan.groups)
                .set_arg(&buckets)
                .set_arg(&partial)
                .set_global_work_size(plan.items());
            if !self.is_gpu {
                launch.set_local_work_size(1);
            }
            launch.enqueue_nd_range(q)
        }
        .map_err(api("clEnqueueNDRangeKernel"))?;
        // SAFETY: as above.
        unsafe {
            ExecuteKernel::new(&state.msm_windows)
                .set_arg(&partial)
                .set_arg(&plan.windows)
                .set_arg(&plan.groups)
                .set_arg(&sums)
                .set_global_work_size(plan.windows as usize)
                .enqueue_nd_range(q)
        }
        .map_err(api("clEnqueueNDRangeKernel"))?;
        // SAFETY: as above.
        unsafe {
            ExecuteKernel::new(&state.msm_combine)
                .set_arg(&sums)
                .set_arg(&plan.windows)
                .set_arg(&plan.c)
                .set_arg(&result)
                .set_global_work_size(1)
                .enqueue_nd_range(q)
        }
        .map_err(api("clEnqueueNDRangeKernel"))?;
        let mut out = [0u64; 24];
        // SAFETY: a blocking read of the 24-word result into `out`.
        unsafe { q.enqueue_read_buffer(&result, CL_BLOCKING, 0, &mut out, &[]) }
            .map_err(api("clEnqueueReadBuffer"))?;
        Ok(out)
    }
}

/// Writes `data` into `buf` (blocking) and returns it.
fn write(
    queue: &CommandQueue,
    mut buf: Buffer<cl_uint>,
    data: &[u32],
) -> GpuResult<Buffer<cl_uint>> {
    // SAFETY: a blocking write of `data` into a buffer created with at least its length.
    unsafe { queue.enqueue_write_buffer(&mut buf, CL_BLOCKING, 0, data, &[]) }
        .map_err(api("clEnqueueWriteBuffer"))?;
    Ok(buf)
}
