//! Parameters created from the project's seeded generator (candle's `VarMap` initialisers draw
//! from candle's unseedable CPU generator), named for optimiser state and safetensors files.
use crate::rng::SeededRng;
use candle_core::{DType, Device, Result, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

/// A flat, ordered store of named trainable parameters.
pub struct ParamStore {
    vars: Vec<(String, Var)>,
    rng: SeededRng,
    device: Device,
    dtype: DType,
    /// Default initialisation range: U(-init, init) (the papers use 0.1).
    pub init: f64,
}

impl ParamStore {
    pub fn new(seed: u64, init: f64, device: &Device) -> Self {
        Self { vars: Vec::new(), rng: SeededRng::new(seed).fork(0x9a7a), device: device.clone(), dtype: DType::F32, init }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The same store with parameters created from now on in `dtype` (F32 unless set; the draws
    /// are the same, made in f32 and converted).
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }

    /// The dtype of the parameters this store creates.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    fn add(&mut self, name: &str, t: Tensor) -> Result<Tensor> {
        if self.vars.iter().any(|(n, _)| n == name) {
            candle_core::bail!("parameter `{name}` defined twice")
        }
        let v = Var::from_tensor(&t.to_dtype(self.dtype)?)?;
        let out = v.as_tensor().clone();
        self.vars.push((name.to_string(), v));
        Ok(out)
    }

    /// A parameter drawn from U(-init, init).
    pub fn uniform(&mut self, name: &str, dims: &[usize]) -> Result<Tensor> {
        let u = self.rng.uniform(dims, &self.device)?;
        let t = u.affine(2.0 * self.init, -self.init)?;
        self.add(name, t)
    }

    /// A parameter initialised to a constant.
    pub fn constant(&mut self, name: &str, dims: &[usize], value: f64) -> Result<Tensor> {
        let t = Tensor::full(value as f32, dims, &self.device)?;
        self.add(name, t)
    }

    /// y = x Wᵀ + b with W `[out, in]`, b `[out]`, both uniform.
    pub fn linear(&mut self, name: &str, d_in: usize, d_out: usize, bias: bool) -> Result<crate::nn::gemm::Linear> {
        let w = self.uniform(&format!("{name}.weight"), &[d_out, d_in])?;
        let b = if bias { Some(self.uniform(&format!("{name}.bias"), &[d_out])?) } else { None };
        Ok(crate::nn::gemm::Linear::new(w, b))
    }

    /// An embedding table `[n, d]`.
    pub fn embedding(&mut self, name: &str, n: usize, d: usize) -> Result<candle_nn::Embedding> {
        let w = self.uniform(&format!("{name}.weight"), &[n, d])?;
        Ok(candle_nn::Embedding::new(w, d))
    }

    /// The named variables, for the optimiser.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        self.vars.clone()
    }

    /// Total number of scalar parameters.
    pub fn count(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.as_tensor().elem_count()).sum()
    }

    /// The parameters as named tensors.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.vars.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect()
    }

    /// Overwrite every parameter from a map of tensors (names and shapes must match exactly).
    pub fn load_tensors(&self, tensors: &HashMap<String, Tensor>, source: &Path) -> Result<()> {
        for (name, v) in &self.vars {
            let t = tensors.get(name).ok_or_else(|| {
                candle_core::Error::Msg(format!("{}: no parameter `{name}` (checkpoint and config do not match)", source.display()))
            })?;
            if t.dims() != v.as_tensor().dims() {
                candle_core::bail!(
                    "{}: parameter `{name}` has shape {:?} in the checkpoint but {:?} in the model (checkpoint and config do not match)",
                    source.display(),
                    t.dims(),
                    v.as_tensor().dims()
                )
            }
            v.set(&t.to_dtype(self.dtype)?.to_device(&self.device)?)?;
        }
        Ok(())
    }
}
