//! The online monotonic transducer of Lawson et al. (2018), for grapheme-to-phoneme.
//!
//! # Generative model p(y, b | x)
//!
//! An LSTM reads the input one step at a time. At step i its input is the letter embedding
//! e(x_i), the embedding of the last emitted label (a start symbol before the first) and the
//! previous decision b_{i-1}:
//!
//! ```text
//! h_i = LSTM(h_{i-1}, [e(x_i); e(y_{n_{i-1}}); b_{i-1}])      n_i = Σ_{j≤i} b_j
//! p(b_i = 1 | h_i) = σ(w_bᵀ h_i + c_b)                          (emit now)
//! p(y_{n_i} | h_i) = softmax(W_y h_i + c_y)[y_{n_i}]            (the label emitted, when b_i = 1)
//! log p(y, b | x) = Σ_i [log p(b_i | h_i) + b_i log p(y_{n_i} | h_i)]
//! ```
//!
//! The data likelihood is p(y | x) = Σ_{b ∈ A(S, T)} p(y, b | x), A(S, T) the decision sequences
//! with exactly T emissions among the S steps; a word with more labels than letters has
//! likelihood 0 (one label per step at most).
//!
//! # Forcing
//!
//! Only sequences in A(S, T) explain y, so sampling is constrained: emission is forced when the
//! remaining inputs equal the remaining labels (S - i + 1 = T - n_{i-1}), non-emission is forced
//! once all T labels are out. The generative model's Bernoulli term log p(b_i | h_i) still
//! counts at forced steps — p is a model of unconstrained sequences, so that decoding, which does
//! not know T, uses emit probabilities trained at every position (including "stop emitting").
//!
//! # Approximate posterior q(b | x, y)
//!
//! q sees the input and the labels: a BiLSTM over the letters (ẽ_i), a BiLSTM over the phonemes
//! (ỹ_j), and at step i the encoding of the next label to emit, j = n_{i-1} + 1:
//!
//! ```text
//! q(b_i = 1 | b_<i, x, y) = σ(v_qᵀ tanh(A ẽ_i + C ỹ_{n_{i-1}+1} + F [ (S-i+1)/10, (T-n_{i-1})/10 ] + a) + c_q)
//! ```
//!
//! with its own embeddings (q shares no parameter with p), forced as above: log q counts only at
//! free steps.
//!
//! # Decoding
//!
//! Greedy: emit when p(b_i = 1 | h_i) > 0.5, the emitted label is the argmax of
//! softmax(W_y h_i), fed back as the next step's label input ([`Transducer::greedy_decode`]).
//!
//! # Baselines
//!
//! The learned baselines of REINFORCE and NVIL predict the log-weight per label, ĉ, with
//! c = T ĉ: REINFORCE a single scalar `baseline.scalar`; NVIL an MLP on the detached mean
//! encodings of q's two BiLSTMs and (S/10, T/10) ([`Transducer::baseline_per_label`]).
use crate::kernels::lstm::{Lstm, LstmConfig, StackedLstmCell};
use crate::objective::SequenceScores;
use crate::rng::SeededRng;
use crate::distributions::{Bernoulli, Distribution};
use crate::nn::gemm::Linear;
use crate::nn::ParamStore;
use candle_core::{DType, Device, Result, Tensor, D};
use candle_nn::{Embedding, Module};
use serde::{Deserialize, Serialize};

/// Sizes of the transducer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransducerConfig {
    pub letter_emb: usize,
    pub label_emb: usize,
    /// Hidden size of the generative LSTM.
    pub hidden: usize,
    /// Hidden size per direction of q's BiLSTMs.
    pub q_hidden: usize,
    /// Size of q's score layer.
    pub q_attn: usize,
    /// Hidden size of NVIL's baseline MLP.
    pub baseline_hidden: usize,
    /// U(-init, init) initialisation.
    pub init: f64,
}

/// A padded batch of words. Letters are indices 1.. (0 = padding); labels 0..n_labels.
#[derive(Debug, Clone)]
pub struct TransducerBatch {
    /// `[B, S]` u32.
    pub letters: Tensor,
    /// `[B, S]` f32, 1 at real letters.
    pub letter_mask: Tensor,
    pub letter_lens: Vec<usize>,
    /// Gold labels of each word (host side).
    pub labels: Vec<Vec<u32>>,
}

impl TransducerBatch {
    /// From letter indices (≥ 1) and label indices per word.
    pub fn new(letters: &[Vec<u32>], labels: &[Vec<u32>], device: &Device) -> Result<Self> {
        let b = letters.len();
        if b == 0 || labels.len() != b {
            candle_core::bail!("transducer batch: {} words but {} label sequences", b, labels.len())
        }
        let s = letters.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let (mut ids, mut mask) = (vec![0u32; b * s], vec![0f32; b * s]);
        for (r, w) in letters.iter().enumerate() {
            if w.is_empty() {
                candle_core::bail!("transducer batch: word {r} has no letters")
            }
            for (i, &c) in w.iter().enumerate() {
                if c == 0 {
                    candle_core::bail!("transducer batch: letter index 0 is padding (word {r})")
                }
                ids[r * s + i] = c;
                mask[r * s + i] = 1.0;
            }
        }
        Ok(Self {
            letters: Tensor::from_vec(ids, (b, s), device)?,
            letter_mask: Tensor::from_vec(mask, (b, s), device)?,
            letter_lens: letters.iter().map(Vec::len).collect(),
            labels: labels.to_vec(),
        })
    }

    pub fn len(&self) -> usize {
        self.letter_lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.letter_lens.is_empty()
    }

    /// T_b as f32 `[B]`.
    pub fn label_counts(&self) -> Result<Tensor> {
        let t: Vec<f32> = self.labels.iter().map(|l| l.len() as f32).collect();
        Tensor::from_vec(t, self.len(), self.letters.device())
    }
}

/// How the emit decisions of [`Transducer::score_paths`] are chosen.
pub enum PathChoice<'a> {
    /// b_i ~ q(b_i | b_<i, x, y) at free steps, forced elsewhere.
    Sample(&'a mut SeededRng),
    /// Given decisions `[K][B][S]` (0/1, padding ignored); they must be in A(S_b, T_b).
    Given(&'a [Vec<Vec<u8>>]),
}

/// The online monotonic transducer with its approximate posterior and learned baselines.
pub struct Transducer {
    n_labels: usize,
    letter_emb: Embedding,
    label_emb: Embedding,
    cell: StackedLstmCell,
    emit_head: Linear,
    label_head: Linear,
    q_letter_emb: Embedding,
    q_label_emb: Embedding,
    q_letters: Lstm,
    q_labels: Lstm,
    q_x: Linear,
    q_y: Linear,
    q_feat: Linear,
    q_out: Linear,
    baseline_scalar: Tensor,
    baseline_hidden: Linear,
    baseline_out: Linear,
}

fn emb(e: &Embedding, ids: &Tensor) -> Result<Tensor> {
    e.forward(ids)
}

impl Transducer {
    /// Parameters: `p.*` (generative), `q.*` (posterior), `baseline.*`; letters 1..=n_letters.
    pub fn new(ps: &mut ParamStore, cfg: &TransducerConfig, n_letters: usize, n_labels: usize) -> Result<Self> {
        let (e, l, h, qh, a) = (cfg.letter_emb, cfg.label_emb, cfg.hidden, cfg.q_hidden, cfg.q_attn);
        if [e, l, h, qh, a, cfg.baseline_hidden, n_letters, n_labels].contains(&0) {
            candle_core::bail!("transducer: every size must be positive ({cfg:?}, {n_letters} letters, {n_labels} labels)")
        }
        let bi = |input| LstmConfig { input, hidden: qh, layers: 1, bidirectional: true, dropout: 0.0 };
        Ok(Self {
            n_labels,
            letter_emb: ps.embedding("p.letter_emb", n_letters + 1, e)?,
            label_emb: ps.embedding("p.label_emb", n_labels + 1, l)?,
            cell: StackedLstmCell::new(ps, "p.lstm", e + l + 1, h, 1, 0.0)?,
            emit_head: ps.linear("p.emit", h, 1, true)?,
            label_head: ps.linear("p.label", h, n_labels, true)?,
            q_letter_emb: ps.embedding("q.letter_emb", n_letters + 1, e)?,
            q_label_emb: ps.embedding("q.label_emb", n_labels, l)?,
            q_letters: Lstm::new(ps, "q.letters", bi(e))?,
            q_labels: Lstm::new(ps, "q.labels", bi(l))?,
            q_x: ps.linear("q.x", 2 * qh, a, true)?,
            q_y: ps.linear("q.y", 2 * qh, a, false)?,
            q_feat: ps.linear("q.feat", 2, a, false)?,
            q_out: ps.linear("q.out", a, 1, true)?,
            baseline_scalar: ps.constant("baseline.scalar", &[1], 0.0)?,
            baseline_hidden: ps.linear("baseline.hidden", 4 * qh + 2, cfg.baseline_hidden, true)?,
            baseline_out: ps.linear("baseline.out", cfg.baseline_hidden, 1, true)?,
        })
    }

    /// Number of output labels.
    pub fn n_labels(&self) -> usize {
        self.n_labels
    }

    /// q's encodings: letters `[B, S, 2Hq]` and labels `[B, T, 2Hq]` with the label mask.
    fn q_encodings(&self, batch: &TransducerBatch) -> Result<(Tensor, Tensor, usize)> {
        let dev = batch.letters.device();
        let enc_x = self.q_letters.outputs(&emb(&self.q_letter_emb, &batch.letters)?, Some(&batch.letter_mask), None)?;
        let b = batch.len();
        let t = batch.labels.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let (mut ids, mut mask) = (vec![0u32; b * t], vec![0f32; b * t]);
        for (r, ys) in batch.labels.iter().enumerate() {
            for (j, &y) in ys.iter().enumerate() {
                ids[r * t + j] = y;
                mask[r * t + j] = 1.0;
            }
        }
        let ids = Tensor::from_vec(ids, (b, t), dev)?;
        let mask = Tensor::from_vec(mask, (b, t), dev)?;
        if batch.labels.iter().any(Vec::is_empty) {
            candle_core::bail!("transducer: a word without labels")
        }
        let enc_y = self.q_labels.outputs(&emb(&self.q_label_emb, &ids)?, Some(&mask), None)?;
        Ok((enc_x, enc_y, t))
    }

    /// Runs q and p along K decision sequences per word (sampled from q, or given) and returns
    /// the per-step scores `[K, B, S]` and the decisions `[K][B][S]`.
    // rows r = k * B + b index several parallel per-row arrays at once
    #[allow(clippy::needless_range_loop)]
    pub fn score_paths(&self, batch: &TransducerBatch, k: usize, mut choice: PathChoice<'_>) -> Result<(SequenceScores, Vec<Vec<Vec<u8>>>)> {
        let dev = batch.letters.device().clone();
        let b = batch.len();
        let s = batch.letters.dim(1)?;
        let kb = k * b;
        if let PathChoice::Given(g) = &choice {
            if g.len() != k || g.iter().any(|r| r.len() != b) {
                candle_core::bail!("given decisions must be [K = {k}][B = {b}][S]")
            }
        }
        for (r, ys) in batch.labels.iter().enumerate() {
            if ys.len() > batch.letter_lens[r] {
                candle_core::bail!("word {r}: {} labels but {} letters (at most one label per letter)", ys.len(), batch.letter_lens[r])
            }
            if let Some(&y) = ys.iter().find(|&&y| y as usize >= self.n_labels) {
                candle_core::bail!("word {r}: label {y} out of range ({} labels)", self.n_labels)
            }
        }
        // q's step-independent parts, repeated K times (row = k * B + b)
        let (enc_x, enc_y, t) = self.q_encodings(batch)?;
        let ax = self.q_x.forward(&enc_x)?.repeat((k, 1, 1))?; // [KB, S, A]
        let ay = self.q_y.forward(&enc_y)?; // [B, T, A]
        let a = ay.dim(2)?;
        let pad = Tensor::zeros((b, 1, a), ay.dtype(), &dev)?;
        let ay = Tensor::cat(&[ay, pad], 1)?.repeat((k, 1, 1))?; // [KB, T+1, A]
        let ay_flat = ay.reshape((kb * (t + 1), a))?;
        let x_emb = emb(&self.letter_emb, &batch.letters)?.repeat((k, 1, 1))?; // [KB, S, E]
        let mut state = self.cell.zero_state(kb)?;
        let bos = self.n_labels as u32;
        let mut prev_label = vec![bos; kb];
        let mut prev_b = vec![0f32; kb];
        let mut n = vec![0usize; kb];
        let mut decisions = vec![vec![vec![0u8; s]; b]; k];
        let (mut lp, mut lq, mut hq, mut hp, mut fr) = (vec![], vec![], vec![], vec![], vec![]);
        for i in 0..s {
            // --- q(b_i | b_<i, x, y)
            let mut feat = Vec::with_capacity(kb * 2);
            let mut gather = Vec::with_capacity(kb);
            for r in 0..kb {
                let w = r % b;
                let (sl, tl) = (batch.letter_lens[w], batch.labels[w].len());
                feat.push(sl.saturating_sub(i) as f32 / 10.0);
                feat.push(tl.saturating_sub(n[r]) as f32 / 10.0);
                gather.push((r * (t + 1) + n[r].min(t)) as u32);
            }
            let feat = Tensor::from_vec(feat, (kb, 2), &dev)?;
            let gather = Tensor::from_vec(gather, kb, &dev)?;
            let pre = ((ax.narrow(1, i, 1)?.squeeze(1)? + ay_flat.index_select(&gather, 0)?)? + self.q_feat.forward(&feat)?)?;
            let q_logit = self.q_out.forward(&pre.tanh()?)?.squeeze(1)?; // [KB]
            let q_prob: Vec<f32> = candle_nn::ops::sigmoid(&q_logit)?.to_vec1()?;
            // --- the decision
            let mut bi = vec![0f32; kb];
            let mut free = vec![0f32; kb];
            let mut valid = vec![0f32; kb];
            let mut gold = vec![0u32; kb];
            for r in 0..kb {
                let (kk, w) = (r / b, r % b);
                let (sl, tl) = (batch.letter_lens[w], batch.labels[w].len());
                if i >= sl {
                    continue;
                }
                valid[r] = 1.0;
                let forced = if n[r] == tl {
                    Some(0.0)
                } else if sl - i == tl - n[r] {
                    Some(1.0)
                } else {
                    None
                };
                let d = match &mut choice {
                    PathChoice::Sample(rng) => match forced {
                        Some(f) => f,
                        None => {
                            if rng.next_uniform() < q_prob[r] as f64 {
                                1.0
                            } else {
                                0.0
                            }
                        }
                    },
                    PathChoice::Given(g) => {
                        let d = g[kk][w].get(i).copied().unwrap_or(0) as f32;
                        if let Some(f) = forced {
                            if d != f {
                                candle_core::bail!("given decisions of word {w} (sample {kk}) are not in A(S, T): step {i} must be {f}")
                            }
                        }
                        d
                    }
                };
                free[r] = if forced.is_none() { 1.0 } else { 0.0 };
                bi[r] = d;
                if d > 0.0 {
                    gold[r] = batch.labels[w][n[r]];
                }
                decisions[kk][w][i] = d as u8;
            }
            let b_t = Tensor::from_vec(bi.clone(), kb, &dev)?;
            let free_t = Tensor::from_vec(free, kb, &dev)?;
            let valid_t = Tensor::from_vec(valid, kb, &dev)?;
            let q_emit = Bernoulli::from_logits(q_logit.clone()); // q(b_i | x, y, b_<i)
            lq.push(q_emit.log_prob(&b_t)?.mul(&free_t)?);
            hq.push(q_emit.entropy()?.mul(&free_t)?);
            fr.push(free_t);
            // --- p: the LSTM step, emit and label terms
            let prev_l = Tensor::from_vec(prev_label.clone(), kb, &dev)?;
            let prev_bt = Tensor::from_vec(prev_b.clone(), (kb, 1), &dev)?;
            let inp = Tensor::cat(&[x_emb.narrow(1, i, 1)?.squeeze(1)?, emb(&self.label_emb, &prev_l)?, prev_bt], 1)?;
            let (h, next) = self.cell.step(&inp, &state, None)?;
            state = next;
            let emit_logit = self.emit_head.forward(&h)?.squeeze(1)?;
            let label_lp = candle_nn::ops::log_softmax(&self.label_head.forward(&h)?, D::Minus1)?;
            let gold_t = Tensor::from_vec(gold.clone(), (kb, 1), &dev)?;
            let label_term = label_lp.gather(&gold_t, 1)?.squeeze(1)?.mul(&b_t)?;
            let p_emit = Bernoulli::from_logits(emit_logit); // p(b_i | h_i)
            lp.push((p_emit.log_prob(&b_t)?.mul(&valid_t)? + label_term)?);
            hp.push(p_emit.entropy()?.mul(&valid_t)?);
            for r in 0..kb {
                if bi[r] > 0.0 {
                    prev_label[r] = gold[r];
                    n[r] += 1;
                }
                prev_b[r] = bi[r];
            }
        }
        for (r, &emitted) in n.iter().enumerate() {
            let w = r % b;
            if emitted != batch.labels[w].len() {
                candle_core::bail!("word {w}: the decisions emit {emitted} of {} labels", batch.labels[w].len())
            }
        }
        let stack = |v: Vec<Tensor>| -> Result<Tensor> { Tensor::stack(&v, 1)?.reshape((k, b, s)) };
        let scores = SequenceScores {
            log_p: stack(lp)?,
            log_q: stack(lq)?,
            q_entropy: stack(hq)?,
            free: stack(fr)?,
            p_entropy: stack(hp)?,
            labels: batch.label_counts()?,
        };
        Ok((scores, decisions))
    }

    /// The learned baseline per label ĉ `[B]` (c = T ĉ): the single scalar `baseline.scalar`
    /// (REINFORCE), or with `input_dependent` (NVIL) an MLP on the detached mean encodings of q's
    /// two BiLSTMs and (S/10, T/10).
    pub fn baseline_per_label(&self, batch: &TransducerBatch, input_dependent: bool) -> Result<Tensor> {
        let b = batch.len();
        if !input_dependent {
            return self.baseline_scalar.broadcast_as(b)?.contiguous();
        }
        let (enc_x, enc_y, _) = self.q_encodings(batch)?;
        let (enc_x, enc_y) = (enc_x.detach(), enc_y.detach());
        let lens = Tensor::from_vec(batch.letter_lens.iter().map(|&l| l as f32).collect::<Vec<_>>(), (b, 1), enc_x.device())?;
        let counts = batch.label_counts()?.reshape((b, 1))?;
        // padded positions of the encodings are exact zeros: sum / length is the mean
        let mx = enc_x.sum(1)?.broadcast_div(&lens)?;
        let my = enc_y.sum(1)?.broadcast_div(&counts)?;
        let feats = Tensor::cat(&[mx, my, (lens / 10.0)?, (counts / 10.0)?], 1)?;
        let hdn = self.baseline_hidden.forward(&feats)?.tanh()?;
        self.baseline_out.forward(&hdn)?.squeeze(1)
    }

    /// Greedy decoding of a batch of words (labels are ignored): emit when
    /// p(b_i = 1 | h_i) > 0.5, emitting the most probable label.
    pub fn greedy_decode(&self, batch: &TransducerBatch) -> Result<Vec<Vec<u32>>> {
        let dev = batch.letters.device().clone();
        let b = batch.len();
        let s = batch.letters.dim(1)?;
        let x_emb = emb(&self.letter_emb, &batch.letters)?;
        let mut state = self.cell.zero_state(b)?;
        let mut prev_label = vec![self.n_labels as u32; b];
        let mut prev_b = vec![0f32; b];
        let mut out = vec![vec![]; b];
        for i in 0..s {
            let prev_l = Tensor::from_vec(prev_label.clone(), b, &dev)?;
            let prev_bt = Tensor::from_vec(prev_b.clone(), (b, 1), &dev)?;
            let inp = Tensor::cat(&[x_emb.narrow(1, i, 1)?.squeeze(1)?, emb(&self.label_emb, &prev_l)?, prev_bt], 1)?;
            let (h, next) = self.cell.step(&inp, &state, None)?;
            state = next;
            let emit: Vec<f32> = self.emit_head.forward(&h)?.squeeze(1)?.to_dtype(DType::F32)?.to_vec1()?;
            let best: Vec<u32> = self.label_head.forward(&h)?.argmax(D::Minus1)?.to_vec1()?;
            for r in 0..b {
                let emit_now = i < batch.letter_lens[r] && emit[r] > 0.0;
                if emit_now {
                    out[r].push(best[r]);
                    prev_label[r] = best[r];
                }
                prev_b[r] = if emit_now { 1.0 } else { 0.0 };
            }
        }
        Ok(out)
    }
}

/// Every decision sequence with exactly `t` emissions among `s` steps (C(s, t) of them), in
/// lexicographic order — for exact enumeration on small problems.
pub fn all_alignments(s: usize, t: usize) -> Vec<Vec<u8>> {
    fn rec(i: usize, s: usize, left: usize, cur: &mut Vec<u8>, out: &mut Vec<Vec<u8>>) {
        if i == s {
            if left == 0 {
                out.push(cur.clone());
            }
            return;
        }
        if s - i > left {
            cur.push(0);
            rec(i + 1, s, left, cur, out);
            cur.pop();
        }
        if left > 0 {
            cur.push(1);
            rec(i + 1, s, left - 1, cur, out);
            cur.pop();
        }
    }
    let mut out = vec![];
    if t <= s {
        rec(0, s, t, &mut Vec::with_capacity(s), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignments_are_the_subsets() {
        assert_eq!(all_alignments(3, 2), vec![vec![0, 1, 1], vec![1, 0, 1], vec![1, 1, 0]]);
        assert_eq!(all_alignments(5, 2).len(), 10);
        assert_eq!(all_alignments(4, 4), vec![vec![1, 1, 1, 1]]);
        assert!(all_alignments(2, 3).is_empty());
    }
}
