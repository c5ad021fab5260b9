//! A synthetic latent-alignment task small enough to train every objective in seconds: reverse
//! a source sequence of random symbols, where each target symbol is copied from one source
//! position (the latent alignment a_t = L - 1 - t) and replaced by a random symbol with a small
//! probability. The true alignment is known, so alignment accuracy can be measured.
//!
//! Model (a miniature of Deng et al.'s): keys k_i = E[x_i] + P[L - 1 - i], queries h_t = Q[t],
//! prior p(z_t = i) = softmax_i(h_tᵀ W k_i); output f(x, i) = softmax(W_o tanh(W_c e(x_i))), and
//! the soft / relaxed output reads the context Σ_i w_i e(x_i). The inference network q adds a
//! term that sees the target symbol: score_q = h'_tᵀ W' k'_i + u(y_t)ᵀ v(x_i).
use crate::objective::{AlignmentOutputs, Enumerable, Relaxed, Sampled};
use crate::rng::SeededRng;
use varattn::nn::ParamStore;
use candle_core::{DType, Device, Result, Tensor, D};
use crate::nn::gemm::Linear;
use candle_nn::{Embedding, Module};

/// Task settings: symbols 1..=vocab (0 is padding), lengths min_len..=max_len.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct ReversalTask {
    pub vocab: usize,
    pub min_len: usize,
    pub max_len: usize,
    /// Probability that a target symbol is replaced by a uniformly random one.
    pub noise: f64,
}

/// One padded batch; target length equals source length.
pub struct ReversalBatch {
    pub src: Tensor,
    pub tgt: Tensor,
    /// Distance of each source position from the end, L - 1 - i (0 at padding).
    pub from_end: Tensor,
    pub src_mask: Tensor,
    pub tgt_mask: Tensor,
    /// The true alignment a_t, `[B, T]` u32.
    pub align: Tensor,
}

impl ReversalTask {
    pub fn batch(&self, size: usize, rng: &mut SeededRng, device: &Device) -> Result<ReversalBatch> {
        let s = self.max_len;
        let (mut src, mut tgt, mut from_end) = (vec![0u32; size * s], vec![0u32; size * s], vec![0u32; size * s]);
        let (mut smask, mut align) = (vec![0f32; size * s], vec![0u32; size * s]);
        for b in 0..size {
            let len = self.min_len + rng.next_index(self.max_len - self.min_len + 1);
            for i in 0..len {
                src[b * s + i] = 1 + rng.next_index(self.vocab) as u32;
                from_end[b * s + i] = (len - 1 - i) as u32;
                smask[b * s + i] = 1.0;
            }
            for t in 0..len {
                let a = len - 1 - t;
                align[b * s + t] = a as u32;
                tgt[b * s + t] = if rng.next_uniform() < self.noise {
                    1 + rng.next_index(self.vocab) as u32
                } else {
                    src[b * s + a]
                };
            }
        }
        let mk = |v: Vec<u32>| Tensor::from_vec(v, (size, s), device);
        let src_mask = Tensor::from_vec(smask, (size, s), device)?;
        Ok(ReversalBatch {
            src: mk(src)?,
            tgt: mk(tgt)?,
            from_end: mk(from_end)?,
            tgt_mask: src_mask.clone(),
            src_mask,
            align: mk(align)?,
        })
    }
}

struct Scorer {
    key_emb: Embedding,
    key_pos: Embedding,
    query_pos: Embedding,
    bilinear: Linear,
}

impl Scorer {
    fn new(ps: &mut ParamStore, name: &str, vocab: usize, len: usize, d: usize) -> Result<Self> {
        Ok(Self {
            key_emb: ps.embedding(&format!("{name}.key_emb"), vocab + 1, d)?,
            key_pos: ps.embedding(&format!("{name}.key_pos"), len, d)?,
            query_pos: ps.embedding(&format!("{name}.query_pos"), len, d)?,
            bilinear: ps.linear(&format!("{name}.bilinear"), d, d, false)?,
        })
    }

    /// h_tᵀ W k_i, `[B, T, S]`.
    fn scores(&self, batch: &ReversalBatch) -> Result<Tensor> {
        let keys = (self.key_emb.forward(&batch.src)? + self.key_pos.forward(&batch.from_end)?)?; // [B,S,d]
        let t = batch.tgt.dim(1)?;
        let pos = Tensor::arange(0u32, t as u32, batch.src.device())?;
        let q = self.bilinear.forward(&self.query_pos.forward(&pos)?)?; // [T,d]
        q.unsqueeze(0)?.broadcast_matmul(&keys.transpose(1, 2)?) // [B,T,S]
    }
}

/// The model's parameters.
pub struct ReversalModel {
    prior: Scorer,
    posterior: Scorer,
    y_emb: Embedding,
    x_emb: Embedding,
    out_emb: Embedding,
    w_c: Linear,
    w_o: Linear,
}

impl ReversalModel {
    pub fn new(ps: &mut ParamStore, task: &ReversalTask, d: usize) -> Result<Self> {
        let v = task.vocab;
        Ok(Self {
            prior: Scorer::new(ps, "prior", v, task.max_len, d)?,
            posterior: Scorer::new(ps, "posterior", v, task.max_len, d)?,
            y_emb: ps.embedding("posterior.y_emb", v + 1, d)?,
            x_emb: ps.embedding("posterior.x_emb", v + 1, d)?,
            out_emb: ps.embedding("out.emb", v + 1, d)?,
            w_c: ps.linear("out.w_c", d, d, true)?,
            w_o: ps.linear("out.w_o", d, v + 1, true)?,
        })
    }

    pub fn forward<'a>(&'a self, batch: &'a ReversalBatch) -> Result<ReversalOutputs<'a>> {
        let (b, s) = batch.src.dims2()?;
        let t = batch.tgt.dim(1)?;
        let prior_scores = self.prior.scores(batch)?;
        let match_term = self.y_emb.forward(&batch.tgt)?.matmul(&self.x_emb.forward(&batch.src)?.transpose(1, 2)?)?;
        let posterior_scores = (self.posterior.scores(batch)? + match_term)?;
        let values = self.out_emb.forward(&batch.src)?; // [B,S,d]
        let src_lsm = self.output_log_softmax(&values)?; // [B,S,V]
        let gold = batch.tgt.unsqueeze(2)?.broadcast_as((b, t, s))?.contiguous()?;
        let log_f_all = src_lsm.transpose(1, 2)?.contiguous()?.gather(&gold, 1)?; // [B,T,S]
        Ok(ReversalOutputs {
            model: self,
            batch,
            prior_scores,
            posterior_scores,
            position_mask: batch.src_mask.unsqueeze(1)?.broadcast_as((b, t, s))?.contiguous()?,
            values,
            log_f_all,
        })
    }

    fn output_log_softmax(&self, context: &Tensor) -> Result<Tensor> {
        let h = self.w_c.forward(context)?.tanh()?;
        candle_nn::ops::log_softmax(&self.w_o.forward(&h)?, D::Minus1)
    }
}

/// One batch's alignment quantities.
pub struct ReversalOutputs<'a> {
    model: &'a ReversalModel,
    batch: &'a ReversalBatch,
    prior_scores: Tensor,
    posterior_scores: Tensor,
    position_mask: Tensor,
    values: Tensor,
    log_f_all: Tensor,
}

impl ReversalOutputs<'_> {
    /// Fraction of real target steps whose prior mode is the true alignment.
    pub fn alignment_accuracy(&self) -> Result<(f64, f64)> {
        let prior = crate::distributions::Categorical::from_logits(&self.prior_scores, Some(&self.position_mask))?;
        let mode = prior.log_probs().argmax(D::Minus1)?;
        let hit = mode.eq(&self.batch.align)?.to_dtype(DType::F32)?.mul(&self.batch.tgt_mask)?;
        Ok((hit.sum_all()?.to_scalar::<f32>()? as f64, self.batch.tgt_mask.sum_all()?.to_scalar::<f32>()? as f64))
    }
}

impl AlignmentOutputs for ReversalOutputs<'_> {
    fn prior_scores(&self) -> &Tensor {
        &self.prior_scores
    }
    fn posterior_scores(&self) -> Option<&Tensor> {
        Some(&self.posterior_scores)
    }
    fn position_mask(&self) -> Option<&Tensor> {
        Some(&self.position_mask)
    }
    fn step_mask(&self) -> Option<&Tensor> {
        Some(&self.batch.tgt_mask)
    }
    varattn::every_likelihood_capability!();
}

impl Enumerable for ReversalOutputs<'_> {
    fn log_f_all(&self) -> Result<Tensor> {
        Ok(self.log_f_all.clone())
    }
}

impl Sampled for ReversalOutputs<'_> {
    fn log_f_at(&self, z: &Tensor) -> Result<Tensor> {
        let k = z.dim(0)?;
        let (b, t, s) = self.log_f_all.dims3()?;
        self.log_f_all
            .unsqueeze(0)?
            .broadcast_as((k, b, t, s))?
            .contiguous()?
            .gather(&z.unsqueeze(D::Minus1)?.contiguous()?, D::Minus1)?
            .squeeze(D::Minus1)
    }
}

impl Relaxed for ReversalOutputs<'_> {
    fn log_f_relaxed(&self, w: &Tensor) -> Result<Tensor> {
        let context = w.matmul(&self.values)?; // [B,T,d]
        let lsm = self.model.output_log_softmax(&context)?;
        lsm.gather(&self.batch.tgt.unsqueeze(D::Minus1)?.contiguous()?, D::Minus1)?.squeeze(D::Minus1)
    }
    fn log_f_soft(&self) -> Result<Tensor> {
        let p = crate::distributions::Categorical::from_logits(&self.prior_scores, Some(&self.position_mask))?.probs()?;
        self.log_f_relaxed(&p)
    }
}
