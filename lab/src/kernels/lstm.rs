//! The project's own LSTM: multi-layer, optionally bidirectional, padding-aware, differentiable
//! with candle's autograd, and built from [`ParamStore`] so that every weight is seeded.
//!
//! # Equations
//!
//! For an input x_t and the previous state (h_{t-1}, c_{t-1}), with the four gates stacked in
//! PyTorch's order i, f, g, o into one weight `W_ih` `[4H, in]`, one `W_hh` `[4H, H]` and two
//! biases `b_ih`, `b_hh` `[4H]`:
//!
//! ```text
//! [a_i; a_f; a_g; a_o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
//! i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
//! c_t = f ⊙ c_{t-1} + i ⊙ g
//! h_t = o ⊙ tanh(c_t)
//! ```
//!
//! with h_0 = c_0 = 0. This is exactly PyTorch's `nn.LSTM` (and candle's `candle_nn::rnn::LSTM`)
//! cell, so weights can be exchanged with either.
//!
//! # Speed
//!
//! candle's stock LSTM multiplies `W_ih x_t` inside the time loop and copies every input slice.
//! [`Lstm`] instead computes the input projection of all time steps of a layer as one matmul
//! before the loop. On the CPU that matmul covers both directions at once (batch-major, no
//! transpose), and the recurrences that follow are one fused op per layer with a hand-written
//! backward pass ([`super::lstm_fused::lstm_layer_fused`]): the biases are added inside it, the
//! backward direction reads each row right to left within its own length without a gather, and
//! the two directions run concurrently, one per thread, since each is a chain of products too
//! small to split. The decoder's [`StackedLstmCell`] steps through the fused cell update. On
//! other devices both fall back to the same equations composed from candle ops, one direction at
//! a time in a time-major layout (the backward direction through one gather that reverses each
//! row within its length; steps cut out in ⌈√T⌉-step blocks, see `split_steps`).
use super::lstm_fused::{lstm_cell_fused, lstm_layer_fused};
use crate::rng::SeededRng;
use varattn::nn::ParamStore;
use candle_core::{bail, DType, Result, Tensor};
use candle_nn::ops::sigmoid;

/// Shape and regularisation of an [`Lstm`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LstmConfig {
    /// Size of each input vector x_t.
    pub input: usize,
    /// Size H of the hidden and cell states of each direction.
    pub hidden: usize,
    /// Number of stacked layers (at least 1); layer l > 0 reads the (concatenated) outputs of
    /// layer l - 1.
    pub layers: usize,
    /// Whether each layer also runs right to left; the outputs of the two directions are
    /// concatenated (forward first), so the output size is 2H.
    pub bidirectional: bool,
    /// Inverted-dropout probability applied to the inputs of layers 1.. (between layers, never to
    /// the network's input or output), in training only. In `[0, 1)`.
    pub dropout: f64,
}

/// The four parameters of one LSTM cell (one layer, one direction).
#[derive(Debug, Clone)]
struct CellWeights {
    /// `[4H, in]`, gates stacked i, f, g, o.
    w_ih: Tensor,
    /// `[4H, H]`, gates stacked i, f, g, o.
    w_hh: Tensor,
    /// `[4H]`.
    b_ih: Tensor,
    /// `[4H]`.
    b_hh: Tensor,
}

impl CellWeights {
    /// Creates `{prefix}.w_ih`, `{prefix}.w_hh`, `{prefix}.b_ih`, `{prefix}.b_hh`, all drawn from
    /// the store's U(-init, init).
    fn new(ps: &mut ParamStore, prefix: &str, input: usize, hidden: usize) -> Result<Self> {
        Ok(Self {
            w_ih: ps.uniform(&format!("{prefix}.w_ih"), &[4 * hidden, input])?,
            w_hh: ps.uniform(&format!("{prefix}.w_hh"), &[4 * hidden, hidden])?,
            b_ih: ps.uniform(&format!("{prefix}.b_ih"), &[4 * hidden])?,
            b_hh: ps.uniform(&format!("{prefix}.b_hh"), &[4 * hidden])?,
        })
    }

    /// b_ih + b_hh, `[4H]`.
    fn bias(&self) -> Result<Tensor> {
        &self.b_ih + &self.b_hh
    }
}

/// The LSTM cell update from the gate pre-activations.
///
/// `gates` `[N, 4H]` = W_ih x + b_ih + W_hh h + b_hh in the gate order i, f, g, o; `c_prev`
/// `[N, H]`. Returns (h', c') with c' = σ(a_f) ⊙ c_prev + σ(a_i) ⊙ tanh(a_g) and
/// h' = σ(a_o) ⊙ tanh(c'). Everything the recurrence does per step besides the two matmuls is
/// here, so a fused kernel with a hand-written backward can replace this one function.
fn lstm_cell(gates: &Tensor, c_prev: &Tensor) -> Result<(Tensor, Tensor)> {
    if gates.device().is_cpu() {
        return lstm_cell_fused(gates, c_prev);
    }
    lstm_cell_composed(gates, c_prev)
}

/// [`lstm_cell`] composed from candle ops (any device; the reference the fused kernel is tested
/// against).
pub(crate) fn lstm_cell_composed(gates: &Tensor, c_prev: &Tensor) -> Result<(Tensor, Tensor)> {
    let hd = c_prev.dim(1)?;
    let i = sigmoid(&gates.narrow(1, 0, hd)?)?;
    let f = sigmoid(&gates.narrow(1, hd, hd)?)?;
    let g = gates.narrow(1, 2 * hd, hd)?.tanh()?;
    let o = sigmoid(&gates.narrow(1, 3 * hd, hd)?)?;
    let c = ((f * c_prev)? + (i * g)?)?;
    let h = (o * c.tanh()?)?;
    Ok((h, c))
}

/// Splits a time-major tensor `[T, N, K]` into its T steps `[N, K]`.
///
/// The backward pass of a slice (candle's `narrow`) materialises a zero-padded gradient as large
/// as the tensor it was cut from, so cutting all T steps straight from `[T, N, K]` would cost
/// O(T²·N·K) in the backward pass. Cutting ⌈√T⌉-step blocks first and the steps out of each
/// block costs O(T^1.5·N·K).
fn split_steps(xs: &Tensor) -> Result<Vec<Tensor>> {
    let t = xs.dim(0)?;
    let block = ((t as f64).sqrt().ceil() as usize).max(1);
    let mut steps = Vec::with_capacity(t);
    let mut start = 0;
    while start < t {
        let len = block.min(t - start);
        let chunk = if len == t { xs.clone() } else { xs.narrow(0, start, len)? };
        for k in 0..len {
            steps.push(chunk.get(k)?);
        }
        start += len;
    }
    Ok(steps)
}

/// Row lengths of a batch, the step masks, and for bidirectional layers the per-row reversal
/// gathers.
struct Padding {
    /// Each row's number of real steps.
    lengths: Vec<usize>,
    /// The smallest row length: steps before it need no masking.
    min_len: usize,
    /// (keep, drop), each `[T, B, 1]` in the input's dtype: keep = 1 at real steps and 0 at
    /// padding, drop = 1 - keep. `None` when no row has padding.
    masks: Option<(Tensor, Tensor)>,
    /// u32 `[T*B]`: for position (t, b) of a time-major `[T, B, ·]` tensor, the flat index
    /// b*T + s of the batch-major `[B, T, ·]` position it reads when each row is reversed within
    /// its own length (padding stays in place). Reverses and transposes the input in one gather.
    rev_tm: Option<Tensor>,
    /// u32 `[B*T]`: the same reversal, batch-major to batch-major (an involution), to put the
    /// backward direction's outputs back in reading order.
    rev: Option<Tensor>,
}

impl Padding {
    fn new(mask: Option<&Tensor>, xs: &Tensor, need_rev: bool) -> Result<Self> {
        let (b, t, _) = xs.dims3()?;
        let dev = xs.device();
        let lengths = match mask {
            None => vec![t; b],
            Some(m) => {
                if m.dims() != [b, t] {
                    bail!("lstm: mask has shape {:?}, expected [{b}, {t}]", m.dims())
                }
                let rows = m.to_dtype(DType::F32)?.to_vec2::<f32>()?;
                let mut lengths = Vec::with_capacity(b);
                for (r, row) in rows.iter().enumerate() {
                    let len = row.iter().take_while(|&&v| v == 1.0).count();
                    if row[len..].iter().any(|&v| v != 0.0) {
                        bail!("lstm: mask row {r} is not 1s followed by 0s (padding must be at the end)")
                    }
                    lengths.push(len);
                }
                lengths
            }
        };
        let min_len = lengths.iter().copied().min().unwrap_or(t);
        let masks = if min_len < t {
            let keep: Vec<f32> =
                (0..t).flat_map(|s| lengths.iter().map(move |&len| if s < len { 1.0 } else { 0.0 })).collect();
            let keep = Tensor::from_vec(keep, (t, b, 1), dev)?.to_dtype(xs.dtype())?;
            let drop = keep.affine(-1.0, 1.0)?;
            Some((keep, drop))
        } else {
            None
        };
        let src = |r: usize, s: usize| (r * t + if s < lengths[r] { lengths[r] - 1 - s } else { s }) as u32;
        let (rev_tm, rev) = if need_rev {
            let tm: Vec<u32> = (0..t).flat_map(|s| (0..b).map(move |r| (s, r))).map(|(s, r)| src(r, s)).collect();
            let bm: Vec<u32> = (0..b).flat_map(|r| (0..t).map(move |s| (r, s))).map(|(r, s)| src(r, s)).collect();
            (Some(Tensor::from_vec(tm, b * t, dev)?), Some(Tensor::from_vec(bm, b * t, dev)?))
        } else {
            (None, None)
        };
        Ok(Self { lengths, min_len, masks, rev_tm, rev })
    }
}

/// A multi-layer, optionally bidirectional LSTM over padded batches (see the [module
/// docs](self) for the equations).
///
/// Parameters are named `{name}.l{layer}.{fwd|bwd}.{w_ih|w_hh|b_ih|b_hh}`, with shapes `[4H, in]`,
/// `[4H, H]`, `[4H]`, `[4H]`, gates stacked i, f, g, o as in PyTorch; `in` is the input size for
/// layer 0 and `H` (or `2H` if bidirectional) above it.
#[derive(Debug, Clone)]
pub struct Lstm {
    cfg: LstmConfig,
    /// `layers[l][d]`: layer l, direction d (0 = left to right, 1 = right to left).
    layers: Vec<Vec<CellWeights>>,
}

impl Lstm {
    /// Creates the parameters in `ps` (drawn from its seeded U(-init, init)), named
    /// `{name}.l0.fwd.w_ih` etc.
    pub fn new(ps: &mut ParamStore, name: &str, cfg: LstmConfig) -> Result<Self> {
        if cfg.layers == 0 || cfg.hidden == 0 {
            bail!("lstm `{name}`: layers and hidden must be positive, got {cfg:?}")
        }
        if !(0.0..1.0).contains(&cfg.dropout) {
            bail!("lstm `{name}`: dropout must be in [0, 1), got {}", cfg.dropout)
        }
        let nd = if cfg.bidirectional { 2 } else { 1 };
        let mut layers = Vec::with_capacity(cfg.layers);
        for l in 0..cfg.layers {
            let input = if l == 0 { cfg.input } else { nd * cfg.hidden };
            let dirs = ["fwd", "bwd"][..nd]
                .iter()
                .map(|d| CellWeights::new(ps, &format!("{name}.l{l}.{d}"), input, cfg.hidden))
                .collect::<Result<Vec<_>>>()?;
            layers.push(dirs);
        }
        Ok(Self { cfg, layers })
    }

    /// The configuration this LSTM was built with.
    pub fn config(&self) -> &LstmConfig {
        &self.cfg
    }

    /// Size of each output vector: `hidden`, or `2 * hidden` if bidirectional.
    pub fn output_dim(&self) -> usize {
        self.cfg.hidden * if self.cfg.bidirectional { 2 } else { 1 }
    }

    /// Runs the whole network over a padded batch.
    ///
    /// * `xs` `[B, T, input]`.
    /// * `mask` `[B, T]` (any float dtype): 1 at real steps, 0 at padding, padding only at the end
    ///   of each row; `None` means every step is real. Anything else is an error.
    /// * `dropout`: `Some(rng)` in training applies inverted dropout with probability
    ///   `cfg.dropout` (masks from [`SeededRng::dropout_mask`]) to the inputs of layers 1..;
    ///   `None` (evaluation) applies none.
    ///
    /// Returns the top layer's outputs `[B, T, output_dim]` — for a bidirectional LSTM the
    /// left-to-right h_t then the right-to-left h_t, concatenated — with exact zeros at padded
    /// positions, and the final `(h, c)` (each `[B, H]`) of every layer and direction, in the
    /// order layer 0 fwd, layer 0 bwd, layer 1 fwd, … (PyTorch's `h_n` order). The final state of
    /// the forward direction is the one after each row's last real step (not after step T-1);
    /// the backward direction starts at each row's own last real step and ends at step 0, so its
    /// final state is the one after reading step 0. Padded inputs never influence anything.
    pub fn forward(&self, xs: &Tensor, mask: Option<&Tensor>, dropout: Option<&mut SeededRng>) -> Result<(Tensor, Vec<(Tensor, Tensor)>)> {
        self.run(xs, mask, dropout, true)
    }

    /// The top layer's outputs of [`Lstm::forward`] alone, `[B, T, output_dim]`: on the CPU this
    /// skips assembling the final states, which costs a few copies per layer in both passes.
    pub fn outputs(&self, xs: &Tensor, mask: Option<&Tensor>, dropout: Option<&mut SeededRng>) -> Result<Tensor> {
        Ok(self.run(xs, mask, dropout, false)?.0)
    }

    /// [`Lstm::forward`]; the final states only when `want_finals` (otherwise possibly empty).
    fn run(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
        mut dropout: Option<&mut SeededRng>,
        want_finals: bool,
    ) -> Result<(Tensor, Vec<(Tensor, Tensor)>)> {
        let (b, t, d_in) = xs.dims3()?;
        if d_in != self.cfg.input {
            bail!("lstm: input has {d_in} features, expected {}", self.cfg.input)
        }
        let nd = self.layers[0].len();
        if t == 0 {
            let z = Tensor::zeros((b, self.cfg.hidden), xs.dtype(), xs.device())?;
            let out = Tensor::zeros((b, 0, self.output_dim()), xs.dtype(), xs.device())?;
            return Ok((out, vec![(z.clone(), z); self.layers.len() * nd]));
        }
        // On the CPU each layer is one fused op over all its directions (`lstm_layer_fused`).
        let fused = xs.device().is_cpu() && matches!(xs.dtype(), DType::F32 | DType::F64);
        let pad = Padding::new(mask, xs, self.cfg.bidirectional && !fused)?;
        let mut x = xs.clone();
        let mut finals = Vec::with_capacity(self.layers.len() * nd);
        for (l, dirs) in self.layers.iter().enumerate() {
            if l > 0 && self.cfg.dropout > 0.0 {
                if let Some(rng) = dropout.as_deref_mut() {
                    let m = rng.dropout_mask(x.dims(), self.cfg.dropout, x.device())?.to_dtype(x.dtype())?;
                    x = (x * m)?;
                }
            }
            let d = x.dim(2)?;
            if fused {
                // Batch-major input projections of every direction as one product [B·T, D·4H];
                // the op reads each direction's steps in its own order.
                let cat0 = |f: fn(&CellWeights) -> Result<Tensor>| -> Result<Tensor> {
                    let parts = dirs.iter().map(f).collect::<Result<Vec<_>>>()?;
                    if parts.len() == 1 {
                        Ok(parts[0].clone())
                    } else {
                        Tensor::cat(&parts, 0)
                    }
                };
                let w_ih = cat0(|w| Ok(w.w_ih.clone()))?;
                let xp = varattn::nn::gemm::matmul_blocked(&x.reshape((b * t, d))?, &w_ih.t()?)?;
                let layer = lstm_layer_fused(&xp, &cat0(|w| Ok(w.w_hh.clone()))?, &cat0(CellWeights::bias)?, &pad.lengths, want_finals)?;
                finals.extend(layer.finals);
                x = layer.outputs;
                continue;
            }
            // Time-major inputs [T*B, in]: a transpose for the forward direction, a gather that
            // also reverses each row within its length for the backward one.
            let x_fwd = x.transpose(0, 1)?.contiguous()?.reshape((t * b, d))?;
            let (out, state) = run_direction(&dirs[0], &x_fwd, b, &pad)?;
            finals.push(state);
            x = if let (Some(w_bwd), Some(rev_tm), Some(rev)) = (dirs.get(1), &pad.rev_tm, &pad.rev) {
                let x_bwd = x.reshape((b * t, d))?.index_select(rev_tm, 0)?;
                let (out_rev, state) = run_direction(w_bwd, &x_bwd, b, &pad)?;
                finals.push(state);
                let hd = self.cfg.hidden;
                let out_bwd = out_rev.reshape((b * t, hd))?.index_select(rev, 0)?.reshape((b, t, hd))?;
                Tensor::cat(&[out, out_bwd], 2)?
            } else {
                out
            };
        }
        Ok((x, finals))
    }
}

/// Runs one direction of one layer over time-major inputs `x_tm` `[T*B, in]` (already reversed
/// for the backward direction). Returns the outputs `[B, T, H]` in the order read (zeros at
/// padding) and the state after each row's last real step.
fn run_direction(w: &CellWeights, x_tm: &Tensor, b: usize, pad: &Padding) -> Result<(Tensor, (Tensor, Tensor))> {
    let hd = w.w_hh.dim(1)?;
    let t = x_tm.dim(0)? / b;
    // The input projection of every step as one matmul, time-major so that each step is one
    // contiguous slice.
    let xp = varattn::nn::gemm::matmul_blocked(x_tm, &w.w_ih.t()?)?.broadcast_add(&w.bias()?)?.reshape((t, b, 4 * hd))?;
    let w_hh_t = w.w_hh.t()?;
    let zeros = Tensor::zeros((b, hd), x_tm.dtype(), x_tm.device())?;
    let (mut h, mut c) = (zeros.clone(), zeros);
    let mut outs = Vec::with_capacity(t);
    for (s, xp_s) in split_steps(&xp)?.into_iter().enumerate() {
        // h_0 = 0: the first step needs no recurrent matmul.
        let gates = if s == 0 { xp_s } else { (xp_s + h.matmul(&w_hh_t)?)? };
        let (h_new, c_new) = lstm_cell(&gates, &c)?;
        match &pad.masks {
            Some((keep, drop)) if s >= pad.min_len => {
                // Rows past their end output zeros and carry their state unchanged.
                let (k, d) = (keep.get(s)?, drop.get(s)?);
                let out = h_new.broadcast_mul(&k)?;
                h = (&out + h.broadcast_mul(&d)?)?;
                c = (c_new.broadcast_mul(&k)? + c.broadcast_mul(&d)?)?;
                outs.push(out);
            }
            _ => {
                h = h_new.clone();
                c = c_new;
                outs.push(h_new);
            }
        }
    }
    Ok((Tensor::stack(&outs, 1)?, (h, c)))
}

/// A stack of unidirectional LSTM cells stepped one time step at a time, for a decoder whose
/// next input depends on its previous output (input feeding). Same equations as [`Lstm`].
///
/// Parameters are named `{name}.l{layer}.{w_ih|w_hh|b_ih|b_hh}`, shapes as in [`Lstm`].
#[derive(Debug, Clone)]
pub struct StackedLstmCell {
    input: usize,
    hidden: usize,
    dropout: f64,
    layers: Vec<CellWeights>,
}

impl StackedLstmCell {
    /// Creates `layers` cells in `ps`: layer 0 reads `input` features, layer l > 0 reads the h of
    /// layer l - 1. `dropout` (in `[0, 1)`) is applied between layers in training.
    pub fn new(ps: &mut ParamStore, name: &str, input: usize, hidden: usize, layers: usize, dropout: f64) -> Result<Self> {
        if layers == 0 || hidden == 0 {
            bail!("stacked lstm cell `{name}`: layers ({layers}) and hidden ({hidden}) must be positive")
        }
        if !(0.0..1.0).contains(&dropout) {
            bail!("stacked lstm cell `{name}`: dropout must be in [0, 1), got {dropout}")
        }
        let layers = (0..layers)
            .map(|l| CellWeights::new(ps, &format!("{name}.l{l}"), if l == 0 { input } else { hidden }, hidden))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { input, hidden, dropout, layers })
    }

    /// Size of the input vectors.
    pub fn input_dim(&self) -> usize {
        self.input
    }

    /// Size H of each layer's h and c.
    pub fn hidden_dim(&self) -> usize {
        self.hidden
    }

    /// Number of stacked layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Dropout probability between layers (training).
    pub fn dropout(&self) -> f64 {
        self.dropout
    }

    /// Every layer's weights (bottom first) for [`crate::kernels::attention_decoder`], with the bias
    /// b_ih + b_hh (differentiable in both).
    pub fn layer_weights(&self) -> Result<Vec<crate::kernels::attention_decoder::LayerWeights>> {
        self.layers
            .iter()
            .map(|w| Ok(crate::kernels::attention_decoder::LayerWeights { w_ih: w.w_ih.clone(), w_hh: w.w_hh.clone(), bias: w.bias()? }))
            .collect()
    }

    /// The all-zero state `(h, c)`, each `[batch, H]`, of every layer (bottom first).
    pub fn zero_state(&self, batch: usize) -> Result<Vec<(Tensor, Tensor)>> {
        let w = &self.layers[0].w_ih;
        let z = Tensor::zeros((batch, self.hidden), w.dtype(), w.device())?;
        Ok(vec![(z.clone(), z); self.layers.len()])
    }

    /// One time step: `x` `[B, input]` and the per-layer states (bottom first) give the top
    /// layer's new h `[B, H]` and the new per-layer states. `dropout`: `Some(rng)` in training
    /// applies inverted dropout (a fresh [`SeededRng::dropout_mask`] per call) to the input of
    /// layers 1..; `None` applies none.
    pub fn step(
        &self,
        x: &Tensor,
        state: &[(Tensor, Tensor)],
        mut dropout: Option<&mut SeededRng>,
    ) -> Result<(Tensor, Vec<(Tensor, Tensor)>)> {
        if state.len() != self.layers.len() {
            bail!("stacked lstm cell: got {} layer states, expected {}", state.len(), self.layers.len())
        }
        let mut inp = x.clone();
        let mut next = Vec::with_capacity(self.layers.len());
        for (l, (w, (h, c))) in self.layers.iter().zip(state).enumerate() {
            if l > 0 && self.dropout > 0.0 {
                if let Some(rng) = dropout.as_deref_mut() {
                    let m = rng.dropout_mask(inp.dims(), self.dropout, inp.device())?.to_dtype(inp.dtype())?;
                    inp = (inp * m)?;
                }
            }
            let gates = (inp.matmul(&w.w_ih.t()?)? + h.matmul(&w.w_hh.t()?)?)?.broadcast_add(&w.bias()?)?;
            let (h_new, c_new) = lstm_cell(&gates, c)?;
            inp = h_new.clone();
            next.push((h_new, c_new));
        }
        Ok((inp, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use candle_nn::rnn::RNN;
    use std::collections::HashMap;

    fn cfg(input: usize, hidden: usize, layers: usize, bidirectional: bool, dropout: f64) -> LstmConfig {
        LstmConfig { input, hidden, layers, bidirectional, dropout }
    }

    /// U(-1, 1) of the given shape.
    fn noise(rng: &mut SeededRng, dims: &[usize]) -> Result<Tensor> {
        rng.uniform(dims, &Device::Cpu)?.affine(2.0, -1.0)
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
        assert_eq!(a.dims(), b.dims());
        (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()
    }

    fn mask_from_lengths(lengths: &[usize], t: usize) -> Result<Tensor> {
        let v: Vec<f32> = lengths.iter().flat_map(|&l| (0..t).map(move |s| if s < l { 1.0 } else { 0.0 })).collect();
        Tensor::from_vec(v, (lengths.len(), t), &Device::Cpu)
    }

    /// The parameters of an Lstm in a fixed order (layer, direction, w_ih, w_hh, b_ih, b_hh).
    fn param_list(l: &Lstm) -> Vec<Tensor> {
        l.layers
            .iter()
            .flatten()
            .flat_map(|w| [w.w_ih.clone(), w.w_hh.clone(), w.b_ih.clone(), w.b_hh.clone()])
            .collect()
    }

    fn with_params(l: &Lstm, ps: &[Tensor]) -> Lstm {
        let mut it = ps.iter().cloned();
        let mut next = || it.next().expect("enough parameters");
        let layers = l
            .layers
            .iter()
            .map(|dirs| {
                dirs.iter().map(|_| CellWeights { w_ih: next(), w_hh: next(), b_ih: next(), b_hh: next() }).collect()
            })
            .collect();
        Lstm { cfg: l.cfg, layers }
    }

    #[test]
    fn parameter_names_and_shapes() -> Result<()> {
        let mut ps = ParamStore::new(1, 0.1, &Device::Cpu);
        let lstm = Lstm::new(&mut ps, "enc", cfg(3, 5, 2, true, 0.0))?;
        assert_eq!(lstm.output_dim(), 10);
        let t = ps.tensors();
        assert_eq!(t.len(), 16);
        assert_eq!(t["enc.l0.fwd.w_ih"].dims(), &[20, 3]);
        assert_eq!(t["enc.l0.bwd.w_hh"].dims(), &[20, 5]);
        assert_eq!(t["enc.l1.fwd.w_ih"].dims(), &[20, 10]);
        assert_eq!(t["enc.l1.bwd.b_hh"].dims(), &[20]);
        let mut ps2 = ParamStore::new(1, 0.1, &Device::Cpu);
        let cell = StackedLstmCell::new(&mut ps2, "dec", 3, 5, 2, 0.0)?;
        assert_eq!((cell.input_dim(), cell.hidden_dim()), (3, 5));
        let t2 = ps2.tensors();
        assert_eq!(t2.len(), 8);
        assert_eq!(t2["dec.l1.w_ih"].dims(), &[20, 5]);
        // Same seed, same draws: reproducible initialisation.
        let mut ps3 = ParamStore::new(1, 0.1, &Device::Cpu);
        let again = Lstm::new(&mut ps3, "enc", cfg(3, 5, 2, true, 0.0))?;
        for (a, b) in param_list(&lstm).iter().zip(param_list(&again)) {
            assert_eq!(max_abs_diff(a, &b)?, 0.0);
        }
        Ok(())
    }

    #[test]
    fn matches_candle_lstm_with_the_same_weights() -> Result<()> {
        let dev = Device::Cpu;
        let mut ps = ParamStore::new(7, 0.3, &dev);
        let lstm = Lstm::new(&mut ps, "enc", cfg(5, 7, 1, false, 0.0))?;
        let w = &lstm.layers[0][0];
        let map: HashMap<String, Tensor> = [
            ("weight_ih_l0", &w.w_ih),
            ("weight_hh_l0", &w.w_hh),
            ("bias_ih_l0", &w.b_ih),
            ("bias_hh_l0", &w.b_hh),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
        let vb = candle_nn::VarBuilder::from_tensors(map, DType::F32, &dev);
        let reference = candle_nn::rnn::lstm(5, 7, candle_nn::rnn::LSTMConfig::default(), vb)?;
        let x = noise(&mut SeededRng::new(3), &[3, 6, 5])?.affine(2.0, 0.0)?;
        let states = reference.seq(&x)?;
        let want = reference.states_to_tensor(&states)?;
        let (got, finals) = lstm.forward(&x, None, None)?;
        assert_eq!(got.dims(), &[3, 6, 7]);
        assert!(max_abs_diff(&got, &want)? < 1e-5, "outputs differ by {}", max_abs_diff(&got, &want)?);
        let last = states.last().expect("six steps");
        assert_eq!(finals.len(), 1);
        assert!(max_abs_diff(&finals[0].0, last.h())? < 1e-5);
        assert!(max_abs_diff(&finals[0].1, last.c())? < 1e-5);
        // Not trivially small: the outputs carry signal.
        assert!(want.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? > 1e-2);
        Ok(())
    }

    #[test]
    fn backward_direction_reads_right_to_left() -> Result<()> {
        let dev = Device::Cpu;
        let mut ps = ParamStore::new(11, 0.3, &dev);
        let bi = Lstm::new(&mut ps, "bi", cfg(4, 3, 1, true, 0.0))?;
        let fwd = Lstm { cfg: cfg(4, 3, 1, false, 0.0), layers: vec![vec![bi.layers[0][0].clone()]] };
        let bwd = Lstm { cfg: cfg(4, 3, 1, false, 0.0), layers: vec![vec![bi.layers[0][1].clone()]] };
        let t = 5;
        let x = noise(&mut SeededRng::new(4), &[2, t, 4])?;
        let flip = Tensor::from_vec((0..t as u32).rev().collect::<Vec<_>>(), t, &dev)?;
        let (out, finals) = bi.forward(&x, None, None)?;
        let (of, ff) = fwd.forward(&x, None, None)?;
        let (ob, fb) = bwd.forward(&x.index_select(&flip, 1)?, None, None)?;
        let ob = ob.index_select(&flip, 1)?;
        assert!(max_abs_diff(&out.narrow(2, 0, 3)?, &of)? < 1e-6);
        assert!(max_abs_diff(&out.narrow(2, 3, 3)?, &ob)? < 1e-6);
        assert!(max_abs_diff(&finals[0].0, &ff[0].0)? < 1e-6);
        assert!(max_abs_diff(&finals[1].0, &fb[0].0)? < 1e-6);
        assert!(max_abs_diff(&finals[1].1, &fb[0].1)? < 1e-6);
        // And the backward half is not the forward recurrence run with other weights.
        let (ob_unflipped, _) = bwd.forward(&x, None, None)?;
        assert!(max_abs_diff(&out.narrow(2, 3, 3)?, &ob_unflipped)? > 1e-3);
        Ok(())
    }

    #[test]
    fn padded_rows_match_rows_run_alone() -> Result<()> {
        let dev = Device::Cpu;
        let mut ps = ParamStore::new(5, 0.4, &dev);
        let lstm = Lstm::new(&mut ps, "enc", cfg(4, 5, 2, true, 0.0))?;
        let lengths = [6usize, 3, 1, 4];
        let t = 6;
        // Padding filled with noise too: it must not leak into anything.
        let x = noise(&mut SeededRng::new(8), &[4, t, 4])?;
        let mask = mask_from_lengths(&lengths, t)?;
        let (out, finals) = lstm.forward(&x, Some(&mask), None)?;
        assert_eq!(out.dims(), &[4, t, 10]);
        assert_eq!(finals.len(), 4);
        for (r, &len) in lengths.iter().enumerate() {
            let alone = x.narrow(0, r, 1)?.narrow(1, 0, len)?;
            let (want, want_finals) = lstm.forward(&alone, None, None)?;
            let got = out.narrow(0, r, 1)?.narrow(1, 0, len)?;
            assert!(max_abs_diff(&got, &want)? < 1e-6, "row {r}: {}", max_abs_diff(&got, &want)?);
            if len < t {
                let padded = out.narrow(0, r, 1)?.narrow(1, len, t - len)?.flatten_all()?.to_vec1::<f32>()?;
                assert!(padded.iter().all(|&v| v == 0.0), "row {r}: non-zero output at padding");
            }
            for (k, ((h, c), (wh, wc))) in finals.iter().zip(&want_finals).enumerate() {
                assert!(max_abs_diff(&h.narrow(0, r, 1)?, wh)? < 1e-6, "row {r} state {k} h");
                assert!(max_abs_diff(&c.narrow(0, r, 1)?, wc)? < 1e-6, "row {r} state {k} c");
            }
        }
        // The final forward state is not simply the state at T-1 of the unmasked batch.
        let (_, unmasked) = lstm.forward(&x, None, None)?;
        assert!(max_abs_diff(&unmasked[0].0.narrow(0, 1, 1)?, &finals[0].0.narrow(0, 1, 1)?)? > 1e-3);
        // A mask with a hole is rejected.
        let bad = Tensor::new(&[[1f32, 0., 1., 0., 0., 0.]], &dev)?;
        assert!(lstm.forward(&x.narrow(0, 0, 1)?, Some(&bad), None).is_err());
        Ok(())
    }

    #[test]
    fn gradients_match_finite_differences_in_f64() -> Result<()> {
        // ParamStore makes f32 parameters; the check copies them to f64 so that central
        // differences are accurate to ~1e-9 and a 1e-6 tolerance still catches any wrong term.
        let dev = Device::Cpu;
        let mut ps = ParamStore::new(13, 0.5, &dev);
        let base = Lstm::new(&mut ps, "enc", cfg(3, 4, 2, true, 0.0))?;
        let params: Vec<Var> =
            param_list(&base).iter().map(|p| Var::from_tensor(&p.to_dtype(DType::F64)?)).collect::<Result<_>>()?;
        let lengths = [4usize, 2, 3];
        let t = 4;
        let mask = mask_from_lengths(&lengths, t)?;
        let mut rng = SeededRng::new(21);
        let x = Var::from_tensor(&noise(&mut rng, &[3, t, 3])?.to_dtype(DType::F64)?)?;
        let r_out = noise(&mut rng, &[3, t, 8])?.to_dtype(DType::F64)?;
        let r_state: Vec<Tensor> =
            (0..8).map(|_| noise(&mut rng, &[3, 4])?.to_dtype(DType::F64)).collect::<Result<_>>()?;
        let loss = |ps: &[Tensor], x: &Tensor| -> Result<Tensor> {
            let lstm = with_params(&base, ps);
            let (out, finals) = lstm.forward(x, Some(&mask), None)?;
            let mut l = (out * &r_out)?.sum_all()?;
            for (k, (h, c)) in finals.iter().enumerate() {
                l = (l + (h * &r_state[2 * k])?.sum_all()? + (c.tanh()? * &r_state[2 * k + 1])?.sum_all()?)?;
            }
            Ok(l)
        };
        let tensors: Vec<Tensor> = params.iter().map(|v| v.as_tensor().clone()).collect();
        let grads = loss(&tensors, x.as_tensor())?.backward()?;
        let eps = 1e-5;
        let perturb = |t: &Tensor, i: usize, d: f64| -> Result<Tensor> {
            let mut v = t.flatten_all()?.to_vec1::<f64>()?;
            v[i] += d;
            Tensor::from_vec(v, t.shape(), &dev)
        };
        let eval = |ps: &[Tensor], x: &Tensor| -> Result<f64> { loss(ps, x)?.to_scalar::<f64>() };
        // (parameter index in param_list order, flat element): l0.fwd.w_ih, l0.bwd.w_hh,
        // l0.bwd.b_ih, l1.fwd.w_hh, l1.bwd.w_ih, l1.fwd.b_hh.
        let checks = [(0usize, 5usize), (5, 17), (6, 9), (9, 30), (12, 40), (11, 3)];
        let mut largest = 0f64;
        for &(p, i) in &checks {
            let g = grads.get(params[p].as_tensor()).expect("gradient reaches every parameter");
            let analytic = g.flatten_all()?.to_vec1::<f64>()?[i];
            let mut plus = tensors.clone();
            plus[p] = perturb(&tensors[p], i, eps)?;
            let mut minus = tensors.clone();
            minus[p] = perturb(&tensors[p], i, -eps)?;
            let numeric = (eval(&plus, x.as_tensor())? - eval(&minus, x.as_tensor())?) / (2.0 * eps);
            assert!((analytic - numeric).abs() < 1e-6 * (1.0 + numeric.abs()), "param {p}[{i}]: {analytic} vs {numeric}");
            largest = largest.max(numeric.abs());
        }
        assert!(largest > 1e-2, "the checked gradients are all tiny ({largest}); the check would be vacuous");
        // Input gradient: at a real position it matches; at padding it is exactly zero.
        let gx = grads.get(x.as_tensor()).expect("gradient reaches the input").flatten_all()?.to_vec1::<f64>()?;
        for &(r, s, f) in &[(1usize, 1usize, 2usize), (2, 0, 0), (0, 3, 1)] {
            let i = (r * t + s) * 3 + f;
            let numeric = (eval(&tensors, &perturb(x.as_tensor(), i, eps)?)?
                - eval(&tensors, &perturb(x.as_tensor(), i, -eps)?)?)
                / (2.0 * eps);
            assert!((gx[i] - numeric).abs() < 1e-6 * (1.0 + numeric.abs()), "x[{r},{s},{f}]: {} vs {numeric}", gx[i]);
            assert!(numeric.abs() > 1e-4);
        }
        for &(r, s) in &[(1usize, 2usize), (1, 3), (2, 3)] {
            for f in 0..3 {
                assert_eq!(gx[(r * t + s) * 3 + f], 0.0, "gradient leaks into padding x[{r},{s}]");
            }
        }
        Ok(())
    }

    #[test]
    fn stacked_cell_stepping_equals_lstm_forward() -> Result<()> {
        let dev = Device::Cpu;
        let mut ps = ParamStore::new(17, 0.3, &dev);
        let cell = StackedLstmCell::new(&mut ps, "dec", 4, 5, 2, 0.0)?;
        let lstm = Lstm { cfg: cfg(4, 5, 2, false, 0.0), layers: cell.layers.iter().map(|w| vec![w.clone()]).collect() };
        let t = 6;
        let x = noise(&mut SeededRng::new(2), &[3, t, 4])?;
        let (out, finals) = lstm.forward(&x, None, None)?;
        let mut state = cell.zero_state(3)?;
        for s in 0..t {
            let (h, next) = cell.step(&x.narrow(1, s, 1)?.squeeze(1)?, &state, None)?;
            let want = out.narrow(1, s, 1)?.squeeze(1)?;
            assert!(max_abs_diff(&h, &want)? < 1e-6, "step {s}: {}", max_abs_diff(&h, &want)?);
            state = next;
        }
        for (k, ((h, c), (wh, wc))) in state.iter().zip(&finals).enumerate() {
            assert!(max_abs_diff(h, wh)? < 1e-6, "layer {k} h");
            assert!(max_abs_diff(c, wc)? < 1e-6, "layer {k} c");
        }
        Ok(())
    }

    #[test]
    fn dropout_is_applied_between_layers_reproducibly() -> Result<()> {
        let dev = Device::Cpu;
        let mut ps = ParamStore::new(19, 0.3, &dev);
        let lstm = Lstm::new(&mut ps, "enc", cfg(4, 6, 2, true, 0.5))?;
        let x = noise(&mut SeededRng::new(1), &[3, 5, 4])?;
        let mask = mask_from_lengths(&[5, 2, 4], 5)?;
        let (plain, _) = lstm.forward(&x, Some(&mask), None)?;
        let (a, _) = lstm.forward(&x, Some(&mask), Some(&mut SeededRng::new(5)))?;
        let (b, _) = lstm.forward(&x, Some(&mask), Some(&mut SeededRng::new(5)))?;
        let (c, _) = lstm.forward(&x, Some(&mask), Some(&mut SeededRng::new(6)))?;
        assert!(max_abs_diff(&a, &plain)? > 1e-3);
        assert_eq!(max_abs_diff(&a, &b)?, 0.0);
        assert!(max_abs_diff(&a, &c)? > 1e-3);
        let pad = a.narrow(0, 1, 1)?.narrow(1, 2, 3)?.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert_eq!(pad, 0.0);
        // One layer: nothing lies between layers, so training and evaluation agree.
        let mut ps1 = ParamStore::new(19, 0.3, &dev);
        let one = Lstm::new(&mut ps1, "one", cfg(4, 6, 1, true, 0.5))?;
        let (p1, _) = one.forward(&x, None, None)?;
        let (d1, _) = one.forward(&x, None, Some(&mut SeededRng::new(5)))?;
        assert_eq!(max_abs_diff(&p1, &d1)?, 0.0);
        // The stacked cell too.
        let mut ps2 = ParamStore::new(19, 0.3, &dev);
        let cell = StackedLstmCell::new(&mut ps2, "dec", 4, 6, 2, 0.5)?;
        let x0 = x.narrow(1, 0, 1)?.squeeze(1)?;
        let s0 = cell.zero_state(3)?;
        let (h_plain, _) = cell.step(&x0, &s0, None)?;
        let (h_a, _) = cell.step(&x0, &s0, Some(&mut SeededRng::new(5)))?;
        let (h_b, _) = cell.step(&x0, &s0, Some(&mut SeededRng::new(5)))?;
        assert!(max_abs_diff(&h_a, &h_plain)? > 1e-4);
        assert_eq!(max_abs_diff(&h_a, &h_b)?, 0.0);
        Ok(())
    }
}
