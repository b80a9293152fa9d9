/* lode's kernels are written once, in the subset of C that OpenCL C and CUDA C share. This
 * prelude maps the few words that differ onto CUDA C (compiled at run time by NVRTC). */
#define KERNEL extern "C" __global__
#define GLOBAL
#define DEVICE __device__ __forceinline__
typedef unsigned int u32;
typedef unsigned long long u64;
#define GLOBAL_ID ((u64)blockIdx.x * (u64)blockDim.x + (u64)threadIdx.x)
#define LODE_MULHI(a, b) __umul64hi((u64)(a), (u64)(b))
