//! Alignment attention (Zhang, Fan, Zheng, Tanwisuth, Zhou, NeurIPS 2021): a regulariser for any
//! (multi-head) attention that, within each head, pulls the distribution of the keys and the
//! distribution of the queries together. Loss = task loss + λ · mean over layers and heads of
//! one of:
//!
//! * **AA-CT**, conditional transport: critic τ, cost C(q, k) = 1 - cos(τ(q), τ(k)); navigator η
//!   with a forward plan π→(q_i | k_j) = softmax_i(η(q_i)·η(k_j)) (over queries) and a backward
//!   plan π←(k_j | q_i) = softmax_j(η(q_i)·η(k_j)) (over keys);
//!   L_CT = ρ · mean_j Σ_i C_ij π→_ij + (1 - ρ) · mean_i Σ_j C_ij π←_ij.
//!   The navigator and the attention minimise L_CT; the critic maximises it through a gradient
//!   reversal on its parameters ([`crate::nn::grad_reverse()`]).
//! * **AA-GAN**: a discriminator D with keys as "real" and queries as "fake",
//!   L_GAN = mean_j softplus(-D(k_j)) + mean_i softplus(D(q_i)) (binary cross-entropy); D
//!   minimises it, the attention maximises it through a gradient reversal on D's inputs.
//! * **AA-OT**: entropic optimal transport between the uniform empirical measures of queries and
//!   keys with cost C_ij = 1 - cos(q_i, k_j), solved by log-domain Sinkhorn with a fixed number of
//!   iterations and differentiated through the iterations; L_OT = Σ_ij π_ij C_ij.
//!
//! All functions take features grouped as `[N, I, d]` (queries) and `[N, J, d]` (keys), a group
//! being one head of one layer (of one example, or of a batch), and return the mean over groups.
use crate::nn::grad_reverse;
use crate::special::softplus;
use crate::nn::ParamStore;
use candle_core::{Result, Tensor, D};
use serde::{Deserialize, Serialize};

/// Which alignment-attention regulariser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlignmentKind {
    /// Conditional transport (AA-CT).
    Ct,
    /// Keys-real / queries-fake discriminator (AA-GAN).
    Gan,
    /// Sinkhorn optimal transport (AA-OT).
    Ot,
}

/// The regulariser's config (a `[model.attention.regularizer]` table): kind, weight λ (paper
/// 0.01), ρ of AA-CT (paper 0.5), ε and iterations of AA-OT's Sinkhorn, hidden size of the
/// critic, navigator and discriminator, and at most how many keys per head enter the loss (a
/// seeded uniform subsample when there are more; none = all).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlignmentConfig {
    pub kind: AlignmentKind,
    pub weight: f64,
    #[serde(default = "default_rho")]
    pub rho: f64,
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    #[serde(default = "default_iterations")]
    pub iterations: usize,
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    #[serde(default)]
    pub max_keys: Option<usize>,
}

fn default_rho() -> f64 {
    0.5
}

fn default_epsilon() -> f64 {
    0.05
}

fn default_iterations() -> usize {
    30
}

fn default_hidden() -> usize {
    32
}

/// A two-layer perceptron x ↦ W₂ tanh(W₁ x + b₁) + b₂ whose parameters may be read through a
/// gradient reversal (an adversary trained to maximise the loss).
pub struct SmallMlp {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    reversed: bool,
}

impl SmallMlp {
    /// Parameters `<name>.{w1,b1,w2,b2}` from the store, U(-init, init).
    pub fn new(ps: &mut ParamStore, name: &str, d_in: usize, hidden: usize, d_out: usize, reversed: bool) -> Result<Self> {
        Ok(Self {
            w1: ps.uniform(&format!("{name}.w1"), &[d_in, hidden])?,
            b1: ps.uniform(&format!("{name}.b1"), &[hidden])?,
            w2: ps.uniform(&format!("{name}.w2"), &[hidden, d_out])?,
            b2: ps.uniform(&format!("{name}.b2"), &[d_out])?,
            reversed,
        })
    }

    /// From explicit weights `w1 [d_in, h]`, `b1 [h]`, `w2 [h, d_out]`, `b2 [d_out]` (tests).
    pub fn from_weights(w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, reversed: bool) -> Self {
        Self { w1, b1, w2, b2, reversed }
    }

    fn param(&self, t: &Tensor) -> Result<Tensor> {
        if self.reversed {
            grad_reverse(t)
        } else {
            Ok(t.clone())
        }
    }

    /// W₂ tanh(W₁ x + b₁) + b₂ over the last dimension of `x [..., d_in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = x.broadcast_matmul(&self.param(&self.w1)?)?.broadcast_add(&self.param(&self.b1)?)?.tanh()?;
        h.broadcast_matmul(&self.param(&self.w2)?)?.broadcast_add(&self.param(&self.b2)?)
    }
}

/// Pairwise cosine cost C[n, i, j] = 1 - a_ni·b_nj / (‖a_ni‖ ‖b_nj‖) of `a [N, I, d]` and
/// `b [N, J, d]`; in [0, 2].
pub fn cosine_cost(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let unit = |x: &Tensor| -> Result<Tensor> {
        let norm = (x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
        x.broadcast_div(&norm)
    };
    let cos = unit(a)?.matmul(&unit(b)?.transpose(1, 2)?.contiguous()?)?;
    cos.affine(-1.0, 1.0)
}

/// Entropic OT plan between uniform measures a = 1/I, b = 1/J for costs `cost [N, I, J]`, by
/// log-domain Sinkhorn (fixed `iterations`, each one f-update and one g-update):
///   f_i = -ε log Σ_j b_j exp((g_j - C_ij)/ε),  g_j = -ε log Σ_i a_i exp((f_i - C_ij)/ε),
///   π_ij = a_i b_j exp((f_i + g_j - C_ij)/ε).
/// The column marginals Σ_i π_ij = b_j hold exactly after the last g-update; the row marginals
/// converge to a_i. Differentiable through the iterations.
pub fn sinkhorn_plan(cost: &Tensor, epsilon: f64, iterations: usize) -> Result<Tensor> {
    let (n, i, j) = cost.dims3()?;
    let (log_a, log_b) = (-(i as f64).ln(), -(j as f64).ln());
    let c_eps = (cost / epsilon)?;
    let mut f = Tensor::zeros((n, i, 1), cost.dtype(), cost.device())?;
    let mut g = Tensor::zeros((n, 1, j), cost.dtype(), cost.device())?;
    for _ in 0..iterations.max(1) {
        f = ((g / epsilon)?.broadcast_sub(&c_eps)? + log_b)?.log_sum_exp(2)?.unsqueeze(2)?.affine(-epsilon, 0.0)?;
        g = ((&f / epsilon)?.broadcast_sub(&c_eps)? + log_a)?.log_sum_exp(1)?.unsqueeze(1)?.affine(-epsilon, 0.0)?;
    }
    let log_pi = ((f.broadcast_add(&g)? / epsilon)?.broadcast_sub(&c_eps)? + (log_a + log_b))?;
    log_pi.exp()
}

/// L_OT = mean_n Σ_ij π_nij C_nij with π the Sinkhorn plan of C = 1 - cos(q_i, k_j).
pub fn ot_loss(queries: &Tensor, keys: &Tensor, epsilon: f64, iterations: usize) -> Result<Tensor> {
    let cost = cosine_cost(queries, keys)?;
    let plan = sinkhorn_plan(&cost, epsilon, iterations)?;
    plan.mul(&cost)?.sum((1, 2))?.mean_all()
}

/// L_CT = mean_n [ρ · mean_j Σ_i C_ij π→_ij + (1 - ρ) · mean_i Σ_j C_ij π←_ij] with
/// C_ij = 1 - cos(τ(q_i), τ(k_j)), π→ = softmax over queries i and π← = softmax over keys j of
/// η(q_i)·η(k_j). The critic τ should be built with `reversed = true` (it maximises L_CT).
pub fn ct_loss(queries: &Tensor, keys: &Tensor, critic: &SmallMlp, navigator: &SmallMlp, rho: f64) -> Result<Tensor> {
    let cost = cosine_cost(&critic.forward(queries)?, &critic.forward(keys)?)?; // [N, I, J]
    let logits = navigator.forward(queries)?.matmul(&navigator.forward(keys)?.transpose(1, 2)?.contiguous()?)?;
    let fwd = candle_nn::ops::softmax(&logits, 1)?; // over queries i, per key j
    let bwd = candle_nn::ops::softmax(&logits, 2)?; // over keys j, per query i
    let forward = cost.mul(&fwd)?.sum(1)?.mean(1)?; // [N]: mean_j Σ_i
    let backward = cost.mul(&bwd)?.sum(2)?.mean(1)?; // [N]: mean_i Σ_j
    ((forward * rho)? + (backward * (1.0 - rho))?)?.mean_all()
}

/// L_GAN = mean_n [mean_j softplus(-D(k_j)) + mean_i softplus(D(q_i))]: the discriminator's
/// cross-entropy with keys real and queries fake. The features pass through a gradient reversal,
/// so the discriminator minimises L_GAN and the attention that made q and k maximises it.
pub fn gan_loss(queries: &Tensor, keys: &Tensor, discriminator: &SmallMlp) -> Result<Tensor> {
    let dq = discriminator.forward(&grad_reverse(queries)?)?;
    let dk = discriminator.forward(&grad_reverse(keys)?)?;
    softplus(&dk.neg()?)?.mean_all()? + softplus(&dq)?.mean_all()?
}

/// The networks of one regulariser, created from a config (none for OT).
pub struct AlignmentRegularizer {
    pub cfg: AlignmentConfig,
    critic: Option<SmallMlp>,
    navigator: Option<SmallMlp>,
    discriminator: Option<SmallMlp>,
}

impl AlignmentRegularizer {
    /// Parameters under `<name>.{critic,navigator,discriminator}` for features of size `dim`.
    pub fn new(ps: &mut ParamStore, name: &str, cfg: AlignmentConfig, dim: usize) -> Result<Self> {
        let h = cfg.hidden;
        let (mut critic, mut navigator, mut discriminator) = (None, None, None);
        match cfg.kind {
            AlignmentKind::Ct => {
                critic = Some(SmallMlp::new(ps, &format!("{name}.critic"), dim, h, dim, true)?);
                navigator = Some(SmallMlp::new(ps, &format!("{name}.navigator"), dim, h, dim, false)?);
            }
            AlignmentKind::Gan => discriminator = Some(SmallMlp::new(ps, &format!("{name}.discriminator"), dim, h, 1, false)?),
            AlignmentKind::Ot => {}
        }
        Ok(Self { cfg, critic, navigator, discriminator })
    }

    /// The unweighted regulariser (mean over groups) for `queries [N, I, d]`, `keys [N, J, d]`.
    pub fn loss(&self, queries: &Tensor, keys: &Tensor) -> Result<Tensor> {
        match self.cfg.kind {
            AlignmentKind::Ct => ct_loss(queries, keys, self.critic.as_ref().unwrap(), self.navigator.as_ref().unwrap(), self.cfg.rho),
            AlignmentKind::Gan => gan_loss(queries, keys, self.discriminator.as_ref().unwrap()),
            AlignmentKind::Ot => ot_loss(queries, keys, self.cfg.epsilon, self.cfg.iterations),
        }
    }
}
