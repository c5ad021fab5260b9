use super::{Distribution, KlDivergence};
use crate::rng::SeededRng;
use crate::special::softplus;
use candle_core::{Result, Tensor};

/// Bernoulli(σ(l)) from logits l, elementwise: the emit/skip decisions of the online monotonic
/// alignment model (Lawson et al. 2018).
///
/// * log p(b) = b · l - softplus(l)
/// * H = softplus(l) - l · σ(l)
/// * KL(q || p) = σ(l_q)(l_q - l_p) + softplus(l_p) - softplus(l_q)
///
/// ```
/// use candle_core::{Device, Tensor};
/// use varattn::distributions::{Bernoulli, Distribution};
/// let b = Bernoulli::from_logits(Tensor::new(&[0.0f64], &Device::Cpu)?);
/// assert!((b.entropy()?.to_vec1::<f64>()?[0] - 2f64.ln()).abs() < 1e-12);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Bernoulli {
    pub logits: Tensor,
}

impl Bernoulli {
    pub fn from_logits(logits: Tensor) -> Self {
        Self { logits }
    }

    pub fn probs(&self) -> Result<Tensor> {
        candle_nn::ops::sigmoid(&self.logits)
    }
}

impl Distribution for Bernoulli {
    fn log_prob(&self, b: &Tensor) -> Result<Tensor> {
        b.to_dtype(self.logits.dtype())?.mul(&self.logits)? - softplus(&self.logits)?
    }

    fn sample(&self, rng: &mut SeededRng) -> Result<Tensor> {
        rng.bernoulli(&self.probs()?.detach())?.to_dtype(self.logits.dtype())
    }

    fn entropy(&self) -> Result<Tensor> {
        softplus(&self.logits)? - self.logits.mul(&self.probs()?)?
    }

    fn mean(&self) -> Result<Tensor> {
        self.probs()
    }

    fn name(&self) -> &'static str {
        "Bernoulli"
    }
}

impl KlDivergence<Bernoulli> for Bernoulli {
    fn kl(&self, p: &Bernoulli) -> Result<Tensor> {
        let diff = (&self.logits - &p.logits)?;
        (self.probs()?.mul(&diff)? + softplus(&p.logits)?)? - softplus(&self.logits)?
    }
}
