//! Single-sample score-function (REINFORCE) estimators with control variates.
use super::{masked_total, scalar, token_weights, Estimate, Parts};
use crate::distributions::{Categorical, Distribution, KlDivergence};
use crate::rng::SeededRng;
use candle_core::{Result, Tensor};

/// An exponential moving average of the reward, b ← d·b + (1 - d)·mean(r), a baseline that
/// needs no extra model evaluation.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MovingAverage {
    pub decay: f64,
    pub value: Option<f64>,
}

impl MovingAverage {
    pub fn new(decay: f64) -> Self {
        Self { decay, value: None }
    }

    /// The current baseline (0 before the first update).
    pub fn get(&self) -> f64 {
        self.value.unwrap_or(0.0)
    }

    pub fn update(&mut self, mean_reward: f64) {
        self.value = Some(match self.value {
            None => mean_reward,
            Some(b) => self.decay * b + (1.0 - self.decay) * mean_reward,
        });
    }
}

/// Control variate b subtracted from the reward r = log f(x, z) in the score-function term.
#[derive(Debug)]
pub enum Baseline<'a> {
    /// b = 0.
    None,
    /// b_t = log f(x, E_p\[z\]) at the same step: the soft-attention score, as in Deng et al.
    /// (per step `[...]`, detached here).
    Soft(&'a Tensor),
    /// b = a running average of the reward over batches (updated after use).
    MovingAverage(&'a mut MovingAverage),
    /// b_{t,k} = mean of the other K - 1 samples' rewards (needs K ≥ 2).
    LeaveOneOut,
}

/// Per-step REINFORCE surrogate averaged over K samples:
/// s_t = 1/K Σ_k [ r_k + sg(r_k - b_k) · log π(z_k) ], whose gradient is the pathwise gradient of
/// r plus the score-function gradient of E_π[r]. `rewards` and `log_pi` are `[K, ...]`.
fn score_function_surrogate(
    rewards: &Tensor,
    log_pi: &Tensor,
    baseline: Baseline<'_>,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let k = rewards.dim(0)?;
    let r = rewards.detach();
    let b = match baseline {
        Baseline::None => r.zeros_like()?,
        Baseline::Soft(t) => t.detach().unsqueeze(0)?.broadcast_as(r.shape())?.to_dtype(r.dtype())?,
        Baseline::MovingAverage(ma) => {
            let b = r.ones_like()?.affine(ma.get(), 0.0)?;
            let per_step = r.mean(0)?;
            let tokens = scalar(&token_weights(&per_step, mask)?.sum_all()?)?;
            ma.update(scalar(&masked_total(&per_step, mask)?)? / tokens);
            b
        }
        Baseline::LeaveOneOut => {
            if k < 2 {
                candle_core::bail!("the leave-one-out baseline needs at least 2 samples, got {k}")
            }
            let total = r.sum_keepdim(0)?;
            (total.broadcast_sub(&r)? / (k - 1) as f64)?
        }
    };
    let advantage = (r - b)?;
    (rewards + advantage.mul(log_pi)?)?.mean(0)
}

/// Hard attention trained by sampling: objective E_{z~p}[log f(x, z)], estimated with K samples
/// z_k ~ p(z_t) and REINFORCE for p:
/// ∇ ≈ 1/K Σ_k [∇ log f(x, z_k) + (log f(x, z_k) - b) ∇ log p(z_k)].
/// `log_f_at(z [K, ...]) -> [K, ...]` evaluates the gold-token log-likelihood at the sampled
/// alignments only. No exact NLL is reported (validate with [`super::exact_marginal`]).
///
/// ```
/// use candle_core::{Device, Tensor, D};
/// use varattn::distributions::Categorical;
/// use varattn::objective::{hard_sample, Baseline};
/// use varattn::rng::SeededRng;
/// let dev = Device::Cpu;
/// let prior = Categorical::from_logits(&Tensor::new(&[[0.0f32, 1.0, 2.0]], &dev)?, None)?;
/// let log_f = Tensor::new(&[[-0.1f32, -2.0, -1.0]], &dev)?;
/// let at = |z: &Tensor| log_f.broadcast_as((z.dim(0)?, 1, 3))?.contiguous()?
///     .gather(&z.unsqueeze(D::Minus1)?, D::Minus1)?.squeeze(D::Minus1);
/// let est = hard_sample(&prior, at, 4, Baseline::LeaveOneOut, &mut SeededRng::new(0), None)?;
/// assert!(est.metrics.objective_sum <= -0.1);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn hard_sample<F>(
    prior: &Categorical,
    log_f_at: F,
    samples: usize,
    baseline: Baseline<'_>,
    rng: &mut SeededRng,
    mask: Option<&Tensor>,
) -> Result<Estimate>
where
    F: FnOnce(&Tensor) -> Result<Tensor>,
{
    let z = prior.sample_n(samples, rng)?;
    let rewards = log_f_at(&z)?;
    let log_p = prior.log_prob(&z)?;
    let surrogate = score_function_surrogate(&rewards, &log_p, baseline, mask)?;
    let value = rewards.detach().mean(0)?;
    Parts { prior_entropy: prior.entropy()?, mask, surrogate, value, log_lik: None, kl: None }
        .finish()
}

/// Categorical variational attention trained by sampling: the ELBO
/// E_{z~q}[log f(x, z)] - KL(q ‖ p) with K samples from q, REINFORCE for q and the analytic KL
/// for p and q:
/// ∇ ≈ 1/K Σ_k [∇ log f(x, z_k) + (log f(x, z_k) - b) ∇ log q(z_k)] - ∇ KL(q ‖ p).
///
/// ```
/// use candle_core::{Device, Tensor, D};
/// use varattn::distributions::Categorical;
/// use varattn::objective::{variational_sample, Baseline};
/// use varattn::rng::SeededRng;
/// let dev = Device::Cpu;
/// let prior = Categorical::from_logits(&Tensor::new(&[[0.0f32, 1.0, 2.0]], &dev)?, None)?;
/// let q = Categorical::from_logits(&Tensor::new(&[[2.0f32, 0.0, 0.0]], &dev)?, None)?;
/// let log_f = Tensor::new(&[[-0.1f32, -2.0, -1.0]], &dev)?;
/// let at = |z: &Tensor| log_f.broadcast_as((z.dim(0)?, 1, 3))?.contiguous()?
///     .gather(&z.unsqueeze(D::Minus1)?, D::Minus1)?.squeeze(D::Minus1);
/// let est = variational_sample(&prior, &q, at, 1, Baseline::None, &mut SeededRng::new(0), None)?;
/// assert!(est.metrics.kl_sum.unwrap() > 0.0);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn variational_sample<F>(
    prior: &Categorical,
    posterior: &Categorical,
    log_f_at: F,
    samples: usize,
    baseline: Baseline<'_>,
    rng: &mut SeededRng,
    mask: Option<&Tensor>,
) -> Result<Estimate>
where
    F: FnOnce(&Tensor) -> Result<Tensor>,
{
    let z = posterior.sample_n(samples, rng)?;
    let rewards = log_f_at(&z)?;
    let log_q = posterior.log_prob(&z)?;
    let kl = posterior.kl(prior)?;
    let surrogate = (score_function_surrogate(&rewards, &log_q, baseline, mask)? - &kl)?;
    let value = (rewards.detach().mean(0)? - kl.detach())?;
    Parts { prior_entropy: prior.entropy()?, mask, surrogate, value, log_lik: None, kl: Some(kl) }
        .finish()
}
