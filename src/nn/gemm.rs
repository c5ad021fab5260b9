//! Strided matrix products straight into caller-owned buffers, through the `gemm` crate that
//! candle's CPU backend uses: the fused kernels call them inside one op, without allocating a
//! candle tensor per product.
use gemm::Parallelism;

/// Same threading rule as candle's CPU matmul.
pub(crate) fn parallelism() -> Parallelism {
    let n = candle_core::utils::get_num_threads();
    if n > 1 {
        Parallelism::Rayon(n)
    } else {
        Parallelism::None
    }
}

/// dst[m×n] (row stride `dst_rs`) = `keep`·dst + lhs[m×k] · rhs[k×n], all with explicit strides
/// (row stride, column stride).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_into<T: 'static + Copy + num_traits::One + num_traits::Zero>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    dst_rs: usize,
    keep: bool,
    lhs: &[T],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[T],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    // Bounds: the last element each operand touches must lie inside its slice.
    assert!((m - 1) * dst_rs + n <= dst.len());
    if k > 0 {
        assert!((m - 1) * lhs_rs + (k - 1) * lhs_cs < lhs.len());
        assert!((k - 1) * rhs_rs + (n - 1) * rhs_cs < rhs.len());
    }
    // SAFETY: the asserts above keep every access in bounds; gemm reads lhs/rhs and writes dst.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            keep,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            if keep { T::one() } else { T::zero() },
            T::one(),
            false,
            false,
            false,
            parallelism(),
        )
    }
}

