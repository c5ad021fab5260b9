//! # varattn-lab: the laboratory of the `varattn` library
//!
//! Everything that replicates the papers on top of the library crate [`varattn`] (distributions,
//! objectives, attention, seeded generator, special functions): the data sets ([`data`]), the
//! models that produce a prior, a posterior and log f(x, i) ([`models`]: the NMT
//! encoder-decoder, the VQA model, the online transducer, the demo's reversal task), their fused
//! CPU kernels ([`kernels`]), training ([`train`], [`experiments`]), evaluation ([`eval`], [`stats`]),
//! figures ([`plot`]), reports ([`report`]: tables, claims with verdicts) and the tools behind the `varattn`
//! binary ([`bench`], [`parity`], [`selftest`], [`demo`]).
//!
//! The library's modules are re-exported under their own names, so that `varattn_lab::distributions`,
//! `varattn_lab::objective` and friends name the same items as `varattn::distributions`, ….
pub use varattn::{attention, distributions, nn, objective, rng, special};
pub use varattn::{keep_freed_memory, pin_thread_count};

pub mod bench;
pub mod config;
pub mod data;
pub mod demo;
pub mod eval;
pub mod experiments;
pub mod provenance;
pub mod models;
pub mod kernels;
pub mod parity;
pub mod plot;
pub mod report;
pub mod rundir;
pub mod selftest;
pub mod stats;
pub mod train;

/// The repository's top folder (where `configs/`, `datasets/`, `bench/` and `notebooks/` are),
/// as seen when this crate was compiled.
pub fn repo_root() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("lab/ lies inside the repository")
}
