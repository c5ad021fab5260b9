// CUDA kernels of varattn's custom ops (src/special/ops.rs), compiled to PTX by build.rs when
// the `cuda` feature is on and launched from src/special/cuda.rs. The math lives in special.cuh,
// a port of src/special/scalar.rs; every op is evaluated in double, also for f32 storage, as the
// CPU path does.
//
// Layouts: `info` is null for a contiguous input (already offset to its first element), else
// dims[ndims] followed by strides[ndims], as in candle's own kernels.
#include "special.cuh"

__device__ static inline size_t va_strided_index(size_t i, size_t ndims, const size_t *info) {
    if (info == nullptr) return i;
    const size_t *dims = info;
    const size_t *strides = info + ndims;
    size_t idx = 0;
    for (size_t d = 0; d < ndims; ++d) {
        size_t k = ndims - 1 - d;
        idx += (i % dims[k]) * strides[k];
        i /= dims[k];
    }
    return idx;
}

// y_i = f_op(x_i): lgamma, digamma, trigamma, tetragamma, softplus, log1p (VA_OP_* in special.cuh).
#define VA_SPECIAL_KERNEL(NAME, T)                                                                \
    extern "C" __global__ void NAME(int op, size_t numel, size_t ndims, const size_t *info,       \
                                    const T *x, T *y) {                                           \
        for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < numel;                 \
             i += (size_t)blockDim.x * gridDim.x) {                                               \
            y[i] = (T)va_special(op, (double)x[va_strided_index(i, ndims, info)]);                \
        }                                                                                         \
    }

VA_SPECIAL_KERNEL(varattn_special_f32, float)
VA_SPECIAL_KERNEL(varattn_special_f64, double)

// Gamma sample gradient: mode 0 writes dz/dalpha = standard_gamma_grad(alpha_i, z_i) (the backward
// of implicit_gamma), mode 1 writes z_i (its forward, the identity on the sample).
#define VA_GAMMA_KERNEL(NAME, T)                                                                  \
    extern "C" __global__ void NAME(int mode, size_t numel, size_t ndims, const size_t *info_a,   \
                                    const size_t *info_z, const T *alpha, const T *z, T *out) {   \
        for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < numel;                 \
             i += (size_t)blockDim.x * gridDim.x) {                                               \
            T zi = z[va_strided_index(i, ndims, info_z)];                                         \
            if (mode == 1) {                                                                      \
                out[i] = zi;                                                                      \
            } else {                                                                              \
                double a = (double)alpha[va_strided_index(i, ndims, info_a)];                     \
                out[i] = (T)va_standard_gamma_grad(a, (double)zi);                                \
            }                                                                                     \
        }                                                                                         \
    }

VA_GAMMA_KERNEL(varattn_gamma_grad_f32, float)
VA_GAMMA_KERNEL(varattn_gamma_grad_f64, double)
