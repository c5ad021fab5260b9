//! Reparameterised (pathwise) estimators with relaxed alignments on the simplex.
use super::{Estimate, Parts};
use crate::dist::{Categorical, Dirichlet, Distribution, KlDivergence, RelaxedCategorical};
use crate::rng::SeededRng;
use candle_core::{Result, Tensor};

/// Gumbel-softmax variational attention: y ~ Concrete(q, τ) is a reparameterised relaxed sample
/// of the categorical posterior, the model reads the context Σ_i y_i x̃_i, and the objective is
/// log f(x, y) - KL(q ‖ p) with the categorical KL in closed form (the authors use τ = 0.1).
/// `log_f_relaxed(y [..., S]) -> [...]`.
///
/// ```
/// use candle_core::{Device, Tensor, D};
/// use varattn::dist::Categorical;
/// use varattn::objective::gumbel_softmax;
/// use varattn::rng::SeededRng;
/// let dev = Device::Cpu;
/// let prior = Categorical::from_logits(&Tensor::new(&[[0.0f32, 1.0]], &dev)?, None)?;
/// let q = Categorical::from_logits(&Tensor::new(&[[1.0f32, 0.0]], &dev)?, None)?;
/// let log_f = Tensor::new(&[[-0.1f32, -2.0]], &dev)?;
/// let f_relaxed = |y: &Tensor| y.mul(&log_f)?.sum(D::Minus1);
/// let est = gumbel_softmax(&prior, &q, 0.1, f_relaxed, &mut SeededRng::new(0), None)?;
/// assert!(est.loss.to_scalar::<f32>()?.is_finite());
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn gumbel_softmax<F>(
    prior: &Categorical,
    posterior: &Categorical,
    temperature: f64,
    log_f_relaxed: F,
    rng: &mut SeededRng,
    mask: Option<&Tensor>,
) -> Result<Estimate>
where
    F: FnOnce(&Tensor) -> Result<Tensor>,
{
    let relaxed = RelaxedCategorical::from_logits(posterior.log_probs(), temperature, posterior.mask())?;
    let y = relaxed.rsample(rng)?;
    let reward = log_f_relaxed(&y)?;
    let kl = posterior.kl(prior)?;
    let elbo = (reward - &kl)?;
    Parts {
        prior_entropy: prior.entropy()?,
        mask,
        surrogate: elbo.clone(),
        value: elbo.detach(),
        log_lik: None,
        kl: Some(kl),
    }
    .finish()
}

/// Relaxed (Dirichlet) variational attention: z ~ Dir(a_q) on the simplex, reparameterised
/// through implicit gamma gradients; the objective is
/// E_{Dir(a_q)}[log f(x, z)] - KL(Dir(a_q) ‖ Dir(a_p)), one sample, KL in closed form.
/// `log_f_relaxed(z [..., S]) -> [...]` reads the context Σ_i z_i x̃_i. The prior entropy reported
/// is that of the categorical E_p[z] = a_p / a_p0.
///
/// ```
/// use candle_core::{Device, Tensor, D};
/// use varattn::dist::{Dirichlet, Positivity};
/// use varattn::objective::variational_relaxed;
/// use varattn::rng::SeededRng;
/// let dev = Device::Cpu;
/// let p = Dirichlet::from_scores(&Tensor::new(&[[0.0f32, 1.0]], &dev)?, Positivity::Exp, None)?;
/// let q = Dirichlet::from_scores(&Tensor::new(&[[1.0f32, 0.0]], &dev)?, Positivity::Exp, None)?;
/// let log_f = Tensor::new(&[[-0.1f32, -2.0]], &dev)?;
/// let est = variational_relaxed(&p, &q, |z: &Tensor| z.mul(&log_f)?.sum(D::Minus1), &mut SeededRng::new(0), None)?;
/// assert!(est.metrics.kl_sum.unwrap() > 0.0);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn variational_relaxed<F>(
    prior: &Dirichlet,
    posterior: &Dirichlet,
    log_f_relaxed: F,
    rng: &mut SeededRng,
    mask: Option<&Tensor>,
) -> Result<Estimate>
where
    F: FnOnce(&Tensor) -> Result<Tensor>,
{
    let z = posterior.rsample(rng)?;
    let reward = log_f_relaxed(&z)?;
    let kl = posterior.kl(prior)?;
    let elbo = (reward - &kl)?;
    let prior_mean = prior.mean()?.detach();
    let entropy = prior_mean.mul(&prior_mean.clamp(1e-30, 1.0)?.log()?)?.sum(candle_core::D::Minus1)?.neg()?;
    Parts { prior_entropy: entropy, mask, surrogate: elbo.clone(), value: elbo.detach(), log_lik: None, kl: Some(kl) }
        .finish()
}
