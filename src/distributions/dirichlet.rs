use super::{masked_sum_last, Distribution, KlDivergence};
use crate::rng::SeededRng;
use crate::special::{digamma, gamma_rsample, lgamma, softplus};
use candle_core::{Result, Tensor, D};

/// How unconstrained scores become positive concentrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Positivity {
    /// a = exp(s)
    Exp,
    /// a = ln(1 + exp(s))
    Softplus,
}

impl Positivity {
    pub fn apply(self, scores: &Tensor) -> Result<Tensor> {
        match self {
            Positivity::Exp => scores.exp(),
            Positivity::Softplus => softplus(scores),
        }
    }
}

/// Dirichlet(a) over the S-simplex, batched `[..., S]`; padded positions (mask 0) are not part of
/// the simplex: they always get weight 0 and are left out of every sum.
///
/// * sample / rsample: z = g / Σ_j g_j with g_i ~ Gamma(a_i, 1), the gamma draws carrying the
///   implicit reparameterisation gradient dg/da = -(∂F/∂a)/(∂F/∂g) (Figurnov et al. 2018).
/// * log p(z) = ln Γ(a_0) - Σ ln Γ(a_i) + Σ (a_i - 1) ln z_i, with a_0 = Σ a_i.
/// * H = Σ ln Γ(a_i) - ln Γ(a_0) + (a_0 - S) ψ(a_0) - Σ (a_i - 1) ψ(a_i).
/// * KL(Dir(a) || Dir(b)) = ln Γ(a_0) - Σ ln Γ(a_i) - ln Γ(b_0) + Σ ln Γ(b_i)
///   + Σ (a_i - b_i)(ψ(a_i) - ψ(a_0)).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use varattn::distributions::{Dirichlet, Distribution, KlDivergence, Positivity};
/// use varattn::rng::SeededRng;
/// let dev = Device::Cpu;
/// let q = Dirichlet::from_scores(&Tensor::new(&[[0.5f32, 1.0, 2.0]], &dev)?, Positivity::Exp, None)?;
/// let p = Dirichlet::new(Tensor::new(&[[1.0f32, 1.0, 1.0]], &dev)?, None)?;
/// let z = q.rsample(&mut SeededRng::new(0))?;                 // on the simplex
/// assert!((z.sum_all()?.to_scalar::<f32>()? - 1.0).abs() < 1e-5);
/// assert!(q.kl(&p)?.to_vec1::<f32>()?[0] > 0.0);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Dirichlet {
    /// Concentrations with padded positions set to 1 (so that ln Γ = 0 there).
    concentration: Tensor,
    mask: Option<Tensor>,
}

impl Dirichlet {
    /// Dirichlet(a) from positive concentrations `[..., S]`.
    pub fn new(concentration: Tensor, mask: Option<Tensor>) -> Result<Self> {
        let concentration = match &mask {
            None => concentration,
            Some(m) => {
                let m = m.to_dtype(concentration.dtype())?.broadcast_as(concentration.shape())?;
                (concentration.mul(&m)? + (1.0 - &m)?)?
            }
        };
        Ok(Self { concentration, mask })
    }

    /// Dirichlet(t(s)) from unconstrained scores s through the positivity transform t.
    pub fn from_scores(scores: &Tensor, transform: Positivity, mask: Option<&Tensor>) -> Result<Self> {
        Self::new(transform.apply(scores)?, mask.cloned())
    }

    /// a, `[..., S]` (1 at padded positions).
    pub fn concentration(&self) -> &Tensor {
        &self.concentration
    }

    fn sum_valid(&self, x: &Tensor) -> Result<Tensor> {
        masked_sum_last(x, self.mask.as_ref())
    }

    /// a_0 = Σ_i a_i over the real positions, `[...]`.
    pub fn total_concentration(&self) -> Result<Tensor> {
        self.sum_valid(&self.concentration)
    }

    fn valid_count(&self) -> Result<Tensor> {
        let ones = self.concentration.ones_like()?;
        self.sum_valid(&ones)
    }

    fn zero_padding(&self, x: &Tensor) -> Result<Tensor> {
        match &self.mask {
            None => Ok(x.clone()),
            Some(m) => x.mul(&m.to_dtype(x.dtype())?.broadcast_as(x.shape())?),
        }
    }
}

impl Distribution for Dirichlet {
    fn log_prob(&self, z: &Tensor) -> Result<Tensor> {
        let a0 = self.total_concentration()?;
        let log_z = z.clamp(1e-30, f64::INFINITY)?.log()?;
        let terms = ((&self.concentration - 1.0)?.mul(&log_z)? - lgamma(&self.concentration)?)?;
        lgamma(&a0)? + self.sum_valid(&terms)?
    }

    fn sample(&self, rng: &mut SeededRng) -> Result<Tensor> {
        Ok(self.rsample(rng)?.detach())
    }

    fn rsample(&self, rng: &mut SeededRng) -> Result<Tensor> {
        let g = self.zero_padding(&gamma_rsample(&self.concentration, rng)?)?;
        g.broadcast_div(&g.sum_keepdim(D::Minus1)?)
    }

    fn entropy(&self) -> Result<Tensor> {
        let a = &self.concentration;
        let a0 = self.total_concentration()?;
        let k = self.valid_count()?;
        let log_beta = (self.sum_valid(&lgamma(a)?)? - lgamma(&a0)?)?;
        let psi_terms = self.sum_valid(&(a - 1.0)?.mul(&digamma(a)?)?)?;
        log_beta + (a0.clone() - k)?.mul(&digamma(&a0)?)? - psi_terms
    }

    /// E\[z_i\] = a_i / a_0 (0 at padded positions).
    fn mean(&self) -> Result<Tensor> {
        let a = self.zero_padding(&self.concentration)?;
        a.broadcast_div(&self.total_concentration()?.unsqueeze(D::Minus1)?)
    }

    fn name(&self) -> &'static str {
        "Dirichlet"
    }
}

impl KlDivergence<Dirichlet> for Dirichlet {
    fn kl(&self, p: &Dirichlet) -> Result<Tensor> {
        let a = &self.concentration;
        let b = &p.concentration;
        let a0 = self.total_concentration()?;
        let b0 = p.total_concentration()?;
        let psi_diff = digamma(a)?.broadcast_sub(&digamma(&a0)?.unsqueeze(D::Minus1)?)?;
        let per_position = ((lgamma(b)? - lgamma(a)?)? + (a - b)?.mul(&psi_diff)?)?;
        (lgamma(&a0)? - lgamma(&b0)?)? + self.sum_valid(&per_position)?
    }
}
