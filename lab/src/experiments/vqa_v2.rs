//! The VQA model on VQA 2.0 (`data.dataset = "vqa-v2"`): questions and annotations from the
//! registry's `vqa-v2` entry (datasets/hub.toml, read through the Hub cache), regions = cached
//! DINOv2 grid features ([`crate::models::vqa_features`]) through a learned linear map to the
//! model's region size (`model.channels[2]`), the same objectives and training loop as easy-VQA.
//!
//! * Splits: train = the registry's `train` split (optionally `data.train_image_fraction` of its
//!   images, seeded); the registry's `validation` split is divided by image id (a fixed shuffle,
//!   [`SPLIT_SEED`]) into `data.valid_fraction` of the images for model selection and the rest
//!   for the reported test metrics. Limits apply after that.
//! * Answers: the top `data.vqa_v2.answers` normalised training answers
//!   ([`crate::data::vqa_v2`]). Each epoch, every training question's target is drawn
//!   a ~ c_a / Σ c over its in-vocabulary annotator answers (stream 3000 + epoch of the run seed);
//!   questions with none are skipped and counted.
//! * Metrics over the held-out questions: NLL of the gold answer g = the most common
//!   in-vocabulary annotator answer (questions without one are left out of the NLL and counted as
//!   `unanswerable`); `accuracy` = argmax == g over all questions; `vqa_accuracy` = the official
//!   leave-one-out accuracy of the argmax over all questions (0 for unanswerable ones); ECE of
//!   the argmax's probability against argmax == g. PAvPU passes and attention pictures are not
//!   computed for VQA-v2.
use super::vqa::{score_batch, train_estimate, VqaConfig, VqaMetrics, VqaResult};
use super::RunOptions;
use crate::config::config_hash;
use crate::data::easy_vqa::QuestionVocab;
use crate::data::hub::parquet::VqaV2Example;
use crate::models::vqa_features::{FeatureStore, ImageSource, PendingImage};
use crate::data::vqa_v2::{clean_question, vqa_accuracy, AnswerCounts, AnswerVocab};
use crate::eval::calibration::expected_calibration_error;
use crate::provenance::write_atomic;
use crate::models::backbone::{Backbone, BackboneConfig};
use crate::models::vqa::{VqaBatch, VqaModel};
use crate::objective::{Estimate, EstimatorState, Metrics, ObjectiveKind};
use crate::rng::SeededRng;
use crate::train::runner::{self, epoch_batches, index_batches, LoopConfig, TrainTask};
use crate::train::{Adam, ParamStore};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Module, Tensor, D};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Seed of the fixed valid/test division of the validation images.
pub const SPLIT_SEED: u64 = 2018;

/// `[data.vqa_v2]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VqaV2DataConfig {
    /// Answer classes: the top-N normalised training answers.
    pub answers: usize,
    pub backbone: BackboneConfig,
    /// Images per feature shard.
    #[serde(default = "default_shard_size")]
    pub shard_size: usize,
    /// Images per backbone forward pass.
    #[serde(default = "default_feature_batch")]
    pub feature_batch: usize,
    /// Folder of image files for rows without image bytes (the registry's train split has
    /// none): `<image_dir>/<image_prefix><image_id, 12 digits>.jpg`, COCO's naming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_dir: Option<PathBuf>,
    #[serde(default = "default_image_prefix")]
    pub image_prefix: String,
}

fn default_shard_size() -> usize {
    1024
}
fn default_feature_batch() -> usize {
    16
}
fn default_image_prefix() -> String {
    "COCO_train2014_".into()
}

/// One question as the experiment uses it.
#[derive(Debug, Clone)]
pub struct V2Question {
    pub question_id: i64,
    pub image_id: i64,
    /// Cleaned question text ([`clean_question`]).
    pub question: String,
    /// The annotators' raw answers.
    pub answers: Vec<String>,
    /// In-vocabulary answers with annotator counts; `None`: no in-vocabulary answer.
    pub counts: Option<AnswerCounts>,
}

/// The prepared data: questions, vocabularies and the cached features of their images.
pub struct PreparedV2 {
    pub train: Vec<V2Question>,
    pub valid: Vec<V2Question>,
    pub test: Vec<V2Question>,
    /// Training questions left out for having no in-vocabulary answer.
    pub skipped_train: usize,
    pub vocab: QuestionVocab,
    pub answers: AnswerVocab,
    pub features: FeatureStore,
}

/// One split's rows with their images held once per image id (the validation parquet repeats
/// an image's bytes in every question about it).
#[derive(Debug, Default)]
pub struct V2Split {
    /// The rows, `image` emptied.
    pub rows: Vec<VqaV2Example>,
    /// Encoded image per image id.
    pub images: HashMap<i64, Vec<u8>>,
}

impl V2Split {
    /// Adds a row, keeping the first image bytes seen for its image id.
    pub fn push(&mut self, mut ex: VqaV2Example) {
        if let Some(b) = ex.image.take() {
            self.images.entry(ex.image_id).or_insert(b);
        }
        self.rows.push(ex);
    }

    /// The rows and images of `split` of the registry's `vqa-v2` entry, streamed.
    pub fn load(hub: &crate::data::hub::Hub, split: &str, progress: bool) -> Result<Self> {
        let mut out = Self::default();
        crate::data::hub::prepare::for_each_vqa_v2_with(hub, split, true, progress, |ex| {
            out.push(ex);
            Ok(())
        })?;
        Ok(out)
    }
}

fn image_ids(rows: &[VqaV2Example]) -> Vec<i64> {
    rows.iter().map(|r| r.image_id).collect::<BTreeSet<_>>().into_iter().collect()
}

/// Keeps the rows whose image is in `keep`.
fn by_image(rows: &[VqaV2Example], keep: &BTreeSet<i64>) -> Vec<VqaV2Example> {
    rows.iter().filter(|r| keep.contains(&r.image_id)).cloned().collect()
}

/// Prepares VQA-v2 from the splits as read (`train`, `validation` as the registry names them): splits, limits, vocabularies, and the features (computed into the cache under
/// `cache_dir` where missing).
#[allow(clippy::too_many_arguments)]
pub fn prepare_from_rows(
    cfg: &super::vqa::VqaDataConfig,
    v2: &VqaV2DataConfig,
    train: V2Split,
    validation: V2Split,
    backbone: &Backbone,
    cache_dir: &Path,
    seed: u64,
    progress: bool,
) -> Result<PreparedV2> {
    let (mut train_rows, validation_rows) = (train.rows, validation.rows);
    if cfg.train_image_fraction < 1.0 {
        let mut ids = image_ids(&train_rows);
        SeededRng::new(seed).fork(4000).shuffle(&mut ids);
        let n = ((ids.len() as f64 * cfg.train_image_fraction).round() as usize).max(1);
        train_rows = by_image(&train_rows, &ids[..n.min(ids.len())].iter().copied().collect());
    }
    let mut val_ids = image_ids(&validation_rows);
    if val_ids.len() < 2 {
        bail!("vqa-v2 validation split: {} image(s); the valid/test division needs at least 2", val_ids.len())
    }
    SeededRng::new(SPLIT_SEED).shuffle(&mut val_ids);
    let n_valid = ((val_ids.len() as f64 * cfg.valid_fraction).round() as usize).clamp(1, val_ids.len() - 1);
    let mut valid_rows = by_image(&validation_rows, &val_ids[..n_valid].iter().copied().collect());
    let mut test_rows = by_image(&validation_rows, &val_ids[n_valid..].iter().copied().collect());
    for (rows, limit) in [(&mut train_rows, cfg.train_limit), (&mut valid_rows, cfg.valid_limit), (&mut test_rows, cfg.test_limit)] {
        if let Some(l) = limit {
            rows.truncate(l);
        }
    }
    if train_rows.is_empty() {
        bail!("vqa-v2: no training questions")
    }
    let answers = AnswerVocab::top_n(train_rows.iter().map(|r| r.answers.as_slice()), v2.answers);
    if answers.is_empty() {
        bail!("vqa-v2: the training questions have no answers")
    }
    let vocab = QuestionVocab::build(train_rows.iter().map(|r| clean_question(&r.question)).collect::<Vec<_>>().iter().map(String::as_str));
    // the features of every image the questions refer to
    let mut pending = Vec::new();
    for r in train_rows.iter().chain(&valid_rows).chain(&test_rows) {
        let bytes = train.images.get(&r.image_id).or_else(|| validation.images.get(&r.image_id));
        let source = match (bytes, &v2.image_dir) {
            (Some(b), _) => ImageSource::Bytes(b),
            (None, Some(dir)) => ImageSource::File(dir.join(format!("{}{:012}.jpg", v2.image_prefix, r.image_id))),
            (None, None) => ImageSource::Missing,
        };
        pending.push(PendingImage { image_id: r.image_id, question_id: r.question_id, source });
    }
    let features = FeatureStore::ensure(cache_dir, backbone, &pending, v2.shard_size, v2.feature_batch, progress)?;
    drop(pending);
    let convert = |rows: Vec<VqaV2Example>| -> Vec<V2Question> {
        rows.into_iter()
            .map(|r| V2Question {
                question_id: r.question_id,
                image_id: r.image_id,
                question: clean_question(&r.question),
                counts: AnswerCounts::new(&answers, &r.answers),
                answers: r.answers,
            })
            .collect()
    };
    let all_train = convert(train_rows);
    let n_train = all_train.len();
    let train: Vec<V2Question> = all_train.into_iter().filter(|q| q.counts.is_some()).collect();
    let skipped_train = n_train - train.len();
    Ok(PreparedV2 { skipped_train, train, valid: convert(valid_rows), test: convert(test_rows), vocab, answers, features })
}

/// The backbone of the config, its pretrained weights fetched through the Hub (environment
/// settings) when it names some.
pub fn load_backbone(cfg: &BackboneConfig, device: &Device, progress: bool) -> Result<Backbone> {
    let weights = match &cfg.weights {
        Some(w) => Some(crate::data::hub::Hub::from_env(progress)?.fetch_model(&w.repo, &w.revision, &w.file)?),
        None => None,
    };
    Backbone::new(cfg, weights.as_deref(), device)
}

/// [`prepare_from_rows`] with the splits read from the Hub cache (`HF_*` settings).
pub fn prepare_data(cfg: &super::vqa::VqaDataConfig, cache_dir: &Path, seed: u64, device: &Device, progress: bool) -> Result<PreparedV2> {
    let v2 = cfg.vqa_v2.as_ref().context("data.dataset = \"vqa-v2\" needs a [data.vqa_v2] table (answers, backbone)")?;
    let backbone = load_backbone(&v2.backbone, device, progress)?;
    let hub = crate::data::hub::Hub::from_env(progress)?;
    let train = V2Split::load(&hub, "train", progress)?;
    let validation = V2Split::load(&hub, "validation", progress)?;
    prepare_from_rows(cfg, v2, train, validation, &backbone, cache_dir, seed, progress)
}

/// The model's inputs for some questions: word ids, mask, `answers` as the gold classes, and
/// the projected region features.
struct V2Batch {
    batch: VqaBatch,
    regions: Tensor,
}

/// The VQA model with its learned projection of the backbone features.
pub struct V2Model<'a> {
    model: &'a VqaModel,
    /// Backbone dim → model region size.
    proj: crate::nn::gemm::Linear,
}

impl V2Model<'_> {
    fn batch(&self, data: &PreparedV2, qs: &[&V2Question], answers: Vec<u32>, device: &Device) -> Result<V2Batch> {
        let b = qs.len();
        let len = qs.iter().map(|q| data.vocab.encode(&q.question).len()).max().unwrap_or(1).max(1);
        let (mut words, mut mask) = (vec![0u32; b * len], vec![0f32; b * len]);
        for (r, q) in qs.iter().enumerate() {
            for (j, w) in data.vocab.encode(&q.question).into_iter().enumerate() {
                words[r * len + j] = w as u32;
                mask[r * len + j] = 1.0;
            }
        }
        let ids: Vec<i64> = qs.iter().map(|q| q.image_id).collect();
        let regions = self.proj.forward(&data.features.gather(&ids, device)?)?;
        Ok(V2Batch {
            batch: VqaBatch {
                // the model reads `regions`, never these pixels
                images: Tensor::zeros((b, 0), candle_core::DType::F32, device)?,
                image_index: None,
                questions: Tensor::from_vec(words, (b, len), device)?,
                question_mask: Tensor::from_vec(mask, (b, len), device)?,
                answers: Tensor::from_vec(answers, b, device)?,
            },
            regions,
        })
    }
}

/// NLL, accuracy, VQA accuracy and ECE over the valid or test questions (see the module doc);
/// `noise`: N(0, σ²) on the projected region features, drawn from stream 77 of the seed.
pub fn evaluate(m: &V2Model, kind: &ObjectiveKind, data: &PreparedV2, test: bool, batch: usize, noise: Option<(f64, u64)>, device: &Device) -> Result<VqaMetrics> {
    let qs = if test { &data.test } else { &data.valid };
    let answerable: Vec<&V2Question> = qs.iter().filter(|q| q.counts.is_some()).collect();
    let mut metrics = Metrics::default();
    let (mut conf, mut correct, mut vqa_sum) = (Vec::new(), Vec::new(), 0.0);
    let mut noise_rng = noise.map(|(_, seed)| SeededRng::new(seed).fork(77));
    for idx in index_batches(answerable.len(), batch, None) {
        let sel: Vec<&V2Question> = idx.iter().map(|&i| answerable[i]).collect();
        let gold: Vec<u32> = sel.iter().map(|q| q.counts.as_ref().map_or(0, |c| c.most_common() as u32)).collect();
        let b = m.batch(data, &sel, gold.clone(), device)?;
        let out = m.model.forward_from_regions(&b.batch, b.regions, None, noise.map(|(s, _)| s).zip(noise_rng.as_mut()), None, false)?;
        let lp = score_batch(kind, &out, &mut metrics)?;
        let pred = lp.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let top = lp.max(D::Minus1)?.exp()?.to_vec1::<f32>()?;
        for (((p, g), c), q) in pred.iter().zip(&gold).zip(&top).zip(&sel) {
            correct.push(p == g);
            conf.push(*c as f64);
            vqa_sum += vqa_accuracy(data.answers.answer(*p as usize), &q.answers);
        }
    }
    let n = qs.len();
    let hits = correct.iter().filter(|&&c| c).count();
    Ok(VqaMetrics {
        nll: metrics.nll_sum.unwrap_or(f64::NAN) / metrics.tokens,
        accuracy: hits as f64 / n.max(1) as f64,
        ece: expected_calibration_error(&conf, &correct, 15),
        prior_entropy: metrics.prior_entropy(),
        questions: n,
        pavpu: None,
        mc_accuracy: None,
        uncertain_fraction: None,
        vqa_accuracy: Some(vqa_sum / n.max(1) as f64),
        unanswerable: Some(n - answerable.len()),
        question_nll: vec![],
        question_correct: vec![],
    })
}

struct V2Task<'a> {
    m: &'a V2Model<'a>,
    data: &'a PreparedV2,
    batch: usize,
    objective: ObjectiveKind,
    seed: u64,
    device: &'a Device,
    /// This epoch's sampled training answers, one per training question.
    sampled: RefCell<Vec<u32>>,
}

impl TrainTask for V2Task<'_> {
    fn epoch_plan(&self, epoch: usize) -> Vec<Vec<usize>> {
        let mut rng = SeededRng::new(self.seed).fork(3000 + epoch as u64);
        *self.sampled.borrow_mut() =
            self.data.train.iter().map(|q| q.counts.as_ref().map_or(0, |c| c.sample(&mut rng) as u32)).collect();
        epoch_batches(self.data.train.len(), self.batch, self.seed, epoch)
    }
    fn train_step(
        &self,
        idx: &[usize],
        kind: &ObjectiveKind,
        dropout: &mut SeededRng,
        noise: &mut SeededRng,
        estimator: &mut EstimatorState,
    ) -> Result<Estimate> {
        let sel: Vec<&V2Question> = idx.iter().map(|&i| &self.data.train[i]).collect();
        let answers: Vec<u32> = idx.iter().map(|&i| self.sampled.borrow()[i]).collect();
        let b = self.m.batch(self.data, &sel, answers, self.device)?;
        train_estimate(self.m.model, &b.batch, b.regions, kind, dropout, noise, estimator)
    }
    fn valid_metric(&self) -> runner::ValidMetric {
        runner::ValidMetric::Nll
    }
    fn validate(&self) -> Result<f64> {
        Ok(evaluate(self.m, &self.objective, self.data, false, self.batch, None, self.device)?.nll)
    }
    fn divergence_bound(&self) -> Option<(f64, String)> {
        super::vqa::nll_bound(self.data.answers.len())
    }
}

/// Train (or resume) and evaluate one (config, seed) on VQA-v2; called by
/// [`super::vqa::run`] for `data.dataset = "vqa-v2"`.
pub fn run(cfg: &VqaConfig, merged: &toml::Value, opts: &RunOptions) -> Result<Option<VqaResult>> {
    let hash = config_hash(merged);
    let dev = &opts.device;
    let data = prepare_data(&cfg.data, &opts.cache_dir, opts.seed, dev, opts.progress)?;
    if opts.progress {
        eprintln!(
            "vqa-v2: {} train questions ({} skipped: no answer among the top {}), {} valid, {} test; features: {} images computed, {} reused ({})",
            data.train.len(),
            data.skipped_train,
            data.answers.len(),
            data.valid.len(),
            data.test.len(),
            data.features.computed,
            data.features.reused,
            data.features.dir.display()
        );
    }
    run_prepared(cfg, &hash, &data, opts)
}

/// Training and evaluation on prepared data (writes `result.json` into the run folder).
pub fn run_prepared(cfg: &VqaConfig, hash: &str, data: &PreparedV2, opts: &RunOptions) -> Result<Option<VqaResult>> {
    let dev = &opts.device;
    let mut ps = ParamStore::new(opts.seed, cfg.model.init, dev);
    let model = VqaModel::new(&mut ps, &cfg.model, data.vocab.len(), data.answers.len())?;
    // after the model's parameters, so the model's own initialisation is the easy-VQA one
    let proj = ps.linear("regions.proj", data.features.manifest.dim, cfg.model.channels[2], true)?;
    let m = V2Model { model: &model, proj };
    let mut opt = Adam::new(ps.named_vars(), cfg.train.adam())?;
    let task = V2Task {
        m: &m,
        data,
        batch: cfg.train.batch,
        objective: cfg.objective,
        seed: opts.seed,
        device: dev,
        sampled: RefCell::new(Vec::new()),
    };
    let mut loop_cfg = LoopConfig::new(&cfg.name, cfg.objective, &cfg.train, hash, opts);
    // seed and build (the question files and features are verified by their own manifests)
    loop_cfg.identity = Some(crate::rundir::RunIdentity::new(opts.seed, &opts.cache_dir, &[])?);
    let Some(st) = runner::train(&task, &ps, &mut opt, &loop_cfg, &opts.out_dir)? else { return Ok(None) };
    let test = evaluate(&m, &cfg.objective, data, true, cfg.train.batch, None, dev)?;
    let test_noisy = evaluate(&m, &cfg.objective, data, true, cfg.train.batch, Some((cfg.eval.noise_sigma, opts.seed)), dev)?;
    let result = VqaResult::finished(cfg, hash.to_string(), opts, st, ps.count(), test, test_noisy, None)?;
    let extra = serde_json::json!({
        "answers": data.answers.answers(),
        "skipped_train": data.skipped_train,
        "train_questions": data.train.len(),
        "features": data.features.dir,
        "features_computed": data.features.computed,
        "features_reused": data.features.reused,
    });
    write_atomic(&opts.out_dir.join("vqa-v2.json"), serde_json::to_string_pretty(&extra)?.as_bytes())?;
    Ok(Some(result))
}
