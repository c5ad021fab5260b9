//! Estimators for a sequence of binary emit/skip decisions: the online monotonic alignment of
//! Lawson et al. (2018), trained by variational inference.
//!
//! # Notation
//!
//! An input x_1..x_S, labels y_1..y_T and emit decisions b = b_1..b_S ∈ {0, 1} with exactly T
//! ones. The model gives per-step log-probabilities, for K samples b^k ~ q of each of B
//! sequences, laid out `[K, B, S]`:
//!
//! * `log_p[k, b, i]` = log p(b_i | h_i) + b_i log p(y_{n_i} | h_i), the generative model's
//!   Bernoulli emit term and (when it emits) the label term, differentiable in θ;
//!   log p(y, b | x) = Σ_i log_p_i;
//! * `log_q[k, b, i]` = log q(b_i | b_<i, x, y), the approximate posterior's term,
//!   differentiable in φ; 0 at forced steps (emission forced when the remaining inputs equal the
//!   remaining labels, non-emission forced once all labels are out) and at padding.
//!
//! The per-step reward is R_i = log_p_i - log_q_i and the sequence log-weight
//! log w = Σ_i R_i = log p(y, b | x) - log q(b | x, y). Rewards are causal: R_i depends on
//! b_1..b_i only, so a score term ∇ log q(b_j) may be weighted by the future return
//! Σ_{i≥j} R_i alone.
//!
//! # Estimators ([`MonotonicEstimator`])
//!
//! | kind | objective | gradient for q (score-function part) |
//! |---|---|---|
//! | `reinforce` | ELBO E_q[log w] | (log w - c(x)) ∇ log q(b), c(x) = T · a, a learned scalar |
//! | `nvil` | ELBO | ((log w - c_ψ(x) - μ) / max(1, σ)) ∇ log q(b), c_ψ = T · MLP(x, y); μ, σ² running mean/variance of log w - c_ψ |
//! | `vimco` | L_K = log 1/K Σ_k w_k | Σ_k (L_K - L_{-k}) ∇ log q(b^k) + Σ_k w̃_k ∇ log w_k (Mnih & Rezende 2016) |
//! | `vimco-per-step` | ELBO | Σ_j (Σ_{i≥j} R_i^k - Ω_j^k) ∇ log q(b_j^k), Ω_j^k = 1/(K-1) Σ_{k'≠k} Σ_{i≥j} R_i^{k'} |
//!
//! The single-sample estimators (`reinforce`, `nvil`) average K independent estimates (K from the
//! config), so that every row spends the same K model evaluations per sequence. The generative
//! model gets the pathwise gradient ∇_θ log p(y, b^k | x) (averaged over k, or weighted by w̃_k for
//! VIMCO). The learned baselines are fitted by the squared error ((log w - c) / T)², which touches
//! only their own parameters. An entropy bonus β_t Σ_i H(q(b_i | b_<i, x, y)) along the sampled
//! paths (β decaying linearly to 0, see [`EntropyBonus`]) is added to every estimator.
use super::{Estimate, Metrics};
use candle_core::{DType, Result, Tensor, D};
use serde::{Deserialize, Serialize};

fn default_moments_decay() -> f64 {
    0.8
}

/// Which estimator trains the online monotonic transducer (a config's `objective`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum MonotonicEstimator {
    /// REINFORCE with a learned baseline c = T · a.
    Reinforce { samples: usize },
    /// NVIL (Mnih & Gregor 2014): input-dependent baseline and running mean/variance
    /// normalisation of the learning signal with decay `moments_decay` (the paper's 0.8).
    Nvil {
        samples: usize,
        #[serde(default = "default_moments_decay")]
        moments_decay: f64,
    },
    /// VIMCO: the K-sample bound with leave-one-out learning signals.
    Vimco { samples: usize },
    /// The per-step leave-one-out baseline Ω_j^k of Lawson et al.
    VimcoPerStep { samples: usize },
}

impl MonotonicEstimator {
    /// K, the samples per sequence.
    pub fn samples(&self) -> usize {
        match *self {
            MonotonicEstimator::Reinforce { samples }
            | MonotonicEstimator::Nvil { samples, .. }
            | MonotonicEstimator::Vimco { samples }
            | MonotonicEstimator::VimcoPerStep { samples } => samples,
        }
    }

    /// Does the estimator use a learned baseline c(x)?
    pub fn learned_baseline(&self) -> bool {
        matches!(self, MonotonicEstimator::Reinforce { .. } | MonotonicEstimator::Nvil { .. })
    }

    /// Checks K: at least 1, at least 2 for the leave-one-out estimators.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let k = self.samples();
        let min = match self {
            MonotonicEstimator::Vimco { .. } | MonotonicEstimator::VimcoPerStep { .. } => 2,
            _ => 1,
        };
        if k < min {
            return Err(format!("objective.samples = {k}: {self:?} needs at least {min}"));
        }
        if let MonotonicEstimator::Nvil { moments_decay, .. } = self {
            if !(0.0..1.0).contains(moments_decay) {
                return Err(format!("objective.moments_decay = {moments_decay}: must be in [0, 1)"));
            }
        }
        Ok(())
    }
}

/// Entropy bonus with a linearly decaying weight: β_t = weight · max(0, 1 - t / decay_steps)
/// (constant when `decay_steps` is 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntropyBonus {
    pub weight: f64,
    pub decay_steps: usize,
}

impl EntropyBonus {
    /// β_t after `step` updates.
    pub fn weight_at(&self, step: u64) -> f64 {
        if self.decay_steps == 0 {
            return self.weight;
        }
        self.weight * (1.0 - step as f64 / self.decay_steps as f64).max(0.0)
    }
}

/// Exponential running mean and variance of a learning signal (NVIL's normalisation):
/// μ ← α μ + (1 - α) mean(x), σ² ← α σ² + (1 - α) var(x), starting at the first batch's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RunningMoments {
    pub mean: Option<f64>,
    pub var: Option<f64>,
}

impl RunningMoments {
    /// (μ, max(1, σ)): the centre and scale of the normalisation, (0, 1) before any update.
    pub fn centre_scale(&self) -> (f64, f64) {
        (self.mean.unwrap_or(0.0), self.var.unwrap_or(1.0).sqrt().max(1.0))
    }

    pub fn update(&mut self, decay: f64, batch: &[f64]) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as f64;
        let m = batch.iter().sum::<f64>() / n;
        let v = batch.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n;
        self.mean = Some(self.mean.map_or(m, |old| decay * old + (1.0 - decay) * m));
        self.var = Some(self.var.map_or(v, |old| decay * old + (1.0 - decay) * v));
    }
}

/// What the monotonic estimators carry across batches (saved in checkpoints).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MonotonicState {
    /// Updates done (drives the entropy bonus schedule).
    pub steps: u64,
    /// NVIL's running moments of log w - c(x).
    pub moments: RunningMoments,
    /// Σ of squared learning signals and their count over training: the mean square of the
    /// (baselined) signal that multiplies ∇ log q, a cheap proxy for the estimator's variance.
    pub signal_sq_sum: f64,
    pub signal_count: f64,
}

/// Per-step scores of K sampled decision sequences for B sequences (see the module docs).
#[derive(Debug, Clone)]
pub struct SequenceScores {
    /// `[K, B, S]` generative terms, 0 at padding.
    pub log_p: Tensor,
    /// `[K, B, S]` posterior terms, 0 at forced steps and padding.
    pub log_q: Tensor,
    /// `[K, B, S]` entropy H(q(b_i | b_<i, x, y)) at free steps, 0 elsewhere.
    pub q_entropy: Tensor,
    /// `[K, B, S]` 1 at free (unforced, unpadded) steps, 0 elsewhere.
    pub free: Tensor,
    /// `[K, B, S]` entropy of the generative model's emit decision H(p(b_i | h_i)), 0 at padding.
    pub p_entropy: Tensor,
    /// T_b, the number of labels of each sequence `[B]` (f32).
    pub labels: Tensor,
}

/// The estimate of one batch and the learning signals it used.
#[derive(Debug, Clone)]
pub struct MonotonicEstimate {
    /// `loss` = -(Σ_b surrogate_b) / Σ_b T_b + baseline loss; metrics: `objective_sum` = Σ_b of
    /// the bound (ELBO estimate, or L_K for VIMCO), `tokens` = Σ_b T_b, `prior_entropy_sum` =
    /// the mean over k of Σ_i H(p(b_i | h_i)) along the sampled paths.
    pub estimate: Estimate,
    /// The learning signals that multiply ∇ log q (one per sequence and sample, or per step for
    /// `vimco-per-step`, free steps only), detached.
    pub signals: Vec<f64>,
}

/// Future returns F_j = Σ_{i≥j} R_i over the last dimension of `[..., S]`.
pub fn future_returns(rewards: &Tensor) -> Result<Tensor> {
    let s = rewards.dim(D::Minus1)?;
    let upper: Vec<f32> = (0..s * s).map(|n| if n / s >= n % s { 1.0 } else { 0.0 }).collect();
    // U[i, j] = 1 if i ≥ j, so (R U)_j = Σ_{i≥j} R_i
    let u = Tensor::from_vec(upper, (s, s), rewards.device())?.to_dtype(rewards.dtype())?;
    let dims = rewards.dims().to_vec();
    let flat = rewards.reshape(((), s))?;
    flat.matmul(&u)?.reshape(dims)
}

/// The per-step leave-one-out learning signals of Lawson et al. for rewards `[K, B, S]`:
/// F_j^k - Ω_j^k with F_j^k = Σ_{i≥j} R_i^k and Ω_j^k = 1/(K-1) Σ_{k'≠k} F_j^{k'}. Needs K ≥ 2.
pub fn vimco_per_step_signals(rewards: &Tensor) -> Result<Tensor> {
    let k = rewards.dim(0)?;
    if k < 2 {
        candle_core::bail!("the per-step leave-one-out baseline needs at least 2 samples, got {k}")
    }
    let f = future_returns(&rewards.detach())?;
    let total = f.sum_keepdim(0)?;
    let omega = (total.broadcast_sub(&f)? / (k - 1) as f64)?;
    f - omega
}

fn to_vec(t: &Tensor) -> Result<Vec<f64>> {
    t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()
}

/// Turns sampled [`SequenceScores`] into a loss for `estimator` (see the module docs).
///
/// `baseline_per_label` `[B]` is the learned baseline ĉ(x) per label (c = T · ĉ), needed by
/// `reinforce` and `nvil`; its gradient flows only through the squared-error term. `state`
/// carries NVIL's running moments and the step counter; with `update_state = false` (gradient
/// checks, variance measurements) it is read but not changed. `entropy_weight` is β_t.
pub fn monotonic_estimate(
    estimator: &MonotonicEstimator,
    scores: &SequenceScores,
    baseline_per_label: Option<&Tensor>,
    state: &mut MonotonicState,
    update_state: bool,
    entropy_weight: f64,
) -> Result<MonotonicEstimate> {
    let k = scores.log_p.dim(0)?;
    let labels = scores.labels.to_dtype(scores.log_p.dtype())?;
    let tokens = labels.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    if tokens <= 0.0 {
        candle_core::bail!("monotonic estimator over a batch with no labels")
    }
    let log_p_seq = scores.log_p.sum(D::Minus1)?; // [K, B]
    let log_q_seq = scores.log_q.sum(D::Minus1)?; // [K, B]
    let log_w = (&log_p_seq - &log_q_seq)?; // differentiable
    let lw = log_w.detach();
    let mut baseline_loss = None;
    let signals: Vec<f64>;
    let (surrogate, bound) = match *estimator {
        MonotonicEstimator::Reinforce { .. } | MonotonicEstimator::Nvil { .. } => {
            let c_hat = baseline_per_label.ok_or_else(|| {
                candle_core::Error::Msg(format!("{estimator:?} needs a learned baseline"))
            })?;
            let c = c_hat.mul(&labels)?; // [B]
            let resid = lw.broadcast_sub(&c.detach())?; // log w - c, [K, B]
            let sig = match *estimator {
                MonotonicEstimator::Nvil { moments_decay, .. } => {
                    let (mu, scale) = state.moments.centre_scale();
                    if update_state {
                        state.moments.update(moments_decay, &to_vec(&resid)?);
                    }
                    resid.affine(1.0 / scale, -mu / scale)?
                }
                _ => resid,
            };
            signals = to_vec(&sig)?;
            // squared error of the per-label baseline: ((log w - c) / T)², mean over k and b
            let err = lw.broadcast_sub(&c)?.broadcast_div(&labels)?;
            baseline_loss = Some(err.sqr()?.mean_all()?);
            let sur = (&log_p_seq + sig.mul(&log_q_seq)?)?.mean(0)?;
            (sur, lw.mean(0)?)
        }
        MonotonicEstimator::Vimco { .. } => {
            let (_, sig) = super::vimco_learning_signals(&log_w)?;
            signals = to_vec(&sig)?;
            let bound = (log_w.log_sum_exp(0)? - (k as f64).ln())?;
            let sur = (&bound + sig.mul(&log_q_seq)?.sum(0)?)?;
            (sur, bound.detach())
        }
        MonotonicEstimator::VimcoPerStep { .. } => {
            let rewards = (&scores.log_p - &scores.log_q)?.detach();
            let sig = vimco_per_step_signals(&rewards)?;
            // free steps are where log q carries a decision: count signals there only
            let sv = to_vec(&sig)?;
            let fv = to_vec(&scores.free)?;
            signals = sv.into_iter().zip(fv).filter(|(_, f)| *f > 0.0).map(|(s, _)| s).collect();
            let sur = (&log_p_seq + sig.mul(&scores.log_q)?.sum(D::Minus1)?)?.mean(0)?;
            (sur, lw.mean(0)?)
        }
    };
    let surrogate = if entropy_weight != 0.0 {
        (surrogate + (scores.q_entropy.sum(D::Minus1)?.mean(0)? * entropy_weight)?)?
    } else {
        surrogate
    };
    let mut loss = (surrogate.sum_all()?.neg()? / tokens)?;
    if let Some(b) = baseline_loss {
        let b = b.to_dtype(loss.dtype())?;
        loss = (loss + b)?;
    }
    if update_state {
        state.steps += 1;
        state.signal_sq_sum += signals.iter().map(|s| s * s).sum::<f64>();
        state.signal_count += signals.len() as f64;
    }
    let sum = |t: &Tensor| -> Result<f64> { t.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>() };
    let metrics = Metrics {
        tokens,
        objective_sum: sum(&bound)?,
        nll_sum: None,
        kl_sum: None,
        prior_entropy_sum: sum(&scores.p_entropy.detach().sum(D::Minus1)?.mean(0)?)?,
    };
    Ok(MonotonicEstimate { estimate: Estimate { loss, metrics, kl_total: None, log_lik: None }, signals })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn future_returns_and_per_step_baseline_by_hand() -> Result<()> {
        let r = Tensor::new(&[[[1.0f64, 2.0, 3.0]], [[0.0, -1.0, 5.0]], [[2.0, 2.0, 2.0]]], &Device::Cpu)?;
        let f = future_returns(&r)?;
        assert_eq!(f.to_vec3::<f64>()?, vec![vec![vec![6.0, 5.0, 3.0]], vec![vec![4.0, 4.0, 5.0]], vec![vec![6.0, 4.0, 2.0]]]);
        let s = vimco_per_step_signals(&r)?.to_vec3::<f64>()?;
        // sample 0, step 0: 6 - (4 + 6)/2 = 1; step 2: 3 - (5 + 2)/2 = -0.5
        assert_eq!(s[0][0][0], 1.0);
        assert_eq!(s[0][0][2], -0.5);
        assert_eq!(s[1][0][1], 4.0 - (5.0 + 4.0) / 2.0);
        Ok(())
    }

    #[test]
    fn running_moments_and_entropy_schedule() {
        let mut m = RunningMoments::default();
        assert_eq!(m.centre_scale(), (0.0, 1.0));
        m.update(0.8, &[1.0, 3.0]);
        assert_eq!((m.mean, m.var), (Some(2.0), Some(1.0)));
        m.update(0.8, &[12.0, 12.0]);
        assert!((m.mean.unwrap() - 4.0).abs() < 1e-12 && (m.var.unwrap() - 0.8).abs() < 1e-12);
        m.update(0.0, &[0.0, 10.0]);
        assert_eq!(m.centre_scale(), (5.0, 5.0));
        let e = EntropyBonus { weight: 0.2, decay_steps: 100 };
        assert_eq!((e.weight_at(0), e.weight_at(50), e.weight_at(100), e.weight_at(500)), (0.2, 0.1, 0.0, 0.0));
        assert_eq!(EntropyBonus { weight: 0.3, decay_steps: 0 }.weight_at(10_000), 0.3);
    }

    #[test]
    fn estimator_config_checks() {
        assert!(MonotonicEstimator::Vimco { samples: 1 }.validate().is_err());
        assert!(MonotonicEstimator::VimcoPerStep { samples: 2 }.validate().is_ok());
        assert!(MonotonicEstimator::Reinforce { samples: 0 }.validate().is_err());
        assert!(MonotonicEstimator::Nvil { samples: 1, moments_decay: 1.0 }.validate().is_err());
        let e: MonotonicEstimator = toml::from_str("kind = \"nvil\"\nsamples = 4").unwrap();
        assert_eq!(e, MonotonicEstimator::Nvil { samples: 4, moments_decay: 0.8 });
        assert!(toml::from_str::<MonotonicEstimator>("kind = \"vimco\"\nsamples = 4\nk = 3").is_err());
    }
}
