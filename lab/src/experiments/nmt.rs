//! Training and evaluating the NMT model on a parallel corpus with any objective
//! (`varattn train --config configs/nmt/<row>.toml --preset <p> --seed <s>`).
//!
//! A run directory holds `last.{safetensors,json}` (resumable checkpoint), `best.*` (best
//! validation perplexity), `result.json` (test metrics, written last and atomically) and
//! `translations.txt`.
use super::finished::{FinishedRun, Metric, Split, Task};
use super::RunOptions;
use crate::config::config_hash;
use crate::data::ding::{self, ParallelCorpus};
use crate::data::nmt::{encode_corpus, make_batches, IdPair, NmtBatch};
use crate::eval::beam::{beam_search, BeamConfig};
use crate::eval::bleu::{corpus_bleu, multi_bleu, tokenize_13a, BleuOptions};
use crate::provenance::{git_dirty_paths, git_revision, write_atomic};
use crate::models::nmt::{Marginal, NmtModel, NmtModelConfig};
use crate::objective::{estimate, held_out_metrics, relaxed_held_out_bound, Estimate, EstimatorState, Metrics, ObjectiveKind};
use crate::rng::SeededRng;
use crate::train::runner::{self, progress_bar, EpochRecord, LoopConfig, TrainConfig, TrainState, TrainTask};
use crate::train::{Adam, ParamStore};
use anyhow::{bail, Context, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NmtDataConfig {
    /// Corpus name: `ding-de-en` (offline) or a translation set of datasets/hub.toml
    /// (`iwslt14-de-en`, `iwslt2017-de-en`, `wmt14-de-en`, `wmt16-de-en`, `wmt17-de-en`).
    pub corpus: String,
    /// Lower-case both sides before BPE (fairseq's IWSLT14 preprocessing; the paper's BLEU is
    /// on lower-cased text).
    #[serde(default)]
    pub lowercase: bool,
    /// Pool the corpus's train, valid and test pairs and split them again ([`resplit`]); the
    /// derived split files and their BPE live in `<cache>/<corpus>/<`[`Resplit::dir_name`]`>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resplit: Option<Resplit>,
    /// With `resplit`: drop repeated (source, target) pairs from the pool (after lower-casing),
    /// keeping the first.
    #[serde(default)]
    pub dedup: bool,
    pub bpe_vocab: usize,
    /// Training pairs with a side longer than this many subwords are dropped (counted).
    pub max_len: usize,
    /// Use only the first N pairs of a split (smoke runs).
    pub train_limit: Option<usize>,
    pub valid_limit: Option<usize>,
    pub test_limit: Option<usize>,
}

/// `[data] resplit`: a seeded split of a corpus's pooled pairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resplit {
    /// Seed of the shuffle (`ChaCha8Rng`, as [`ding::split`]).
    pub seed: u64,
    /// Validation pairs (the first of the shuffled pool).
    pub valid: usize,
    /// Test pairs (the next); the rest is train.
    pub test: usize,
}

impl Resplit {
    /// The folder of the derived splits inside the corpus folder, e.g. `resplit-3435-v500-t500-lc-dedup`.
    pub fn dir_name(&self, lowercase: bool, dedup: bool) -> String {
        format!(
            "resplit-{}-v{}-t{}{}{}",
            self.seed,
            self.valid,
            self.test,
            if lowercase { "-lc" } else { "" },
            if dedup { "-dedup" } else { "" }
        )
    }
}

/// The pairs of `corpus` pooled in the order train, valid, test (with `dedup`, each distinct
/// (source, target) pair once, at its first place), shuffled with `r.seed` and split into
/// `r.valid` valid, `r.test` test and the rest train pairs ([`ding::split`]).
pub fn resplit(corpus: ParallelCorpus, r: &Resplit, dedup: bool) -> Result<ParallelCorpus> {
    let mut seen = std::collections::HashSet::new();
    let pool: Vec<ding::Pair> = [corpus.train, corpus.valid, corpus.test]
        .into_iter()
        .flatten()
        .filter(|p| !dedup || seen.insert(p.clone()))
        .collect();
    ding::split(pool, r.seed, r.valid, r.test)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NmtEvalConfig {
    pub beam: BeamConfig,
    /// K of K-Max (Table 2).
    pub kmax: usize,
    /// The K values of the PPL-against-K curve.
    #[serde(default)]
    pub kmax_curve: Vec<usize>,
    /// Translate only the first N test sentences for BLEU (all when absent).
    pub bleu_sentences: Option<usize>,
    /// K of the relaxed (Dirichlet) row's test bound: draws from q per target token.
    #[serde(default = "default_relaxed_bound_samples")]
    pub relaxed_bound_samples: usize,
}

fn default_relaxed_bound_samples() -> usize {
    50
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NmtConfig {
    /// The row's name, e.g. `var-enum`.
    pub name: String,
    pub objective: ObjectiveKind,
    pub data: NmtDataConfig,
    pub model: NmtModelConfig,
    pub train: TrainConfig,
    pub eval: NmtEvalConfig,
}

impl NmtConfig {
    /// Checks every value against its allowed range (the error names the key and the range).
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        crate::rundir::check_plain_name("name", &self.name)?;
        super::check_objective("objective", &self.objective)?;
        let d = &self.data;
        check::at_least("data.bpe_vocab", d.bpe_vocab, ding::SPECIAL_TOKENS.len() + 1)?;
        check::at_least("data.max_len", d.max_len, 1)?;
        if let Some(r) = &d.resplit {
            check::at_least("data.resplit.valid", r.valid, 1)?;
            check::at_least("data.resplit.test", r.test, 1)?;
        } else if d.dedup {
            bail!("data.dedup = true needs data.resplit (the pooled pairs are deduplicated before they are split again)")
        }
        check::limit("data.train_limit", d.train_limit)?;
        check::limit("data.valid_limit", d.valid_limit)?;
        check::limit("data.test_limit", d.test_limit)?;
        let m = &self.model;
        for (key, v) in [
            ("model.emb", m.emb),
            ("model.enc_hidden", m.enc_hidden),
            ("model.enc_layers", m.enc_layers),
            ("model.dec_hidden", m.dec_hidden),
            ("model.dec_layers", m.dec_layers),
            ("model.attn_hidden", m.attn_hidden),
            ("model.out_hidden", m.out_hidden),
            ("model.inf_hidden", m.inf_hidden),
        ] {
            check::at_least(key, v, 1)?;
        }
        check::within("model.dropout", m.dropout, (0.0, true), (1.0, false))?;
        check::positive("model.init", m.init)?;
        self.train.validate()?;
        let e = &self.eval;
        check::at_least("eval.beam.beam", e.beam.beam, 1)?;
        check::non_negative("eval.beam.alpha", e.beam.alpha)?;
        check::positive("eval.beam.max_len_ratio", e.beam.max_len_ratio)?;
        check::at_least("eval.kmax", e.kmax, 1)?;
        for &k in &e.kmax_curve {
            check::at_least("eval.kmax_curve[]", k, 1)?;
        }
        check::limit("eval.bleu_sentences", e.bleu_sentences)
    }
}

/// Test-set results of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NmtResult {
    pub name: String,
    pub seed: u64,
    pub preset: String,
    pub config_hash: String,
    pub git_revision: Option<String>,
    /// Paths changed on top of `git_revision` outside `results/` (empty: the run is that commit).
    #[serde(default)]
    pub git_dirty_paths: Vec<String>,
    pub device: String,
    /// exp(NLL / tokens) on the test set: the exact marginal (K-Max excepted) for latent rows, the
    /// model's own likelihood for soft attention; for the relaxed (Dirichlet) row exp(-Σ_t L_K / T)
    /// with L_K the importance-weighted bound of K = `test_ppl_bound_samples` draws from q, an
    /// upper bound (in expectation), not a marginal likelihood.
    pub test_ppl: f64,
    /// K of the importance-weighted bound behind `test_ppl` (relaxed row only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_ppl_bound_samples: Option<usize>,
    pub test_prior_entropy: f64,
    /// Test PPL under K-Max with the configured K (latent rows).
    pub test_ppl_kmax: Option<f64>,
    /// (K, PPL) pairs.
    pub ppl_against_k: Vec<(usize, f64)>,
    /// sacrebleu-compatible BLEU (13a, detokenised).
    pub bleu: f64,
    pub bleu_line: String,
    /// multi-bleu.perl on 13a-tokenised, lowercased text (the paper's variant).
    pub bleu_tok_lc: f64,
    /// BLEU with K-Max decoding.
    pub bleu_kmax: Option<f64>,
    /// Corpus BLEU without smoothing (13a-tokenised, cased; 0 when a 4-gram precision is 0).
    #[serde(default)]
    pub bleu_unsmoothed: Option<f64>,
    /// Corpus chrF (sacrebleu's chrF2 defaults), on the same translations.
    #[serde(default)]
    pub chrf: Option<f64>,
    /// Mean over test target tokens of ln S: the uniform prior's entropy, beside
    /// `test_prior_entropy`.
    #[serde(default)]
    pub test_log_source_len: Option<f64>,
    /// Mean over test target tokens of H(q(z_t | x, y)), for rows with an inference network.
    #[serde(default)]
    pub test_posterior_entropy: Option<f64>,
    /// Test PPL with each target paired with another sentence's source
    /// ([`shuffled_sources`]); far above `test_ppl` when the model uses its source.
    #[serde(default)]
    pub test_ppl_shuffled_source: Option<f64>,
    /// Fraction of test target tokens where the prior's and the posterior's most probable
    /// alignment agree, for rows with an inference network.
    #[serde(default)]
    pub prior_posterior_argmax_agreement: Option<f64>,
    /// −log p(y | x) of each test sentence, in test order: the paired bootstrap's items.
    #[serde(default)]
    pub test_sentence_nll: Vec<f64>,
    /// Target tokens (EOS included) of each test sentence, in test order.
    #[serde(default)]
    pub test_sentence_tokens: Vec<f64>,
    pub bleu_sentences: usize,
    pub train_tokens_per_second: f64,
    pub train_seconds: f64,
    pub epochs: usize,
    pub history: Vec<EpochRecord>,
    /// How training ended and the run's identity (`stopped_early`, `best_epoch`, `identity`).
    #[serde(flatten)]
    pub outcome: runner::RunOutcome,
    pub dropped_too_long: usize,
}

/// A loaded corpus as `[data]` asks: lower-cased with `lowercase`, then split again with
/// `resplit` (deduplicated first with `dedup`).
pub fn derive_corpus(mut corpus: ParallelCorpus, cfg: &NmtDataConfig) -> Result<ParallelCorpus> {
    if cfg.lowercase {
        for split in [&mut corpus.train, &mut corpus.valid, &mut corpus.test] {
            for p in split.iter_mut() {
                p.src = p.src.to_lowercase();
                p.tgt = p.tgt.to_lowercase();
            }
        }
    }
    match &cfg.resplit {
        Some(r) => resplit(corpus, r, cfg.dedup).with_context(|| format!("[data] resplit of {}", cfg.corpus)),
        None => Ok(corpus),
    }
}

/// The corpus, its BPE and the id-encoded splits (with limits applied).
pub struct PreparedData {
    pub corpus: ParallelCorpus,
    pub tokenizer: tokenizers::Tokenizer,
    pub train: Vec<IdPair>,
    pub valid: Vec<IdPair>,
    pub test: Vec<IdPair>,
    pub test_refs: Vec<String>,
    /// The reference translations of `valid`.
    pub valid_refs: Vec<String>,
    pub vocab: usize,
    pub dropped_too_long: usize,
    /// The files the data was read from: the corpus folder's split files and the BPE file.
    pub files: Vec<std::path::PathBuf>,
}

/// The corpus named by `[data] corpus` (the offline ding-de-en, or a Hub translation set read
/// from its prepared text files), its joint BPE (learnt once on train, cached beside the
/// corpus) and the id-encoded splits; prints the corpus's split sizes.
pub fn prepare_data(cfg: &NmtDataConfig, cache_dir: &Path) -> Result<PreparedData> {
    prepare(cfg, cache_dir, true)
}

/// [`prepare_data`], printing on stdout only with `announce` (and only what preparing a corpus
/// missing from the cache prints).
fn prepare(cfg: &NmtDataConfig, cache_dir: &Path, announce: bool) -> Result<PreparedData> {
    let mut corpus = match cfg.corpus.as_str() {
        "ding-de-en" if announce => ding::prepare_ding(cache_dir)?,
        "ding-de-en" => ding::prepare_ding_quietly(cache_dir)?,
        hub => crate::data::hub::prepare::load_translation_corpus(hub, cache_dir, announce).with_context(|| format!("[data] corpus = \"{hub}\""))?,
    };
    let mut files = corpus_files(&cache_dir.join(&cfg.corpus))?;
    corpus = derive_corpus(corpus, cfg)?;
    let bpe_path = match &cfg.resplit {
        Some(r) => {
            let dir = cache_dir.join(&cfg.corpus).join(r.dir_name(cfg.lowercase, cfg.dedup));
            ding::write_corpus(&corpus, &dir)?;
            files.extend(ding::SPLIT_FILES.iter().map(|f| dir.join(f)));
            dir.join(format!("bpe-{}.json", cfg.bpe_vocab))
        }
        None => {
            let lc = if cfg.lowercase { "-lc" } else { "" };
            cache_dir.join(&cfg.corpus).join(format!("bpe-{}{lc}.json", cfg.bpe_vocab))
        }
    };
    // A training set too small for `bpe_vocab` merges learns a smaller vocabulary; its size is
    // kept beside the BPE file (`<bpe>.size`), so a file of any other size is refused.
    let size_path = bpe_path.with_extension("json.size");
    let tokenizer = if bpe_path.exists() {
        ding::load_bpe(&bpe_path)?
    } else {
        let t = ding::train_bpe(&corpus, cfg.bpe_vocab, &bpe_path)?;
        let learnt = t.get_vocab_size(true);
        if learnt < cfg.bpe_vocab {
            crate::provenance::write_atomic(&size_path, learnt.to_string().as_bytes())?;
        }
        t
    };
    let expected = match std::fs::read_to_string(&size_path) {
        Ok(text) => text.trim().parse::<usize>().with_context(|| format!("{}: not a vocabulary size", size_path.display()))?,
        Err(_) => cfg.bpe_vocab,
    };
    let entries = tokenizer.get_vocab_size(true);
    if entries != expected || entries > cfg.bpe_vocab {
        bail!(
            "{}: a vocabulary of {entries} entries, but [data] bpe_vocab = {} (learnt: {expected}); delete the file to learn the BPE again",
            bpe_path.display(),
            cfg.bpe_vocab
        )
    }
    files.push(bpe_path.clone());
    let ids = encode_corpus(&tokenizer, &corpus, cfg.max_len)?;
    let limit = |mut v: Vec<IdPair>, l: Option<usize>| {
        if let Some(l) = l {
            v.truncate(l);
        }
        v
    };
    let refs = |split: &[ding::Pair], limit: Option<usize>| -> Vec<String> {
        split[..limit.unwrap_or(usize::MAX).min(split.len())].iter().map(|p| p.tgt.clone()).collect()
    };
    Ok(PreparedData {
        test_refs: refs(&corpus.test, cfg.test_limit),
        valid_refs: refs(&corpus.valid, cfg.valid_limit),
        train: limit(ids.train.pairs, cfg.train_limit),
        valid: limit(ids.valid.pairs, cfg.valid_limit),
        test: limit(ids.test.pairs, cfg.test_limit),
        vocab: ids.vocab,
        dropped_too_long: ids.train.dropped_too_long,
        files,
        corpus,
        tokenizer,
    })
}

/// The prepared files of a corpus folder (split files, manifests): every plain file not hidden and
/// not a BPE (`bpe-*.json`, listed by the run that reads it), in name order.
fn corpus_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files = vec![];
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let bpe = name.starts_with("bpe-") && name.ends_with(".json");
        if e.path().is_file() && !name.starts_with('.') && !bpe {
            files.push(e.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Held-out metrics over a split (sentence batches in length order).
pub fn evaluate(model: &NmtModel, kind: &ObjectiveKind, pairs: &[IdPair], batch: usize, device: &Device) -> Result<Metrics> {
    let mut m = Metrics::default();
    for idx in make_batches(pairs, batch, None) {
        let b = NmtBatch::new(pairs, &idx, device)?;
        let out = model.forward_for(kind, &b, None)?;
        m.add(&held_out_metrics(kind, &out)?);
    }
    Ok(m)
}

/// Held-out results of a split with per-sentence likelihoods and alignment diagnostics.
#[derive(Debug, Clone, Default)]
pub struct SplitDiagnostics {
    /// The same sums [`evaluate`] returns (same batches, same order).
    pub metrics: Metrics,
    /// −log p(y | x) of each sentence, in split order (empty when the row's held-out
    /// evaluation has no per-step likelihood).
    pub sentence_nll: Vec<f64>,
    /// Target tokens of each sentence (EOS included), in split order.
    pub sentence_tokens: Vec<f64>,
    /// Mean over target tokens of ln S, the entropy of the uniform prior over the S source
    /// positions.
    pub log_source_len: f64,
    /// Mean over target tokens of H(q(z_t | x, y)), for rows with an inference network.
    pub posterior_entropy: Option<f64>,
    /// Fraction of target tokens where argmax_i p(z_t = i) = argmax_i q(z_t = i).
    pub prior_posterior_argmax_agreement: Option<f64>,
}

/// A row's test metrics with diagnostics: [`evaluate`] (for the relaxed (Dirichlet) row, minus
/// the importance-weighted bound with `eval.relaxed_bound_samples` draws from q per token,
/// [`relaxed_held_out_bound`], drawn from the run's seed), plus per-sentence NLL (rows whose
/// held-out likelihood is enumerated), the uniform prior's entropy and, with an inference
/// network, the posterior's entropy and its argmax agreement with the prior.
pub fn evaluate_with_diagnostics(model: &NmtModel, cfg: &NmtConfig, pairs: &[IdPair], opts: &RunOptions) -> Result<SplitDiagnostics> {
    let (kind, batch, device) = (&cfg.objective, cfg.train.batch, &opts.device);
    let relaxed = match cfg.objective {
        ObjectiveKind::VarRelaxed { positivity } => {
            if cfg.eval.relaxed_bound_samples == 0 {
                bail!("eval.relaxed_bound_samples = 0: the relaxed row's test bound needs at least 1 sample")
            }
            Some((positivity, SeededRng::new(opts.seed).fork(0x6977)))
        }
        _ => None,
    };
    let mut relaxed = relaxed;
    use crate::distributions::{Categorical, Distribution};
    use crate::objective::AlignmentOutputs;
    use candle_core::{DType, D};
    let n = pairs.len();
    let mut d = SplitDiagnostics { sentence_nll: vec![f64::NAN; n], sentence_tokens: vec![0.0; n], ..Default::default() };
    let (mut log_s, mut post_h, mut agree, mut have_ll, mut have_q) = (0.0, 0.0, 0.0, true, false);
    let rows = |t: &candle_core::Tensor| -> Result<Vec<f64>> { Ok(t.to_dtype(DType::F64)?.to_vec1::<f64>()?) };
    for idx in make_batches(pairs, batch, None) {
        let b = NmtBatch::new(pairs, &idx, device)?;
        let out = model.forward_for(kind, &b, None)?;
        let log_lik = match relaxed.as_mut() {
            Some((positivity, rng)) => {
                d.metrics.add(&relaxed_held_out_bound(*positivity, &out, cfg.eval.relaxed_bound_samples, rng)?);
                None
            }
            None => {
                let est = crate::objective::held_out(kind, &out)?;
                d.metrics.add(&est.metrics);
                est.log_lik
            }
        };
        let mask = b.tgt_mask.to_dtype(DType::F32)?;
        let tokens = rows(&mask.sum(1)?)?;
        let src_len = rows(&b.src_mask.to_dtype(DType::F32)?.sum(1)?)?;
        for (r, &i) in idx.iter().enumerate() {
            d.sentence_tokens[i] = tokens[r];
            log_s += tokens[r] * src_len[r].ln();
        }
        match &log_lik {
            Some(ll) => {
                let nll = rows(&ll.to_dtype(DType::F32)?.mul(&mask)?.sum(1)?.neg()?)?;
                for (r, &i) in idx.iter().enumerate() {
                    d.sentence_nll[i] = nll[r];
                }
            }
            None => have_ll = false,
        }
        if let Some(q_scores) = out.posterior_scores() {
            have_q = true;
            let q = Categorical::from_logits(q_scores, out.position_mask())?;
            let p = Categorical::from_logits(out.prior_scores(), out.position_mask())?;
            let masked_sum = |t: candle_core::Tensor| -> Result<f64> { Ok(t.to_dtype(DType::F32)?.mul(&mask)?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?) };
            post_h += masked_sum(q.entropy()?)?;
            agree += masked_sum(q.log_probs().argmax(D::Minus1)?.eq(&p.log_probs().argmax(D::Minus1)?)?)?;
        }
    }
    let tokens = d.metrics.tokens;
    d.log_source_len = log_s / tokens;
    if !have_ll {
        d.sentence_nll.clear();
    }
    if have_q {
        d.posterior_entropy = Some(post_h / tokens);
        d.prior_posterior_argmax_agreement = Some(agree / tokens);
    }
    Ok(d)
}

/// The split with each target paired with another sentence's source (sentence i gets the
/// source of sentence (i + ⌊n/2⌋) mod n): a model that reads its source scores these worse.
pub fn shuffled_sources(pairs: &[IdPair]) -> Vec<IdPair> {
    let n = pairs.len();
    (0..n).map(|i| IdPair { src: pairs[(i + n / 2) % n].src.clone(), tgt: pairs[i].tgt.clone() }).collect()
}

/// Test PPL of a latent model under K-Max with a given K.
pub fn evaluate_kmax(model: &NmtModel, k: usize, pairs: &[IdPair], batch: usize, device: &Device) -> Result<f64> {
    evaluate(model, &ObjectiveKind::KMax { k }, pairs, batch, device)?
        .perplexity()
        .context("K-Max evaluation gave no likelihood")
}

fn is_latent(kind: &ObjectiveKind) -> bool {
    !matches!(kind, ObjectiveKind::Soft | ObjectiveKind::VarRelaxed { .. })
}

fn decode_marginal(kind: &ObjectiveKind) -> Marginal {
    if is_latent(kind) {
        Marginal::Exact
    } else {
        Marginal::Soft
    }
}

/// The NMT training task: batches of sentence pairs, the model's forward pass and the
/// objective, validation perplexity.
struct NmtTask<'a> {
    model: &'a NmtModel,
    data: &'a PreparedData,
    batch: usize,
    objective: ObjectiveKind,
    seed: u64,
    device: &'a Device,
}

impl TrainTask for NmtTask<'_> {
    fn epoch_plan(&self, epoch: usize) -> Vec<Vec<usize>> {
        make_batches(&self.data.train, self.batch, Some(&mut SeededRng::new(self.seed).fork(1000 + epoch as u64)))
    }
    fn train_step(
        &self,
        idx: &[usize],
        kind: &ObjectiveKind,
        dropout: &mut SeededRng,
        noise: &mut SeededRng,
        estimator: &mut EstimatorState,
    ) -> Result<Estimate> {
        let batch = NmtBatch::new(&self.data.train, idx, self.device)?;
        let out = self.model.forward_for(kind, &batch, Some(dropout))?;
        Ok(estimate(kind, &out, estimator, noise)?)
    }
    fn valid_metric(&self) -> runner::ValidMetric {
        runner::ValidMetric::Ppl
    }
    fn validate(&self) -> Result<f64> {
        evaluate(self.model, &self.objective, &self.data.valid, self.batch, self.device)?
            .perplexity()
            .context("validation gave no likelihood")
    }
    fn divergence_bound(&self) -> Option<(f64, String)> {
        let v = self.data.vocab;
        Some((2.0 * v as f64, format!("perplexity twice the vocabulary size; a uniform guess over the {v} entries scores {v}")))
    }
}

/// Train (or resume) and evaluate one (config, seed). Returns the result written to
/// `out_dir/result.json`, or `None` when stopped by `stop_after_steps`.
pub fn run(cfg: &NmtConfig, merged: &toml::Value, opts: &RunOptions) -> Result<Option<NmtResult>> {
    cfg.validate()?;
    let hash = config_hash(merged);
    let dev = &opts.device;
    let data = prepare(&cfg.data, &opts.cache_dir, opts.progress)?;
    if data.train.is_empty() {
        bail!("no training pairs left after length filtering (max_len {})", cfg.data.max_len)
    }
    let mut ps = ParamStore::new(opts.seed, cfg.model.init, dev);
    let model = NmtModel::new(&mut ps, &cfg.model, data.vocab, cfg.objective.needs_posterior())?;
    let mut opt = Adam::new(ps.named_vars(), cfg.train.adam())?;
    let task = NmtTask { model: &model, data: &data, batch: cfg.train.batch, objective: cfg.objective, seed: opts.seed, device: dev };
    let mut loop_cfg = LoopConfig::new(&cfg.name, cfg.objective, &cfg.train, &hash, opts);
    loop_cfg.identity = Some(crate::rundir::RunIdentity::new(opts.seed, &opts.cache_dir, &data.files)?);
    let Some(st) = runner::train(&task, &ps, &mut opt, &loop_cfg, &opts.out_dir)? else { return Ok(None) };
    let result = test_evaluation(cfg, &model, &data, &st, &hash, opts)?;
    write_atomic(&opts.out_dir.join("result.json"), serde_json::to_string_pretty(&result)?.as_bytes())?;
    Ok(Some(result))
}

/// An NMT model's held-out numbers on one split, computed as a run computes its test results.
#[derive(Debug, Clone, Serialize)]
pub struct NmtSplitMetrics {
    /// Sentence pairs scored.
    pub sentences: usize,
    /// As [`NmtResult::test_ppl`].
    pub ppl: f64,
    pub prior_entropy: f64,
    /// PPL under K-Max with `eval.kmax` (latent rows).
    pub ppl_kmax: Option<f64>,
    /// (K, PPL) of `eval.kmax_curve` (latent rows).
    pub ppl_against_k: Vec<(usize, f64)>,
    /// sacrebleu-compatible BLEU (13a, detokenised) of beam search on the first `bleu_sentences`.
    pub bleu: f64,
    pub bleu_line: String,
    /// multi-bleu.perl on 13a-tokenised, lowercased text.
    pub bleu_tok_lc: f64,
    /// BLEU with K-Max decoding (latent rows).
    pub bleu_kmax: Option<f64>,
    pub bleu_unsmoothed: f64,
    pub chrf: f64,
    pub bleu_sentences: usize,
    /// Mean over target tokens of ln S.
    pub log_source_len: f64,
    pub posterior_entropy: Option<f64>,
    pub ppl_shuffled_source: Option<f64>,
    pub prior_posterior_argmax_agreement: Option<f64>,
    /// −log p(y | x) of each sentence (empty when not enumerated).
    #[serde(skip)]
    pub sentence_nll: Vec<f64>,
    #[serde(skip)]
    pub sentence_tokens: Vec<f64>,
    /// The beam-search translations behind `bleu`, with their references.
    #[serde(skip)]
    pub translations: Vec<(String, String)>,
}

/// The numbers of [`NmtSplitMetrics`] for `pairs` with reference translations `refs` (in order):
/// perplexities (exact, K-Max, shuffled sources), diagnostics and BLEU / chrF of beam search.
pub fn evaluate_split(
    model: &NmtModel,
    cfg: &NmtConfig,
    pairs: &[IdPair],
    refs: &[String],
    tokenizer: &tokenizers::Tokenizer,
    opts: &RunOptions,
) -> Result<NmtSplitMetrics> {
    let dev = &opts.device;
    let diag = evaluate_with_diagnostics(model, cfg, pairs, opts)?;
    let ppl_shuffled = evaluate(model, &cfg.objective, &shuffled_sources(pairs), cfg.train.batch, dev)?.perplexity();
    let latent = is_latent(&cfg.objective);
    let (ppl_kmax, ppl_against_k) = if latent {
        let kmax = evaluate_kmax(model, cfg.eval.kmax, pairs, cfg.train.batch, dev)?;
        let curve = cfg
            .eval
            .kmax_curve
            .iter()
            .map(|&k| Ok((k, evaluate_kmax(model, k, pairs, cfg.train.batch, dev)?)))
            .collect::<Result<Vec<_>>>()?;
        (Some(kmax), curve)
    } else {
        (None, vec![])
    };
    let n = cfg.eval.bleu_sentences.unwrap_or(pairs.len()).min(pairs.len()).min(refs.len());
    let translate = |how: Marginal| -> Result<Vec<String>> {
        let bar = progress_bar(opts.progress, n as u64, &format!("{} translating", cfg.name));
        let mut out = Vec::with_capacity(n);
        for p in &pairs[..n] {
            out.push(translate_ids(model, tokenizer, &p.src, how, &cfg.eval.beam, dev)?);
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(out)
    };
    let hyps = translate(decode_marginal(&cfg.objective))?;
    let refs = vec![refs[..n].to_vec()];
    let bleu = corpus_bleu(&hyps, &refs, &BleuOptions::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tok = |v: &[String]| v.iter().map(|s| tokenize_13a(s)).collect::<Vec<_>>();
    let bleu_tok_lc = multi_bleu(&tok(&hyps), &[tok(&refs[0])], true).score;
    let bleu_unsmoothed = multi_bleu(&tok(&hyps), &[tok(&refs[0])], false).score;
    let chrf = crate::eval::chrf::corpus_chrf(&hyps, &refs[0]).map_err(|e| anyhow::anyhow!(e))?;
    let bleu_kmax = if latent {
        let h = translate(Marginal::KMax(cfg.eval.kmax))?;
        Some(corpus_bleu(&h, &refs, &BleuOptions::default()).map_err(|e| anyhow::anyhow!("{e}"))?.score)
    } else {
        None
    };
    let metrics = &diag.metrics;
    Ok(NmtSplitMetrics {
        sentences: pairs.len(),
        ppl: metrics.perplexity().unwrap_or(f64::NAN),
        prior_entropy: metrics.prior_entropy(),
        ppl_kmax,
        ppl_against_k,
        bleu: bleu.score,
        bleu_line: bleu.to_string(),
        bleu_tok_lc,
        bleu_kmax,
        bleu_unsmoothed,
        chrf,
        bleu_sentences: n,
        log_source_len: diag.log_source_len,
        posterior_entropy: diag.posterior_entropy,
        ppl_shuffled_source: ppl_shuffled,
        prior_posterior_argmax_agreement: diag.prior_posterior_argmax_agreement,
        sentence_nll: diag.sentence_nll,
        sentence_tokens: diag.sentence_tokens,
        translations: hyps.into_iter().zip(refs.into_iter().flatten()).collect(),
    })
}

/// Beam search on the source ids `src` and the subwords of the best hypothesis joined back
/// into text.
fn translate_ids(model: &NmtModel, tokenizer: &tokenizers::Tokenizer, src: &[u32], how: Marginal, beam: &BeamConfig, dev: &Device) -> Result<String> {
    if src.is_empty() {
        return Ok(String::new());
    }
    let ids = beam_search(model, src, how, beam, dev)?;
    tokenizer.decode(&ids, true).map_err(|e| anyhow::anyhow!("decoding: {e}"))
}

fn test_evaluation(
    cfg: &NmtConfig,
    model: &NmtModel,
    data: &PreparedData,
    st: &TrainState,
    hash: &str,
    opts: &RunOptions,
) -> Result<NmtResult> {
    let m = evaluate_split(model, cfg, &data.test, &data.test_refs, &data.tokenizer, opts)?;
    alignment_pictures(model, cfg, data, opts, 3)?;
    let text: String = m.translations.iter().map(|(h, r)| format!("{h}\t{r}\n")).collect();
    write_atomic(&opts.out_dir.join("translations.txt"), text.as_bytes())?;
    Ok(NmtResult {
        name: cfg.name.clone(),
        seed: opts.seed,
        preset: opts.preset.clone(),
        config_hash: hash.to_string(),
        git_revision: git_revision(),
        git_dirty_paths: git_dirty_paths(),
        device: format!("{:?}", opts.device),
        test_ppl: m.ppl,
        test_ppl_bound_samples: matches!(cfg.objective, ObjectiveKind::VarRelaxed { .. }).then_some(cfg.eval.relaxed_bound_samples),
        test_prior_entropy: m.prior_entropy,
        test_ppl_kmax: m.ppl_kmax,
        ppl_against_k: m.ppl_against_k,
        bleu: m.bleu,
        bleu_line: m.bleu_line,
        bleu_tok_lc: m.bleu_tok_lc,
        bleu_kmax: m.bleu_kmax,
        bleu_unsmoothed: Some(m.bleu_unsmoothed),
        chrf: Some(m.chrf),
        test_log_source_len: Some(m.log_source_len),
        test_posterior_entropy: m.posterior_entropy,
        test_ppl_shuffled_source: m.ppl_shuffled_source,
        prior_posterior_argmax_agreement: m.prior_posterior_argmax_agreement,
        test_sentence_nll: m.sentence_nll,
        test_sentence_tokens: m.sentence_tokens,
        bleu_sentences: m.bleu_sentences,
        train_tokens_per_second: st.train_tokens / st.train_seconds.max(1e-9),
        train_seconds: st.train_seconds,
        epochs: st.epoch,
        outcome: runner::RunOutcome::of(st),
        history: st.history.clone(),
        dropped_too_long: data.dropped_too_long,
    })
}

/// Heatmaps of the prior p(z_t) (and the posterior q(z_t) when the model has an inference
/// network) for the first `n` test sentences, as `alignment-<k>.{png,svg}` in the run directory.
fn alignment_pictures(model: &NmtModel, cfg: &NmtConfig, data: &PreparedData, opts: &RunOptions, n: usize) -> Result<()> {
    let n = n.min(data.test.len());
    if n == 0 {
        return Ok(());
    }
    let all = pair_alignments(model, &cfg.objective, &data.tokenizer, &data.test[..n], &opts.device)?;
    for (k, a) in all.iter().enumerate() {
        let panels: Vec<(&str, &[Vec<f32>])> = a.panels().into_iter().filter(|(title, _)| *title != TRUE_POSTERIOR).collect();
        crate::plot::alignment_heatmaps(&opts.out_dir.join(format!("alignment-{k}")), "source subword", "target subword", &a.source_tokens, &a.target_tokens, &panels)?;
    }
    Ok(())
}

/// The title of the prior's matrix.
pub const PRIOR: &str = "prior p(z_t | x, y<t)";
/// The title of the inference network's matrix.
pub const POSTERIOR: &str = "posterior q(z_t | x, y)";
/// The title of the exact posterior's matrix.
pub const TRUE_POSTERIOR: &str = "true posterior p(z_t | x, y<=t)";

/// The alignment distributions of one sentence pair: a row per target step (the end of
/// sentence last), a column per source subword.
#[derive(Debug, Clone, Serialize)]
pub struct PairAlignments {
    /// Source subwords (`▁` shown as `_`).
    pub source_tokens: Vec<String>,
    /// Target subwords and `</s>`.
    pub target_tokens: Vec<String>,
    /// The prior p(z_t | x, y_<t).
    pub prior: Vec<Vec<f32>>,
    /// The inference network's q(z_t | x, y) (rows with one).
    pub posterior: Option<Vec<Vec<f32>>>,
    /// The exact posterior p(z_t | x, y_≤t) ∝ p(z_t | x, y_<t) f(x, z_t)[y_t] (latent rows, whose
    /// likelihood is a mixture over alignments).
    pub true_posterior: Option<Vec<Vec<f32>>>,
}

impl PairAlignments {
    /// The matrices present, each with its title.
    pub fn panels(&self) -> Vec<(&'static str, &[Vec<f32>])> {
        let mut panels: Vec<(&'static str, &[Vec<f32>])> = vec![(PRIOR, &self.prior)];
        if let Some(q) = &self.posterior {
            panels.push((POSTERIOR, q));
        }
        if let Some(p) = &self.true_posterior {
            panels.push((TRUE_POSTERIOR, p));
        }
        panels
    }

    /// A matrix as text: target tokens down the side, source tokens along the top, each
    /// probability with two decimals.
    pub fn matrix_text(&self, m: &[Vec<f32>]) -> String {
        let label_w = self.target_tokens.iter().map(|t| t.chars().count()).max().unwrap_or(0);
        let widths: Vec<usize> = self.source_tokens.iter().map(|s| s.chars().count().max(4)).collect();
        let mut out = format!("{:label_w$}", "");
        for (s, w) in self.source_tokens.iter().zip(&widths) {
            out.push_str(&format!(" {s:>w$}"));
        }
        out.push('\n');
        for (t, row) in self.target_tokens.iter().zip(m) {
            out.push_str(&format!("{t:<label_w$}"));
            for (v, w) in row.iter().zip(&widths) {
                out.push_str(&format!(" {v:>w$.2}"));
            }
            out.push('\n');
        }
        out
    }
}

/// A subword of the BPE as shown in alignments: `▁` (a word start) as `_`.
fn piece(tokenizer: &tokenizers::Tokenizer, id: u32) -> String {
    tokenizer.id_to_token(id).unwrap_or_else(|| format!("#{id}")).replace('\u{2581}', "_")
}

/// [`PairAlignments`] of each pair under a model trained with `kind` (one batch; padding cut
/// off).
pub fn pair_alignments(model: &NmtModel, kind: &ObjectiveKind, tokenizer: &tokenizers::Tokenizer, pairs: &[IdPair], device: &Device) -> Result<Vec<PairAlignments>> {
    use crate::distributions::Categorical;
    use crate::objective::{AlignmentOutputs, Enumerable};
    use candle_core::DType;
    let idx: Vec<usize> = (0..pairs.len()).collect();
    let batch = NmtBatch::new(pairs, &idx, device)?;
    let out = model.forward(&batch, None)?;
    let probs = |scores: &candle_core::Tensor| -> Result<Vec<Vec<Vec<f32>>>> {
        Ok(Categorical::from_logits(scores, out.position_mask())?.probs()?.to_dtype(DType::F32)?.to_vec3::<f32>()?)
    };
    let prior = probs(out.prior_scores())?;
    let post = out.posterior_scores().map(probs).transpose()?;
    let truth = if is_latent(kind) {
        let log_p = Categorical::from_logits(out.prior_scores(), out.position_mask())?.log_probs().clone();
        Some(probs(&(log_p + Enumerable::log_f_all(&out)?.to_dtype(out.prior_scores().dtype())?)?)?)
    } else {
        None
    };
    let mut all = Vec::with_capacity(pairs.len());
    for (k, p) in pairs.iter().enumerate() {
        let source_tokens: Vec<String> = p.src.iter().map(|&i| piece(tokenizer, i)).collect();
        let mut target_tokens: Vec<String> = p.tgt.iter().map(|&i| piece(tokenizer, i)).collect();
        target_tokens.push("</s>".into());
        let cut = |m: &Vec<Vec<Vec<f32>>>| -> Vec<Vec<f32>> { m[k][..target_tokens.len()].iter().map(|r| r[..source_tokens.len()].to_vec()).collect() };
        all.push(PairAlignments {
            prior: cut(&prior),
            posterior: post.as_ref().map(cut),
            true_posterior: truth.as_ref().map(cut),
            source_tokens,
            target_tokens,
        });
    }
    Ok(all)
}

/// A finished NMT run loaded for use: its config, data (with the BPE) and the model at the
/// parameters its results were computed with.
pub struct LoadedNmt {
    pub cfg: NmtConfig,
    pub data: PreparedData,
    pub model: NmtModel,
    /// The run's options (seed, preset, device, data cache; `out_dir` is the run directory).
    pub opts: RunOptions,
    /// The checkpoint the parameters come from.
    pub checkpoint: std::path::PathBuf,
}

/// Loads a finished NMT run (see [`crate::experiments::finished`]): validates its config,
/// prepares its data from `cache_dir` (refused when it is not the run's data) without printing,
/// builds the model and loads its best checkpoint.
pub fn load_run(run: &FinishedRun, cache_dir: &Path, device: &Device, progress: bool) -> Result<LoadedNmt> {
    if run.task != Task::Nmt {
        bail!("{}: a {} run, not a translation (NMT) run", run.dir.display(), run.task.name().to_uppercase())
    }
    let cfg: NmtConfig = run.config()?;
    cfg.validate().with_context(|| run.config_source.clone())?;
    let data = prepare(&cfg.data, cache_dir, false)?;
    run.check_data(cache_dir, &data.files)?;
    let mut ps = ParamStore::new(run.seed, cfg.model.init, device);
    let model = NmtModel::new(&mut ps, &cfg.model, data.vocab, cfg.objective.needs_posterior())?;
    let checkpoint = run.checkpoint()?;
    crate::train::checkpoint::load_params(&checkpoint, &ps, device)?;
    let opts = RunOptions {
        preset: run.preset.clone(),
        seed: run.seed,
        out_dir: run.dir.clone(),
        cache_dir: cache_dir.to_path_buf(),
        stop_after_steps: None,
        device: device.clone(),
        progress,
    };
    Ok(LoadedNmt { cfg, data, model, opts, checkpoint })
}

impl LoadedNmt {
    /// Whether the row's likelihood is a mixture over alignments (K-Max decoding applies).
    pub fn is_latent(&self) -> bool {
        is_latent(&self.cfg.objective)
    }

    /// How the row decodes: the exact marginal for latent rows, soft attention otherwise.
    pub fn marginal(&self) -> Marginal {
        decode_marginal(&self.cfg.objective)
    }

    /// Subword ids of a sentence as training saw it: lower-cased when `[data] lowercase`, then
    /// BPE.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let text = if self.cfg.data.lowercase { text.to_lowercase() } else { text.to_string() };
        let enc = self.data.tokenizer.encode(text.trim(), false).map_err(|e| anyhow::anyhow!("tokenizing {text:?}: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The translation of one source sentence by beam search (`beam`) with `how`; an empty
    /// sentence translates to an empty one.
    pub fn translate(&self, source: &str, how: Marginal, beam: &BeamConfig) -> Result<String> {
        translate_ids(&self.model, &self.data.tokenizer, &self.encode(source)?, how, beam, &self.opts.device)
    }

    /// [`PairAlignments`] of a source sentence and its translation `target`.
    pub fn alignments(&self, source: &str, target: &str) -> Result<PairAlignments> {
        let pair = IdPair { src: self.encode(source)?, tgt: self.encode(target)? };
        if pair.src.is_empty() || pair.tgt.is_empty() {
            bail!("alignments need a non-empty source and target (source {source:?}, target {target:?})")
        }
        let mut all = pair_alignments(&self.model, &self.cfg.objective, &self.data.tokenizer, &[pair], &self.opts.device)?;
        all.pop().context("no alignments computed")
    }

    /// The names of the corpus's source and target languages (`German`, `English`), or the
    /// codes the corpus gives when the name is not known.
    pub fn languages(&self) -> (String, String) {
        let (src, tgt) = corpus_languages(&self.cfg.data.corpus);
        (language_name(&src), language_name(&tgt))
    }
}

/// The source and target language codes of a corpus: `de`, `en` for ding-de-en; those of the Hub
/// registry for Hub sets; `source`, `target` for an unknown corpus.
pub fn corpus_languages(corpus: &str) -> (String, String) {
    if corpus == "ding-de-en" {
        return ("de".into(), "en".into());
    }
    let registry = crate::data::hub::registry::HubRegistry::embedded().ok();
    let ds = registry.as_ref().and_then(|r| r.datasets.get(corpus));
    match ds.and_then(|d| Some((d.source.clone()?, d.target.clone()?))) {
        Some(langs) => langs,
        None => ("source".into(), "target".into()),
    }
}

/// The English name of a language code (`de` → `German`), else the code.
pub fn language_name(code: &str) -> String {
    let name = match code {
        "de" => "German",
        "en" => "English",
        "fr" => "French",
        "es" => "Spanish",
        "it" => "Italian",
        "nl" => "Dutch",
        "cs" => "Czech",
        "ru" => "Russian",
        "zh" => "Chinese",
        "ar" => "Arabic",
        other => other,
    };
    name.to_string()
}

/// `varattn eval` of an NMT run: [`evaluate_split`] on `split`, beside the result's numbers (test)
/// or the best epoch's validation perplexity (valid).
pub fn evaluate_run(run: &FinishedRun, split: Split, cache_dir: &Path, device: &Device, progress: bool) -> Result<Vec<Metric>> {
    let l = load_run(run, cache_dir, device, progress)?;
    let (pairs, refs) = match split {
        Split::Test => (&l.data.test, &l.data.test_refs),
        Split::Valid => (&l.data.valid, &l.data.valid_refs),
    };
    let m = evaluate_split(&l.model, &l.cfg, pairs, refs, &l.data.tokenizer, &l.opts)?;
    let test = split == Split::Test;
    let rec = |key: &str| if test { run.recorded(key) } else { None };
    // validation during training scores the relaxed row by its own likelihood, not the bound
    let relaxed = matches!(l.cfg.objective, ObjectiveKind::VarRelaxed { .. });
    let valid_ppl = if relaxed { None } else { run.best_valid_score() };
    let mut metrics = vec![
        Metric::new("sentences", Some(m.sentences as f64), if test { run.result.get("test_sentence_tokens").and_then(|v| v.as_array()).map(|a| a.len() as f64) } else { None }),
        Metric::new("ppl", Some(m.ppl), if test { run.recorded("test_ppl") } else { valid_ppl }),
        Metric::new("prior_entropy", Some(m.prior_entropy), rec("test_prior_entropy")),
        Metric::new("ppl_kmax", m.ppl_kmax, rec("test_ppl_kmax")),
    ];
    let curve = if test { run.recorded_ppl_against_k() } else { vec![] };
    for (k, ppl) in &m.ppl_against_k {
        metrics.push(Metric::new(format!("ppl_kmax_{k}"), Some(*ppl), curve.iter().find(|(j, _)| j == k).map(|(_, p)| *p)));
    }
    metrics.extend([
        Metric::new("bleu", Some(m.bleu), rec("bleu")),
        Metric::new("bleu_tok_lc", Some(m.bleu_tok_lc), rec("bleu_tok_lc")),
        Metric::new("bleu_kmax", m.bleu_kmax, rec("bleu_kmax")),
        Metric::new("bleu_unsmoothed", Some(m.bleu_unsmoothed), rec("bleu_unsmoothed")),
        Metric::new("chrf", Some(m.chrf), rec("chrf")),
        Metric::new("bleu_sentences", Some(m.bleu_sentences as f64), rec("bleu_sentences")),
        Metric::new("log_source_len", Some(m.log_source_len), rec("test_log_source_len")),
        Metric::new("posterior_entropy", m.posterior_entropy, rec("test_posterior_entropy")),
        Metric::new("ppl_shuffled_source", m.ppl_shuffled_source, rec("test_ppl_shuffled_source")),
        Metric::new("prior_posterior_argmax_agreement", m.prior_posterior_argmax_agreement, rec("prior_posterior_argmax_agreement")),
    ]);
    Ok(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ding::Pair;

    #[test]
    fn the_reference_preset_lowercases_deduplicates_and_splits_500_500_by_seed() {
        let (cfg, _): (NmtConfig, _) = crate::config::load_with_preset(&crate::repo_root().join("configs/nmt/soft.toml"), "reference").unwrap();
        cfg.validate().unwrap();
        let d = &cfg.data;
        assert!(d.lowercase && d.dedup && d.resplit == Some(Resplit { seed: 3435, valid: 500, test: 500 }));
        assert_eq!((d.bpe_vocab, cfg.train.epochs, cfg.train.batch, cfg.train.patience), (4000, 12, 64, None));
        // 1500 distinct sentences, each also in upper case (a duplicate once lower-cased) and one
        // repeated exactly, spread over the three splits of the original corpus
        let pair = |i: usize| Pair::new(format!("Satz {i}."), format!("Sentence {i}."));
        let all: Vec<Pair> = (0..1500)
            .flat_map(|i| {
                let p = pair(i);
                let upper = Pair::new(p.src.to_uppercase(), p.tgt.to_uppercase());
                [p.clone(), upper, p]
            })
            .collect();
        let corpus = ParallelCorpus { valid: all[..700].to_vec(), test: all[700..1400].to_vec(), train: all[1400..].to_vec() };
        let a = derive_corpus(corpus.clone(), d).unwrap();
        assert_eq!((a.valid.len(), a.test.len(), a.train.len()), (500, 500, 500));
        let mut seen = std::collections::HashSet::new();
        for (_, split) in a.splits() {
            for p in split {
                assert_eq!((p.src.to_lowercase(), p.tgt.to_lowercase()), (p.src.clone(), p.tgt.clone()));
                assert!(seen.insert(p.clone()), "{p:?} twice");
            }
        }
        assert_eq!(derive_corpus(corpus.clone(), d).unwrap(), a, "the split is not deterministic");
        let other = NmtDataConfig { resplit: Some(Resplit { seed: 1, valid: 500, test: 500 }), ..d.clone() };
        assert_ne!(derive_corpus(corpus.clone(), &other).unwrap().test, a.test);
        // without dedup the lower-cased duplicates stay
        let kept = NmtDataConfig { dedup: false, ..d.clone() };
        assert_eq!(derive_corpus(corpus, &kept).unwrap().train.len(), 4500 - 1000);
        assert_eq!(Resplit { seed: 3435, valid: 500, test: 500 }.dir_name(true, true), "resplit-3435-v500-t500-lc-dedup");
    }

    #[test]
    fn dedup_without_resplit_is_refused() {
        let (mut cfg, _): (NmtConfig, _) = crate::config::load_with_preset(&crate::repo_root().join("configs/nmt/soft.toml"), "smoke").unwrap();
        cfg.data.dedup = true;
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("data.dedup") && e.contains("data.resplit"), "{e}");
    }
}
