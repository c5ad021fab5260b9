//! Strided matrix products straight into caller-owned buffers, through the `gemm` crate that
//! candle's CPU backend uses: the fused kernels call them inside one op, without allocating a
//! candle tensor per product.
use gemm::Parallelism;

/// dst[m×n] (row stride `dst_rs`) = `keep`·dst + lhs[m×k] · rhs[k×n], all with explicit strides
/// (row stride, column stride).
///
/// With more than one thread (candle's count) and enough work, the product is split into one
/// block of rows (or of columns, when there are more columns than rows) per thread and the
/// blocks run on candle's barrier pool, each as a single-threaded `gemm` call, the calling
/// thread taking one. Measured on the 2-core machine of README's Performance section, this
/// scales the decoder's M = 32 products (32×512×1024: 111 → 178 GFLOP/s) where `gemm`'s own
/// rayon split did not, and keeps to the threads candle's element-wise ops already keep awake.
/// Every output element is still one `gemm` dot product over the whole of k, in the same order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_into<T: 'static + Copy + Send + Sync + num_traits::One + num_traits::Zero>(
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
    let parts = candle_core::utils::get_num_threads().min(MAX_PARTS);
    let split_rows = m >= n;
    let len = if split_rows { m } else { n };
    // Blocks of at least 16 rows/columns, and at least ~1 MFLOP per block.
    let parts = parts.min(len / 16).min((2 * m * n * k) / (1 << 20)).max(1);
    let (dst_p, lhs_p, rhs_p) = (dst.as_mut_ptr() as usize, lhs.as_ptr() as usize, rhs.as_ptr() as usize);
    let block = |lo: usize, hi: usize| {
        if lo >= hi {
            return;
        }
        // SAFETY: the asserts above keep every access in bounds; blocks write disjoint rows or
        // columns of dst and only read lhs and rhs.
        unsafe {
            let (dst, lhs, rhs) = (dst_p as *mut T, lhs_p as *const T, rhs_p as *const T);
            let (mm, nn, dst, lhs, rhs) = if split_rows {
                (hi - lo, n, dst.add(lo * dst_rs), lhs.add(lo * lhs_rs), rhs)
            } else {
                (m, hi - lo, dst.add(lo), lhs, rhs.add(lo * rhs_cs))
            };
            gemm::gemm(
                mm,
                nn,
                k,
                dst,
                1,
                dst_rs as isize,
                keep,
                lhs,
                lhs_cs as isize,
                lhs_rs as isize,
                rhs,
                rhs_cs as isize,
                rhs_rs as isize,
                if keep { T::one() } else { T::zero() },
                T::one(),
                false,
                false,
                false,
                Parallelism::None,
            )
        }
    };
    if parts <= 1 {
        block(0, len);
        return;
    }
    // Block boundaries on multiples of 8 (the kernels' register tile).
    let step = len.div_ceil(parts).div_ceil(8) * 8;
    // Each participant takes the next block until none is left (so any pool size works).
    candle_core::utils::barrier_pool().execute_chunked(parts, |blocks| {
        for p in blocks {
            block(p * step, ((p + 1) * step).min(len));
        }
    });
}

/// At most this many blocks per product.
const MAX_PARTS: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    /// dst = keep·dst + lhs·rhs by the definition, in f64.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        (m, n, k): (usize, usize, usize),
        dst: &mut [f64],
        dst_rs: usize,
        keep: bool,
        lhs: &[f64],
        (lrs, lcs): (usize, usize),
        rhs: &[f64],
        (rrs, rcs): (usize, usize),
    ) {
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|p| lhs[i * lrs + p * lcs] * rhs[p * rrs + j * rcs]).sum();
                dst[i * dst_rs + j] = if keep { dst[i * dst_rs + j] + dot } else { dot };
            }
        }
    }

    #[test]
    fn blocked_products_match_the_definition() {
        // Shapes below and above the splitting threshold, split by rows and by columns, with
        // transposed operands, a padded destination row stride and accumulation (300x64x100 and
        // 41x400x100 are over 2 MFLOP: two blocks on two threads).
        for &(m, n, k) in &[(3usize, 5usize, 2usize), (300, 64, 100), (41, 400, 100), (64, 64, 129)] {
            for (lt, rt, keep) in [(false, false, false), (true, false, true), (false, true, false), (true, true, true)] {
                let lhs: Vec<f64> = (0..m * k).map(|i| ((i * 7 % 13) as f64 - 6.0) / 5.0).collect();
                let rhs: Vec<f64> = (0..k * n).map(|i| ((i * 5 % 11) as f64 - 5.0) / 3.0).collect();
                let ls = if lt { (1, m) } else { (k, 1) };
                let rs = if rt { (1, k) } else { (n, 1) };
                let dst_rs = n + 3;
                let init: Vec<f64> = (0..m * dst_rs).map(|i| (i % 17) as f64 / 4.0).collect();
                let (mut got, mut want) = (init.clone(), init);
                matmul_into((m, n, k), &mut got, dst_rs, keep, &lhs, ls, &rhs, rs);
                reference((m, n, k), &mut want, dst_rs, keep, &lhs, ls, &rhs, rs);
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!((a - b).abs() < 1e-9 * b.abs().max(1.0), "{m}x{n}x{k} lt {lt} rt {rt} keep {keep}: [{i}] {a} vs {b}");
                }
            }
        }
    }
}
