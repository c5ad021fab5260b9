use super::{apply_logit_mask, Distribution, KlDivergence};
use crate::rng::SeededRng;
use candle_core::{DType, Result, Tensor, D};

/// Categorical alignment distribution over S positions, p(z = i) = softmax_i(logits).
///
/// Stored as normalised log-probabilities `[..., S]`; padded positions (mask 0) get probability 0.
/// Samples are `u32` indices `[...]` (or `[K, ...]` from [`Categorical::sample_n`]).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use varattn::distributions::{Categorical, Distribution, KlDivergence};
/// use varattn::rng::SeededRng;
/// let dev = Device::Cpu;
/// let p = Categorical::from_logits(&Tensor::new(&[[0.0f32, 1.0, 2.0]], &dev)?, None)?;
/// let q = Categorical::from_logits(&Tensor::new(&[[2.0f32, 1.0, 0.0]], &dev)?, None)?;
/// let z = p.sample(&mut SeededRng::new(0))?;            // [1] u32
/// let lp = p.log_prob(&z)?;                              // [1]
/// assert!(lp.to_vec1::<f32>()?[0] < 0.0);
/// let h = p.entropy()?.to_vec1::<f32>()?[0];
/// assert!(h > 0.0 && h < (3.0f32).ln());
/// assert!(q.kl(&p)?.to_vec1::<f32>()?[0] > 0.0);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Categorical {
    log_probs: Tensor,
    mask: Option<Tensor>,
}

/// Gather `values[..., index]` along the last dimension. `index` is `[...]` or `[K, ...]`;
/// `values` is `[..., S]` and is broadcast over the leading K when present.
pub(crate) fn gather_last(values: &Tensor, index: &Tensor) -> Result<Tensor> {
    let s = values.dim(D::Minus1)?;
    let mut target: Vec<usize> = index.dims().to_vec();
    target.push(s);
    let values = if values.dims() == target.as_slice() {
        values.clone()
    } else {
        values.broadcast_as(target)?.contiguous()?
    };
    values.gather(&index.unsqueeze(D::Minus1)?.contiguous()?, D::Minus1)?.squeeze(D::Minus1)
}

impl Categorical {
    /// p = softmax(logits) over the last dimension, padding positions (mask 0) excluded.
    pub fn from_logits(logits: &Tensor, mask: Option<&Tensor>) -> Result<Self> {
        let masked = apply_logit_mask(logits, mask)?;
        let log_probs = candle_nn::ops::log_softmax(&masked, D::Minus1)?;
        Ok(Self { log_probs, mask: mask.cloned() })
    }

    /// From log-probabilities that are already normalised over the last dimension.
    pub fn from_log_probs(log_probs: Tensor, mask: Option<Tensor>) -> Self {
        Self { log_probs, mask }
    }

    /// log p_i, `[..., S]`.
    pub fn log_probs(&self) -> &Tensor {
        &self.log_probs
    }

    /// p_i, `[..., S]`.
    pub fn probs(&self) -> Result<Tensor> {
        self.log_probs.exp()
    }

    /// The padding mask, if any.
    pub fn mask(&self) -> Option<&Tensor> {
        self.mask.as_ref()
    }

    /// Number of positions S.
    pub fn num_positions(&self) -> Result<usize> {
        self.log_probs.dim(D::Minus1)
    }

    /// K independent draws, `[K, ...]` u32.
    pub fn sample_n(&self, k: usize, rng: &mut SeededRng) -> Result<Tensor> {
        let probs = self.probs()?.detach();
        let mut dims = vec![k];
        dims.extend_from_slice(probs.dims());
        let probs = probs.unsqueeze(0)?.broadcast_as(dims)?.contiguous()?;
        rng.categorical(&probs)
    }

    /// K-Max: the K most probable positions and their log-probabilities renormalised among
    /// themselves, log p_K(i) = log p_i - log Σ_{j ∈ top-K} p_j (the authors' code masks the other
    /// scores and re-applies log-softmax, which is the same thing). Returns
    /// `(indices [..., K] u32, log p_K [..., K])`; the log-probabilities keep their gradient.
    pub fn top_k(&self, k: usize) -> Result<(Tensor, Tensor)> {
        let s = self.num_positions()?;
        if k == 0 || k > s {
            candle_core::bail!("K-Max needs 1 <= K <= S, got K = {k} with S = {s}")
        }
        let order = self.log_probs.detach().contiguous()?.arg_sort_last_dim(false)?;
        let idx = order.narrow(D::Minus1, 0, k)?.contiguous()?;
        let lp = self.log_probs.contiguous()?.gather(&idx, D::Minus1)?;
        let renorm = candle_nn::ops::log_softmax(&lp, D::Minus1)?;
        Ok((idx, renorm))
    }

    /// The same distribution restricted to its K most probable positions, as a distribution over
    /// all S positions (the others get probability 0).
    pub fn restrict_to_top_k(&self, k: usize) -> Result<Self> {
        let (idx, _) = self.top_k(k)?;
        let keep = Tensor::ones(idx.dims(), self.log_probs.dtype(), self.log_probs.device())?;
        let zeros = self.log_probs.zeros_like()?;
        let keep = zeros.scatter_add(&idx, &keep, D::Minus1)?;
        let mask = match &self.mask {
            Some(m) => keep.mul(&m.to_dtype(keep.dtype())?)?,
            None => keep,
        };
        Self::from_logits(&self.log_probs, Some(&mask))
    }
}

impl Distribution for Categorical {
    /// log p(z) for u32 indices `[...]` or `[K, ...]`.
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        gather_last(&self.log_probs, &value.to_dtype(DType::U32)?)
    }

    fn sample(&self, rng: &mut SeededRng) -> Result<Tensor> {
        rng.categorical(&self.probs()?.detach())
    }

    /// H(p) = -Σ_i p_i log p_i.
    fn entropy(&self) -> Result<Tensor> {
        self.probs()?.mul(&self.log_probs)?.sum(D::Minus1)?.neg()
    }

    /// E[one-hot(z)] = p.
    fn mean(&self) -> Result<Tensor> {
        self.probs()
    }

    fn name(&self) -> &'static str {
        "Categorical"
    }
}

impl KlDivergence<Categorical> for Categorical {
    /// KL(q || p) = Σ_i q_i (log q_i - log p_i).
    fn kl(&self, p: &Categorical) -> Result<Tensor> {
        self.probs()?.mul(&(&self.log_probs - &p.log_probs)?)?.sum(D::Minus1)
    }
}
