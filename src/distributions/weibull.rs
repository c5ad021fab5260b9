use super::{Distribution, Gamma, KlDivergence, EULER_GAMMA};
use crate::rng::SeededRng;
use crate::special::lgamma;
use candle_core::{Result, Tensor};

/// Weibull(k, λ) with shape k and scale λ, elementwise; the variational distribution of the
/// unnormalised attention weights in Bayesian attention modules (Fan et al. 2020).
///
/// * rsample: S = λ (-ln(1 - u))^(1/k), u ~ U(0, 1) — differentiable in k and λ
/// * log p(x) = ln k - ln λ + (k - 1)(ln x - ln λ) - (x/λ)^k
/// * E\[S\] = λ Γ(1 + 1/k); H = γ (1 - 1/k) + ln(λ/k) + 1
/// * KL(Weibull(k, λ) || Gamma(α, β)) = -α ln λ + γ α / k + ln k + β λ Γ(1 + 1/k) - γ - 1
///   - α ln β + ln Γ(α), γ the Euler-Mascheroni constant.
///
/// [`Weibull::with_mean`] chooses λ = m / Γ(1 + 1/k) so that E\[S\] = m, as BAM does with the
/// softmax attention scores.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use varattn::distributions::{Distribution, Weibull};
/// let dev = Device::Cpu;
/// let m = Tensor::new(&[0.2f64, 0.8], &dev)?;
/// let w = Weibull::with_mean(10.0, &m)?;
/// let mean = w.mean()?.to_vec1::<f64>()?;
/// assert!((mean[0] - 0.2).abs() < 1e-9 && (mean[1] - 0.8).abs() < 1e-9);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Weibull {
    /// Shape k, same shape as λ.
    pub k: Tensor,
    /// Scale λ.
    pub lambda: Tensor,
}

impl Weibull {
    pub fn new(k: Tensor, lambda: Tensor) -> Self {
        Self { k, lambda }
    }

    /// A constant shape `k` and λ = mean / Γ(1 + 1/k), so that E\[S\] = mean.
    pub fn with_mean(k: f64, mean: &Tensor) -> Result<Self> {
        let log_gamma = crate::special::scalar::lgamma(1.0 + 1.0 / k);
        let lambda = (mean * (-log_gamma).exp())?;
        let k = Tensor::full(k, mean.shape(), mean.device())?.to_dtype(mean.dtype())?;
        Ok(Self { k, lambda })
    }

    /// Γ(1 + 1/k), elementwise.
    fn gamma_one_plus_inv_k(&self) -> Result<Tensor> {
        lgamma(&(self.k.recip()? + 1.0)?)?.exp()
    }

    /// Reparameterise given uniform noise u: S = λ (-ln(1 - u))^(1/k).
    pub fn transform_uniform(&self, u: &Tensor) -> Result<Tensor> {
        let e = (1.0 - u)?.log()?.neg()?; // Exp(1) draw
        self.lambda.mul(&e.log()?.div(&self.k)?.exp()?)
    }
}

impl Distribution for Weibull {
    fn log_prob(&self, x: &Tensor) -> Result<Tensor> {
        let (k, l) = (&self.k, &self.lambda);
        let log_ratio = (x.log()? - l.log()?)?;
        let t = (k.log()? - l.log()?)?;
        (t + (k - 1.0)?.mul(&log_ratio)?)? - log_ratio.mul(k)?.exp()?
    }

    fn sample(&self, rng: &mut SeededRng) -> Result<Tensor> {
        Ok(self.rsample(rng)?.detach())
    }

    fn rsample(&self, rng: &mut SeededRng) -> Result<Tensor> {
        let u = rng.uniform(self.lambda.shape(), self.lambda.device())?.to_dtype(self.lambda.dtype())?;
        self.transform_uniform(&u)
    }

    fn entropy(&self) -> Result<Tensor> {
        let (k, l) = (&self.k, &self.lambda);
        let t = ((1.0 - k.recip()?)? * EULER_GAMMA)?;
        (t + (l.log()? - k.log()?)?)? + 1.0
    }

    fn mean(&self) -> Result<Tensor> {
        self.lambda.mul(&self.gamma_one_plus_inv_k()?)
    }

    fn name(&self) -> &'static str {
        "Weibull"
    }
}

impl KlDivergence<Gamma> for Weibull {
    fn kl(&self, p: &Gamma) -> Result<Tensor> {
        let (k, l, a, b) = (&self.k, &self.lambda, &p.alpha, &p.beta);
        let t1 = a.mul(&l.log()?)?.neg()?;
        let t2 = (a.div(k)? * EULER_GAMMA)?;
        let t3 = k.log()?;
        let t4 = b.mul(l)?.mul(&self.gamma_one_plus_inv_k()?)?;
        let t5 = a.mul(&b.log()?)?;
        let sum = (((t1 + t2)? + t3)? + t4)?;
        ((sum - (EULER_GAMMA + 1.0))? - t5)? + lgamma(a)?
    }
}
