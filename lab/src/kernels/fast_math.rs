//! Vectorised e^x, σ(x) and tanh(x) over f32 slices for the fused kernels' hot loops.
//!
//! glibc's scalar `expf`/`tanhf` took over 15% of a training step's samples (the LSTM cells'
//! three sigmoids and two tanh per unit, the attention MLP's tanh). These loops are written so
//! the compiler vectorises them; a copy compiled for AVX-512 or for AVX2 + FMA is chosen at run
//! time when the CPU has them. [`add_and_max`] and [`exp_shifted_and_sum`] are the two passes of a
//! stable softmax over a row of logits, each one sweep.
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

/// Defines `pub fn $name($args) -> $ret` running `$body` (an `#[inline(always)]` function)
/// compiled for the widest vector unit the CPU has: AVX-512 (16 lanes), else AVX2 + FMA (8),
/// else plain code. The same operations run in the same order in every copy (no fused
/// multiply-adds are formed), so all three give the same bits; the tests check it.
macro_rules! widest {
    ($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? = $body:ident) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx512f") {
                    #[target_feature(enable = "avx512f,avx2,fma")]
                    unsafe fn wide512($($arg: $ty),*) $(-> $ret)? {
                        $body($($arg),*)
                    }
                    // SAFETY: the CPU has the features `wide512` is compiled for.
                    return unsafe { wide512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    #[target_feature(enable = "avx2,fma")]
                    unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                        $body($($arg),*)
                    }
                    // SAFETY: the CPU has the features `wide` is compiled for.
                    return unsafe { wide($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

#[inline(always)]
fn exp_body(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = exp1(*x));
}

#[inline(always)]
fn sigmoid_body(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = sigmoid1(*x));
}

#[inline(always)]
fn tanh_body(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = tanh1(*x));
}

widest!(
    /// e^x in place over the slice (module docs).
    exp_in_place(xs: &mut [f32]) = exp_body
);
widest!(
    /// σ(x) in place over the slice (module docs).
    sigmoid_in_place(xs: &mut [f32]) = sigmoid_body
);
widest!(
    /// tanh(x) in place over the slice (module docs).
    tanh_in_place(xs: &mut [f32]) = tanh_body
);

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

#[inline(always)]
fn add_and_max_body(row: &mut [f32], bias: &[f32]) -> f32 {
    assert_eq!(row.len(), bias.len());
    let mut acc = [f32::NEG_INFINITY; 16];
    let mut rows = row.chunks_exact_mut(16);
    let mut biases = bias.chunks_exact(16);
    for (c, b) in (&mut rows).zip(&mut biases) {
        let (c, b): (&mut [f32; 16], &[f32; 16]) = (c.try_into().unwrap(), b.try_into().unwrap());
        for k in 0..16 {
            c[k] += b[k];
            acc[k] = acc[k].max(c[k]);
        }
    }
    let mut m = acc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for (x, b) in rows.into_remainder().iter_mut().zip(biases.remainder()) {
        *x += b;
        m = m.max(*x);
    }
    m
}

widest!(
    /// Adds `bias` to `row` in place and returns the maximum of the result (−∞ for an empty
    /// row): the first pass of a stable softmax over logits z = x + b.
    add_and_max(row: &mut [f32], bias: &[f32]) -> f32 = add_and_max_body
);

#[inline(always)]
fn exp_shifted_and_sum_body(row: &mut [f32], m: f32) -> f32 {
    let mut acc = [0f32; 16];
    let mut rows = row.chunks_exact_mut(16);
    for c in &mut rows {
        let c: &mut [f32; 16] = c.try_into().unwrap();
        for k in 0..16 {
            c[k] = exp1(c[k] - m);
            acc[k] += c[k];
        }
    }
    let mut tail = 0f32;
    for x in rows.into_remainder() {
        *x = exp1(*x - m);
        tail += *x;
    }
    acc.iter().sum::<f32>() + tail
}

widest!(
    /// Overwrites `row` with e^(x − m) and returns Σ e^(x − m) (sixteen interleaved partial
    /// sums, added in a fixed order): the second pass of a stable softmax, in one sweep.
    exp_shifted_and_sum(row: &mut [f32], m: f32) -> f32 = exp_shifted_and_sum_body
);

#[inline(always)]
fn add_exp_scale_body(row: &mut [f32], bias: &[f32], shift: f32, scale: f32) {
    assert_eq!(row.len(), bias.len());
    row.iter_mut().zip(bias).for_each(|(x, &b)| *x = exp1(*x + b - shift) * scale);
}

widest!(
    /// row_v ← scale · e^(row_v + bias_v − shift) in one sweep: a softmax row times a scalar from
    /// logits without bias, with shift the row's log-normaliser.
    add_exp_scale(row: &mut [f32], bias: &[f32], shift: f32, scale: f32) = add_exp_scale_body
);

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
    fn softmax_passes_match_f64_and_every_copy_gives_the_same_bits() {
        for n in [0usize, 1, 15, 16, 17, 100, 2000, 2003] {
            let row: Vec<f32> = (0..n).map(|k| ((k * 7919 % 1013) as f32 - 506.0) / 23.0).collect();
            let bias: Vec<f32> = (0..n).map(|k| ((k * 31 % 17) as f32 - 8.0) / 3.0).collect();
            // the dispatched copy (AVX-512 or AVX2 on this CPU) against the plain body
            let (mut wide, mut plain) = (row.clone(), row.clone());
            let (mw, mp) = (add_and_max(&mut wide, &bias), add_and_max_body(&mut plain, &bias));
            assert_eq!((mw.to_bits(), &wide), (mp.to_bits(), &plain), "add_and_max, n = {n}");
            let z: Vec<f64> = row.iter().zip(&bias).map(|(&x, &b)| (x + b) as f64).collect();
            assert_eq!(mw as f64, z.iter().copied().fold(f64::NEG_INFINITY, f64::max), "max, n = {n}");
            let (sw, sp) = (exp_shifted_and_sum(&mut wide, mw), exp_shifted_and_sum_body(&mut plain, mp));
            assert_eq!((sw.to_bits(), &wide), (sp.to_bits(), &plain), "exp_shifted_and_sum, n = {n}");
            // e^(z − m) of the f32 difference the kernel exponentiates
            let exact: Vec<f64> = z.iter().map(|&z| ((z as f32 - mw) as f64).exp()).collect();
            for (&e, &x) in wide.iter().zip(&exact) {
                assert!(((e as f64) - x).abs() <= 4e-7 * x, "exp: {e} vs {x}");
            }
            let total: f64 = exact.iter().sum();
            assert!(((sw as f64) - total).abs() <= 1e-6 * total.max(1.0), "sum {sw} vs {total}, n = {n}");
        }
        let row: Vec<f32> = (0..2003).map(|k| ((k * 7919 % 1013) as f32 - 506.0) / 23.0).collect();
        let bias: Vec<f32> = (0..2003).map(|k| ((k * 31 % 17) as f32 - 8.0) / 3.0).collect();
        let (mut wide, mut plain) = (row.clone(), row.clone());
        add_exp_scale(&mut wide, &bias, 30.0, -0.75);
        add_exp_scale_body(&mut plain, &bias, 30.0, -0.75);
        assert!(wide.iter().zip(&plain).all(|(x, y)| x.to_bits() == y.to_bits()));
        for ((&e, &x), &b) in wide.iter().zip(&row).zip(&bias) {
            let exact = -0.75 * ((x + b - 30.0) as f64).exp();
            assert!(((e as f64) - exact).abs() <= 5e-7 * exact.abs(), "{e} vs {exact}");
        }
        // the element-wise functions: dispatched copy against the plain body, bit for bit
        let xs: Vec<f32> = (0..4099).map(|k| (k as f32 - 2049.0) / 20.0).collect();
        for (f, body) in [(exp_in_place as fn(&mut [f32]), exp_body as fn(&mut [f32])), (sigmoid_in_place, sigmoid_body), (tanh_in_place, tanh_body)] {
            let (mut a, mut b) = (xs.clone(), xs.clone());
            f(&mut a);
            body(&mut b);
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
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
