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
pub mod special;
pub mod train;

/// The README's code blocks are compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
