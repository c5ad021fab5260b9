//! log softmax(h Wᵀ + b)[y] for one gold class per row, without keeping the `[N, V]` logits.
//!
//! Exact enumeration evaluates the output layer once per alignment: N = B·T·S rows. Computing
//! `log_softmax` over V classes and gathering the gold entry would keep an `[N, V]` tensor (and its
//! gradient) alive — O(B·T·S·V) memory, which does not fit at paper sizes. This op processes rows
//! in chunks and keeps only the per-row log-normaliser; the backward pass recomputes each chunk's
//! softmax:
//!
//! forward:  ℓ_n = z_{n,y_n} - log Σ_v exp z_{n,v},  z_n = W h_n + b
//! backward: ∂ℓ_n/∂z_n = onehot(y_n) - softmax(z_n);  ∂h_n = Wᵀ ∂z_n,  ∂W = Σ_n ∂z_n h_nᵀ,  ∂b = Σ_n ∂z_n
//!
//! Memory is O(N·d + chunk·V) instead of O(N·V). On the CPU each chunk's rows are walked one by
//! one; when N·V·4 is at most [`KEEP_PROBS_BYTES`] the forward pass instead keeps exp(z − m) for
//! all rows and the backward pass needs no recomputation ([`Kept`]). On a CUDA device
//! ([`forward_chunked_device`], [`backward_chunked_device`]) each chunk is a cuBLAS matmul
//! followed by candle's reductions on the device, so nothing is copied to the host.
use candle_core::backend::BackendStorage;
use super::fast_math;
use varattn::nn::gemm::matmul_into;
use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape, Tensor, D};

/// Rows per chunk of the memory-lean path are chosen so that one chunk of logits holds at least
/// this many floats (2 MiB; at V ≥ 512 the row minimum below decides)...
const CHUNK_ELEMS: usize = 1 << 19;

/// ...and never fewer rows than this: the backward pass's ∂W += ∂zᵀ H[chunk] reads and writes all
/// of ∂W `[V, d]` once per chunk, with the chunk's rows as the inner dimension, so the fewer the
/// rows the further that product falls below a matmul's rate (2 MiB is 37 rows at V = 14,000:
/// 48.9 GFLOP/s). At the paper preset (N = 15,000, d = 512, V = 14,000, two threads) chunks of
/// 256 rows ran the lean path at 0.60-0.61 of a plain product's rate (useful work), of 1,024
/// rows at 0.65-0.66, of 2,048 at 0.67-0.68. A chunk of 1,024 rows is 57 MB at V = 14,000.
const MIN_CHUNK_ROWS: usize = 1024;

/// Up to this many bytes of probabilities (N·V·4) the CPU forward pass keeps exp(z − m) and the
/// row sums for the backward pass ([`Kept`]), which then skips recomputing the logits (one of its
/// three `[N, d] × [d, V]` products) and computes ∂H and ∂W each as one product over all N rows.
/// Above it (paper sizes: N·V·4 is about 840 MB at B = 6, T = S = 50, V = 14,000) memory stays
/// O(N·d + chunk·V).
pub const KEEP_PROBS_BYTES: usize = 64 << 20;

/// One spare `[N, V]` probability buffer, handed from a backward pass to the next forward pass.
/// glibc serves blocks above 32 MiB (the cpu preset's 40 MB) with a fresh mmap each time, and the
/// page faults of filling it took 16% of a var-enum training step.
static SPARE_PROBS: std::sync::Mutex<Option<Vec<f32>>> = std::sync::Mutex::new(None);

/// A buffer of `len` floats (contents unspecified: the caller overwrites every element).
fn probs_buffer(len: usize) -> Vec<f32> {
    let mut v = SPARE_PROBS.lock().unwrap().take().unwrap_or_default();
    if v.len() >= len {
        v.truncate(len);
    } else {
        v.resize(len, 0.0);
    }
    v
}

/// Rows per block of the row-parallel passes (at V = 2,000, 64 rows are 128k exponentials).
const ROWS_PER_BLOCK: usize = 64;

struct GoldLogSoftmax {
    gold: Tensor,
    /// Keep the probabilities when N·V·4 is at most this.
    keep_bytes: usize,
    /// What the CPU forward pass keeps ([`Kept`]), taken by the first backward pass.
    probs: std::sync::Mutex<Option<Kept>>,
    /// No input records a gradient: no backward pass will come, so the forward pass keeps
    /// nothing (it still computes the logits in one product into the spare buffer when they fit
    /// the budget, and hands the buffer back).
    constant: bool,
}

impl GoldLogSoftmax {
    fn new(gold: Tensor, keep_bytes: usize, constant: bool) -> Self {
        Self { gold, keep_bytes, probs: std::sync::Mutex::new(None), constant }
    }
}

fn chunk_rows(v: usize) -> usize {
    (CHUNK_ELEMS / v.max(1)).max(MIN_CHUNK_ROWS)
}

/// z[0..len] = H[start..start+len] Wᵀ (row stride V) into the reused chunk buffer.
fn chunk_logits(z: &mut [f32], h: &[f32], w: &[f32], start: usize, len: usize, d: usize, v: usize) {
    matmul_into((len, v, d), z, v, false, &h[start * d..], (d, 1), w, (1, d));
}

/// The kept forward pass splits the N rows into this many items (of at least
/// [`KEPT_MIN_ITEM_ROWS`] rows) that the threads take in turn: a number that depends on N only,
/// so the result does not depend on the thread count, and balances 1, 2, 4 or 8 threads.
const KEPT_ITEMS: usize = 8;

/// At least this many rows per item: gemm's products of fewer rows take other kernels (below
/// about 16 rows the values differ in the last bits) and run below a matmul's rate. On the
/// 2-core machine of docs/performance.md items of 64 rows ran the kept path at 0.66 of
/// three plain products, of 256 rows at 0.76, of 512 to 2,496 rows at 0.77-0.80.
const KEPT_MIN_ITEM_ROWS: usize = 64;

/// What the CPU forward pass keeps for the backward pass: E = exp(z − m) `[N, V]` with m the row
/// maximum (not normalised: softmax(z)_n = E_n / Σ_v E_{n,v}), and 1 / Σ_v E_{n,v} per row.
struct Kept {
    exp: Vec<f32>,
    inv_sum: Vec<f32>,
}

/// ℓ_n = z_{n,y_n} − m_n − log Σ_v exp(z_{n,v} − m_n) for a row of logits (bias not yet added),
/// which is left holding exp(z − m); returns (ℓ_n, Σ_v exp(z_{n,v} − m_n)).
fn gold_row(row: &mut [f32], bias: &[f32], y: usize) -> (f32, f32) {
    let m = fast_math::add_and_max(row, bias);
    let zy = row[y];
    let sum = fast_math::exp_shifted_and_sum(row, m);
    (zy - (m + sum.ln()), sum)
}

/// Forward pass over all N rows into one `[N, V]` buffer, returned as [`Kept`] with ℓ `[N]`. The
/// rows go in [`KEPT_ITEMS`] items to the threads; each item is one single-threaded product
/// z = H[item] Wᵀ followed by [`gold_row`] on its rows, with no barrier between the product and
/// the softmax passes (those passes are bound by the exp arithmetic, not by memory: measured at
/// about 1 ns per element whether the logits were in cache or not).
fn forward_kept(h: &[f32], w: &[f32], bias: &[f32], gold: &[u32], n: usize, d: usize) -> (Vec<f32>, Kept) {
    let v = bias.len();
    let mut exp = probs_buffer(n * v);
    let (mut out, mut inv_sum) = (vec![0f32; n], vec![0f32; n]);
    let (e_p, out_p, inv_p) = (exp.as_mut_ptr() as usize, out.as_mut_ptr() as usize, inv_sum.as_mut_ptr() as usize);
    let item_rows = n.div_ceil(KEPT_ITEMS).max(KEPT_MIN_ITEM_ROWS);
    varattn::nn::par::for_each_alone(n.div_ceil(item_rows), |item| {
        let lo = item * item_rows;
        let len = item_rows.min(n - lo);
        // SAFETY: item `item` owns rows lo..lo + len of `exp`, `out` and `inv_sum`; the three
        // buffers outlive the call (for_each_alone returns after every item has run).
        let (z, out, inv) = unsafe {
            (
                std::slice::from_raw_parts_mut((e_p as *mut f32).add(lo * v), len * v),
                std::slice::from_raw_parts_mut((out_p as *mut f32).add(lo), len),
                std::slice::from_raw_parts_mut((inv_p as *mut f32).add(lo), len),
            )
        };
        chunk_logits(z, h, w, lo, len, d, v);
        for (r, row) in z.chunks_exact_mut(v).enumerate() {
            let (ell, sum) = gold_row(row, bias, gold[lo + r] as usize);
            out[r] = ell;
            inv[r] = 1.0 / sum;
        }
    });
    (out, Kept { exp, inv_sum })
}

/// Chunked forward without keeping anything: returns ℓ `[N]`. Each chunk's logits z = H Wᵀ come
/// from one matmul into a reused buffer, then [`gold_row`] per row.
fn forward_chunked(h: &[f32], w: &[f32], bias: &[f32], gold: &[u32], n: usize, d: usize) -> Vec<f32> {
    let v = bias.len();
    let step = chunk_rows(v);
    let mut z = vec![0f32; step.min(n) * v];
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let len = step.min(n - start);
        let zc = &mut z[..len * v];
        chunk_logits(zc, h, w, start, len, d, v);
        out.extend(varattn::nn::par::map_rows(zc, v, ROWS_PER_BLOCK, |r, row| gold_row(row, bias, gold[start + r] as usize).0));
        start += len;
    }
    out
}

/// Backward pass from what the forward pass kept, with P = diag(1/Σ) E the softmax and
/// s_n = g_n / Σ_n: ∂z = diag(g) (onehot(y) − P), so without forming ∂z
///
/// ∂H = diag(g) W[y] − diag(s) (E W),   [∂W | ∂b] = scatter_y(g ⊙ [H | 1]) − Eᵀ (diag(s) [H | 1]),
///
/// two products that each read E once (∂b rides along ∂W's product as an extra column). The
/// buffer goes back to the spare slot for the next forward pass.
fn backward_kept(kept: Kept, h: &[f32], w: &[f32], gold: &[u32], g: &[f32], n: usize, d: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Kept { exp, inv_sum } = kept;
    let v = exp.len() / n.max(1);
    let s: Vec<f32> = g.iter().zip(&inv_sum).map(|(g, i)| g * i).collect();
    // ∂H: E W, then each row n scaled by −s_n and W[y_n] g_n added.
    let mut dh = vec![0f32; n * d];
    matmul_into((n, d, v), &mut dh, d, false, &exp, (v, 1), w, (d, 1));
    varattn::nn::par::map_rows(&mut dh, d, ROWS_PER_BLOCK, |k, row| {
        let wy = &w[gold[k] as usize * d..][..d];
        row.iter_mut().zip(wy).for_each(|(x, &wy)| *x = g[k] * wy - s[k] * *x);
    });
    // [∂W | ∂b]ᵀ = −[diag(s) H | s]ᵀ E (the product as [d + 1, V]: gemm ran the [V, d + 1]
    // orientation 10-20% slower), then g_n [h_n | 1] added at column y_n.
    let mut hs = vec![0f32; n * (d + 1)];
    varattn::nn::par::map_rows(&mut hs, d + 1, ROWS_PER_BLOCK, |k, row| {
        row[..d].iter_mut().zip(&h[k * d..][..d]).for_each(|(x, &hv)| *x = s[k] * hv);
        row[d] = s[k];
    });
    let mut dwb_t = vec![0f32; (d + 1) * v];
    matmul_into((d + 1, v, n), &mut dwb_t, v, false, &hs, (1, d + 1), &exp, (v, 1));
    *SPARE_PROBS.lock().unwrap() = Some(exp);
    let mut dw = vec![0f32; v * d];
    for (j, row) in dw.chunks_exact_mut(d).enumerate() {
        row.iter_mut().enumerate().for_each(|(i, x)| *x = -dwb_t[i * v + j]);
    }
    let mut db: Vec<f32> = dwb_t[d * v..].iter().map(|x| -x).collect();
    for (k, &y) in gold.iter().enumerate() {
        let y = y as usize;
        dw[y * d..][..d].iter_mut().zip(&h[k * d..][..d]).for_each(|(x, &hv)| *x += g[k] * hv);
        db[y] += g[k];
    }
    (dh, dw, db)
}

/// Chunked backward from the upstream gradient g `[N]`: per chunk, recompute z, turn it in place
/// into ∂ℓ/∂z = g (onehot(y) - exp(z - lse)) with lse = z_y - ℓ read off the forward result, then
/// ∂H[chunk] = ∂z W and ∂W += ∂zᵀ H[chunk] (two matmuls into the outputs), ∂b += Σ_rows ∂z.
#[allow(clippy::too_many_arguments)]
fn backward_chunked(
    h: &[f32],
    w: &[f32],
    bias: &[f32],
    gold: &[u32],
    ell: &[f32],
    g: &[f32],
    n: usize,
    d: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let v = bias.len();
    let step = chunk_rows(v);
    let mut z = vec![0f32; step.min(n) * v];
    let (mut dh, mut dw, mut db) = (vec![0f32; n * d], vec![0f32; v * d], vec![0f32; v]);
    let mut start = 0;
    while start < n {
        let len = step.min(n - start);
        chunk_logits(&mut z, h, w, start, len, d, v);
        // ∂z[chunk] in place, and ∂b += Σ_rows ∂z[chunk] while each row is in cache.
        rows_and_column_sums(&mut z[..len * v], v, &mut db, |r, row| {
            let k = start + r;
            let y = gold[k] as usize;
            let lse = row[y] + bias[y] - ell[k];
            fast_math::add_exp_scale(row, bias, lse, -g[k]);
            row[y] += g[k];
        });
        let zc = &z[..len * v];
        matmul_into((len, d, v), &mut dh[start * d..], d, false, zc, (v, 1), w, (d, 1));
        matmul_into((v, d, len), &mut dw, d, true, zc, (1, v), &h[start * d..], (d, 1));
        start += len;
    }
    (dh, dw, db)
}

/// Calls `f(r, row)` on every row r of `rows` (rows of `v` values) on candle's threads, then adds
/// the rows as `f` left them into `acc` `[V]`. The rows are summed in fixed blocks of
/// [`ROWS_PER_BLOCK`], each while its rows are still in cache, and the blocks' sums are added in
/// block order: the same result for any number of threads.
fn rows_and_column_sums(rows: &mut [f32], v: usize, acc: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync) {
    let n = rows.len() / v.max(1);
    let blocks = n.div_ceil(ROWS_PER_BLOCK);
    let mut partial = vec![0f32; blocks * v];
    let (rows_p, partial_p) = (rows.as_mut_ptr() as usize, partial.as_mut_ptr() as usize);
    varattn::nn::par::for_ranges(blocks, 1, |bs| {
        for blk in bs {
            // SAFETY: block `blk` owns rows blk·R..(blk + 1)·R (clipped to n) of `rows` and row
            // `blk` of `partial`; both buffers outlive the call.
            let sum = unsafe { std::slice::from_raw_parts_mut((partial_p as *mut f32).add(blk * v), v) };
            for r in blk * ROWS_PER_BLOCK..((blk + 1) * ROWS_PER_BLOCK).min(n) {
                let row = unsafe { std::slice::from_raw_parts_mut((rows_p as *mut f32).add(r * v), v) };
                f(r, row);
                sum.iter_mut().zip(row.iter()).for_each(|(s, &x)| *s += x);
            }
        }
    });
    for sum in partial.chunks_exact(v) {
        acc.iter_mut().zip(sum).for_each(|(a, &s)| *a += s);
    }
}

/// Chunked forward with device tensor ops (any device; used on CUDA): for each chunk,
/// z = H Wᵀ + b, ℓ = z_y - (m + log Σ_v exp(z_v - m)) with m the row maximum. Returns `[N]`.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn forward_chunked_device(h: &Tensor, w: &Tensor, b: &Tensor, gold: &Tensor) -> Result<Tensor> {
    let n = h.dim(0)?;
    let v = w.dim(0)?;
    let step = chunk_rows(v);
    let wt = w.t()?;
    let mut out = Vec::with_capacity(n.div_ceil(step));
    let mut start = 0;
    while start < n {
        let len = step.min(n - start);
        let z = h.narrow(0, start, len)?.matmul(&wt)?.broadcast_add(b)?;
        let m = z.max_keepdim(1)?;
        let lse = (z.broadcast_sub(&m)?.exp()?.sum_keepdim(1)?.log()? + m)?;
        let zy = z.gather(&gold.narrow(0, start, len)?.unsqueeze(1)?.contiguous()?, 1)?;
        out.push((zy - lse)?.squeeze(1)?);
        start += len;
    }
    Tensor::cat(&out, 0)
}

/// Chunked backward with device tensor ops (any device; used on CUDA): per chunk, recompute z,
/// lse = z_y - ℓ, ∂ℓ/∂z = g (onehot(y) - exp(z - lse)); then ∂h = ∂z W, ∂W += ∂zᵀ H, ∂b += Σ ∂z.
fn backward_chunked_device(h: &Tensor, w: &Tensor, b: &Tensor, gold: &Tensor, ell: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let n = h.dim(0)?;
    let v = w.dim(0)?;
    let step = chunk_rows(v);
    let wt = w.t()?;
    let mut dh = Vec::with_capacity(n.div_ceil(step));
    let mut dw = w.zeros_like()?;
    let mut db = b.zeros_like()?;
    let mut start = 0;
    while start < n {
        let len = step.min(n - start);
        let hc = h.narrow(0, start, len)?;
        let y = gold.narrow(0, start, len)?.unsqueeze(1)?.contiguous()?;
        let g = grad.narrow(0, start, len)?.unsqueeze(1)?;
        let z = hc.matmul(&wt)?.broadcast_add(b)?;
        let lse = (z.gather(&y, 1)? - ell.narrow(0, start, len)?.unsqueeze(1)?)?;
        let p = z.broadcast_sub(&lse)?.exp()?;
        let onehot = p.zeros_like()?.scatter_add(&y, &Tensor::ones((len, 1), p.dtype(), p.device())?, 1)?;
        let dz = (onehot - p)?.broadcast_mul(&g)?;
        dh.push(dz.matmul(w)?);
        dw = (dw + dz.t()?.matmul(&hc)?)?;
        db = (db + dz.sum(0)?)?;
        start += len;
    }
    Ok((Tensor::cat(&dh, 0)?, dw, db))
}

/// A tensor (no gradient) over a contiguous f32 CUDA storage, copied on the device.
#[cfg(feature = "cuda")]
fn cuda_tensor(s: &candle_core::CudaStorage, l: &Layout) -> Result<Tensor> {
    if !l.is_contiguous() {
        candle_core::bail!("gold_log_softmax: inputs must be contiguous")
    }
    let len = s.as_cuda_slice::<f32>()?.len();
    let whole = candle_core::Storage::Cuda(s.try_clone(l)?);
    let t = Tensor::from_storage(whole, len, candle_core::op::BackpropOp::none(), false);
    t.narrow(0, l.start_offset(), l.shape().elem_count())?.reshape(l.shape())
}

/// The contiguous f32 data of a CPU storage.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    match s {
        CpuStorage::F32(v) => match l.contiguous_offsets() {
            Some((a, b)) => Ok(&v[a..b]),
            None => candle_core::bail!("gold_log_softmax: inputs must be contiguous"),
        },
        other => candle_core::bail!("gold_log_softmax: f32 only, got {:?}", other.dtype()),
    }
}

impl CustomOp3 for GoldLogSoftmax {
    fn name(&self) -> &'static str {
        "gold-log-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, d) = l1.shape().dims2()?;
        let (v, d2) = l2.shape().dims2()?;
        if d2 != d || l3.shape().dims() != [v] {
            candle_core::bail!("gold_log_softmax: shapes {:?}, {:?}, {:?} do not fit [N, d], [V, d], [V]", l1.shape(), l2.shape(), l3.shape())
        }
        let gold = self.gold.to_device(&Device::Cpu)?.to_vec1::<u32>()?;
        if gold.len() != n || gold.iter().any(|&y| y as usize >= v) {
            candle_core::bail!("gold_log_softmax: {} gold classes for {n} rows, all must be below V = {v}", gold.len())
        }
        let keep = n.saturating_mul(v).saturating_mul(4) <= self.keep_bytes;
        let (h, w, b) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?, f32_slice(s3, l3)?);
        let out = if keep {
            let (out, kept) = forward_kept(h, w, b, &gold, n, d);
            if self.constant {
                *SPARE_PROBS.lock().unwrap() = Some(kept.exp);
            } else {
                *self.probs.lock().unwrap() = Some(kept);
            }
            out
        } else {
            forward_chunked(h, w, b, &gold, n, d)
        };
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let h = cuda_tensor(s1, l1)?;
        let w = cuda_tensor(s2, l2)?;
        let b = cuda_tensor(s3, l3)?;
        let out = forward_chunked_device(&h, &w, &b, &self.gold)?;
        let n = out.elem_count();
        let (storage, layout) = out.storage_and_layout();
        match &*storage {
            candle_core::Storage::Cuda(s) if layout.is_contiguous() && layout.start_offset() == 0 => {
                Ok((s.try_clone(layout)?, Shape::from(n)))
            }
            _ => candle_core::bail!("gold_log_softmax: unexpected result storage on CUDA"),
        }
    }

    fn bwd(
        &self,
        h: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if !h.device().is_cpu() {
            let (h, w, b) = (h.detach(), w.detach(), b.detach());
            let (dh, dw, db) = backward_chunked_device(&h, &w, &b, &self.gold, &res.detach(), &grad.detach())?;
            return Ok((Some(dh), Some(dw), Some(db)));
        }
        let (n, d) = h.dims2()?;
        let v = w.dim(0)?;
        let flat = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let kept = self.probs.lock().unwrap().take();
        let (dh, dw, db) = match kept {
            Some(p) => backward_kept(p, &flat(h)?, &flat(w)?, &self.gold.to_vec1::<u32>()?, &flat(grad)?, n, d),
            None => backward_chunked(
            &flat(h)?,
            &flat(w)?,
            &flat(b)?,
            &self.gold.to_vec1::<u32>()?,
            &flat(res)?,
            &flat(grad)?,
            n,
            d,
            ),
        };
        let dev = h.device();
        Ok((
            Some(Tensor::from_vec(dh, (n, d), dev)?),
            Some(Tensor::from_vec(dw, (v, d), dev)?),
            Some(Tensor::from_vec(db, v, dev)?),
        ))
    }
}

/// ℓ_n = log softmax(W h_n + b)[gold_n] for `h [N, d]`, `w [V, d]`, `b [V]`, `gold [N]` (u32).
/// Differentiable in h, W and b. On the CPU and on CUDA devices (f32) it runs chunked with
/// O(N·d + chunk·V) memory; otherwise it falls back to the plain composition (log-softmax, gather).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use varattn_lab::kernels::gold_log_softmax;
/// let dev = Device::Cpu;
/// let h = Tensor::new(&[[0.5f32, -1.0], [2.0, 0.1]], &dev)?;
/// let w = Tensor::new(&[[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &dev)?;
/// let b = Tensor::zeros(3, candle_core::DType::F32, &dev)?;
/// let y = Tensor::new(&[2u32, 0], &dev)?;
/// let l = gold_log_softmax(&h, &w, &b, &y)?.to_vec1::<f32>()?;
/// assert!(l.iter().all(|&v| v < 0.0));
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn gold_log_softmax(h: &Tensor, w: &Tensor, b: &Tensor, gold: &Tensor) -> Result<Tensor> {
    gold_log_softmax_keeping(h, w, b, gold, KEEP_PROBS_BYTES)
}

/// [`gold_log_softmax`] with an explicit budget: on the CPU the forward pass keeps the `[N, V]`
/// probabilities for the backward pass when they take at most `keep_bytes` (0: never; the
/// backward pass then recomputes the logits chunk by chunk). Nothing is kept when no input
/// records a gradient (the result is then a constant with no backward pass).
pub fn gold_log_softmax_keeping(h: &Tensor, w: &Tensor, b: &Tensor, gold: &Tensor, keep_bytes: usize) -> Result<Tensor> {
    let gold = gold.to_dtype(DType::U32)?.contiguous()?;
    let constant = !(h.track_op() || w.track_op() || b.track_op());
    if (h.device().is_cpu() || h.device().is_cuda()) && h.dtype() == DType::F32 {
        h.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, GoldLogSoftmax::new(gold, keep_bytes, constant))
    } else {
        gold_log_softmax_naive(h, w, b, &gold)
    }
}

/// The plain composition: log_softmax(h Wᵀ + b) gathered at the gold class (O(N·V) memory).
pub fn gold_log_softmax_naive(h: &Tensor, w: &Tensor, b: &Tensor, gold: &Tensor) -> Result<Tensor> {
    let z = h.matmul(&w.t()?)?.broadcast_add(b)?;
    let lsm = candle_nn::ops::log_softmax(&z, D::Minus1)?;
    lsm.gather(&gold.to_dtype(DType::U32)?.unsqueeze(1)?.contiguous()?, 1)?.squeeze(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;
    use candle_core::Var;

    #[test]
    fn matches_the_plain_composition_in_value_and_gradient() -> Result<()> {
        // one chunk; then three chunks of MIN_CHUNK_ROWS rows (the last one short); each with
        // the probabilities kept for the backward pass and with the logits recomputed
        let v = 2 * CHUNK_ELEMS / MIN_CHUNK_ROWS;
        assert_eq!(chunk_rows(v), MIN_CHUNK_ROWS);
        for keep_bytes in [KEEP_PROBS_BYTES, 0] {
            matches_the_plain_composition(37, 5, 11, keep_bytes)?;
            matches_the_plain_composition(2 * MIN_CHUNK_ROWS + 37, 3, v, keep_bytes)?;
        }
        Ok(())
    }

    fn matches_the_plain_composition(n: usize, d: usize, v: usize, keep_bytes: usize) -> Result<()> {
        let dev = Device::Cpu;
        let mut rng = SeededRng::new(1);
        let h = Var::from_tensor(&rng.normal((n, d), &dev)?)?;
        let w = Var::from_tensor(&rng.normal((v, d), &dev)?)?;
        let b = Var::from_tensor(&rng.normal(v, &dev)?)?;
        let y: Vec<u32> = (0..n).map(|_| rng.next_index(v) as u32).collect();
        let y = Tensor::new(y.as_slice(), &dev)?;
        let weights = rng.normal(n, &dev)?; // distinct weight per row so errors cannot cancel
        let run = |fused: bool| -> Result<(Vec<f32>, Vec<Vec<f32>>)> {
            let l = if fused {
                gold_log_softmax_keeping(h.as_tensor(), w.as_tensor(), b.as_tensor(), &y, keep_bytes)?
            } else {
                gold_log_softmax_naive(h.as_tensor(), w.as_tensor(), b.as_tensor(), &y)?
            };
            let g = l.mul(&weights)?.sum_all()?.backward()?;
            let grads = [&h, &w, &b]
                .iter()
                .map(|p| g.get(p).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .collect();
            Ok((l.to_vec1::<f32>()?, grads))
        };
        let (lf, gf) = run(true)?;
        let (ln, gn) = run(false)?;
        // from constant inputs: no graph, nothing kept, the same values to the bit
        let constant = gold_log_softmax_keeping(&h.as_tensor().detach(), &w.as_tensor().detach(), &b.as_tensor().detach(), &y, keep_bytes)?;
        assert!(!constant.track_op());
        assert_eq!(constant.to_vec1::<f32>()?, lf);
        for (a, b) in lf.iter().zip(&ln) {
            assert!((a - b).abs() < 1e-5, "value {a} vs {b}");
        }
        for (ga, gb) in gf.iter().zip(&gn) {
            for (a, b) in ga.iter().zip(gb) {
                assert!((a - b).abs() < 1e-4, "gradient {a} vs {b}");
            }
        }
        Ok(())
    }

    #[test]
    fn device_tensor_path_matches_the_row_loop() -> Result<()> {
        // the chunked tensor-op forward and backward that CUDA runs, here on the CPU, against the
        // CPU row loop, with several chunks
        let dev = Device::Cpu;
        let mut rng = SeededRng::new(3);
        let v = 2 * CHUNK_ELEMS / MIN_CHUNK_ROWS;
        assert_eq!(chunk_rows(v), MIN_CHUNK_ROWS);
        let (n, d) = (2 * MIN_CHUNK_ROWS + 5, 3); // three chunks, the last of 5 rows
        let h = rng.normal((n, d), &dev)?;
        let w = rng.normal((v, d), &dev)?;
        let b = rng.normal(v, &dev)?;
        let gold: Vec<u32> = (0..n).map(|_| rng.next_index(v) as u32).collect();
        let y = Tensor::new(gold.as_slice(), &dev)?;
        let flat = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let row_loop = forward_chunked(&flat(&h)?, &flat(&w)?, &flat(&b)?, &gold, n, d);
        let row_loop = Tensor::new(row_loop.as_slice(), &dev)?;
        let tensor_ops = forward_chunked_device(&h, &w, &b, &y)?;
        // f32 sums over the classes in another order
        let diff = (&row_loop - &tensor_ops)?.abs()?.max(0)?.to_scalar::<f32>()?;
        let scale = row_loop.abs()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff <= 1e-3 * scale, "forward differs by {diff} (scale {scale})");
        let g = rng.normal(n, &dev)?;
        let op = GoldLogSoftmax::new(y.clone(), 0, false);
        let (dh, dw, db) = op.bwd(&h, &w, &b, &row_loop, &g)?;
        let (eh, ew, eb) = backward_chunked_device(&h, &w, &b, &y, &row_loop, &g)?;
        for (a, e, what) in [(dh.unwrap(), eh, "h"), (dw.unwrap(), ew, "W"), (db.unwrap(), eb, "b")] {
            let diff = (&a - &e)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            let scale = e.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert!(diff <= 5e-3 * scale, "gradient of {what} differs by {diff} (scale {scale})");
        }
        Ok(())
    }

    #[test]
    fn chunking_does_not_change_the_result() -> Result<()> {
        // more rows than one chunk holds when V is large: MIN_CHUNK_ROWS rows per chunk here,
        // so three chunks, the last one short
        let dev = Device::Cpu;
        let mut rng = SeededRng::new(2);
        let v = 2 * CHUNK_ELEMS / MIN_CHUNK_ROWS;
        assert_eq!(chunk_rows(v), MIN_CHUNK_ROWS);
        let (n, d) = (2 * MIN_CHUNK_ROWS + 37, 2);
        let h = rng.normal((n, d), &dev)?;
        let w = rng.normal((v, d), &dev)?;
        let b = Tensor::zeros(v, DType::F32, &dev)?;
        let y = Tensor::from_vec((0..n as u32).map(|i| (i * 7919) % v as u32).collect::<Vec<_>>(), n, &dev)?;
        let a = gold_log_softmax(&h, &w, &b, &y)?.to_vec1::<f32>()?;
        let c = gold_log_softmax_naive(&h, &w, &b, &y)?.to_vec1::<f32>()?;
        for (x, z) in a.iter().zip(&c) {
            assert!((x - z).abs() < 1e-3 * z.abs().max(1.0), "{x} vs {z}");
        }
        Ok(())
    }
}
