//! Training and evaluating the NMT model on a parallel corpus with any objective
//! (`varattn train --config configs/nmt/<row>.toml --preset <p> --seed <s>`).
//!
//! A run directory holds `last.{safetensors,json}` (resumable checkpoint), `best.*` (best
//! validation perplexity), `result.json` (test metrics, written last and atomically) and
//! `translations.txt`.
use crate::config::config_hash;
use crate::data::ding::{self, ParallelCorpus};
use crate::data::nmt::{encode_corpus, make_batches, IdPair, NmtBatch};
use crate::eval::beam::{beam_search, BeamConfig};
use crate::eval::bleu::{corpus_bleu, multi_bleu, tokenize_13a, BleuOptions};
use crate::io::{git_revision, write_atomic};
use crate::models::nmt::{Marginal, NmtModel, NmtModelConfig};
use crate::objective::{estimate, held_out_metrics, EstimatorState, Metrics, MovingAverage, ObjectiveKind};
use crate::rng::{RngState, SeededRng};
use crate::train::{checkpoint, Adam, AdamConfig, ParamStore};
use anyhow::{bail, Context, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NmtDataConfig {
    /// Corpus name (`ding-de-en`).
    pub corpus: String,
    pub bpe_vocab: usize,
    /// Training pairs with a side longer than this many subwords are dropped (counted).
    pub max_len: usize,
    /// Use only the first N pairs of a split (smoke runs).
    pub train_limit: Option<usize>,
    pub valid_limit: Option<usize>,
    pub test_limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NmtTrainConfig {
    /// Sentences per batch.
    pub batch: usize,
    pub epochs: usize,
    pub lr: f64,
    pub max_grad_norm: f64,
    /// Multiply the learning rate by this when validation perplexity does not improve.
    pub lr_decay: f64,
    /// Epochs of `pretrain_objective` before the row's objective (the Dirichlet row pretrains
    /// the generative model on E_p log p).
    #[serde(default)]
    pub pretrain_epochs: usize,
    #[serde(default)]
    pub pretrain_objective: Option<ObjectiveKind>,
    /// Use a moving-average REINFORCE baseline with this decay instead of the soft score.
    #[serde(default)]
    pub moving_average_baseline: Option<f64>,
    /// Anneal the KL weight linearly from 0 to 1 over this many steps (0 = no warm-up).
    #[serde(default)]
    pub kl_warmup_steps: usize,
    /// Write the resumable checkpoint every this many steps (and at every epoch end).
    pub checkpoint_every: usize,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NmtConfig {
    /// The row's name, e.g. `var-enum`.
    pub name: String,
    pub objective: ObjectiveKind,
    pub data: NmtDataConfig,
    pub model: NmtModelConfig,
    pub train: NmtTrainConfig,
    pub eval: NmtEvalConfig,
}

/// Per-epoch record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_objective_per_token: f64,
    pub train_tokens_per_second: f64,
    pub valid_ppl: f64,
    pub lr: f64,
}

/// Everything besides tensors needed to resume exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub config_hash: String,
    pub epoch: usize,
    /// Batches of `epoch` already done.
    pub cursor: usize,
    pub step: usize,
    pub dropout_rng: RngState,
    pub noise_rng: RngState,
    pub estimator: EstimatorState,
    pub lr: f64,
    /// Best validation perplexity so far (None before the first validation).
    pub best_valid_ppl: Option<f64>,
    pub history: Vec<EpochRecord>,
    pub train_seconds: f64,
    pub train_tokens: f64,
    /// Running sums of the current epoch.
    pub epoch_objective_sum: f64,
    pub epoch_tokens: f64,
    pub epoch_seconds: f64,
    pub finished: bool,
}

/// Test-set results of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NmtResult {
    pub name: String,
    pub seed: u64,
    pub preset: String,
    pub config_hash: String,
    pub git_revision: Option<String>,
    pub device: String,
    pub test_ppl: f64,
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
    pub bleu_sentences: usize,
    pub train_tokens_per_second: f64,
    pub train_seconds: f64,
    pub epochs: usize,
    pub history: Vec<EpochRecord>,
    pub dropped_too_long: usize,
}

/// Where and how to run.
pub struct RunOptions {
    pub preset: String,
    pub seed: u64,
    pub out_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub resume: bool,
    /// Stop (after checkpointing) once this many steps are done — to test resumption.
    pub stop_after_steps: Option<usize>,
    pub device: Device,
    pub progress: bool,
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
}

pub fn prepare_data(cfg: &NmtDataConfig, cache_dir: &Path) -> Result<PreparedData> {
    if cfg.corpus != "ding-de-en" {
        bail!("unknown corpus `{}` in [data] (known: ding-de-en)", cfg.corpus)
    }
    let corpus = ding::prepare_ding(cache_dir)?;
    let bpe_path = cache_dir.join("ding-de-en").join(format!("bpe-{}.json", cfg.bpe_vocab));
    let tokenizer = if bpe_path.exists() {
        ding::load_bpe(&bpe_path)?
    } else {
        ding::train_bpe(&corpus, cfg.bpe_vocab, &bpe_path)?
    };
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
        corpus,
        tokenizer,
    })
}

/// Held-out metrics over a split (sentence batches in length order).
pub fn evaluate(model: &NmtModel, kind: &ObjectiveKind, pairs: &[IdPair], batch: usize, device: &Device) -> Result<Metrics> {
    let mut m = Metrics::default();
    for idx in make_batches(pairs, batch, None) {
        let b = NmtBatch::new(pairs, &idx, device)?;
        let out = model.forward(&b, None)?;
        m.add(&held_out_metrics(kind, &out)?);
    }
    Ok(m)
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

/// Train (or resume) and evaluate one (config, seed). Returns the result written to
/// `out_dir/result.json`.
pub fn run(cfg: &NmtConfig, merged: &toml::Value, opts: &RunOptions) -> Result<Option<NmtResult>> {
    let hash = config_hash(merged);
    let dev = &opts.device;
    let data = prepare_data(&cfg.data, &opts.cache_dir)?;
    if data.train.is_empty() {
        bail!("no training pairs left after length filtering (max_len {})", cfg.data.max_len)
    }
    let mut ps = ParamStore::new(opts.seed, cfg.model.init, dev);
    let needs_q = cfg.objective.needs_posterior();
    let model = NmtModel::new(&mut ps, &cfg.model, data.vocab, needs_q)?;
    let adam_cfg = AdamConfig { lr: cfg.train.lr, max_grad_norm: Some(cfg.train.max_grad_norm), ..Default::default() };
    let mut opt = Adam::new(ps.named_vars(), adam_cfg)?;
    let root = SeededRng::new(opts.seed);
    let last = opts.out_dir.join("last");
    let best = opts.out_dir.join("best");
    let mut st = if opts.resume && checkpoint::exists(&last) {
        let st: TrainState = checkpoint::load(&last, &ps, &mut opt, dev)?;
        if st.config_hash != hash {
            bail!(
                "{}: checkpoint was made with config {} but the current config hashes to {hash}; use another --out or delete it",
                last.display(),
                st.config_hash
            )
        }
        opt.config.lr = st.lr;
        st
    } else {
        TrainState {
            config_hash: hash.clone(),
            epoch: 0,
            cursor: 0,
            step: 0,
            dropout_rng: root.fork(2).state(),
            noise_rng: root.fork(3).state(),
            estimator: EstimatorState { moving_average: cfg.train.moving_average_baseline.map(MovingAverage::new) },
            lr: cfg.train.lr,
            best_valid_ppl: None,
            history: vec![],
            train_seconds: 0.0,
            train_tokens: 0.0,
            epoch_objective_sum: 0.0,
            epoch_tokens: 0.0,
            epoch_seconds: 0.0,
            finished: false,
        }
    };
    let mut dropout_rng = SeededRng::from_state(st.dropout_rng);
    let mut noise_rng = SeededRng::from_state(st.noise_rng);
    let save = |st: &TrainState, opt: &Adam, path: &Path| checkpoint::save(path, &ps, opt, st);
    while st.epoch < cfg.train.epochs && !st.finished {
        let kind = match (&cfg.train.pretrain_objective, st.epoch < cfg.train.pretrain_epochs) {
            (Some(k), true) => *k,
            _ => cfg.objective,
        };
        let batches = make_batches(&data.train, cfg.train.batch, Some(&mut root.fork(1000 + st.epoch as u64)));
        let bar = progress_bar(opts.progress, batches.len() as u64, &format!("{} epoch {}", cfg.name, st.epoch + 1));
        bar.set_position(st.cursor as u64);
        for idx in batches.iter().skip(st.cursor) {
            let t0 = Instant::now();
            let batch = NmtBatch::new(&data.train, idx, dev)?;
            let out = model.forward(&batch, Some(&mut dropout_rng))?;
            let est = estimate(&kind, &out, &mut st.estimator, &mut noise_rng)?;
            let loss = est.loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            if !loss.is_finite() {
                bail!("{}: loss is {loss} at epoch {} step {} — stopping (lower the learning rate?)", cfg.name, st.epoch + 1, st.step)
            }
            let kl_weight = match cfg.train.kl_warmup_steps {
                0 => 1.0,
                w => ((st.step + 1) as f64 / w as f64).min(1.0),
            };
            opt.backward_step(&est.loss_with_kl_weight(kl_weight)?).with_context(|| format!("epoch {} step {}", st.epoch + 1, st.step))?;
            let dt = t0.elapsed().as_secs_f64();
            st.step += 1;
            st.cursor += 1;
            st.epoch_seconds += dt;
            st.train_seconds += dt;
            st.epoch_tokens += est.metrics.tokens;
            st.train_tokens += est.metrics.tokens;
            st.epoch_objective_sum += est.metrics.objective_sum;
            bar.inc(1);
            bar.set_message(format!(
                "obj/tok {:.3}  {:.0} tok/s",
                st.epoch_objective_sum / st.epoch_tokens,
                st.epoch_tokens / st.epoch_seconds
            ));
            let stop_now = opts.stop_after_steps == Some(st.step);
            if st.step % cfg.train.checkpoint_every == 0 || stop_now {
                st.dropout_rng = dropout_rng.state();
                st.noise_rng = noise_rng.state();
                st.lr = opt.config.lr;
                save(&st, &opt, &last)?;
            }
            if stop_now {
                bar.abandon_with_message("stopped (--stop-after-steps)");
                return Ok(None);
            }
        }
        bar.finish_and_clear();
        // validation, learning-rate schedule, best checkpoint
        let valid = evaluate(&model, &cfg.objective, &data.valid, cfg.train.batch, dev)?;
        let vppl = valid.perplexity().unwrap_or(f64::NAN);
        if !vppl.is_finite() {
            bail!("{}: validation perplexity is {vppl} after epoch {}", cfg.name, st.epoch + 1)
        }
        st.history.push(EpochRecord {
            epoch: st.epoch + 1,
            train_objective_per_token: st.epoch_objective_sum / st.epoch_tokens.max(1.0),
            train_tokens_per_second: st.epoch_tokens / st.epoch_seconds.max(1e-9),
            valid_ppl: vppl,
            lr: opt.config.lr,
        });
        if opts.progress {
            eprintln!(
                "{} epoch {}: valid PPL {vppl:.3}, train {:.0} tok/s, lr {:.2e}",
                cfg.name,
                st.epoch + 1,
                st.epoch_tokens / st.epoch_seconds.max(1e-9),
                opt.config.lr
            );
        }
        let after_pretraining = st.epoch + 1 >= cfg.train.pretrain_epochs;
        let improved = st.best_valid_ppl.is_none_or(|b| vppl < b);
        if improved || !after_pretraining {
            st.best_valid_ppl = Some(vppl);
        } else {
            opt.config.lr *= cfg.train.lr_decay;
        }
        st.epoch += 1;
        st.cursor = 0;
        st.epoch_objective_sum = 0.0;
        st.epoch_tokens = 0.0;
        st.epoch_seconds = 0.0;
        st.dropout_rng = dropout_rng.state();
        st.noise_rng = noise_rng.state();
        st.lr = opt.config.lr;
        if st.best_valid_ppl == Some(vppl) {
            save(&st, &opt, &best)?;
        }
        save(&st, &opt, &last)?;
    }
    st.finished = true;
    save(&st, &opt, &last)?;
    // test evaluation with the best parameters
    if checkpoint::exists(&best) {
        checkpoint::load_params(&best, &ps, dev)?;
    }
    let result = test_evaluation(cfg, &model, &data, &st, &hash, opts)?;
    write_atomic(&opts.out_dir.join("result.json"), serde_json::to_string_pretty(&result)?.as_bytes())?;
    Ok(Some(result))
}

fn progress_bar(enabled: bool, len: u64, prefix: &str) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
            .unwrap()
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_string());
    bar
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
    let test = evaluate(model, &cfg.objective, &data.test, cfg.train.batch, dev)?;
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
        device: format!("{:?}", dev),
        test_ppl: test.perplexity().unwrap_or(f64::NAN),
        test_prior_entropy: test.prior_entropy(),
        test_ppl_kmax,
        ppl_against_k,
        bleu: bleu.score,
        bleu_line: bleu.to_string(),
        bleu_tok_lc,
        bleu_kmax,
        bleu_sentences: n,
        train_tokens_per_second: st.train_tokens / st.train_seconds.max(1e-9),
        train_seconds: st.train_seconds,
        epochs: st.epoch,
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
        crate::report::plot::alignment_heatmaps(&opts.out_dir.join(format!("alignment-{k}")), &src, &tgt, &panels)?;
    }
    Ok(())
}
