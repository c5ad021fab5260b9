//! The teacher-forced decoder of the NMT model — stacked LSTM with input feeding and MLP
//! (Bahdanau) attention — as one CPU op with a hand-written back-propagation through time.
//!
//! # Equations
//!
//! For target steps t = 0..T-1, with the (dropped-out) embeddings e_t of the previous tokens, the
//! attention keys k_i = W_x x̃_i + b and values x̃_i of the source positions i = 1..S, and the fed
//! context f_{-1} = 0:
//!
//! ```text
//! layer 0:   a⁰_t = W⁰_ih [e_t; f_{t-1}] + W⁰_hh h⁰_{t-1} + b⁰
//! layer l>0: aˡ_t = Wˡ_ih (h^{l-1}_t ⊙ mˡ_t) + Wˡ_hh hˡ_{t-1} + bˡ        (mˡ: dropout mask)
//! each:      (hˡ_t, cˡ_t) = LSTM cell(aˡ_t, cˡ_{t-1})                     (see lstm_fused)
//! attention: h_t = h^{L-1}_t,  q_t = W_h h_t,  u_{t,i} = tanh(k_i + q_t),  s_{t,i} = vᵀ u_{t,i}
//!            p_t = softmax(s_t masked to the real source positions)
//! feeding:   f_t = Σ_i p_{t,i} x̃_i
//! ```
//!
//! The op returns h_t and the raw scores s_t for every step; the prior, objective and output
//! layer take them from there. b = b_ih + b_hh. Masked positions get the score
//! s·m + (1 - m)·(-1e9) before the softmax, exactly as [`crate::distributions::Categorical::from_logits`].
//!
//! The backward pass runs t = T-1..0 carrying ∂h, ∂c of every layer and ∂f_t (from step t+1's
//! input), and goes through the attention (∂p_i = ∂f·x̃_i; softmax; ∂u = ∂s v; ∂(k + q) =
//! ∂u ⊙ (1 - u²)), the cells, and the recurrent products. Every weight gradient is one matmul
//! over all T·B rows after the loop — ∂Wˡ = Σ_t ∂aˡ_tᵀ [inputˡ_t; hˡ_{t-1}], ∂W_h = Σ_t ∂q_tᵀ h_t
//! — and the embeddings' gradient ∂e = ∂a⁰ W⁰_ih[:, :E] likewise.
//!
//! # Why
//!
//! Composed from candle ops, each decoder step is about 25 graph nodes (embedding, concat, two
//! matmuls, bias, cell, attention MLP, masked softmax, context); the backward pass then allocates
//! a gradient per node and adds every step's `[4H, in]` weight gradient into the running sum.
//! That overhead, not the arithmetic, was most of a training step at the cpu preset. Here the
//! whole decoder is one node; the forward pass keeps what the backward pass needs (gates, cell
//! states, inputs, attention activations and probabilities) inside the op, so nothing is
//! recomputed.
use varattn::nn::gemm::matmul_into;
use varattn::nn::par::{for_ranges, map_rows};
use super::lstm_fused::{cell_backward_row, cell_forward_row, contiguous, Real};
use crate::distributions::MASKED_LOGIT;
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Storage, Tensor};
use std::any::Any;
use std::sync::Mutex;

/// Batch rows per block when a step's per-row work (cell updates, attention, their gradients) is
/// spread over candle's threads: a block is then some tens of microseconds of work, against a
/// few microseconds to hand it out.
const ROWS_PER_BLOCK: usize = 8;

/// One decoder layer's weights: `w_ih` `[4H, in]`, `w_hh` `[4H, H]`, `bias` `[4H]` (= b_ih + b_hh),
/// gates stacked i, f, g, o.
#[derive(Clone, Debug)]
pub struct LayerWeights {
    pub w_ih: Tensor,
    pub w_hh: Tensor,
    pub bias: Tensor,
}

/// Sizes of one application.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Dims {
    /// Steps, batch rows, source positions.
    t: usize,
    b: usize,
    s: usize,
    /// Embedding width, value (x̃) width, hidden width, attention width, layers.
    de: usize,
    ex: usize,
    h: usize,
    a: usize,
    layers: usize,
}

/// Where each weight sits in the flat parameter vector, and each input in the flat data vector.
struct Offsets {
    /// Per layer: (w_ih, w_hh, bias).
    layer: Vec<(usize, usize, usize)>,
    att_w: usize,
    att_v: usize,
    params: usize,
    keys: usize,
    values: usize,
    data: usize,
}

impl Dims {
    /// Input width of layer l.
    fn input(&self, l: usize) -> usize {
        if l == 0 {
            self.de + self.ex
        } else {
            self.h
        }
    }

    /// Width of the per-step operand of layer l's recurrent product: [f_{t-1}; h_{t-1}] for
    /// layer 0 (the embedding part is projected for all steps at once), [input; h_{t-1}] above.
    fn k(&self, l: usize) -> usize {
        if l == 0 {
            self.ex + self.h
        } else {
            2 * self.h
        }
    }

    fn offsets(&self) -> Offsets {
        let h4 = 4 * self.h;
        let mut at = 0;
        let mut layer = Vec::with_capacity(self.layers);
        for l in 0..self.layers {
            let w_ih = at;
            let w_hh = w_ih + h4 * self.input(l);
            let bias = w_hh + h4 * self.h;
            at = bias + h4;
            layer.push((w_ih, w_hh, bias));
        }
        let att_w = at;
        let att_v = att_w + self.a * self.h;
        let keys = self.t * self.b * self.de;
        let values = keys + self.b * self.s * self.a;
        Offsets { layer, att_w, att_v, params: att_v + self.a, keys, values, data: values + self.b * self.s * self.ex }
    }
}

/// What the forward pass keeps for the backward pass.
struct Saved<T> {
    /// Per layer `[T, B, 6H]`: activated gates, c, h (layout of `lstm_fused`).
    z: Vec<Vec<T>>,
    /// Per layer `[T, B, k(l)]`: the per-step operand of the recurrent product.
    ri: Vec<Vec<T>>,
    /// Per layer `[4H, k(l)]`: the weights that multiply it.
    r: Vec<Vec<T>>,
    /// `[T, B, S, A]`: u = tanh(k + q).
    u: Vec<T>,
    /// `[T, B, S]`: attention probabilities.
    p: Vec<T>,
}

struct DecoderOp {
    dims: Dims,
    /// Per layer 1.. (empty: no dropout): the inverted-dropout mask `[T, B, H]` of its input.
    masks: Vec<Vec<f32>>,
    /// `[B, S]`, 1 at real source positions.
    src_mask: Vec<f32>,
    saved: Mutex<Option<Box<dyn Any + Send + Sync>>>,
}

impl DecoderOp {
    fn mask<T: Real>(&self, l: usize, step: usize, r: usize, j: usize) -> T {
        match self.masks.get(l - 1) {
            Some(m) if !m.is_empty() => T::from(m[(step * self.dims.b + r) * self.dims.h + j]).unwrap(),
            _ => T::one(),
        }
    }

    /// Forward pass: returns `[B, T, H + S]` (h_t, then the raw scores s_t) and the saved state.
    fn fwd<T: Real>(&self, prm: &[T], data: &[T]) -> (Vec<T>, Saved<T>) {
        let Dims { t, b, s, de, ex, h, a, layers } = self.dims;
        let (h4, w6, wo) = (4 * h, 6 * h, h + s);
        let off = self.dims.offsets();
        let (emb, keys, values) = (&data[..off.keys], &data[off.keys..off.values], &data[off.values..off.data]);
        let (att_w, att_v) = (&prm[off.att_w..off.att_v], &prm[off.att_v..off.params]);
        // R_l = [W_ih (feed or input columns) | W_hh], `[4H, k(l)]`.
        let r: Vec<Vec<T>> = (0..layers)
            .map(|l| {
                let (w_ih, w_hh, _) = off.layer[l];
                let (inp, k) = (self.dims.input(l), self.dims.k(l));
                let skip = if l == 0 { de } else { 0 };
                let mut m = vec![T::zero(); h4 * k];
                for g in 0..h4 {
                    m[g * k..g * k + k - h].copy_from_slice(&prm[w_ih + g * inp + skip..w_ih + (g + 1) * inp]);
                    m[g * k + k - h..(g + 1) * k].copy_from_slice(&prm[w_hh + g * h..w_hh + (g + 1) * h]);
                }
                m
            })
            .collect();
        let mut z: Vec<Vec<T>> = (0..layers).map(|_| vec![T::zero(); t * b * w6]).collect();
        let mut ri: Vec<Vec<T>> = (0..layers).map(|l| vec![T::zero(); t * b * self.dims.k(l)]).collect();
        // Gate pre-activations start from the bias; layer 0's embedding part for all steps at once.
        for l in 0..layers {
            let bias = &prm[off.layer[l].2..off.layer[l].2 + h4];
            for row in z[l].chunks_mut(w6) {
                row[..h4].copy_from_slice(bias);
            }
        }
        let in0 = self.dims.input(0);
        matmul_into((t * b, h4, de), &mut z[0], w6, true, emb, (de, 1), &prm[off.layer[0].0..], (1, in0));
        let mut u = vec![T::zero(); t * b * s * a];
        let mut p = vec![T::zero(); t * b * s];
        let mut out = vec![T::zero(); b * t * wo];
        let mut q = vec![T::zero(); b * a];
        let zeros = vec![T::zero(); h];
        let masked = T::from(MASKED_LOGIT).unwrap();
        for step in 0..t {
            for l in 0..layers {
                let k = self.dims.k(l);
                // The operand's h_{t-1} part (its input part: layer 0's feed was written by the
                // previous step's attention; layers above take the layer below's h now).
                for row in 0..b {
                    let dst = (step * b + row) * k;
                    if step > 0 {
                        let src = ((step - 1) * b + row) * w6 + 5 * h;
                        ri[l][dst + k - h..dst + k].copy_from_slice(&z[l][src..src + h]);
                    }
                    if l > 0 {
                        let src = (step * b + row) * w6 + 5 * h;
                        for j in 0..h {
                            ri[l][dst + j] = z[l - 1][src + j] * self.mask::<T>(l, step, row, j);
                        }
                    }
                }
                let zs = &mut z[l][step * b * w6..(step + 1) * b * w6];
                matmul_into((b, h4, k), zs, w6, true, &ri[l][step * b * k..(step + 1) * b * k], (k, 1), &r[l], (1, k));
                let (done, rest) = z[l].split_at_mut(step * b * w6);
                // The rows' cell updates, on candle's threads.
                map_rows(&mut rest[..b * w6], w6, ROWS_PER_BLOCK, |row, zr| {
                    let c_prev = if step == 0 {
                        &zeros[..]
                    } else {
                        let at = ((step - 1) * b + row) * w6 + 4 * h;
                        &done[at..at + h]
                    };
                    cell_forward_row(zr, c_prev, h);
                });
            }
            // Attention on the top layer's h_t.
            let top = &z[layers - 1][step * b * w6..(step + 1) * b * w6];
            matmul_into((b, a, h), &mut q, a, false, &top[5 * h..], (w6, 1), att_w, (1, h));
            let k0 = self.dims.k(0);
            let (out_p, u_p, p_p, feed_p) = (out.as_mut_ptr() as usize, u.as_mut_ptr() as usize, p.as_mut_ptr() as usize, ri[0].as_mut_ptr() as usize);
            // The rows' attention, on candle's threads: row `row` writes only its own slices of
            // out, u, p and the next step's input feed.
            for_ranges(b, ROWS_PER_BLOCK, |rows| for row in rows {
                // SAFETY: the slices below are row `row`'s alone (disjoint across rows) and lie
                // inside out `[B·T·(H+S)]`, u `[T·B·S·A]`, p `[T·B·S]` and ri[0] `[T·B·k0]`,
                // which outlive the call.
                let (out_row, us, ps) = unsafe {
                    (
                        std::slice::from_raw_parts_mut((out_p as *mut T).add((row * t + step) * wo), wo),
                        std::slice::from_raw_parts_mut((u_p as *mut T).add((step * b + row) * s * a), s * a),
                        std::slice::from_raw_parts_mut((p_p as *mut T).add((step * b + row) * s), s),
                    )
                };
                out_row[..h].copy_from_slice(&top[row * w6 + 5 * h..(row + 1) * w6]);
                let mut max = T::neg_infinity();
                for i in 0..s {
                    let (ui, ki) = (&mut us[i * a..(i + 1) * a], &keys[(row * s + i) * a..(row * s + i + 1) * a]);
                    ui.iter_mut().zip(ki).zip(&q[row * a..(row + 1) * a]).for_each(|((u, &k), &q)| *u = k + q);
                    T::tanh_slice(ui);
                    let sc = ui.iter().zip(att_v).fold(T::zero(), |acc, (&u, &v)| acc + u * v);
                    out_row[h + i] = sc;
                    let m = T::from(self.src_mask[row * s + i]).unwrap();
                    ps[i] = sc * m + (T::one() - m) * masked;
                    max = num_traits::Float::max(max, ps[i]);
                }
                let mut sum = T::zero();
                for v in ps.iter_mut() {
                    *v = (*v - max).exp();
                    sum += *v;
                }
                ps.iter_mut().for_each(|v| *v /= sum);
                if step + 1 < t {
                    // SAFETY: as above (the feed slot of row `row` at the next step).
                    let f = unsafe { std::slice::from_raw_parts_mut((feed_p as *mut T).add(((step + 1) * b + row) * k0), ex) };
                    f.iter_mut().for_each(|v| *v = T::zero());
                    for i in 0..s {
                        let (pi, xi) = (ps[i], &values[(row * s + i) * ex..(row * s + i + 1) * ex]);
                        f.iter_mut().zip(xi).for_each(|(d, &x)| *d += pi * x);
                    }
                }
            });
        }
        (out, Saved { z, ri, r, u, p })
    }
}

impl DecoderOp {
    /// Back-propagation through time from ∂out `[B, T, H + S]`; returns (∂params, ∂data) in the
    /// flat layouts of [`Dims::offsets`].
    fn bwd<T: Real>(&self, prm: &[T], data: &[T], sv: &Saved<T>, grad: &[T]) -> (Vec<T>, Vec<T>) {
        let Dims { t, b, s, de, ex, h, a, layers } = self.dims;
        let (h4, w6, wo) = (4 * h, 6 * h, h + s);
        let off = self.dims.offsets();
        let (emb, values) = (&data[..off.keys], &data[off.values..off.data]);
        let (att_w, att_v) = (&prm[off.att_w..off.att_v], &prm[off.att_v..off.params]);
        let mut dprm = vec![T::zero(); off.params];
        let mut ddata = vec![T::zero(); off.data];
        let mut da: Vec<Vec<T>> = (0..layers).map(|_| vec![T::zero(); t * b * h4]).collect();
        let mut dq = vec![T::zero(); t * b * a];
        let mut dh_carry: Vec<Vec<T>> = (0..layers).map(|_| vec![T::zero(); b * h]).collect();
        let mut dc_carry: Vec<Vec<T>> = (0..layers).map(|_| vec![T::zero(); b * h]).collect();
        let mut dfeed = vec![T::zero(); b * ex];
        let mut dh_in = vec![T::zero(); b * h];
        let mut dh_total = vec![T::zero(); h];
        let mut dc_prev = vec![T::zero(); h];
        let mut dp = vec![T::zero(); s];
        let zeros = vec![T::zero(); h];
        let mut dri: Vec<Vec<T>> = (0..layers).map(|l| vec![T::zero(); b * self.dims.k(l)]).collect();
        {
            let (dkeys, dvalues) = ddata[off.keys..].split_at_mut(off.values - off.keys);
            let dv = &mut dprm[off.att_v..off.params];
            for step in (0..t).rev() {
                // Attention: ∂f_t (zero at the last step) and the scores' own gradient.
                let dqs = &mut dq[step * b * a..(step + 1) * b * a];
                for row in 0..b {
                    let ps = &sv.p[(step * b + row) * s..(step * b + row + 1) * s];
                    let us = &sv.u[(step * b + row) * s * a..(step * b + row + 1) * s * a];
                    let df = &dfeed[row * ex..(row + 1) * ex];
                    let mut dot = T::zero();
                    for i in 0..s {
                        let xi = &values[(row * s + i) * ex..(row * s + i + 1) * ex];
                        dp[i] = xi.iter().zip(df).fold(T::zero(), |acc, (&x, &d)| acc + x * d);
                        dot += ps[i] * dp[i];
                        let dx = &mut dvalues[(row * s + i) * ex..(row * s + i + 1) * ex];
                        dx.iter_mut().zip(df).for_each(|(d, &g)| *d += ps[i] * g);
                    }
                    let g = &grad[(row * t + step) * wo..(row * t + step + 1) * wo];
                    let dq_row = &mut dqs[row * a..(row + 1) * a];
                    for i in 0..s {
                        let m = T::from(self.src_mask[row * s + i]).unwrap();
                        let dsc = g[h + i] + m * ps[i] * (dp[i] - dot);
                        let ui = &us[i * a..(i + 1) * a];
                        let dk = &mut dkeys[(row * s + i) * a..(row * s + i + 1) * a];
                        for j in 0..a {
                            dv[j] += dsc * ui[j];
                            let dpre = dsc * att_v[j] * (T::one() - ui[j] * ui[j]);
                            dk[j] += dpre;
                            dq_row[j] += dpre;
                        }
                    }
                    dh_in[row * h..(row + 1) * h].copy_from_slice(&g[..h]);
                }
                // ∂h_t of the top layer += ∂q_t W_h.
                matmul_into((b, h, a), &mut dh_in, h, true, dqs, (a, 1), att_w, (h, 1));
                for l in (0..layers).rev() {
                    let k = self.dims.k(l);
                    let zl = &sv.z[l];
                    let das = &mut da[l][step * b * h4..(step + 1) * b * h4];
                    for row in 0..b {
                        let carry = &dh_carry[l][row * h..(row + 1) * h];
                        dh_total.iter_mut().zip(&dh_in[row * h..(row + 1) * h]).zip(carry).for_each(|((d, &x), &c)| *d = x + c);
                        let c_prev = if step == 0 { &zeros[..] } else { &zl[((step - 1) * b + row) * w6 + 4 * h..][..h] };
                        cell_backward_row(
                            &zl[(step * b + row) * w6..(step * b + row + 1) * w6],
                            c_prev,
                            &dh_total,
                            &dc_carry[l][row * h..(row + 1) * h],
                            &mut das[row * h4..(row + 1) * h4],
                            &mut dc_prev,
                            h,
                        );
                        dc_carry[l][row * h..(row + 1) * h].copy_from_slice(&dc_prev);
                    }
                    // ∂[input; h_{t-1}] = ∂a R_l.
                    matmul_into((b, k, h4), &mut dri[l], k, false, das, (h4, 1), &sv.r[l], (k, 1));
                    for row in 0..b {
                        let d = &dri[l][row * k..(row + 1) * k];
                        dh_carry[l][row * h..(row + 1) * h].copy_from_slice(&d[k - h..]);
                        if l > 0 {
                            for j in 0..h {
                                dh_in[row * h + j] = d[j] * self.mask::<T>(l, step, row, j);
                            }
                        } else {
                            dfeed[row * ex..(row + 1) * ex].copy_from_slice(&d[..ex]);
                        }
                    }
                }
            }
        }
        // Weight gradients, each one product over all T·B rows.
        for (l, dal) in da.iter().enumerate() {
            let (k, inp) = (self.dims.k(l), self.dims.input(l));
            let (w_ih, w_hh, bias) = off.layer[l];
            // ∂[W_ih (feed or input columns) | W_hh] = Σ_t ∂aᵀ [input; h_{t-1}], written straight
            // into the two weights' places (row strides `inp` and H).
            let skip = if l == 0 { de } else { 0 };
            matmul_into((h4, k - h, t * b), &mut dprm[w_ih + skip..], inp, false, dal, (1, h4), &sv.ri[l], (k, 1));
            matmul_into((h4, h, t * b), &mut dprm[w_hh..], h, false, dal, (1, h4), &sv.ri[l][k - h..], (k, 1));
            let db = &mut dprm[bias..bias + h4];
            for row in dal.chunks(h4) {
                db.iter_mut().zip(row).for_each(|(d, &x)| *d += x);
            }
        }
        // Layer 0's embedding columns and the embeddings' gradient.
        let (in0, w_ih0) = (self.dims.input(0), off.layer[0].0);
        matmul_into((h4, de, t * b), &mut dprm[w_ih0..], in0, false, &da[0], (1, h4), emb, (de, 1));
        matmul_into((t * b, de, h4), &mut ddata[..off.keys], de, false, &da[0], (h4, 1), &prm[w_ih0..], (in0, 1));
        // ∂W_h = Σ_t ∂q_tᵀ h_t.
        let top = &sv.z[layers - 1];
        matmul_into((a, h, t * b), &mut dprm[off.att_w..off.att_v], h, false, &dq, (1, a), &top[5 * h..], (w6, 1));
        (dprm, ddata)
    }
}

impl CustomOp2 for DecoderOp {
    fn name(&self) -> &'static str {
        "attention-decoder"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let off = self.dims.offsets();
        if l1.shape().dims() != [off.params] || l2.shape().dims() != [off.data] {
            bail!("attention-decoder: packed inputs {:?}, {:?} do not fit {:?}", l1.shape(), l2.shape(), self.dims)
        }
        let Dims { t, b, s, h, .. } = self.dims;
        let storage = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                let (out, saved) = self.fwd::<f32>(contiguous("attention-decoder", s1, l1)?, contiguous("attention-decoder", s2, l2)?);
                *self.saved.lock().unwrap() = Some(Box::new(saved));
                f32::storage(out)
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                let (out, saved) = self.fwd::<f64>(contiguous("attention-decoder", s1, l1)?, contiguous("attention-decoder", s2, l2)?);
                *self.saved.lock().unwrap() = Some(Box::new(saved));
                f64::storage(out)
            }
            _ => bail!("attention-decoder: f32 or f64 inputs of one dtype expected, got {:?}, {:?}", s1.dtype(), s2.dtype()),
        };
        Ok((storage, Shape::from((b, t, h + s))))
    }

    fn bwd(&self, params: &Tensor, data: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dev = params.device();
        let saved = self.saved.lock().unwrap();
        let saved = match saved.as_ref() {
            Some(s) => s,
            None => bail!("attention-decoder: backward without a forward pass"),
        };
        macro_rules! run {
            ($ty:ty) => {{
                let sv = match saved.downcast_ref::<Saved<$ty>>() {
                    Some(sv) => sv,
                    None => bail!("attention-decoder: saved state of another dtype"),
                };
                // Read the inputs and the gradient in place (no copies).
                let grad = grad.contiguous()?;
                let (ps, pl) = params.storage_and_layout();
                let (ds, dl) = data.storage_and_layout();
                let (gs, gl) = grad.storage_and_layout();
                let (p, d, g) = match (&*ps, &*ds, &*gs) {
                    (Storage::Cpu(p), Storage::Cpu(d), Storage::Cpu(g)) => (
                        contiguous::<$ty>("attention-decoder", p, pl)?,
                        contiguous::<$ty>("attention-decoder", d, dl)?,
                        contiguous::<$ty>("attention-decoder", g, gl)?,
                    ),
                    _ => bail!("attention-decoder: CPU tensors expected"),
                };
                let (dp, dd) = self.bwd(p, d, sv, g);
                (Tensor::from_vec(dp, p.len(), dev)?, Tensor::from_vec(dd, d.len(), dev)?)
            }};
        }
        let (dp, dd) = match params.dtype() {
            DType::F32 => run!(f32),
            DType::F64 => run!(f64),
            d => bail!("attention-decoder: unsupported dtype {d:?}"),
        };
        Ok((Some(dp), Some(dd)))
    }
}

/// The teacher-forced decoder (equations in the module docs) as one fused CPU op.
///
/// * `emb` `[T, B, E]`: the previous tokens' embeddings, dropout already applied, time-major.
/// * `layers`: bottom first; layer 0 reads `[e_t; f_{t-1}]` (width E + X), layer l > 0 the h of
///   layer l - 1.
/// * `masks`: empty (no dropout) or one `[T, B, H]` inverted-dropout mask per layer above the
///   first, multiplying that layer's input (constant: no gradient).
/// * `att_w` `[A, H]` (W_h), `att_v` `[1, A]` or `[A]` (v), `keys` `[B, S, A]` (W_x x̃ + b),
///   `values` `[B, S, X]` (x̃), `src_mask` `[B, S]` (1 at real positions).
///
/// Returns h_t of the top layer `[B, T, H]` and the raw attention scores s_t `[B, T, S]`.
/// Differentiable in every weight, `emb`, `keys` and `values`. f32 or f64, CPU only.
#[allow(clippy::too_many_arguments)]
pub fn attention_decoder_fused(
    emb: &Tensor,
    layers: &[LayerWeights],
    masks: &[Tensor],
    att_w: &Tensor,
    att_v: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    src_mask: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let (t, b, de) = emb.dims3()?;
    let (b2, s, a) = keys.dims3()?;
    let (b3, s3, ex) = values.dims3()?;
    if layers.is_empty() || t == 0 || b2 != b || b3 != b || s3 != s || s == 0 {
        bail!("attention-decoder: emb {:?}, keys {:?}, values {:?} and {} layers do not fit", emb.dims(), keys.dims(), values.dims(), layers.len())
    }
    let h = layers[0].w_hh.dim(1)?;
    let dims = Dims { t, b, s, de, ex, h, a, layers: layers.len() };
    for (l, w) in layers.iter().enumerate() {
        if w.w_ih.dims() != [4 * h, dims.input(l)] || w.w_hh.dims() != [4 * h, h] || w.bias.dims() != [4 * h] {
            bail!(
                "attention-decoder: layer {l} weights {:?}, {:?}, {:?} do not fit H = {h}, input {}",
                w.w_ih.dims(),
                w.w_hh.dims(),
                w.bias.dims(),
                dims.input(l)
            )
        }
    }
    if att_w.dims() != [a, h] || att_v.elem_count() != a || src_mask.dims() != [b, s] {
        bail!("attention-decoder: W_h {:?}, v {:?}, src_mask {:?} do not fit A = {a}, H = {h}, [B, S] = [{b}, {s}]", att_w.dims(), att_v.dims(), src_mask.dims())
    }
    if !(masks.is_empty() || masks.len() == layers.len() - 1) || masks.iter().any(|m| m.dims() != [t, b, h]) {
        bail!("attention-decoder: expected no dropout masks or {} of [T, B, H] = [{t}, {b}, {h}]", layers.len() - 1)
    }
    let masks = masks.iter().map(|m| m.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()).collect::<Result<Vec<_>>>()?;
    let src_mask = src_mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut parts = Vec::with_capacity(3 * layers.len() + 2);
    for w in layers {
        parts.extend([w.w_ih.flatten_all()?, w.w_hh.flatten_all()?, w.bias.flatten_all()?]);
    }
    parts.extend([att_w.flatten_all()?, att_v.flatten_all()?]);
    let params = Tensor::cat(&parts, 0)?;
    let data = Tensor::cat(&[emb.flatten_all()?, keys.flatten_all()?, values.flatten_all()?], 0)?;
    let op = DecoderOp { dims, masks, src_mask, saved: Mutex::new(None) };
    let out = params.apply_op2(&data, op)?;
    Ok((out.narrow(2, 0, h)?, out.narrow(2, h, s)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributions::Categorical;
    use crate::kernels::lstm::lstm_cell_composed;
    use crate::rng::SeededRng;
    use candle_core::{Device, Var, D};

    fn noise(rng: &mut SeededRng, dims: &[usize], scale: f64) -> Tensor {
        rng.uniform(dims, &Device::Cpu).unwrap().affine(2.0 * scale, -scale).unwrap().to_dtype(DType::F64).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
    }

    /// The same decoder composed from candle ops, step by step (the model's former code path).
    #[allow(clippy::too_many_arguments)]
    fn reference(
        emb: &Tensor,
        layers: &[LayerWeights],
        masks: &[Tensor],
        att_w: &Tensor,
        att_v: &Tensor,
        keys: &Tensor,
        values: &Tensor,
        src_mask: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (t, b, _) = emb.dims3()?;
        let ex = values.dim(2)?;
        let h = layers[0].w_hh.dim(1)?;
        let zero = Tensor::zeros((b, h), DType::F64, &Device::Cpu)?;
        let mut state = vec![(zero.clone(), zero); layers.len()];
        let mut feed = Tensor::zeros((b, ex), DType::F64, &Device::Cpu)?;
        let (mut hs, mut scores) = (vec![], vec![]);
        for step in 0..t {
            let mut inp = Tensor::cat(&[&emb.get(step)?, &feed], 1)?;
            for (l, w) in layers.iter().enumerate() {
                if l > 0 && !masks.is_empty() {
                    inp = (inp * masks[l - 1].get(step)?)?;
                }
                let gates = (inp.matmul(&w.w_ih.t()?)? + state[l].0.matmul(&w.w_hh.t()?)?)?.broadcast_add(&w.bias)?;
                let (hn, cn) = lstm_cell_composed(&gates, &state[l].1)?;
                inp = hn.clone();
                state[l] = (hn, cn);
            }
            let q = inp.matmul(&att_w.t()?)?.unsqueeze(1)?;
            let sc = keys.broadcast_add(&q)?.tanh()?.broadcast_matmul(&att_v.reshape(((), 1))?)?.squeeze(D::Minus1)?;
            let p = Categorical::from_logits(&sc, Some(src_mask))?.probs()?;
            feed = p.unsqueeze(1)?.matmul(values)?.squeeze(1)?;
            hs.push(inp);
            scores.push(sc);
        }
        Ok((Tensor::stack(&hs, 1)?, Tensor::stack(&scores, 1)?))
    }

    struct Case {
        emb: Var,
        layers: Vec<(Var, Var, Var)>,
        masks: Vec<Tensor>,
        att_w: Var,
        att_v: Var,
        keys: Var,
        values: Var,
        src_mask: Tensor,
    }

    impl Case {
        fn new(seed: u64, (t, b, s, de, ex, h, a, layers): (usize, usize, usize, usize, usize, usize, usize, usize), dropout: bool) -> Self {
            let mut rng = SeededRng::new(seed);
            let var = |rng: &mut SeededRng, dims: &[usize], scale: f64| Var::from_tensor(&noise(rng, dims, scale)).unwrap();
            let emb = var(&mut rng, &[t, b, de], 1.0);
            let layers = (0..layers)
                .map(|l| {
                    let inp = if l == 0 { de + ex } else { h };
                    (var(&mut rng, &[4 * h, inp], 0.6), var(&mut rng, &[4 * h, h], 0.6), var(&mut rng, &[4 * h], 0.5))
                })
                .collect::<Vec<_>>();
            let masks = if dropout {
                (1..layers.len()).map(|_| rng.dropout_mask((t, b, h), 0.3, &Device::Cpu).unwrap().to_dtype(DType::F64).unwrap()).collect()
            } else {
                vec![]
            };
            // Row 1 has two real source positions, row 0 all of them.
            let m: Vec<f32> = (0..b).flat_map(|r| (0..s).map(move |i| if r == 1 && i >= 2 { 0.0 } else { 1.0 })).collect();
            Self {
                emb,
                layers,
                masks,
                att_w: var(&mut rng, &[a, h], 0.7),
                att_v: var(&mut rng, &[1, a], 1.0),
                keys: var(&mut rng, &[b, s, a], 1.0),
                values: var(&mut rng, &[b, s, ex], 1.0),
                src_mask: Tensor::from_vec(m, (b, s), &Device::Cpu).unwrap(),
            }
        }

        fn weights(&self) -> Vec<LayerWeights> {
            self.layers
                .iter()
                .map(|(i, h, b)| LayerWeights { w_ih: i.as_tensor().clone(), w_hh: h.as_tensor().clone(), bias: b.as_tensor().clone() })
                .collect()
        }

        fn vars(&self) -> Vec<&Var> {
            let mut v = vec![&self.emb, &self.att_w, &self.att_v, &self.keys, &self.values];
            for (i, h, b) in &self.layers {
                v.extend([i, h, b]);
            }
            v
        }

        fn run(&self, fused: bool) -> Result<(Tensor, Tensor)> {
            let f = if fused { attention_decoder_fused } else { reference };
            f(
                self.emb.as_tensor(),
                &self.weights(),
                &self.masks,
                self.att_w.as_tensor(),
                self.att_v.as_tensor(),
                self.keys.as_tensor(),
                self.values.as_tensor(),
                &self.src_mask,
            )
        }
    }

    #[test]
    fn fused_decoder_matches_the_composed_one_in_value_and_gradient() -> Result<()> {
        for (layers, dropout) in [(1, false), (2, true), (3, false)] {
            let dims = (5, 3, 4, 3, 4, 5, 3, layers);
            let case = Case::new(11 + layers as u64, dims, dropout);
            let (h1, s1) = case.run(true)?;
            let (h0, s0) = case.run(false)?;
            assert_eq!(h1.dims(), &[3, 5, 5]);
            assert_eq!(s1.dims(), &[3, 5, 4]);
            assert!(max_abs_diff(&h1, &h0) < 1e-12, "h differs by {}", max_abs_diff(&h1, &h0));
            assert!(max_abs_diff(&s1, &s0) < 1e-12, "scores differ by {}", max_abs_diff(&s1, &s0));
            // A loss that reads h and the scores through the masked softmax, as the objectives do.
            let mut rng = SeededRng::new(3);
            let (wh, ws) = (noise(&mut rng, h0.dims(), 1.0), noise(&mut rng, s0.dims(), 1.0));
            let mask = case.src_mask.to_dtype(DType::F64)?.unsqueeze(1)?.broadcast_as(s0.shape())?;
            let loss = |h: &Tensor, s: &Tensor| -> Result<Tensor> {
                let lp = Categorical::from_logits(s, Some(&mask))?.log_probs().clone();
                (h * &wh)?.sum_all()? + (lp.mul(&mask)? * &ws)?.sum_all()?
            };
            let g1 = loss(&h1, &s1)?.backward()?;
            let g0 = loss(&h0, &s0)?.backward()?;
            for (k, v) in case.vars().into_iter().enumerate() {
                let (a, b) = (g1.get(v).expect("fused grad"), g0.get(v).expect("composed grad"));
                let scale = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
                assert!(scale > 1e-6, "input {k}: composed gradient is zero");
                assert!(max_abs_diff(a, b) < 1e-11 * scale.max(1.0), "input {k} ({layers} layers): gradients differ by {}", max_abs_diff(a, b));
            }
            // Padded source positions take no gradient through the attention.
            let dk = g1.get(&case.keys).expect("grad");
            assert_eq!(dk.get(1)?.narrow(0, 2, 2)?.abs()?.sum_all()?.to_scalar::<f64>()?, 0.0);
        }
        Ok(())
    }

    #[test]
    fn fused_decoder_gradient_matches_finite_differences() -> Result<()> {
        let case = Case::new(7, (3, 2, 3, 2, 3, 2, 2, 2), true);
        let mut rng = SeededRng::new(8);
        let (wh, ws) = (noise(&mut rng, &[2, 3, 2], 1.0), noise(&mut rng, &[2, 3, 3], 1.0));
        let loss = |c: &Case| -> Result<f64> {
            let (h, s) = c.run(true)?;
            ((h * &wh)?.sum_all()? + (s.tanh()? * &ws)?.sum_all()?)?.to_scalar::<f64>()
        };
        let (h, s) = case.run(true)?;
        let grads = ((h * &wh)?.sum_all()? + (s.tanh()? * &ws)?.sum_all()?)?.backward()?;
        let eps = 1e-6;
        for v in case.vars() {
            let g = grads.get(v).expect("grad").flatten_all()?.to_vec1::<f64>()?;
            let base = v.as_tensor().flatten_all()?.to_vec1::<f64>()?;
            for k in (0..base.len()).step_by(3) {
                let mut p = base.clone();
                p[k] += eps;
                v.set(&Tensor::from_vec(p.clone(), v.dims(), &Device::Cpu)?)?;
                let up = loss(&case)?;
                p[k] -= 2.0 * eps;
                v.set(&Tensor::from_vec(p, v.dims(), &Device::Cpu)?)?;
                let down = loss(&case)?;
                v.set(&Tensor::from_vec(base.clone(), v.dims(), &Device::Cpu)?)?;
                let fd = (up - down) / (2.0 * eps);
                assert!((fd - g[k]).abs() < 1e-7, "{:?}[{k}]: finite difference {fd}, backward {}", v.dims(), g[k]);
            }
        }
        Ok(())
    }

    #[test]
    fn bad_shapes_are_refused_with_the_sizes() {
        let case = Case::new(1, (2, 2, 3, 2, 3, 2, 2, 1), false);
        let wrong_keys = Tensor::zeros((2, 4, 2), DType::F64, &Device::Cpu).unwrap();
        let err = attention_decoder_fused(
            case.emb.as_tensor(),
            &case.weights(),
            &[],
            case.att_w.as_tensor(),
            case.att_v.as_tensor(),
            &wrong_keys,
            case.values.as_tensor(),
            &case.src_mask,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("attention-decoder") && err.contains("[2, 4, 2]"), "{err}");
    }
}
