//! Visual question answering with one latent alignment per question over image regions
//! (Deng et al. 2018's VQA columns, whose code the authors never released).
//!
//! * Regions x̃_1..x̃_S: an 8×8 grid of cells from a small CNN trained jointly (three 3×3
//!   conv + ReLU blocks with 2×2 max-pooling), plus a learned embedding of each
//!   cell's position (the 64×64 image is first average-pooled to 32×32; the first two blocks
//!   pool, the third does not); or, for VQA-v2, precomputed grid features.
//! * Question q: LSTM over word embeddings, its state at the last word.
//! * Prior p(z = i | x, q) = softmax_i(vᵀ tanh(W_q q + W_x x̃_i)) (MLP attention).
//! * Answer f(x, i) = softmax(W_2 ReLU(W_1 [q; x̃_i] + b_1) + b_2); soft and relaxed rows read
//!   Σ_i w_i x̃_i instead of x̃_i.
//! * Inference network q(z = i | x, q, a) = softmax_i((U [q; e(a)])ᵀ M x̃_i), conditioned on an
//!   embedding of the gold answer.
//!
//! The "noisy" condition adds N(0, σ²) noise to the region features at test time.
//!
//! `[model.attention]` extends the attention (soft objective only): H heads (each reads its own
//! context, the answer layer reads [q; c_1; ..; c_H]), L stacked hops (hop l+1's query
//! u ← u + tanh(W_u c̄^(l))), Bayesian weights (BAM/BABN, [`crate::attention::bayesian`]) and an
//! alignment-attention regulariser on every hop's per-head queries and keys
//! ([`crate::objective::alignment_attention`]). With one head and nothing else the model is the
//! plain one above, parameter for parameter.
use crate::attention::multihead::Projected;
use crate::attention::{bayesian_layers, head_contexts, AttentionConfig, BayesKind, MlpAttention, PriorConfig};
use crate::distributions::Categorical;
use crate::objective::alignment_attention::AlignmentRegularizer;
use crate::nn::dropout;
use crate::kernels::lstm::{Lstm, LstmConfig};
use crate::objective::{AlignmentOutputs, Enumerable, Relaxed, Sampled};
use crate::rng::SeededRng;
use varattn::nn::ParamStore;
use candle_core::{Result, Tensor, D};
use crate::nn::gemm::Linear;
use candle_nn::{Conv2d, Conv2dConfig, Embedding, Module};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VqaModelConfig {
    pub word_emb: usize,
    pub question_hidden: usize,
    /// Channels of the three conv blocks; the last is the region feature size.
    pub channels: [usize; 3],
    pub attn_hidden: usize,
    pub mlp_hidden: usize,
    pub answer_emb: usize,
    pub dropout: f64,
    pub init: f64,
    /// Heads, stacked hops, Bayesian weights, alignment regulariser (default: the plain
    /// single-head attention of Deng et al.).
    #[serde(default, skip_serializing_if = "AttentionConfig::is_plain")]
    pub attention: AttentionConfig,
}

/// A batch: images `[U, 3, 64, 64]` (f32 in [0, 1]), question ids `[B, L]`, mask `[B, L]`,
/// gold answers `[B]` (u32). With `image_index` (`[B]` u32, question -> row of `images`) the
/// batch's distinct images are stored once each and their CNN features computed once; without
/// it `images` has one row per question (U = B).
pub struct VqaBatch {
    pub images: Tensor,
    pub image_index: Option<Tensor>,
    pub questions: Tensor,
    pub question_mask: Tensor,
    pub answers: Tensor,
}

pub struct VqaModel {
    pub cfg: VqaModelConfig,
    pub answers: usize,
    convs: [Conv2d; 3],
    cell_pos: Tensor,
    words: Embedding,
    question: Lstm,
    attention: MlpAttention,
    mlp1: Linear,
    mlp2: Linear,
    inf_answer: Embedding,
    inf_query: Linear,
    inf_bilinear: Linear,
    /// Hops 2..L: attention layer and query update u ← u + tanh(W_u c) per hop.
    hops: Vec<(MlpAttention, Linear)>,
    /// Contextual prior g(x̃) → one logit per head, per hop.
    prior_nets: Vec<Linear>,
    /// BABN gates c_l, `[L]`.
    babn_gates: Option<Tensor>,
    regularizer: Option<AlignmentRegularizer>,
}

impl VqaModel {
    pub fn new(ps: &mut ParamStore, cfg: &VqaModelConfig, vocab: usize, answers: usize) -> Result<Self> {
        let conv = |ps: &mut ParamStore, name: &str, cin: usize, cout: usize| -> Result<Conv2d> {
            let w = ps.uniform(&format!("{name}.weight"), &[cout, cin, 3, 3])?;
            let b = ps.constant(&format!("{name}.bias"), &[cout], 0.0)?;
            Ok(Conv2d::new(w, Some(b), Conv2dConfig { padding: 1, ..Default::default() }))
        };
        let [c1, c2, c3] = cfg.channels;
        let h = cfg.question_hidden;
        let att = cfg.attention;
        let mut model = Self {
            cfg: cfg.clone(),
            answers,
            convs: [conv(ps, "cnn.0", 3, c1)?, conv(ps, "cnn.1", c1, c2)?, conv(ps, "cnn.2", c2, c3)?],
            cell_pos: ps.uniform("cnn.cell_pos", &[64, c3])?,
            words: ps.embedding("words", vocab, cfg.word_emb)?,
            question: Lstm::new(ps, "question", LstmConfig { input: cfg.word_emb, hidden: h, layers: 1, bidirectional: false, dropout: 0.0 })?,
            attention: MlpAttention::new(ps, "attention", h, c3, cfg.attn_hidden, att.heads)?,
            mlp1: ps.linear("answer.mlp1", h + att.heads * att.hops * c3, cfg.mlp_hidden, true)?,
            mlp2: ps.linear("answer.mlp2", cfg.mlp_hidden, answers, true)?,
            inf_answer: ps.embedding("inference.answer", answers, cfg.answer_emb)?,
            inf_query: ps.linear("inference.query", h + cfg.answer_emb, c3, false)?,
            inf_bilinear: ps.linear("inference.bilinear", c3, c3, false)?,
            hops: vec![],
            prior_nets: vec![],
            babn_gates: None,
            regularizer: None,
        };
        // parameters beyond the plain attention come last, so plain rows draw the same init
        for l in 2..=att.hops {
            let a = MlpAttention::new(ps, &format!("attention.hop{l}"), h, c3, cfg.attn_hidden, att.heads)?;
            let u = ps.linear(&format!("attention.hop{l}.update"), att.heads * c3, h, true)?;
            model.hops.push((a, u));
        }
        if let Some(b) = &att.bayes {
            if matches!(b.prior, PriorConfig::Contextual { .. }) {
                for l in 1..=att.hops {
                    model.prior_nets.push(ps.linear(&format!("attention.prior{l}"), c3, att.heads, true)?);
                }
            }
            if b.kind == BayesKind::Babn {
                if att.hops < 2 {
                    candle_core::bail!("model.attention.bayes.kind = \"babn\" needs model.attention.hops >= 2 (got {})", att.hops)
                }
                model.babn_gates = Some(ps.uniform("attention.babn_gates", &[att.hops])?);
            }
        }
        if let Some(a) = att.regularizer {
            model.regularizer = Some(AlignmentRegularizer::new(ps, "alignment", a, cfg.attn_hidden / att.heads)?);
        }
        Ok(model)
    }

    /// Region features `[B, 64, C]` of images `[B, 3, 64, 64]`.
    pub fn regions(&self, images: &Tensor) -> Result<Tensor> {
        // 64×64 → 32×32 (average), then conv blocks: pool, pool, no pool → an 8×8 grid
        let mut x = images.avg_pool2d(2)?;
        for (k, c) in self.convs.iter().enumerate() {
            x = c.forward(&x)?.relu()?;
            if k < 2 {
                x = x.max_pool2d(2)?;
            }
        }
        let (b, c, gh, gw) = x.dims4()?;
        if gh * gw != 64 {
            candle_core::bail!("VQA images must be 64×64 (got a {gh}×{gw} region grid)")
        }
        x.reshape((b, c, gh * gw))?.transpose(1, 2)?.broadcast_add(&self.cell_pos)
    }

    /// Region features `[B, 64, C]` of a batch's questions: [`VqaModel::regions`] of its
    /// distinct images, gathered by `image_index`.
    pub fn batch_regions(&self, batch: &VqaBatch) -> Result<Tensor> {
        let regions = self.regions(&batch.images)?;
        match &batch.image_index {
            Some(idx) => regions.index_select(idx, 0),
            None => Ok(regions),
        }
    }

    /// Forward pass; `noise_sigma > 0` adds Gaussian noise to the region features (drawn from
    /// `noise_rng`), the test-time "noisy" condition.
    pub fn forward(
        &self,
        batch: &VqaBatch,
        rng: Option<&mut SeededRng>,
        noise: Option<(f64, &mut SeededRng)>,
    ) -> Result<VqaOutputs<'_>> {
        self.forward_sampled(batch, rng, noise, None, false)
    }

    /// [`VqaModel::forward`] with stochastic attention: `attention_rng` draws the Weibull weights
    /// of Bayesian attention (mean weights without it); `training_terms` also computes the KL of
    /// the weights and the alignment regulariser (its key subsample drawn from `attention_rng`).
    pub fn forward_sampled(
        &self,
        batch: &VqaBatch,
        rng: Option<&mut SeededRng>,
        noise: Option<(f64, &mut SeededRng)>,
        attention_rng: Option<&mut SeededRng>,
        training_terms: bool,
    ) -> Result<VqaOutputs<'_>> {
        self.forward_from_regions(batch, self.batch_regions(batch)?, rng, noise, attention_rng, training_terms)
    }

    /// [`VqaModel::forward_sampled`] from region features already computed by
    /// [`VqaModel::regions`] (the CNN is deterministic: repeated stochastic passes share it).
    pub fn forward_from_regions(
        &self,
        batch: &VqaBatch,
        mut regions: Tensor,
        mut rng: Option<&mut SeededRng>,
        noise: Option<(f64, &mut SeededRng)>,
        attention_rng: Option<&mut SeededRng>,
        training_terms: bool,
    ) -> Result<VqaOutputs<'_>> {
        if let Some((sigma, nrng)) = noise {
            if sigma > 0.0 {
                let eps = nrng.normal(regions.shape(), regions.device())?;
                regions = (regions + (eps * sigma)?)?;
            }
        }
        let regions = dropout(&regions, self.cfg.dropout, rng.as_deref_mut())?;
        let emb = dropout(&self.words.forward(&batch.questions)?, self.cfg.dropout, rng)?;
        let (_, finals) = self.question.forward(&emb, Some(&batch.question_mask), None)?;
        let q = finals[0].0.clone(); // [B, H]
        let projected = self.attention.project(&q, &regions)?;
        let scores = self.attention.scores(&projected)?; // [B,H,S]
        let prior_scores = if self.attention.heads == 1 { scores.squeeze(1)? } else { scores.mean(1)? }; // [B,S]
        let a = self.inf_answer.forward(&batch.answers)?;
        let query = self.inf_query.forward(&Tensor::cat(&[&q, &a], 1)?)?; // [B,C]
        let posterior_scores =
            self.inf_bilinear.forward(&regions)?.matmul(&query.unsqueeze(2)?)?.squeeze(D::Minus1)?; // [B,S]
        let layers = if self.cfg.attention.is_plain() {
            None
        } else {
            Some(self.layered_attention(&q, &regions, projected, scores, attention_rng, training_terms)?)
        };
        Ok(VqaOutputs { model: self, q, regions, prior_scores, posterior_scores, gold: batch.answers.clone(), layers })
    }

    /// Multi-head, multi-hop, Bayesian or regularised attention: the upward deterministic pass
    /// (hop l+1's query u ← u + tanh(W_u c̄^(l)) from hop l's mean context), then the weights
    /// of every hop (softmax; or Weibull samples with `rng`, means without, for BAM/BABN), their
    /// KL to the prior, and the alignment regulariser on every hop's per-head queries and keys.
    fn layered_attention(
        &self,
        q: &Tensor,
        regions: &Tensor,
        first: Projected,
        first_scores: Tensor,
        mut rng: Option<&mut SeededRng>,
        training: bool,
    ) -> Result<LayeredAttention> {
        let att = &self.cfg.attention;
        let mut projected = vec![first];
        let mut scores = vec![first_scores];
        let mut u = q.clone();
        for (a, update) in &self.hops {
            let mean = candle_nn::ops::softmax(scores.last().unwrap(), D::Minus1)?;
            u = (u + update.forward(&head_contexts(&mean, regions)?)?.tanh()?)?;
            let p = a.project(&u, regions)?;
            scores.push(a.scores(&p)?);
            projected.push(p);
        }
        let (weights, kl) = match &att.bayes {
            None => (scores.iter().map(|s| candle_nn::ops::softmax(s, D::Minus1)).collect::<Result<Vec<_>>>()?, None),
            Some(b) => {
                let prior_logits: Vec<Option<Tensor>> = if self.prior_nets.is_empty() {
                    vec![None; scores.len()]
                } else {
                    self.prior_nets.iter().map(|n| n.forward(regions)?.transpose(1, 2)?.contiguous().map(Some)).collect::<Result<_>>()?
                };
                let gates: Vec<Tensor> = match &self.babn_gates {
                    Some(g) => (0..scores.len()).map(|l| g.narrow(0, l, 1)).collect::<Result<_>>()?,
                    None => vec![],
                };
                let (layers, kl) = bayesian_layers(b, &scores, &gates, &prior_logits, rng.as_deref_mut(), training)?;
                let kl = kl.map(|k| k.sum(D::Minus1)).transpose()?.map(|k| k * b.kl_weight).transpose()?; // [B]
                (layers.into_iter().map(|l| l.weights).collect(), kl)
            }
        };
        let regularizer = match (&self.regularizer, training) {
            (Some(reg), true) => {
                let mut qs = vec![];
                let mut ks = vec![];
                for (a, p) in std::iter::once(&self.attention).chain(self.hops.iter().map(|(a, _)| a)).zip(&projected) {
                    let (hq, hk) = a.head_sets(p)?;
                    let hk = match (reg.cfg.max_keys, rng.as_deref_mut()) {
                        (Some(m), Some(r)) if m < hk.dim(1)? => {
                            let n = hk.dim(1)?;
                            let mut idx: Vec<u32> = (0..n as u32).collect();
                            r.shuffle(&mut idx);
                            idx.truncate(m);
                            hk.index_select(&Tensor::new(idx.as_slice(), hk.device())?, 1)?
                        }
                        _ => hk,
                    };
                    qs.push(hq);
                    ks.push(hk);
                }
                Some((reg.loss(&Tensor::cat(&qs, 0)?, &Tensor::cat(&ks, 0)?)? * reg.cfg.weight)?)
            }
            _ => None,
        };
        let context = Tensor::cat(&weights.iter().map(|w| head_contexts(w, regions)).collect::<Result<Vec<_>>>()?, 1)?;
        Ok(LayeredAttention { weights, context, kl, regularizer })
    }

    /// Answer log-probabilities `[..., A]` for question states `q [..., H]` and contexts
    /// `x [..., C]` (broadcast over the leading dims).
    fn answer_log_probs(&self, q: &Tensor, x: &Tensor) -> Result<Tensor> {
        let qb = q.broadcast_as(x.dims()[..x.rank() - 1].iter().copied().chain([q.dim(D::Minus1)?]).collect::<Vec<_>>())?;
        let h = self.mlp1.forward(&Tensor::cat(&[&qb, x], D::Minus1)?)?.relu()?;
        candle_nn::ops::log_softmax(&self.mlp2.forward(&h)?, D::Minus1)
    }
}

/// One batch's quantities; "steps" are questions `[B]`, positions the S = 64 regions.
pub struct VqaOutputs<'a> {
    model: &'a VqaModel,
    q: Tensor,
    regions: Tensor,
    prior_scores: Tensor,
    posterior_scores: Tensor,
    gold: Tensor,
    layers: Option<LayeredAttention>,
}

/// The attention of a multi-head / multi-hop / Bayesian / regularised model for one batch.
pub struct LayeredAttention {
    /// Weights per hop `[B, H, S]` (sampled in training for Bayesian attention, else the mean).
    pub weights: Vec<Tensor>,
    /// Concatenated per-hop, per-head contexts `[B, L·H·C]`.
    pub context: Tensor,
    /// kl_weight · Σ_{hops, heads, regions} KL(q(S) ‖ p(S)) per question `[B]` (Bayesian, training).
    pub kl: Option<Tensor>,
    /// λ · alignment-attention regulariser (scalar; training).
    pub regularizer: Option<Tensor>,
}

impl VqaOutputs<'_> {
    fn gold_of(&self, lp: &Tensor) -> Result<Tensor> {
        // lp [..., B, A] → [..., B]
        let gold = self.gold.broadcast_as(lp.dims()[..lp.rank() - 1].to_vec())?.contiguous()?;
        lp.gather(&gold.unsqueeze(D::Minus1)?, D::Minus1)?.squeeze(D::Minus1)
    }

    /// log p(a | x, question) `[B, A]` for prediction: the exact marginal log Σ_i p_i f(x, i)[a]
    /// (`soft = false`), or log f(x, Σ_i w_i x̃_i)[a] with the given weights `w [B, S]`.
    pub fn answer_distribution(&self, soft_weights: Option<&Tensor>) -> Result<Tensor> {
        match soft_weights {
            Some(w) => {
                let ctx = w.unsqueeze(1)?.matmul(&self.regions)?.squeeze(1)?;
                self.model.answer_log_probs(&self.q, &ctx)
            }
            None => {
                let prior = Categorical::from_logits(&self.prior_scores, None)?;
                let lf = self.model.answer_log_probs(&self.q.unsqueeze(1)?, &self.regions)?; // [B,S,A]
                lf.broadcast_add(&prior.log_probs().unsqueeze(D::Minus1)?)?.log_sum_exp(1)
            }
        }
    }

    /// The prior's attention weights `[B, S]` (multi-head/hop models: the first hop's weights
    /// averaged over heads).
    pub fn prior_probs(&self) -> Result<Tensor> {
        match &self.layers {
            Some(l) => l.weights[0].mean(1),
            None => Categorical::from_logits(&self.prior_scores, None)?.probs(),
        }
    }

    /// The layered attention of a model that is not the plain single-head one.
    pub fn layers(&self) -> Option<&LayeredAttention> {
        self.layers.as_ref()
    }

    /// log f(x, c) `[B, A]` with the layered attention's concatenated contexts.
    pub fn layered_answer_log_probs(&self) -> Result<Tensor> {
        match &self.layers {
            Some(l) => self.model.answer_log_probs(&self.q, &l.context),
            None => candle_core::bail!("the plain attention model has no layered attention"),
        }
    }

    /// log f(x, c) of the gold answers `[B]` (layered attention).
    pub fn layered_gold_log_prob(&self) -> Result<Tensor> {
        self.gold_of(&self.layered_answer_log_probs()?)
    }

    /// Mean entropy of the attention weights per question `[B]`, averaged over hops and heads.
    pub fn layered_entropy(&self) -> Result<Tensor> {
        let l = self.layers.as_ref().ok_or_else(|| candle_core::Error::Msg("no layered attention".into()))?;
        let mut total: Option<Tensor> = None;
        for w in &l.weights {
            let h = w.clamp(1e-30, 1.0)?.log()?.mul(w)?.sum(D::Minus1)?.neg()?.mean(D::Minus1)?; // [B]
            total = Some(match total {
                Some(t) => (t + h)?,
                None => h,
            });
        }
        total.unwrap() / l.weights.len() as f64
    }
}

impl AlignmentOutputs for VqaOutputs<'_> {
    fn prior_scores(&self) -> &Tensor {
        &self.prior_scores
    }
    fn posterior_scores(&self) -> Option<&Tensor> {
        Some(&self.posterior_scores)
    }
    fn position_mask(&self) -> Option<&Tensor> {
        None
    }
    fn step_mask(&self) -> Option<&Tensor> {
        None
    }
    varattn::every_likelihood_capability!();
}

impl Enumerable for VqaOutputs<'_> {
    fn log_f_all(&self) -> Result<Tensor> {
        let lf = self.model.answer_log_probs(&self.q.unsqueeze(1)?, &self.regions)?; // [B,S,A]
        let (b, s, _) = lf.dims3()?;
        let gold = self.gold.unsqueeze(1)?.broadcast_as((b, s))?.contiguous()?;
        lf.gather(&gold.unsqueeze(2)?, 2)?.squeeze(2)
    }
}

impl Sampled for VqaOutputs<'_> {
    fn log_f_at(&self, z: &Tensor) -> Result<Tensor> {
        let (k, b) = z.dims2()?;
        let c = self.regions.dim(2)?;
        let idx = z.unsqueeze(2)?.broadcast_as((k, b, c))?.contiguous()?; // [K,B,C]
        let s = self.regions.dim(1)?;
        let regions = self.regions.unsqueeze(0)?.broadcast_as((k, b, s, c))?.contiguous()?;
        let picked = regions.gather(&idx.unsqueeze(2)?, 2)?.squeeze(2)?; // [K,B,C]
        let lp = self.model.answer_log_probs(&self.q, &picked)?; // [K,B,A]
        self.gold_of(&lp)
    }
}

impl Relaxed for VqaOutputs<'_> {
    fn log_f_relaxed(&self, w: &Tensor) -> Result<Tensor> {
        let ctx = w.unsqueeze(1)?.matmul(&self.regions)?.squeeze(1)?;
        self.gold_of(&self.model.answer_log_probs(&self.q, &ctx)?)
    }
    fn log_f_soft(&self) -> Result<Tensor> {
        self.log_f_relaxed(&self.prior_probs()?)
    }
}
