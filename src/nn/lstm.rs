//! TEMPORARY minimal LSTM (replaced by the full implementation).
use crate::rng::SeededRng;
use crate::train::ParamStore;
use candle_core::{Result, Tensor, D};

pub struct LstmConfig { pub input: usize, pub hidden: usize, pub layers: usize, pub bidirectional: bool, pub dropout: f64 }

struct Cell { w_ih: Tensor, w_hh: Tensor, b: Tensor, hidden: usize }
impl Cell {
    fn new(ps: &mut ParamStore, name: &str, input: usize, hidden: usize) -> Result<Self> {
        Ok(Self { w_ih: ps.uniform(&format!("{name}.w_ih"), &[4 * hidden, input])?, w_hh: ps.uniform(&format!("{name}.w_hh"), &[4 * hidden, hidden])?, b: ps.uniform(&format!("{name}.b"), &[4 * hidden])?, hidden })
    }
    fn step(&self, xproj: &Tensor, h: &Tensor, c: &Tensor) -> Result<(Tensor, Tensor)> {
        let g = (xproj + h.matmul(&self.w_hh.t()?)?)?;
        let hh = self.hidden;
        let i = candle_nn::ops::sigmoid(&g.narrow(1, 0, hh)?)?;
        let f = candle_nn::ops::sigmoid(&g.narrow(1, hh, hh)?)?;
        let gg = g.narrow(1, 2 * hh, hh)?.tanh()?;
        let o = candle_nn::ops::sigmoid(&g.narrow(1, 3 * hh, hh)?)?;
        let c2 = ((f * c)? + (i * gg)?)?;
        let h2 = (o * c2.tanh()?)?;
        Ok((h2, c2))
    }
}

pub struct Lstm { cfg: LstmConfig, cells: Vec<Vec<Cell>> }
impl Lstm {
    pub fn new(ps: &mut ParamStore, name: &str, cfg: LstmConfig) -> Result<Self> {
        let dirs = if cfg.bidirectional { 2 } else { 1 };
        let mut cells = vec![];
        for l in 0..cfg.layers {
            let input = if l == 0 { cfg.input } else { cfg.hidden * dirs };
            cells.push((0..dirs).map(|d| Cell::new(ps, &format!("{name}.l{l}.d{d}"), input, cfg.hidden)).collect::<Result<Vec<_>>>()?);
        }
        Ok(Self { cfg, cells })
    }
    pub fn output_dim(&self) -> usize { self.cfg.hidden * if self.cfg.bidirectional { 2 } else { 1 } }
    pub fn forward(&self, xs: &Tensor, mask: Option<&Tensor>, mut dropout: Option<&mut SeededRng>) -> Result<(Tensor, Vec<(Tensor, Tensor)>)> {
        let (b, t, _) = xs.dims3()?;
        let mask = match mask { Some(m) => m.clone(), None => Tensor::ones((b, t), xs.dtype(), xs.device())? };
        let lens: Vec<usize> = mask.sum(1)?.to_vec1::<f32>()?.iter().map(|&x| x as usize).collect();
        let mut x = xs.clone();
        let mut finals = vec![];
        for (l, layer) in self.cells.iter().enumerate() {
            if l > 0 { if let Some(r) = dropout.as_deref_mut() { if self.cfg.dropout > 0.0 { x = x.mul(&r.dropout_mask(x.shape(), self.cfg.dropout, x.device())?)?; } } }
            let mut outs = vec![];
            for (d, cell) in layer.iter().enumerate() {
                let xin = if d == 1 { reverse(&x, &lens)? } else { x.clone() };
                let proj = xin.broadcast_matmul(&cell.w_ih.t()?)?.broadcast_add(&cell.b)?;
                let mut h = Tensor::zeros((b, self.cfg.hidden), xs.dtype(), xs.device())?;
                let mut c = h.clone();
                let mut hs = vec![];
                for s in 0..t {
                    let m = mask.narrow(1, s, 1)?;
                    let (h2, c2) = cell.step(&proj.narrow(1, s, 1)?.squeeze(1)?, &h, &c)?;
                    h = (h2.broadcast_mul(&m)? + h.broadcast_mul(&(1.0 - &m)?)?)?;
                    c = (c2.broadcast_mul(&m)? + c.broadcast_mul(&(1.0 - &m)?)?)?;
                    hs.push(h.broadcast_mul(&m)?);
                }
                let out = Tensor::stack(&hs, 1)?;
                outs.push(if d == 1 { reverse(&out, &lens)? } else { out });
                finals.push((h, c));
            }
            x = Tensor::cat(&outs, D::Minus1)?;
        }
        Ok((x, finals))
    }
}

fn reverse(x: &Tensor, lens: &[usize]) -> Result<Tensor> {
    let (b, t, d) = x.dims3()?;
    let mut idx = vec![0u32; b * t];
    for (r, &l) in lens.iter().enumerate() { for s in 0..t { idx[r * t + s] = if s < l { (l - 1 - s) as u32 } else { s as u32 }; } }
    let idx = Tensor::from_vec(idx, (b, t), x.device())?.unsqueeze(2)?.broadcast_as((b, t, d))?.contiguous()?;
    x.gather(&idx, 1)
}

pub struct StackedLstmCell { cells: Vec<Cell>, hidden: usize, dropout: f64 }
impl StackedLstmCell {
    pub fn new(ps: &mut ParamStore, name: &str, input: usize, hidden: usize, layers: usize, dropout: f64) -> Result<Self> {
        Ok(Self { cells: (0..layers).map(|l| Cell::new(ps, &format!("{name}.l{l}"), if l == 0 { input } else { hidden }, hidden)).collect::<Result<_>>()?, hidden, dropout })
    }
    pub fn zero_state(&self, batch: usize) -> Result<Vec<(Tensor, Tensor)>> {
        let dev = self.cells[0].w_ih.device();
        self.cells.iter().map(|_| { let z = Tensor::zeros((batch, self.hidden), candle_core::DType::F32, dev)?; Ok((z.clone(), z)) }).collect()
    }
    pub fn step(&self, x: &Tensor, state: &[(Tensor, Tensor)], mut dropout: Option<&mut SeededRng>) -> Result<(Tensor, Vec<(Tensor, Tensor)>)> {
        let mut inp = x.clone();
        let mut out = vec![];
        for (l, cell) in self.cells.iter().enumerate() {
            if l > 0 { if let Some(r) = dropout.as_deref_mut() { if self.dropout > 0.0 { inp = inp.mul(&r.dropout_mask(inp.shape(), self.dropout, inp.device())?)?; } } }
            let proj = inp.matmul(&cell.w_ih.t()?)?.broadcast_add(&cell.b)?;
            let (h, c) = cell.step(&proj, &state[l].0, &state[l].1)?;
            inp = h.clone();
            out.push((h, c));
        }
        Ok((inp, out))
    }
}
