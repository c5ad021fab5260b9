//! The project's seeded random number generator.
//!
//! Every random draw in varattn — categorical and Bernoulli samples, Gumbel and uniform noise,
//! gamma draws for Dirichlet samples, dropout masks — goes through [`SeededRng`], a ChaCha8
//! stream generator seeded from a `u64`. Draws are made on the host in `f64` and moved to the
//! tensor's device afterwards, so a (config, seed) run is reproducible bit for bit on the CPU and
//! the CPU and CUDA paths see the same noise. candle's own `Tensor::rand*` is never used: its CPU
//! generator cannot be seeded.
//!
//! The full state is `(seed, stream, word_pos)`, which [`SeededRng::state`] returns and
//! [`SeededRng::from_state`] restores, so a checkpoint can resume a run exactly.
//!
//! ```
//! use varattn::rng::SeededRng;
//! use candle_core::Device;
//! let mut a = SeededRng::new(3435);
//! let mut b = SeededRng::new(3435);
//! let u = a.uniform(&[2, 3], &Device::Cpu)?;
//! let v = b.uniform(&[2, 3], &Device::Cpu)?;
//! assert_eq!(u.to_vec2::<f32>()?, v.to_vec2::<f32>()?);
//! # Ok::<(), candle_core::Error>(())
//! ```

use candle_core::{DType, Device, Result, Shape, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Distribution;
use serde::{Deserialize, Serialize};

/// Everything needed to restore a [`SeededRng`] exactly where it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: u64,
    pub stream: u64,
    /// Position in the ChaCha key stream, in 32-bit words.
    pub word_pos: u128,
}

/// A seeded ChaCha8 generator that produces tensors of random draws.
#[derive(Debug, Clone)]
pub struct SeededRng {
    seed: u64,
    rng: ChaCha8Rng,
}

/// Smallest value handed out by the uniform sampler, so that `ln(u)` and `ln(1-u)` are finite.
const UNIFORM_EPS: f64 = 1e-12;

impl SeededRng {
    /// A generator on stream 0 of `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed, rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// An independent generator for a named purpose (e.g. stream 1 for dropout, 2 for data
    /// shuffling): same seed, another ChaCha stream, so adding draws to one purpose never shifts
    /// the draws of another.
    pub fn fork(&self, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(stream);
        Self { seed: self.seed, rng }
    }

    /// The state to save in a checkpoint.
    pub fn state(&self) -> RngState {
        RngState { seed: self.seed, stream: self.rng.get_stream(), word_pos: self.rng.get_word_pos() }
    }

    /// Restore a generator saved with [`SeededRng::state`].
    pub fn from_state(state: RngState) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(state.seed);
        rng.set_stream(state.stream);
        rng.set_word_pos(state.word_pos);
        Self { seed: state.seed, rng }
    }

    /// The seed this generator was made from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// One uniform draw in the open interval (0, 1), clamped away from 0 and 1 by 1e-12.
    pub fn next_uniform(&mut self) -> f64 {
        let u: f64 = self.rng.random();
        u.clamp(UNIFORM_EPS, 1.0 - UNIFORM_EPS)
    }

    /// One draw from Gamma(alpha, 1) (Marsaglia-Tsang, with the alpha < 1 boost of rand_distr).
    pub fn next_gamma(&mut self, alpha: f64) -> f64 {
        match rand_distr::Gamma::new(alpha, 1.0) {
            Ok(g) => g.sample(&mut self.rng),
            Err(_) => f64::NAN,
        }
    }

    /// One draw from N(0, 1).
    pub fn next_normal(&mut self) -> f64 {
        rand_distr::StandardNormal.sample(&mut self.rng)
    }

    /// A uniform integer in 0..n.
    pub fn next_index(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }

    /// Fisher-Yates shuffle of a slice.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.next_index(i + 1);
            xs.swap(i, j);
        }
    }

    fn tensor_from_fn<S: Into<Shape>>(
        &mut self,
        shape: S,
        device: &Device,
        mut f: impl FnMut(&mut Self) -> f64,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let data: Vec<f32> = (0..shape.elem_count()).map(|_| f(self) as f32).collect();
        Tensor::from_vec(data, shape, device)
    }

    /// u ~ U(0, 1), f32, shape `shape`.
    pub fn uniform<S: Into<Shape>>(&mut self, shape: S, device: &Device) -> Result<Tensor> {
        self.tensor_from_fn(shape, device, |r| r.next_uniform())
    }

    /// eps ~ N(0, 1), f32.
    pub fn normal<S: Into<Shape>>(&mut self, shape: S, device: &Device) -> Result<Tensor> {
        self.tensor_from_fn(shape, device, |r| r.next_normal())
    }

    /// g ~ Gumbel(0, 1): g = -ln(-ln u), f32.
    pub fn gumbel<S: Into<Shape>>(&mut self, shape: S, device: &Device) -> Result<Tensor> {
        self.tensor_from_fn(shape, device, |r| -(-r.next_uniform().ln()).ln())
    }

    /// Independent draws g_i ~ Gamma(alpha_i, 1), one per element of `alpha`, same shape and
    /// device, f32. Draws are clamped below at the smallest positive normal f32, as PyTorch does,
    /// so that tiny concentrations never give an exact zero. The result carries no gradient; see
    /// [`crate::special::ops::gamma_rsample`] for the reparameterised version.
    pub fn gamma(&mut self, alpha: &Tensor) -> Result<Tensor> {
        let a: Vec<f32> = alpha.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
        let tiny = f32::MIN_POSITIVE as f64;
        let data: Vec<f32> =
            a.iter().map(|&ai| self.next_gamma(ai as f64).max(tiny) as f32).collect();
        Tensor::from_vec(data, alpha.shape(), alpha.device())
    }

    /// Dropout keep-mask scaled by 1/(1-p): each entry is 0 with probability `p`, else 1/(1-p).
    ///
    /// One 32-bit word of the stream per entry, the entry dropped when the word is below
    /// ⌊p·2³²⌋: a drop probability within 2⁻³² of p, at a fraction of the cost of a uniform
    /// double per entry (masks are drawn for every layer input at every training step).
    pub fn dropout_mask<S: Into<Shape>>(&mut self, shape: S, p: f64, device: &Device) -> Result<Tensor> {
        if !(0.0..1.0).contains(&p) {
            candle_core::bail!("dropout probability must be in [0, 1), got {p}")
        }
        let shape = shape.into();
        let mut words = vec![0u32; shape.elem_count()];
        self.rng.fill(&mut words[..]);
        let threshold = (p * 4_294_967_296.0).floor() as u64;
        let scale = (1.0 / (1.0 - p)) as f32;
        let data: Vec<f32> = words.iter().map(|&w| if (w as u64) < threshold { 0.0 } else { scale }).collect();
        Tensor::from_vec(data, shape, device)
    }

    /// z ~ Categorical(probs) over the last dimension: returns u32 indices of shape
    /// `probs.shape()[..-1]`, drawn by inverting the CDF with one uniform per row.
    pub fn categorical(&mut self, probs: &Tensor) -> Result<Tensor> {
        let dims = probs.dims();
        let s = *dims.last().ok_or_else(|| candle_core::Error::Msg("categorical over a scalar".into()))?;
        let lead: Vec<usize> = dims[..dims.len() - 1].to_vec();
        let p: Vec<f32> = probs.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
        let mut out = Vec::with_capacity(p.len() / s.max(1));
        for row in p.chunks(s) {
            out.push(sample_row(row, self.next_uniform()) as u32);
        }
        Tensor::from_vec(out, lead, probs.device())
    }

    /// b ~ Bernoulli(probs), elementwise, as f32 0/1 of the same shape.
    pub fn bernoulli(&mut self, probs: &Tensor) -> Result<Tensor> {
        let p: Vec<f32> = probs.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
        let data: Vec<f32> =
            p.iter().map(|&pi| if self.next_uniform() < pi as f64 { 1.0 } else { 0.0 }).collect();
        Tensor::from_vec(data, probs.shape(), probs.device())
    }
}

/// The generator as a `rand` source, for helpers written against [`rand::Rng`] (e.g.
/// `varattn_lab::data::cmudict::corrupt_letters`): the draws come from the same seeded ChaCha8 stream.
impl rand::RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        rand::RngCore::next_u32(&mut self.rng)
    }
    fn next_u64(&mut self) -> u64 {
        rand::RngCore::next_u64(&mut self.rng)
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        rand::RngCore::fill_bytes(&mut self.rng, dst)
    }
}

/// Inverse-CDF draw from one row of (possibly unnormalised) probabilities.
fn sample_row(row: &[f32], u: f64) -> usize {
    let total: f64 = row.iter().map(|&x| x.max(0.0) as f64).sum();
    let target = u * total;
    let mut acc = 0.0;
    let mut last_positive = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > 0.0 {
            last_positive = i;
            acc += x as f64;
            if acc > target {
                return i;
            }
        }
    }
    last_positive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws_other_seed_other_draws() -> Result<()> {
        let dev = Device::Cpu;
        let a = SeededRng::new(1).uniform(&[100], &dev)?.to_vec1::<f32>()?;
        let b = SeededRng::new(1).uniform(&[100], &dev)?.to_vec1::<f32>()?;
        let c = SeededRng::new(2).uniform(&[100], &dev)?.to_vec1::<f32>()?;
        assert_eq!(a, b);
        assert_ne!(a, c);
        Ok(())
    }

    #[test]
    fn state_round_trip_resumes_the_stream() -> Result<()> {
        let dev = Device::Cpu;
        let mut r = SeededRng::new(7).fork(3);
        let _ = r.normal(&[17], &dev)?;
        let saved = r.state();
        let next = r.gumbel(&[5], &dev)?.to_vec1::<f32>()?;
        let mut restored = SeededRng::from_state(saved);
        assert_eq!(restored.gumbel(&[5], &dev)?.to_vec1::<f32>()?, next);
        Ok(())
    }

    #[test]
    fn forks_are_independent_streams() -> Result<()> {
        let dev = Device::Cpu;
        let root = SeededRng::new(5);
        let a = root.fork(1).uniform(&[10], &dev)?.to_vec1::<f32>()?;
        let b = root.fork(2).uniform(&[10], &dev)?.to_vec1::<f32>()?;
        assert_ne!(a, b);
        Ok(())
    }

    #[test]
    fn categorical_frequencies_match_probabilities() -> Result<()> {
        let dev = Device::Cpu;
        let n = 40_000;
        let probs = Tensor::new(&[0.1f32, 0.0, 0.6, 0.3], &dev)?.unsqueeze(0)?.repeat((n, 1))?;
        let z = SeededRng::new(11).categorical(&probs)?.to_vec1::<u32>()?;
        let mut counts = [0usize; 4];
        for zi in z {
            counts[zi as usize] += 1;
        }
        assert_eq!(counts[1], 0, "a zero-probability position was drawn");
        for (c, p) in counts.iter().zip([0.1, 0.0, 0.6, 0.3]) {
            let f = *c as f64 / n as f64;
            // 5 standard errors
            assert!((f - p).abs() < 5.0 * (p * (1.0 - p) / n as f64).sqrt() + 1e-9, "freq {f} vs p {p}");
        }
        Ok(())
    }

    #[test]
    fn gamma_draws_have_the_right_mean_and_variance() -> Result<()> {
        let dev = Device::Cpu;
        for &a in &[0.1f32, 1.0, 7.5] {
            let n = 50_000;
            let alpha = Tensor::full(a, n, &dev)?;
            let g = SeededRng::new(3).gamma(&alpha)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            let mean = g.iter().sum::<f64>() / n as f64;
            let var = g.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
            let se = (a as f64 / n as f64).sqrt();
            assert!((mean - a as f64).abs() < 5.0 * se, "alpha {a}: mean {mean}");
            assert!((var - a as f64).abs() / (a as f64) < 0.05, "alpha {a}: var {var}");
        }
        Ok(())
    }

    #[test]
    fn gumbel_has_euler_mascheroni_mean() -> Result<()> {
        let n = 100_000;
        let g = SeededRng::new(9).gumbel(n, &Device::Cpu)?.to_vec1::<f32>()?;
        let mean = g.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        // Var = pi^2/6, so 5 s.e. = 5 * 1.28 / sqrt(n)
        assert!((mean - 0.5772156649).abs() < 5.0 * 1.2825 / (n as f64).sqrt(), "mean {mean}");
        Ok(())
    }

    #[test]
    fn dropout_masks_drop_at_rate_p_and_reproduce() -> Result<()> {
        let dev = Device::Cpu;
        for p in [0.0, 0.2, 0.5] {
            let n = 200_000;
            let m = SeededRng::new(7).dropout_mask(n, p, &dev)?.to_vec1::<f32>()?;
            let scale = (1.0 / (1.0 - p)) as f32;
            assert!(m.iter().all(|&v| v == 0.0 || v == scale));
            let dropped = m.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
            // five binomial standard deviations
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            assert!((dropped - p).abs() <= 5.0 * sd + 1e-12, "p = {p}: dropped {dropped}");
            let again = SeededRng::new(7).dropout_mask(n, p, &dev)?.to_vec1::<f32>()?;
            assert_eq!(m, again);
        }
        let e = SeededRng::new(7).dropout_mask(4, 1.0, &dev).unwrap_err().to_string();
        assert!(e.contains("[0, 1)"), "{e}");
        Ok(())
    }
}
