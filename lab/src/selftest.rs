//! `varattn selftest`: the device check of issue 9.
//!
//! 1. Every distribution of [`crate::distributions`], the special-function ops of [`crate::special`], the
//!    fused output layer [`crate::kernels::gold_log_softmax`] and every objective of
//!    [`crate::objective`] (through the dispatch [`estimate`]) run forward and backward on the
//!    chosen device and on the CPU, with the same inputs and the same seeded noise (all noise is
//!    drawn on the host by [`SeededRng`] and moved to the device), in f32 and in f64. Each value
//!    and each gradient is compared by its normwise relative difference
//!    `max_i |d_i - c_i| / max_i |c_i|` (d on the device, c on the CPU; NaN and ±inf must sit at
//!    the same places), against [`tolerance`].
//! 2. A few training steps of NMT and VQA smoke rows on the device and on the CPU, from the same
//!    seed: the summed training objective and every parameter after the steps are compared.
//!
//! On `--device cpu` both sides run on the CPU: it still exercises every path end to end (and
//! must agree exactly), which is what the test suite runs.
use crate::distributions::{Bernoulli, Categorical, Dirichlet, Distribution, Gamma, KlDivergence, Positivity, RelaxedCategorical, Weibull};
use crate::objective::{estimate, held_out_metrics, AlignmentOutputs, Enumerable, EstimatorState, ObjectiveKind, Relaxed, Sampled};
use crate::rng::SeededRng;
use crate::special;
use anyhow::{bail, Context};
use candle_core::{DType, Device, Result, Tensor, Var, D};
use std::path::{Path, PathBuf};

/// The device named on the command line: `cpu`, `cuda` (ordinal 0) or `cuda:N`.
pub fn device_from_name(name: &str) -> anyhow::Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .with_context(|| format!("device `{name}`: expected cpu, cuda or cuda:N"))?,
                None => bail!("device `{name}`: expected cpu, cuda or cuda:N"),
            };
            if !candle_core::utils::cuda_is_available() {
                bail!("device `{name}`: this varattn was built without the `cuda` feature (see scripts/cuda-build.sh)")
            }
            Device::new_cuda(ordinal).with_context(|| format!("opening CUDA device {ordinal}"))
        }
    }
}

/// The stated tolerance on the normwise relative difference, per dtype: 1e-4 for f32 (reductions
/// in another order, single-precision exp/log), 1e-9 for f64.
pub fn tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-9,
        _ => 1e-4,
    }
}

/// Where one case runs.
pub struct Ctx {
    pub device: Device,
    pub dtype: DType,
}

impl Ctx {
    /// U(lo, hi) drawn on the host, in the context's dtype, on its device.
    fn uniform(&self, rng: &mut SeededRng, dims: &[usize], lo: f64, hi: f64) -> Result<Tensor> {
        rng.uniform(dims, &Device::Cpu)?.affine(hi - lo, lo)?.to_dtype(self.dtype)?.to_device(&self.device)
    }
    fn var(&self, rng: &mut SeededRng, dims: &[usize], lo: f64, hi: f64) -> Result<Var> {
        Var::from_tensor(&self.uniform(rng, dims, lo, hi)?)
    }
    /// A tensor from host values.
    fn tensor(&self, values: &[f64], dims: &[usize]) -> Result<Tensor> {
        Tensor::from_slice(values, dims, &Device::Cpu)?.to_dtype(self.dtype)?.to_device(&self.device)
    }
}

/// What a case produced: named forward values, a scalar to differentiate and the parameters
/// whose gradients are compared.
#[derive(Default)]
pub struct Probe {
    pub values: Vec<(String, Tensor)>,
    pub loss: Option<Tensor>,
    pub params: Vec<(String, Var)>,
}

impl Probe {
    fn value(&mut self, name: &str, t: Tensor) {
        self.values.push((name.to_string(), t));
    }
    fn param(&mut self, name: &str, v: &Var) {
        self.params.push((name.to_string(), v.clone()));
    }
    /// Add Σ w ⊙ t to the loss, w fixed random weights (so that no gradient can cancel by symmetry).
    fn add_loss(&mut self, ctx: &Ctx, rng: &mut SeededRng, t: &Tensor) -> Result<()> {
        let w = ctx.uniform(rng, t.dims(), 0.5, 1.5)?;
        let term = t.mul(&w)?.sum_all()?;
        self.loss = Some(match self.loss.take() {
            Some(l) => (l + term)?,
            None => term,
        });
        Ok(())
    }
}

/// One case: builds its inputs from the seeded generator, runs forward, returns a [`Probe`].
pub type CaseFn = Box<dyn Fn(&Ctx, &mut SeededRng) -> Result<Probe>>;

/// Every case: the special ops, each distribution, the fused output layer, each objective.
pub fn cases() -> Vec<(String, CaseFn)> {
    let mut v: Vec<(String, CaseFn)> = vec![
        ("special ops".into(), Box::new(case_special)),
        ("implicit gamma".into(), Box::new(case_implicit_gamma)),
        ("Categorical".into(), Box::new(case_categorical)),
        ("Dirichlet".into(), Box::new(case_dirichlet)),
        ("Gamma".into(), Box::new(case_gamma)),
        ("Weibull".into(), Box::new(case_weibull)),
        ("RelaxedCategorical".into(), Box::new(case_relaxed)),
        ("Bernoulli".into(), Box::new(case_bernoulli)),
        ("gold_log_softmax".into(), Box::new(case_gold_log_softmax)),
    ];
    for (name, kind) in ObjectiveKind::all_paper_rows() {
        v.push((format!("objective {name}"), Box::new(move |c: &Ctx, r: &mut SeededRng| case_objective(kind, c, r))));
    }
    v
}

fn case_special(ctx: &Ctx, rng: &mut SeededRng) -> Result<Probe> {
    let mut p = Probe::default();
    // positive arguments across every branch (series near 1 and 2, recurrence, asymptotic), and
    // a transposed (strided) view so that the kernels' layout handling is exercised
    let pos = ctx.var(rng, &[8, 6], 0.05, 30.0)?;
    let x = pos.as_tensor().t()?;
    p.param("x", &pos);
    for (name, y) in [
        ("lgamma", special::lgamma(&x)?),
        ("digamma", special::digamma(&x)?),
        ("trigamma", special::trigamma(&x)?),
        ("softplus", special::softplus(&(&x - 15.0)?)?),
        ("log1p", special::log1p(&(&x - 0.04)?)?),
    ] {
        p.add_loss(ctx, rng, &y)?;
        p.value(name, y);
    }
    p.value("tetragamma", special::polygamma(2, &x)?);
    // negative non-integers (reflection), poles and large arguments, forward only
    let edge = ctx.tensor(&[-2.5, -0.3, -7.75, 0.0, -3.0, 1e-7, 1.4616321449683622, 1e6, 2.0, 1.0], &[10])?;
    p.value("lgamma edge", special::lgamma(&edge)?);
    p.value("digamma edge", special::digamma(&edge)?);
    p.value("trigamma edge", special::trigamma(&edge)?);
    p.value("tetragamma edge", special::polygamma(2, &edge)?);
    let wide = ctx.tensor(&[-800.0, -30.0, -20.5, 0.0, 19.5, 25.0, 800.0], &[7])?;
    p.value("softplus edge", special::softplus(&wide)?);
    Ok(p)
}

fn case_implicit_gamma(ctx: &Ctx, rng: &mut SeededRng) -> Result<Probe> {
    let mut p = Probe::default();
    // concentrations across the three branches of the gradient (x < 0.8, alpha > 8, rational fit)
    let alpha = ctx.var(rng, &[4, 16], 0.05, 20.0)?;
    p.param("alpha", &alpha);
    let z = special::gamma_rsample(alpha.as_tensor(), rng)?;
    p.add_loss(ctx, rng, &z)?;
    p.value("z", z.clone());
    p.value("dz/dalpha", special::ops::gamma_sample_grad(alpha.as_tensor(), &z.detach())?);
    // strided inputs
    let at = alpha.as_tensor().t()?;
    p.value("dz/dalpha strided", special::ops::gamma_sample_grad(&at, &z.detach().t()?)?);
    Ok(p)
}

/// Scores `[B, T, S]` and a position mask with the last position of batch row 1 padded.
fn scores_and_mask(ctx: &Ctx, rng: &mut SeededRng) -> Result<(Var, Var, Tensor)> {
    let (b, t, s) = (2, 3, 5);
    let prior = ctx.var(rng, &[b, t, s], -2.0, 2.0)?;
    let post = ctx.var(rng, &[b, t, s], -2.0, 2.0)?;
    let mut m = vec![1.0; b * t * s];
    for step in 0..t {
        m[(t + step) * s + s - 1] = 0.0;
    }
    Ok((prior, post, ctx.tensor(&m, &[b, t, s])?))
}

fn case_categorical(ctx: &Ctx, rng: &mut SeededRng) -> Result<Probe> {
    let mut p = Probe::default();
    let (sp, sq, mask) = scores_and_mask(ctx, rng)?;
    p.param("prior scores", &sp);
    p.param("posterior scores", &sq);
    let prior = Categorical::from_logits(sp.as_tensor(), Some(&mask))?;
    let q = Categorical::from_logits(sq.as_tensor(), Some(&mask))?;
    let z = q.sample_n(4, rng)?;
    let lp = q.log_prob(&z)?;
    let (top, top_lp) = prior.top_k(3)?;
    for (name, y) in [("entropy", prior.entropy()?), ("mean", prior.mean()?), ("kl", q.kl(&prior)?), ("log_prob", lp), ("top-k log p", top_lp)] {
        p.add_loss(ctx, rng, &y)?;
        p.value(name, y);
    }
    p.value("samples", z);
    p.value("top-k", top);
    Ok(p)
}

fn case_dirichlet(ctx: &Ctx, rng: &mut SeededRng) -> Result<Probe> {
    let mut p = Probe::default();
    let (sp, sq, mask) = scores_and_mask(ctx, rng)?;
    p.param("prior scores", &sp);
    p.param("posterior scores", &sq);
    for (tag, pos) in [("softplus", Positivity::Softplus), ("exp", Positivity::Exp)] {
        let prior = Dirichlet::from_scores(sp.as_tensor(), pos, Some(&mask))?;
        let q = Dirichlet::from_scores(sq.as_tensor(), pos, Some(&mask))?;
        let z = q.rsample(rng)?;
        let lp = prior.log_prob(&z)?;
        for (name, y) in [("rsample", z), ("log_prob", lp), ("entropy", q.entropy()?), ("mean", q.mean()?), ("kl", q.kl(&prior)?)] {
            p.add_loss(ctx, rng, &y)?;
            p.value(&format!("{tag} {name}"), y);
        }
    }
    Ok(p)
}

fn case_gamma(ctx: &Ctx, rng: &mut SeededRng) -> Result<Probe> {
    let mut p = Probe::default();
    let (a1, b1, a2, b2) = (ctx.var(rng, &[12], 0.2, 6.0)?, ctx.var(rng, &[12], 0.5, 3.0)?, ctx.var(rng, &[12], 0.2, 6.0)?, ctx.var(rng, &[12], 0.5, 3.0)?);
    for (n, v) in [("alpha q", &a1), ("beta q", &b1), ("alpha p", &a2), ("beta p", &b2)] {
        p.param(n, v);
    }
    let q = Gamma::new(a1.as_tensor().clone(), b1.as_tensor().clone());
    let prior = Gamma::new(a2.as_tensor().clone(), b2.as_tensor().clone());
    let z = q.rsample(rng)?;
    let lp = prior.log_prob(&z)?;
    for (name, y) in [("rsample", z), ("log_prob", lp), ("entropy", q.entropy()?), ("mean", q.mean()?), ("kl", q.kl(&prior)?)] {
        p.add_loss(ctx, rng, &y)?;
        p.value(name, y);
    }
    Ok(p)
}

fn case_weibull(ctx: &Ctx, rng: &mut SeededRng) -> Result<Probe> {
    let mut p = Probe::default();
    let (k, lam, a, b) = (ctx.var(rng, &[12], 0.5, 5.0)?, ctx.var(rng, &[12], 0.3, 3.0)?, ctx.var(rng, &[12], 0.2, 6.0)?, ctx.var(rng, &[12], 0.5, 3.0)?);
    for (n, v) in [("k", &k), ("lambda", &lam), ("alpha", &a), ("beta", &b)] {
        p.param(n, v);
    }
    let w = Weibull::new(k.as_tensor().clone(), lam.as_tensor().clone());
    let prior = Gamma::new(a.as_tensor().clone(), b.as_tensor().clone());
    let z = w.rsample(rng)?;
    let lp = w.log_prob(&z.detach())?;
    let by_mean = Weibull::with_mean(2.0, lam.as_tensor())?.mean()?;
    for (name, y) in [("rsample", z), ("log_prob", lp), ("entropy", w.entropy()?), ("mean", w.mean()?), ("kl to gamma", w.kl(&prior)?), ("with_mean", by_mean)] {
        p.add_loss(ctx, rng, &y)?;
        p.value(name, y);
    }
    Ok(p)
}

fn case_relaxed(ctx: &Ctx, rng: &mut SeededRng) -> Result<Probe> {
    let mut p = Probe::default();
    let (sq, _, mask) = scores_and_mask(ctx, rng)?;
    p.param("scores", &sq);
    let q = RelaxedCategorical::from_logits(sq.as_tensor(), 0.5, Some(&mask))?;
    let y = q.rsample(rng)?;
    let lp = q.log_prob(&y.detach())?;
    let st = q.rsample_straight_through(rng)?;
    let h = q.entropy_mc(3, rng)?;
    for (name, v) in [("rsample", y), ("log_prob", lp), ("straight-through", st), ("entropy_mc", h)] {
        p.add_loss(ctx, rng, &v)?;
        p.value(name, v);
    }
    Ok(p)
}

fn case_bernoulli(ctx: &Ctx, rng: &mut SeededRng) -> Result<Probe> {
    let mut p = Probe::default();
    let (lq, lp) = (ctx.var(rng, &[3, 7], -4.0, 4.0)?, ctx.var(rng, &[3, 7], -4.0, 4.0)?);
    p.param("logits q", &lq);
    p.param("logits p", &lp);
    let q = Bernoulli::from_logits(lq.as_tensor().clone());
    let prior = Bernoulli::from_logits(lp.as_tensor().clone());
    let b = q.sample(rng)?;
    let lpb = q.log_prob(&b)?;
    for (name, y) in [("log_prob", lpb), ("entropy", q.entropy()?), ("mean", q.mean()?), ("kl", q.kl(&prior)?)] {
        p.add_loss(ctx, rng, &y)?;
        p.value(name, y);
    }
    p.value("sample", b);
    Ok(p)
}

fn case_gold_log_softmax(ctx: &Ctx, rng: &mut SeededRng) -> Result<Probe> {
    let mut p = Probe::default();
    let (n, d, v) = (37, 6, 29);
    let (h, w, b) = (ctx.var(rng, &[n, d], -1.0, 1.0)?, ctx.var(rng, &[v, d], -1.0, 1.0)?, ctx.var(rng, &[v], -1.0, 1.0)?);
    p.param("h", &h);
    p.param("W", &w);
    p.param("b", &b);
    let gold: Vec<u32> = (0..n).map(|_| rng.next_index(v) as u32).collect();
    let gold = Tensor::new(gold.as_slice(), &ctx.device)?;
    let l = crate::kernels::gold_log_softmax(h.as_tensor(), w.as_tensor(), b.as_tensor(), &gold)?;
    p.add_loss(ctx, rng, &l)?;
    p.value("log p(gold)", l);
    Ok(p)
}

/// A small alignment model given directly: positions carry embeddings e_i `[B, S, d]`, the output
/// layer is W `[V, d]`, and log f(x, c) = log softmax(W c)[y_t] for a context c (c = e_i for a
/// hard alignment, c = Σ_i w_i e_i for a relaxed one).
struct ToyAlignment {
    prior: Tensor,
    post: Tensor,
    pmask: Tensor,
    smask: Tensor,
    emb: Tensor,
    out_w: Tensor,
    gold: Tensor,
}

impl ToyAlignment {
    /// W c for contexts `[..., d]`: `[..., V]`.
    fn logits(&self, c: &Tensor) -> Result<Tensor> {
        let d = c.dim(D::Minus1)?;
        let mut dims = c.dims().to_vec();
        let flat = c.contiguous()?.reshape(((), d))?.matmul(&self.out_w.t()?)?;
        *dims.last_mut().unwrap() = self.out_w.dim(0)?;
        flat.reshape(dims)
    }

    /// log softmax(W c)[y] for contexts `[..., B, T, d]`.
    fn log_f_context(&self, c: &Tensor) -> Result<Tensor> {
        let logits = self.logits(c)?;
        let lsm = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let mut dims = lsm.dims().to_vec();
        *dims.last_mut().unwrap() = 1;
        let idx = self.gold.unsqueeze(D::Minus1)?.broadcast_as(dims)?.contiguous()?;
        lsm.contiguous()?.gather(&idx, D::Minus1)?.squeeze(D::Minus1)
    }
}

impl AlignmentOutputs for ToyAlignment {
    fn prior_scores(&self) -> &Tensor {
        &self.prior
    }
    fn posterior_scores(&self) -> Option<&Tensor> {
        Some(&self.post)
    }
    fn position_mask(&self) -> Option<&Tensor> {
        Some(&self.pmask)
    }
    fn step_mask(&self) -> Option<&Tensor> {
        Some(&self.smask)
    }
    varattn::every_likelihood_capability!();
}

impl Enumerable for ToyAlignment {
    fn log_f_all(&self) -> Result<Tensor> {
        let (b, t, s) = self.prior.dims3()?;
        let d = self.emb.dim(D::Minus1)?;
        let logits = self.logits(&self.emb.unsqueeze(1)?.broadcast_as((b, t, s, d))?)?;
        let lsm = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let idx = self.gold.unsqueeze(2)?.unsqueeze(3)?.broadcast_as((b, t, s, 1))?.contiguous()?;
        lsm.contiguous()?.gather(&idx, D::Minus1)?.squeeze(D::Minus1)
    }
}

impl Sampled for ToyAlignment {
    fn log_f_at(&self, z: &Tensor) -> Result<Tensor> {
        let all = self.log_f_all()?;
        let mut dims = z.dims().to_vec();
        dims.push(all.dim(D::Minus1)?);
        let all = all.broadcast_as(dims)?.contiguous()?;
        all.gather(&z.unsqueeze(D::Minus1)?.contiguous()?, D::Minus1)?.squeeze(D::Minus1)
    }
}

impl Relaxed for ToyAlignment {
    fn log_f_relaxed(&self, w: &Tensor) -> Result<Tensor> {
        // c = Σ_i w_i e_i: w [..., B, T, S] times e [B, S, d] broadcast over the leading dims
        let rank = w.rank();
        let mut dims = w.dims()[..rank - 3].to_vec();
        dims.extend_from_slice(self.emb.dims());
        let emb = self.emb.broadcast_as(dims)?.contiguous()?;
        self.log_f_context(&w.contiguous()?.matmul(&emb)?)
    }
    fn log_f_soft(&self) -> Result<Tensor> {
        let p = Categorical::from_logits(&self.prior, Some(&self.pmask))?.probs()?;
        self.log_f_relaxed(&p)
    }
}

/// One objective through the dispatch [`estimate`] on [`ToyAlignment`] outputs with both masks:
/// loss, metrics and held-out metrics, gradients of every input.
fn case_objective(kind: ObjectiveKind, ctx: &Ctx, rng: &mut SeededRng) -> Result<Probe> {
    let mut p = Probe::default();
    let (sp, sq, pmask) = scores_and_mask(ctx, rng)?;
    let (b, t, s) = sp.as_tensor().dims3()?;
    let (d, v) = (4, 6);
    let emb = ctx.var(rng, &[b, s, d], -1.5, 1.5)?;
    let out_w = ctx.var(rng, &[v, d], -1.5, 1.5)?;
    let gold: Vec<u32> = (0..b * t).map(|_| rng.next_index(v) as u32).collect();
    let gold = Tensor::from_vec(gold, (b, t), &ctx.device)?;
    let mut sm = vec![1.0; b * t];
    sm[t - 1] = 0.0; // the last step of batch row 0 is padding
    let smask = ctx.tensor(&sm, &[b, t])?;
    for (n, var) in [("prior scores", &sp), ("posterior scores", &sq), ("embeddings", &emb), ("output W", &out_w)] {
        p.param(n, var);
    }
    let out = ToyAlignment {
        prior: sp.as_tensor().clone(),
        post: sq.as_tensor().clone(),
        pmask,
        smask,
        emb: emb.as_tensor().clone(),
        out_w: out_w.as_tensor().clone(),
        gold,
    };
    let est = estimate(&kind, &out, &mut EstimatorState::default(), rng)?;
    let m = &est.metrics;
    let dev = &ctx.device;
    let num = |x: f64| Tensor::new(x, dev);
    p.value("objective sum", num(m.objective_sum)?);
    p.value("prior entropy sum", num(m.prior_entropy_sum)?);
    if let Some(x) = m.nll_sum {
        p.value("nll sum", num(x)?);
    }
    if let Some(x) = m.kl_sum {
        p.value("kl sum", num(x)?);
    }
    let held = held_out_metrics(&kind, &out)?;
    p.value("held-out nll", num(held.nll_sum.unwrap_or(f64::NAN))?);
    p.value("loss", est.loss.clone());
    p.loss = Some(est.loss);
    Ok(p)
}

/// Named host vectors of one run of a case: `value <name>` and `grad <param>`.
fn run_case(f: &CaseFn, ctx: &Ctx, seed: u64) -> Result<Vec<(String, Vec<f64>)>> {
    let mut rng = SeededRng::new(seed);
    let probe = f(ctx, &mut rng)?;
    let host = |t: &Tensor| -> Result<Vec<f64>> { t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>() };
    let mut out = Vec::new();
    for (n, t) in &probe.values {
        out.push((format!("value {n}"), host(t)?));
    }
    if let Some(loss) = &probe.loss {
        let grads = loss.backward()?;
        for (n, v) in &probe.params {
            let g = match grads.get(v.as_tensor()) {
                Some(g) => host(g)?,
                None => vec![0.0; v.as_tensor().elem_count()],
            };
            out.push((format!("grad {n}"), g));
        }
    }
    Ok(out)
}

/// Normwise relative difference `max |a - b| / max |b|` (0 when both are all zero); +inf when NaN
/// or infinities are not at the same places or the lengths differ.
pub fn normwise_difference(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let mut diff: f64 = 0.0;
    let mut scale: f64 = 0.0;
    for (&x, &y) in a.iter().zip(b) {
        if x.is_nan() || y.is_nan() || x.is_infinite() || y.is_infinite() {
            let same = (x.is_nan() && y.is_nan()) || x == y;
            if !same {
                return f64::INFINITY;
            }
            continue;
        }
        diff = diff.max((x - y).abs());
        scale = scale.max(y.abs());
    }
    if diff == 0.0 {
        0.0
    } else if scale == 0.0 {
        f64::INFINITY
    } else {
        diff / scale
    }
}

/// One compared quantity.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub case: String,
    pub dtype: DType,
    pub quantity: String,
    pub elements: usize,
    pub difference: f64,
    pub tolerance: f64,
}

impl Comparison {
    pub fn ok(&self) -> bool {
        self.difference <= self.tolerance
    }
}

/// Run every case on `device` and on the CPU (f32 and f64) and compare them.
pub fn compare_with_cpu(device: &Device, seed: u64) -> anyhow::Result<Vec<Comparison>> {
    let mut rows = Vec::new();
    for dtype in [DType::F32, DType::F64] {
        for (name, f) in cases() {
            let on = |dev: &Device| {
                run_case(&f, &Ctx { device: dev.clone(), dtype }, seed)
                    .with_context(|| format!("{name} ({dtype:?}) on {dev:?}"))
            };
            let reference = on(&Device::Cpu)?;
            let got = on(device)?;
            if reference.len() != got.len() {
                bail!("{name} ({dtype:?}): {} quantities on the CPU, {} on the device", reference.len(), got.len())
            }
            for ((qn, c), (_, d)) in reference.iter().zip(&got) {
                rows.push(Comparison {
                    case: name.clone(),
                    dtype,
                    quantity: qn.clone(),
                    elements: c.len(),
                    difference: normwise_difference(d, c),
                    tolerance: tolerance(dtype),
                });
            }
        }
    }
    Ok(rows)
}

/// The comparison table as Markdown.
pub fn comparison_table(rows: &[Comparison]) -> String {
    let mut s = String::from("| case | dtype | quantity | n | rel. difference | tolerance | |\n|---|---|---|---:|---:|---:|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {:?} | {} | {} | {:.2e} | {:.0e} | {} |\n",
            r.case,
            r.dtype,
            r.quantity,
            r.elements,
            r.difference,
            r.tolerance,
            if r.ok() { "ok" } else { "MISMATCH" }
        ));
    }
    s
}

/// A few training steps of one smoke row on the device against the CPU.
#[derive(Debug, Clone)]
pub struct TrainComparison {
    pub task: String,
    pub row: String,
    pub steps: usize,
    /// Σ of the training objective over the steps (nats).
    pub objective_cpu: f64,
    pub objective_device: f64,
    /// ‖θ_device - θ_cpu‖₂ / ‖θ_cpu‖₂ over all parameters after the steps.
    pub parameter_difference: f64,
    /// The parameter tensor with the largest normwise relative difference, and that difference
    /// (reported, not tested: see [`TRAIN_PARAMETER_TOLERANCE`]).
    pub worst_parameter: String,
    pub worst_parameter_difference: f64,
    pub seconds_cpu: f64,
    pub seconds_device: f64,
}

/// Tolerance on the relative difference of the summed training objective (f32 training; the
/// first step's objective is computed before any update).
pub const TRAIN_OBJECTIVE_TOLERANCE: f64 = 1e-3;

/// Tolerance on the relative L2 difference of all parameters after the steps. Adam's first steps
/// move each parameter by about lr · sign(g), so a gradient element that is zero up to rounding
/// (|g| ~ 1e-7) can flip its update between devices: a few such elements give ~1e-3; wrong
/// gradients give ~lr · steps / |θ| ~ 1e-1.
pub const TRAIN_PARAMETER_TOLERANCE: f64 = 2e-2;

impl TrainComparison {
    pub fn objective_difference(&self) -> f64 {
        normwise_difference(&[self.objective_device], &[self.objective_cpu])
    }
    pub fn ok(&self) -> bool {
        self.objective_difference() <= TRAIN_OBJECTIVE_TOLERANCE && self.parameter_difference <= TRAIN_PARAMETER_TOLERANCE
    }
}

/// The smoke rows the selftest trains: latent enumeration, sampling, and the Dirichlet row
/// (gamma kernels), for both tasks.
pub const TRAIN_ROWS: [(&str, &str); 4] = [("nmt", "var-enum"), ("nmt", "relaxed-dirichlet"), ("vqa", "hard-sample"), ("vqa", "relaxed-dirichlet")];

/// Is the data a task needs already in `cache` (so that nothing is downloaded)?
pub fn data_present(task: &str, cache: &Path) -> bool {
    match task {
        "nmt" => {
            cache.join("trans-de-en").join("usr/share/trans/de-en").exists()
                || std::fs::read_dir(cache).map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("trans-de-en_"))).unwrap_or(false)
        }
        "vqa" => cache.join(crate::data::easy_vqa::EASY_VQA_WHEEL).exists(),
        _ => false,
    }
}

fn train_steps((task, row): (&str, &str), configs: &Path, cache: &Path, device: &Device, steps: usize, seed: u64, out: &Path) -> anyhow::Result<(f64, PathBuf, f64)> {
    use crate::config::load_with_preset;
    use crate::experiments::RunOptions;
    let config = configs.join(task).join(format!("{row}.toml"));
    let opts = RunOptions {
        preset: "smoke".into(),
        seed,
        out_dir: out.to_path_buf(),
        cache_dir: cache.to_path_buf(),
        stop_after_steps: Some(steps),
        device: device.clone(),
        progress: false,
    };
    let start = std::time::Instant::now();
    let finished = if task == "nmt" {
        let (mut cfg, merged): (crate::experiments::nmt::NmtConfig, toml::Value) = load_with_preset(&config, "smoke")?;
        cfg.train.epochs = cfg.train.epochs.max(steps); // every epoch has at least one step
        crate::experiments::nmt::run(&cfg, &merged, &opts)?.is_some()
    } else {
        let (mut cfg, merged): (crate::experiments::vqa::VqaConfig, toml::Value) = load_with_preset(&config, "smoke")?;
        cfg.train.epochs = cfg.train.epochs.max(steps);
        crate::experiments::vqa::run(&cfg, &merged, &opts)?.is_some()
    };
    if finished {
        bail!("{}: finished before {steps} steps", config.display())
    }
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("last.json"))?)?;
    let objective = state["epoch_objective_sum"].as_f64().context("last.json: no epoch_objective_sum")?;
    Ok((objective, out.join("last.safetensors"), start.elapsed().as_secs_f64()))
}

/// Train each of [`TRAIN_ROWS`] for `steps` steps on `device` and on the CPU (same seed) and
/// compare. Rows whose data is not in `cache` are skipped and named in the second list.
pub fn compare_training(device: &Device, configs: &Path, cache: &Path, steps: usize, seed: u64, work: &Path) -> anyhow::Result<(Vec<TrainComparison>, Vec<String>)> {
    let (mut done, mut skipped) = (Vec::new(), Vec::new());
    for (task, row) in TRAIN_ROWS {
        if !data_present(task, cache) {
            skipped.push(format!("{task}/{row}: no {task} data in {} (run `varattn data prepare {}` with --cache there first)", cache.display(), if task == "nmt" { "ding-de-en" } else { "easy-vqa" }));
            continue;
        }
        let dir = work.join(format!("{task}-{row}"));
        let _ = std::fs::remove_dir_all(&dir);
        let (oc, pc, tc) = train_steps((task, row), configs, cache, &Device::Cpu, steps, seed, &dir.join("cpu"))?;
        let (od, pd, td) = train_steps((task, row), configs, cache, device, steps, seed, &dir.join("device"))
            .with_context(|| format!("{task}/{row} on {device:?}"))?;
        let a = candle_core::safetensors::load(&pc, &Device::Cpu)?;
        let b = candle_core::safetensors::load(&pd, &Device::Cpu)?;
        let host = |t: &Tensor| -> Result<Vec<f64>> { t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>() };
        let (mut worst, mut worst_name) = (0.0f64, String::new());
        let (mut diff2, mut norm2) = (0.0f64, 0.0f64);
        let mut names: Vec<&String> = a.keys().filter(|n| n.starts_with("param.")).collect();
        names.sort();
        for name in names {
            let (c, d) = (host(&a[name])?, host(b.get(name).with_context(|| format!("{}: no {name}", pd.display()))?)?);
            diff2 += c.iter().zip(&d).map(|(x, y)| (x - y) * (x - y)).sum::<f64>();
            norm2 += c.iter().map(|x| x * x).sum::<f64>();
            let nd = normwise_difference(&d, &c);
            if nd > worst || worst_name.is_empty() {
                worst = nd;
                worst_name = name.trim_start_matches("param.").to_string();
            }
        }
        let parameter_difference = if diff2 == 0.0 { 0.0 } else { (diff2 / norm2).sqrt() };
        done.push(TrainComparison {
            task: task.into(),
            row: row.into(),
            steps,
            objective_cpu: oc,
            objective_device: od,
            parameter_difference,
            worst_parameter: worst_name,
            worst_parameter_difference: worst,
            seconds_cpu: tc,
            seconds_device: td,
        });
    }
    Ok((done, skipped))
}

/// The training comparison as Markdown.
pub fn training_table(rows: &[TrainComparison]) -> String {
    let mut s = String::from("| task | row | steps | objective (CPU) | objective (device) | rel. diff | parameters rel. L2 diff | worst tensor (rel. diff) | CPU s | device s | |\n|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {:.6} | {:.6} | {:.2e} | {:.2e} | {} ({:.2e}) | {:.2} | {:.2} | {} |\n",
            r.task,
            r.row,
            r.steps,
            r.objective_cpu,
            r.objective_device,
            r.objective_difference(),
            r.parameter_difference,
            r.worst_parameter,
            r.worst_parameter_difference,
            r.seconds_cpu,
            r.seconds_device,
            if r.ok() { "ok" } else { "MISMATCH" }
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normwise_difference_flags_what_it_should() {
        assert_eq!(normwise_difference(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        assert!((normwise_difference(&[1.0, 2.001], &[1.0, 2.0]) - 5e-4).abs() < 1e-12);
        assert_eq!(normwise_difference(&[f64::NAN, 1.0], &[f64::NAN, 1.0]), 0.0);
        assert_eq!(normwise_difference(&[f64::NAN, 1.0], &[0.0, 1.0]), f64::INFINITY);
        assert_eq!(normwise_difference(&[f64::INFINITY], &[f64::NEG_INFINITY]), f64::INFINITY);
        assert_eq!(normwise_difference(&[1e-30], &[0.0]), f64::INFINITY);
        assert_eq!(normwise_difference(&[1.0], &[1.0, 2.0]), f64::INFINITY);
    }

    #[test]
    fn device_names_parse() {
        assert!(matches!(device_from_name("cpu"), Ok(Device::Cpu)));
        assert!(device_from_name("tpu").is_err());
        assert!(device_from_name("cuda:x").is_err());
        #[cfg(not(feature = "cuda"))]
        assert!(device_from_name("cuda").unwrap_err().to_string().contains("without the `cuda` feature"));
    }
}
