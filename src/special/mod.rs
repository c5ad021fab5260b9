//! Special functions: scalar `f64` versions ([`scalar`]) and candle ops with gradients ([`ops`]).
//!
//! candle has no lgamma, digamma, log1p or softplus op and no gamma sampler; the Dirichlet and
//! Weibull/Gamma distributions need all of them, differentiably.
#[cfg(feature = "cuda")]
mod cuda;
pub mod ops;
pub mod scalar;

pub use ops::{digamma, gamma_rsample, lgamma, log1p, polygamma, softplus, trigamma};
