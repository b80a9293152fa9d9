//! The CUDA back end: `cudarc` over the driver and NVRTC, both loaded at run time; the kernels are
//! compiled for the device when it is opened.

use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg};

use crate::{
    Backend, DEGREE, G1Xyzz, GpuError, GpuResult, LabelJob, MsmPlan, ParentSource, PoseidonJob,
    cuda_source, label_chunks, limbs,
};

fn api<E: std::fmt::Debug>(call: &'static str) -> impl FnOnce(E) -> GpuError {
    move |e| GpuError::Api {
        backend: Backend::Cuda,
        call,
        detail: format!("{e:?}"),
    }
}

/// A context, its stream and the compiled label kernel on CUDA device 0.
pub(crate) struct Cuda {
    // One launch sequence at a time on the stream.
    state: Mutex<State>,
}

struct State {
    stream: Arc<CudaStream>,
    label: CudaFunction,
    poseidon: CudaFunction,
    msm_buckets: CudaFunction,
    msm_windows: CudaFunction,
    msm_combine: CudaFunction,
}

/// About how many MSM work items a data-centre GPU runs at once (an H100 or H200 holds about
/// 270,000 threads; the MSM's use many registers, so fewer are resident).
pub(crate) const MSM_PARALLEL: u32 = 1 << 15;

/// Threads per block of the MSM kernels.
const MSM_BLOCK: u32 = 64;

/// Threads per block of the label kernel (one thread per sector; a batch is at most 64).
const LABEL_BLOCK: u32 = 64;

impl Cuda {
    /// Device 0 with the kernels compiled by NVRTC.
    pub(crate) fn open() -> GpuResult<(Cuda, String)> {
        let no = |why: String| GpuError::NoDevice {
            backend: Backend::Cuda,
            why,
        };
        // SAFETY: these only try to load the libraries (dlopen) and drop them again.
        let (driver, nvrtc) = unsafe {
            (
                cudarc::driver::sys::is_culib_present(),
                cudarc::nvrtc::sys::is_culib_present(),
            )
        };
        if !driver {
            return Err(no("no CUDA driver library (libcuda)".into()));
        }
        if !nvrtc {
            return Err(no(
                "no NVRTC library (libnvrtc) to compile the kernels".into()
            ));
        }
        // cudarc panics when a symbol it expects is missing from an older driver: a missing
        // device, not a crash.
        catch_unwind(AssertUnwindSafe(Self::open_device))
            .unwrap_or_else(|_| Err(no("the CUDA driver lacks a function lode needs".into())))
    }

    fn open_device() -> GpuResult<(Cuda, String)> {
        let count = CudaContext::device_count().map_err(|e| GpuError::NoDevice {
            backend: Backend::Cuda,
            why: format!("{e:?}"),
        })?;
        if count < 1 {
            return Err(GpuError::NoDevice {
                backend: Backend::Cuda,
                why: "the driver lists no device".into(),
            });
        }
        let ctx = CudaContext::new(0).map_err(api("cuCtxCreate"))?;
        let name = ctx.name().unwrap_or_else(|_| "a CUDA device".into());
        let ptx = cudarc::nvrtc::compile_ptx(cuda_source()).map_err(|e| GpuError::Build {
            backend: Backend::Cuda,
            device: name.clone(),
            log: format!("{e:?}"),
        })?;
        let module = ctx.load_module(ptx).map_err(api("cuModuleLoadData"))?;
        let label = module
            .load_function("lode_label")
            .map_err(api("cuModuleGetFunction"))?;
        let poseidon = module
            .load_function("lode_poseidon")
            .map_err(api("cuModuleGetFunction"))?;
        let function = |name| {
            module
                .load_function(name)
                .map_err(api("cuModuleGetFunction"))
        };
        let (msm_buckets, msm_windows, msm_combine) = (
            function("lode_msm_buckets")?,
            function("lode_msm_windows")?,
            function("lode_msm_combine")?,
        );
        tracing::info!(device = %name, "CUDA device ready");
        Ok((
            Cuda {
                state: Mutex::new(State {
                    stream: ctx.default_stream(),
                    label,
                    poseidon,
                    msm_buckets,
                    msm_windows,
                    msm_combine,
                }),
            },
            name,
        ))
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
        let stream = &state.stream;
        let sectors = job.replica_ids.len();
        let key = stream
            .clone_htod(&job.key[..])
            .map_err(api("cuMemcpyHtoD"))?;
        let ids: Vec<u32> = job.replica_ids.iter().flatten().copied().collect();
        let ids = stream.clone_htod(&ids).map_err(api("cuMemcpyHtoD"))?;
        let mut cur = stream
            .alloc_zeros::<u32>(out.len())
            .map_err(api("cuMemAlloc"))?;
        let prev_buf = match prev {
            Some(p) => stream.clone_htod(p),
            None => stream.alloc_zeros::<u32>(1),
        }
        .map_err(api("cuMemcpyHtoD"))?;
        let chunk = (job.nodes.min(crate::LABEL_CHUNK) as usize).saturating_mul(DEGREE);
        let mut parents_buf = stream
            .alloc_zeros::<u32>(chunk)
            .map_err(api("cuMemAlloc"))?;
        let mut host = vec![0u32; chunk];
        let (sectors_arg, mask, has_prev) = (
            sectors as u32,
            job.nodes.wrapping_sub(1),
            u32::from(prev.is_some()),
        );
        let cfg = LaunchConfig {
            grid_dim: ((sectors as u32).div_ceil(LABEL_BLOCK), 1, 1),
            block_dim: (LABEL_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        for (start, count) in label_chunks(job.nodes) {
            let host = host
                .get_mut(..(count as usize).saturating_mul(DEGREE))
                .ok_or(GpuError::Invalid("a launch larger than its chunk"))?;
            parents(start, host);
            stream
                .memcpy_htod(&*host, &mut parents_buf)
                .map_err(api("cuMemcpyHtoD"))?;
            let mut launch = stream.launch_builder(&state.label);
            launch
                .arg(&key)
                .arg(&ids)
                .arg(&job.layer)
                .arg(&start)
                .arg(&count)
                .arg(&parents_buf)
                .arg(&mut cur)
                .arg(&prev_buf)
                .arg(&has_prev)
                .arg(&sectors_arg)
                .arg(&mask);
            // SAFETY: the arguments match `lode_label`'s parameters in order and type, and every
            // buffer holds what the kernel indexes (checked by `LabelJob::check` and the chunk
            // sizes); the stream orders the launch after the copies above.
            unsafe { launch.launch(cfg) }.map_err(api("cuLaunchKernel"))?;
            stream.synchronize().map_err(api("cuStreamSynchronize"))?;
            if progress(u64::from(start) + u64::from(count)).is_break() {
                return Err(GpuError::Cancelled);
            }
        }
        stream.memcpy_dtoh(&cur, out).map_err(api("cuMemcpyDtoH"))?;
        Ok(())
    }
}

/// Threads per block of the Poseidon kernel.
const POSEIDON_BLOCK: u32 = 128;

impl Cuda {
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
        let stream = &state.stream;
        let input = stream.clone_htod(inputs).map_err(api("cuMemcpyHtoD"))?;
        let constants = stream
            .clone_htod(&limbs(job.constants))
            .map_err(api("cuMemcpyHtoD"))?;
        let mut result = stream
            .alloc_zeros::<u32>(out.len())
            .map_err(api("cuMemAlloc"))?;
        let cfg = LaunchConfig {
            grid_dim: (hashes.div_ceil(POSEIDON_BLOCK), 1, 1),
            block_dim: (POSEIDON_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = stream.launch_builder(&state.poseidon);
        launch
            .arg(&input)
            .arg(&job.arity)
            .arg(&hashes)
            .arg(&constants)
            .arg(&job.full_rounds)
            .arg(&job.partial_rounds)
            .arg(&mut result);
        // SAFETY: the arguments match `lode_poseidon`'s parameters in order and type; `check`
        // sized the inputs, outputs and constants for `hashes` hashes of this arity.
        unsafe { launch.launch(cfg) }.map_err(api("cuLaunchKernel"))?;
        stream
            .memcpy_dtoh(&result, out)
            .map_err(api("cuMemcpyDtoH"))?;
        Ok(())
    }
}

impl Cuda {
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
        let stream = &state.stream;
        let b = stream.clone_htod(bases).map_err(api("cuMemcpyHtoD"))?;
        let s = stream.clone_htod(scalars).map_err(api("cuMemcpyHtoD"))?;
        let alloc = |words: usize| {
            stream
                .alloc_zeros::<u64>(words.max(1))
                .map_err(api("cuMemAlloc"))
        };
        let mut buckets = alloc(plan.bucket_words())?;
        let mut partial = alloc(plan.items().saturating_mul(24))?;
        let mut sums = alloc((plan.windows as usize).saturating_mul(24))?;
        let mut result = alloc(24)?;
        let grid = |items: usize| LaunchConfig {
            grid_dim: (
                u32::try_from(items.div_ceil(MSM_BLOCK as usize)).unwrap_or(u32::MAX),
                1,
                1,
            ),
            block_dim: (MSM_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = stream.launch_builder(&state.msm_buckets);
        launch
            .arg(&b)
            .arg(&s)
            .arg(&n)
            .arg(&plan.c)
            .arg(&plan.windows)
            .arg(&plan.groups)
            .arg(&mut buckets)
            .arg(&mut partial);
        // SAFETY (the three launches): the arguments match the kernels' parameters in order and
        // type; the buffers are sized from the same plan the kernels index by, bases and
        // scalars hold `n` points, and the stream runs the launches in order before the copy
        // back.
        unsafe { launch.launch(grid(plan.items())) }.map_err(api("cuLaunchKernel"))?;
        let mut launch = stream.launch_builder(&state.msm_windows);
        launch
            .arg(&partial)
            .arg(&plan.windows)
            .arg(&plan.groups)
            .arg(&mut sums);
        // SAFETY: as above.
        unsafe { launch.launch(grid(plan.windows as usize)) }.map_err(api("cuLaunchKernel"))?;
        let mut launch = stream.launch_builder(&state.msm_combine);
        launch
            .arg(&sums)
            .arg(&plan.windows)
            .arg(&plan.c)
            .arg(&mut result);
        // SAFETY: as above.
        unsafe { launch.launch(grid(1)) }.map_err(api("cuLaunchKernel"))?;
        let mut out = [0u64; 24];
        stream
            .memcpy_dtoh(&result, &mut out[..])
            .map_err(api("cuMemcpyDtoH"))?;
        Ok(out)
    }
}
