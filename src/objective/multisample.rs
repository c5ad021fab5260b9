//! Multi-sample estimators: reweighted wake-sleep and VIMCO.
use super::{Estimate, Parts};
use crate::distributions::{Categorical, Distribution, KlDivergence};
use crate::rng::SeededRng;
use candle_core::{Result, Tensor};

/// Reweighted wake-sleep (Bornschein & Bengio 2015) with K samples z_k ~ q and the control
/// variates of Deng et al.'s code (harvardnlp/var-attn, `wsram` mode):
/// log w_k = log p(z_k) + log f(x, z_k) - log q(z_k), w̃ = softmax_k(log w),
/// b^p = softmax_k(log p(z_k) - log q(z_k)) (normalised importance ratios), all held constant.
/// Per token the surrogate to maximise is
///
/// ```text
/// Σ_k w̃_k log f(x, z_k) + Σ_k (w̃_k - b^p_k) log p(z_k) + Σ_k (w̃_k - 1/K) log q(z_k),
/// ```
///
/// so f gets Σ_k w̃_k ∇ log f(x, z_k) ≈ ∇ log p(y_t), p gets the wake gradient with the
/// self-normalised estimate of E_p[∇ log p] = 0 subtracted, and q gets the wake-phase gradient
/// Σ_k w̃_k ∇ log q(z_k) (fits q to the posterior, KL(p(z|y) ‖ q)) with the Monte Carlo estimate
/// of E_q[∇ log q] = 0 subtracted. There is no KL term in the loss: KL(q ‖ p) is reported in the
/// metrics only, and [`Estimate::loss_with_kl_weight`] leaves the loss unchanged at any weight.
/// The value reported is the importance-weighted bound log 1/K Σ_k w_k.
///
/// ```
/// use candle_core::{Device, Tensor, D};
/// use varattn::distributions::Categorical;
/// use varattn::objective::{exact_marginal, rws};
/// use varattn::rng::SeededRng;
/// let dev = Device::Cpu;
/// let prior = Categorical::from_logits(&Tensor::new(&[[0.0f32, 1.0, 2.0]], &dev)?, None)?;
/// let q = Categorical::from_logits(&Tensor::new(&[[1.0f32, 1.0, 1.0]], &dev)?, None)?;
/// let log_f = Tensor::new(&[[-0.1f32, -2.0, -1.0]], &dev)?;
/// let at = |z: &Tensor| log_f.broadcast_as((z.dim(0)?, 1, 3))?.contiguous()?
///     .gather(&z.unsqueeze(D::Minus1)?, D::Minus1)?.squeeze(D::Minus1);
/// let est = rws(&prior, &q, at, 5, &mut SeededRng::new(0), None)?;
/// let exact = exact_marginal(&prior, &log_f, None)?.metrics.objective_sum;
/// assert!(est.metrics.objective_sum.is_finite() && exact.is_finite());
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn rws<F>(
    prior: &Categorical,
    posterior: &Categorical,
    log_f_at: F,
    samples: usize,
    rng: &mut SeededRng,
    mask: Option<&Tensor>,
) -> Result<Estimate>
where
    F: FnOnce(&Tensor) -> Result<Tensor>,
{
    let z = posterior.sample_n(samples, rng)?;
    let log_f = log_f_at(&z)?;
    let log_p = prior.log_prob(&z)?;
    let log_q = posterior.log_prob(&z)?;
    let log_ratio = (&log_p - &log_q)?.detach();
    let log_w = (&log_ratio + &log_f)?.detach();
    let w = candle_nn::ops::softmax(&log_w, 0)?;
    let b_p = candle_nn::ops::softmax(&log_ratio, 0)?;
    let wake_f = w.mul(&log_f)?.sum(0)?;
    let wake_p = (&w - b_p)?.mul(&log_p)?.sum(0)?;
    let wake_q = (&w - 1.0 / samples as f64)?.mul(&log_q)?.sum(0)?;
    let bound = (log_w.log_sum_exp(0)? - (samples as f64).ln())?;
    let kl = posterior.kl(prior)?;
    let mut est = Parts {
        prior_entropy: prior.entropy()?,
        mask,
        surrogate: ((wake_f + wake_p)? + wake_q)?,
        value: bound,
        log_lik: None,
        kl: Some(kl),
    }
    .finish()?;
    est.kl_total = None;
    Ok(est)
}

/// VIMCO's multi-sample bound and leave-one-out learning signals (Mnih & Rezende 2016), for
/// log-weights `[K, ...]`:
/// L = log 1/K Σ_k w_k, and for each k
/// L_{-k} = log 1/K (Σ_{j≠k} w_j + ŵ_{-k}), ŵ_{-k} = exp(1/(K-1) Σ_{j≠k} log w_j).
/// Returns `(L [...], L - L_{-k} [K, ...])`, both detached. Needs K ≥ 2.
pub fn vimco_learning_signals(log_w: &Tensor) -> Result<(Tensor, Tensor)> {
    let k = log_w.dim(0)?;
    if k < 2 {
        candle_core::bail!("VIMCO needs at least 2 samples, got {k}")
    }
    let lw = log_w.detach();
    let ln_k = (k as f64).ln();
    let bound = (lw.log_sum_exp(0)? - ln_k)?;
    let total = lw.sum_keepdim(0)?;
    let geo = (total.broadcast_sub(&lw)? / (k - 1) as f64)?; // log ŵ_{-k}, [K, ...]
    let mut loo = Vec::with_capacity(k);
    for j in 0..k {
        let mut parts = Vec::with_capacity(3);
        if j > 0 {
            parts.push(lw.narrow(0, 0, j)?);
        }
        parts.push(geo.narrow(0, j, 1)?);
        if j + 1 < k {
            parts.push(lw.narrow(0, j + 1, k - j - 1)?);
        }
        loo.push((Tensor::cat(&parts, 0)?.log_sum_exp(0)? - ln_k)?);
    }
    let loo = Tensor::stack(&loo, 0)?;
    let signal = bound.unsqueeze(0)?.broadcast_sub(&loo)?;
    Ok((bound, signal))
}

/// VIMCO: maximise the K-sample bound L = log 1/K Σ_k p(z_k) f(x, z_k) / q(z_k), z_k ~ q, with
/// the gradient Σ_k (L - L_{-k}) ∇ log q(z_k) + Σ_k w̃_k ∇ log w_k, unbiased for ∇ E\[L\].
/// With `posterior = None` the proposal is the prior itself (hard attention with a multi-sample
/// objective): log w_k = log f(x, z_k). The bound holds KL(q ‖ p) implicitly, so the loss has no
/// separate KL term: KL is reported in the metrics only, and [`Estimate::loss_with_kl_weight`]
/// leaves the loss unchanged at any weight.
///
/// ```
/// use candle_core::{Device, Tensor, D};
/// use varattn::distributions::Categorical;
/// use varattn::objective::{exact_marginal, vimco};
/// use varattn::rng::SeededRng;
/// let dev = Device::Cpu;
/// let prior = Categorical::from_logits(&Tensor::new(&[[0.0f32, 1.0, 2.0]], &dev)?, None)?;
/// let log_f = Tensor::new(&[[-0.1f32, -2.0, -1.0]], &dev)?;
/// let at = |z: &Tensor| log_f.broadcast_as((z.dim(0)?, 1, 3))?.contiguous()?
///     .gather(&z.unsqueeze(D::Minus1)?, D::Minus1)?.squeeze(D::Minus1);
/// // one draw of the K-sample bound may exceed log p(y); its expectation may not
/// let est = vimco(&prior, None, at, 8, &mut SeededRng::new(0), None)?;
/// assert!(est.metrics.objective_sum.is_finite());
/// let n = 4000;
/// let prior_n = Categorical::from_logits(&Tensor::new(&[[0.0f32, 1.0, 2.0]], &dev)?.repeat((n, 1))?, None)?;
/// let log_f_n = log_f.repeat((n, 1))?;
/// let at_n = |z: &Tensor| log_f_n.broadcast_as((z.dim(0)?, n, 3))?.contiguous()?
///     .gather(&z.unsqueeze(D::Minus1)?, D::Minus1)?.squeeze(D::Minus1);
/// let mean_bound = vimco(&prior_n, None, at_n, 8, &mut SeededRng::new(0), None)?.metrics.objective_sum / n as f64;
/// assert!(mean_bound <= exact_marginal(&prior, &log_f, None)?.metrics.objective_sum);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn vimco<F>(
    prior: &Categorical,
    posterior: Option<&Categorical>,
    log_f_at: F,
    samples: usize,
    rng: &mut SeededRng,
    mask: Option<&Tensor>,
) -> Result<Estimate>
where
    F: FnOnce(&Tensor) -> Result<Tensor>,
{
    let proposal = posterior.unwrap_or(prior);
    let z = proposal.sample_n(samples, rng)?;
    let log_f = log_f_at(&z)?;
    let log_q = proposal.log_prob(&z)?;
    let log_w = match posterior {
        Some(_) => ((prior.log_prob(&z)? + &log_f)? - &log_q)?,
        None => log_f,
    };
    let (_, signal) = vimco_learning_signals(&log_w)?;
    let bound = (log_w.log_sum_exp(0)? - (samples as f64).ln())?;
    let surrogate = (&bound + signal.mul(&log_q)?.sum(0)?)?;
    let kl = posterior.map(|q| q.kl(prior)).transpose()?;
    let mut est = Parts { prior_entropy: prior.entropy()?, mask, surrogate, value: bound.detach(), log_lik: None, kl }
        .finish()?;
    est.kl_total = None;
    Ok(est)
}
