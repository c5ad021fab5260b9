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
//! use varattn::train::{Adam, AdamConfig};
//! let w = Var::new(&[3.0f32, -2.0], &Device::Cpu)?;
//! let mut opt = Adam::new(vec![("w".into(), w.clone())], AdamConfig { lr: 0.1, ..Default::default() })?;
//! for _ in 0..200 {
//!     let loss = w.as_tensor().sqr()?.sum_all()?;
//!     opt.backward_step(&loss)?;
//! }
//! assert!(w.as_tensor().sqr()?.sum_all()?.to_scalar::<f32>()? < 1e-3);
//! # Ok::<(), candle_core::Error>(())
//! ```
use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};
use serde::{Deserialize, Serialize};
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

pub struct Adam {
    params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: u64,
    pub config: AdamConfig,
}

impl Adam {
    /// Named parameters (names are used to save and restore the state).
    pub fn new(params: Vec<(String, Var)>, config: AdamConfig) -> Result<Self> {
        let m = params.iter().map(|(_, p)| p.as_tensor().zeros_like()).collect::<Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self { params, m, v, step: 0, config })
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
        let gs: Vec<Option<Tensor>> = self.params.iter().map(|(_, p)| grads.get(p).cloned()).collect();
        let mut sq = 0.0;
        for g in gs.iter().flatten() {
            sq += g.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
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
        for (i, g) in gs.into_iter().enumerate() {
            let Some(g) = g else { continue };
            let g = (g * scale)?;
            self.m[i] = ((&self.m[i] * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            self.v[i] = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let mhat = (&self.m[i] / bc1)?;
            let vhat = (&self.v[i] / bc2)?;
            let update = (mhat / (vhat.sqrt()? + c.eps)?)?;
            let p = &self.params[i].1;
            let mut next = (p.as_tensor() - (update * c.lr)?)?;
            if c.weight_decay > 0.0 {
                next = (next - (p.as_tensor() * (c.lr * c.weight_decay))?)?;
            }
            p.set(&next)?;
        }
        Ok(norm)
    }

    /// The optimiser state as named tensors (`adam.m.NAME`, `adam.v.NAME`, `adam.step`), for a
    /// safetensors checkpoint.
    pub fn state_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.insert(format!("adam.m.{name}"), self.m[i].clone());
            out.insert(format!("adam.v.{name}"), self.v[i].clone());
        }
        let dev = self.m.first().map(|t| t.device().clone()).unwrap_or(candle_core::Device::Cpu);
        out.insert("adam.step".into(), Tensor::new(&[self.step as f64], &dev)?);
        Ok(out)
    }

    /// Restore a state saved by [`Adam::state_tensors`]; every parameter must be present with
    /// its shape.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            for (kind, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("adam.{kind}.{name}");
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| candle_core::Error::Msg(format!("optimiser state lacks `{key}`")))?;
                if t.dims() != p.as_tensor().dims() {
                    candle_core::bail!("optimiser state `{key}` has shape {:?}, parameter has {:?}", t.dims(), p.as_tensor().dims())
                }
                *slot = t.to_dtype(p.as_tensor().dtype())?.to_device(p.as_tensor().device())?;
            }
        }
        let step = tensors
            .get("adam.step")
            .ok_or_else(|| candle_core::Error::Msg("optimiser state lacks `adam.step`".into()))?;
        self.step = step.to_dtype(DType::F64)?.to_vec1::<f64>()?[0] as u64;
        Ok(())
    }
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
}
