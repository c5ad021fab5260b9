//! Gradient reversal (Ganin & Lempitsky 2015): the identity in the forward pass, -g in the
//! backward pass. An adversary (a critic or a discriminator) placed behind it is trained to
//! *maximise* the loss that the rest of the network minimises, with one optimiser and one loss.
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

struct GradReverse;

impl CustomOp1 for GradReverse {
    fn name(&self) -> &'static str {
        "grad-reverse"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        // copy the (possibly strided) input into a contiguous buffer of the same values
        use candle_core::cpu_backend::unary_map;
        let s = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(unary_map(v, layout, |x| x)),
            CpuStorage::F64(v) => CpuStorage::F64(unary_map(v, layout, |x| x)),
            CpuStorage::F16(v) => CpuStorage::F16(unary_map(v, layout, |x| x)),
            CpuStorage::BF16(v) => CpuStorage::BF16(unary_map(v, layout, |x| x)),
            other => candle_core::bail!("grad-reverse on non-float storage {:?}", other.dtype()),
        };
        Ok((s, layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.neg()?))
    }
}

/// R(x) = x in the forward pass, ∂L/∂x = -∂L/∂R(x) in the backward pass.
///
/// ```
/// use candle_core::{Device, Var};
/// use varattn::nn::grad_reverse;
/// let x = Var::new(&[1.0f64, 2.0], &Device::Cpu)?;
/// let y = grad_reverse(x.as_tensor())?.sqr()?.sum_all()?; // forward: Σ x²
/// assert_eq!(y.to_scalar::<f64>()?, 5.0);
/// let g = y.backward()?.get(&x).unwrap().to_vec1::<f64>()?;
/// assert_eq!(g, vec![-2.0, -4.0]); // -(2x)
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn grad_reverse(x: &Tensor) -> Result<Tensor> {
    x.apply_op1(GradReverse)
}
