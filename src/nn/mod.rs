//! Neural-network building blocks of our own.
pub mod attention_decoder;
pub mod fast_math;
pub mod gemm;
pub(crate) mod par;
pub mod gold_log_softmax;
pub mod grad_reverse;
pub mod lstm;
pub mod lstm_fused;

pub use gold_log_softmax::{gold_log_softmax, gold_log_softmax_keeping, gold_log_softmax_naive};
pub use grad_reverse::grad_reverse;

use crate::rng::SeededRng;
use candle_core::{Result, Tensor};

/// Inverted dropout with the project's generator: x ⊙ m / (1 - p), m_i ~ Bernoulli(1 - p);
/// the identity when `rng` is `None` (evaluation) or p = 0.
pub fn dropout(x: &Tensor, p: f64, rng: Option<&mut SeededRng>) -> Result<Tensor> {
    match rng {
        Some(r) if p > 0.0 => x.mul(&r.dropout_mask(x.shape(), p, x.device())?),
        _ => Ok(x.clone()),
    }
}
