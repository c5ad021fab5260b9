//! Objectives that enumerate every alignment: exact in z, O(S) output-layer evaluations.
use super::{Estimate, Parts};
use crate::distributions::{Categorical, Distribution, KlDivergence};
use candle_core::{Result, Tensor, D};

/// log Σ_i exp(log p_i + log f_i) over the last dimension: the exact marginal log-likelihood
/// log p(y_t | x, y_<t) = log Σ_i p(z_t = i) f(x, i), per step `[...]`.
pub fn exact_marginal_from_log_probs(log_p: &Tensor, log_f: &Tensor) -> Result<Tensor> {
    (log_p + log_f)?.log_sum_exp(D::Minus1)
}

/// Soft attention: log f(x, E_p\[z\]), the likelihood of the output given the deterministic
/// context Σ_i p_i x̃_i. `log_f_soft` `[...]` is that log-likelihood, computed by the model; the
/// prior is passed for its entropy. Its NLL is the soft model's own likelihood.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use varattn::distributions::Categorical;
/// use varattn::objective::soft;
/// let dev = Device::Cpu;
/// let prior = Categorical::from_logits(&Tensor::new(&[[0.0f32, 1.0]], &dev)?, None)?;
/// let log_f_soft = Tensor::new(&[-0.7f32], &dev)?;
/// let est = soft(&prior, &log_f_soft, None)?;
/// assert!((est.loss.to_scalar::<f32>()? - 0.7).abs() < 1e-6);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn soft(prior: &Categorical, log_f_soft: &Tensor, mask: Option<&Tensor>) -> Result<Estimate> {
    Parts {
        prior_entropy: prior.entropy()?,
        mask,
        surrogate: log_f_soft.clone(),
        value: log_f_soft.clone(),
        log_lik: Some(log_f_soft.clone()),
        kl: None,
    }
    .finish()
}

/// Marginal likelihood, exact: log p(y_t) = log Σ_i p_i f(x, i), gradients by enumeration.
/// `log_f` is `[..., S]`, log f(x, i) of the gold token for every alignment i.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use varattn::distributions::Categorical;
/// use varattn::objective::{exact_marginal, hard_enum};
/// let dev = Device::Cpu;
/// let prior = Categorical::from_logits(&Tensor::new(&[[0.0f32, 1.0, -1.0]], &dev)?, None)?;
/// let log_f = Tensor::new(&[[-0.1f32, -3.0, -0.5]], &dev)?;
/// let exact = exact_marginal(&prior, &log_f, None)?;
/// let jensen = hard_enum(&prior, &log_f, None)?;
/// // Σ p_i log f_i <= log Σ p_i f_i
/// assert!(jensen.metrics.objective_sum <= exact.metrics.objective_sum);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn exact_marginal(prior: &Categorical, log_f: &Tensor, mask: Option<&Tensor>) -> Result<Estimate> {
    let ll = exact_marginal_from_log_probs(prior.log_probs(), log_f)?;
    Parts { prior_entropy: prior.entropy()?, mask, surrogate: ll.clone(), value: ll.clone(), log_lik: Some(ll), kl: None }
        .finish()
}

/// Hard attention, enumerated: the Jensen lower bound Σ_i p_i log f(x, i) ≤ log p(y_t),
/// maximised exactly over z. NLL reported is the exact marginal.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use varattn::distributions::Categorical;
/// use varattn::objective::hard_enum;
/// let dev = Device::Cpu;
/// let prior = Categorical::from_logits(&Tensor::new(&[[0.0f32, 0.0]], &dev)?, None)?;
/// let log_f = Tensor::new(&[[-1.0f32, -3.0]], &dev)?;
/// let est = hard_enum(&prior, &log_f, None)?;
/// assert!((est.metrics.objective_sum + 2.0).abs() < 1e-6); // ½(-1) + ½(-3)
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn hard_enum(prior: &Categorical, log_f: &Tensor, mask: Option<&Tensor>) -> Result<Estimate> {
    let bound = prior.probs()?.mul(log_f)?.sum(D::Minus1)?;
    let ll = exact_marginal_from_log_probs(prior.log_probs(), log_f)?;
    Parts { prior_entropy: prior.entropy()?, mask, surrogate: bound.clone(), value: bound, log_lik: Some(ll), kl: None }
        .finish()
}

/// Variational attention, enumerated: the ELBO Σ_i q_i log f(x, i) - KL(q ‖ p) ≤ log p(y_t),
/// with equality when q(z_t) is the true posterior p(z_t | x, y) ∝ p_i f(x, i). Gradients for
/// q, p and f are exact. NLL reported is the exact marginal under the prior.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use varattn::distributions::Categorical;
/// use varattn::objective::{exact_marginal, variational_enum};
/// let dev = Device::Cpu;
/// let prior = Categorical::from_logits(&Tensor::new(&[[0.0f32, 1.0]], &dev)?, None)?;
/// let q = Categorical::from_logits(&Tensor::new(&[[1.0f32, 0.0]], &dev)?, None)?;
/// let log_f = Tensor::new(&[[-0.2f32, -2.0]], &dev)?;
/// let elbo = variational_enum(&prior, &q, &log_f, None)?.metrics.objective_sum;
/// let exact = exact_marginal(&prior, &log_f, None)?.metrics.objective_sum;
/// assert!(elbo <= exact);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn variational_enum(
    prior: &Categorical,
    posterior: &Categorical,
    log_f: &Tensor,
    mask: Option<&Tensor>,
) -> Result<Estimate> {
    let kl = posterior.kl(prior)?;
    let elbo = (posterior.probs()?.mul(log_f)?.sum(D::Minus1)? - &kl)?;
    let ll = exact_marginal_from_log_probs(prior.log_probs(), log_f)?;
    Parts { prior_entropy: prior.entropy()?, mask, surrogate: elbo.clone(), value: elbo, log_lik: Some(ll), kl: Some(kl) }
        .finish()
}

/// K-Max marginal likelihood: keep the K most probable alignments under p, renormalise,
/// log p_K(y_t) = log Σ_{i ∈ top-K} p_K(i) f(x, i). The model is asked for log f only at the K
/// chosen indices (`log_f_at(idx [..., K]) -> [..., K]`), so the cost grows with K, not S.
/// NLL reported is the K-Max model's (Table 2 "K-Max" columns).
///
/// ```
/// use candle_core::{Device, Tensor, D};
/// use varattn::distributions::Categorical;
/// use varattn::objective::{exact_marginal, kmax_marginal};
/// let dev = Device::Cpu;
/// let prior = Categorical::from_logits(&Tensor::new(&[[3.0f32, 0.0, 1.0, -2.0]], &dev)?, None)?;
/// let log_f = Tensor::new(&[[-0.5f32, -1.0, -2.0, -0.1]], &dev)?;
/// let at = |idx: &Tensor| log_f.gather(idx, D::Minus1);
/// let k4 = kmax_marginal(&prior, 4, at)?.metrics.nll_sum.unwrap();
/// let exact = exact_marginal(&prior, &log_f, None)?.metrics.nll_sum.unwrap();
/// assert!((k4 - exact).abs() < 1e-5); // K = S is exact
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn kmax_marginal<F>(prior: &Categorical, k: usize, log_f_at: F) -> Result<Estimate>
where
    F: FnOnce(&Tensor) -> Result<Tensor>,
{
    kmax_marginal_masked(prior, k, log_f_at, None)
}

/// [`kmax_marginal`] with a token mask.
pub fn kmax_marginal_masked<F>(
    prior: &Categorical,
    k: usize,
    log_f_at: F,
    mask: Option<&Tensor>,
) -> Result<Estimate>
where
    F: FnOnce(&Tensor) -> Result<Tensor>,
{
    let (idx, log_p_k) = prior.top_k(k)?;
    let log_f = log_f_at(&idx)?;
    let ll = exact_marginal_from_log_probs(&log_p_k, &log_f)?;
    Parts { prior_entropy: prior.entropy()?, mask, surrogate: ll.clone(), value: ll.clone(), log_lik: Some(ll), kl: None }
        .finish()
}
