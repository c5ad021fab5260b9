//! Training and evaluating the VQA model on easy-VQA with any objective
//! (`varattn train --config configs/vqa/<row>.toml --preset <p> --seed <s>`).
//!
//! easy-VQA saturates (a CNN + bag-of-words reaches ~94%), so every run also reports the
//! conditions where rows can differ: training on a fraction of the training images
//! (`data.train_image_fraction`) and Gaussian noise on the region features at test time
//! (`eval.noise_sigma`), with NLL, accuracy, ECE and prior entropy.
use super::RunOptions;
use crate::config::config_hash;
use crate::data::easy_vqa::{self, EasyVqa, QuestionVocab, VqaExample};
use crate::dist::{Dirichlet, Distribution};
use crate::eval::calibration::expected_calibration_error;
use crate::io::{git_revision, write_atomic};
use crate::models::vqa::{VqaBatch, VqaModel, VqaModelConfig, VqaOutputs};
use crate::objective::{estimate, held_out_metrics, AlignmentOutputs, Estimate, EstimatorState, Metrics, ObjectiveKind};
use crate::rng::SeededRng;
use crate::train::runner::{self, EpochRecord, LoopConfig, TrainConfig, TrainTask};
use crate::train::{Adam, ParamStore};
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, D};
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VqaEvalConfig {
    /// σ of the Gaussian noise added to the region features in the noisy condition.
    pub noise_sigma: f64,
    /// How many test questions get an attention picture.
    pub pictures: usize,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VqaResult {
    pub name: String,
    pub seed: u64,
    pub preset: String,
    pub config_hash: String,
    pub git_revision: Option<String>,
    pub device: String,
    pub train_image_fraction: f64,
    pub test: VqaMetrics,
    pub test_noisy: VqaMetrics,
    pub noise_sigma: f64,
    pub train_questions_per_second: f64,
    pub train_seconds: f64,
    pub epochs: usize,
    pub history: Vec<EpochRecord>,
}

/// The data set with its question vocabulary, splits limited as configured.
pub struct PreparedVqa {
    pub data: EasyVqa,
    pub vocab: QuestionVocab,
}

pub fn prepare_data(cfg: &VqaDataConfig, cache_dir: &std::path::Path, seed: u64) -> Result<PreparedVqa> {
    if cfg.dataset != "easy-vqa" {
        anyhow::bail!("unknown data set `{}` in [data] (known: easy-vqa)", cfg.dataset)
    }
    let full = easy_vqa::load_easy_vqa(cache_dir, cfg.valid_fraction, easy_vqa::EASY_VQA_SEED)?;
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
        let mut pixels = Vec::with_capacity(b * easy_vqa::IMAGE_BYTES);
        let mut answers = Vec::with_capacity(b);
        for (r, &i) in idx.iter().enumerate() {
            let e = &ex[i];
            for (j, w) in self.vocab.encode(&e.question).into_iter().enumerate() {
                words[r * len + j] = w as u32;
                mask[r * len + j] = 1.0;
            }
            let img = match split {
                Split::Test => self.data.test_image(e.image_id),
                _ => self.data.train_image(e.image_id),
            }
            .with_context(|| format!("question {}: no image {}", e.question_id, e.image_id))?;
            pixels.extend_from_slice(img);
            answers.push(e.answer_index as u32);
        }
        // [B, 64, 64, 3] u8 -> [B, 3, 64, 64] f32 in [0, 1]
        let s = easy_vqa::IMAGE_SIZE;
        let images = Tensor::from_vec(pixels, (b, s, s, 3), device)?.to_dtype(DType::F32)?.permute((0, 3, 1, 2))?.contiguous()?;
        Ok(VqaBatch {
            images: (images / 255.0)?,
            questions: Tensor::from_vec(words, (b, len), device)?,
            question_mask: Tensor::from_vec(mask, (b, len), device)?,
            answers: Tensor::from_vec(answers, b, device)?,
        })
    }
}

fn batches(n: usize, size: usize, rng: Option<&mut SeededRng>) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..n).collect();
    if let Some(r) = rng {
        r.shuffle(&mut idx);
    }
    idx.chunks(size).map(|c| c.to_vec()).collect()
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

/// NLL, accuracy, ECE and prior entropy over a split, optionally with noisy region features.
pub fn evaluate(
    model: &VqaModel,
    kind: &ObjectiveKind,
    data: &PreparedVqa,
    split_test: bool,
    batch: usize,
    noise: Option<(f64, u64)>,
    device: &Device,
) -> Result<VqaMetrics> {
    let split = if split_test { Split::Test } else { Split::Valid };
    let n = data.examples(split).len();
    let mut m = Metrics::default();
    let (mut conf, mut correct) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut noise_rng = noise.map(|(_, seed)| SeededRng::new(seed).fork(77));
    for idx in batches(n, batch, None) {
        let b = data.batch(split, &idx, device)?;
        let out = model.forward(&b, None, noise.map(|(s, _)| s).zip(noise_rng.as_mut()))?;
        m.add(&held_out_metrics(kind, &out)?);
        let lp = out.answer_distribution(prediction_weights(kind, &out)?.as_ref())?;
        let pred = lp.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let top = lp.max(D::Minus1)?.exp()?.to_vec1::<f32>()?;
        let gold = b.answers.to_vec1::<u32>()?;
        for ((p, g), c) in pred.iter().zip(&gold).zip(&top) {
            correct.push(p == g);
            conf.push(*c as f64);
        }
    }
    let acc = correct.iter().filter(|&&c| c).count() as f64 / n.max(1) as f64;
    Ok(VqaMetrics {
        nll: m.nll_sum.unwrap_or(f64::NAN) / m.tokens,
        accuracy: acc,
        ece: expected_calibration_error(&conf, &correct, 15),
        prior_entropy: m.prior_entropy(),
        questions: n,
    })
}

struct VqaTask<'a> {
    model: &'a VqaModel,
    data: &'a PreparedVqa,
    batch: usize,
    objective: ObjectiveKind,
    seed: u64,
    device: &'a Device,
}

impl TrainTask for VqaTask<'_> {
    fn epoch_plan(&self, epoch: usize) -> Vec<Vec<usize>> {
        batches(self.data.data.train.len(), self.batch, Some(&mut SeededRng::new(self.seed).fork(1000 + epoch as u64)))
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
        let out = self.model.forward(&b, Some(dropout), None)?;
        Ok(estimate(kind, &out, estimator, noise)?)
    }
    fn validate(&self) -> Result<f64> {
        Ok(evaluate(self.model, &self.objective, self.data, false, self.batch, None, self.device)?.nll)
    }
}

/// Train (or resume) and evaluate one (config, seed).
pub fn run(cfg: &VqaConfig, merged: &toml::Value, opts: &RunOptions) -> Result<Option<VqaResult>> {
    let hash = config_hash(merged);
    let dev = &opts.device;
    let data = prepare_data(&cfg.data, &opts.cache_dir, opts.seed)?;
    let mut ps = ParamStore::new(opts.seed, cfg.model.init, dev);
    let model = VqaModel::new(&mut ps, &cfg.model, data.vocab.len(), data.data.answers.len())?;
    let mut opt = Adam::new(ps.named_vars(), cfg.train.adam())?;
    let task = VqaTask { model: &model, data: &data, batch: cfg.train.batch, objective: cfg.objective, seed: opts.seed, device: dev };
    let loop_cfg = LoopConfig::new(&cfg.name, cfg.objective, &cfg.train, &hash, opts);
    let Some(st) = runner::train(&task, &ps, &mut opt, &loop_cfg, &opts.out_dir)? else { return Ok(None) };
    let test = evaluate(&model, &cfg.objective, &data, true, cfg.train.batch, None, dev)?;
    let test_noisy = evaluate(&model, &cfg.objective, &data, true, cfg.train.batch, Some((cfg.eval.noise_sigma, opts.seed)), dev)?;
    attention_pictures(&model, &cfg.objective, &data, cfg.eval.pictures, opts)?;
    let result = VqaResult {
        name: cfg.name.clone(),
        seed: opts.seed,
        preset: opts.preset.clone(),
        config_hash: hash,
        git_revision: git_revision(),
        device: format!("{dev:?}"),
        train_image_fraction: cfg.data.train_image_fraction,
        test,
        test_noisy,
        noise_sigma: cfg.eval.noise_sigma,
        train_questions_per_second: st.train_tokens / st.train_seconds.max(1e-9),
        train_seconds: st.train_seconds,
        epochs: st.epoch,
        history: st.history,
    };
    write_atomic(&opts.out_dir.join("result.json"), serde_json::to_string_pretty(&result)?.as_bytes())?;
    Ok(Some(result))
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
    let pred = out.answer_distribution(prediction_weights(kind, &out)?.as_ref())?.argmax(D::Minus1)?.to_vec1::<u32>()?;
    for (k, e) in data.data.test[..n].iter().enumerate() {
        let img = data.data.test_image(e.image_id).context("missing test image")?;
        let caption = format!("Q: {}\nA: {} (gold: {})", e.question, data.data.answers[pred[k] as usize], e.answer);
        crate::report::plot::image_attention(
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
