//! # varattn — latent-alignment attention on candle
//!
//! Attention as a latent variable: at each target step t an alignment z_t picks what the model
//! reads. The crate is organised along three independent axes (see DESIGN.md):
//!
//! * [`dist`] — what z is: categorical, Dirichlet, relaxed categorical (Gumbel-softmax),
//!   Weibull with a Gamma prior, Bernoulli; each with log-prob, seeded sampling,
//!   reparameterised sampling where it exists, entropy, mean and closed-form KL.
//! * [`objective`] — how a latent alignment becomes a loss: soft, exact marginal, hard
//!   (enumerated or sampled with REINFORCE), variational (enumerated, sampled, relaxed Dirichlet,
//!   Gumbel-softmax, RWS), VIMCO and K-Max.
//! * models (NMT, VQA, online transducer) produce the prior p, posterior q and log f(x, i); they
//!   know nothing of estimators.
//!
//! Every random draw goes through [`rng::SeededRng`].
pub mod bench;
pub mod attention;
pub mod config;
pub mod data;
pub mod demo;
pub mod dist;
pub mod eval;
pub mod experiments;
pub mod io;
pub mod models;
pub mod objective;
pub mod report;
pub mod rng;
pub mod nn;
pub mod selftest;
pub mod special;
pub mod train;

/// Fixes the thread count candle and the fused kernels use for the life of the process: sets
/// `RAYON_NUM_THREADS` to [`candle_core::utils::get_num_threads`] when it is unset.
///
/// Why: with `RAYON_NUM_THREADS` unset, candle 0.11 answers every `get_num_threads()` — asked by
/// every CPU matmul and by the fused kernels — by counting physical cores through `num_cpus`,
/// which parses `/proc/cpuinfo` each time: 3–4% of a training step's samples here, and the
/// bench's soft step ran 20–40% faster with the variable set (same thread count, so the same
/// numbers). Call it at the start of `main`, before any thread is spawned (it writes the
/// process environment). The `varattn` binary does.
pub fn pin_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}

/// The README's code blocks are compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
