//! The training loop every experiment shares: epochs of seeded batch plans, one objective
//! estimate and Adam step per batch, validation and learning-rate halving per epoch, the best
//! checkpoint kept, and a resumable checkpoint that makes an interrupted run end exactly where an
//! uninterrupted one does (on the CPU).
use super::{checkpoint, Adam, ParamStore};
use crate::objective::{Estimate, EstimatorState, ObjectiveKind};
use crate::rng::{RngState, SeededRng};
use crate::rundir::RunIdentity;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// What the loop needs from an experiment. `K` is what a row trains with: an [`ObjectiveKind`]
/// for the attention models, another estimator type for models with other latent variables
/// (e.g. [`crate::objective::MonotonicEstimator`]).
pub trait TrainTask<K = ObjectiveKind> {
    /// The batches of epoch `epoch` as lists of example indices (seeded by the epoch, so a
    /// resumed run sees the same order).
    fn epoch_plan(&self, epoch: usize) -> Vec<Vec<usize>>;
    /// Forward pass of one training batch and the objective's estimate.
    fn train_step(
        &self,
        batch: &[usize],
        kind: &K,
        dropout: &mut SeededRng,
        noise: &mut SeededRng,
        estimator: &mut EstimatorState,
    ) -> Result<Estimate>;
    /// The validation score to minimise (perplexity, NLL).
    fn validate(&self) -> Result<f64>;
    /// What [`TrainTask::validate`] measures, for the epoch line and the training log.
    fn valid_metric(&self) -> ValidMetric {
        ValidMetric::Score
    }
    /// The largest validation score of a run that has not diverged, and what the bound is (e.g.
    /// for perplexity, a multiple of the vocabulary size V that a uniform guess scores); a
    /// non-finite score or one above it stops the run without a result.
    fn divergence_bound(&self) -> Option<(f64, String)> {
        None
    }
    /// The lowest mean training objective per token (a log-likelihood or a bound on it, in nats)
    /// of an epoch of a run that has not diverged, and what the floor is; an epoch's mean below it
    /// stops the run without a result (for scores such as the error rate that a diverged model
    /// need not push past [`TrainTask::divergence_bound`]).
    fn objective_floor(&self) -> Option<(f64, String)> {
        None
    }
}

/// The validation score of a task: its name and how a value is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidMetric {
    /// Perplexity exp(NLL / tokens).
    Ppl,
    /// Mean negative log-likelihood per example, in nats.
    Nll,
    /// Phoneme error rate, a fraction (printed as a percentage).
    Per,
    /// Any other score to minimise.
    Score,
}

impl ValidMetric {
    /// The name on the epoch line and in the training log (`PPL`, `NLL`, `PER`, `score`).
    pub fn name(self) -> &'static str {
        match self {
            ValidMetric::Ppl => "PPL",
            ValidMetric::Nll => "NLL",
            ValidMetric::Per => "PER",
            ValidMetric::Score => "score",
        }
    }

    /// `value` as the epoch line shows it, e.g. `PPL 53.60`, `NLL 0.520`, `PER 41.2%`.
    pub fn show(self, value: f64) -> String {
        match self {
            ValidMetric::Ppl => format!("PPL {value:.2}"),
            ValidMetric::Per => format!("PER {:.1}%", 100.0 * value),
            m => format!("{} {value:.3}", m.name()),
        }
    }
}

/// Where and how to run one (config, seed).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub preset: String,
    pub seed: u64,
    pub out_dir: std::path::PathBuf,
    pub cache_dir: std::path::PathBuf,
    /// Stop at the first checkpoint written at or after this many steps (at least 1) — to test
    /// resumption.
    pub stop_after_steps: Option<usize>,
    pub device: candle_core::Device,
    pub progress: bool,
}

/// The `[train]` table of every experiment config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Examples (sentences, questions) per batch.
    pub batch: usize,
    pub epochs: usize,
    pub lr: f64,
    pub max_grad_norm: f64,
    /// Multiply the learning rate by this when the validation score does not improve.
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
    /// Early stopping: stop after this many consecutive epochs (after pretraining) whose
    /// validation score does not improve on the best; absent = run all `epochs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    /// Stop once learning-rate halving has brought the rate below this floor; absent = no floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_lr: Option<f64>,
    /// Progress threshold r: an epoch whose validation score s does not reach s < (1 − r)·best
    /// counts as not improving (the learning rate is multiplied by `lr_decay` and the epoch
    /// counts toward `patience`), though a score below the best still becomes the best
    /// checkpoint. Absent = any score below the best is progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_improvement: Option<f64>,
}

impl TrainConfig {
    /// Checks every value against its allowed range (the error names the key and the range).
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        check::at_least("train.batch", self.batch, 1)?;
        check::at_least("train.epochs", self.epochs, 1)?;
        check::positive("train.lr", self.lr)?;
        check::positive("train.max_grad_norm", self.max_grad_norm)?;
        check::within("train.lr_decay", self.lr_decay, (0.0, false), (1.0, true))?;
        check::at_least("train.checkpoint_every", self.checkpoint_every, 1)?;
        if let Some(p) = self.patience {
            check::at_least("train.patience", p, 1)?;
        }
        if let Some(m) = self.min_lr {
            check::within("train.min_lr", m, (0.0, false), (self.lr, true))?;
        }
        if let Some(r) = self.min_improvement {
            check::within("train.min_improvement", r, (0.0, true), (1.0, false))?;
        }
        if let Some(d) = self.moving_average_baseline {
            check::within("train.moving_average_baseline", d, (0.0, true), (1.0, false))?;
        }
        if let Some(k) = &self.pretrain_objective {
            crate::config::check_objective("train.pretrain_objective", k)?;
        }
        Ok(())
    }

    /// The Adam settings: the papers' plain Adam with global-norm clipping.
    pub fn adam(&self) -> super::AdamConfig {
        super::AdamConfig { lr: self.lr, max_grad_norm: Some(self.max_grad_norm), ..Default::default() }
    }
}

/// How a finished run's training ended and what it was run on, as every task's result records it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    /// Whether training ended before `epochs` (`train.patience`, `train.min_lr`).
    #[serde(default)]
    pub stopped_early: bool,
    /// The epoch whose parameters were evaluated (the best validation score).
    #[serde(default)]
    pub best_epoch: Option<usize>,
    /// Seed, data files (sha256) and build features of the run (absent in older results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<RunIdentity>,
}

impl RunOutcome {
    pub fn of(st: &TrainState) -> Self {
        RunOutcome { stopped_early: st.stopped_early, best_epoch: st.best_epoch, identity: st.identity.clone() }
    }
}

/// Schedule settings of the loop.
#[derive(Debug, Clone)]
pub struct LoopConfig<K = ObjectiveKind> {
    pub name: String,
    pub objective: K,
    pub epochs: usize,
    pub lr_decay: f64,
    pub pretrain_epochs: usize,
    pub pretrain_objective: Option<K>,
    pub kl_warmup_steps: usize,
    pub checkpoint_every: usize,
    pub moving_average_baseline: Option<f64>,
    /// See [`TrainConfig::patience`].
    pub patience: Option<usize>,
    /// See [`TrainConfig::min_lr`].
    pub min_lr: Option<f64>,
    /// See [`TrainConfig::min_improvement`].
    pub min_improvement: Option<f64>,
    pub config_hash: String,
    /// Seed, data and build of the run: a checkpoint of another identity is refused.
    pub identity: Option<RunIdentity>,
    pub seed: u64,
    pub progress: bool,
    pub stop_after_steps: Option<usize>,
}

impl LoopConfig {
    /// The loop settings of a row: its `[train]` table, objective and run options.
    pub fn new(name: &str, objective: ObjectiveKind, train: &TrainConfig, config_hash: &str, opts: &RunOptions) -> Self {
        let mut cfg = LoopConfig::with_estimator(name, objective, train, config_hash, opts);
        cfg.pretrain_epochs = train.pretrain_epochs;
        cfg.pretrain_objective = train.pretrain_objective;
        cfg
    }
}

impl<K> LoopConfig<K> {
    /// The loop settings of a row trained with another kind of estimator `K`: no pretraining
    /// phase (the `[train]` table's `pretrain_*` keys, which name an [`ObjectiveKind`], are
    /// ignored; [`LoopConfig::new`] honours them).
    pub fn with_estimator(name: &str, objective: K, train: &TrainConfig, config_hash: &str, opts: &RunOptions) -> Self {
        Self {
            name: name.to_string(),
            objective,
            epochs: train.epochs,
            lr_decay: train.lr_decay,
            pretrain_epochs: 0,
            pretrain_objective: None,
            kl_warmup_steps: train.kl_warmup_steps,
            checkpoint_every: train.checkpoint_every,
            moving_average_baseline: train.moving_average_baseline,
            patience: train.patience,
            min_lr: train.min_lr,
            min_improvement: train.min_improvement,
            config_hash: config_hash.to_string(),
            identity: None,
            seed: opts.seed,
            progress: opts.progress,
            stop_after_steps: opts.stop_after_steps,
        }
    }
}

/// Per-epoch record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_objective_per_token: f64,
    pub train_tokens_per_second: f64,
    /// The validation score, in the task's metric ([`TrainTask::valid_metric`]: NMT perplexity,
    /// VQA answer NLL, G2P phoneme error rate). Read from `valid_ppl` in files written before
    /// the field had this name.
    #[serde(alias = "valid_ppl")]
    pub valid: f64,
    /// The learning rate the epoch trained with.
    pub lr: f64,
    /// Whether this epoch's parameters became the best checkpoint (a new best validation score,
    /// or any epoch of pretraining).
    #[serde(default)]
    pub improved: bool,
}

/// The validation score of a `history` entry of a `result.json` read as JSON: `valid`, or
/// `valid_ppl` in files written before the field had that name.
pub fn history_score(entry: &serde_json::Value) -> Option<f64> {
    entry.get("valid").or_else(|| entry.get("valid_ppl"))?.as_f64()
}

/// Index batches of 0..n in chunks of `size` (at least 1): in order, or shuffled by `rng`.
pub fn index_batches(n: usize, size: usize, rng: Option<&mut SeededRng>) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..n).collect();
    if let Some(r) = rng {
        r.shuffle(&mut idx);
    }
    idx.chunks(size.max(1)).map(|c| c.to_vec()).collect()
}

/// The shuffled batch plan of training epoch `epoch` of a run seeded with `seed` (RNG stream
/// 1000 + epoch, so a resumed run replays the same plan).
pub fn epoch_batches(n: usize, size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    index_batches(n, size, Some(&mut SeededRng::new(seed).fork(1000 + epoch as u64)))
}

/// Everything besides tensors needed to resume exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub config_hash: String,
    /// The run's seed, data and build (absent in checkpoints written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<RunIdentity>,
    pub epoch: usize,
    /// Batches of `epoch` already done.
    pub cursor: usize,
    pub step: usize,
    pub dropout_rng: RngState,
    pub noise_rng: RngState,
    pub estimator: EstimatorState,
    pub lr: f64,
    /// Best validation score so far (None before the first validation).
    pub best_valid_ppl: Option<f64>,
    pub history: Vec<EpochRecord>,
    pub train_seconds: f64,
    pub train_tokens: f64,
    /// Running sums of the current epoch.
    pub epoch_objective_sum: f64,
    pub epoch_tokens: f64,
    pub epoch_seconds: f64,
    pub finished: bool,
    /// The epoch (1-based) whose parameters are the best checkpoint.
    #[serde(default)]
    pub best_epoch: Option<usize>,
    /// Consecutive epochs after pretraining without a new best validation score.
    #[serde(default)]
    pub epochs_without_improvement: usize,
    /// Whether the run ended before `epochs` by [`TrainConfig::patience`] or [`TrainConfig::min_lr`].
    #[serde(default)]
    pub stopped_early: bool,
}

/// Why a run stops after an epoch before its maximum number of epochs, if it does: `patience`
/// epochs in a row without a new best ([`TrainConfig::patience`]), or a learning rate `lr` (after
/// this epoch's halving) below `min_lr`.
pub fn early_stop(patience: Option<usize>, epochs_without_improvement: usize, min_lr: Option<f64>, lr: f64) -> Option<String> {
    if let Some(p) = patience.filter(|&p| epochs_without_improvement >= p) {
        return Some(format!("{epochs_without_improvement} epoch(s) without a better validation score (train.patience = {p})"));
    }
    min_lr.filter(|&m| lr < m).map(|m| format!("learning rate {lr:.3e} below train.min_lr = {m:.3e}"))
}

/// One line of `train_log.jsonl`, appended to the run directory after every epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    pub epoch: usize,
    /// Optimiser steps so far.
    pub step: usize,
    /// Mean training objective per token of the epoch.
    pub train_objective_per_token: f64,
    /// [`ValidMetric::name`] of `valid`.
    pub valid_metric: String,
    pub valid: f64,
    /// The learning rate the epoch trained with.
    pub lr: f64,
    pub improved: bool,
    /// Seconds of training steps in the epoch (validation excluded).
    pub seconds: f64,
    /// Seconds of the validation after it.
    pub valid_seconds: f64,
}

/// The training log of a run directory.
pub const TRAIN_LOG: &str = "train_log.jsonl";

fn append_log(out_dir: &Path, line: &LogLine) -> Result<()> {
    use std::io::Write;
    let path = out_dir.join(TRAIN_LOG);
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).with_context(|| format!("opening {}", path.display()))?;
    f.write_all(format!("{}\n", serde_json::to_string(line)?).as_bytes()).with_context(|| format!("appending to {}", path.display()))
}

pub fn progress_bar(enabled: bool, len: u64, prefix: &str) -> indicatif::ProgressBar {
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

/// Train (or resume from `out_dir/last`) until the configured epochs are done. Returns `None`
/// when stopped early by `stop_after_steps`, else the final state; the best parameters are in
/// `out_dir/best` (loaded back into `params` before returning).
pub fn train<K: Copy>(
    task: &dyn TrainTask<K>,
    params: &ParamStore,
    opt: &mut Adam,
    cfg: &LoopConfig<K>,
    out_dir: &Path,
) -> Result<Option<TrainState>> {
    let dev = params.device().clone();
    let root = SeededRng::new(cfg.seed);
    let last = out_dir.join("last");
    let best = out_dir.join("best");
    let mut st = if checkpoint::exists(&last) {
        let mut st: TrainState = checkpoint::load(&last, params, opt, &dev).with_context(|| {
            format!("{}: cannot resume from this checkpoint; rerun with --fresh to start the run over", last.with_extension("safetensors").display())
        })?;
        if st.config_hash != cfg.config_hash {
            bail!(
                "{}: checkpoint of another config (hash {} vs {}); use --fresh, --stale-to DIR or another --out",
                last.display(),
                st.config_hash,
                cfg.config_hash
            )
        }
        if let (Some(there), Some(now)) = (&st.identity, &cfg.identity) {
            let d = there.differences(now);
            if !d.is_empty() {
                return Err(crate::rundir::identity_error(&last.with_extension("safetensors"), &d));
            }
        }
        opt.config.lr = st.lr;
        // a checkpoint written before identities were recorded takes this run's
        if st.identity.is_none() {
            st.identity = cfg.identity.clone();
        }
        st
    } else {
        TrainState {
            config_hash: cfg.config_hash.clone(),
            identity: cfg.identity.clone(),
            epoch: 0,
            cursor: 0,
            step: 0,
            dropout_rng: root.fork(2).state(),
            noise_rng: root.fork(3).state(),
            estimator: EstimatorState {
                moving_average: cfg.moving_average_baseline.map(crate::objective::MovingAverage::new),
                ..Default::default()
            },
            lr: opt.config.lr,
            best_valid_ppl: None,
            history: vec![],
            train_seconds: 0.0,
            train_tokens: 0.0,
            epoch_objective_sum: 0.0,
            epoch_tokens: 0.0,
            epoch_seconds: 0.0,
            finished: false,
            best_epoch: None,
            epochs_without_improvement: 0,
            stopped_early: false,
        }
    };
    let mut dropout_rng = SeededRng::from_state(st.dropout_rng);
    let mut noise_rng = SeededRng::from_state(st.noise_rng);
    let save = |st: &TrainState, opt: &Adam, path: &Path| checkpoint::save(path, params, opt, st);
    // --stop-after-steps N: stop once a checkpoint is written at step N or later
    let stop_here = |st: &TrainState| -> bool {
        let stop = cfg.stop_after_steps.is_some_and(|n| st.step >= n);
        if stop {
            println!(
                "{}: stopped at step {}, the first checkpoint at or after step {} (--stop-after-steps)",
                cfg.name,
                st.step,
                cfg.stop_after_steps.unwrap_or(0)
            );
        }
        stop
    };
    while st.epoch < cfg.epochs && !st.finished {
        let kind = match (&cfg.pretrain_objective, st.epoch < cfg.pretrain_epochs) {
            (Some(k), true) => *k,
            _ => cfg.objective,
        };
        let plan = task.epoch_plan(st.epoch);
        let bar = progress_bar(cfg.progress, plan.len() as u64, &format!("{} epoch {}", cfg.name, st.epoch + 1));
        bar.set_position(st.cursor as u64);
        for idx in plan.iter().skip(st.cursor) {
            let t0 = Instant::now();
            let est = task.train_step(idx, &kind, &mut dropout_rng, &mut noise_rng, &mut st.estimator)?;
            let loss = est.loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            if !loss.is_finite() {
                bail!("{}: loss is {loss} at epoch {} step {} — stopping (lower the learning rate?)", cfg.name, st.epoch + 1, st.step)
            }
            let kl_weight = match cfg.kl_warmup_steps {
                0 => 1.0,
                w => ((st.step + 1) as f64 / w as f64).min(1.0),
            };
            opt.backward_step(&est.loss_with_kl_weight(kl_weight)?)
                .with_context(|| format!("{}: epoch {} step {}", cfg.name, st.epoch + 1, st.step))?;
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
            if st.step % cfg.checkpoint_every == 0 {
                st.dropout_rng = dropout_rng.state();
                st.noise_rng = noise_rng.state();
                st.lr = opt.config.lr;
                save(&st, opt, &last)?;
                if stop_here(&st) {
                    bar.abandon_with_message("stopped (--stop-after-steps)");
                    return Ok(None);
                }
            }
        }
        bar.finish_and_clear();
        let t_valid = Instant::now();
        let vppl = task.validate()?;
        let valid_seconds = t_valid.elapsed().as_secs_f64();
        let bound = task.divergence_bound();
        if !vppl.is_finite() || bound.as_ref().is_some_and(|(b, _)| vppl > *b) {
            let why = match &bound {
                Some((b, what)) if vppl.is_finite() => format!("above {b:.4} ({what})"),
                _ => "not a finite number".to_string(),
            };
            bail!(
                "{}: training diverged: the validation score after epoch {} is {vppl:.4e}, {why}; stopping without a result (lower train.lr, now {:.3e}, and rerun with --fresh)",
                cfg.name,
                st.epoch + 1,
                opt.config.lr
            )
        }
        let objective = st.epoch_objective_sum / st.epoch_tokens.max(1.0);
        if let Some((floor, what)) = task.objective_floor().filter(|(f, _)| objective.is_nan() || objective < *f) {
            bail!(
                "{}: training diverged: the mean training objective of epoch {} is {objective:.4e} nats per token, below {floor:.4} ({what}); stopping without a result (lower train.lr, now {:.3e}, and rerun with --fresh)",
                cfg.name,
                st.epoch + 1,
                opt.config.lr
            )
        }
        let after_pretraining = st.epoch + 1 >= cfg.pretrain_epochs;
        let improved = st.best_valid_ppl.is_none_or(|b| vppl < b) || !after_pretraining;
        let progress = improved && st.best_valid_ppl.zip(cfg.min_improvement).is_none_or(|(b, r)| vppl < (1.0 - r) * b || !after_pretraining);
        let epoch_lr = opt.config.lr;
        st.history.push(EpochRecord {
            epoch: st.epoch + 1,
            train_objective_per_token: objective,
            train_tokens_per_second: st.epoch_tokens / st.epoch_seconds.max(1e-9),
            valid: vppl,
            lr: epoch_lr,
            improved,
        });
        let metric = task.valid_metric();
        if cfg.progress {
            eprintln!(
                "{} epoch {}: valid {}{}, train {:.0} tok/s, lr {:.2e}",
                cfg.name,
                st.epoch + 1,
                metric.show(vppl),
                if improved { " (best)" } else { "" },
                st.epoch_tokens / st.epoch_seconds.max(1e-9),
                epoch_lr
            );
        }
        let log_line = LogLine {
            epoch: st.epoch + 1,
            step: st.step,
            train_objective_per_token: objective,
            valid_metric: metric.name().to_string(),
            valid: vppl,
            lr: epoch_lr,
            improved,
            seconds: st.epoch_seconds,
            valid_seconds,
        };
        if improved {
            st.best_valid_ppl = Some(vppl);
            st.best_epoch = Some(st.epoch + 1);
        }
        if progress {
            st.epochs_without_improvement = 0;
        } else {
            opt.config.lr *= cfg.lr_decay;
            st.epochs_without_improvement += 1;
        }
        let stop = if after_pretraining && st.epoch + 1 < cfg.epochs {
            early_stop(cfg.patience, st.epochs_without_improvement, cfg.min_lr, opt.config.lr)
        } else {
            None
        };
        if let Some(why) = &stop {
            println!("{}: stopping early after epoch {}: {why}; the best checkpoint is epoch {}", cfg.name, st.epoch + 1, st.best_epoch.unwrap_or(0));
            st.stopped_early = true;
            st.finished = true;
        }
        st.epoch += 1;
        st.cursor = 0;
        st.epoch_objective_sum = 0.0;
        st.epoch_tokens = 0.0;
        st.epoch_seconds = 0.0;
        st.dropout_rng = dropout_rng.state();
        st.noise_rng = noise_rng.state();
        st.lr = opt.config.lr;
        if improved {
            save(&st, opt, &best)?;
        }
        save(&st, opt, &last)?;
        append_log(out_dir, &log_line)?;
        if stop_here(&st) {
            return Ok(None);
        }
    }
    st.finished = true;
    save(&st, opt, &last)?;
    if checkpoint::exists(&best) {
        checkpoint::load_params(&best, params, &dev)?;
    }
    Ok(Some(st))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::Metrics;
    use candle_core::{Device, Tensor};

    #[test]
    fn an_epoch_record_is_written_as_valid_and_read_from_the_old_name_too() {
        let old = r#"{"epoch": 2, "train_objective_per_token": -3.5, "train_tokens_per_second": 10.0, "valid_ppl": 41.25, "lr": 0.001}"#;
        let r: EpochRecord = serde_json::from_str(old).unwrap();
        assert_eq!((r.epoch, r.valid, r.improved), (2, 41.25, false));
        let written = serde_json::to_value(&r).unwrap();
        assert_eq!(written["valid"], 41.25);
        assert!(written.get("valid_ppl").is_none(), "{written}");
    }
    use std::cell::{Cell, RefCell};

    /// A one-parameter task: loss (w - 1 - ε)² with ε from the noise stream; the validation
    /// score of epoch e is `scores[e]` (whatever w is), and every validation records w.
    struct Scripted {
        w: Tensor,
        scores: Vec<f64>,
        epoch: Cell<usize>,
        seen_w: RefCell<Vec<f32>>,
    }

    impl TrainTask for Scripted {
        fn epoch_plan(&self, epoch: usize) -> Vec<Vec<usize>> {
            self.epoch.set(epoch);
            epoch_batches(4, 2, 7, epoch)
        }
        fn train_step(&self, _: &[usize], _: &ObjectiveKind, _: &mut SeededRng, noise: &mut SeededRng, _: &mut EstimatorState) -> Result<Estimate> {
            let eps = noise.next_normal() * 0.1;
            let loss = self.w.affine(1.0, -1.0 - eps)?.sqr()?.sum_all()?;
            let v = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            Ok(Estimate { loss, metrics: Metrics { tokens: 1.0, objective_sum: -v, ..Default::default() }, kl_total: None, log_lik: None })
        }
        fn valid_metric(&self) -> ValidMetric {
            ValidMetric::Nll
        }
        fn validate(&self) -> Result<f64> {
            self.seen_w.borrow_mut().push(self.w.flatten_all()?.to_vec1::<f32>()?[0]);
            Ok(self.scores[self.epoch.get()])
        }
    }

    const SCORES: [f64; 8] = [5.0, 4.0, 4.5, 4.0, 4.7, 3.0, 2.0, 1.0];

    /// Trains the scripted task in `dir` (a fresh process's objects), returns the state (None when
    /// stopped by `stop_after_steps`) and the parameter after training.
    fn run(dir: &Path, patience: Option<usize>, stop_after_steps: Option<usize>) -> (Option<TrainState>, f32, Vec<f32>) {
        run_with(dir, patience, None, stop_after_steps)
    }

    fn run_with(dir: &Path, patience: Option<usize>, min_improvement: Option<f64>, stop_after_steps: Option<usize>) -> (Option<TrainState>, f32, Vec<f32>) {
        let dev = Device::Cpu;
        let mut ps = ParamStore::new(3, 0.1, &dev);
        let w = ps.uniform("w", &[1]).unwrap();
        let task = Scripted { w: w.clone(), scores: SCORES.to_vec(), epoch: Cell::new(0), seen_w: RefCell::new(vec![]) };
        let train = TrainConfig {
            batch: 2,
            epochs: SCORES.len(),
            lr: 0.1,
            max_grad_norm: 5.0,
            lr_decay: 0.5,
            pretrain_epochs: 0,
            pretrain_objective: None,
            moving_average_baseline: None,
            kl_warmup_steps: 0,
            checkpoint_every: 1,
            patience,
            min_lr: None,
            min_improvement,
        };
        train.validate().unwrap();
        let mut opt = Adam::new(ps.named_vars(), train.adam()).unwrap();
        let opts = RunOptions {
            preset: "test".into(),
            seed: 3435,
            out_dir: dir.to_path_buf(),
            cache_dir: dir.to_path_buf(),
            stop_after_steps,
            device: dev,
            progress: false,
        };
        let cfg = LoopConfig::new("scripted", ObjectiveKind::Soft, &train, "h", &opts);
        let st = super::train(&task, &ps, &mut opt, &cfg, dir).unwrap();
        let seen = task.seen_w.borrow().clone();
        (st, w.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0], seen)
    }

    fn log_lines(dir: &Path) -> Vec<LogLine> {
        let text = std::fs::read_to_string(dir.join(TRAIN_LOG)).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn early_stop_counts_epochs_without_improvement_and_the_lr_floor() {
        assert_eq!(early_stop(None, 100, None, 1e-9), None);
        assert_eq!(early_stop(Some(2), 1, None, 1e-3), None);
        assert!(early_stop(Some(2), 2, None, 1e-3).unwrap().contains("train.patience = 2"));
        assert_eq!(early_stop(None, 0, Some(1e-4), 1e-4), None);
        assert!(early_stop(None, 0, Some(1e-4), 5e-5).unwrap().contains("train.min_lr"));
    }

    #[test]
    fn an_epoch_below_the_progress_threshold_becomes_the_best_but_halves_the_rate_and_counts_toward_patience() {
        let dir = tempfile::tempdir().unwrap();
        // threshold 15%: 5, 4 (20% better: progress), 4.5, 4.0, 4.7 (three without), then 3.0,
        // 2.0, 1.0 (each >= 15% better: progress, no halving)
        let (st, ..) = run_with(dir.path(), Some(4), Some(0.15), None);
        let st = st.unwrap();
        assert_eq!(st.history.len(), 8);
        assert_eq!(st.history.iter().map(|h| h.lr).collect::<Vec<_>>(), [0.1, 0.1, 0.1, 0.05, 0.025, 0.0125, 0.0125, 0.0125]);
        assert_eq!(st.best_epoch, Some(8));
        let dir = tempfile::tempdir().unwrap();
        // threshold 40%: epoch 2's 4.0 is a new best (below 5) without progress (not below 3.0)
        let (st, ..) = run_with(dir.path(), Some(2), Some(0.4), None);
        let st = st.unwrap();
        assert_eq!(st.history.iter().map(|h| h.improved).collect::<Vec<_>>(), [true, true, false]);
        assert_eq!(st.history.iter().map(|h| h.lr).collect::<Vec<_>>(), [0.1, 0.1, 0.05]);
        assert!(st.stopped_early);
        assert_eq!(st.best_epoch, Some(2));
        let bad = TrainConfig { min_improvement: Some(1.0), ..serde_json::from_str::<TrainConfig>(r#"{"batch":1,"epochs":1,"lr":0.1,"max_grad_norm":1,"lr_decay":0.5,"checkpoint_every":1}"#).unwrap() };
        assert!(format!("{:#}", bad.validate().unwrap_err()).contains("train.min_improvement"));
    }

    #[test]
    fn patience_stops_after_that_many_epochs_without_improvement_and_keeps_the_best() {
        let dir = tempfile::tempdir().unwrap();
        let (st, w, seen) = run(dir.path(), Some(2), None);
        let st = st.unwrap();
        // 5, 4 (best), 4.5 (1 without), 4.0 (not below 4: 2 without) -> stop after epoch 4
        assert_eq!(st.history.len(), 4);
        assert!(st.stopped_early && st.finished);
        assert_eq!(st.best_epoch, Some(2));
        assert_eq!(st.history.iter().map(|h| h.improved).collect::<Vec<_>>(), [true, true, false, false]);
        assert_eq!(st.history.iter().map(|h| h.lr).collect::<Vec<_>>(), [0.1, 0.1, 0.1, 0.05]);
        // the parameters returned are those validated after the best epoch
        assert_eq!(seen.len(), 4);
        assert_eq!(w, seen[1]);
        assert_ne!(seen[1], seen[3]);
        let log = log_lines(dir.path());
        assert_eq!(log.iter().map(|l| l.epoch).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(log.iter().map(|l| l.step).collect::<Vec<_>>(), [2, 4, 6, 8]);
        assert!(log.iter().all(|l| l.valid_metric == "NLL"));
        assert_eq!(log.iter().map(|l| l.valid).collect::<Vec<_>>(), SCORES[..4]);
        // without patience every epoch runs
        let dir = tempfile::tempdir().unwrap();
        let st = run(dir.path(), None, None).0.unwrap();
        assert_eq!(st.history.len(), SCORES.len());
        assert!(!st.stopped_early);
        assert_eq!(st.best_epoch, Some(8));
    }

    #[test]
    fn a_run_stopped_early_and_resumed_ends_as_the_uninterrupted_one() {
        let whole = tempfile::tempdir().unwrap();
        let (a, wa, _) = run(whole.path(), Some(2), None);
        let a = a.unwrap();
        let parts = tempfile::tempdir().unwrap();
        let mut k = 1;
        let (b, wb) = loop {
            match run(parts.path(), Some(2), Some(k)) {
                (Some(st), w, _) => break (st, w),
                (None, ..) => k += 3,
            }
        };
        assert!(k > 1, "the run was never interrupted");
        // and once more after it finished: nothing is trained again
        let (c, wc, seen) = run(parts.path(), Some(2), None);
        assert!(seen.is_empty());
        for (st, w) in [(&b, wb), (c.as_ref().unwrap(), wc)] {
            assert_eq!(w, wa);
            assert_eq!((st.step, st.epoch, st.best_epoch, st.stopped_early), (a.step, a.epoch, a.best_epoch, a.stopped_early));
            let key = |s: &TrainState| s.history.iter().map(|h| (h.epoch, h.train_objective_per_token, h.valid, h.lr, h.improved)).collect::<Vec<_>>();
            assert_eq!(key(st), key(&a));
        }
        let key = |l: &LogLine| (l.epoch, l.step, l.train_objective_per_token, l.valid, l.lr, l.improved);
        assert_eq!(log_lines(parts.path()).iter().map(key).collect::<Vec<_>>(), log_lines(whole.path()).iter().map(key).collect::<Vec<_>>());
    }

    #[test]
    fn the_metric_names_itself_on_the_epoch_line() {
        assert_eq!(ValidMetric::Ppl.show(53.6), "PPL 53.60");
        assert_eq!(ValidMetric::Nll.show(0.52), "NLL 0.520");
        assert_eq!(ValidMetric::Per.show(0.412), "PER 41.2%");
    }
}
