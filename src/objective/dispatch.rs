//! One entry point from a configured [`ObjectiveKind`] to an [`Estimate`], for any model that
//! exposes its alignment quantities through [`AlignmentOutputs`]. This is what makes a row of a
//! paper table a configuration rather than a code path.
use super::*;
use crate::distributions::{Categorical, Dirichlet, Positivity};
use crate::rng::SeededRng;
use candle_core::{Result, Tensor};

/// What a model computes for one batch of target steps `[...]` (e.g. `[B, T]`) over S
/// alignment positions. Models implement this; objectives consume it.
///
/// Three methods are required: the prior scores, log f for every alignment and the
/// soft-attention likelihood (enough for soft, exact, hard and K-Max rows). The others have
/// defaults: no inference network and no masks; `log_f_at` gathers from `log_f_all` (override it
/// when evaluating only the sampled alignments is cheaper); `log_f_relaxed`, needed only by the
/// relaxed rows (var-relaxed, Gumbel-softmax), is an error naming the method until implemented.
pub trait AlignmentOutputs {
    /// Unnormalised prior scores `[..., S]` (p = softmax of them; Dirichlet concentrations
    /// through a positivity transform).
    fn prior_scores(&self) -> &Tensor;
    /// Posterior (inference network) scores `[..., S]`, if the model has an inference network.
    fn posterior_scores(&self) -> Option<&Tensor> {
        None
    }
    /// Padding mask over positions `[..., S]` (1 real, 0 pad), if any.
    fn position_mask(&self) -> Option<&Tensor> {
        None
    }
    /// Mask over target steps `[...]`, if any.
    fn step_mask(&self) -> Option<&Tensor> {
        None
    }
    /// log f(x, i) of the gold output for every i: `[..., S]`.
    fn log_f_all(&self) -> Result<Tensor>;
    /// log f(x, z) at sampled indices `z [K, ...]` (u32): `[K, ...]`; by default
    /// `log_f_all()[..., z]`.
    fn log_f_at(&self, z: &Tensor) -> Result<Tensor> {
        crate::distributions::gather_last(&self.log_f_all()?, z)
    }
    /// log f(x, w) for a relaxed alignment `w [..., S]` on the simplex (context Σ_i w_i x̃_i).
    fn log_f_relaxed(&self, _w: &Tensor) -> Result<Tensor> {
        candle_core::bail!("this model does not implement AlignmentOutputs::log_f_relaxed, which the relaxed objectives (var-relaxed, gumbel) need")
    }
    /// log f(x, E_p[z]): the soft-attention likelihood `[...]`.
    fn log_f_soft(&self) -> Result<Tensor>;
    /// sg(log f(x, E_p[z])): the soft-attention likelihood as a constant (the REINFORCE baseline).
    /// Models override this to compute it from detached inputs, so that no graph is recorded and
    /// nothing is kept for a backward pass that never comes.
    fn log_f_soft_detached(&self) -> Result<Tensor> {
        Ok(self.log_f_soft()?.detach())
    }
}

/// State an estimator carries across batches.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct EstimatorState {
    /// Moving-average reward, used by sampled objectives when no soft baseline is wanted.
    pub moving_average: Option<MovingAverage>,
    /// Running moments and step count of the monotonic (online transducer) estimators.
    #[serde(default)]
    pub monotonic: MonotonicState,
}

/// Compute the configured objective from a model's outputs. REINFORCE objectives use the
/// soft-attention baseline of Deng et al. (b_t = log f(x, E_p[z])) unless `state` carries a
/// moving average.
pub fn estimate(
    kind: &ObjectiveKind,
    out: &dyn AlignmentOutputs,
    state: &mut EstimatorState,
    rng: &mut SeededRng,
) -> Result<Estimate> {
    let pmask = out.position_mask();
    let smask = out.step_mask();
    let prior = Categorical::from_logits(out.prior_scores(), pmask)?;
    let posterior = || -> Result<Categorical> {
        match out.posterior_scores() {
            Some(s) => Categorical::from_logits(s, pmask),
            None => candle_core::bail!("objective {kind:?} needs an inference network, and the model has none"),
        }
    };
    let at = |z: &Tensor| out.log_f_at(z);
    match *kind {
        ObjectiveKind::Soft => soft(&prior, &out.log_f_soft()?, smask),
        ObjectiveKind::Exact => exact_marginal(&prior, &out.log_f_all()?, smask),
        ObjectiveKind::HardEnum => hard_enum(&prior, &out.log_f_all()?, smask),
        ObjectiveKind::VarEnum => variational_enum(&prior, &posterior()?, &out.log_f_all()?, smask),
        ObjectiveKind::HardSample { samples } | ObjectiveKind::VarSample { samples } => {
            let soft_score;
            let baseline = match state.moving_average.as_mut() {
                Some(ma) => Baseline::MovingAverage(ma),
                None => {
                    soft_score = out.log_f_soft_detached()?;
                    Baseline::Soft(&soft_score)
                }
            };
            if matches!(kind, ObjectiveKind::HardSample { .. }) {
                hard_sample(&prior, at, samples, baseline, rng, smask)
            } else {
                variational_sample(&prior, &posterior()?, at, samples, baseline, rng, smask)
            }
        }
        ObjectiveKind::VarRelaxed { positivity } => {
            let p = Dirichlet::from_scores(out.prior_scores(), positivity, pmask)?;
            let q_scores = out
                .posterior_scores()
                .ok_or_else(|| candle_core::Error::Msg("var-relaxed needs an inference network".into()))?;
            let q = Dirichlet::from_scores(q_scores, positivity, pmask)?;
            variational_relaxed(&p, &q, |w| out.log_f_relaxed(w), rng, smask)
        }
        ObjectiveKind::Gumbel { temperature } => {
            gumbel_softmax(&prior, &posterior()?, temperature, |w| out.log_f_relaxed(w), rng, smask)
        }
        ObjectiveKind::Rws { samples } => rws(&prior, &posterior()?, at, samples, rng, smask),
        ObjectiveKind::Vimco { samples } => {
            let q = out.posterior_scores().map(|s| Categorical::from_logits(s, pmask)).transpose()?;
            vimco(&prior, q.as_ref(), at, samples, rng, smask)
        }
        ObjectiveKind::KMax { k } => kmax_marginal_masked(&prior, k, |idx| log_f_at_last(out, idx), smask),
    }
}

/// log f at indices laid out `[..., K]` (top-K) through the model's `[K, ...]` evaluator, so the
/// cost grows with K, not S.
fn log_f_at_last(out: &dyn AlignmentOutputs, idx: &Tensor) -> Result<Tensor> {
    let rank = idx.rank();
    let to_front: Vec<usize> = std::iter::once(rank - 1).chain(0..rank - 1).collect();
    let to_back: Vec<usize> = (1..rank).chain(std::iter::once(0)).collect();
    let z = idx.permute(to_front)?.contiguous()?;
    out.log_f_at(&z)?.permute(to_back)?.contiguous()
}

/// Held-out metrics of a trained model, evaluated as Deng et al. do: the exact marginal
/// log Σ_i p_i f(x, i) for every latent row (the K-Max marginal for `KMax`, K capped at S), the model's own likelihood for soft attention, and
/// for the relaxed (Dirichlet) row the likelihood at the prior-mean context E_{Dir(a_p)}[z] (a
/// cheap deterministic score, used for validation; its test perplexity comes from
/// [`relaxed_held_out_bound`]).
pub fn held_out_metrics(kind: &ObjectiveKind, out: &dyn AlignmentOutputs) -> Result<Metrics> {
    Ok(held_out(kind, out)?.metrics)
}

/// The held-out evaluation of [`held_out_metrics`] as an [`Estimate`], whose `log_lik` holds the
/// per-step likelihood the metrics sum.
pub fn held_out(kind: &ObjectiveKind, out: &dyn AlignmentOutputs) -> Result<Estimate> {
    let prior = Categorical::from_logits(out.prior_scores(), out.position_mask())?;
    Ok(match kind {
        ObjectiveKind::Soft => soft(&prior, &out.log_f_soft()?, out.step_mask())?,
        ObjectiveKind::VarRelaxed { positivity } => {
            use crate::distributions::Distribution;
            let mean = Dirichlet::from_scores(out.prior_scores(), *positivity, out.position_mask())?.mean()?;
            let as_cat = Categorical::from_log_probs(mean.clamp(1e-30, 1.0)?.log()?, None);
            soft(&as_cat, &out.log_f_relaxed(&mean)?, out.step_mask())?
        }
        ObjectiveKind::KMax { k } => {
            let k = (*k).min(prior.num_positions()?);
            let log_f = out.log_f_all()?.contiguous()?;
            kmax_marginal_masked(&prior, k, |idx| log_f.gather(&idx.contiguous()?, candle_core::D::Minus1), out.step_mask())?
        }
        _ => exact_marginal(&prior, &out.log_f_all()?, out.step_mask())?,
    })
}

/// Held-out metrics of the relaxed (Dirichlet) row from the importance-weighted bound
/// [`relaxed_iw_bound`] with `samples` draws from q = Dir(a_q) per target token (densities in
/// f64): its NLL is -Σ_t L_K, so the perplexity is an upper bound (in expectation), not a
/// marginal likelihood.
pub fn relaxed_held_out_bound(positivity: Positivity, out: &dyn AlignmentOutputs, samples: usize, rng: &mut SeededRng) -> Result<Metrics> {
    use candle_core::DType;
    let q_scores = out
        .posterior_scores()
        .ok_or_else(|| candle_core::Error::Msg("the relaxed row's bound needs an inference network".into()))?;
    let mask = out.position_mask().map(|m| m.to_dtype(DType::F64)).transpose()?;
    let dir = |s: &Tensor| Dirichlet::from_scores(&s.detach().to_dtype(DType::F64)?, positivity, mask.as_ref());
    let (p, q) = (dir(out.prior_scores())?, dir(q_scores)?);
    Ok(relaxed_iw_bound(&p, &q, |z| out.log_f_relaxed(z), samples, rng, out.step_mask())?.metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    /// A model with only the three required methods: prior scores, log f for every alignment and
    /// the soft likelihood.
    struct Minimal {
        prior: Tensor,
        log_f: Tensor,
    }

    impl AlignmentOutputs for Minimal {
        fn prior_scores(&self) -> &Tensor {
            &self.prior
        }
        fn log_f_all(&self) -> Result<Tensor> {
            Ok(self.log_f.clone())
        }
        fn log_f_soft(&self) -> Result<Tensor> {
            // log Σ_i p_i f_i stands in for f(x, E_p[z]) in this test
            (candle_nn::ops::softmax(&self.prior, D::Minus1)? * self.log_f.exp()?)?.sum(D::Minus1)?.log()
        }
    }

    #[test]
    fn three_methods_suffice_for_the_enumerated_and_sampled_rows_and_relaxed_ones_say_what_is_missing() {
        let dev = Device::Cpu;
        let m = Minimal { prior: Tensor::new(&[[0.0f64, 1.0, 2.0], [1.0, 0.0, -1.0]], &dev).unwrap(), log_f: Tensor::new(&[[-0.2f64, -2.5, -1.0], [-3.0, -0.1, -0.7]], &dev).unwrap() };
        let z = Tensor::new(&[[2u32, 0], [1, 1]], &dev).unwrap(); // [K = 2, B = 2]
        assert_eq!(m.log_f_at(&z).unwrap().to_vec2::<f64>().unwrap(), [[-1.0, -3.0], [-2.5, -0.1]]);
        let mut state = EstimatorState::default();
        let mut rng = SeededRng::new(1);
        for kind in [ObjectiveKind::Exact, ObjectiveKind::HardSample { samples: 3 }, ObjectiveKind::KMax { k: 2 }] {
            let e = estimate(&kind, &m, &mut state, &mut rng).unwrap();
            assert!(e.loss.to_scalar::<f64>().unwrap().is_finite(), "{kind:?}");
        }
        let err = estimate(&ObjectiveKind::Gumbel { temperature: 1.0 }, &m, &mut state, &mut rng).unwrap_err().to_string();
        assert!(err.contains("needs an inference network"), "{err}");
        let err = m.log_f_relaxed(&candle_nn::ops::softmax(&m.prior, D::Minus1).unwrap()).unwrap_err().to_string();
        assert!(err.contains("log_f_relaxed") && err.contains("gumbel"), "{err}");
    }
}
