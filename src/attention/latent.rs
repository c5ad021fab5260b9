//! A latent-alignment attention layer in candle's conventions (`Config`, `new(cfg, vb)`,
//! `forward`), to place in a model of one's own.
//!
//! MLP attention (Bahdanau et al.; Deng et al. 2018, eq. 1) scores every position i of the keys
//! for every query t, e_{t,i} = vᵀ tanh(W_q q_t + W_k k_i + b), and returns the alignment
//! distribution p(z_t = i) = softmax_i e_{t,i} with padded positions excluded, as a
//! [`Categorical`] `[B, T, S]`. Used with the decoder state as query it is the prior
//! p(z_t | x, y_<t); used with a query that has read the target (y_t, or the whole y) it is the
//! inference network q(z_t | x, y). The objectives of [`crate::objective`] take it from there:
//! soft attention reads the context Σ_i p_i v_i ([`LatentAttention::context`]); the exact marginal,
//! hard attention and variational attention need log f(y_t | x, z_t = i) for each i.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use varattn::attention::{LatentAttention, LatentAttentionConfig};
//! use varattn::nn::SeededVarMap;
//! let dev = Device::Cpu;
//! let vars = SeededVarMap::new(3435);
//! let cfg = LatentAttentionConfig { query_dim: 8, key_dim: 6, hidden: 16 };
//! let attn = LatentAttention::new(cfg, vars.var_builder(DType::F32, &dev).pp("prior"))?;
//! let queries = Tensor::ones((2, 3, 8), DType::F32, &dev)?;   // [B, T, query_dim]
//! let keys = Tensor::ones((2, 5, 6), DType::F32, &dev)?;      // [B, S, key_dim]
//! let mask = Tensor::new(&[[1u8, 1, 1, 1, 1], [1, 1, 1, 0, 0]], &dev)?; // [B, S]
//! let p = attn.forward(&queries, &keys, Some(&mask))?;         // p(z_t = i): [B, T, S]
//! let probs = p.probs()?.to_vec3::<f32>()?;
//! assert_eq!(probs[1][0][3], 0.0);                               // padding gets no mass
//! assert!((probs[1][2].iter().sum::<f32>() - 1.0).abs() < 1e-6);
//! # Ok::<(), candle_core::Error>(())
//! ```
use crate::distributions::Categorical;
use candle_core::{Result, Tensor, D};
use candle_nn::{Linear, Module, VarBuilder};

/// Sizes of a [`LatentAttention`] layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatentAttentionConfig {
    /// Width of the queries q_t.
    pub query_dim: usize,
    /// Width of the keys k_i.
    pub key_dim: usize,
    /// Width of the hidden layer of the MLP score.
    pub hidden: usize,
}

/// MLP attention returning the alignment distribution; parameters `query.weight`,
/// `key.weight`, `key.bias` and `score.weight` under the builder's prefix.
#[derive(Debug, Clone)]
pub struct LatentAttention {
    query: Linear,
    key: Linear,
    score: Linear,
}

impl LatentAttention {
    pub fn new(cfg: LatentAttentionConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            query: candle_nn::linear_no_bias(cfg.query_dim, cfg.hidden, vb.pp("query"))?,
            key: candle_nn::linear(cfg.key_dim, cfg.hidden, vb.pp("key"))?,
            score: candle_nn::linear_no_bias(cfg.hidden, 1, vb.pp("score"))?,
        })
    }

    /// The scores e_{t,i}: queries `[B, T, query_dim]`, keys `[B, S, key_dim]` -> `[B, T, S]`.
    pub fn scores(&self, queries: &Tensor, keys: &Tensor) -> Result<Tensor> {
        let q = self.query.forward(queries)?.unsqueeze(2)?; // [B, T, 1, H]
        let k = self.key.forward(keys)?.unsqueeze(1)?; // [B, 1, S, H]
        self.score.forward(&q.broadcast_add(&k)?.tanh()?)?.squeeze(D::Minus1)
    }

    /// p(z_t = i) = softmax_i e_{t,i}, `[B, T, S]`; `key_mask` `[B, S]` (1 = a position, 0 =
    /// padding) excludes padding.
    pub fn forward(&self, queries: &Tensor, keys: &Tensor, key_mask: Option<&Tensor>) -> Result<Categorical> {
        let mask = key_mask.map(|m| m.unsqueeze(1)).transpose()?;
        Categorical::from_logits(&self.scores(queries, keys)?, mask.as_ref())
    }

    /// The soft-attention context c_t = Σ_i p(z_t = i) v_i: `values` `[B, S, D]` -> `[B, T, D]`.
    pub fn context(alignment: &Categorical, values: &Tensor) -> Result<Tensor> {
        alignment.probs()?.matmul(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::SeededVarMap;
    use candle_core::{DType, Device};

    #[test]
    fn scores_are_the_mlp_formula_and_masked_positions_get_no_mass() {
        let dev = Device::Cpu;
        let vars = SeededVarMap::new(1);
        let attn = LatentAttention::new(LatentAttentionConfig { query_dim: 3, key_dim: 2, hidden: 4 }, vars.var_builder(DType::F64, &dev)).unwrap();
        let q = Tensor::new(&[[[0.5f64, -1.0, 2.0], [0.1, 0.2, 0.3]]], &dev).unwrap(); // [1, 2, 3]
        let k = Tensor::new(&[[[1.0f64, 0.0], [-0.5, 2.0], [0.3, 0.3]]], &dev).unwrap(); // [1, 3, 2]
        let got = attn.scores(&q, &k).unwrap().to_vec3::<f64>().unwrap();
        let w = |n: &str| vars.var_map().data().lock().unwrap()[n].as_tensor().clone();
        let (wq, wk, bk, v) = (w("query.weight").to_vec2::<f64>().unwrap(), w("key.weight").to_vec2::<f64>().unwrap(), w("key.bias").to_vec1::<f64>().unwrap(), w("score.weight").to_vec2::<f64>().unwrap());
        let (qv, kv) = (q.to_vec3::<f64>().unwrap(), k.to_vec3::<f64>().unwrap());
        for t in 0..2 {
            for i in 0..3 {
                let e: f64 = (0..4)
                    .map(|h| {
                        let pre = (0..3).map(|d| wq[h][d] * qv[0][t][d]).sum::<f64>() + (0..2).map(|d| wk[h][d] * kv[0][i][d]).sum::<f64>() + bk[h];
                        v[0][h] * pre.tanh()
                    })
                    .sum();
                assert!((got[0][t][i] - e).abs() < 1e-12, "t {t} i {i}: {} vs {e}", got[0][t][i]);
            }
        }
        let mask = Tensor::new(&[[1u8, 0, 1]], &dev).unwrap();
        let p = attn.forward(&q, &k, Some(&mask)).unwrap().probs().unwrap().to_vec3::<f64>().unwrap();
        for t in 0..2 {
            let z = got[0][t][0].exp() + got[0][t][2].exp();
            assert_eq!(p[0][t][1], 0.0);
            assert!((p[0][t][0] - got[0][t][0].exp() / z).abs() < 1e-12);
        }
    }
}
