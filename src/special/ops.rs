//! Special functions as candle ops that record gradients.
//!
//! | op | forward | backward |
//! |---|---|---|
//! | [`lgamma`] | ln Γ(x) | ψ(x) · g |
//! | [`polygamma`] n = 0, 1, 2 | ψ⁽ⁿ⁾(x) (digamma, trigamma, tetragamma) | ψ⁽ⁿ⁺¹⁾(x) · g (n ≤ 1) |
//! | [`softplus`] | ln(1 + eˣ) | σ(x) · g |
//! | [`log1p`] | ln(1 + x) | g / (1 + x) |
//! | [`gamma_rsample`] | z ~ Gamma(α, 1) | (dz/dα) · g, implicit reparameterisation |
//!
//! The forward passes run on the CPU (f32, f64, f16 and bf16 storage, any layout) and, with the
//! `cuda` feature, on CUDA devices (f32 and f64, any layout; kernels in src/special/cuda/, a port
//! of [`super::scalar`]); both evaluate in f64.
//!
//! ```
//! use candle_core::{Tensor, Var, Device};
//! use varattn::special::{lgamma, digamma};
//! let x = Var::new(&[0.5f64, 1.0, 10.0], &Device::Cpu)?;
//! let y = lgamma(x.as_tensor())?;
//! assert!((y.to_vec1::<f64>()?[0] - 0.5723649429247001).abs() < 1e-9);
//! let g = y.sum_all()?.backward()?;
//! let dy = g.get(&x).unwrap().to_vec1::<f64>()?;
//! assert!((dy[1] - digamma(&Tensor::new(1.0f64, &Device::Cpu)?)?.to_scalar::<f64>()?).abs() < 1e-12);
//! # Ok::<(), candle_core::Error>(())
//! ```

use super::scalar;
use crate::rng::SeededRng;
use candle_core::cpu_backend::{binary_map, unary_map};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use half::{bf16, f16};

/// The elementwise special functions, each a [`CustomOp1`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    Lgamma,
    Polygamma(u8),
    Softplus,
    Log1p,
}

impl Special {
    fn eval(self, x: f64) -> f64 {
        match self {
            Special::Lgamma => scalar::lgamma(x),
            Special::Polygamma(0) => scalar::digamma(x),
            Special::Polygamma(1) => scalar::trigamma(x),
            Special::Polygamma(_) => scalar::tetragamma(x),
            Special::Softplus => scalar::softplus(x),
            Special::Log1p => scalar::log1p(x),
        }
    }
}

/// Apply `f` elementwise to CPU storage of any float dtype, evaluating in f64.
fn map_float(storage: &CpuStorage, layout: &Layout, f: impl Fn(f64) -> f64) -> Result<CpuStorage> {
    Ok(match storage {
        CpuStorage::F32(v) => CpuStorage::F32(unary_map(v, layout, |x| f(x as f64) as f32)),
        CpuStorage::F64(v) => CpuStorage::F64(unary_map(v, layout, f)),
        CpuStorage::F16(v) => CpuStorage::F16(unary_map(v, layout, |x| f16::from_f64(f(x.to_f64())))),
        CpuStorage::BF16(v) => {
            CpuStorage::BF16(unary_map(v, layout, |x| bf16::from_f64(f(x.to_f64()))))
        }
        other => candle_core::bail!("special function on non-float storage {:?}", other.dtype()),
    })
}

impl CustomOp1 for Special {
    fn name(&self) -> &'static str {
        match self {
            Special::Lgamma => "lgamma",
            Special::Polygamma(0) => "digamma",
            Special::Polygamma(1) => "trigamma",
            Special::Polygamma(_) => "tetragamma",
            Special::Softplus => "softplus",
            Special::Log1p => "log1p",
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let op = *self;
        Ok((map_float(storage, layout, |x| op.eval(x))?, layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, storage: &candle_core::CudaStorage, layout: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        use super::cuda::{special_fwd, SpecialOp};
        let op = match self {
            Special::Lgamma => SpecialOp::Lgamma,
            Special::Polygamma(0) => SpecialOp::Digamma,
            Special::Polygamma(1) => SpecialOp::Trigamma,
            Special::Polygamma(_) => SpecialOp::Tetragamma,
            Special::Softplus => SpecialOp::Softplus,
            Special::Log1p => SpecialOp::Log1p,
        };
        Ok((special_fwd(op, storage, layout)?, layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let local = match self {
            Special::Lgamma => digamma(arg)?,
            Special::Polygamma(n) if *n <= 1 => polygamma(*n + 1, arg)?,
            Special::Polygamma(_) => {
                return Err(candle_core::Error::BackwardNotSupported { op: "tetragamma" })
            }
            Special::Softplus => candle_nn::ops::sigmoid(arg)?,
            Special::Log1p => (arg + 1.0)?.recip()?,
        };
        Ok(Some(grad_res.mul(&local)?))
    }
}

/// ln Γ(x), elementwise, differentiable: d/dx ln Γ(x) = ψ(x).
pub fn lgamma(x: &Tensor) -> Result<Tensor> {
    x.apply_op1(Special::Lgamma)
}

/// ψ⁽ⁿ⁾(x), the n-th derivative of ψ = Γ'/Γ, for n = 0 (digamma), 1 (trigamma), 2 (tetragamma);
/// differentiable for n ≤ 1.
pub fn polygamma(n: u8, x: &Tensor) -> Result<Tensor> {
    if n > 2 {
        candle_core::bail!("polygamma of order {n} is not implemented (0, 1, 2 are)")
    }
    x.apply_op1(Special::Polygamma(n))
}

/// ψ(x) = d/dx ln Γ(x), differentiable (its derivative is the trigamma function).
pub fn digamma(x: &Tensor) -> Result<Tensor> {
    polygamma(0, x)
}

/// ψ'(x), differentiable (its derivative is the tetragamma function).
pub fn trigamma(x: &Tensor) -> Result<Tensor> {
    polygamma(1, x)
}

/// softplus(x) = ln(1 + eˣ), computed without overflow; derivative σ(x).
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    x.apply_op1(Special::Softplus)
}

/// ln(1 + x), accurate for small x; derivative 1 / (1 + x).
pub fn log1p(x: &Tensor) -> Result<Tensor> {
    x.apply_op1(Special::Log1p)
}

/// Identity on a gamma sample z that routes the gradient to the concentration α by implicit
/// reparameterisation (Figurnov et al. 2018): with F(z; α) the Gamma(α, 1) CDF held fixed,
/// dz/dα = -(∂F/∂α) / (∂F/∂z).
struct ImplicitGamma;

/// dz/dα evaluated elementwise at (α, z), no gradient.
struct GammaSampleGrad;

fn map_float2(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    f: impl Fn(f64, f64) -> f64,
) -> Result<CpuStorage> {
    Ok(match (s1, s2) {
        (CpuStorage::F32(a), CpuStorage::F32(z)) => {
            CpuStorage::F32(binary_map(l1, l2, a, z, |a, z| f(a as f64, z as f64) as f32))
        }
        (CpuStorage::F64(a), CpuStorage::F64(z)) => CpuStorage::F64(binary_map(l1, l2, a, z, f)),
        _ => candle_core::bail!(
            "implicit gamma gradient needs matching f32 or f64 tensors, got {:?} and {:?}",
            s1.dtype(),
            s2.dtype()
        ),
    })
}

impl CustomOp2 for GammaSampleGrad {
    fn name(&self) -> &'static str {
        "gamma-sample-grad"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((map_float2(s1, l1, s2, l2, scalar::standard_gamma_grad)?, l1.shape().clone()))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let out = super::cuda::gamma_fwd(super::cuda::GammaMode::SampleGrad, s1, l1, s2, l2)?;
        Ok((out, l1.shape().clone()))
    }
}

impl CustomOp2 for ImplicitGamma {
    fn name(&self) -> &'static str {
        "implicit-gamma"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((map_float2(s1, l1, s2, l2, |_, z| z)?, l1.shape().clone()))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let out = super::cuda::gamma_fwd(super::cuda::GammaMode::Identity, s1, l1, s2, l2)?;
        Ok((out, l1.shape().clone()))
    }
    fn bwd(&self, alpha: &Tensor, z: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dz_dalpha = alpha.apply_op2_no_bwd(z, &GammaSampleGrad)?;
        Ok((Some(grad.mul(&dz_dalpha)?), None))
    }
}

/// dz/dα for z ~ Gamma(α, 1), elementwise (no gradient recorded).
pub fn gamma_sample_grad(alpha: &Tensor, z: &Tensor) -> Result<Tensor> {
    alpha.apply_op2_no_bwd(z, &GammaSampleGrad)
}

/// Attach the implicit reparameterisation gradient to a given gamma sample `z` of `alpha`:
/// the value is `z`, and ∂z/∂α = -(∂F/∂α)/(∂F/∂z).
pub fn implicit_gamma(alpha: &Tensor, z: &Tensor) -> Result<Tensor> {
    alpha.apply_op2(&z.to_dtype(alpha.dtype())?.detach(), ImplicitGamma)
}

/// Reparameterised z ~ Gamma(α, 1): drawn by the project's seeded generator, differentiable in α
/// through [`implicit_gamma`].
pub fn gamma_rsample(alpha: &Tensor, rng: &mut SeededRng) -> Result<Tensor> {
    let z = rng.gamma(alpha)?.to_dtype(alpha.dtype())?;
    implicit_gamma(alpha, &z)
}
