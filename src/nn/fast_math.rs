//! Vectorised e^x, σ(x) and tanh(x) over f32 slices for the fused kernels' hot loops.
//!
//! glibc's scalar `expf`/`tanhf` took over 15% of a training step's samples (the LSTM cells'
//! three sigmoids and two tanh per unit, the attention MLP's tanh). These loops are written so
//! the compiler vectorises them; on CPUs with AVX2 and FMA a copy compiled for those features is
//! chosen at run time.
//!
//! # Method
//!
//! e^x = 2^n · e^r with n = round(x·log₂e) and r = x - n·ln 2 (ln 2 split in two constants so
//! n·ln 2 is exact), e^r from Cephes' degree-6 polynomial of `expf` (relative error about 1e-7
//! on |r| ≤ ln2/2), 2^n assembled in the exponent bits. x is clamped to [-87.3, 88], where the
//! result stays a normal float. σ(x) = 1 / (1 + e^{-x}); tanh(x) = sign(x)·(1 - e^{-2|x|}) /
//! (1 + e^{-2|x|}). Checked against the standard library's functions in the tests: relative error
//! below 4e-7 for e^x, absolute error below 2e-7 for σ and tanh.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 · 2^23: adding and subtracting it rounds a float of magnitude below 2^22 to an integer.
const ROUND: f32 = 12_582_912.0;

#[inline(always)]
fn exp1(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.0);
    // t = x·log₂e + 1.5·2²³ rounds to an integer n with |n| ≤ 127 in its low mantissa bits:
    // the bits of t are those of 1.5·2²³ plus n. Reading n off the bits keeps the loop in
    // vector registers (a float-to-int `as i32` saturates, which LLVM lowered to eight scalar
    // conversions per vector: exp over 10M values took 1.7x as long), and a NaN stays NaN
    // through y below without any undefined conversion.
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5;
    let y = p * r2 + r + 1.0;
    let n_int = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    y * f32::from_bits((n_int.wrapping_add(127) as u32) << 23)
}

#[inline(always)]
fn sigmoid1(x: f32) -> f32 {
    1.0 / (1.0 + exp1(-x))
}

#[inline(always)]
fn tanh1(x: f32) -> f32 {
    let e = exp1(-2.0 * x.abs());
    ((1.0 - e) / (1.0 + e)).copysign(x)
}

macro_rules! slice_fns {
    ($($name:ident => $f:ident),*) => {
        $(
            /// In place over the slice (module docs).
            pub fn $name(xs: &mut [f32]) {
                #[cfg(target_arch = "x86_64")]
                {
                    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                        #[target_feature(enable = "avx2,fma")]
                        unsafe fn wide(xs: &mut [f32]) {
                            xs.iter_mut().for_each(|x| *x = $f(*x));
                        }
                        // SAFETY: the CPU has the features `wide` is compiled for.
                        unsafe { wide(xs) };
                        return;
                    }
                }
                xs.iter_mut().for_each(|x| *x = $f(*x));
            }
        )*
    };
}

slice_fns!(exp_in_place => exp1, sigmoid_in_place => sigmoid1, tanh_in_place => tanh1);

/// Σ xs in eight interleaved partial sums (so the loop vectorises; the order of the additions
/// is fixed, so the result is the same on every call and CPU).
pub fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            acc[k] += c[k];
        }
    }
    let tail: f32 = chunks.remainder().iter().sum();
    acc.iter().sum::<f32>() + tail
}

/// max xs (−∞ for an empty slice), eight lanes at a time.
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            acc[k] = acc[k].max(c[k]);
        }
    }
    chunks.remainder().iter().chain(&acc).copied().fold(f32::NEG_INFINITY, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(lo: f32, hi: f32, n: usize) -> Vec<f32> {
        (0..=n).map(|k| lo + (hi - lo) * k as f32 / n as f32).collect()
    }

    #[test]
    fn exponent_from_the_bits_equals_the_plain_conversion_and_nan_stays_nan() {
        // The same formula with n converted by `as i32`: bit for bit the same values.
        let plain = |x: f32| {
            let x = x.clamp(-87.3, 88.0);
            let n = (x * LOG2E + ROUND) - ROUND;
            let r = x - n * LN2_HI - n * LN2_LO;
            let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5;
            (p * (r * r) + r + 1.0) * f32::from_bits(((n as i32 + 127) as u32) << 23)
        };
        let mut xs = grid(-100.0, 100.0, 100_003);
        xs.extend([-87.3, 88.0, -0.0, 0.0, f32::MIN_POSITIVE, 1e-30, -1e-30]);
        let mut ys = xs.clone();
        exp_in_place(&mut ys);
        for (&x, &y) in xs.iter().zip(&ys) {
            assert_eq!(y.to_bits(), plain(x).to_bits(), "exp({x})");
        }
        for f in [exp_in_place, sigmoid_in_place, tanh_in_place] {
            let mut v = vec![1.0f32; 17];
            v[3] = f32::NAN;
            f(&mut v);
            assert!(v[3].is_nan() && v.iter().enumerate().all(|(i, y)| i == 3 || y.is_finite()));
        }
    }

    #[test]
    fn exp_matches_the_standard_library() {
        let xs = grid(-87.0, 88.0, 200_001);
        let mut ys = xs.clone();
        exp_in_place(&mut ys);
        for (&x, &y) in xs.iter().zip(&ys) {
            let e = (x as f64).exp();
            let rel = ((y as f64) - e).abs() / e;
            assert!(rel < 4e-7, "exp({x}) = {y}, expected {e} (relative error {rel})");
        }
        // Far outside the range: finite, and 0 / huge as they should be.
        let mut ext = vec![-1e4f32, 1e4, f32::NEG_INFINITY];
        exp_in_place(&mut ext);
        assert!(ext[0] < 1e-37 && ext[1] > 1e38 && ext[1].is_finite() && ext[2] < 1e-37);
    }

    #[test]
    fn sum_and_max_match_plain_loops() {
        for n in [0usize, 1, 7, 8, 9, 100, 1003] {
            let xs: Vec<f32> = (0..n).map(|k| ((k * 37 % 101) as f32 - 50.0) / 7.0).collect();
            let plain: f64 = xs.iter().map(|&x| x as f64).sum();
            assert!((sum(&xs) as f64 - plain).abs() < 1e-4, "n = {n}");
            assert_eq!(max(&xs), xs.iter().copied().fold(f32::NEG_INFINITY, f32::max), "n = {n}");
        }
    }

    #[test]
    fn sigmoid_and_tanh_match_the_standard_library() {
        let xs = grid(-40.0, 40.0, 400_001);
        let (mut s, mut t) = (xs.clone(), xs.clone());
        sigmoid_in_place(&mut s);
        tanh_in_place(&mut t);
        for ((&x, &s), &t) in xs.iter().zip(&s).zip(&t) {
            let (es, et) = (1.0 / (1.0 + (-(x as f64)).exp()), (x as f64).tanh());
            assert!(((s as f64) - es).abs() < 2e-7, "sigmoid({x}) = {s}, expected {es}");
            assert!(((t as f64) - et).abs() < 2e-7, "tanh({x}) = {t}, expected {et}");
        }
        let mut ext = vec![-1e30f32, 1e30, 0.0, -0.0];
        tanh_in_place(&mut ext);
        assert_eq!(ext, vec![-1.0, 1.0, 0.0, -0.0]);
    }
}

/// tanh as a candle op: on the CPU in f32 through [`tanh_in_place`], elsewhere candle's own;
/// gradient ∂x = ∂y (1 - y²).
pub fn tanh(x: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        x.contiguous()?.apply_op1(TanhOp)
    } else {
        x.tanh()
    }
}

struct TanhOp;

impl candle_core::CustomOp1 for TanhOp {
    fn name(&self) -> &'static str {
        "fast-tanh"
    }

    fn cpu_fwd(&self, s: &candle_core::CpuStorage, l: &candle_core::Layout) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let mut v = match (s, l.contiguous_offsets()) {
            (candle_core::CpuStorage::F32(v), Some((a, b))) => v[a..b].to_vec(),
            _ => candle_core::bail!("fast-tanh: a contiguous f32 input expected"),
        };
        tanh_in_place(&mut v);
        Ok((candle_core::CpuStorage::F32(v), l.shape().clone()))
    }

    fn bwd(&self, _x: &candle_core::Tensor, y: &candle_core::Tensor, grad: &candle_core::Tensor) -> candle_core::Result<Option<candle_core::Tensor>> {
        Ok(Some(grad.mul(&y.sqr()?.affine(-1.0, 1.0)?)?))
    }
}

#[cfg(test)]
mod op_tests {
    use super::*;
    use candle_core::{Device, Tensor, Var};

    #[test]
    fn tanh_op_matches_candle_in_value_and_gradient_on_strided_inputs() -> candle_core::Result<()> {
        let data: Vec<f32> = (0..60).map(|k| (k as f32 - 30.0) / 7.0).collect();
        let x = Var::from_vec(data, (6, 10), &Device::Cpu)?;
        let w = Tensor::arange(0f32, 60.0, &Device::Cpu)?.reshape((10, 6))?;
        // A transposed (strided) view: the op takes a contiguous copy, the gradient flows back.
        let run = |fast: bool| -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
            let xt = x.as_tensor().t()?;
            let y = if fast { tanh(&xt)? } else { xt.tanh()? };
            let g = (&y * &w)?.sum_all()?.backward()?;
            Ok((y.flatten_all()?.to_vec1()?, g.get(&x).unwrap().flatten_all()?.to_vec1()?))
        };
        let ((y1, g1), (y0, g0)) = (run(true)?, run(false)?);
        for (a, b) in y1.iter().zip(&y0).chain(g1.iter().zip(&g0)) {
            assert!((a - b).abs() <= 2e-7 * b.abs().max(1.0) * 60.0, "{a} vs {b}");
        }
        Ok(())
    }
}
