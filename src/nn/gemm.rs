//! Strided matrix products straight into caller-owned buffers, through the `gemm` crate that
//! candle's CPU backend uses: the fused kernels call them inside one op, without allocating a
//! candle tensor per product.
use candle_core::{bail, backend::BackendStorage, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use gemm::Parallelism;

/// dst[m×n] (row stride `dst_rs`) = `keep`·dst + lhs[m×k] · rhs[k×n], all with explicit strides
/// (row stride, column stride).
///
/// With more than one thread (candle's count) and enough work, the product is split into one
/// block of rows (or of columns, when there are more columns than rows) per thread and the
/// blocks run on candle's barrier pool, each as a single-threaded `gemm` call, the calling
/// thread taking one. Measured on the 2-core machine of docs/performance.md, this
/// scales the decoder's M = 32 products (32×512×1024: 111 → 178 GFLOP/s) where `gemm`'s own
/// rayon split did not, and keeps to the threads candle's element-wise ops already keep awake.
/// Every output element is still one `gemm` dot product over the whole of k, in the same order.
#[allow(clippy::too_many_arguments)]
pub fn matmul_into<T: 'static + Copy + Send + Sync + num_traits::One + num_traits::Zero>(
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
    let parts = super::par::threads().min(MAX_PARTS);
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

/// `a [M, K] × b [K, N]` as a candle op whose CPU product is [`matmul_into`] (one block per thread
/// on candle's barrier pool, no zero-filled destination) and whose backward pass is the same op:
/// ∂a = g bᵀ, ∂b = aᵀ g. Both operands may be any 2-D strided views (a transpose costs nothing).
struct MatMul2;

/// (rows, cols, row stride, col stride) of a 2-D layout.
fn strides_2d(l: &Layout) -> Result<(usize, usize, usize, usize)> {
    let (r, c) = l.shape().dims2()?;
    let st = l.stride();
    Ok((r, c, st[0], st[1]))
}

impl CustomOp2 for MatMul2 {
    fn name(&self) -> &'static str {
        "matmul-blocked"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let ((m, k, ars, acs), (k2, n, brs, bcs)) = (strides_2d(l1)?, strides_2d(l2)?);
        if k != k2 {
            bail!("matmul-blocked: shapes {:?} and {:?} do not fit [M, K] × [K, N]", l1.shape(), l2.shape())
        }
        macro_rules! run {
            ($a:expr, $b:expr, $ty:ty, $wrap:path) => {{
                let (a, b) = (&$a[l1.start_offset()..], &$b[l2.start_offset()..]);
                let mut dst = Vec::<$ty>::with_capacity(m * n);
                // SAFETY: matmul_into with keep = false writes every element of the m×n
                // destination (k = 0 included) before anything reads it.
                #[allow(clippy::uninit_vec)]
                unsafe {
                    dst.set_len(m * n)
                };
                if k == 0 {
                    dst.iter_mut().for_each(|x| *x = 0.0);
                } else {
                    matmul_into((m, n, k), &mut dst, n, false, a, (ars, acs), b, (brs, bcs));
                }
                $wrap(dst)
            }};
        }
        let out = match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => run!(a, b, f32, CpuStorage::F32),
            (CpuStorage::F64(a), CpuStorage::F64(b)) => run!(a, b, f64, CpuStorage::F64),
            _ => bail!("matmul-blocked: f32 or f64 operands of one dtype expected, got {:?}, {:?}", s1.dtype(), s2.dtype()),
        };
        Ok((out, Shape::from((m, n))))
    }

    fn bwd(&self, a: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?;
        Ok((Some(g.apply_op2_no_bwd(&b.t()?, &MatMul2)?), Some(a.t()?.apply_op2_no_bwd(&g, &MatMul2)?)))
    }
}

/// `x [..., K] × w [K, N] -> [..., N]` (leading dimensions flattened into rows): on the CPU in
/// f32/f64 through [`matmul_into`] with a gradient (see `MatMul2`), elsewhere candle's
/// `broadcast_matmul`. `w` may be a transposed view, e.g. `weight.t()` of a `[N, K]` weight.
pub fn matmul_blocked(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let fast = x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && w.rank() == 2;
    if !fast {
        return x.broadcast_matmul(w);
    }
    let dims = x.dims().to_vec();
    let k = *dims.last().unwrap_or(&0);
    let rows = x.contiguous()?.reshape(((), k))?;
    let out = rows.apply_op2(w, MatMul2)?;
    let mut out_dims = dims;
    *out_dims.last_mut().unwrap() = w.dim(1)?;
    out.reshape(out_dims)
}

/// y = x Wᵀ + b with W `[out, in]`: `candle_nn::Linear`'s layer with its product through
/// [`matmul_blocked`] (see `MatMul2`), so its forward and both backward products run on candle's
/// barrier pool without a zero-filled destination.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// A layer over `weight [out, in]` and an optional `bias [out]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// W, `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// b, `[out]`, if the layer has one.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl candle_core::Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = matmul_blocked(x, &self.weight.t()?)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
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

    #[test]
    fn blocked_matmul_op_matches_candle_in_value_and_gradient() -> Result<()> {
        use candle_core::{Device, Var};
        let mut rng = crate::rng::SeededRng::new(4);
        // 3-D input times a transposed weight (a Linear layer); big enough to split in blocks
        for &(b, t, k, n) in &[(2usize, 3usize, 5usize, 4usize), (8, 40, 64, 96)] {
            let x = Var::from_tensor(&rng.normal((b, t, k), &Device::Cpu)?.to_dtype(DType::F64)?)?;
            let w = Var::from_tensor(&rng.normal((n, k), &Device::Cpu)?.to_dtype(DType::F64)?)?;
            let r = rng.normal((b, t, n), &Device::Cpu)?.to_dtype(DType::F64)?;
            let ours = matmul_blocked(x.as_tensor(), &w.as_tensor().t()?)?;
            let theirs = x.as_tensor().broadcast_matmul(&w.as_tensor().t()?)?;
            let diff = |p: &Tensor, q: &Tensor| -> Result<f64> { (p - q)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>() };
            assert_eq!(ours.dims(), &[b, t, n]);
            assert!(diff(&ours, &theirs)? < 1e-12);
            let g1 = (ours * &r)?.sum_all()?.backward()?;
            let g0 = (theirs * &r)?.sum_all()?.backward()?;
            for v in [&x, &w] {
                let (p, q) = (g1.get(v).unwrap(), g0.get(v).unwrap());
                assert_eq!(p.dims(), v.dims());
                assert!(diff(p, q)? < 1e-12, "gradient differs by {}", diff(p, q)?);
                assert!(q.abs()?.sum_all()?.to_scalar::<f64>()? > 1e-3);
            }
        }
        let bad = matmul_blocked(&Tensor::zeros((2, 3), DType::F32, &Device::Cpu)?, &Tensor::zeros((4, 5), DType::F32, &Device::Cpu)?);
        assert!(bad.unwrap_err().to_string().contains("matmul-blocked"));
        Ok(())
    }
}
