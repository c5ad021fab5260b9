//! # varattn: latent-alignment attention on candle
//!
//! Attention read as a latent variable: at each target step t an alignment z_t picks what the
//! decoder reads, and a model is trained with soft, exact-marginal, hard or variational attention
//! (Deng et al. 2018), hard monotonic alignments (Lawson et al. 2018), alignment attention
//! (Zhang et al. 2021) or Bayesian Weibull attention (Fan et al. 2020). The papers' equations, in
//! this crate's notation, are in `docs/papers.md`; how the code is laid out and why, in
//! `docs/design.md`; the command line, presets and results, in the README.
//!
//! The code follows three independent axes, so that a row of a paper's table is a
//! configuration, not a code path:
//!
//! * **what z is**, [`distributions`]: [`distributions::Categorical`], [`distributions::Dirichlet`],
//!   [`distributions::RelaxedCategorical`] (Gumbel-softmax), [`distributions::Weibull`] with a [`distributions::Gamma`]
//!   prior, [`distributions::Bernoulli`]; each with log-prob, seeded sampling, reparameterised sampling
//!   where it exists, entropy, mean and closed-form KL;
//! * **how a latent alignment becomes a loss**, [`objective`]: soft, exact marginal, hard
//!   (enumerated or sampled with REINFORCE), variational (enumerated, sampled, relaxed Dirichlet,
//!   Gumbel-softmax, RWS), VIMCO and K-Max; NVIL and VIMCO for monotonic alignments; the
//!   alignment-attention regularisers;
//! * **what produces the prior p, the posterior q and log f(x, i)**: a model, which implements
//!   [`objective::AlignmentOutputs`] and the likelihood capabilities it has
//!   ([`objective::Enumerable`], [`objective::Sampled`], [`objective::Relaxed`]);
//!   [`objective::estimate`] turns any configured objective and those outputs into a loss. Models
//!   know nothing of estimators.
//!
//! Around them: [`rng`] (every random draw goes through [`rng::SeededRng`]), [`special`]
//! (lgamma, digamma and friends as candle ops with gradients), [`attention`] (multi-head MLP
//! attention, Bayesian attention weights) and [`nn`] (parameters, linear layers, gradient
//! reversal, dropout); [`pin_thread_count`] and [`keep_freed_memory`] tune a process that trains
//! on the CPU.
//!
//! This crate is the library: it depends on candle and a few small crates (gemm, rand, serde,
//! half, num-traits, libc). The laboratory, the `varattn-lab` crate in `lab/`, holds what
//! replicates the papers on top of it: the data sets, the NMT / VQA / transducer models and their
//! fused CPU kernels, training, evaluation, reports and the `varattn` command line.
//!
//! ## Example: the exact marginal and its Jensen bound
//!
//! One target step with S = 3 source positions: the prior p(z_t), and log f(x, i), the gold token's
//! log-likelihood when the decoder reads position i. Enumerating all three gives the exact
//! marginal log Σ_i p_i f(x, i); hard attention trains the lower bound Σ_i p_i log f(x, i).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use varattn::distributions::Categorical;
//! use varattn::objective::{exact_marginal, hard_enum};
//!
//! let dev = Device::Cpu;
//! let prior = Categorical::from_logits(&Tensor::new(&[[0.0f32, 1.0, 2.0]], &dev)?, None)?;
//! let log_f = Tensor::new(&[[-0.2f32, -2.5, -1.0]], &dev)?;
//! let exact = exact_marginal(&prior, &log_f, None)?;
//! let jensen = hard_enum(&prior, &log_f, None)?;
//! assert!(jensen.metrics.objective_sum <= exact.metrics.objective_sum);
//!
//! // the same number by hand
//! let p: Vec<f32> = prior.probs()?.flatten_all()?.to_vec1()?;
//! let by_hand = (p[0] * (-0.2f32).exp() + p[1] * (-2.5f32).exp() + p[2] * (-1.0f32).exp()).ln();
//! assert!((exact.metrics.objective_sum as f32 - by_hand).abs() < 1e-5);
//! # Ok::<(), candle_core::Error>(())
//! ```
//!
//! The README's Rust examples are compiled and run as doctests too.
pub mod attention;
pub mod distributions;
pub mod nn;
pub mod objective;
pub mod rng;
pub mod special;

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

/// Keeps freed memory in the process for the next training step instead of handing it back to
/// the kernel (glibc on Linux; elsewhere a no-op). Returns whether the allocator took the settings.
///
/// Sets glibc's `M_MMAP_THRESHOLD` to its largest value (32 MiB), `M_TRIM_THRESHOLD` to 1 GiB and
/// `M_TOP_PAD` to 256 MiB. Why: a training step allocates and frees the same buffers every step
/// (candle's gradient store alone zero-fills a fresh tensor for every gradient it accumulates:
/// about 8 MB of parameter gradients at the cpu preset, and the activations'). With the defaults,
/// blocks above the (adaptive) mmap threshold come from a fresh mmap, and free memory at the top of
/// the heap is trimmed back to the kernel, so the next step takes a page fault and a kernel page
/// clear for every 4 KiB it touches again. Measured with `varattn bench --rows-only` on the
/// 2-core machine of docs/performance.md (three alternating pairs of builds with and
/// without it, tokens/s): soft +9–13%, exact +3–11%, var-enum +7–14%, var-sample +5–9%. The price: the resident size stays at the run's high-water mark (which
/// `varattn bench` reports as peak RSS anyway). Call it at the start of `main`, with
/// [`pin_thread_count`]; the `varattn` binary does.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1
                && libc::mallopt(libc::M_TOP_PAD, 256 << 20) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #[test]
    fn glibc_takes_the_allocator_settings() {
        assert!(super::keep_freed_memory());
        // still allocates and frees above the old thresholds
        let v = vec![1u8; 64 << 20];
        assert_eq!(v.iter().map(|&x| x as usize).sum::<usize>(), 64 << 20);
    }
}

/// The README's code blocks are compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
