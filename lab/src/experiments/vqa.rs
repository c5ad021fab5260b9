//! Training and evaluating the VQA model on easy-VQA with any objective
//! (`varattn train --config configs/vqa/<row>.toml --preset <p> --seed <s>`).
//!
//! easy-VQA saturates (a CNN + bag-of-words reaches ~94%), so every run also reports the
//! conditions where rows can differ: training on a fraction of the training images
//! (`data.train_image_fraction`) and Gaussian noise on the region features at test time
//! (`eval.noise_sigma`), with NLL, accuracy, ECE and prior entropy.
use super::finished::{self, FinishedRun, Metric, Task};
use super::RunOptions;
use crate::config::config_hash;
use crate::data::easy_vqa::{self, EasyVqa, QuestionVocab, VqaExample};
use crate::distributions::{Dirichlet, Distribution};
use crate::eval::calibration::{expected_calibration_error, pavpu};
use crate::provenance::{git_dirty_paths, git_revision, write_atomic};
use crate::models::vqa::{VqaBatch, VqaModel, VqaModelConfig, VqaOutputs};
use crate::objective::{estimate, held_out_metrics, AlignmentOutputs, Estimate, EstimatorState, Metrics, ObjectiveKind};
use crate::rng::SeededRng;
use crate::train::runner::{self, epoch_batches, index_batches, EpochRecord, LoopConfig, TrainConfig, TrainTask};
use crate::train::{Adam, ParamStore};
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, D};
use std::collections::HashMap;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VqaDataConfig {
    /// Data set name (`easy-vqa`).
    pub dataset: String,
    /// Fraction of the training images held out for validation (by image).
    pub valid_fraction: f64,
    /// Train on this fraction of the training images (1 = all; the low-data condition < 1).
    pub train_image_fraction: f64,
    /// Use only the first N questions of a split (smoke runs).
    pub train_limit: Option<usize>,
    pub valid_limit: Option<usize>,
    pub test_limit: Option<usize>,
    /// Training batches take the questions of shuffled images in turn (every question of an
    /// image, then the next image's; each image's CNN features computed once per batch) instead
    /// of shuffled questions. Default: shuffled questions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub group_by_image: bool,
    /// VQA-v2 settings (`dataset = "vqa-v2"` only): answer classes, backbone, feature cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vqa_v2: Option<super::vqa_v2::VqaV2DataConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VqaEvalConfig {
    /// σ of the Gaussian noise added to the region features in the noisy condition.
    pub noise_sigma: f64,
    /// How many test questions get an attention picture.
    pub pictures: usize,
    /// Stochastic forward passes per test question for PAvPU (0 = no PAvPU): MC dropout, plus
    /// Weibull-sampled attention for Bayesian attention.
    #[serde(default)]
    pub uncertainty_passes: usize,
    /// Level of the two-sample t-test that flags a prediction uncertain.
    #[serde(default = "default_pavpu_alpha")]
    pub pavpu_alpha: f64,
}

fn default_pavpu_alpha() -> f64 {
    0.05
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VqaConfig {
    pub name: String,
    pub objective: ObjectiveKind,
    pub data: VqaDataConfig,
    pub model: VqaModelConfig,
    pub train: TrainConfig,
    pub eval: VqaEvalConfig,
}

impl VqaConfig {
    /// Checks every value against its allowed range (the error names the key and the range).
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        crate::rundir::check_plain_name("name", &self.name)?;
        super::check_objective("objective", &self.objective)?;
        let d = &self.data;
        check::within("data.valid_fraction", d.valid_fraction, (0.0, false), (1.0, false))?;
        check::within("data.train_image_fraction", d.train_image_fraction, (0.0, false), (1.0, true))?;
        check::limit("data.train_limit", d.train_limit)?;
        check::limit("data.valid_limit", d.valid_limit)?;
        check::limit("data.test_limit", d.test_limit)?;
        let m = &self.model;
        for (key, v) in [
            ("model.word_emb", m.word_emb),
            ("model.question_hidden", m.question_hidden),
            ("model.channels[0]", m.channels[0]),
            ("model.channels[1]", m.channels[1]),
            ("model.channels[2]", m.channels[2]),
            ("model.attn_hidden", m.attn_hidden),
            ("model.mlp_hidden", m.mlp_hidden),
            ("model.answer_emb", m.answer_emb),
            ("model.attention.heads", m.attention.heads),
            ("model.attention.hops", m.attention.hops),
        ] {
            check::at_least(key, v, 1)?;
        }
        check::within("model.dropout", m.dropout, (0.0, true), (1.0, false))?;
        check::positive("model.init", m.init)?;
        self.train.validate()?;
        check::non_negative("eval.noise_sigma", self.eval.noise_sigma)?;
        check::within("eval.pavpu_alpha", self.eval.pavpu_alpha, (0.0, false), (1.0, false))?;
        check_attention(self)
    }
}

/// Metrics of one evaluation condition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VqaMetrics {
    /// Mean NLL of the gold answer (exact marginal for latent rows).
    pub nll: f64,
    pub accuracy: f64,
    /// Expected calibration error, 15 equal-width bins.
    pub ece: f64,
    pub prior_entropy: f64,
    pub questions: usize,
    /// PAvPU from `eval.uncertainty_passes` stochastic passes (top-two t-test), if configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pavpu: Option<f64>,
    /// Accuracy of the mean prediction over those passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mc_accuracy: Option<f64>,
    /// Fraction of predictions flagged uncertain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertain_fraction: Option<f64>,
    /// VQA-v2: the official VQA accuracy of the predicted answer, over all `questions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vqa_accuracy: Option<f64>,
    /// VQA-v2: questions with no in-vocabulary answer (no NLL; accuracy 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unanswerable: Option<usize>,
    /// −log p(gold answer) of each question, in split order: the paired bootstrap's items.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub question_nll: Vec<f64>,
    /// 1 where the predicted answer is the gold one, else 0, per question in split order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub question_correct: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VqaResult {
    pub name: String,
    pub seed: u64,
    pub preset: String,
    pub config_hash: String,
    pub git_revision: Option<String>,
    /// Paths changed on top of `git_revision` outside `results/` (empty: the run is that commit).
    #[serde(default)]
    pub git_dirty_paths: Vec<String>,
    pub device: String,
    pub train_image_fraction: f64,
    pub test: VqaMetrics,
    pub test_noisy: VqaMetrics,
    pub noise_sigma: f64,
    /// Test accuracy of the question-only baseline ([`question_only_accuracy`]) on this run's
    /// training questions: what a model that ignores the image can reach.
    #[serde(default)]
    pub question_only_accuracy: Option<f64>,
    pub train_questions_per_second: f64,
    pub train_seconds: f64,
    /// Optimiser steps taken (0 in results written before this field existed).
    #[serde(default)]
    pub train_steps: usize,
    /// Trainable parameters.
    #[serde(default)]
    pub parameters: usize,
    pub epochs: usize,
    pub history: Vec<EpochRecord>,
    /// How training ended and the run's identity (`stopped_early`, `best_epoch`, `identity`).
    #[serde(flatten)]
    pub outcome: runner::RunOutcome,
}

impl VqaResult {
    /// Training seconds per optimiser step, if the step count is known.
    pub fn seconds_per_step(&self) -> Option<f64> {
        (self.train_steps > 0).then(|| self.train_seconds / self.train_steps as f64)
    }
}

/// The data set with its question vocabulary, splits limited as configured.
pub struct PreparedVqa {
    pub data: EasyVqa,
    pub vocab: QuestionVocab,
}

/// Prints the data set's split sizes (see [`easy_vqa::load_easy_vqa`]).
pub fn prepare_data(cfg: &VqaDataConfig, cache_dir: &std::path::Path, seed: u64) -> Result<PreparedVqa> {
    prepare(cfg, cache_dir, seed, true)
}

/// [`prepare_data`], printing the split sizes only with `announce`.
fn prepare(cfg: &VqaDataConfig, cache_dir: &std::path::Path, seed: u64, announce: bool) -> Result<PreparedVqa> {
    if cfg.dataset != "easy-vqa" {
        anyhow::bail!("unknown data set `{}` in [data] (known: easy-vqa, vqa-v2)", cfg.dataset)
    }
    let full = if announce {
        easy_vqa::load_easy_vqa(cache_dir, cfg.valid_fraction, easy_vqa::EASY_VQA_SEED)?
    } else {
        easy_vqa::load_easy_vqa_quietly(cache_dir, cfg.valid_fraction, easy_vqa::EASY_VQA_SEED)?
    };
    let mut data = if cfg.train_image_fraction < 1.0 {
        easy_vqa::subsample_train_images(&full, cfg.train_image_fraction, seed)?
    } else {
        full
    };
    let limit = |v: &mut Vec<VqaExample>, l: Option<usize>| {
        if let Some(l) = l {
            v.truncate(l)
        }
    };
    limit(&mut data.train, cfg.train_limit);
    limit(&mut data.valid, cfg.valid_limit);
    limit(&mut data.test, cfg.test_limit);
    let vocab = QuestionVocab::from_examples(&data.train);
    Ok(PreparedVqa { data, vocab })
}

/// Which images a split's questions refer to.
#[derive(Clone, Copy, PartialEq)]
enum Split {
    Train,
    Valid,
    Test,
}

impl PreparedVqa {
    fn examples(&self, split: Split) -> &[VqaExample] {
        match split {
            Split::Train => &self.data.train,
            Split::Valid => &self.data.valid,
            Split::Test => &self.data.test,
        }
    }

    fn batch(&self, split: Split, idx: &[usize], device: &Device) -> Result<VqaBatch> {
        let ex = self.examples(split);
        let b = idx.len();
        let len = idx.iter().map(|&i| self.vocab.encode(&ex[i].question).len()).max().unwrap_or(1).max(1);
        let (mut words, mut mask) = (vec![0u32; b * len], vec![0f32; b * len]);
        // each distinct image once, in order of first use; `image_index` maps questions to them
        let mut pixels = Vec::with_capacity(b * easy_vqa::IMAGE_BYTES);
        let (mut rows, mut image_index) = (HashMap::new(), Vec::with_capacity(b));
        let mut answers = Vec::with_capacity(b);
        for (r, &i) in idx.iter().enumerate() {
            let e = &ex[i];
            for (j, w) in self.vocab.encode(&e.question).into_iter().enumerate() {
                words[r * len + j] = w as u32;
                mask[r * len + j] = 1.0;
            }
            let next = rows.len() as u32;
            let row = *rows.entry(e.image_id).or_insert(next);
            if row == next {
                let img = match split {
                    Split::Test => self.data.test_image(e.image_id),
                    _ => self.data.train_image(e.image_id),
                }
                .with_context(|| format!("question {}: no image {}", e.question_id, e.image_id))?;
                pixels.extend_from_slice(img);
            }
            image_index.push(row);
            answers.push(e.answer_index as u32);
        }
        // [U, 64, 64, 3] u8 -> [U, 3, 64, 64] f32 in [0, 1]
        let s = easy_vqa::IMAGE_SIZE;
        let u = rows.len();
        let images = Tensor::from_vec(pixels, (u, s, s, 3), device)?.to_dtype(DType::F32)?.permute((0, 3, 1, 2))?.contiguous()?;
        Ok(VqaBatch {
            images: (images / 255.0)?,
            image_index: Some(Tensor::from_vec(image_index, b, device)?),
            questions: Tensor::from_vec(words, (b, len), device)?,
            question_mask: Tensor::from_vec(mask, (b, len), device)?,
            answers: Tensor::from_vec(answers, b, device)?,
        })
    }
}

/// Prediction weights for soft-context rows: the prior for soft, the Dirichlet prior mean for
/// the relaxed row, none (exact marginal) for latent rows.
fn prediction_weights(kind: &ObjectiveKind, out: &VqaOutputs) -> Result<Option<Tensor>> {
    Ok(match kind {
        ObjectiveKind::Soft => Some(out.prior_probs()?),
        ObjectiveKind::VarRelaxed { positivity } => Some(Dirichlet::from_scores(out.prior_scores(), *positivity, None)?.mean()?),
        _ => None,
    })
}

/// log p(a | x, question) `[B, A]` as the row predicts: the layered attention's contexts for
/// multi-head / Bayesian / regularised models, else as [`prediction_weights`] says.
pub(crate) fn predict_log_probs(kind: &ObjectiveKind, out: &VqaOutputs) -> Result<Tensor> {
    if out.layers().is_some() {
        Ok(out.layered_answer_log_probs()?)
    } else {
        Ok(out.answer_distribution(prediction_weights(kind, out)?.as_ref())?)
    }
}

/// NLL, accuracy, ECE and prior entropy over a split, optionally with noisy region features;
/// with `uncertainty = Some((passes, alpha, seed))` also PAvPU from that many stochastic passes.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    model: &VqaModel,
    kind: &ObjectiveKind,
    data: &PreparedVqa,
    split_test: bool,
    batch: usize,
    noise: Option<(f64, u64)>,
    uncertainty: Option<(usize, f64, u64)>,
    device: &Device,
) -> Result<VqaMetrics> {
    let split = if split_test { Split::Test } else { Split::Valid };
    let n = data.examples(split).len();
    let mut m = Metrics::default();
    let (mut conf, mut correct) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut question_nll = Vec::with_capacity(n);
    let (mut mc_correct, mut uncertain) = (Vec::new(), Vec::new());
    let mut noise_rng = noise.map(|(_, seed)| SeededRng::new(seed).fork(77));
    let mut pass_rng = uncertainty.map(|(_, _, seed)| SeededRng::new(seed).fork(78));
    let mut attn_rng = uncertainty.map(|(_, _, seed)| SeededRng::new(seed).fork(79));
    for idx in index_batches(n, batch, None) {
        let b = data.batch(split, &idx, device)?;
        // the noisy condition draws the noise once per batch, shared by every pass
        let eps_state = noise_rng.as_ref().map(|r| r.state());
        let out = model.forward(&b, None, noise.map(|(s, _)| s).zip(noise_rng.as_mut()))?;
        let lp = score_batch(kind, &out, &mut m)?;
        let pred = lp.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let top = lp.max(D::Minus1)?.exp()?.to_vec1::<f32>()?;
        let gold = b.answers.to_vec1::<u32>()?;
        let gold_lp = lp.gather(&b.answers.unsqueeze(1)?, D::Minus1)?.squeeze(1)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        question_nll.extend(gold_lp.iter().map(|l| -l));
        for ((p, g), c) in pred.iter().zip(&gold).zip(&top) {
            correct.push(p == g);
            conf.push(*c as f64);
        }
        if let (Some((passes, alpha, _)), Some(prng), Some(arng)) = (uncertainty, pass_rng.as_mut(), attn_rng.as_mut()) {
            let mut samples: Vec<Vec<Vec<f64>>> = vec![Vec::with_capacity(passes); idx.len()];
            let regions = model.batch_regions(&b)?;
            for _ in 0..passes {
                let mut nrng = eps_state.map(SeededRng::from_state);
                let noise = noise.map(|(s, _)| s).zip(nrng.as_mut());
                let out = model.forward_from_regions(&b, regions.clone(), Some(&mut *prng), noise, Some(&mut *arng), false)?;
                let probs = predict_log_probs(kind, &out)?.exp()?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
                for (s, p) in samples.iter_mut().zip(probs) {
                    s.push(p);
                }
            }
            for (s, g) in samples.iter().zip(&gold) {
                let (top1, unc) = crate::eval::calibration::top_two_uncertainty(s, alpha);
                mc_correct.push(top1 as u32 == *g);
                uncertain.push(unc);
            }
        }
    }
    let acc = correct.iter().filter(|&&c| c).count() as f64 / n.max(1) as f64;
    let with_passes = uncertainty.is_some() && n > 0;
    Ok(VqaMetrics {
        nll: m.nll_sum.unwrap_or(f64::NAN) / m.tokens,
        accuracy: acc,
        ece: expected_calibration_error(&conf, &correct, 15),
        prior_entropy: m.prior_entropy(),
        questions: n,
        pavpu: with_passes.then(|| pavpu(&mc_correct, &uncertain)),
        mc_accuracy: with_passes.then(|| mc_correct.iter().filter(|&&c| c).count() as f64 / n as f64),
        uncertain_fraction: with_passes.then(|| uncertain.iter().filter(|&&u| u).count() as f64 / n as f64),
        vqa_accuracy: None,
        unanswerable: None,
        question_correct: correct.iter().map(|&c| if c { 1.0 } else { 0.0 }).collect(),
        question_nll,
    })
}

/// Accuracy on `test` of the question-only baseline: each question answered with the most
/// frequent training answer of the same question text (ties to the lower answer index), or
/// the most frequent training answer overall for a question never seen in training. On a
/// templated data set this is the best any model that ignores the image can do on average.
pub fn question_only_accuracy(train: &[VqaExample], test: &[VqaExample]) -> Option<f64> {
    use std::collections::HashMap;
    if train.is_empty() || test.is_empty() {
        return None;
    }
    let majority = |counts: &HashMap<usize, usize>| counts.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))).map(|(a, _)| *a);
    let mut by_question: HashMap<&str, HashMap<usize, usize>> = HashMap::new();
    let mut overall: HashMap<usize, usize> = HashMap::new();
    for e in train {
        *by_question.entry(e.question.as_str()).or_default().entry(e.answer_index).or_default() += 1;
        *overall.entry(e.answer_index).or_default() += 1;
    }
    let fallback = majority(&overall)?;
    let answer: HashMap<&str, usize> = by_question.iter().filter_map(|(q, c)| Some((*q, majority(c)?))).collect();
    let right = test.iter().filter(|e| answer.get(e.question.as_str()).copied().unwrap_or(fallback) == e.answer_index).count();
    Some(right as f64 / test.len() as f64)
}

/// Adds a held-out batch's metrics (gold answer NLL, prior entropy) to `m` and returns the
/// predicted log p(a | x, question) `[B, A]`.
pub(crate) fn score_batch(kind: &ObjectiveKind, out: &VqaOutputs, m: &mut Metrics) -> Result<Tensor> {
    if out.layers().is_some() {
        let lf = out.layered_gold_log_prob()?;
        let ent = out.layered_entropy()?;
        m.add(&crate::objective::soft_regularised(&lf, &ent, None, None)?.metrics);
    } else {
        m.add(&held_out_metrics(kind, out)?);
    }
    predict_log_probs(kind, out)
}

/// One training step's estimate from a batch and its region features: the row's objective for
/// the plain attention; for multi-head / Bayesian / regularised attention, soft attention with
/// the sampled weights, KL(q ‖ p) of the weights and λ · alignment regulariser.
pub(crate) fn train_estimate(
    model: &VqaModel,
    b: &VqaBatch,
    regions: Tensor,
    kind: &ObjectiveKind,
    dropout: &mut SeededRng,
    noise: &mut SeededRng,
    estimator: &mut EstimatorState,
) -> Result<Estimate> {
    if model.cfg.attention.is_plain() {
        let out = model.forward_from_regions(b, regions, Some(dropout), None, None, false)?;
        return Ok(estimate(kind, &out, estimator, noise)?);
    }
    let out = model.forward_from_regions(b, regions, Some(dropout), None, Some(noise), true)?;
    let layers = out.layers().context("layered attention missing")?;
    Ok(crate::objective::soft_regularised(
        &out.layered_gold_log_prob()?,
        &out.layered_entropy()?.detach(),
        layers.kl.as_ref(),
        layers.regularizer.as_ref(),
    )?)
}

/// The batch plan of training epoch `epoch` with [`VqaDataConfig::group_by_image`]: the
/// distinct images of `train` (in order of first use) shuffled by stream 1000 + epoch of
/// `seed`, their questions concatenated image by image (file order within an image) and cut
/// into batches of `size` questions.
pub fn image_grouped_batches(train: &[VqaExample], size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    let mut by_image: Vec<Vec<usize>> = Vec::new();
    let mut slot: HashMap<u32, usize> = HashMap::new();
    for (i, e) in train.iter().enumerate() {
        let k = *slot.entry(e.image_id).or_insert_with(|| {
            by_image.push(Vec::new());
            by_image.len() - 1
        });
        by_image[k].push(i);
    }
    let mut order: Vec<usize> = (0..by_image.len()).collect();
    crate::rng::SeededRng::new(seed).fork(1000 + epoch as u64).shuffle(&mut order);
    let flat: Vec<usize> = order.into_iter().flat_map(|k| by_image[k].iter().copied()).collect();
    flat.chunks(size.max(1)).map(|c| c.to_vec()).collect()
}

struct VqaTask<'a> {
    model: &'a VqaModel,
    data: &'a PreparedVqa,
    batch: usize,
    group_by_image: bool,
    objective: ObjectiveKind,
    seed: u64,
    device: &'a Device,
}

impl TrainTask for VqaTask<'_> {
    fn epoch_plan(&self, epoch: usize) -> Vec<Vec<usize>> {
        if self.group_by_image {
            image_grouped_batches(&self.data.data.train, self.batch, self.seed, epoch)
        } else {
            epoch_batches(self.data.data.train.len(), self.batch, self.seed, epoch)
        }
    }
    fn train_step(
        &self,
        idx: &[usize],
        kind: &ObjectiveKind,
        dropout: &mut SeededRng,
        noise: &mut SeededRng,
        estimator: &mut EstimatorState,
    ) -> Result<Estimate> {
        let b = self.data.batch(Split::Train, idx, self.device)?;
        let regions = self.model.batch_regions(&b)?;
        train_estimate(self.model, &b, regions, kind, dropout, noise, estimator)
    }
    fn valid_metric(&self) -> runner::ValidMetric {
        runner::ValidMetric::Nll
    }
    fn validate(&self) -> Result<f64> {
        Ok(evaluate(self.model, &self.objective, self.data, false, self.batch, None, None, self.device)?.nll)
    }
    fn divergence_bound(&self) -> Option<(f64, String)> {
        nll_bound(self.data.data.answers.len())
    }
}

/// The divergence bound of a validation NLL over `answers` classes: twice ln(answers), the NLL of
/// a uniform guess.
pub(crate) fn nll_bound(answers: usize) -> Option<(f64, String)> {
    let uniform = (answers.max(2) as f64).ln();
    Some((2.0 * uniform, format!("NLL twice ln {answers}; a uniform guess over the {answers} answers scores {uniform:.3}")))
}

/// Multi-head / Bayesian / regularised attention trains with the soft objective only.
fn check_attention(cfg: &VqaConfig) -> Result<()> {
    if !cfg.model.attention.is_plain() && cfg.objective != ObjectiveKind::Soft {
        anyhow::bail!(
            "{}: model.attention (heads {}, hops {}, bayes/alignment) works with objective = {{ kind = \"soft\" }} only (got {:?})",
            cfg.name,
            cfg.model.attention.heads,
            cfg.model.attention.hops,
            cfg.objective
        )
    }
    Ok(())
}

/// Train (or resume) and evaluate one (config, seed).
pub fn run(cfg: &VqaConfig, merged: &toml::Value, opts: &RunOptions) -> Result<Option<VqaResult>> {
    cfg.validate()?;
    if cfg.data.dataset == "vqa-v2" {
        return super::vqa_v2::run(cfg, merged, opts);
    }
    let hash = config_hash(merged);
    let dev = &opts.device;
    let data = prepare(&cfg.data, &opts.cache_dir, opts.seed, opts.progress)?;
    let mut ps = ParamStore::new(opts.seed, cfg.model.init, dev);
    let model = VqaModel::new(&mut ps, &cfg.model, data.vocab.len(), data.data.answers.len())?;
    let mut opt = Adam::new(ps.named_vars(), cfg.train.adam())?;
    let task = VqaTask { model: &model, data: &data, batch: cfg.train.batch, group_by_image: cfg.data.group_by_image, objective: cfg.objective, seed: opts.seed, device: dev };
    let mut loop_cfg = LoopConfig::new(&cfg.name, cfg.objective, &cfg.train, &hash, opts);
    let wheel = opts.cache_dir.join(easy_vqa::EASY_VQA_WHEEL);
    loop_cfg.identity = Some(crate::rundir::RunIdentity::new(opts.seed, &opts.cache_dir, &[wheel])?);
    let Some(st) = runner::train(&task, &ps, &mut opt, &loop_cfg, &opts.out_dir)? else { return Ok(None) };
    let unc = (cfg.eval.uncertainty_passes > 0).then_some((cfg.eval.uncertainty_passes, cfg.eval.pavpu_alpha, opts.seed));
    let test = evaluate(&model, &cfg.objective, &data, true, cfg.train.batch, None, unc, dev)?;
    let test_noisy =
        evaluate(&model, &cfg.objective, &data, true, cfg.train.batch, Some((cfg.eval.noise_sigma, opts.seed)), unc, dev)?;
    attention_pictures(&model, &cfg.objective, &data, cfg.eval.pictures, opts)?;
    let question_only = question_only_accuracy(&data.data.train, &data.data.test);
    let result = VqaResult::finished(cfg, hash, opts, st, ps.count(), test, test_noisy, question_only)?;
    Ok(Some(result))
}

impl VqaResult {
    /// The result of a finished run, written to `<out>/result.json`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finished(
        cfg: &VqaConfig,
        config_hash: String,
        opts: &RunOptions,
        st: runner::TrainState,
        parameters: usize,
        test: VqaMetrics,
        test_noisy: VqaMetrics,
        question_only_accuracy: Option<f64>,
    ) -> Result<Self> {
        let result = VqaResult {
            name: cfg.name.clone(),
            seed: opts.seed,
            preset: opts.preset.clone(),
            config_hash,
            git_revision: git_revision(),
            git_dirty_paths: git_dirty_paths(),
            device: format!("{:?}", opts.device),
            train_image_fraction: cfg.data.train_image_fraction,
            test,
            test_noisy,
            noise_sigma: cfg.eval.noise_sigma,
            question_only_accuracy,
            train_questions_per_second: st.train_tokens / st.train_seconds.max(1e-9),
            train_seconds: st.train_seconds,
            train_steps: st.step,
            parameters,
            epochs: st.epoch,
            outcome: runner::RunOutcome::of(&st),
            history: st.history,
        };
        write_atomic(&opts.out_dir.join("result.json"), serde_json::to_string_pretty(&result)?.as_bytes())?;
        Ok(result)
    }
}

/// A finished easy-VQA run loaded for use: its config, data and the model at the parameters its
/// results were computed with.
pub struct LoadedVqa {
    pub cfg: VqaConfig,
    pub data: PreparedVqa,
    pub model: VqaModel,
    /// The run's seed (the noisy condition's noise is drawn from it).
    pub seed: u64,
    pub device: Device,
}

/// Loads a finished easy-VQA run (see [`crate::experiments::finished`]): validates its config,
/// reads its data from `cache_dir` without printing (refused when it is not the run's data),
/// builds the model and loads its best checkpoint. VQA-v2 runs are refused (their features need
/// the Hub backbone).
pub fn load_run(run: &FinishedRun, cache_dir: &std::path::Path, device: &Device) -> Result<LoadedVqa> {
    if run.task != Task::Vqa {
        anyhow::bail!("{}: a {} run, not a VQA run", run.dir.display(), run.task.name().to_uppercase())
    }
    let cfg: VqaConfig = run.config()?;
    cfg.validate().with_context(|| run.config_source.clone())?;
    if cfg.data.dataset != "easy-vqa" {
        anyhow::bail!("{}: only easy-VQA runs can be loaded (this one is on {}); its result.json holds its test numbers", run.dir.display(), cfg.data.dataset)
    }
    let data = prepare(&cfg.data, cache_dir, run.seed, false)?;
    run.check_data(cache_dir, &[cache_dir.join(easy_vqa::EASY_VQA_WHEEL)])?;
    let mut ps = ParamStore::new(run.seed, cfg.model.init, device);
    let model = VqaModel::new(&mut ps, &cfg.model, data.vocab.len(), data.data.answers.len())?;
    crate::train::checkpoint::load_params(&run.checkpoint()?, &ps, device)?;
    Ok(LoadedVqa { cfg, data, model, seed: run.seed, device: device.clone() })
}

/// Where the model looks for one test question, and what it answers.
#[derive(Debug, Clone, Serialize)]
pub struct QuestionAttention {
    /// Index of the question in the test split.
    pub index: usize,
    pub question: String,
    pub answer: String,
    pub predicted: String,
    pub image_id: u32,
    /// The prior p(z = i | x, q) over the 8×8 cells, row-major from the top left.
    pub weights: Vec<f32>,
}

impl LoadedVqa {
    /// The clean (`noisy = false`) or noisy condition's metrics on the test (`test = true`) or
    /// validation split, as the run's own evaluation computes them.
    pub fn evaluate_split(&self, test: bool, noisy: bool) -> Result<VqaMetrics> {
        let unc = (self.cfg.eval.uncertainty_passes > 0).then_some((self.cfg.eval.uncertainty_passes, self.cfg.eval.pavpu_alpha, self.seed));
        let noise = noisy.then_some((self.cfg.eval.noise_sigma, self.seed));
        evaluate(&self.model, &self.cfg.objective, &self.data, test, self.cfg.train.batch, noise, unc, &self.device)
    }

    /// [`QuestionAttention`] of the test questions `indices` (one batch).
    pub fn test_attention(&self, indices: &[usize]) -> Result<Vec<QuestionAttention>> {
        let n = self.data.data.test.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            anyhow::bail!("test question {bad} does not exist ({n} test questions)")
        }
        if indices.is_empty() {
            return Ok(vec![]);
        }
        let b = self.data.batch(Split::Test, indices, &self.device)?;
        let out = self.model.forward(&b, None, None)?;
        let w = out.prior_probs()?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let pred = predict_log_probs(&self.cfg.objective, &out)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
        Ok(indices
            .iter()
            .zip(w)
            .zip(pred)
            .map(|((&i, weights), p)| {
                let e = &self.data.data.test[i];
                QuestionAttention {
                    index: i,
                    question: e.question.clone(),
                    answer: e.answer.clone(),
                    predicted: self.data.data.answers[p as usize].clone(),
                    image_id: e.image_id,
                    weights,
                }
            })
            .collect())
    }

    /// The RGB bytes of a test image.
    pub fn test_image(&self, image_id: u32) -> Result<&[u8]> {
        self.data.data.test_image(image_id).with_context(|| format!("no test image {image_id}"))
    }
}

/// `varattn eval` of an easy-VQA run: the clean and the noisy condition on `split`, as the run's
/// test evaluation computes them, beside the result's numbers (test) or the best epoch's
/// validation NLL (valid). VQA-v2 runs are refused (their features need the Hub backbone).
pub fn evaluate_run(run: &FinishedRun, split: finished::Split, cache_dir: &std::path::Path, device: &Device) -> Result<Vec<Metric>> {
    let l = load_run(run, cache_dir, device)?;
    let test = split == finished::Split::Test;
    let clean = l.evaluate_split(test, false)?;
    let noisy = l.evaluate_split(test, true)?;
    let mut metrics = metric_lines("", &clean, run, test.then_some("test"));
    if !test {
        metrics[1].recorded = run.best_valid_score();
    }
    metrics.extend(metric_lines("noisy_", &noisy, run, test.then_some("test_noisy")));
    Ok(metrics)
}

/// The numbers of one condition, named with `prefix`, beside the result's table `recorded`.
fn metric_lines(prefix: &str, m: &VqaMetrics, run: &FinishedRun, recorded: Option<&str>) -> Vec<Metric> {
    let rec = |key: &str| recorded.and_then(|t| run.recorded(&format!("{t}.{key}")));
    let line = |key: &str, v: Option<f64>| Metric::new(format!("{prefix}{key}"), v, rec(key));
    vec![
        line("questions", Some(m.questions as f64)),
        line("nll", Some(m.nll)),
        line("accuracy", Some(m.accuracy)),
        line("ece", Some(m.ece)),
        line("prior_entropy", Some(m.prior_entropy)),
        line("pavpu", m.pavpu),
        line("mc_accuracy", m.mc_accuracy),
        line("uncertain_fraction", m.uncertain_fraction),
    ]
}

/// The prior's attention over the 8×8 cells drawn on the first `n` test images.
fn attention_pictures(model: &VqaModel, kind: &ObjectiveKind, data: &PreparedVqa, n: usize, opts: &RunOptions) -> Result<()> {
    let n = n.min(data.data.test.len());
    if n == 0 {
        return Ok(());
    }
    let idx: Vec<usize> = (0..n).collect();
    let b = data.batch(Split::Test, &idx, &opts.device)?;
    let out = model.forward(&b, None, None)?;
    let w = out.prior_probs()?.to_vec2::<f32>()?;
    let pred = predict_log_probs(kind, &out)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
    for (k, e) in data.data.test[..n].iter().enumerate() {
        let img = data.data.test_image(e.image_id).context("missing test image")?;
        let caption = format!("Q: {}\nA: {} (gold: {})", e.question, data.data.answers[pred[k] as usize], e.answer);
        crate::plot::image_attention(
            &opts.out_dir.join(format!("attention-{k}")),
            img,
            easy_vqa::IMAGE_SIZE as u32,
            easy_vqa::IMAGE_SIZE as u32,
            (8, 8),
            &w[k],
            &caption,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(question_id: u32, image_id: u32) -> VqaExample {
        VqaExample { question_id, image_id, question: "is there a circle?".into(), answer: "yes".into(), answer_index: 0 }
    }

    #[test]
    fn image_grouped_batches_cover_every_question_once_with_each_image_contiguous() {
        // images interleaved in file order: 0, 1, 0, 2, 1, 2, 2, 3
        let train: Vec<VqaExample> =
            [0, 1, 0, 2, 1, 2, 2, 3].iter().enumerate().map(|(q, &img)| example(q as u32, img)).collect();
        let plan = image_grouped_batches(&train, 3, 7, 1);
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 2]);
        let flat: Vec<usize> = plan.concat();
        let mut sorted = flat.clone();
        sorted.sort();
        assert_eq!(sorted, (0..train.len()).collect::<Vec<_>>());
        // an image's questions follow each other, in file order
        let images: Vec<u32> = flat.iter().map(|&i| train[i].image_id).collect();
        let mut seen = Vec::new();
        for (k, &img) in images.iter().enumerate() {
            if k == 0 || images[k - 1] != img {
                assert!(!seen.contains(&img), "image {img} split in {images:?}");
                seen.push(img);
            }
        }
        for w in flat.windows(2) {
            if train[w[0]].image_id == train[w[1]].image_id {
                assert!(w[0] < w[1]);
            }
        }
        // reproducible per (seed, epoch); other epochs give other orders
        assert_eq!(plan, image_grouped_batches(&train, 3, 7, 1));
        assert!((2..12).any(|e| image_grouped_batches(&train, 3, 7, e) != plan));
    }
}
