//! Candle's `VarBuilder` conventions with reproducible initialisation.
//!
//! A [`SeededVarMap`] is a `candle_nn::VarMap` whose new variables are drawn from the project's
//! seeded generator instead of candle's (which cannot be seeded on the CPU). Variable `name` is
//! filled from the stream `SeededRng::new(seed).fork(h(name))`, h = FNV-1a of the name, so a value
//! depends on the seed and the variable's path only, not on the order in which a model asks for
//! its variables. Every `candle_nn::Init` is honoured: `Const(c)`, `Uniform { lo, up }`,
//! `Randn { mean, stdev }` and `Kaiming` (σ = gain / √fan, uniform on ±√3 σ or normal N(0, σ²)),
//! as `Init::var` defines them.
//!
//! ```
//! use candle_core::{DType, Device};
//! use varattn::nn::SeededVarMap;
//! let a = SeededVarMap::new(7);
//! let w = candle_nn::linear(4, 3, a.var_builder(DType::F32, &Device::Cpu).pp("proj"))?;
//! let b = SeededVarMap::new(7);
//! let _other = candle_nn::linear(2, 2, b.var_builder(DType::F32, &Device::Cpu).pp("first"))?;
//! let v = candle_nn::linear(4, 3, b.var_builder(DType::F32, &Device::Cpu).pp("proj"))?;
//! assert_eq!(w.weight().to_vec2::<f32>()?, v.weight().to_vec2::<f32>()?);
//! assert_eq!(a.all_vars().len(), 2); // proj.weight, proj.bias
//! # Ok::<(), candle_core::Error>(())
//! ```
use crate::rng::SeededRng;
use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};

/// A `VarMap` filled from the project's seeded generator; clones share the variables.
#[derive(Clone)]
pub struct SeededVarMap {
    seed: u64,
    vars: VarMap,
}

impl SeededVarMap {
    /// An empty map whose variables will be drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed, vars: VarMap::new() }
    }

    /// The seed the variables are drawn from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A `VarBuilder` that creates its variables in this map (paths through `vb.pp(..)`).
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// Every variable, for an optimiser.
    pub fn all_vars(&self) -> Vec<Var> {
        self.vars.all_vars()
    }

    /// The underlying candle map (save / load as safetensors, named variables).
    pub fn var_map(&self) -> &VarMap {
        &self.vars
    }

    /// The tensor `init` describes for a variable of shape `shape` named `name`.
    fn draw(&self, shape: &Shape, name: &str, init: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut rng = SeededRng::new(self.seed).fork(fnv1a(name));
        let standard = match init {
            Init::Const(c) => return Tensor::full(c, shape, dev)?.to_dtype(dtype),
            Init::Uniform { lo, up } => (rng.uniform(shape, dev)? * (up - lo))? + lo,
            Init::Randn { mean, stdev } => (rng.normal(shape, dev)? * stdev)? + mean,
            Init::Kaiming { dist, fan, non_linearity } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        (rng.uniform(shape, dev)? * (2.0 * bound))? - bound
                    }
                    NormalOrUniform::Normal => rng.normal(shape, dev)? * std,
                }
            }
        }?;
        standard.to_dtype(dtype)
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, shape: Shape, name: &str, init: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self.vars.data().lock().unwrap();
        if let Some(var) = data.get(name) {
            if var.shape() != &shape {
                candle_core::bail!("variable `{name}`: shape {:?} asked for, {:?} already made", shape, var.shape())
            }
            return Ok(var.as_tensor().clone());
        }
        let var = Var::from_tensor(&self.draw(&shape, name, init, dtype, dev)?)?;
        let t = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        match self.vars.data().lock().unwrap().get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => candle_core::bail!("variable `{name}` has not been made yet (its shape is unknown)"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars.data().lock().unwrap().contains_key(name)
    }
}

/// 64-bit FNV-1a of the variable's path: the stream it is drawn from.
fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(t: &Tensor) -> (f64, f64, f64, f64) {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x as f64), b.max(x as f64)));
        (mean, var.sqrt(), lo, hi)
    }

    #[test]
    fn every_init_has_its_moments_and_range() {
        let m = SeededVarMap::new(1);
        let vb = m.var_builder(DType::F32, &Device::Cpu);
        let c = vb.get_with_hints((3, 4), "c", Init::Const(0.5)).unwrap();
        assert!(c.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|&x| x == 0.5));
        let (mean, _, lo, hi) = stats(&vb.get_with_hints((200, 100), "u", Init::Uniform { lo: -0.1, up: 0.3 }).unwrap());
        assert!((mean - 0.1).abs() < 0.005 && lo >= -0.1 && hi < 0.3 && lo < -0.099 && hi > 0.299, "{mean} {lo} {hi}");
        let (mean, std, _, _) = stats(&vb.get_with_hints((200, 100), "n", Init::Randn { mean: 1.0, stdev: 2.0 }).unwrap());
        assert!((mean - 1.0).abs() < 0.05 && (std - 2.0).abs() < 0.05, "{mean} {std}");
        // candle_nn::linear's weight init: Kaiming normal on fan-in with the ReLU gain, σ = √(2 / fan_in)
        let w = vb.get_with_hints((50, 300), "k", candle_nn::init::DEFAULT_KAIMING_NORMAL).unwrap();
        let (_, std, _, _) = stats(&w);
        assert!((std - (2.0f64 / 300.0).sqrt()).abs() < 0.003, "{std}");
        use candle_nn::init::{FanInOut, NonLinearity};
        let kaiming_uniform = Init::Kaiming { dist: NormalOrUniform::Uniform, fan: FanInOut::FanIn, non_linearity: NonLinearity::Linear };
        let (_, _, lo, hi) = stats(&vb.get_with_hints((50, 300), "ku", kaiming_uniform).unwrap());
        let bound = (3.0f64 / 300.0).sqrt();
        assert!(lo >= -bound && hi <= bound && hi > 0.99 * bound, "{lo} {hi} {bound}");
    }

    #[test]
    fn a_variable_depends_on_seed_and_path_not_on_order_and_is_shared() {
        let randn = Init::Randn { mean: 0.0, stdev: 1.0 };
        let get = |m: &SeededVarMap, name: &str| m.var_builder(DType::F32, &Device::Cpu).get_with_hints((2, 3), name, randn).unwrap().to_vec2::<f32>().unwrap();
        let (a, b) = (SeededVarMap::new(5), SeededVarMap::new(5));
        let a_x = get(&a, "x");
        get(&b, "y");
        assert_eq!(get(&b, "x"), a_x);
        assert_ne!(get(&a, "y"), a_x);
        assert_ne!(get(&SeededVarMap::new(6), "x"), a_x);
        // asking again returns the same variable; another shape is refused naming it
        assert_eq!(get(&a, "x"), a_x);
        let err = a.var_builder(DType::F32, &Device::Cpu).get((3, 3), "x").unwrap_err().to_string();
        assert!(err.contains("`x`"), "{err}");
        assert_eq!(a.all_vars().len(), 2);
    }
}
