//! Objectives and gradient estimators: how a latent alignment becomes a loss.
//!
//! Notation of Deng et al. (2018): at each target step t, the prior p(z_t | x, y_<t) is a
//! [`Categorical`](crate::distributions::Categorical) over the S source positions, the optional posterior
//! q(z_t | x, y) another, and f(x, i) = p(y_t | x, y_<t, z_t = i) the output likelihood of the
//! gold token. The model hands over either every log f(x, i) as a tensor `[..., S]`
//! (enumerable objectives) or a closure that computes log f for sampled indices `[K, ...]` or for
//! a relaxed alignment `[..., S]` (sampled objectives), so that sampling never pays for all S.
//!
//! Every objective returns an [`Estimate`]: `loss`, a differentiable scalar surrogate to
//! *minimise* (mean over unmasked target tokens), and [`Metrics`], honest sums over tokens — the
//! objective's value, the exact NLL where all alignments were enumerated, KL(q || p) and the
//! prior alignment entropy.
//!
//! | row of Table 1/3 | function | objective per token |
//! |---|---|---|
//! | soft | [`soft`] | log f(x, E_p\[z\]) |
//! | marginal likelihood | [`exact_marginal`] | log Σ_i p_i f(x, i) |
//! | hard, enum | [`hard_enum`] | Σ_i p_i log f(x, i) |
//! | hard, sample | [`hard_sample`] | log f(x, z), z ~ p, REINFORCE |
//! | variational, enum | [`variational_enum`] | Σ_i q_i log f(x, i) - KL(q ‖ p) |
//! | variational, sample | [`variational_sample`] | log f(x, z) - KL(q ‖ p), z ~ q, REINFORCE |
//! | variational relaxed | [`variational_relaxed`] | E_{Dir(a_q)}[log f(x, z)] - KL(Dir(a_q) ‖ Dir(a_p)) |
//! | (its test bound) | [`relaxed_iw_bound`] | log 1/K Σ_k f(x, z_k) Dir(z_k; a_p) / Dir(z_k; a_q), z_k ~ Dir(a_q) |
//! | Gumbel-softmax | [`gumbel_softmax`] | log f(x, y) - KL(q ‖ p), y ~ Concrete(q, τ) |
//! | RWS | [`rws`] | K samples from q, self-normalised weights, the authors' control variates |
//! | VIMCO | [`vimco`] | log 1/K Σ_k w_k with leave-one-out signals |
//! | K-Max | [`kmax_marginal`] | log Σ_{i ∈ top-K(p)} p_K(i) f(x, i) |
//!
//! Sequences of binary emit/skip decisions (the online monotonic transducer of Lawson et al.
//! 2018) have their own estimators — REINFORCE, NVIL, VIMCO and the per-step leave-one-out
//! baseline — in [`monotonic_estimate`] (module `monotonic`).
pub mod alignment_attention;
mod dispatch;
mod enumerate;
mod monotonic;
mod multisample;
mod reinforce;
mod relaxed;

pub use enumerate::{
    exact_marginal, exact_marginal_from_log_probs, hard_enum, kmax_marginal, kmax_marginal_masked, soft,
    variational_enum,
};
pub use dispatch::{
    estimate, held_out, held_out_metrics, log_f_all, log_f_at, relaxed, relaxed_held_out_bound, AlignmentOutputs, Enumerable,
    EstimatorState, Relaxed, Sampled,
};
pub use monotonic::{
    future_returns, monotonic_estimate, vimco_per_step_signals, EntropyBonus, MonotonicEstimate, MonotonicEstimator,
    MonotonicState, RunningMoments, SequenceScores,
};
pub use multisample::{rws, vimco, vimco_learning_signals};
pub use reinforce::{hard_sample, variational_sample, Baseline, MovingAverage};
pub use relaxed::{gumbel_softmax, relaxed_iw_bound, variational_relaxed};

use crate::distributions::Positivity;
use candle_core::{DType, Result, Tensor};

fn default_positivity() -> Positivity {
    Positivity::Softplus
}
use serde::{Deserialize, Serialize};

/// Sums over target tokens (one value per token), as plain numbers for logging.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Number of unmasked target tokens.
    pub tokens: f64,
    /// Σ_t of the training objective's value (a log-likelihood or a lower bound on it), nats.
    pub objective_sum: f64,
    /// Σ_t -log p(y_t | x, y_<t) when every alignment was enumerated (exact marginal; for
    /// [`soft`], the soft model's own likelihood; for [`kmax_marginal`], the K-Max model's).
    pub nll_sum: Option<f64>,
    /// Σ_t KL(q(z_t) ‖ p(z_t)) for variational objectives.
    pub kl_sum: Option<f64>,
    /// Σ_t H(p(z_t)), the prior alignment entropy in nats.
    pub prior_entropy_sum: f64,
}

impl Metrics {
    /// Accumulate another batch.
    pub fn add(&mut self, other: &Metrics) {
        fn add_opt(a: &mut Option<f64>, b: Option<f64>) {
            *a = match (*a, b) {
                (Some(x), Some(y)) => Some(x + y),
                (None, Some(y)) => Some(y),
                (x, None) => x,
            };
        }
        self.tokens += other.tokens;
        self.objective_sum += other.objective_sum;
        add_opt(&mut self.nll_sum, other.nll_sum);
        add_opt(&mut self.kl_sum, other.kl_sum);
        self.prior_entropy_sum += other.prior_entropy_sum;
    }

    /// Perplexity exp(NLL / tokens), if the exact NLL is known.
    pub fn perplexity(&self) -> Option<f64> {
        self.nll_sum.map(|n| (n / self.tokens).exp())
    }

    /// Mean prior alignment entropy per token.
    pub fn prior_entropy(&self) -> f64 {
        self.prior_entropy_sum / self.tokens
    }
}

/// A differentiable surrogate loss and the metrics of one batch.
#[derive(Debug, Clone)]
pub struct Estimate {
    /// Scalar to minimise: -(Σ_t surrogate_t) / tokens. Its gradient is the estimator's.
    pub loss: Tensor,
    pub metrics: Metrics,
    /// Σ_t m_t KL(q(z_t) ‖ p(z_t)) as a differentiable scalar, for variational objectives (used by
    /// KL warm-up: `loss + (w - 1) · kl_total / tokens` weights the KL term by w).
    pub kl_total: Option<Tensor>,
    /// log p(y_t | x, y_<t) per step (`[B, T]` for sequences), detached, unmasked, where every
    /// alignment was enumerated: per-sentence held-out likelihoods are its masked row sums.
    pub log_lik: Option<Tensor>,
}

impl Estimate {
    /// The loss with the KL term weighted by `w` instead of 1 (KL warm-up); unchanged for
    /// objectives without a KL term.
    pub fn loss_with_kl_weight(&self, w: f64) -> Result<Tensor> {
        match &self.kl_total {
            Some(kl) if w != 1.0 => &self.loss + (kl * ((w - 1.0) / self.metrics.tokens))?,
            _ => Ok(self.loss.clone()),
        }
    }
}

/// Which objective a configuration asks for (one per row of the papers' tables).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ObjectiveKind {
    Soft,
    Exact,
    HardEnum,
    HardSample { samples: usize },
    VarEnum,
    VarSample { samples: usize },
    VarRelaxed {
        #[serde(default = "default_positivity")]
        positivity: Positivity,
    },
    Gumbel { temperature: f64 },
    Rws { samples: usize },
    Vimco { samples: usize },
    KMax { k: usize },
}

impl ObjectiveKind {
    /// Every kind with the paper's settings (RWS K = 5, Gumbel τ = 0.1, K-Max K = 5), named as the
    /// rows of the paper tables (`relaxed-dirichlet` is the kind `var-relaxed`).
    pub fn all_paper_rows() -> Vec<(&'static str, ObjectiveKind)> {
        vec![
            ("soft", ObjectiveKind::Soft),
            ("exact", ObjectiveKind::Exact),
            ("hard-enum", ObjectiveKind::HardEnum),
            ("hard-sample", ObjectiveKind::HardSample { samples: 1 }),
            ("relaxed-dirichlet", ObjectiveKind::VarRelaxed { positivity: Positivity::Softplus }),
            ("var-enum", ObjectiveKind::VarEnum),
            ("var-sample", ObjectiveKind::VarSample { samples: 1 }),
            ("gumbel", ObjectiveKind::Gumbel { temperature: 0.1 }),
            ("rws", ObjectiveKind::Rws { samples: 5 }),
            ("vimco", ObjectiveKind::Vimco { samples: 5 }),
            ("kmax", ObjectiveKind::KMax { k: 5 }),
        ]
    }

    /// The kind as a config writes it (`kind = "hard-enum"`).
    pub fn name(&self) -> &'static str {
        match self {
            ObjectiveKind::Soft => "soft",
            ObjectiveKind::Exact => "exact",
            ObjectiveKind::HardEnum => "hard-enum",
            ObjectiveKind::HardSample { .. } => "hard-sample",
            ObjectiveKind::VarEnum => "var-enum",
            ObjectiveKind::VarSample { .. } => "var-sample",
            ObjectiveKind::VarRelaxed { .. } => "var-relaxed",
            ObjectiveKind::Gumbel { .. } => "gumbel",
            ObjectiveKind::Rws { .. } => "rws",
            ObjectiveKind::Vimco { .. } => "vimco",
            ObjectiveKind::KMax { .. } => "k-max",
        }
    }

    /// Does training need the inference network q?
    pub fn needs_posterior(&self) -> bool {
        matches!(
            self,
            ObjectiveKind::VarEnum
                | ObjectiveKind::VarSample { .. }
                | ObjectiveKind::VarRelaxed { .. }
                | ObjectiveKind::Gumbel { .. }
                | ObjectiveKind::Rws { .. }
                | ObjectiveKind::Vimco { .. }
        )
    }
}

/// Soft attention with extra terms, for attention whose weights w are stochastic or regularised
/// (BAM/BABN, alignment attention): per step t the objective is log f(x, c(w_t)) - KL_t (KL_t =
/// the weighted KL(q(S) ‖ p(S)) of the attention weights, if any) and
/// loss = -(Σ_t objective_t) / T + penalty (e.g. λ · alignment regulariser). `attention_entropy`
/// `[...]` is reported as the prior entropy; the KL term is annealed by
/// [`Estimate::loss_with_kl_weight`].
pub fn soft_regularised(
    log_f: &Tensor,
    attention_entropy: &Tensor,
    kl: Option<&Tensor>,
    penalty: Option<&Tensor>,
) -> Result<Estimate> {
    let value = match kl {
        Some(k) => (log_f - k)?,
        None => log_f.clone(),
    };
    let mut est = Parts {
        prior_entropy: attention_entropy.clone(),
        mask: None,
        surrogate: value.clone(),
        value,
        log_lik: Some(log_f.clone()),
        kl: kl.cloned(),
    }
    .finish()?;
    if let Some(p) = penalty {
        est.loss = (est.loss + p)?;
    }
    Ok(est)
}

/// The token mask as a tensor of the per-step shape and dtype of `like`.
pub(crate) fn token_weights(like: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    match mask {
        Some(m) => m.to_dtype(like.dtype())?.broadcast_as(like.shape()),
        None => like.ones_like(),
    }
}

/// Σ_t m_t x_t over a per-step tensor `[...]` (or `[K, ...]`, broadcasting the mask).
pub(crate) fn masked_total(x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    match mask {
        Some(m) => x.broadcast_mul(&m.to_dtype(x.dtype())?)?.sum_all(),
        None => x.sum_all(),
    }
}

pub(crate) fn scalar(x: &Tensor) -> Result<f64> {
    x.to_dtype(DType::F64)?.to_scalar::<f64>()
}

/// Assemble an [`Estimate`] from per-step surrogate and value tensors `[...]`.
pub(crate) struct Parts<'a> {
    /// Per-step prior alignment entropy H(p(z_t)).
    pub prior_entropy: Tensor,
    pub mask: Option<&'a Tensor>,
    /// Differentiable per-step surrogate to maximise.
    pub surrogate: Tensor,
    /// Per-step objective value (detached use only).
    pub value: Tensor,
    /// Per-step exact log-likelihood, if enumerated.
    pub log_lik: Option<Tensor>,
    /// Per-step KL(q ‖ p), if variational.
    pub kl: Option<Tensor>,
}

impl Parts<'_> {
    pub fn finish(self) -> Result<Estimate> {
        let weights = token_weights(&self.value, self.mask)?;
        let tokens = scalar(&weights.sum_all()?)?;
        if tokens <= 0.0 {
            candle_core::bail!("objective over a batch with no unmasked target token")
        }
        let loss = (masked_total(&self.surrogate, self.mask)?.neg()? / tokens)?;
        let kl_total = self.kl.as_ref().map(|k| masked_total(k, self.mask)).transpose()?;
        let total = |x: &Tensor| -> Result<f64> { scalar(&masked_total(&x.detach(), self.mask)?) };
        let metrics = Metrics {
            tokens,
            objective_sum: total(&self.value)?,
            nll_sum: self.log_lik.as_ref().map(|l| total(l).map(|v| -v)).transpose()?,
            kl_sum: self.kl.as_ref().map(total).transpose()?,
            prior_entropy_sum: total(&self.prior_entropy)?,
        };
        let log_lik = self.log_lik.as_ref().map(|l| l.detach());
        Ok(Estimate { loss, metrics, kl_total, log_lik })
    }
}
