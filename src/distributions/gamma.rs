use super::{Distribution, KlDivergence};
use crate::rng::SeededRng;
use crate::special::{digamma, gamma_rsample, lgamma};
use candle_core::{Result, Tensor};

/// Gamma(α, β) with shape α and rate β (mean α/β), elementwise over any shape; the prior of
/// Bayesian attention (BAM/BABN).
///
/// * log p(x) = α ln β - ln Γ(α) + (α - 1) ln x - β x
/// * rsample: x = g / β with g ~ Gamma(α, 1) carrying the implicit reparameterisation gradient
/// * H = α - ln β + ln Γ(α) + (1 - α) ψ(α)
/// * KL(Gamma(α₁, β₁) || Gamma(α₂, β₂)) = (α₁ - α₂) ψ(α₁) - ln Γ(α₁) + ln Γ(α₂)
///   + α₂ (ln β₁ - ln β₂) + α₁ (β₂ - β₁) / β₁
///
/// ```
/// use candle_core::{Device, Tensor};
/// use varattn::distributions::{Distribution, Gamma};
/// let dev = Device::Cpu;
/// let g = Gamma::new(Tensor::new(&[2.0f64], &dev)?, Tensor::new(&[0.5f64], &dev)?);
/// assert!((g.mean()?.to_vec1::<f64>()?[0] - 4.0).abs() < 1e-12);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Gamma {
    pub alpha: Tensor,
    pub beta: Tensor,
}

impl Gamma {
    /// Shape α and rate β must have the same shape (broadcast beforehand if needed).
    pub fn new(alpha: Tensor, beta: Tensor) -> Self {
        Self { alpha, beta }
    }
}

impl Distribution for Gamma {
    fn log_prob(&self, x: &Tensor) -> Result<Tensor> {
        let (a, b) = (&self.alpha, &self.beta);
        let t1 = a.mul(&b.log()?)?;
        let t2 = (a - 1.0)?.mul(&x.log()?)?;
        ((t1 - lgamma(a)?)? + t2)? - b.mul(x)?
    }

    fn sample(&self, rng: &mut SeededRng) -> Result<Tensor> {
        Ok(self.rsample(rng)?.detach())
    }

    fn rsample(&self, rng: &mut SeededRng) -> Result<Tensor> {
        gamma_rsample(&self.alpha, rng)?.div(&self.beta)
    }

    fn entropy(&self) -> Result<Tensor> {
        let a = &self.alpha;
        ((a - self.beta.log()?)? + lgamma(a)?)? + (1.0 - a)?.mul(&digamma(a)?)?
    }

    fn mean(&self) -> Result<Tensor> {
        self.alpha.div(&self.beta)
    }

    fn name(&self) -> &'static str {
        "Gamma"
    }
}

impl KlDivergence<Gamma> for Gamma {
    fn kl(&self, p: &Gamma) -> Result<Tensor> {
        let (a1, b1, a2, b2) = (&self.alpha, &self.beta, &p.alpha, &p.beta);
        let t1 = (a1 - a2)?.mul(&digamma(a1)?)?;
        let t2 = (lgamma(a2)? - lgamma(a1)?)?;
        let t3 = a2.mul(&(b1.log()? - b2.log()?)?)?;
        let t4 = a1.mul(&(b2 - b1)?)?.div(b1)?;
        ((t1 + t2)? + t3)? + t4
    }
}
