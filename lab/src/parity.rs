//! `varattn parity`: the NMT model's loss and every parameter gradient against the PyTorch
//! reference (`bench/nmt_reference.py parity`) at shared weights, on the same batch.
//!
//! For each (preset, row) varattn builds the model at the preset's sizes with the seeded
//! initialisation of training ([`ParamStore`] at `seed`, or the weights of a checkpoint), with
//! dropout 0, in f64, and runs one training step's forward pass, objective and backward pass on
//! a padded batch of random sentence pairs of random lengths. [`export_case`] writes one
//! safetensors file holding
//!
//! | key | what |
//! |---|---|
//! | `param.{name}` | every parameter, named as in checkpoints |
//! | `grad.{name}` | ∂loss/∂param of every parameter |
//! | `batch.{src,tgt_in,tgt_out}` | token ids `[B, S]`, `[B, T]`, `[B, T]` (i64) |
//! | `batch.{src_mask,tgt_mask}` | 1 at real positions, 0 at padding |
//! | `sample.z` | the alignments `[K, B, T]` the sampled objectives drew (i64) |
//! | `loss` | the scalar loss (f64) |
//!
//! and the sizes, vocabulary and objective under the header metadata key [`META_KEY`]. The
//! reference reads it, computes its own loss and gradients from the paper's equations with the
//! same weights, batch and draws, and writes `loss` and `grad.{name}` (varattn's names) back.
//! [`compare`] then measures, per tensor, max_j |g_j − r_j| / max_j |r_j| (r the reference), and
//! |loss − loss_ref| / |loss_ref| for the loss.
use crate::bench::row_config;
use crate::data::nmt::{IdPair, NmtBatch};
use crate::experiments::nmt::NmtConfig;
use crate::models::nmt::{NmtModel, NmtModelConfig};
use crate::objective::{estimate, AlignmentOutputs, Enumerable, EstimatorState, ObjectiveKind, Relaxed, Sampled};
use crate::rng::SeededRng;
use crate::train::ParamStore;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The header metadata key of an exported case (JSON of [`CaseMeta`]).
pub const META_KEY: &str = "varattn.parity";

/// What to export.
#[derive(Debug, Clone)]
pub struct ParityOptions {
    pub config_dir: PathBuf,
    /// Longest source length S and target length T (end of sentence included) of the batch;
    /// each sentence's lengths are drawn from [⌈S/2⌉, S] and [⌈T/2⌉, T], the first sentence
    /// has the longest of both.
    pub src_len: usize,
    pub tgt_len: usize,
    /// Sentences in the batch (default: the preset's training batch).
    pub batch: Option<usize>,
    pub seed: u64,
    /// F64 for the parity check; F32 is the training dtype.
    pub dtype: DType,
    /// Weights of a checkpoint (`<stem>.safetensors` of `varattn train`) instead of the seeded
    /// initialisation.
    pub checkpoint: Option<PathBuf>,
}

/// The header metadata of an exported case.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CaseMeta {
    pub preset: String,
    pub row: String,
    pub objective: ObjectiveKind,
    pub vocab: usize,
    pub model: NmtModelConfig,
    pub dtype: String,
}

/// One exported case, as held in memory.
pub struct Case {
    pub meta: CaseMeta,
    pub loss: f64,
    /// Every parameter with its gradient, in creation order.
    pub params: Vec<(String, Tensor, Tensor)>,
    pub batch: NmtBatch,
    /// The sampled alignments `[K, B, T]` (sampled objectives only).
    pub z: Option<Tensor>,
}

/// [`AlignmentOutputs`] of a model that also keeps the alignments the objective sampled (the
/// indices `log_f_at` was asked for), so that the reference can use the same draws.
struct Recording<'a> {
    inner: &'a dyn AlignmentOutputs,
    z: RefCell<Vec<Tensor>>,
}

impl AlignmentOutputs for Recording<'_> {
    fn prior_scores(&self) -> &Tensor {
        self.inner.prior_scores()
    }
    fn posterior_scores(&self) -> Option<&Tensor> {
        self.inner.posterior_scores()
    }
    fn position_mask(&self) -> Option<&Tensor> {
        self.inner.position_mask()
    }
    fn step_mask(&self) -> Option<&Tensor> {
        self.inner.step_mask()
    }
    fn enumerable(&self) -> Option<&dyn Enumerable> {
        self.inner.enumerable()
    }
    fn sampled(&self) -> Option<&dyn Sampled> {
        Some(self)
    }
    fn relaxed(&self) -> Option<&dyn Relaxed> {
        self.inner.relaxed()
    }
}

impl Sampled for Recording<'_> {
    fn log_f_at(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        self.z.borrow_mut().push(z.clone());
        crate::objective::log_f_at(self.inner, z, "the parity check")
    }
}

/// The objectives the reference implements.
fn reference_supports(kind: &ObjectiveKind) -> bool {
    matches!(
        kind,
        ObjectiveKind::Soft
            | ObjectiveKind::Exact
            | ObjectiveKind::HardEnum
            | ObjectiveKind::VarEnum
            | ObjectiveKind::HardSample { .. }
            | ObjectiveKind::VarSample { .. }
    )
}

/// Sentence pairs of random lengths (see [`ParityOptions::src_len`]) and ids 4.. (no special
/// token), from `rng`.
fn random_pairs(n: usize, src_len: usize, tgt_len: usize, vocab: usize, rng: &mut SeededRng) -> Vec<IdPair> {
    let ids = |len: usize, rng: &mut SeededRng| (0..len).map(|_| 4 + rng.next_index(vocab - 4) as u32).collect::<Vec<_>>();
    let len = |max: usize, first: bool, rng: &mut SeededRng| if first { max } else { max.div_ceil(2) + rng.next_index(max - max.div_ceil(2) + 1) };
    (0..n)
        .map(|r| {
            let (s, t) = (len(src_len, r == 0, rng), len(tgt_len, r == 0, rng));
            IdPair { src: ids(s, rng), tgt: ids(t - 1, rng) }
        })
        .collect()
}

/// The row's config at `preset` with dropout 0 (the reference sees no dropout masks).
pub fn case_config(opts: &ParityOptions, preset: &str, row: &str) -> Result<NmtConfig> {
    let mut cfg = row_config(&opts.config_dir, row, preset)?;
    if !reference_supports(&cfg.objective) {
        bail!("parity: row `{row}` has objective {:?}; the reference implements soft, exact, hard-enum, hard-sample, var-enum and var-sample", cfg.objective)
    }
    if cfg.data.bpe_vocab <= 4 || opts.src_len == 0 || opts.tgt_len < 2 {
        bail!("parity: need a vocabulary above 4 ({}), --src-len >= 1 and --tgt-len >= 2", cfg.data.bpe_vocab)
    }
    cfg.model.dropout = 0.0;
    Ok(cfg)
}

/// One training step's loss and gradients of `row` at `preset` (see the module docs).
pub fn compute_case(opts: &ParityOptions, preset: &str, row: &str) -> Result<Case> {
    let cfg = case_config(opts, preset, row)?;
    let vocab = cfg.data.bpe_vocab;
    let dev = Device::Cpu;
    let mut ps = ParamStore::new(opts.seed, cfg.model.init, &dev).with_dtype(opts.dtype);
    let model = NmtModel::new(&mut ps, &cfg.model, vocab, cfg.objective.needs_posterior())?;
    if let Some(stem) = &opts.checkpoint {
        crate::train::checkpoint::load_params(&stem.with_extension(""), &ps, &dev)
            .with_context(|| format!("parity: loading the weights of {}", stem.display()))?;
    }
    let mut rng = SeededRng::new(opts.seed).fork(0x9a71);
    let n = opts.batch.unwrap_or(cfg.train.batch);
    let pairs = random_pairs(n, opts.src_len, opts.tgt_len, vocab, &mut rng);
    let batch = NmtBatch::new(&pairs, &(0..n).collect::<Vec<_>>(), &dev)?;
    let (mut dropout, mut noise) = (rng.fork(1), rng.fork(2));
    let out = model.forward(&batch, Some(&mut dropout))?;
    let rec = Recording { inner: &out, z: RefCell::new(Vec::new()) };
    let est = estimate(&cfg.objective, &rec, &mut EstimatorState::default(), &mut noise)?;
    let loss = est.loss_with_kl_weight(1.0)?;
    let grads = loss.backward()?;
    let mut params = Vec::new();
    for (name, var) in ps.named_vars() {
        let g = grads.get(var.as_tensor()).with_context(|| format!("parity {preset} {row}: parameter `{name}` received no gradient"))?;
        params.push((name, var.as_tensor().detach(), g.detach()));
    }
    let z = match cfg.objective {
        ObjectiveKind::HardSample { .. } | ObjectiveKind::VarSample { .. } => {
            let z = rec.z.into_inner();
            if z.len() != 1 {
                bail!("parity {preset} {row}: the objective evaluated log f at {} sets of alignments, expected 1", z.len())
            }
            Some(z[0].clone())
        }
        _ => None,
    };
    Ok(Case {
        meta: CaseMeta {
            preset: preset.into(),
            row: row.into(),
            objective: cfg.objective,
            vocab,
            model: cfg.model,
            dtype: format!("{:?}", opts.dtype).to_lowercase(),
        },
        loss: loss.to_dtype(DType::F64)?.to_scalar::<f64>()?,
        params,
        batch,
        z,
    })
}

/// Writes `case` to `path` (a temporary name, then renamed).
pub fn write_case(case: &Case, path: &Path) -> Result<()> {
    let mut t: HashMap<String, Tensor> = HashMap::new();
    for (name, p, g) in &case.params {
        t.insert(format!("param.{name}"), p.clone());
        t.insert(format!("grad.{name}"), g.clone());
    }
    let dtype = case.params[0].1.dtype();
    let b = &case.batch;
    for (k, v) in [("src", &b.src), ("tgt_in", &b.tgt_in), ("tgt_out", &b.tgt_out)] {
        t.insert(format!("batch.{k}"), v.to_dtype(DType::I64)?);
    }
    for (k, v) in [("src_mask", &b.src_mask), ("tgt_mask", &b.tgt_mask)] {
        t.insert(format!("batch.{k}"), v.to_dtype(dtype)?);
    }
    if let Some(z) = &case.z {
        t.insert("sample.z".into(), z.to_dtype(DType::I64)?);
    }
    t.insert("loss".into(), Tensor::new(case.loss, &Device::Cpu)?);
    let meta = HashMap::from([(META_KEY.to_string(), serde_json::to_string(&case.meta)?)]);
    let tmp = path.with_extension("safetensors.tmp");
    safetensors::serialize_to_file(&t, Some(meta), &tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// [`compute_case`] then [`write_case`].
pub fn export_case(opts: &ParityOptions, preset: &str, row: &str, path: &Path) -> Result<Case> {
    let case = compute_case(opts, preset, row)?;
    write_case(&case, path)?;
    Ok(case)
}

/// One tensor's agreement: max-abs error over max-abs reference value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TensorError {
    pub name: String,
    pub max_abs_error: f64,
    pub max_abs_reference: f64,
    /// max_abs_error / max_abs_reference (0 when both are 0, infinite when only the error is not).
    pub relative: f64,
}

/// One case's agreement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseReport {
    pub preset: String,
    pub row: String,
    /// varattn's dtype (the reference computes in f64).
    pub dtype: String,
    pub loss: f64,
    pub loss_reference: f64,
    pub loss_relative: f64,
    /// Every parameter's gradient, worst first.
    pub grads: Vec<TensorError>,
}

impl CaseReport {
    /// The largest relative error over the loss and every gradient.
    pub fn worst(&self) -> f64 {
        self.grads.iter().map(|g| g.relative).fold(self.loss_relative, f64::max)
    }
}

fn max_abs(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?)
}

fn ratio(err: f64, scale: f64) -> f64 {
    if err == 0.0 {
        0.0
    } else if scale > 0.0 {
        err / scale
    } else {
        f64::INFINITY
    }
}

/// Compares `case` with the reference's `loss` and `grad.{name}` tensors. Every parameter must
/// have a reference gradient of the same shape.
pub fn compare(case: &Case, reference: &HashMap<String, Tensor>, source: &Path) -> Result<CaseReport> {
    let loss_ref = reference
        .get("loss")
        .with_context(|| format!("{}: no `loss`", source.display()))?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let [loss_ref] = loss_ref[..] else { bail!("{}: `loss` is not a scalar", source.display()) };
    let mut grads = Vec::new();
    for (name, _, g) in &case.params {
        let r = reference.get(&format!("grad.{name}")).with_context(|| format!("{}: no gradient `grad.{name}`", source.display()))?;
        if r.dims() != g.dims() {
            bail!("{}: `grad.{name}` has shape {:?}, varattn's {:?}", source.display(), r.dims(), g.dims())
        }
        let r = r.to_dtype(DType::F64)?;
        let err = max_abs(&(g.to_dtype(DType::F64)? - &r)?)?;
        let scale = max_abs(&r)?;
        grads.push(TensorError { name: name.clone(), max_abs_error: err, max_abs_reference: scale, relative: ratio(err, scale) });
    }
    grads.sort_by(|a, b| b.relative.total_cmp(&a.relative));
    Ok(CaseReport {
        preset: case.meta.preset.clone(),
        row: case.meta.row.clone(),
        dtype: case.meta.dtype.clone(),
        loss: case.loss,
        loss_reference: loss_ref,
        loss_relative: ratio((case.loss - loss_ref).abs(), loss_ref.abs()),
        grads,
    })
}

/// Runs the reference on the exported case `input`, which writes its results to `output`.
pub fn run_reference(python: &Path, script: &Path, input: &Path, output: &Path) -> Result<HashMap<String, Tensor>> {
    let out = std::process::Command::new(python)
        .arg(script)
        .arg("parity")
        .arg(input)
        .arg(output)
        .output()
        .with_context(|| format!("parity: running {} {}", python.display(), script.display()))?;
    if !out.status.success() {
        bail!("parity: the PyTorch reference failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr))
    }
    candle_core::safetensors::load(output, &Device::Cpu).with_context(|| format!("parity: reading {}", output.display()))
}

/// Every (preset, row): export into `dir`, run the reference, compare. Progress goes to stderr.
pub fn run_all(opts: &ParityOptions, presets: &[String], rows: &[String], python: &Path, script: &Path, dir: &Path) -> Result<Vec<CaseReport>> {
    std::fs::create_dir_all(dir).with_context(|| format!("parity: creating {}", dir.display()))?;
    let mut reports = Vec::new();
    for preset in presets {
        for row in rows {
            let input = dir.join(format!("{preset}-{row}.safetensors"));
            let output = dir.join(format!("{preset}-{row}.reference.safetensors"));
            let case = export_case(opts, preset, row, &input)?;
            let reference = run_reference(python, script, &input, &output)?;
            let r = compare(&case, &reference, &output)?;
            eprintln!(
                "parity {preset} {row}: loss {:.12} vs {:.12} (rel. {:.1e}); worst gradient {} rel. {:.1e}",
                r.loss, r.loss_reference, r.loss_relative, r.grads[0].name, r.grads[0].relative
            );
            reports.push(r);
        }
    }
    Ok(reports)
}

/// A markdown table of the reports: per case the loss, its relative error, the worst
/// gradient's relative error and which tensor it is.
pub fn table(reports: &[CaseReport], tolerance: f64) -> String {
    let mut s = String::from(
        "| preset | objective | varattn dtype | loss (varattn) | loss (PyTorch, f64) | loss rel. err. | tensors | worst gradient rel. err. | worst tensor | within tolerance |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        let w = &r.grads[0];
        s.push_str(&format!(
            "| {} | {} | {} | {:.10} | {:.10} | {:.2e} | {} | {:.2e} | {} | {} |\n",
            r.preset,
            r.row,
            r.dtype,
            r.loss,
            r.loss_reference,
            r.loss_relative,
            r.grads.len(),
            w.relative,
            w.name,
            if r.worst() <= tolerance { "yes" } else { "NO" }
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dtype: DType) -> ParityOptions {
        ParityOptions {
            config_dir: crate::repo_root().join("configs/nmt"),
            src_len: 7,
            tgt_len: 6,
            batch: Some(3),
            seed: 11,
            dtype,
            checkpoint: None,
        }
    }

    /// The exported file holds every parameter and its gradient under varattn's names, the batch
    /// and the draws; its loss is the training path's (f32, the fused kernels) at the same
    /// weights within f32 rounding, and so are the gradients (f32 rounding reaches a few 1e-3 of a
    /// tensor's largest entry where gradients at the initialisation are tiny, e.g. 4e-8).
    #[test]
    fn exported_case_has_every_parameter_and_gradient_and_the_training_loss() -> Result<()> {
        let dir = tempfile::tempdir()?;
        for row in ["soft", "exact", "var-enum", "var-sample"] {
            let path = dir.path().join(format!("{row}.safetensors"));
            let case = export_case(&opts(DType::F64), "smoke", row, &path)?;
            let back = candle_core::safetensors::load(&path, &Device::Cpu)?;
            let cfg = case_config(&opts(DType::F64), "smoke", row)?;
            let mut ps = ParamStore::new(99, cfg.model.init, &Device::Cpu);
            let model = NmtModel::new(&mut ps, &cfg.model, cfg.data.bpe_vocab, cfg.objective.needs_posterior())?;
            let names: Vec<String> = ps.named_vars().into_iter().map(|(n, _)| n).collect();
            assert_eq!(names.len(), case.params.len(), "{row}");
            for (name, var) in ps.named_vars() {
                let (p, g) = (&back[&format!("param.{name}")], &back[&format!("grad.{name}")]);
                assert_eq!((p.dtype(), p.dims(), g.dims()), (DType::F64, var.as_tensor().dims(), var.as_tensor().dims()), "{row} {name}");
            }
            assert_eq!(back.contains_key("sample.z"), row == "var-sample");
            if let Some(z) = back.get("sample.z") {
                // drawn from q, which puts no mass on padding
                let (z, lens) = (z.to_vec3::<i64>()?, case.batch.src_mask.sum(1)?.to_vec1::<f32>()?);
                assert!(z[0].iter().zip(&lens).all(|(row, &l)| row.iter().all(|&i| (i as f32) < l)), "{z:?}");
            }
            // the training path (f32, fused kernels, an untouched generator) at the same weights
            let weights: HashMap<String, Tensor> =
                back.iter().filter_map(|(k, v)| k.strip_prefix("param.").map(|n| (n.to_string(), v.clone()))).collect();
            ps.load_tensors(&weights, &path)?;
            let o = opts(DType::F64);
            let mut rng = SeededRng::new(o.seed).fork(0x9a71);
            let _ = random_pairs(3, o.src_len, o.tgt_len, cfg.data.bpe_vocab, &mut rng);
            let (mut dropout, mut noise) = (rng.fork(1), rng.fork(2));
            let out = model.forward(&case.batch, Some(&mut dropout))?;
            let loss = estimate(&cfg.objective, &out, &mut EstimatorState::default(), &mut noise)?.loss;
            let grads = loss.backward()?;
            let l32 = loss.to_scalar::<f32>()? as f64;
            let l64 = back["loss"].to_scalar::<f64>()?;
            assert!((l32 - l64).abs() <= 1e-5 * l64.abs(), "{row}: training loss {l32}, exported {l64}");
            let reference: HashMap<String, Tensor> =
                back.iter().filter(|(k, _)| *k == "loss" || k.starts_with("grad.")).map(|(k, v)| (k.clone(), v.clone())).collect();
            let ours = Case {
                meta: case.meta.clone(),
                loss: l32,
                params: ps.named_vars().into_iter().map(|(n, v)| (n, v.as_tensor().clone(), grads.get(v.as_tensor()).unwrap().clone())).collect(),
                batch: case.batch.clone(),
                z: None,
            };
            let report = compare(&ours, &reference, &path)?;
            assert!(report.worst() < 1e-2, "{row}: f32 training path against the f64 export: {:?}", report.grads[0]);
            assert!(report.worst() > 0.0, "{row}: f32 and f64 gave identical gradients, so the comparison compared nothing");
        }
        Ok(())
    }

    /// A gradient off by more than the tolerance is reported as the worst tensor; a missing one
    /// is an error naming it.
    #[test]
    fn compare_finds_the_perturbed_gradient_and_missing_ones() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("case.safetensors");
        let case = export_case(&opts(DType::F64), "smoke", "soft", &path)?;
        let mut reference = candle_core::safetensors::load(&path, &Device::Cpu)?;
        assert_eq!(compare(&case, &reference, &path)?.worst(), 0.0);
        let g = reference["grad.attention.v.weight"].clone();
        reference.insert("grad.attention.v.weight".into(), (g.clone() * 1.001)?);
        let r = compare(&case, &reference, &path)?;
        assert_eq!(r.grads[0].name, "attention.v.weight");
        assert!((r.grads[0].relative - 1e-3 / 1.001).abs() < 1e-9, "{:?}", r.grads[0]);
        assert!(table(&[r], 1e-4).contains("| NO |"));
        reference.remove("grad.output.w_o.bias");
        let err = compare(&case, &reference, &path).unwrap_err().to_string();
        assert!(err.contains("grad.output.w_o.bias"), "{err}");
        Ok(())
    }
}
