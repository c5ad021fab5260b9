use super::{apply_logit_mask, masked_sum_last, Distribution};
use crate::rng::SeededRng;
use crate::special::lgamma;
use candle_core::{Result, Tensor, D};

/// Relaxed categorical (Concrete / Gumbel-softmax) with temperature τ, batched `[..., S]`.
///
/// rsample: y = softmax((log p + g) / τ), g_i ~ Gumbel(0, 1) i.i.d. — a point on the simplex,
/// differentiable in log p; as τ → 0 it approaches the one-hot of a categorical sample.
///
/// Density (Maddison et al. 2017; Jang et al. 2017), over the n real positions:
/// log p(y) = ln Γ(n) + (n - 1) ln τ + Σ_i (l_i - (τ + 1) ln y_i) - n · logsumexp_i(l_i - τ ln y_i).
///
/// Entropy, mean and KL have no closed form: `entropy` and `mean` return an error; use
/// [`RelaxedCategorical::entropy_mc`] or the categorical the relaxation came from.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use varattn::distributions::{Distribution, RelaxedCategorical};
/// use varattn::rng::SeededRng;
/// let logits = Tensor::new(&[[0.0f32, 1.0, 2.0]], &Device::Cpu)?;
/// let q = RelaxedCategorical::from_logits(&logits, 0.1, None)?;
/// let y = q.rsample(&mut SeededRng::new(1))?.to_vec2::<f32>()?;
/// assert!((y[0].iter().sum::<f32>() - 1.0).abs() < 1e-5);
/// assert!(y[0].iter().cloned().fold(0.0, f32::max) > 0.9); // nearly one-hot at τ = 0.1
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RelaxedCategorical {
    log_probs: Tensor,
    temperature: f64,
    mask: Option<Tensor>,
}

impl RelaxedCategorical {
    pub fn from_logits(logits: &Tensor, temperature: f64, mask: Option<&Tensor>) -> Result<Self> {
        if temperature <= 0.0 || !temperature.is_finite() {
            candle_core::bail!("Gumbel-softmax temperature must be positive, got {temperature}")
        }
        let masked = apply_logit_mask(logits, mask)?;
        let log_probs = candle_nn::ops::log_softmax(&masked, D::Minus1)?;
        Ok(Self { log_probs, temperature, mask: mask.cloned() })
    }

    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    /// Relax given Gumbel noise `g` (same shape as the logits, or `[K, ..., S]`):
    /// softmax((log p + g) / τ).
    pub fn relax(&self, gumbel: &Tensor) -> Result<Tensor> {
        let x = (gumbel.broadcast_add(&self.log_probs)? / self.temperature)?;
        candle_nn::ops::softmax(&x, D::Minus1)
    }

    /// Straight-through sample: the forward value is one-hot(argmax y), the gradient is that of
    /// the relaxed y.
    pub fn rsample_straight_through(&self, rng: &mut SeededRng) -> Result<Tensor> {
        let y = self.rsample(rng)?;
        let idx = y.argmax_keepdim(D::Minus1)?;
        let hard = y.zeros_like()?.scatter_add(&idx, &y.ones_like()?.narrow(D::Minus1, 0, 1)?.contiguous()?, D::Minus1)?;
        (hard - y.detach())? + y
    }

    /// Monte Carlo entropy estimate -1/N Σ_n log p(y_n), y_n ~ p.
    pub fn entropy_mc(&self, n: usize, rng: &mut SeededRng) -> Result<Tensor> {
        let mut acc = self.log_probs.sum(D::Minus1)?.zeros_like()?;
        for _ in 0..n {
            let y = self.sample(rng)?;
            acc = (acc - self.log_prob(&y)?)?;
        }
        acc / n as f64
    }
}

impl Distribution for RelaxedCategorical {
    fn log_prob(&self, y: &Tensor) -> Result<Tensor> {
        let ones = self.log_probs.ones_like()?;
        let n = masked_sum_last(&ones, self.mask.as_ref())?;
        let tau = self.temperature;
        let log_y = y.clamp(1e-30, f64::INFINITY)?.log()?;
        let l = &self.log_probs;
        let first = (lgamma(&n)? + ((&n - 1.0)? * tau.ln())?)?;
        let second = masked_sum_last(&(l - (log_y.clone() * (tau + 1.0))?)?, self.mask.as_ref())?;
        let inner = (l - (log_y * tau)?)?;
        let inner = apply_logit_mask(&inner, self.mask.as_ref())?;
        let lse = inner.log_sum_exp(D::Minus1)?;
        (first + second)? - n.mul(&lse)?
    }

    fn sample(&self, rng: &mut SeededRng) -> Result<Tensor> {
        Ok(self.rsample(rng)?.detach())
    }

    fn rsample(&self, rng: &mut SeededRng) -> Result<Tensor> {
        let g = rng.gumbel(self.log_probs.shape(), self.log_probs.device())?.to_dtype(self.log_probs.dtype())?;
        self.relax(&g)
    }

    fn entropy(&self) -> Result<Tensor> {
        candle_core::bail!("the relaxed categorical has no closed-form entropy; use entropy_mc")
    }

    fn mean(&self) -> Result<Tensor> {
        candle_core::bail!("the relaxed categorical has no closed-form mean; its τ → 0 limit is softmax(logits)")
    }

    fn name(&self) -> &'static str {
        "RelaxedCategorical"
    }
}
