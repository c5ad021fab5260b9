//! Neural-network building blocks of our own: seeded parameters ([`ParamStore`], and
//! [`SeededVarMap`] for candle's `VarBuilder` conventions), linear layers
//! whose products run through `gemm` ([`gemm::Linear`]), gradient reversal and dropout, and the
//! thread pool ([`par`]) that the products and the laboratory's fused kernels share.
pub mod gemm;
pub mod grad_reverse;
pub mod par;
pub mod params;
pub mod seeded_varmap;

pub use grad_reverse::grad_reverse;
pub use params::ParamStore;
pub use seeded_varmap::SeededVarMap;

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
