//! Reparameterised (pathwise) estimators with relaxed alignments on the simplex.
use super::{Estimate, Parts};
use crate::distributions::{Categorical, Dirichlet, Distribution, KlDivergence, RelaxedCategorical};
use crate::rng::SeededRng;
use candle_core::{Result, Tensor};
use candle_core::D;

/// Gumbel-softmax variational attention: y ~ Concrete(q, τ) is a reparameterised relaxed sample
/// of the categorical posterior, the model reads the context Σ_i y_i x̃_i, and the objective is
/// log f(x, y) - KL(q ‖ p) with the categorical KL in closed form (the authors use τ = 0.1).
/// `log_f_relaxed(y [..., S]) -> [...]`.
///
/// ```
/// use candle_core::{Device, Tensor, D};
/// use varattn::distributions::Categorical;
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
/// is that of the categorical E_p\[z\] = a_p / a_p0.
///
/// ```
/// use candle_core::{Device, Tensor, D};
/// use varattn::distributions::{Dirichlet, Positivity};
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

/// Importance-weighted lower bound on the relaxed (Dirichlet) model's per-token log-likelihood
/// log p(y_t | x, y_<t) = log E_{Dir(a_p)}[f(x, z)], with K draws z_k ~ Dir(a_q) from the
/// inference network (Burda et al. 2016):
///
/// ```text
/// L_K = log 1/K Σ_k exp(log f(x, z_k) + log Dir(z_k; a_p) - log Dir(z_k; a_q)) ≤ log p(y_t)
/// ```
///
/// in expectation, rising towards log p(y_t) as K grows. This, not a marginal likelihood, is what
/// the relaxed row's test perplexity exp(-Σ_t L_K / T) is made of: an upper bound on its
/// perplexity. The draws come from `rng` (one `[..., S]` draw per k, in order) and carry no
/// gradient; `log_f_relaxed(z [..., S]) -> [...]` reads the context Σ_i z_i x̃_i. The metrics'
/// NLL is -Σ_t L_K and the prior entropy that of E_p\[z\] = a_p / a_p0.
///
/// ```
/// use candle_core::{Device, Tensor, D};
/// use varattn::distributions::{Dirichlet, Positivity};
/// use varattn::objective::relaxed_iw_bound;
/// use varattn::rng::SeededRng;
/// let dev = Device::Cpu;
/// let p = Dirichlet::new(Tensor::new(&[[2.0f64, 1.0, 3.0]], &dev)?, None)?;
/// let q = Dirichlet::new(Tensor::new(&[[3.0f64, 1.5, 2.5]], &dev)?, None)?;
/// // f(x, z) = z_1: p(y) = E_p[z_1] = a_1 / a_0 = 1/3
/// let f = |z: &Tensor| z.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?.log();
/// let est = relaxed_iw_bound(&p, &q, f, 16, &mut SeededRng::new(0), None)?;
/// assert!(est.metrics.nll_sum.unwrap().is_finite());
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn relaxed_iw_bound<F>(
    prior: &Dirichlet,
    posterior: &Dirichlet,
    mut log_f_relaxed: F,
    samples: usize,
    rng: &mut SeededRng,
    mask: Option<&Tensor>,
) -> Result<Estimate>
where
    F: FnMut(&Tensor) -> Result<Tensor>,
{
    if samples == 0 {
        candle_core::bail!("the importance-weighted bound needs at least 1 sample, got 0")
    }
    let mut log_w = Vec::with_capacity(samples);
    for _ in 0..samples {
        let z = posterior.sample(rng)?;
        let lf = log_f_relaxed(&z)?.to_dtype(z.dtype())?;
        log_w.push(((lf + prior.log_prob(&z)?)? - posterior.log_prob(&z)?)?);
    }
    let bound = (Tensor::stack(&log_w, 0)?.log_sum_exp(0)? - (samples as f64).ln())?.detach();
    let prior_mean = prior.mean()?.detach();
    let entropy = prior_mean.mul(&prior_mean.clamp(1e-30, 1.0)?.log()?)?.sum(D::Minus1)?.neg()?;
    Parts { prior_entropy: entropy, mask, surrogate: bound.clone(), value: bound.clone(), log_lik: Some(bound), kl: None }
        .finish()
}
