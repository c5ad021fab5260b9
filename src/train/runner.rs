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
        if let Some(d) = self.moving_average_baseline {
            check::within("train.moving_average_baseline", d, (0.0, true), (1.0, false))?;
        }
        if let Some(k) = &self.pretrain_objective {
            crate::experiments::check_objective("train.pretrain_objective", k)?;
        }
        Ok(())
    }

    /// The Adam settings: the papers' plain Adam with global-norm clipping.
    pub fn adam(&self) -> super::AdamConfig {
        super::AdamConfig { lr: self.lr, max_grad_norm: Some(self.max_grad_norm), ..Default::default() }
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
    pub valid_ppl: f64,
    pub lr: f64,
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
                "{}: checkpoint was made with config {} but the current config hashes to {}; use --fresh or another --out",
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
        let vppl = task.validate()?;
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
        st.history.push(EpochRecord {
            epoch: st.epoch + 1,
            train_objective_per_token: objective,
            train_tokens_per_second: st.epoch_tokens / st.epoch_seconds.max(1e-9),
            valid_ppl: vppl,
            lr: opt.config.lr,
        });
        if cfg.progress {
            eprintln!(
                "{} epoch {}: valid {vppl:.3}, train {:.0} tok/s, lr {:.2e}",
                cfg.name,
                st.epoch + 1,
                st.epoch_tokens / st.epoch_seconds.max(1e-9),
                opt.config.lr
            );
        }
        let after_pretraining = st.epoch + 1 >= cfg.pretrain_epochs;
        let improved = st.best_valid_ppl.is_none_or(|b| vppl < b);
        if improved || !after_pretraining {
            st.best_valid_ppl = Some(vppl);
        } else {
            opt.config.lr *= cfg.lr_decay;
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
            save(&st, opt, &best)?;
        }
        save(&st, opt, &last)?;
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
