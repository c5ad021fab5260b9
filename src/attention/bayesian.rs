//! Bayesian attention modules (BAM, Fan et al. 2020) and the Bayesian attention belief network
//! (BABN, Zhang et al. 2021): attention weights as normalised Weibull draws with a Gamma prior.
//!
//! * Unnormalised weights S_i ~ Weibull(k, λ_i), λ_i = softmax(s)_i / Γ(1 + 1/k), so that
//!   E\[S_i\] = softmax(s)_i; reparameterised S = λ (-ln(1 - u))^(1/k), u ~ U(0, 1).
//! * Attention w_i = S_i / Σ_j S_j; at evaluation the mean, w = softmax(s).
//! * Prior S_i ~ Gamma(α_i, β): constant α, or contextual α_i = β · softmax_keys(g(x̃))_i with g
//!   a learned map of the key (region) features.
//! * KL(Weibull(k, λ) ‖ Gamma(α, β)) in closed form ([`crate::distributions::Weibull`]), summed over
//!   positions; loss = task loss + (annealed) weight · KL.
//! * BABN over L stacked attention layers: a gamma hierarchy in which the prior shape of a layer
//!   comes from the sample of the layer before it in the chain, α^(l) = β_c · w^(l-1), and a
//!   Weibull encoder that is deterministic upward (every layer's scores s^(l) from the mean
//!   attention of the layers below) and stochastic downward: the chain starts at the top layer L
//!   and layer l's Weibull mean is softmax(s^(l) + c_l · ln w^(l+1)), c_l a learned gate.
use crate::distributions::{Gamma, KlDivergence, Weibull};
use crate::rng::SeededRng;
use candle_core::{Result, Tensor, D};
use serde::{Deserialize, Serialize};

/// The Gamma prior of the unnormalised attention weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PriorConfig {
    /// Gamma(α, β) for every weight.
    Constant { alpha: f64, beta: f64 },
    /// Gamma(β · softmax_keys(g(x̃)), β), g learned.
    Contextual { beta: f64 },
}

/// BAM (independent layers) or BABN (a gamma chain over the stacked layers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BayesKind {
    Bam,
    Babn,
}

/// A `[model.attention.bayes]` config table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BayesConfig {
    pub kind: BayesKind,
    /// Weibull shape k (larger = less noise; the papers use 10..1000).
    pub shape: f64,
    /// Prior of the first layer of the chain (every layer for BAM).
    pub prior: PriorConfig,
    /// Weight of the KL term (annealed from 0 by `train.kl_warmup_steps`).
    pub kl_weight: f64,
    /// β_c of the BABN chain, α^(l) = β_c · w^(l-1).
    #[serde(default = "one")]
    pub chain_beta: f64,
}

fn one() -> f64 {
    1.0
}

/// Smallest mean weight and prior shape (keeps ln λ, α/λ and ψ(α) and their gradients finite
/// in f32).
const MIN_MEAN: f64 = 1e-12;

/// One layer's Weibull attention: the variational distribution, the unnormalised weights used
/// (a sample, or the mean) and the normalised attention w = S / Σ S.
pub struct WeibullAttention {
    pub q: Weibull,
    pub unnormalised: Tensor,
    pub weights: Tensor,
}

/// q(S) = Weibull(k, softmax(s)/Γ(1 + 1/k)) for `logits [..., S]`; with `rng` a reparameterised
/// draw and w = S/Σ S, without it the mean: S = softmax(s) = w.
pub fn weibull_attention(logits: &Tensor, shape_k: f64, rng: Option<&mut SeededRng>) -> Result<WeibullAttention> {
    let mean = candle_nn::ops::softmax(logits, D::Minus1)?.clamp(MIN_MEAN, 1.0)?;
    let q = Weibull::with_mean(shape_k, &mean)?;
    let unnormalised = match rng {
        Some(r) => weibull_rsample(&q, r)?,
        None => mean.clone(),
    };
    let weights = unnormalised.broadcast_div(&unnormalised.sum_keepdim(D::Minus1)?)?;
    Ok(WeibullAttention { q, unnormalised, weights })
}

/// S = λ E^(1/k) with E = -ln(1 - u) ~ Exp(1) formed in f64 on the host (E in [1e-12, 27.6]),
/// so that no f32 rounding of u to 0 or 1 gives E = 0 or ∞ (a zero or infinite weight, a NaN
/// gradient).
fn weibull_rsample(q: &Weibull, rng: &mut SeededRng) -> Result<Tensor> {
    let n = q.lambda.elem_count();
    let e: Vec<f32> = (0..n).map(|_| -(-rng.next_uniform()).ln_1p() as f32).collect();
    let e = Tensor::from_vec(e, q.lambda.shape(), q.lambda.device())?.to_dtype(q.lambda.dtype())?;
    q.lambda.mul(&e.log()?.div(&q.k)?.exp()?)
}

/// Contextual prior shape α_i = β · softmax_i(prior_logits) over the keys (last dimension).
pub fn contextual_alpha(prior_logits: &Tensor, beta: f64) -> Result<Tensor> {
    candle_nn::ops::softmax(prior_logits, D::Minus1)? * beta
}

/// Σ_i KL(Weibull(k, λ_i) ‖ Gamma(α_i, β)) over the last dimension: `[...]`.
pub fn kl_to_gamma(q: &Weibull, alpha: &Tensor, beta: f64) -> Result<Tensor> {
    let alpha = alpha.clamp(MIN_MEAN, f64::MAX)?.broadcast_as(q.lambda.shape())?.contiguous()?;
    let beta = (alpha.ones_like()? * beta)?;
    q.kl(&Gamma::new(alpha, beta))?.sum(D::Minus1)
}

/// The prior shape α `[..., S]` of a layer: constant, or contextual from `prior_logits`.
pub fn prior_alpha(prior: &PriorConfig, like: &Tensor, prior_logits: Option<&Tensor>) -> Result<(Tensor, f64)> {
    match *prior {
        PriorConfig::Constant { alpha, beta } => Ok(((like.ones_like()? * alpha)?, beta)),
        PriorConfig::Contextual { beta } => match prior_logits {
            Some(l) => Ok((contextual_alpha(l, beta)?, beta)),
            None => candle_core::bail!("contextual prior without prior logits"),
        },
    }
}

/// Bayesian attention over stacked layers. `logits[l] [..., S]` are the deterministic (upward)
/// scores of layer l = 0..L-1; `gates[l]` the BABN gate c_l (ignored by BAM); `prior_logits`
/// the contextual prior's logits per layer (BAM) or of the top layer (BABN, index L-1).
/// Returns every layer's attention and the summed KL `[...]` (one value per batch element).
///
/// * BAM: each layer independently, q = Weibull(k, softmax(s^(l))/Γ(1+1/k)), prior from `cfg.prior`.
/// * BABN: downward from the top layer L-1: mean of layer l = softmax(s^(l) + c_l ln w^(l+1))
///   (s^(L-1) alone at the top); prior of the top layer from `cfg.prior`, of layer l < L-1
///   Gamma(β_c · w^(l+1), β_c).
pub fn bayesian_layers(
    cfg: &BayesConfig,
    logits: &[Tensor],
    gates: &[Tensor],
    prior_logits: &[Option<Tensor>],
    mut rng: Option<&mut SeededRng>,
    with_kl: bool,
) -> Result<(Vec<WeibullAttention>, Option<Tensor>)> {
    let l_count = logits.len();
    let mut out: Vec<Option<WeibullAttention>> = (0..l_count).map(|_| None).collect();
    let mut kl: Option<Tensor> = None;
    let add = |kl: &mut Option<Tensor>, t: Tensor| -> Result<()> {
        *kl = Some(match kl.take() {
            Some(k) => (k + t)?,
            None => t,
        });
        Ok(())
    };
    match cfg.kind {
        BayesKind::Bam => {
            for l in 0..l_count {
                let wa = weibull_attention(&logits[l], cfg.shape, rng.as_deref_mut())?;
                if with_kl {
                    let (alpha, beta) = prior_alpha(&cfg.prior, &logits[l], prior_logits.get(l).and_then(|p| p.as_ref()))?;
                    add(&mut kl, kl_to_gamma(&wa.q, &alpha, beta)?)?;
                }
                out[l] = Some(wa);
            }
        }
        BayesKind::Babn => {
            let mut above: Option<Tensor> = None;
            for l in (0..l_count).rev() {
                let lg = match &above {
                    None => logits[l].clone(),
                    Some(w) => (&logits[l] + w.clamp(MIN_MEAN, 1.0)?.log()?.broadcast_mul(&gates[l])?)?,
                };
                let wa = weibull_attention(&lg, cfg.shape, rng.as_deref_mut())?;
                if with_kl {
                    let (alpha, beta) = match &above {
                        None => prior_alpha(&cfg.prior, &lg, prior_logits.get(l).and_then(|p| p.as_ref()))?,
                        Some(w) => ((w * cfg.chain_beta)?, cfg.chain_beta),
                    };
                    add(&mut kl, kl_to_gamma(&wa.q, &alpha, beta)?)?;
                }
                above = Some(wa.weights.clone());
                out[l] = Some(wa);
            }
        }
    }
    Ok((out.into_iter().map(|w| w.expect("every layer")).collect(), kl))
}
