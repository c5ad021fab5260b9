//! `varattn bench`: training-step throughput of the NMT model for each objective, beside a
//! PyTorch reference of the same model run on the same machine in the same invocation.
//!
//! A step is what training does: forward pass, objective, backward pass, gradient clipping and
//! an Adam update. Batches are random token ids of fixed lengths drawn from the project's seeded
//! generator (throughput does not depend on the ids). Sizes come from the NMT presets
//! (`configs/nmt/presets.toml`): the bench reads the row file of each objective with the chosen
//! preset, exactly as `varattn train` does, and replaces only the corpus by the synthetic batches.
//!
//! Reported per (preset, objective): target tokens per second (B·T per step over the mean step
//! time), step-time percentiles, and the peak resident memory of the steps (the kernel's
//! high-water mark, reset before each objective through `/proc/self/clear_refs`). With
//! `--rounds R` the row set is timed R times, each round varattn then PyTorch back to back, and
//! the table gives medians over the rounds and the median of the per-round ratios ([`summarise`]).
//!
//! A second measurement checks the enumerated output layer: the fused gold-token log-softmax
//! ([`crate::kernels::gold_log_softmax`]) forward + backward on the `[B·T·S, O] × [O, V]` problem of
//! exact enumeration, in GFLOP/s (6·N·O·V flops: one matmul forward, two backward), against a
//! plain `[N, O] × [O, V]` matmul measured in the same run.
use crate::config::load_with_preset;
use crate::data::nmt::{IdPair, NmtBatch};
use crate::experiments::nmt::NmtConfig;
use crate::models::nmt::NmtModel;
use crate::objective::{estimate, EstimatorState};
use crate::rng::SeededRng;
use crate::train::{Adam, ParamStore};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Presets whose model sizes to use (`smoke`, `cpu`, `paper`).
    pub presets: Vec<String>,
    /// Rows of `configs/nmt/` (their objectives): e.g. soft, exact, var-enum, var-sample.
    pub rows: Vec<String>,
    pub config_dir: PathBuf,
    /// Source length S and target length T (with the end-of-sentence token) of every sentence.
    pub src_len: usize,
    pub tgt_len: usize,
    /// Override the preset's batch size.
    pub batch: Option<usize>,
    pub warmup: usize,
    pub steps: usize,
    pub seed: u64,
    pub device: Device,
}

/// One measured (implementation, preset, objective).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepBench {
    pub implementation: String,
    #[serde(default)]
    pub preset: String,
    pub objective: String,
    pub steps: usize,
    pub tokens_per_step: usize,
    pub tokens_per_second: f64,
    pub step_ms_p50: f64,
    pub step_ms_p90: f64,
    pub peak_rss_mb: f64,
    /// Which round of the invocation measured this (0-based; see [`summarise`]).
    #[serde(default)]
    pub round: usize,
}

/// The enumerated output layer's throughput against a plain matmul of the same shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputLayerBench {
    pub preset: String,
    /// Rows N = B·T·S, hidden O, vocabulary V.
    pub rows: usize,
    pub hidden: usize,
    pub vocab: usize,
    /// Useful work (6·N·O·V: the forward matmul and the two of the backward pass) per second.
    pub gold_log_softmax_gflops: f64,
    /// Executed work per second: 8·N·O·V, counting the backward pass's recomputation of the
    /// logits (the price of not keeping `[N, V]`).
    pub gold_log_softmax_executed_gflops: f64,
    /// Whether training at this size keeps the `[N, V]` probabilities for the backward pass
    /// (N·V·4 within [`crate::kernels::gold_log_softmax::KEEP_PROBS_BYTES`]), skipping the recompute.
    #[serde(default)]
    pub probs_kept: bool,
    /// Useful work per second of the path training takes at this size (the same as
    /// `gold_log_softmax_gflops` when the probabilities are not kept).
    #[serde(default)]
    pub as_trained_gflops: f64,
    pub matmul_gflops: f64,
    /// Bytes the naive `[N, V]` f32 logits would take (twice: values and gradient).
    pub naive_logits_mb: f64,
}

/// The `[nmt]` config of a row at a preset.
pub fn row_config(dir: &Path, row: &str, preset: &str) -> Result<NmtConfig> {
    let path = dir.join(format!("{row}.toml"));
    let (cfg, _) = load_with_preset::<NmtConfig>(&path, preset).with_context(|| format!("bench: reading {}", path.display()))?;
    Ok(cfg)
}

/// Percentile q of sorted samples (nearest rank).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((q * sorted.len() as f64) as usize).min(sorted.len() - 1)]
}

/// The kernel's peak resident set of this process, in MiB (VmHWM), if readable.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Resets the peak resident set to the current one (Linux; ignored elsewhere).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Random sentence pairs of fixed lengths (ids 4.. so no special token appears).
fn synthetic_pairs(n: usize, src_len: usize, tgt_len: usize, vocab: usize, rng: &mut SeededRng) -> Vec<IdPair> {
    let mut id = |len: usize| (0..len).map(|_| 4 + rng.next_index(vocab - 4) as u32).collect::<Vec<_>>();
    (0..n).map(|_| IdPair { src: id(src_len), tgt: id(tgt_len - 1) }).collect()
}

/// Times `warmup + steps` training steps of one row at one preset.
///
/// A row `kmax-K` trains the `exact` row's model with the K-Max objective (K most probable
/// alignments), whose cost grows with K rather than S.
pub fn bench_row(opts: &BenchOptions, preset: &str, row: &str) -> Result<StepBench> {
    let cfg = match row.strip_prefix("kmax-") {
        Some(k) => {
            let k: usize = k.parse().with_context(|| format!("bench: row `{row}`: K must be a number"))?;
            let mut cfg = row_config(&opts.config_dir, "exact", preset)?;
            cfg.objective = crate::objective::ObjectiveKind::KMax { k };
            cfg
        }
        None => row_config(&opts.config_dir, row, preset)?,
    };
    let vocab = cfg.data.bpe_vocab;
    if vocab <= 4 || opts.tgt_len < 2 || opts.src_len == 0 {
        bail!("bench: need a vocabulary above 4 ({vocab}), src_len >= 1 and tgt_len >= 2")
    }
    let batch = opts.batch.unwrap_or(cfg.train.batch);
    let mut rng = SeededRng::new(opts.seed);
    let pairs = synthetic_pairs(batch, opts.src_len, opts.tgt_len, vocab, &mut rng);
    let mut ps = ParamStore::new(opts.seed, cfg.model.init, &opts.device);
    let model = NmtModel::new(&mut ps, &cfg.model, vocab, cfg.objective.needs_posterior())?;
    let mut opt = Adam::new(ps.named_vars(), cfg.train.adam())?;
    let (mut dropout, mut noise) = (rng.fork(1), rng.fork(2));
    let mut state = EstimatorState::default();
    let idx: Vec<usize> = (0..batch).collect();
    reset_peak_rss();
    let mut times = Vec::with_capacity(opts.steps);
    let mut tokens = 0;
    for step in 0..opts.warmup + opts.steps {
        let t0 = Instant::now();
        let b = NmtBatch::new(&pairs, &idx, &opts.device)?;
        let out = model.forward(&b, Some(&mut dropout))?;
        let est = estimate(&cfg.objective, &out, &mut state, &mut noise)?;
        let loss = est.loss_with_kl_weight(1.0)?;
        opt.backward_step(&loss)?;
        let l = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !l.is_finite() {
            bail!("bench {row} ({preset}): non-finite loss at step {step}")
        }
        if step >= opts.warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
        tokens = b.tokens;
    }
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    times.sort_by(f64::total_cmp);
    Ok(StepBench {
        implementation: "varattn".into(),
        preset: preset.into(),
        objective: row.into(),
        steps: times.len(),
        tokens_per_step: tokens,
        tokens_per_second: tokens as f64 / mean,
        step_ms_p50: 1e3 * percentile(&times, 0.5),
        step_ms_p90: 1e3 * percentile(&times, 0.9),
        peak_rss_mb: peak_rss_mb(),
        round: 0,
    })
}

/// Timed rounds of [`bench_output_layer`].
const OUTPUT_LAYER_ROUNDS: usize = 9;

/// GFLOP/s of the fused gold-token log-softmax (forward + backward) on the enumerated output
/// layer of a preset, and of a plain matmul of the same shape, in the same run.
pub fn bench_output_layer(opts: &BenchOptions, preset: &str) -> Result<OutputLayerBench> {
    let cfg = row_config(&opts.config_dir, "exact", preset)?;
    let (v, o) = (cfg.data.bpe_vocab, cfg.model.out_hidden);
    let batch = opts.batch.unwrap_or(cfg.train.batch);
    let n = batch * opts.tgt_len * opts.src_len;
    let dev = &opts.device;
    let mut rng = SeededRng::new(opts.seed);
    let h = candle_core::Var::from_tensor(&rng.uniform(&[n, o], dev)?.affine(2.0, -1.0)?)?;
    let w = candle_core::Var::from_tensor(&rng.uniform(&[v, o], dev)?.affine(0.2, -0.1)?)?;
    let b = candle_core::Var::from_tensor(&Tensor::zeros(v, DType::F32, dev)?)?;
    let gold: Vec<u32> = (0..n).map(|_| rng.next_index(v) as u32).collect();
    let gold = Tensor::from_vec(gold, n, dev)?;
    let once = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        dev.synchronize()?;
        let t0 = Instant::now();
        f()?;
        dev.synchronize()?;
        Ok(t0.elapsed().as_secs_f64())
    };
    let (hr, wr, br, goldr) = (&h, &w, &b, &gold);
    let run = |keep_bytes: usize| {
        move || -> Result<()> {
            let l = crate::kernels::gold_log_softmax_keeping(hr.as_tensor(), wr.as_tensor(), br.as_tensor(), goldr, keep_bytes)?;
            let g = l.sum_all()?.backward()?;
            std::hint::black_box(g);
            Ok(())
        }
    };
    // The memory-lean path (logits recomputed in the backward pass), the one training uses at
    // this size (probabilities kept when they fit in KEEP_PROBS_BYTES), and the plain matmul,
    // interleaved over OUTPUT_LAYER_ROUNDS rounds after one warm-up each (so that a drift in the
    // machine's speed hits all three alike); the median time of each.
    let (mut fused, mut as_trained) = (run(0), run(crate::kernels::gold_log_softmax::KEEP_PROBS_BYTES));
    // The plain product H Wᵀ: on the CPU gemm's kernels on all threads into a buffer allocated
    // once (no allocation or page faults timed: the machine's matmul rate), elsewhere candle's
    // matmul.
    let wt = w.as_tensor().t()?.contiguous()?;
    let (h_host, w_host) = (h.as_tensor().flatten_all()?.to_vec1::<f32>()?, w.as_tensor().flatten_all()?.to_vec1::<f32>()?);
    let mut logits = vec![0f32; if dev.is_cpu() { n * v } else { 0 }];
    let mut plain = || -> Result<()> {
        if dev.is_cpu() {
            crate::nn::gemm::matmul_into((n, v, o), &mut logits, v, false, &h_host, (o, 1), &w_host, (1, o));
            std::hint::black_box(&logits);
        } else {
            std::hint::black_box(h.as_tensor().detach().matmul(&wt)?);
        }
        Ok(())
    };
    let mut times = [vec![], vec![], vec![]];
    for round in 0..=OUTPUT_LAYER_ROUNDS {
        let t = [once(&mut fused)?, once(&mut as_trained)?, once(&mut plain)?];
        if round > 0 {
            times.iter_mut().zip(t).for_each(|(ts, t)| ts.push(t));
        }
    }
    let [fused, as_trained, plain] = times.map(|mut ts| {
        ts.sort_by(f64::total_cmp);
        percentile(&ts, 0.5)
    });
    let flops = 2.0 * (n * o * v) as f64;
    Ok(OutputLayerBench {
        preset: preset.into(),
        rows: n,
        hidden: o,
        vocab: v,
        gold_log_softmax_gflops: 3.0 * flops / fused / 1e9,
        gold_log_softmax_executed_gflops: 4.0 * flops / fused / 1e9,
        probs_kept: n * v * 4 <= crate::kernels::gold_log_softmax::KEEP_PROBS_BYTES,
        as_trained_gflops: 3.0 * flops / as_trained / 1e9,
        matmul_gflops: flops / plain / 1e9,
        naive_logits_mb: 2.0 * (n * v * 4) as f64 / (1024.0 * 1024.0),
    })
}

/// One LSTM layer's training step: forward over `[B, T, D]`, backward of the summed outputs and
/// an Adam update, for varattn's [`crate::kernels::lstm::Lstm`] and candle's stock
/// `candle_nn::rnn::lstm` with the same weights; milliseconds per step (median).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LstmBench {
    pub batch: usize,
    pub steps: usize,
    pub dim: usize,
    pub varattn_ms: f64,
    pub candle_stock_ms: f64,
    #[serde(default)]
    pub pytorch_ms: Option<f64>,
}

/// Times [`LstmBench`] (median of `reps` after one warm-up).
pub fn bench_lstm(b: usize, t: usize, d: usize, reps: usize, seed: u64, dev: &Device) -> Result<LstmBench> {
    use crate::kernels::lstm::{Lstm, LstmConfig};
    let dev = dev.clone();
    let mut rng = SeededRng::new(seed);
    let x = rng.uniform(&[b, t, d], &dev)?.affine(2.0, -1.0)?;
    let mut ps = ParamStore::new(seed, 0.1, &dev);
    let ours = Lstm::new(&mut ps, "l", LstmConfig { input: d, hidden: d, layers: 1, bidirectional: false, dropout: 0.0 })?;
    let vars = ps.named_vars();
    let map: std::collections::HashMap<String, Tensor> = vars
        .iter()
        .map(|(k, v)| {
            let name = k.rsplit('.').next().unwrap_or(k);
            let key = match name {
                "w_ih" => "weight_ih_l0",
                "w_hh" => "weight_hh_l0",
                "b_ih" => "bias_ih_l0",
                _ => "bias_hh_l0",
            };
            (key.to_string(), v.as_tensor().copy().expect("copy"))
        })
        .collect();
    let stock_vars: Vec<(String, candle_core::Var)> =
        map.iter().map(|(k, v)| Ok((k.clone(), candle_core::Var::from_tensor(v)?))).collect::<candle_core::Result<_>>()?;
    let vb = candle_nn::VarBuilder::from_tensors(
        stock_vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect(),
        DType::F32,
        &dev,
    );
    let stock = candle_nn::rnn::lstm(d, d, candle_nn::rnn::LSTMConfig::default(), vb)?;
    let mut opt_ours = Adam::new(vars, Default::default())?;
    let mut opt_stock = Adam::new(stock_vars, Default::default())?;
    let median = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        f()?;
        let mut ms = Vec::with_capacity(reps);
        for _ in 0..reps {
            dev.synchronize()?;
            let t0 = Instant::now();
            f()?;
            dev.synchronize()?;
            ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        Ok(ms[reps / 2])
    };
    let varattn_ms = median(&mut || {
        let (out, _) = ours.forward(&x, None, None)?;
        opt_ours.backward_step(&out.sum_all()?)?;
        Ok(())
    })?;
    let candle_stock_ms = median(&mut || {
        use candle_nn::rnn::RNN;
        let out = stock.states_to_tensor(&stock.seq(&x)?)?;
        opt_stock.backward_step(&out.sum_all()?)?;
        Ok(())
    })?;
    Ok(LstmBench { batch: b, steps: t, dim: d, varattn_ms, candle_stock_ms, pytorch_ms: None })
}

/// Fills `lstm.pytorch_ms` from the reference script's `lstm` mode (same sizes and threads).
pub fn run_pytorch_lstm(python: &Path, script: &Path, lstm: &mut LstmBench, reps: usize, threads: usize, dev: &Device) -> Result<()> {
    let out = std::process::Command::new(python)
        .arg(script)
        .args(["lstm", &lstm.batch.to_string(), &lstm.steps.to_string(), &lstm.dim.to_string(), &reps.to_string(), &threads.to_string()])
        .arg(torch_device(dev)?)
        .output()
        .with_context(|| format!("bench: running {} {} lstm", python.display(), script.display()))?;
    if !out.status.success() {
        bail!("bench: the PyTorch LSTM reference failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr))
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with('{')).context("bench: the PyTorch LSTM reference printed no result")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    lstm.pytorch_ms = v["pytorch_ms"].as_f64();
    Ok(())
}

/// PyTorch's name for a candle device: `cpu` or `cuda:N`.
pub fn torch_device(dev: &Device) -> Result<String> {
    match dev.location() {
        candle_core::DeviceLocation::Cpu => Ok("cpu".into()),
        candle_core::DeviceLocation::Cuda { gpu_id } => Ok(format!("cuda:{gpu_id}")),
        other => bail!("bench: the PyTorch reference has no counterpart of {other:?}"),
    }
}

/// The objectives bench/nmt_reference.py implements.
pub const REFERENCE_OBJECTIVES: [&str; 4] = ["soft", "exact", "var-enum", "var-sample"];

fn reference_rows(rows: &[String]) -> Vec<String> {
    rows.iter().filter(|r| REFERENCE_OBJECTIVES.contains(&r.as_str())).cloned().collect()
}

/// Runs the PyTorch reference (`bench/nmt_reference.py`) with `python` on the same sizes and
/// thread count; returns its rows.
pub fn run_pytorch(python: &Path, script: &Path, opts: &BenchOptions, preset: &str, threads: usize) -> Result<Vec<StepBench>> {
    let cfg = row_config(&opts.config_dir, "soft", preset)?;
    let m = &cfg.model;
    let batch = opts.batch.unwrap_or(cfg.train.batch);
    let args: Vec<(String, String)> = [
        ("vocab", cfg.data.bpe_vocab),
        ("emb", m.emb),
        ("enc-hidden", m.enc_hidden),
        ("enc-layers", m.enc_layers),
        ("dec-hidden", m.dec_hidden),
        ("dec-layers", m.dec_layers),
        ("attn-hidden", m.attn_hidden),
        ("out-hidden", m.out_hidden),
        ("inf-hidden", m.inf_hidden),
        ("batch", batch),
        ("src-len", opts.src_len),
        ("tgt-len", opts.tgt_len),
        ("steps", opts.steps),
        ("warmup", opts.warmup),
        ("threads", threads),
    ]
    .into_iter()
    .map(|(k, v)| (format!("--{k}"), v.to_string()))
    .chain([("--dropout".into(), m.dropout.to_string()), ("--init".into(), m.init.to_string())])
    .chain([("--lr".into(), cfg.train.lr.to_string()), ("--objectives".into(), reference_rows(&opts.rows).join(","))])
    .collect();
    if reference_rows(&opts.rows).is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = std::process::Command::new(python);
    cmd.arg(script).arg("--device").arg(torch_device(&opts.device)?);
    for (k, v) in &args {
        cmd.arg(k).arg(v);
    }
    let out = cmd.output().with_context(|| format!("bench: running {} {}", python.display(), script.display()))?;
    if !out.status.success() {
        bail!("bench: the PyTorch reference failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr))
    }
    let mut rows = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with('{')) {
        let mut r: StepBench = serde_json::from_str(line).with_context(|| format!("bench: PyTorch printed `{line}`"))?;
        r.preset = preset.into();
        rows.push(r);
    }
    Ok(rows)
}

/// One (preset, objective) over all rounds of an invocation.
///
/// Each round measures varattn's rows and then PyTorch's, so the two implementations of a round
/// ran back to back under the same load on a shared machine; the ratio is taken within each
/// round and the median of the rounds' ratios is reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub preset: String,
    pub objective: String,
    pub rounds: usize,
    /// Medians over the rounds.
    pub tokens_per_second: f64,
    pub step_ms_p50: f64,
    pub step_ms_p90: f64,
    /// Largest over the rounds.
    pub peak_rss_mb: f64,
    /// PyTorch's median tokens/s over the rounds, if it ran.
    pub pytorch_tokens_per_second: Option<f64>,
    /// varattn / PyTorch tokens/s of each round in which both ran.
    pub round_ratios: Vec<f64>,
    /// Median of `round_ratios`.
    pub ratio: Option<f64>,
}

/// Median (mean of the two middle values for an even count); NaN for none.
fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}

/// Groups the rounds' measurements by (preset, objective), in the order varattn measured them.
pub fn summarise(ours: &[StepBench], theirs: &[StepBench]) -> Vec<Summary> {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for r in ours {
        if !keys.contains(&(r.preset.as_str(), r.objective.as_str())) {
            keys.push((&r.preset, &r.objective));
        }
    }
    keys.into_iter()
        .map(|(preset, objective)| {
            let of = |rows: &[StepBench]| -> Vec<StepBench> {
                rows.iter().filter(|r| r.preset == preset && r.objective == objective).cloned().collect()
            };
            let (mine, other) = (of(ours), of(theirs));
            let round_ratios: Vec<f64> = mine
                .iter()
                .filter_map(|m| other.iter().find(|o| o.round == m.round).map(|o| m.tokens_per_second / o.tokens_per_second))
                .collect();
            Summary {
                preset: preset.into(),
                objective: objective.into(),
                rounds: mine.len(),
                tokens_per_second: median(mine.iter().map(|r| r.tokens_per_second).collect()),
                step_ms_p50: median(mine.iter().map(|r| r.step_ms_p50).collect()),
                step_ms_p90: median(mine.iter().map(|r| r.step_ms_p90).collect()),
                peak_rss_mb: mine.iter().map(|r| r.peak_rss_mb).fold(0.0, f64::max),
                pytorch_tokens_per_second: (!other.is_empty()).then(|| median(other.iter().map(|r| r.tokens_per_second).collect())),
                ratio: (!round_ratios.is_empty()).then(|| median(round_ratios.clone())),
                round_ratios,
            }
        })
        .collect()
}

/// The printed table: one line per (preset, objective), varattn beside PyTorch and their ratio
/// (medians over the rounds, see [`summarise`]; with more than one round, each round's ratio too).
pub fn table(ours: &[StepBench], theirs: &[StepBench]) -> String {
    let summaries = summarise(ours, theirs);
    let many = summaries.iter().any(|s| s.rounds > 1);
    let mut s = String::from(
        "| preset | objective | varattn tokens/s | step ms p50 / p90 | peak RSS MB | PyTorch tokens/s | ratio varattn/PyTorch |",
    );
    s += if many { " ratio in each round |\n|---|---|---|---|---|---|---|---|\n" } else { "\n|---|---|---|---|---|---|---|\n" };
    for r in &summaries {
        let tps = r.pytorch_tokens_per_second.map(|t| format!("{t:.0}")).unwrap_or_else(|| "–".into());
        let ratio = r.ratio.map(|t| format!("{t:.2}")).unwrap_or_else(|| "–".into());
        s += &format!(
            "| {} | {} | {:.0} | {:.0} / {:.0} | {:.0} | {} | {} |",
            r.preset, r.objective, r.tokens_per_second, r.step_ms_p50, r.step_ms_p90, r.peak_rss_mb, tps, ratio
        );
        if many {
            let each: Vec<String> = r.round_ratios.iter().map(|x| format!("{x:.2}")).collect();
            s += &format!(" {} |", if each.is_empty() { "–".into() } else { each.join(", ") });
        }
        s += "\n";
    }
    s
}

/// The whole report: the LSTM line, the step table ([`table`]), the output-layer table and the
/// run's settings line.
pub fn markdown(lstm_line: &str, ours: &[StepBench], theirs: &[StepBench], layers: &[OutputLayerBench], settings: &str) -> String {
    let layer_rows: String = layers
        .iter()
        .map(|l| {
            format!(
                "| {} | {} x {} x {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.0} | {} {:.1} ({:.2}) |\n",
                l.preset,
                l.rows,
                l.hidden,
                l.vocab,
                l.gold_log_softmax_gflops,
                l.gold_log_softmax_executed_gflops,
                l.matmul_gflops,
                l.gold_log_softmax_gflops / l.matmul_gflops,
                l.gold_log_softmax_executed_gflops / l.matmul_gflops,
                l.naive_logits_mb,
                if l.probs_kept { "kept:" } else { "recomputed:" },
                l.as_trained_gflops,
                l.as_trained_gflops / l.matmul_gflops
            )
        })
        .collect();
    format!(
        "{lstm_line}\n\n{}\nOutput layer of exact enumeration (fused gold log-softmax forward + backward, memory-lean path that recomputes the logits, vs a plain matmul, same run; last column: the path training takes at this size):\n\n\
         | preset | N x O x V | fused GFLOP/s useful (6NOV) | executed (8NOV) | plain matmul GFLOP/s | useful / matmul | executed / matmul | naive [N,V] logits + grad MB | as trained: probabilities kept or recomputed, GFLOP/s useful (/ matmul) |\n\
         |---|---|---|---|---|---|---|---|---|\n{layer_rows}\n{settings}\n",
        table(ours, theirs)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 6.0);
        assert_eq!(percentile(&v, 0.9), 10.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
    }

    #[test]
    fn synthetic_pairs_have_the_asked_lengths_and_no_special_ids() {
        let p = synthetic_pairs(5, 7, 4, 20, &mut SeededRng::new(1));
        assert!(p.iter().all(|x| x.src.len() == 7 && x.tgt.len() == 3));
        assert!(p.iter().flat_map(|x| x.src.iter().chain(&x.tgt)).all(|&i| (4..20).contains(&i)));
    }

    fn row(objective: &str, round: usize, tps: f64) -> StepBench {
        StepBench {
            implementation: "x".into(),
            preset: "cpu".into(),
            objective: objective.into(),
            steps: 1,
            tokens_per_step: 1,
            tokens_per_second: tps,
            step_ms_p50: 1e3 / tps,
            step_ms_p90: 1e3 / tps,
            peak_rss_mb: round as f64,
            round,
        }
    }

    #[test]
    fn rounds_are_paired_and_summarised_by_medians() {
        // round 1 ran while the machine was slow for both: its ratio is still 1.0, while the
        // ratio of the pooled medians would not be
        let ours = vec![row("soft", 0, 100.0), row("soft", 1, 50.0), row("soft", 2, 110.0), row("exact", 0, 10.0)];
        let theirs = vec![row("soft", 0, 100.0), row("soft", 1, 50.0), row("soft", 2, 100.0)];
        let s = summarise(&ours, &theirs);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].objective.as_str(), s[0].rounds), ("soft", 3));
        assert_eq!(s[0].tokens_per_second, 100.0);
        assert_eq!(s[0].pytorch_tokens_per_second, Some(100.0));
        assert_eq!(s[0].round_ratios, vec![1.0, 1.0, 1.1]);
        assert_eq!(s[0].ratio, Some(1.0));
        assert_eq!(s[0].peak_rss_mb, 2.0);
        assert_eq!((s[1].ratio, s[1].pytorch_tokens_per_second), (None, None));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        let t = table(&ours, &theirs);
        assert!(t.contains("| cpu | soft | 100 | 10 / 10 | 2 | 100 | 1.00 | 1.00, 1.00, 1.10 |"), "{t}");
    }
}
