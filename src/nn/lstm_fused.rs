//! Fused LSTM kernels for the CPU: a whole-sequence recurrence and a single cell update, each one
//! candle op with a hand-written backward pass.
//!
//! # Equations
//!
//! With the gate pre-activations a = [a_i; a_f; a_g; a_o] (PyTorch's gate order) of one step,
//!
//! ```text
//! i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
//! c' = f ⊙ c + i ⊙ g          h' = o ⊙ tanh(c')
//! ```
//!
//! and, given ∂L/∂h' and ∂L/∂c' (the latter from the next step or the final state),
//!
//! ```text
//! ∂c' ← ∂c' + ∂h' ⊙ o ⊙ (1 - tanh²(c'))
//! ∂a_i = ∂c' ⊙ g ⊙ i(1 - i)      ∂a_f = ∂c' ⊙ c ⊙ f(1 - f)
//! ∂a_g = ∂c' ⊙ i ⊙ (1 - g²)      ∂a_o = ∂h' ⊙ tanh(c') ⊙ o(1 - o)
//! ∂c   = ∂c' ⊙ f
//! ```
//!
//! For the sequence op the pre-activations are a_t = x̂_t + W_hh h_{t-1} with x̂_t = W_ih x_t + b
//! computed outside (one matmul for all steps), so back-propagation through time adds
//! ∂h_{t-1} += W_hhᵀ ∂a_t at each step and ∂W_hh = Σ_t ∂a_t h_{t-1}ᵀ as one matmul after the
//! loop.
//!
//! # Why
//!
//! Composing the cell from candle ops costs about fifteen graph nodes per step (four gate slices,
//! whose backward each allocates a zero-padded gradient as large as the gates, and a dozen
//! element-wise ops), and the recurrence another few. The fused ops make the whole recurrence of
//! one layer and direction a single node; the forward pass saves the activated gates, so the
//! backward pass recomputes nothing.
//!
//! # Layout of the outputs
//!
//! Both ops return, per row, `[i f g o | c | h]` (6H values): the activated gates (saved for the
//! backward pass; gradients flowing into them are ignored, they are not meant to be used), the
//! cell state and the output h. The sequence op returns `[T + 1, B, 6H]`: rows 0..T are the steps
//! (h = 0 at padded steps, c carried unchanged through them), row T holds each row's final state
//! (c and h after its last real step) in the c and h slots.
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType};
use super::gemm::matmul_into;

/// Element types the kernels run in, with their activation functions over slices (in place):
/// f32 through [`super::fast_math`] (vectorised), f64 through the standard library (the
/// reference precision of the tests).
pub(super) trait Real: WithDType + num_traits::Float + std::ops::AddAssign + std::ops::DivAssign {
    fn storage(v: Vec<Self>) -> CpuStorage;
    fn sigmoid_slice(xs: &mut [Self]);
    fn tanh_slice(xs: &mut [Self]);
}
impl Real for f32 {
    fn storage(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F32(v)
    }
    fn sigmoid_slice(xs: &mut [Self]) {
        super::fast_math::sigmoid_in_place(xs)
    }
    fn tanh_slice(xs: &mut [Self]) {
        super::fast_math::tanh_in_place(xs)
    }
}
impl Real for f64 {
    fn storage(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F64(v)
    }
    fn sigmoid_slice(xs: &mut [Self]) {
        xs.iter_mut().for_each(|x| *x = sigmoid(*x))
    }
    fn tanh_slice(xs: &mut [Self]) {
        xs.iter_mut().for_each(|x| *x = x.tanh())
    }
}

fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// The contiguous slice of a CPU storage, or an error naming the op.
pub(super) fn contiguous<'a, T: WithDType>(op: &str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let v = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{op}: inputs must be contiguous"),
    }
}

/// Activates one row's pre-activations `z[0..4H]` in place and writes c', h' into `z[4H..6H]`.
pub(super) fn cell_forward_row<T: Real>(z: &mut [T], c_prev: &[T], hd: usize) {
    T::sigmoid_slice(&mut z[..2 * hd]);
    T::tanh_slice(&mut z[2 * hd..3 * hd]);
    T::sigmoid_slice(&mut z[3 * hd..4 * hd]);
    let (gates, state) = z.split_at_mut(4 * hd);
    let (c, h) = state.split_at_mut(hd);
    for j in 0..hd {
        c[j] = gates[hd + j] * c_prev[j] + gates[j] * gates[2 * hd + j];
        h[j] = c[j];
    }
    T::tanh_slice(h);
    for j in 0..hd {
        h[j] = gates[3 * hd + j] * h[j];
    }
}

/// The backward pass of one row (see the module docs): from the saved `z = [i f g o | c' | h']`,
/// the previous cell state and the incoming ∂h', ∂c', writes ∂a `[4H]` and ∂c `[H]`.
pub(super) fn cell_backward_row<T: Real>(z: &[T], c_prev: &[T], dh: &[T], dc: &[T], da: &mut [T], dc_prev: &mut [T], hd: usize) {
    let one = T::one();
    // tanh(c') first, vectorised, into dc_prev (each slot is read before it is overwritten).
    dc_prev[..hd].copy_from_slice(&z[4 * hd..5 * hd]);
    T::tanh_slice(&mut dc_prev[..hd]);
    for j in 0..hd {
        let (i, f, g, o) = (z[j], z[hd + j], z[2 * hd + j], z[3 * hd + j]);
        let tc = dc_prev[j];
        let dct = dc[j] + dh[j] * o * (one - tc * tc);
        da[j] = dct * g * i * (one - i);
        da[hd + j] = dct * c_prev[j] * f * (one - f);
        da[2 * hd + j] = dct * i * (one - g * g);
        da[3 * hd + j] = dh[j] * tc * o * (one - o);
        dc_prev[j] = dct * f;
    }
}

// ---------------------------------------------------------------------------------------------
// Single cell.

/// One LSTM cell update from its pre-activations: `(gates [N, 4H], c [N, H]) -> [N, 6H]`.
struct CellOp;

impl CellOp {
    fn fwd<T: Real>(gates: &[T], c: &[T], n: usize, hd: usize) -> Vec<T> {
        let mut z = vec![T::zero(); n * 6 * hd];
        for r in 0..n {
            let row = &mut z[r * 6 * hd..(r + 1) * 6 * hd];
            row[..4 * hd].copy_from_slice(&gates[r * 4 * hd..(r + 1) * 4 * hd]);
            cell_forward_row(row, &c[r * hd..(r + 1) * hd], hd);
        }
        z
    }
}

impl CustomOp2 for CellOp {
    fn name(&self) -> &'static str {
        "lstm-cell"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, h4) = l1.shape().dims2()?;
        let hd = h4 / 4;
        if h4 != 4 * hd || l2.shape().dims() != [n, hd] {
            bail!("lstm-cell: gates {:?} and cell state {:?} do not fit [N, 4H], [N, H]", l1.shape(), l2.shape())
        }
        let storage = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                f32::storage(Self::fwd(contiguous("lstm-cell", s1, l1)?, contiguous("lstm-cell", s2, l2)?, n, hd))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                f64::storage(Self::fwd(contiguous("lstm-cell", s1, l1)?, contiguous("lstm-cell", s2, l2)?, n, hd))
            }
            _ => bail!("lstm-cell: f32 or f64 inputs of one dtype expected, got {:?}, {:?}", s1.dtype(), s2.dtype()),
        };
        Ok((storage, Shape::from((n, 6 * hd))))
    }

    fn bwd(&self, _gates: &Tensor, c_prev: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, h6) = res.dims2()?;
        let hd = h6 / 6;
        let (da, dc) = match res.dtype() {
            DType::F32 => cell_bwd::<f32>(res, c_prev, grad, n, hd)?,
            DType::F64 => cell_bwd::<f64>(res, c_prev, grad, n, hd)?,
            d => bail!("lstm-cell: unsupported dtype {d:?}"),
        };
        Ok((Some(da), Some(dc)))
    }
}

fn cell_bwd<T: Real>(res: &Tensor, c_prev: &Tensor, grad: &Tensor, n: usize, hd: usize) -> Result<(Tensor, Tensor)> {
    let z = res.flatten_all()?.to_vec1::<T>()?;
    let c = c_prev.flatten_all()?.to_vec1::<T>()?;
    let g = grad.flatten_all()?.to_vec1::<T>()?;
    let mut da = vec![T::zero(); n * 4 * hd];
    let mut dc = vec![T::zero(); n * hd];
    for r in 0..n {
        let zr = &z[r * 6 * hd..(r + 1) * 6 * hd];
        let gr = &g[r * 6 * hd..(r + 1) * 6 * hd];
        cell_backward_row(
            zr,
            &c[r * hd..(r + 1) * hd],
            &gr[5 * hd..],
            &gr[4 * hd..5 * hd],
            &mut da[r * 4 * hd..(r + 1) * 4 * hd],
            &mut dc[r * hd..(r + 1) * hd],
            hd,
        );
    }
    let dev = res.device();
    Ok((Tensor::from_vec(da, (n, 4 * hd), dev)?, Tensor::from_vec(dc, (n, hd), dev)?))
}

/// One fused LSTM cell update on the CPU: `gates` `[N, 4H]` (pre-activations, gate order i, f, g,
/// o) and `c` `[N, H]` give (h', c'), each `[N, H]` (equations in the module docs). f32 or f64.
pub fn lstm_cell_fused(gates: &Tensor, c: &Tensor) -> Result<(Tensor, Tensor)> {
    let hd = c.dim(1)?;
    let z = gates.contiguous()?.apply_op2(&c.contiguous()?, CellOp)?;
    // Contiguous copies: several candle ops (index_select, gather) refuse strided inputs.
    Ok((z.narrow(1, 5 * hd, hd)?.contiguous()?, z.narrow(1, 4 * hd, hd)?.contiguous()?))
}

// ---------------------------------------------------------------------------------------------
// Whole sequence.

/// The recurrence of one layer and direction over a padded, time-major batch:
/// `(x̂ [T, B, 4H], W_hh [4H, H]) -> [T + 1, B, 6H]` (layout in the module docs). Row b is real at
/// steps `0..lengths[b]`.
struct SequenceOp {
    lengths: Vec<usize>,
}

impl SequenceOp {
    fn fwd<T: Real>(&self, xp: &[T], w_hh: &[T], t: usize, b: usize, hd: usize) -> Vec<T> {
        let w = 6 * hd;
        let mut z = vec![T::zero(); (t + 1) * b * w];
        let mut c_prev = vec![T::zero(); b * hd];
        for s in 0..t {
            let (done, rest) = z.split_at_mut(s * b * w);
            let step = &mut rest[..b * w];
            for r in 0..b {
                step[r * w..r * w + 4 * hd].copy_from_slice(&xp[(s * b + r) * 4 * hd..(s * b + r + 1) * 4 * hd]);
            }
            if s > 0 {
                // a_s += h_{s-1} W_hhᵀ: lhs = h slots of the previous step, rhs[j, g] = W_hh[g, j].
                let prev = &done[(s - 1) * b * w + 5 * hd..];
                matmul_into((b, 4 * hd, hd), step, w, true, prev, (w, 1), w_hh, (1, hd));
            }
            for r in 0..b {
                let row = &mut step[r * w..(r + 1) * w];
                let cp = &mut c_prev[r * hd..(r + 1) * hd];
                if s < self.lengths[r] {
                    cell_forward_row(row, cp, hd);
                    cp.copy_from_slice(&row[4 * hd..5 * hd]);
                } else {
                    // Padding: output 0, gates 0 (never read), c carried.
                    row[..4 * hd].iter_mut().for_each(|v| *v = T::zero());
                    row[4 * hd..5 * hd].copy_from_slice(cp);
                    row[5 * hd..].iter_mut().for_each(|v| *v = T::zero());
                }
            }
        }
        // Final states: c carried to the last step; h from each row's last real step.
        for r in 0..b {
            let fin = (t * b + r) * w;
            z.copy_within(((t - 1) * b + r) * w + 4 * hd..((t - 1) * b + r) * w + 5 * hd, fin + 4 * hd);
            let len = self.lengths[r];
            if len > 0 {
                let src = ((len - 1) * b + r) * w + 5 * hd;
                z.copy_within(src..src + hd, fin + 5 * hd);
            }
        }
        z
    }

    /// Back-propagation through time; returns (∂x̂ `[T*B*4H]`, ∂W_hh `[4H*H]`).
    fn bwd<T: Real>(&self, z: &[T], w_hh: &[T], grad: &[T], t: usize, b: usize, hd: usize) -> (Vec<T>, Vec<T>) {
        let w = 6 * hd;
        let mut da = vec![T::zero(); t * b * 4 * hd];
        // Gradients flowing into h_{s} and c_{s} from later steps, seeded with the final state's.
        let fin = &grad[t * b * w..];
        let mut dh_carry: Vec<T> = (0..b).flat_map(|r| fin[r * w + 5 * hd..(r + 1) * w].to_vec()).collect();
        let mut dc_carry: Vec<T> = (0..b).flat_map(|r| fin[r * w + 4 * hd..r * w + 5 * hd].to_vec()).collect();
        let zeros = vec![T::zero(); hd];
        let mut dh = vec![T::zero(); hd];
        let mut dc_prev = vec![T::zero(); hd];
        for s in (0..t).rev() {
            for r in 0..b {
                let len = self.lengths[r];
                if s >= len {
                    // Padded step: the carried state passes its gradient straight through; the
                    // constant-zero output takes none.
                    // c_s = c_{s-1} (carried): the step's own c gradient joins the carry.
                    let gc = &grad[(s * b + r) * w + 4 * hd..(s * b + r) * w + 5 * hd];
                    dc_carry[r * hd..(r + 1) * hd].iter_mut().zip(gc).for_each(|(a, &g)| *a += g);
                    continue;
                }
                let row = (s * b + r) * w;
                let g = &grad[row..row + w];
                // Only the final h of a row reaches its last real step through the carry.
                let carry_h = &dh_carry[r * hd..(r + 1) * hd];
                dh.iter_mut().zip(&g[5 * hd..]).zip(carry_h).for_each(|((d, &a), &c)| *d = a + c);
                let dc: Vec<T> =
                    g[4 * hd..5 * hd].iter().zip(&dc_carry[r * hd..(r + 1) * hd]).map(|(&a, &c)| a + c).collect();
                let c_prev = if s == 0 { &zeros[..] } else { &z[((s - 1) * b + r) * w + 4 * hd..((s - 1) * b + r) * w + 5 * hd] };
                cell_backward_row(&z[row..row + w], c_prev, &dh, &dc, &mut da[(s * b + r) * 4 * hd..(s * b + r + 1) * 4 * hd], &mut dc_prev, hd);
                dc_carry[r * hd..(r + 1) * hd].copy_from_slice(&dc_prev);
                dh_carry[r * hd..(r + 1) * hd].iter_mut().for_each(|v| *v = T::zero());
            }
            if s > 0 {
                // ∂h_{s-1} += ∂a_s W_hh (rows past their end have ∂a_s = 0).
                let da_s = &da[s * b * 4 * hd..(s + 1) * b * 4 * hd];
                matmul_into((b, hd, 4 * hd), &mut dh_carry, hd, true, da_s, (4 * hd, 1), w_hh, (hd, 1));
            }
        }
        // ∂W_hh = Σ_{s≥1} ∂a_sᵀ h_{s-1}: lhs[g, n] = da[B + n, g], rhs[n, j] = h slot of row n.
        let mut dw = vec![T::zero(); 4 * hd * hd];
        if t > 1 {
            let k = (t - 1) * b;
            matmul_into((4 * hd, hd, k), &mut dw, hd, false, &da[b * 4 * hd..], (1, 4 * hd), &z[5 * hd..], (w, 1));
        }
        (da, dw)
    }
}

impl CustomOp2 for SequenceOp {
    fn name(&self) -> &'static str {
        "lstm-sequence"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (t, b, h4) = l1.shape().dims3()?;
        let hd = h4 / 4;
        if h4 != 4 * hd || l2.shape().dims() != [4 * hd, hd] || self.lengths.len() != b || t == 0 {
            bail!("lstm-sequence: inputs {:?} and W_hh {:?} do not fit [T>0, B, 4H], [4H, H]", l1.shape(), l2.shape())
        }
        let storage = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => f32::storage(self.fwd(
                contiguous("lstm-sequence", s1, l1)?,
                contiguous("lstm-sequence", s2, l2)?,
                t,
                b,
                hd,
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => f64::storage(self.fwd(
                contiguous("lstm-sequence", s1, l1)?,
                contiguous("lstm-sequence", s2, l2)?,
                t,
                b,
                hd,
            )),
            _ => bail!("lstm-sequence: f32 or f64 inputs of one dtype expected, got {:?}, {:?}", s1.dtype(), s2.dtype()),
        };
        Ok((storage, Shape::from((t + 1, b, 6 * hd))))
    }

    fn bwd(&self, xp: &Tensor, w_hh: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (t, b, h4) = xp.dims3()?;
        let hd = h4 / 4;
        let dev = xp.device();
        macro_rules! run {
            ($ty:ty) => {{
                let z = res.flatten_all()?.to_vec1::<$ty>()?;
                let w = w_hh.flatten_all()?.to_vec1::<$ty>()?;
                let g = grad.contiguous()?.flatten_all()?.to_vec1::<$ty>()?;
                let (da, dw) = self.bwd(&z, &w, &g, t, b, hd);
                (Tensor::from_vec(da, (t, b, h4), dev)?, Tensor::from_vec(dw, (h4, hd), dev)?)
            }};
        }
        let (da, dw) = match xp.dtype() {
            DType::F32 => run!(f32),
            DType::F64 => run!(f64),
            d => bail!("lstm-sequence: unsupported dtype {d:?}"),
        };
        Ok((Some(da), Some(dw)))
    }
}

/// The recurrence of one LSTM layer and direction as one fused CPU op.
///
/// * `xp` `[T, B, 4H]`: the input projections x̂_t = W_ih x_t + b_ih + b_hh, time-major.
/// * `w_hh` `[4H, H]`.
/// * `lengths[b]`: row b is real at steps `0..lengths[b]` (at most T).
///
/// Returns the outputs `[T, B, H]` (h_t, zero at padded steps) and the final state (h, c), each
/// `[B, H]`, after each row's last real step (zeros for an empty row). Differentiable in `xp` and
/// `w_hh`. f32 or f64, CPU only. The final states are contiguous; the outputs are a strided view.
pub fn lstm_sequence_fused(xp: &Tensor, w_hh: &Tensor, lengths: &[usize]) -> Result<(Tensor, (Tensor, Tensor))> {
    let (t, b, h4) = xp.dims3()?;
    let hd = h4 / 4;
    if lengths.len() != b || lengths.iter().any(|&l| l > t) {
        bail!("lstm-sequence: lengths {lengths:?} do not fit a batch of {b} rows of {t} steps")
    }
    let op = SequenceOp { lengths: lengths.to_vec() };
    let z = xp.contiguous()?.apply_op2(&w_hh.contiguous()?, op)?;
    let out = z.narrow(0, 0, t)?.narrow(2, 5 * hd, hd)?;
    let fin = z.get(t)?;
    Ok((out, (fin.narrow(1, 5 * hd, hd)?.contiguous()?, fin.narrow(1, 4 * hd, hd)?.contiguous()?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;
    use candle_core::{Device, Var};

    /// The cell composed from candle ops: the reference.
    use crate::nn::lstm::lstm_cell_composed as cell_reference;

    fn sequence_reference(xp: &Tensor, w_hh: &Tensor, lengths: &[usize]) -> Result<(Tensor, (Tensor, Tensor))> {
        let (t, b, h4) = xp.dims3()?;
        let hd = h4 / 4;
        let mut h = Tensor::zeros((b, hd), xp.dtype(), xp.device())?;
        let mut c = h.clone();
        let mut outs = vec![];
        for s in 0..t {
            let gates = (xp.get(s)? + h.matmul(&w_hh.t()?)?)?;
            let (hn, cn) = cell_reference(&gates, &c)?;
            let keep: Vec<f64> = lengths.iter().map(|&l| if s < l { 1.0 } else { 0.0 }).collect();
            let keep = Tensor::from_vec(keep, (b, 1), xp.device())?.to_dtype(xp.dtype())?;
            let drop = keep.affine(-1.0, 1.0)?;
            let out = hn.broadcast_mul(&keep)?;
            h = (&out + h.broadcast_mul(&drop)?)?;
            c = (cn.broadcast_mul(&keep)? + c.broadcast_mul(&drop)?)?;
            outs.push(out);
        }
        Ok((Tensor::stack(&outs, 0)?, (h, c)))
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    fn noise(rng: &mut SeededRng, dims: &[usize], scale: f64) -> Tensor {
        rng.uniform(dims, &Device::Cpu).unwrap().affine(2.0 * scale, -scale).unwrap().to_dtype(DType::F64).unwrap()
    }

    #[test]
    fn cell_matches_composed_cell_in_value_and_gradient() -> Result<()> {
        let mut rng = SeededRng::new(5);
        let gates = Var::from_tensor(&noise(&mut rng, &[3, 8], 2.0))?;
        let c = Var::from_tensor(&noise(&mut rng, &[3, 2], 1.0))?;
        // A loss that weighs h and c differently, so both gradient paths matter.
        let wh = noise(&mut rng, &[3, 2], 1.0);
        let wc = noise(&mut rng, &[3, 2], 1.0);
        let loss = |h: &Tensor, c: &Tensor| -> Result<Tensor> { (h * &wh)?.sum_all()? + (c * &wc)?.sum_all()? };
        let (h1, c1) = lstm_cell_fused(gates.as_tensor(), c.as_tensor())?;
        let (h0, c0) = cell_reference(gates.as_tensor(), c.as_tensor())?;
        assert!(max_abs_diff(&h1, &h0) < 1e-12 && max_abs_diff(&c1, &c0) < 1e-12);
        let g1 = loss(&h1, &c1)?.backward()?;
        let g0 = loss(&h0, &c0)?.backward()?;
        for v in [&gates, &c] {
            let (a, b) = (g1.get(v).expect("grad"), g0.get(v).expect("grad"));
            assert!(max_abs_diff(a, b) < 1e-12, "gradients differ by {}", max_abs_diff(a, b));
            assert!(b.abs()?.sum_all()?.to_scalar::<f64>()? > 1e-3);
        }
        Ok(())
    }

    #[test]
    fn sequence_matches_composed_recurrence_with_padding() -> Result<()> {
        let (t, b, hd) = (6, 4, 3);
        let lengths = [6usize, 2, 0, 5];
        let mut rng = SeededRng::new(9);
        let xp = Var::from_tensor(&noise(&mut rng, &[t, b, 4 * hd], 1.5))?;
        let w_hh = Var::from_tensor(&noise(&mut rng, &[4 * hd, hd], 0.8))?;
        let wo = noise(&mut rng, &[t, b, hd], 1.0);
        let (wh, wc) = (noise(&mut rng, &[b, hd], 1.0), noise(&mut rng, &[b, hd], 1.0));
        let loss = |o: &Tensor, h: &Tensor, c: &Tensor| -> Result<Tensor> {
            (o * &wo)?.sum_all()? + ((h * &wh)?.sum_all()? + (c * &wc)?.sum_all()?)?
        };
        let (o1, (h1, c1)) = lstm_sequence_fused(xp.as_tensor(), w_hh.as_tensor(), &lengths)?;
        let (o0, (h0, c0)) = sequence_reference(xp.as_tensor(), w_hh.as_tensor(), &lengths)?;
        assert!(max_abs_diff(&o1, &o0) < 1e-12, "outputs differ by {}", max_abs_diff(&o1, &o0));
        assert!(max_abs_diff(&h1, &h0) < 1e-12 && max_abs_diff(&c1, &c0) < 1e-12);
        let g1 = loss(&o1, &h1, &c1)?.backward()?;
        let g0 = loss(&o0, &h0, &c0)?.backward()?;
        for v in [&xp, &w_hh] {
            let (a, b) = (g1.get(v).expect("grad"), g0.get(v).expect("grad"));
            assert!(max_abs_diff(a, b) < 1e-12, "gradients differ by {}", max_abs_diff(a, b));
            assert!(b.abs()?.sum_all()?.to_scalar::<f64>()? > 1e-3);
        }
        // Padded inputs never matter: their gradient is exactly zero.
        let dxp = g1.get(&xp).expect("grad");
        assert_eq!(dxp.narrow(0, 2, 4)?.narrow(1, 1, 1)?.abs()?.sum_all()?.to_scalar::<f64>()?, 0.0);
        assert_eq!(dxp.narrow(1, 2, 1)?.abs()?.sum_all()?.to_scalar::<f64>()?, 0.0);
        Ok(())
    }

    #[test]
    fn states_can_be_gathered_like_any_tensor() -> Result<()> {
        // Beam search reorders decoder states with index_select, which needs contiguous inputs.
        let mut rng = SeededRng::new(2);
        let (h, c) = lstm_cell_fused(&noise(&mut rng, &[3, 8], 1.0), &noise(&mut rng, &[3, 2], 1.0))?;
        let rows = Tensor::new(&[2u32, 0], &Device::Cpu)?;
        assert_eq!(h.index_select(&rows, 0)?.dims(), &[2, 2]);
        assert_eq!(c.index_select(&rows, 0)?.dims(), &[2, 2]);
        let (_, (hf, cf)) = lstm_sequence_fused(&noise(&mut rng, &[2, 3, 8], 1.0), &noise(&mut rng, &[8, 2], 1.0), &[2, 1, 0])?;
        assert_eq!(hf.index_select(&rows, 0)?.dims(), &[2, 2]);
        assert_eq!(cf.index_select(&rows, 0)?.dims(), &[2, 2]);
        Ok(())
    }

    #[test]
    fn sequence_gradient_matches_finite_differences() -> Result<()> {
        let (t, b, hd) = (4, 2, 2);
        let lengths = [4usize, 3];
        let mut rng = SeededRng::new(21);
        let xp0 = noise(&mut rng, &[t, b, 4 * hd], 1.0);
        let w0 = noise(&mut rng, &[4 * hd, hd], 1.0);
        let wo = noise(&mut rng, &[t, b, hd], 1.0);
        let f = |xp: &Tensor, w: &Tensor| -> Result<Tensor> {
            let (o, (h, c)) = lstm_sequence_fused(xp, w, &lengths)?;
            (o * &wo)?.sum_all()? + (h.sum_all()? + c.sqr()?.sum_all()?)?
        };
        let w = Var::from_tensor(&w0)?;
        let grads = f(&xp0, w.as_tensor())?.backward()?;
        let dw = grads.get(&w).expect("grad").flatten_all()?.to_vec1::<f64>()?;
        let base = w0.flatten_all()?.to_vec1::<f64>()?;
        let eps = 1e-6;
        for k in 0..base.len() {
            let mut p = base.clone();
            p[k] += eps;
            let up = f(&xp0, &Tensor::from_vec(p.clone(), w0.dims(), &Device::Cpu)?)?.to_scalar::<f64>()?;
            p[k] -= 2.0 * eps;
            let down = f(&xp0, &Tensor::from_vec(p, w0.dims(), &Device::Cpu)?)?.to_scalar::<f64>()?;
            let fd = (up - down) / (2.0 * eps);
            assert!((fd - dw[k]).abs() < 1e-7, "W_hh[{k}]: finite difference {fd}, backward {}", dw[k]);
        }
        Ok(())
    }
}
