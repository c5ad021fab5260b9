//! Attention layers: a latent-alignment attention layer to place in a model of one's own
//! ([`latent`], candle's `VarBuilder` conventions), multi-head attention
//! ([`multihead`]) and Bayesian (Weibull-Gamma) attention weights, BAM and BABN ([`bayesian`]).
//! The alignment-attention regulariser that can sit on any of them is an objective term:
//! [`crate::objective::alignment_attention`].
//!
//! A model reads its attention settings from an [`AttentionConfig`] (`[model.attention]`):
//! heads, stacked hops, stochastic (Bayesian) weights and an alignment regulariser. The default
//! (one head, one hop, deterministic, no regulariser) is the plain attention.
pub mod bayesian;
pub mod latent;
pub mod multihead;

pub use bayesian::{bayesian_layers, weibull_attention, BayesConfig, BayesKind, PriorConfig, WeibullAttention};
pub use latent::{LatentAttention, LatentAttentionConfig};
pub use multihead::{head_contexts, MlpAttention};

use crate::objective::alignment_attention::AlignmentConfig;
use serde::{Deserialize, Serialize};

/// `[model.attention]`: how many heads and stacked hops, optional Bayesian weights, optional
/// alignment-attention regulariser.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionConfig {
    #[serde(default = "one")]
    pub heads: usize,
    #[serde(default = "one")]
    pub hops: usize,
    #[serde(default)]
    pub bayes: Option<BayesConfig>,
    #[serde(default)]
    pub regularizer: Option<AlignmentConfig>,
}

fn one() -> usize {
    1
}

impl Default for AttentionConfig {
    fn default() -> Self {
        Self { heads: 1, hops: 1, bayes: None, regularizer: None }
    }
}

impl AttentionConfig {
    /// The plain single-head, single-hop deterministic attention (Deng et al.'s rows).
    pub fn is_plain(&self) -> bool {
        *self == Self::default()
    }
}
