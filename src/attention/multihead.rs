//! Multi-head MLP (Bahdanau) attention over regions: per head h,
//! score_h(q, x̃_i) = v_hᵀ tanh([W_q q]_h + [W_x x̃_i]_h), where [·]_h is the h-th slice of
//! A/H hidden units; the query of head h is [W_q q]_h and its keys are [W_x x̃_i]_h. With one
//! head this is exactly the single-head attention v ᵀ tanh(W_q q + W_x x̃_i) (same parameters,
//! same names, same operations).
use crate::nn::ParamStore;
use candle_core::{Result, Tensor, D};
use crate::nn::gemm::Linear;
use candle_nn::Module;

pub struct MlpAttention {
    pub heads: usize,
    pub hidden: usize,
    w_q: Linear,
    w_x: Linear,
    /// One head: a Linear A → 1 (`<name>.v.weight [1, A]`); H heads: `<name>.v.weight [H, A/H]`.
    v: Tensor,
    v_linear: Option<Linear>,
}

/// The projected query `[B, A]` and keys `[B, S, A]` of one attention layer.
pub struct Projected {
    pub query: Tensor,
    pub keys: Tensor,
}

impl MlpAttention {
    /// Parameters `<name>.w_q` (no bias), `<name>.w_x` (bias), `<name>.v`, created in that order.
    pub fn new(ps: &mut ParamStore, name: &str, d_query: usize, d_key: usize, hidden: usize, heads: usize) -> Result<Self> {
        if heads == 0 || hidden % heads != 0 {
            candle_core::bail!("attention: {heads} heads must divide the {hidden} hidden units (model.attn_hidden)")
        }
        let w_q = ps.linear(&format!("{name}.w_q"), d_query, hidden, false)?;
        let w_x = ps.linear(&format!("{name}.w_x"), d_key, hidden, true)?;
        let (v, v_linear) = if heads == 1 {
            let l = ps.linear(&format!("{name}.v"), hidden, 1, false)?;
            (l.weight().clone(), Some(l))
        } else {
            (ps.uniform(&format!("{name}.v.weight"), &[heads, hidden / heads])?, None)
        };
        Ok(Self { heads, hidden, w_q, w_x, v, v_linear })
    }

    /// Query W_q q `[B, A]` and keys W_x x̃ + b `[B, S, A]`.
    pub fn project(&self, query: &Tensor, regions: &Tensor) -> Result<Projected> {
        Ok(Projected { query: self.w_q.forward(query)?, keys: self.w_x.forward(regions)? })
    }

    /// Scores `[B, H, S]`: v_hᵀ tanh(query_h + key_{h,i}).
    pub fn scores(&self, p: &Projected) -> Result<Tensor> {
        let hidden = p.keys.broadcast_add(&p.query.unsqueeze(1)?)?.tanh()?; // [B,S,A]
        match &self.v_linear {
            Some(v) => v.forward(&hidden)?.squeeze(D::Minus1)?.unsqueeze(1), // [B,1,S]
            None => {
                let (b, s, _) = hidden.dims3()?;
                let per_head = hidden.reshape((b, s, self.heads, self.hidden / self.heads))?;
                per_head.broadcast_mul(&self.v)?.sum(D::Minus1)?.transpose(1, 2)?.contiguous() // [B,H,S]
            }
        }
    }

    /// Per-head queries `[H, B, d]` and keys `[H, B·S, d]` (d = A/H), the sets that alignment
    /// attention matches within each head.
    pub fn head_sets(&self, p: &Projected) -> Result<(Tensor, Tensor)> {
        let (b, s, a) = p.keys.dims3()?;
        let d = a / self.heads;
        let q = p.query.reshape((b, self.heads, d))?.transpose(0, 1)?.contiguous()?;
        let k = p.keys.reshape((b * s, self.heads, d))?.transpose(0, 1)?.contiguous()?;
        Ok((q, k))
    }
}

/// Per-head contexts c_h = Σ_i w_hi x̃_i of weights `[B, H, S]` and regions `[B, S, C]`,
/// concatenated: `[B, H·C]`.
pub fn head_contexts(weights: &Tensor, regions: &Tensor) -> Result<Tensor> {
    let (b, h, _) = weights.dims3()?;
    let c = regions.dim(2)?;
    weights.matmul(regions)?.reshape((b, h * c))
}
