//! Adam (Kingma & Ba 2015) with decoupled weight decay and global-norm gradient clipping, whose
//! moment estimates and step count can be saved and restored (candle's `AdamW` keeps them
//! private, so a resumed run could not continue exactly).
//!
//! For each parameter θ with gradient g (after clipping g ← g · min(1, c / ‖g‖₂) over all
//! parameters):
//! m ← β₁ m + (1 - β₁) g,  v ← β₂ v + (1 - β₂) g²,
//! θ ← θ - lr · (m / (1 - β₁ᵗ)) / (√(v / (1 - β₂ᵗ)) + ε) - lr · λ θ.
//!
//! ```
//! use candle_core::{Device, Var};
//! use varattn_lab::train::{Adam, AdamConfig};
//! let w = Var::new(&[3.0f32, -2.0], &Device::Cpu)?;
//! let mut opt = Adam::new(vec![("w".into(), w.clone())], AdamConfig { lr: 0.1, ..Default::default() })?;
//! for _ in 0..200 {
//!     let loss = w.as_tensor().sqr()?.sum_all()?;
//!     opt.backward_step(&loss)?;
//! }
//! assert!(w.as_tensor().sqr()?.sum_all()?.to_scalar::<f32>()? < 1e-3);
//! # Ok::<(), candle_core::Error>(())
//! ```
//!
//! On the CPU the update of each f32/f64 parameter is one pass over its values, in place (the
//! moments live in host vectors), with the same floating-point operations in the same order as
//! the composed tensor expression used on other devices, so both give bit-identical parameters
//! (tested); the composed form allocates about fifteen temporaries per parameter and step.
use candle_core::backprop::GradStore;
use candle_core::{bail, CpuStorage, DType, Device, InplaceOp1, Layout, Result, Storage, Tensor, Var, WithDType};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay λ (0 = plain Adam, as in the papers).
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value (the papers use 5).
    pub max_grad_norm: Option<f64>,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self { lr: 3e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, max_grad_norm: None }
    }
}

/// The first and second moment estimates (m, v) of one parameter: host vectors, updated in
/// place, for an f32/f64 parameter on the CPU; tensors otherwise.
enum Moments {
    F32 { m: Vec<f32>, v: Vec<f32> },
    F64 { m: Vec<f64>, v: Vec<f64> },
    Tensors { m: Tensor, v: Tensor },
}

impl Moments {
    /// Zero moments for `p`, on the host when `host` and `p` is an f32/f64 CPU tensor.
    fn zeros(p: &Tensor, host: bool) -> Result<Self> {
        let n = p.elem_count();
        Ok(match (host, p.device(), p.dtype()) {
            (true, Device::Cpu, DType::F32) => Self::F32 { m: vec![0.0; n], v: vec![0.0; n] },
            (true, Device::Cpu, DType::F64) => Self::F64 { m: vec![0.0; n], v: vec![0.0; n] },
            _ => Self::Tensors { m: p.zeros_like()?, v: p.zeros_like()? },
        })
    }

    /// (m, v) as tensors of `p`'s shape.
    fn tensors(&self, p: &Tensor) -> Result<(Tensor, Tensor)> {
        let (cpu, shape) = (&Device::Cpu, p.shape());
        Ok(match self {
            Self::F32 { m, v } => (Tensor::from_slice(m, shape, cpu)?, Tensor::from_slice(v, shape, cpu)?),
            Self::F64 { m, v } => (Tensor::from_slice(m, shape, cpu)?, Tensor::from_slice(v, shape, cpu)?),
            Self::Tensors { m, v } => (m.clone(), v.clone()),
        })
    }

    /// Replace (m, v) by tensors already converted to `p`'s dtype and device.
    fn set(&mut self, m_new: &Tensor, v_new: &Tensor) -> Result<()> {
        match self {
            Self::F32 { m, v } => {
                *m = m_new.flatten_all()?.to_vec1()?;
                *v = v_new.flatten_all()?.to_vec1()?;
            }
            Self::F64 { m, v } => {
                *m = m_new.flatten_all()?.to_vec1()?;
                *v = v_new.flatten_all()?.to_vec1()?;
            }
            Self::Tensors { m, v } => {
                *m = m_new.clone();
                *v = v_new.clone();
            }
        }
        Ok(())
    }
}

pub struct Adam {
    params: Vec<(String, Var)>,
    moments: Vec<Moments>,
    step: u64,
    pub config: AdamConfig,
}

impl Adam {
    /// Named parameters (names are used to save and restore the state).
    pub fn new(params: Vec<(String, Var)>, config: AdamConfig) -> Result<Self> {
        Self::build(params, config, true)
    }

    /// `host = false` keeps every moment as a tensor and updates with the composed expression
    /// (what non-CPU devices use); the tests compare the two.
    fn build(params: Vec<(String, Var)>, config: AdamConfig, host: bool) -> Result<Self> {
        let moments = params.iter().map(|(_, p)| Moments::zeros(p.as_tensor(), host)).collect::<Result<Vec<_>>>()?;
        Ok(Self { params, moments, step: 0, config })
    }

    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Backward pass of `loss` and one update; returns the gradient norm before clipping.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<f64> {
        let grads = loss.backward()?;
        self.step(&grads)
    }

    /// One update from precomputed gradients; returns the global gradient norm before clipping.
    /// Parameters that received no gradient are left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<f64> {
        let gs = self
            .params
            .iter()
            .map(|(_, p)| grads.get(p).map(|g| g.contiguous()).transpose())
            .collect::<Result<Vec<Option<Tensor>>>>()?;
        let mut sq = 0.0;
        for g in gs.iter().flatten() {
            sq += sum_of_squares(g)?;
        }
        let norm = sq.sqrt();
        if !norm.is_finite() {
            candle_core::bail!("gradient norm is {norm}: the loss or a parameter became NaN/Inf")
        }
        let scale = match self.config.max_grad_norm {
            Some(c) if norm > c => c / norm,
            _ => 1.0,
        };
        self.step += 1;
        let c = self.config;
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2 = 1.0 - c.beta2.powi(self.step as i32);
        let coeffs = Coeffs { scale, beta1: c.beta1, beta2: c.beta2, inv_bc1: 1.0 / bc1, inv_bc2: 1.0 / bc2, eps: c.eps, lr: c.lr, lr_wd: c.lr * c.weight_decay };
        for (i, g) in gs.into_iter().enumerate() {
            let Some(g) = g else { continue };
            let p = &self.params[i].1;
            match &mut self.moments[i] {
                Moments::F32 { m, v } => update_in_place(p, &g, m, v, &coeffs)?,
                Moments::F64 { m, v } => update_in_place(p, &g, m, v, &coeffs)?,
                Moments::Tensors { m, v } => {
                    let g = (g * scale)?;
                    *m = ((&*m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
                    *v = ((&*v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
                    let mhat = (&*m / bc1)?;
                    let vhat = (&*v / bc2)?;
                    let update = (mhat / (vhat.sqrt()? + c.eps)?)?;
                    let mut next = (p.as_tensor() - (update * c.lr)?)?;
                    if c.weight_decay > 0.0 {
                        next = (next - (p.as_tensor() * (c.lr * c.weight_decay))?)?;
                    }
                    p.set(&next)?;
                }
            }
        }
        Ok(norm)
    }

    /// The optimiser state as named tensors (`adam.m.NAME`, `adam.v.NAME`, `adam.step`), for a
    /// safetensors checkpoint.
    pub fn state_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, (name, p)) in self.params.iter().enumerate() {
            let (m, v) = self.moments[i].tensors(p.as_tensor())?;
            out.insert(format!("adam.m.{name}"), m);
            out.insert(format!("adam.v.{name}"), v);
        }
        let dev = self.params.first().map(|(_, p)| p.device().clone()).unwrap_or(Device::Cpu);
        out.insert("adam.step".into(), Tensor::new(&[self.step as f64], &dev)?);
        Ok(out)
    }

    /// Restore a state saved by [`Adam::state_tensors`]; every parameter must be present with
    /// its shape.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            let [m, v] = ["m", "v"].map(|kind| -> Result<Tensor> {
                let key = format!("adam.{kind}.{name}");
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| candle_core::Error::Msg(format!("optimiser state lacks `{key}`")))?;
                if t.dims() != p.as_tensor().dims() {
                    candle_core::bail!("optimiser state `{key}` has shape {:?}, parameter has {:?}", t.dims(), p.as_tensor().dims())
                }
                t.to_dtype(p.as_tensor().dtype())?.to_device(p.as_tensor().device())
            });
            self.moments[i].set(&m?, &v?)?;
        }
        let step = tensors
            .get("adam.step")
            .ok_or_else(|| candle_core::Error::Msg("optimiser state lacks `adam.step`".into()))?;
        self.step = step.to_dtype(DType::F64)?.to_vec1::<f64>()?[0] as u64;
        Ok(())
    }
}

/// Σ g² in f64, summed in element order from 0 (what `g.to_dtype(F64)?.sqr()?.sum_all()` computes
/// on the CPU, without its two temporaries); `g` contiguous.
fn sum_of_squares(g: &Tensor) -> Result<f64> {
    let (storage, layout) = g.storage_and_layout();
    let range = layout.start_offset()..layout.start_offset() + g.elem_count();
    match &*storage {
        Storage::Cpu(CpuStorage::F32(d)) => Ok(sum_of_squares_blocked(&d[range])),
        Storage::Cpu(CpuStorage::F64(d)) => Ok(sum_of_squares_blocked(&d[range])),
        _ => {
            drop(storage);
            g.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()
        }
    }
}

/// Values per block of [`sum_of_squares_blocked`].
const SQUARES_BLOCK: usize = 1 << 14;

/// Σ x² in f64: blocks of [`SQUARES_BLOCK`] values, each summed in eight interleaved partial
/// sums (so the loop vectorises), the blocks on candle's threads, their sums added in block
/// order. The blocks and the order of every addition are fixed, so the result is the same for
/// any number of threads.
fn sum_of_squares_blocked<T: HostFloat>(xs: &[T]) -> f64 {
    fn block<T: HostFloat>(xs: &[T]) -> f64 {
        let mut acc = [0f64; 8];
        let mut chunks = xs.chunks_exact(8);
        for c in &mut chunks {
            for k in 0..8 {
                let x = WithDType::to_f64(c[k]);
                acc[k] += x * x;
            }
        }
        let tail: f64 = chunks.remainder().iter().map(|&x| WithDType::to_f64(x).powi(2)).sum();
        acc.iter().sum::<f64>() + tail
    }
    let blocks = xs.len().div_ceil(SQUARES_BLOCK);
    let mut sums = vec![0f64; blocks];
    let out = sums.as_mut_ptr() as usize;
    crate::nn::par::for_ranges(blocks, 2, |r| {
        for k in r {
            let v = block(&xs[k * SQUARES_BLOCK..((k + 1) * SQUARES_BLOCK).min(xs.len())]);
            // SAFETY: each block index k is visited once and k < blocks = sums.len(); `sums`
            // outlives the call.
            unsafe { *(out as *mut f64).add(k) = v };
        }
    });
    sums.iter().sum()
}

/// The scalars of one Adam step, in f64 (each is cast to the parameter's dtype, as candle's
/// `tensor * f64` does).
struct Coeffs {
    scale: f64,
    beta1: f64,
    beta2: f64,
    inv_bc1: f64,
    inv_bc2: f64,
    eps: f64,
    lr: f64,
    lr_wd: f64,
}

/// Element types of the in-place update (candle's `CpuStorage` offers shared slices only).
trait HostFloat: WithDType + num_traits::Float {
    fn values_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
}

impl HostFloat for f32 {
    fn values_mut(s: &mut CpuStorage) -> Option<&mut [f32]> {
        if let CpuStorage::F32(d) = s { Some(d) } else { None }
    }
}

impl HostFloat for f64 {
    fn values_mut(s: &mut CpuStorage) -> Option<&mut [f64]> {
        if let CpuStorage::F64(d) = s { Some(d) } else { None }
    }
}

/// One Adam step of a parameter, in place: the operations of the composed expression in
/// [`Adam::step`], element by element (`x * k + 0` where candle computes `affine(k, 0)`).
struct AdamInPlace<'a, T> {
    g: &'a [T],
    m: RefCell<&'a mut [T]>,
    v: RefCell<&'a mut [T]>,
    k: &'a Coeffs,
}

impl<T: HostFloat> InplaceOp1 for AdamInPlace<'_, T> {
    fn name(&self) -> &'static str {
        "adam-in-place"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let n = self.g.len();
        if !layout.is_contiguous() || layout.shape().elem_count() != n {
            bail!("adam-in-place: parameter not contiguous or of {} values (expected {n})", layout.shape().elem_count())
        }
        let Some(values) = T::values_mut(storage) else { bail!("adam-in-place: parameter dtype differs from its moments") };
        let p = &mut values[layout.start_offset()..layout.start_offset() + n];
        let (mut m, mut v) = (self.m.borrow_mut(), self.v.borrow_mut());
        let (m, v) = (&mut **m, &mut **v);
        if m.len() != n || v.len() != n {
            bail!("adam-in-place: moments of {} and {} values for a parameter of {n}", m.len(), v.len())
        }
        let c = |x: f64| T::from_f64(x);
        let (zero, one) = (T::zero(), T::one());
        let (scale, b1, one_b1, b2, one_b2) = (c(self.k.scale), c(self.k.beta1), c(1.0 - self.k.beta1), c(self.k.beta2), c(1.0 - self.k.beta2));
        let (inv_bc1, inv_bc2, eps, lr, lr_wd) = (c(self.k.inv_bc1), c(self.k.inv_bc2), c(self.k.eps), c(self.k.lr), c(self.k.lr_wd));
        let decay = self.k.lr_wd > 0.0;
        // `move`: the coefficients are copied into the closure, so the loop reads them from
        // registers (captured by reference they were reloaded each element and the loop did
        // not vectorise: 4x slower)
        let update = move |p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]| {
            // zipped slices (no bounds checks) so that the loop vectorises
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let g = g * scale + zero;
                *m = (*m * b1 + zero) + (g * one_b1 + zero);
                *v = (*v * b2 + zero) + ((g * g) * one_b2 + zero);
                let update = (*m * inv_bc1 + zero) / ((*v * inv_bc2 + zero).sqrt() * one + eps);
                let next = *p - (update * lr + zero);
                *p = if decay { next - (*p * lr_wd + zero) } else { next };
            }
        };
        // Element-wise, so ranges of the parameter can run on separate threads with the same result.
        let (pp, gp, mp, vp) = (p.as_mut_ptr() as usize, self.g.as_ptr() as usize, m.as_mut_ptr() as usize, v.as_mut_ptr() as usize);
        crate::nn::par::for_ranges(n, 1 << 14, |r| {
            // SAFETY: p, g, m and v all hold n values (checked above and by the caller) and
            // outlive the call; the ranges are disjoint, so each mutable slice is owned by one
            // thread at a time.
            unsafe {
                let len = r.end - r.start;
                update(
                    std::slice::from_raw_parts_mut((pp as *mut T).add(r.start), len),
                    std::slice::from_raw_parts((gp as *const T).add(r.start), len),
                    std::slice::from_raw_parts_mut((mp as *mut T).add(r.start), len),
                    std::slice::from_raw_parts_mut((vp as *mut T).add(r.start), len),
                )
            }
        });
        Ok(())
    }
}

/// The in-place update of an f32/f64 CPU parameter `p` from its contiguous gradient `g`.
fn update_in_place<T: HostFloat>(p: &Var, g: &Tensor, m: &mut [T], v: &mut [T], k: &Coeffs) -> Result<()> {
    let (storage, layout) = g.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { bail!("adam: gradient of a CPU parameter is not on the CPU") };
    let values = cpu.as_slice::<T>()?;
    let n = m.len();
    if g.elem_count() != n {
        bail!("adam: gradient has {} values, parameter {n}", g.elem_count())
    }
    let op = AdamInPlace { g: &values[layout.start_offset()..layout.start_offset() + n], m: RefCell::new(m), v: RefCell::new(v), k };
    p.as_tensor().inplace_op1(&op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn first_steps_match_the_closed_form() -> Result<()> {
        // f(w) = Σ w²/2, g = w. After step 1, m̂ = g, v̂ = g², update = g/(|g| + ε) ≈ sign(g).
        let w = Var::new(&[0.5f64, -2.0], &Device::Cpu)?;
        let cfg = AdamConfig { lr: 0.1, eps: 0.0, ..Default::default() };
        let mut opt = Adam::new(vec![("w".into(), w.clone())], cfg)?;
        opt.backward_step(&(w.as_tensor().sqr()?.sum_all()? * 0.5)?)?;
        let v = w.as_tensor().to_vec1::<f64>()?;
        assert!((v[0] - 0.4).abs() < 1e-12 && (v[1] + 1.9).abs() < 1e-12);
        // step 2 by hand
        let g0 = 0.4f64;
        let m = 0.9 * 0.1 * 0.5 + 0.1 * g0;
        let vv = 0.999 * 0.001 * 0.25 + 0.001 * g0 * g0;
        let expected = 0.4 - 0.1 * (m / (1.0 - 0.81)) / (vv / (1.0 - 0.999f64.powi(2))).sqrt();
        opt.backward_step(&(w.as_tensor().sqr()?.sum_all()? * 0.5)?)?;
        assert!((w.as_tensor().to_vec1::<f64>()?[0] - expected).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn clipping_caps_the_global_norm() -> Result<()> {
        let w = Var::new(&[3.0f64, 4.0], &Device::Cpu)?;
        let cfg = AdamConfig { lr: 1.0, beta1: 0.0, beta2: 0.0, eps: 0.0, weight_decay: 0.0, max_grad_norm: Some(1.0) };
        let mut opt = Adam::new(vec![("w".into(), w.clone())], cfg)?;
        let norm = opt.backward_step(&(w.as_tensor().sqr()?.sum_all()? * 0.5)?)?;
        assert!((norm - 5.0).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn saved_state_resumes_identically() -> Result<()> {
        let run = |split: Option<usize>| -> Result<Vec<f64>> {
            let w = Var::new(&[1.0f64, -1.5, 0.3], &Device::Cpu)?;
            let cfg = AdamConfig { lr: 0.05, ..Default::default() };
            let loss = |w: &Var| -> Result<Tensor> { w.as_tensor().sqr()?.sum_all()? + w.as_tensor().sum_all()?.sin()? };
            let mut opt = Adam::new(vec![("w".into(), w.clone())], cfg)?;
            for i in 0..10 {
                if Some(i) == split {
                    let state = opt.state_tensors()?;
                    let snapshot = w.as_tensor().copy()?;
                    let w2 = Var::from_tensor(&snapshot)?;
                    let mut opt2 = Adam::new(vec![("w".into(), w2.clone())], cfg)?;
                    opt2.load_state(&state)?;
                    for _ in i..10 {
                        opt2.backward_step(&loss(&w2)?)?;
                    }
                    return w2.as_tensor().to_vec1::<f64>();
                }
                opt.backward_step(&loss(&w)?)?;
            }
            w.as_tensor().to_vec1::<f64>()
        };
        assert_eq!(run(None)?, run(Some(4))?);
        Ok(())
    }

    /// Parameters after `steps` updates of a loss with uneven gradients (clipping active on some
    /// steps, weight decay on), with the in-place host update or the composed tensor expression.
    fn trained<T: WithDType>(host: bool, steps: usize, resume_at: Option<usize>) -> Result<Vec<Vec<T>>> {
        let mut rng = crate::rng::SeededRng::new(7);
        let dt = T::DTYPE;
        // the third parameter is long enough to be updated in several ranges on separate threads
        let ws = [vec![3usize, 5], vec![7], vec![70_001]]
            .iter()
            .map(|d| Var::from_tensor(&rng.uniform(d.clone(), &Device::Cpu)?.affine(4.0, -2.0)?.to_dtype(dt)?))
            .collect::<Result<Vec<_>>>()?;
        let named = |ws: &[Var]| ws.iter().enumerate().map(|(i, w)| (format!("w{i}"), w.clone())).collect::<Vec<_>>();
        let cfg = AdamConfig { lr: 0.03, weight_decay: 0.01, max_grad_norm: Some(2.0), ..Default::default() };
        let mut opt = Adam::build(named(&ws), cfg, host)?;
        let loss = |ws: &[Var]| -> Result<Tensor> {
            let a = (ws[0].as_tensor().sqr()?.sum_all()? * 0.3)?;
            let b = ws[1].as_tensor().sin()?.sum_all()?;
            let c = (ws[0].as_tensor().sum_all()? * ws[1].as_tensor().sum_all()?)?;
            let d = ws[2].as_tensor().cos()?.sum_all()?;
            a + b + c + d
        };
        for i in 0..steps {
            if Some(i) == resume_at {
                // a fresh optimiser of the other kind continues from the saved state
                let state = opt.state_tensors()?;
                opt = Adam::build(named(&ws), cfg, !host)?;
                opt.load_state(&state)?;
            }
            opt.backward_step(&loss(&ws)?)?;
        }
        ws.iter().map(|w| w.as_tensor().flatten_all()?.to_vec1::<T>()).collect()
    }

    #[test]
    fn in_place_update_is_bit_identical_to_the_composed_expression() -> Result<()> {
        assert!(matches!(Moments::zeros(&Tensor::zeros(2, DType::F32, &Device::Cpu)?, true)?, Moments::F32 { .. }));
        let host = trained::<f32>(true, 25, None)?;
        let composed = trained::<f32>(false, 25, None)?;
        assert_eq!(host, composed, "f32 parameters differ");
        assert_ne!(host, trained::<f32>(true, 24, None)?, "the steps change the parameters");
        assert_eq!(trained::<f64>(true, 25, None)?, trained::<f64>(false, 25, None)?, "f64 parameters differ");
        // state saved by one kind and loaded into the other resumes exactly
        assert_eq!(trained::<f32>(true, 25, Some(11))?, host);
        assert_eq!(trained::<f32>(false, 25, Some(11))?, host);
        Ok(())
    }

    #[test]
    fn sum_of_squares_matches_an_exact_sum() -> Result<()> {
        // Several blocks and a ragged tail; the reference is summed exactly (integers scaled by
        // a power of two square exactly in f64 and their sum stays below 2^53).
        let n = 3 * SQUARES_BLOCK + 1_001;
        let ints: Vec<i64> = (0..n as i64).map(|i| (i * 7919) % 2001 - 1000).collect();
        let g = Tensor::from_vec(ints.iter().map(|&i| i as f32 / 64.0).collect::<Vec<_>>(), n, &Device::Cpu)?;
        let exact = ints.iter().map(|&i| (i * i) as f64).sum::<f64>() / 4096.0;
        assert_eq!(sum_of_squares(&g)?, exact);
        // Arbitrary values, in f32 and f64, contiguous or made so from a strided view: within
        // 1e-12 (relative) of a compensated (Neumaier) sum of the same squares. The blocked sum's
        // error bound is about (2^14 / 8 + blocks)·ε ≈ 5e-13; a plain running sum of these
        // 51,170 values may be off by up to n·ε ≈ 6e-12.
        let mut rng = crate::rng::SeededRng::new(3);
        let g = rng.uniform((301, 170), &Device::Cpu)?.affine(10.0, -5.0)?;
        for t in [g.clone(), g.t()?.contiguous()?, g.to_dtype(DType::F64)?] {
            let (mut sum, mut comp) = (0f64, 0f64);
            for x in t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()? {
                let y = x * x;
                let s = sum + y;
                comp += if sum.abs() >= y.abs() { (sum - s) + y } else { (y - s) + sum };
                sum = s;
            }
            let reference = sum + comp;
            let got = sum_of_squares(&t)?;
            assert!((got - reference).abs() <= 1e-12 * reference, "{got} vs {reference}");
        }
        Ok(())
    }
}
