//! Training and evaluating the NMT model on a parallel corpus with any objective
//! (`varattn train --config configs/nmt/<row>.toml --preset <p> --seed <s>`).
//!
//! A run directory holds `last.{safetensors,json}` (resumable checkpoint), `best.*` (best
//! validation perplexity), `result.json` (test metrics, written last and atomically) and
//! `translations.txt`.
use super::RunOptions;
use crate::config::config_hash;
use crate::data::ding::{self, ParallelCorpus};
use crate::data::nmt::{encode_corpus, make_batches, IdPair, NmtBatch};
use crate::eval::beam::{beam_search, BeamConfig};
use crate::eval::bleu::{corpus_bleu, multi_bleu, tokenize_13a, BleuOptions};
use crate::io::{git_dirty_paths, git_revision, write_atomic};
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
    pub vocab: usize,
    pub dropped_too_long: usize,
    /// The files the data was read from: the corpus folder's split files and the BPE file.
    pub files: Vec<std::path::PathBuf>,
}

/// The corpus named by `[data] corpus` (the offline ding-de-en, or a Hub translation set read
/// from its prepared text files), its joint BPE (learnt once on train, cached beside the
/// corpus) and the id-encoded splits.
pub fn prepare_data(cfg: &NmtDataConfig, cache_dir: &Path) -> Result<PreparedData> {
    let mut corpus = match cfg.corpus.as_str() {
        "ding-de-en" => ding::prepare_ding(cache_dir)?,
        hub => crate::data::hub_prepare::load_translation_corpus(hub, cache_dir, true).with_context(|| format!("[data] corpus = \"{hub}\""))?,
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
            crate::io::write_atomic(&size_path, learnt.to_string().as_bytes())?;
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
    let n_test = cfg.test_limit.unwrap_or(usize::MAX).min(corpus.test.len());
    Ok(PreparedData {
        test_refs: corpus.test[..n_test].iter().map(|p| p.tgt.clone()).collect(),
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
    use crate::dist::{Categorical, Distribution};
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
    let data = prepare_data(&cfg.data, &opts.cache_dir)?;
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

fn test_evaluation(
    cfg: &NmtConfig,
    model: &NmtModel,
    data: &PreparedData,
    st: &TrainState,
    hash: &str,
    opts: &RunOptions,
) -> Result<NmtResult> {
    let dev = &opts.device;
    let diag = evaluate_with_diagnostics(model, cfg, &data.test, opts)?;
    let test = &diag.metrics;
    let ppl_shuffled = evaluate(model, &cfg.objective, &shuffled_sources(&data.test), cfg.train.batch, dev)?.perplexity();
    let latent = is_latent(&cfg.objective);
    let (test_ppl_kmax, ppl_against_k) = if latent {
        let kmax = evaluate_kmax(model, cfg.eval.kmax, &data.test, cfg.train.batch, dev)?;
        let curve = cfg
            .eval
            .kmax_curve
            .iter()
            .map(|&k| Ok((k, evaluate_kmax(model, k, &data.test, cfg.train.batch, dev)?)))
            .collect::<Result<Vec<_>>>()?;
        (Some(kmax), curve)
    } else {
        (None, vec![])
    };
    let n = cfg.eval.bleu_sentences.unwrap_or(data.test.len()).min(data.test.len());
    let translate = |how: Marginal| -> Result<Vec<String>> {
        let bar = progress_bar(opts.progress, n as u64, &format!("{} translating", cfg.name));
        let mut out = Vec::with_capacity(n);
        for p in &data.test[..n] {
            let ids = beam_search(model, &p.src, how, &cfg.eval.beam, dev)?;
            out.push(data.tokenizer.decode(&ids, true).map_err(|e| anyhow::anyhow!("decoding: {e}"))?);
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(out)
    };
    let hyps = translate(decode_marginal(&cfg.objective))?;
    let refs = vec![data.test_refs[..n].to_vec()];
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
    alignment_pictures(model, data, opts, 3)?;
    let mut text = String::new();
    for (h, r) in hyps.iter().zip(&refs[0]) {
        text.push_str(&format!("{h}\t{r}\n"));
    }
    write_atomic(&opts.out_dir.join("translations.txt"), text.as_bytes())?;
    Ok(NmtResult {
        name: cfg.name.clone(),
        seed: opts.seed,
        preset: opts.preset.clone(),
        config_hash: hash.to_string(),
        git_revision: git_revision(),
        git_dirty_paths: git_dirty_paths(),
        device: format!("{:?}", dev),
        test_ppl: test.perplexity().unwrap_or(f64::NAN),
        test_ppl_bound_samples: matches!(cfg.objective, ObjectiveKind::VarRelaxed { .. }).then_some(cfg.eval.relaxed_bound_samples),
        test_prior_entropy: test.prior_entropy(),
        test_ppl_kmax,
        ppl_against_k,
        bleu: bleu.score,
        bleu_line: bleu.to_string(),
        bleu_tok_lc,
        bleu_kmax,
        bleu_unsmoothed: Some(bleu_unsmoothed),
        chrf: Some(chrf),
        test_log_source_len: Some(diag.log_source_len),
        test_posterior_entropy: diag.posterior_entropy,
        test_ppl_shuffled_source: ppl_shuffled,
        prior_posterior_argmax_agreement: diag.prior_posterior_argmax_agreement,
        test_sentence_nll: diag.sentence_nll.clone(),
        test_sentence_tokens: diag.sentence_tokens.clone(),
        bleu_sentences: n,
        train_tokens_per_second: st.train_tokens / st.train_seconds.max(1e-9),
        train_seconds: st.train_seconds,
        epochs: st.epoch,
        outcome: runner::RunOutcome::of(&st),
        history: st.history.clone(),
        dropped_too_long: data.dropped_too_long,
    })
}

/// Heatmaps of the prior p(z_t) (and the posterior q(z_t) when the model has an inference
/// network) for the first `n` test sentences, as `alignment-<k>.{png,svg}` in the run directory.
fn alignment_pictures(model: &NmtModel, data: &PreparedData, opts: &RunOptions, n: usize) -> Result<()> {
    use crate::objective::AlignmentOutputs;
    let n = n.min(data.test.len());
    if n == 0 {
        return Ok(());
    }
    let idx: Vec<usize> = (0..n).collect();
    let batch = NmtBatch::new(&data.test, &idx, &opts.device)?;
    let out = model.forward(&batch, None)?;
    let probs = |scores: &candle_core::Tensor| -> Result<Vec<Vec<Vec<f32>>>> {
        Ok(crate::dist::Categorical::from_logits(scores, out.position_mask())?.probs()?.to_vec3::<f32>()?)
    };
    let prior = probs(out.prior_scores())?;
    let post = out.posterior_scores().map(probs).transpose()?;
    let piece = |id: u32| data.tokenizer.id_to_token(id).unwrap_or_else(|| format!("#{id}")).replace('\u{2581}', "_");
    for k in 0..n {
        let p = &data.test[k];
        let src: Vec<String> = p.src.iter().map(|&i| piece(i)).collect();
        let mut tgt: Vec<String> = p.tgt.iter().map(|&i| piece(i)).collect();
        tgt.push("</s>".into());
        let cut = |m: &Vec<Vec<f32>>| -> Vec<Vec<f32>> { m[..tgt.len()].iter().map(|r| r[..src.len()].to_vec()).collect() };
        let pm = cut(&prior[k]);
        let mut panels: Vec<(&str, &[Vec<f32>])> = vec![("prior p(z_t)", &pm)];
        let qm = post.as_ref().map(|q| cut(&q[k]));
        if let Some(q) = &qm {
            panels.push(("posterior q(z_t)", q));
        }
        let stem = opts.out_dir.join(format!("alignment-{k}"));
        crate::report::plot::alignment_heatmaps(&stem, "source subword", "target subword", &src, &tgt, &panels)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ding::Pair;

    #[test]
    fn the_reference_preset_lowercases_deduplicates_and_splits_500_500_by_seed() {
        let (cfg, _): (NmtConfig, _) = crate::config::load_with_preset(Path::new("configs/nmt/soft.toml"), "reference").unwrap();
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
        let (mut cfg, _): (NmtConfig, _) = crate::config::load_with_preset(Path::new("configs/nmt/soft.toml"), "smoke").unwrap();
        cfg.data.dedup = true;
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("data.dedup") && e.contains("data.resplit"), "{e}");
    }
}
