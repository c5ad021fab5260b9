//! Alignment distributions: what the latent alignment z is.
//!
//! Every distribution is batched over leading dimensions and, for distributions over the S
//! alignment positions, over the last dimension `[..., S]`. Padding positions are excluded by an
//! optional mask of the same shape (1 = real position, 0 = padding): they get zero probability
//! and are left out of every sum.
//!
//! Each type offers what `torch.distributions` offers through [`Distribution`]: `log_prob`,
//! seeded `sample`, `rsample` where a reparameterisation exists, `entropy` and `mean`, and
//! closed-form KL divergences through [`KlDivergence`].
mod bernoulli;
mod categorical;
mod dirichlet;
mod gamma;
mod relaxed;
mod weibull;

pub use bernoulli::Bernoulli;
pub use categorical::Categorical;
pub(crate) use categorical::gather_last;
pub use dirichlet::{Dirichlet, Positivity};
pub use gamma::Gamma;
pub use relaxed::RelaxedCategorical;
pub use weibull::Weibull;

use crate::rng::SeededRng;
use candle_core::{Result, Tensor};

/// The uniform interface of a distribution (batched; reductions over the event dimension).
pub trait Distribution {
    /// log p(value): a log-mass or log-density, one per batch element.
    fn log_prob(&self, value: &Tensor) -> Result<Tensor>;
    /// A draw from the seeded generator; carries no gradient.
    fn sample(&self, rng: &mut SeededRng) -> Result<Tensor>;
    /// A reparameterised draw: differentiable in the distribution's parameters.
    fn rsample(&self, _rng: &mut SeededRng) -> Result<Tensor> {
        candle_core::bail!("{} has no reparameterised sampler", self.name())
    }
    /// Entropy H(p) = -E_p[log p], one per batch element.
    fn entropy(&self) -> Result<Tensor>;
    /// E_p\[z\].
    fn mean(&self) -> Result<Tensor>;
    /// A short name for error messages.
    fn name(&self) -> &'static str;
}

/// KL(self || p) in closed form, one value per batch element.
pub trait KlDivergence<P> {
    fn kl(&self, p: &P) -> Result<Tensor>;
}

/// Log-probability given to padding positions: finite, so that 0 · log p stays 0.
pub const MASKED_LOGIT: f64 = -1e9;

/// Replace masked positions of `logits` by [`MASKED_LOGIT`], keeping the gradient of the others.
pub(crate) fn apply_logit_mask(logits: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    match mask {
        None => Ok(logits.clone()),
        Some(m) => {
            let m = m.to_dtype(logits.dtype())?.broadcast_as(logits.shape())?;
            let pad = ((1.0 - &m)? * MASKED_LOGIT)?;
            logits.mul(&m)? + pad
        }
    }
}

/// Sum over the last dimension, counting only unmasked positions.
pub(crate) fn masked_sum_last(x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    match mask {
        None => x.sum(candle_core::D::Minus1),
        Some(m) => x.mul(&m.to_dtype(x.dtype())?.broadcast_as(x.shape())?)?.sum(candle_core::D::Minus1),
    }
}

/// Euler-Mascheroni constant γ.
pub const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
