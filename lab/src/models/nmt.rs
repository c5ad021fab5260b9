//! The encoder-decoder of Deng et al. (2018) with a latent alignment per target step.
//!
//! * Encoder: stacked BiLSTM over source subword embeddings → x̃_1..x̃_S.
//! * Decoder: stacked LSTM whose input at step t is [emb(y_{t-1}); c_{t-1}] (input feeding with
//!   the soft context c_t = Σ_i p_{t,i} x̃_i, in every row, latent or not).
//! * Prior p(z_t = i | x, y_<t) = softmax_i(vᵀ tanh(W_h h_t + W_x x̃_i + b)) (MLP / Bahdanau).
//! * Output f(x, i) = softmax(W_o tanh(W_c [h_t; x̃_i]) + b_o), one output layer for every row;
//!   soft and relaxed rows read tanh(W_c [h_t; Σ_i w_i x̃_i]). Since W_c [h; x] = U h + V x + b, the
//!   pre-activations U h_t and V x̃_i are computed once and combined per alignment.
//! * Inference network q(z_t = i | x, y) = softmax_i(s_tᵀ M u_i): BiLSTM over the source, BiLSTM
//!   over the whole target, bilinear score; it shares only the word embeddings.
//!
//! Exact enumeration never builds `[B, T, S, V]` logits: log f(x, i) of the gold token for every i
//! goes through [`crate::kernels::gold_log_softmax`] (chunked, O(B·T·S·O + chunk·V) memory).
use crate::data::nmt::NmtBatch;
use crate::distributions::Categorical;
use crate::kernels::attention_decoder::attention_decoder_fused;
use crate::kernels::gold_log_softmax;
use crate::nn::dropout;
use crate::kernels::fast_math;
use crate::kernels::lstm::{Lstm, LstmConfig, StackedLstmCell};
use crate::objective::{AlignmentOutputs, Enumerable, ObjectiveKind, Relaxed, Sampled};
use crate::rng::SeededRng;
use varattn::nn::ParamStore;
use candle_core::{DType, Result, Tensor, D};
use crate::nn::gemm::Linear;
use candle_nn::{Embedding, Module};
use serde::{Deserialize, Serialize};

/// Sizes of the model (the `paper` preset: emb 512, encoder 512 per direction × 2 layers,
/// decoder 768 × 2, attention 512).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NmtModelConfig {
    pub emb: usize,
    /// Per direction.
    pub enc_hidden: usize,
    pub enc_layers: usize,
    pub dec_hidden: usize,
    pub dec_layers: usize,
    pub attn_hidden: usize,
    /// Width of tanh(W_c [h; x̃]) before the vocabulary projection (the authors' `linear_out`
    /// maps [h_t; c_t] to the decoder size: out_hidden = dec_hidden in the `paper` preset).
    pub out_hidden: usize,
    /// Inference-network BiLSTM size per direction.
    pub inf_hidden: usize,
    /// Layers of each inference-network BiLSTM (source and target): 2 in the authors' code
    /// (`bigbrnn`, the `paper` preset), 1 when absent.
    #[serde(default = "one_layer")]
    pub inf_layers: usize,
    pub dropout: f64,
    /// Uniform initialisation range.
    pub init: f64,
}

fn one_layer() -> usize {
    1
}

struct InferenceNet {
    src_lstm: Lstm,
    tgt_lstm: Lstm,
    bilinear: Linear,
}

pub struct NmtModel {
    pub cfg: NmtModelConfig,
    pub vocab: usize,
    src_emb: Embedding,
    tgt_emb: Embedding,
    encoder: Lstm,
    decoder: StackedLstmCell,
    att_h: Linear,
    att_x: Linear,
    att_v: Linear,
    out_h: Linear,
    out_x: Linear,
    out_w: Tensor,
    out_b: Tensor,
    inference: Option<InferenceNet>,
    /// Teacher-forced decoding through [`attention_decoder_fused`] (CPU) rather than step by
    /// step through [`NmtModel::step`].
    fused_decoder: bool,
}

/// Encoder results reused across decoding steps.
pub struct Encoded {
    /// x̃, `[B, S, E]`.
    pub states: Tensor,
    /// W_x x̃ + b, `[B, S, A]`.
    att_keys: Tensor,
    /// V x̃ (output-layer pre-activation), `[B, S, O]`.
    out_keys: Tensor,
    pub src_mask: Tensor,
}

/// Decoder state for step-by-step decoding.
#[derive(Clone)]
pub struct DecoderState {
    pub lstm: Vec<(Tensor, Tensor)>,
    /// The soft context fed to the next step, `[N, E]`.
    pub feed: Tensor,
}

impl NmtModel {
    pub fn new(ps: &mut ParamStore, cfg: &NmtModelConfig, vocab: usize, with_inference: bool) -> Result<Self> {
        let enc_out = 2 * cfg.enc_hidden;
        let lstm = |ps: &mut ParamStore, name: &str, input: usize, hidden: usize, layers: usize| {
            Lstm::new(ps, name, LstmConfig { input, hidden, layers, bidirectional: true, dropout: cfg.dropout })
        };
        let src_emb = ps.embedding("src_emb", vocab, cfg.emb)?;
        let tgt_emb = ps.embedding("tgt_emb", vocab, cfg.emb)?;
        let encoder = lstm(ps, "encoder", cfg.emb, cfg.enc_hidden, cfg.enc_layers)?;
        let decoder = StackedLstmCell::new(ps, "decoder", cfg.emb + enc_out, cfg.dec_hidden, cfg.dec_layers, cfg.dropout)?;
        let inference = if with_inference {
            Some(InferenceNet {
                src_lstm: lstm(ps, "inference.src", cfg.emb, cfg.inf_hidden, cfg.inf_layers)?,
                tgt_lstm: lstm(ps, "inference.tgt", cfg.emb, cfg.inf_hidden, cfg.inf_layers)?,
                bilinear: ps.linear("inference.bilinear", 2 * cfg.inf_hidden, 2 * cfg.inf_hidden, false)?,
            })
        } else {
            None
        };
        Ok(Self {
            cfg: cfg.clone(),
            vocab,
            src_emb,
            tgt_emb,
            encoder,
            decoder,
            att_h: ps.linear("attention.w_h", cfg.dec_hidden, cfg.attn_hidden, false)?,
            att_x: ps.linear("attention.w_x", enc_out, cfg.attn_hidden, true)?,
            att_v: ps.linear("attention.v", cfg.attn_hidden, 1, false)?,
            out_h: ps.linear("output.w_ch", cfg.dec_hidden, cfg.out_hidden, true)?,
            out_x: ps.linear("output.w_cx", enc_out, cfg.out_hidden, false)?,
            out_w: ps.uniform("output.w_o.weight", &[vocab, cfg.out_hidden])?,
            out_b: ps.uniform("output.w_o.bias", &[vocab])?,
            inference,
            fused_decoder: true,
        })
    }

    /// Chooses how [`NmtModel::forward`] runs the decoder under teacher forcing: through the fused
    /// op (the default; used on the CPU only) or step by step with candle ops (always on other
    /// devices). Both compute the same function with the same dropout masks.
    pub fn set_fused_decoder(&mut self, on: bool) {
        self.fused_decoder = on;
    }

    pub fn has_inference_network(&self) -> bool {
        self.inference.is_some()
    }

    pub fn encode(&self, src: &Tensor, src_mask: &Tensor, mut rng: Option<&mut SeededRng>) -> Result<Encoded> {
        let p = self.cfg.dropout;
        let emb = dropout(&self.src_emb.forward(src)?, p, rng.as_deref_mut())?;
        let states = self.encoder.outputs(&emb, Some(src_mask), rng.as_deref_mut())?;
        let states = dropout(&states, p, rng)?;
        Ok(Encoded {
            att_keys: self.att_x.forward(&states)?,
            out_keys: self.out_x.forward(&states)?,
            states,
            src_mask: src_mask.clone(),
        })
    }

    pub fn initial_state(&self, enc: &Encoded) -> Result<DecoderState> {
        let (b, _, e) = enc.states.dims3()?;
        Ok(DecoderState { lstm: self.decoder.zero_state(b)?, feed: Tensor::zeros((b, e), enc.states.dtype(), enc.states.device())? })
    }

    /// One decoder step for the previous tokens `y_prev [N]`: returns h_t `[N, H]`, the prior
    /// scores `[N, S]` and the next state (whose feed is the soft context).
    pub fn step(
        &self,
        enc: &Encoded,
        y_prev: &Tensor,
        state: &DecoderState,
        rng: Option<&mut SeededRng>,
    ) -> Result<(Tensor, Tensor, DecoderState)> {
        self.step_with(enc, y_prev, state, rng, None)
    }

    /// [`NmtModel::step`], with `kmax = Some(K)` (K < S) feeding the K-Max context: the prior's
    /// scores outside its K largest are masked inside the attention, as the authors' K-Max does,
    /// so the next step reads c_t = Σ_{i ∈ top-K(p_t)} p_K(i) x̃_i with
    /// p_K(i) = p_{t,i} / Σ_{j ∈ top-K(p_t)} p_{t,j}. The scores returned are the raw ones (the
    /// K-Max objective and decoding restrict them to the same top K).
    pub fn step_with(
        &self,
        enc: &Encoded,
        y_prev: &Tensor,
        state: &DecoderState,
        mut rng: Option<&mut SeededRng>,
        kmax: Option<usize>,
    ) -> Result<(Tensor, Tensor, DecoderState)> {
        let emb = dropout(&self.tgt_emb.forward(y_prev)?, self.cfg.dropout, rng.as_deref_mut())?;
        let x = Tensor::cat(&[&emb, &state.feed], 1)?;
        let (h, lstm) = self.decoder.step(&x, &state.lstm, rng)?;
        let q = self.att_h.forward(&h)?.unsqueeze(1)?; // [N,1,A]
        let scores = self.att_v.forward(&enc.att_keys.broadcast_add(&q)?.tanh()?)?.squeeze(D::Minus1)?; // [N,S]
        let prior = Categorical::from_logits(&scores, Some(&enc.src_mask))?;
        let p = match kmax {
            Some(k) if k < scores.dim(1)? => prior.restrict_to_top_k(k)?.probs()?,
            _ => prior.probs()?,
        };
        let feed = p.unsqueeze(1)?.matmul(&enc.states)?.squeeze(1)?;
        Ok((h, scores, DecoderState { lstm, feed }))
    }

    /// Teacher-forced forward pass over a batch. `rng = Some(..)` in training (dropout).
    pub fn forward<'a>(&'a self, batch: &'a NmtBatch, rng: Option<&mut SeededRng>) -> Result<NmtOutputs<'a>> {
        self.forward_with(batch, rng, None)
    }

    /// The forward pass an objective reads: for K-Max ([`ObjectiveKind::KMax`]) the decoder
    /// feeds the K-Max context at every step ([`NmtModel::step_with`]), for every other
    /// objective it is [`NmtModel::forward`].
    pub fn forward_for<'a>(&'a self, kind: &ObjectiveKind, batch: &'a NmtBatch, rng: Option<&mut SeededRng>) -> Result<NmtOutputs<'a>> {
        match *kind {
            ObjectiveKind::KMax { k } => self.forward_with(batch, rng, Some(k)),
            _ => self.forward(batch, rng),
        }
    }

    /// [`NmtModel::forward`], feeding the K-Max context when `kmax = Some(K)` with K < S (then
    /// step by step: the fused decoder feeds the full soft context).
    pub fn forward_with<'a>(&'a self, batch: &'a NmtBatch, mut rng: Option<&mut SeededRng>, kmax: Option<usize>) -> Result<NmtOutputs<'a>> {
        let enc = self.encode(&batch.src, &batch.src_mask, rng.as_deref_mut())?;
        let (b, t) = batch.tgt_in.dims2()?;
        let s = batch.src.dim(1)?;
        let kmax = kmax.filter(|&k| k < s);
        let fused = kmax.is_none()
            && self.fused_decoder
            && enc.states.device().is_cpu()
            && matches!(enc.states.dtype(), DType::F32 | DType::F64);
        let (h, prior_scores) = if fused {
            self.decode_fused(&enc, &batch.tgt_in, rng.as_deref_mut())?
        } else {
            let mut state = self.initial_state(&enc)?;
            let (mut hs, mut scores) = (Vec::with_capacity(t), Vec::with_capacity(t));
            for j in 0..t {
                let y_prev = batch.tgt_in.narrow(1, j, 1)?.squeeze(1)?;
                let (h, sc, next) = self.step_with(&enc, &y_prev, &state, rng.as_deref_mut(), kmax)?;
                hs.push(h);
                scores.push(sc);
                state = next;
            }
            (Tensor::stack(&hs, 1)?, Tensor::stack(&scores, 1)?)
        };
        let h = dropout(&h, self.cfg.dropout, rng)?; // [B,T,H]
        let posterior_scores = match &self.inference {
            None => None,
            Some(inf) => {
                let se = self.src_emb.forward(&batch.src)?;
                let te = self.tgt_emb.forward(&batch.tgt_out)?;
                let u = inf.src_lstm.outputs(&se, Some(&batch.src_mask), None)?;
                let v = inf.tgt_lstm.outputs(&te, Some(&batch.tgt_mask), None)?;
                Some(inf.bilinear.forward(&v)?.matmul(&u.transpose(1, 2)?)?)
            }
        };
        let position_mask = batch.src_mask.unsqueeze(1)?.broadcast_as((b, t, s))?.contiguous()?;
        Ok(NmtOutputs {
            model: self,
            gold: batch.tgt_out.clone(),
            step_mask: batch.tgt_mask.clone(),
            out_query: self.out_h.forward(&h)?,
            enc,
            prior_scores,
            posterior_scores,
            position_mask,
        })
    }

    /// The teacher-forced decoder as one fused op: h_t `[B, T, H]` and the prior scores
    /// `[B, T, S]` for the previous tokens `y_in` `[B, T]`. Dropout masks are drawn in the order
    /// the step-by-step path draws them (per step: the embedding's, then each upper layer's
    /// input's), so both paths see the same masks for the same generator state.
    fn decode_fused(&self, enc: &Encoded, y_in: &Tensor, rng: Option<&mut SeededRng>) -> Result<(Tensor, Tensor)> {
        let (b, t) = y_in.dims2()?;
        let (p, hd, layers) = (self.cfg.dropout, self.decoder.hidden_dim(), self.decoder.num_layers());
        let emb = self.tgt_emb.forward(y_in)?.transpose(0, 1)?.contiguous()?; // [T,B,E]
        let de = emb.dim(2)?;
        let dev = emb.device();
        let mut masks = Vec::new();
        let emb = match rng {
            Some(r) if p > 0.0 || self.decoder.dropout() > 0.0 => {
                let (mut emb_masks, mut layer_masks) = (Vec::with_capacity(t), vec![Vec::with_capacity(t); layers - 1]);
                for _ in 0..t {
                    if p > 0.0 {
                        emb_masks.push(r.dropout_mask((b, de), p, dev)?);
                    }
                    if self.decoder.dropout() > 0.0 {
                        for m in layer_masks.iter_mut() {
                            m.push(r.dropout_mask((b, hd), self.decoder.dropout(), dev)?.to_dtype(emb.dtype())?);
                        }
                    }
                }
                if self.decoder.dropout() > 0.0 {
                    masks = layer_masks.iter().map(|m| Tensor::stack(m, 0)).collect::<Result<Vec<_>>>()?;
                }
                if p > 0.0 {
                    emb.mul(&Tensor::stack(&emb_masks, 0)?.to_dtype(emb.dtype())?)?
                } else {
                    emb
                }
            }
            _ => emb,
        };
        let (h, scores) = attention_decoder_fused(
            &emb,
            &self.decoder.layer_weights()?,
            &masks,
            self.att_h.weight(),
            self.att_v.weight(),
            &enc.att_keys,
            &enc.states,
            &enc.src_mask,
        )?;
        Ok((h.contiguous()?, scores.contiguous()?))
    }

    /// log f(x, ·) over the whole vocabulary from output pre-activations `[..., O]`.
    fn vocab_log_probs(&self, pre: &Tensor) -> Result<Tensor> {
        let logits = fast_math::tanh(pre)?.broadcast_matmul(&self.out_w.t()?)?.broadcast_add(&self.out_b)?;
        candle_nn::ops::log_softmax(&logits, D::Minus1)
    }

    /// Next-token log-probabilities `[N, V]` after a step with decoder output `h [N, H]` and
    /// prior scores `[N, S]`: the exact marginal log Σ_i p_i f(x, i)[·] (restricted to the K
    /// most probable alignments when `kmax = Some(K)`), or the soft model's log f(x, E_p[z]).
    pub fn next_token_log_probs(&self, enc: &Encoded, h: &Tensor, scores: &Tensor, how: Marginal) -> Result<Tensor> {
        let q = self.out_h.forward(h)?; // [N,O]
        let prior = Categorical::from_logits(scores, Some(&enc.src_mask))?;
        match how {
            Marginal::Soft => {
                let ctx = prior.probs()?.unsqueeze(1)?.matmul(&enc.out_keys)?.squeeze(1)?;
                self.vocab_log_probs(&(q + ctx)?)
            }
            Marginal::Exact => {
                let pre = enc.out_keys.broadcast_add(&q.unsqueeze(1)?)?; // [N,S,O]
                let lf = self.vocab_log_probs(&pre)?; // [N,S,V]
                lf.broadcast_add(&prior.log_probs().unsqueeze(D::Minus1)?)?.log_sum_exp(1)
            }
            Marginal::KMax(k) => {
                let k = k.min(prior.num_positions()?);
                let (idx, lpk) = prior.top_k(k)?; // [N,K]
                let o = enc.out_keys.dim(2)?;
                let (n, _) = idx.dims2()?;
                let gathered = enc.out_keys.gather(&idx.unsqueeze(2)?.broadcast_as((n, k, o))?.contiguous()?, 1)?;
                let lf = self.vocab_log_probs(&gathered.broadcast_add(&q.unsqueeze(1)?)?)?; // [N,K,V]
                lf.broadcast_add(&lpk.unsqueeze(D::Minus1)?)?.log_sum_exp(1)
            }
        }
    }

    /// Select rows of every tensor of an encoding (for beams).
    pub fn select_encoded(enc: &Encoded, rows: &Tensor) -> Result<Encoded> {
        Ok(Encoded {
            states: enc.states.index_select(rows, 0)?,
            att_keys: enc.att_keys.index_select(rows, 0)?,
            out_keys: enc.out_keys.index_select(rows, 0)?,
            src_mask: enc.src_mask.index_select(rows, 0)?,
        })
    }
}

/// How the next-token distribution marginalises the alignment at decoding time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Marginal {
    Soft,
    Exact,
    KMax(usize),
}

/// One batch's alignment quantities (implements [`AlignmentOutputs`]).
pub struct NmtOutputs<'a> {
    model: &'a NmtModel,
    gold: Tensor,
    step_mask: Tensor,
    /// U h_t + b, `[B, T, O]`.
    out_query: Tensor,
    enc: Encoded,
    prior_scores: Tensor,
    posterior_scores: Option<Tensor>,
    position_mask: Tensor,
}

impl NmtOutputs<'_> {
    /// log f for pre-activations `[..., O]` whose leading dims match the gold tokens `gold`.
    fn gold_log_f(&self, pre: &Tensor, gold: &Tensor) -> Result<Tensor> {
        self.gold_log_f_with(pre, gold, &self.model.out_w, &self.model.out_b)
    }

    /// log softmax(W tanh(pre) + b) at the gold token, with the output layer's `w`, `b` given.
    fn gold_log_f_with(&self, pre: &Tensor, gold: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        let dims = pre.dims().to_vec();
        let o = *dims.last().unwrap();
        let rows = fast_math::tanh(pre)?.reshape(((), o))?;
        let lf = gold_log_softmax(&rows, w, b, &gold.flatten_all()?)?;
        lf.reshape(&dims[..dims.len() - 1])
    }
}

impl AlignmentOutputs for NmtOutputs<'_> {
    fn prior_scores(&self) -> &Tensor {
        &self.prior_scores
    }
    fn posterior_scores(&self) -> Option<&Tensor> {
        self.posterior_scores.as_ref()
    }
    fn position_mask(&self) -> Option<&Tensor> {
        Some(&self.position_mask)
    }
    fn step_mask(&self) -> Option<&Tensor> {
        Some(&self.step_mask)
    }
    varattn::every_likelihood_capability!();
}

impl Enumerable for NmtOutputs<'_> {
    fn log_f_all(&self) -> Result<Tensor> {
        let (b, t, s) = self.prior_scores.dims3()?;
        let pre = self.out_query.unsqueeze(2)?.broadcast_add(&self.enc.out_keys.unsqueeze(1)?)?; // [B,T,S,O]
        let gold = self.gold.unsqueeze(2)?.broadcast_as((b, t, s))?.contiguous()?;
        self.gold_log_f(&pre, &gold)
    }
}

impl Sampled for NmtOutputs<'_> {
    fn log_f_at(&self, z: &Tensor) -> Result<Tensor> {
        let k = z.dim(0)?;
        let (b, t, _) = self.prior_scores.dims3()?;
        let o = self.out_query.dim(2)?;
        let mut outs = Vec::with_capacity(k);
        for j in 0..k {
            let idx = z.get(j)?.unsqueeze(2)?.broadcast_as((b, t, o))?.contiguous()?; // [B,T,O]
            let keys = self.enc.out_keys.gather(&idx, 1)?; // [B,T,O]
            outs.push(self.gold_log_f(&(&self.out_query + keys)?, &self.gold)?);
        }
        Tensor::stack(&outs, 0)
    }
}

impl Relaxed for NmtOutputs<'_> {
    fn log_f_relaxed(&self, w: &Tensor) -> Result<Tensor> {
        let ctx = w.to_dtype(self.enc.out_keys.dtype())?.matmul(&self.enc.out_keys)?; // [B,T,O]
        self.gold_log_f(&(&self.out_query + ctx)?, &self.gold)
    }
    fn log_f_soft(&self) -> Result<Tensor> {
        let p = Categorical::from_logits(&self.prior_scores, Some(&self.position_mask))?.probs()?;
        self.log_f_relaxed(&p)
    }
    fn log_f_soft_detached(&self) -> Result<Tensor> {
        let p = Categorical::from_logits(&self.prior_scores.detach(), Some(&self.position_mask))?.probs()?;
        let ctx = p.to_dtype(self.enc.out_keys.dtype())?.matmul(&self.enc.out_keys.detach())?; // [B,T,O]
        let pre = (self.out_query.detach() + ctx)?;
        self.gold_log_f_with(&pre, &self.gold, &self.model.out_w.detach(), &self.model.out_b.detach())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::nmt::IdPair;
    use candle_core::Device;

    fn config(dec_layers: usize) -> NmtModelConfig {
        NmtModelConfig {
            emb: 6,
            enc_hidden: 5,
            enc_layers: 1,
            dec_hidden: 7,
            dec_layers,
            attn_hidden: 4,
            out_hidden: 5,
            inf_hidden: 3,
            inf_layers: 1,
            dropout: 0.3,
            init: 0.3,
        }
    }

    /// A loss that reads every output of the forward pass: the soft output layer's gold
    /// log-likelihood and the prior's log-probabilities.
    fn loss(out: &NmtOutputs) -> Result<Tensor> {
        let lf = (out.log_f_soft()? * out.step_mask().unwrap())?.sum_all()?;
        let prior = Categorical::from_logits(out.prior_scores(), out.position_mask())?;
        let lp = prior.log_probs().mul(out.position_mask().unwrap())?;
        let w = Tensor::arange(0f32, lp.elem_count() as f32, &Device::Cpu)?.affine(0.01, -0.3)?.reshape(lp.shape())?;
        lf - (lp * w)?.sum_all()?
    }

    #[test]
    fn fused_and_step_by_step_decoders_agree_in_training() -> Result<()> {
        let pairs: Vec<IdPair> = vec![
            IdPair { src: vec![5, 6, 7, 8], tgt: vec![9, 10, 11] },
            IdPair { src: vec![12, 5], tgt: vec![13, 14, 15, 16, 9] },
            IdPair { src: vec![7, 7, 8], tgt: vec![10] },
        ];
        let batch = NmtBatch::new(&pairs, &[0, 1, 2], &Device::Cpu)?;
        for layers in [1, 2] {
            let mut ps = ParamStore::new(4, 0.3, &Device::Cpu);
            let mut model = NmtModel::new(&mut ps, &config(layers), 20, false)?;
            let mut results = vec![];
            for fused in [true, false] {
                model.set_fused_decoder(fused);
                let mut rng = SeededRng::new(17);
                let out = model.forward(&batch, Some(&mut rng))?;
                let l = loss(&out)?;
                let grads = l.backward()?;
                let after = rng.next_uniform();
                results.push((l.to_scalar::<f32>()?, out.prior_scores().clone(), grads, after));
            }
            let ((l1, s1, g1, r1), (l0, s0, g0, r0)) = (&results[0], &results[1]);
            assert_eq!(r1, r0, "the two paths consumed the dropout generator differently");
            assert!((l1 - l0).abs() < 1e-5 * l0.abs().max(1.0), "{layers} layers: loss {l1} vs {l0}");
            let ds = (s1 - s0)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert!(ds < 1e-5, "prior scores differ by {ds}");
            for (name, var) in ps.named_vars() {
                let (a, b) = (g1.get(&var), g0.get(&var));
                match (a, b) {
                    (Some(a), Some(b)) => {
                        let scale = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
                        let d = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
                        assert!(d <= 2e-5 * scale.max(1e-2), "{layers} layers, {name}: gradients differ by {d} (scale {scale})");
                    }
                    (None, None) => {}
                    _ => panic!("{name}: gradient on one path only"),
                }
            }
            assert!(g1.get(&ps.named_vars().iter().find(|(n, _)| n == "decoder.l0.w_hh").unwrap().1).is_some());
        }
        Ok(())
    }

    /// K-Max feeds Σ_{i ∈ top-K} p_K(i) x̃_i (the prior masked inside the attention), checked
    /// against a hand-built context from the step's own scores; K ≥ S is the plain step.
    #[test]
    fn kmax_step_feeds_the_renormalised_top_k_context() -> Result<()> {
        let pairs: Vec<IdPair> = vec![
            IdPair { src: vec![5, 6, 7, 8, 9], tgt: vec![9, 10] },
            IdPair { src: vec![12, 5, 7], tgt: vec![13, 14] },
        ];
        let batch = NmtBatch::new(&pairs, &[0, 1], &Device::Cpu)?;
        let mut ps = ParamStore::new(4, 0.3, &Device::Cpu);
        let model = NmtModel::new(&mut ps, &config(1), 20, false)?;
        let enc = model.encode(&batch.src, &batch.src_mask, None)?;
        let y = batch.tgt_in.narrow(1, 0, 1)?.squeeze(1)?;
        let init = model.initial_state(&enc)?;
        let (_, scores, plain) = model.step(&enc, &y, &init, None)?;
        let (_, scores_k, kmax) = model.step_with(&enc, &y, &init, None, Some(2))?;
        let (_, _, all) = model.step_with(&enc, &y, &init, None, Some(5))?;
        assert_eq!(scores.to_vec2::<f32>()?, scores_k.to_vec2::<f32>()?, "K-Max changed the raw scores");
        assert_eq!(plain.feed.to_vec2::<f32>()?, all.feed.to_vec2::<f32>()?, "K = S is not the plain step");
        let (sc, x, mask) = (scores.to_vec2::<f32>()?, enc.states.to_vec3::<f32>()?, batch.src_mask.to_vec2::<f32>()?);
        let got = kmax.feed.to_vec2::<f32>()?;
        for r in 0..2 {
            let mut real: Vec<usize> = (0..5).filter(|&i| mask[r][i] > 0.0).collect();
            real.sort_by(|&a, &b| sc[r][b].total_cmp(&sc[r][a]));
            let top = &real[..2];
            let z: f64 = top.iter().map(|&i| (sc[r][i] as f64).exp()).sum();
            for d in 0..x[r][0].len() {
                let want: f64 = top.iter().map(|&i| (sc[r][i] as f64).exp() / z * x[r][i][d] as f64).sum();
                assert!((got[r][d] as f64 - want).abs() < 1e-5, "row {r} dim {d}: fed {} vs top-2 context {want}", got[r][d]);
            }
        }
        let d = (&kmax.feed - &plain.feed)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(d > 1e-4, "the top-2 context equals the full soft context");
        Ok(())
    }

    /// The K-Max evaluation runs the decoder on the K-Max context: at K = S it is the exact
    /// marginal, at K < S it differs from restricting only the output mixture.
    #[test]
    fn kmax_evaluation_feeds_the_restricted_prior() -> Result<()> {
        use crate::objective::held_out_metrics;
        let pairs: Vec<IdPair> = vec![
            IdPair { src: vec![5, 6, 7, 8], tgt: vec![9, 10, 11, 12] },
            IdPair { src: vec![12, 5, 9], tgt: vec![13, 14, 15, 16, 9] },
        ];
        let batch = NmtBatch::new(&pairs, &[0, 1], &Device::Cpu)?;
        let mut ps = ParamStore::new(6, 0.5, &Device::Cpu);
        let model = NmtModel::new(&mut ps, &config(1), 20, false)?;
        let nll = |kind: ObjectiveKind, out: &NmtOutputs| -> Result<f64> { Ok(held_out_metrics(&kind, out)?.nll_sum.unwrap()) };
        let exact = nll(ObjectiveKind::Exact, &model.forward(&batch, None)?)?;
        let k_s = nll(ObjectiveKind::KMax { k: 4 }, &model.forward_for(&ObjectiveKind::KMax { k: 4 }, &batch, None)?)?;
        assert!((k_s - exact).abs() < 1e-4 * exact.abs(), "K = S: {k_s} vs exact {exact}");
        let kind = ObjectiveKind::KMax { k: 1 };
        let fed = nll(kind, &model.forward_for(&kind, &batch, None)?)?;
        let mixture_only = nll(kind, &model.forward(&batch, None)?)?;
        assert!((fed - mixture_only).abs() > 1e-4, "K-Max feeding changed nothing: {fed} vs {mixture_only}");
        Ok(())
    }

    #[test]
    fn detached_soft_likelihood_has_the_same_value_and_no_graph() -> Result<()> {
        let pairs: Vec<IdPair> = vec![
            IdPair { src: vec![5, 6, 7, 8], tgt: vec![9, 10, 11] },
            IdPair { src: vec![12, 5], tgt: vec![13, 14, 15, 16, 9] },
        ];
        let batch = NmtBatch::new(&pairs, &[0, 1], &Device::Cpu)?;
        let mut ps = ParamStore::new(4, 0.3, &Device::Cpu);
        let model = NmtModel::new(&mut ps, &config(1), 20, false)?;
        let out = model.forward(&batch, None)?;
        let tracked = out.log_f_soft()?;
        let constant = out.log_f_soft_detached()?;
        assert!(tracked.track_op() && !constant.track_op());
        let d = (&tracked - &constant)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(d < 1e-6, "detached soft likelihood differs by {d}");
        Ok(())
    }
}
