/* lode's kernels are written once, in the subset of C that OpenCL C and CUDA C share. This
 * prelude maps the few words that differ onto OpenCL C. */
#define KERNEL __kernel
#define GLOBAL __global
#define DEVICE
typedef uint u32;
typedef ulong u64;
#define GLOBAL_ID ((u64)get_global_id(0))
#define LODE_MULHI(a, b) mul_hi((u64)(a), (u64)(b))
