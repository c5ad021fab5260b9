//! One entry point from a configured [`ObjectiveKind`] to an [`Estimate`], for any model that
//! exposes its alignment quantities through [`AlignmentOutputs`]. This is what makes a row of a
//! paper table a configuration rather than a code path.
use super::*;
use crate::distributions::{Categorical, Dirichlet, Positivity};
use crate::rng::SeededRng;
use candle_core::{Result, Tensor};

/// What a latent-alignment model computes for one batch of target steps `[...]` (e.g. `[B, T]`)
/// over S alignment positions: the prior (and an inference network's posterior) as scores, the
/// masks, and the likelihood f(x, z) of the gold output in the forms the model can evaluate. Each
/// form is a capability trait, and an objective asks only for the ones it uses:
///
/// | capability | computes | objectives |
/// |---|---|---|
/// | [`Enumerable`] | log f(x, i) for every i, `[..., S]` | exact, hard-enum, var-enum, K-Max; the sampled ones by gathering |
/// | [`Sampled`] | log f(x, z) at drawn `z [K, ...]` | hard-sample, var-sample, RWS, VIMCO |
/// | [`Relaxed`] | log f(x, w) at a point w of the simplex; soft attention is w = E_p\[z\] | soft, var-relaxed, Gumbel-softmax; REINFORCE's soft baseline |
///
/// A model implements this trait and the capabilities it has, and returns itself from the
/// matching accessor (`fn enumerable(&self) -> Option<&dyn Enumerable> { Some(self) }`); an
/// objective whose capability is missing is an error naming it. Without [`Sampled`], the sampled
/// objectives gather from [`Enumerable::log_f_all`] (implement `Sampled` when evaluating only the
/// drawn alignments is cheaper).
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
    /// The likelihood at every alignment, if the model enumerates them.
    fn enumerable(&self) -> Option<&dyn Enumerable> {
        None
    }
    /// The likelihood at drawn alignments, if the model evaluates them on their own.
    fn sampled(&self) -> Option<&dyn Sampled> {
        None
    }
    /// The likelihood at relaxed alignments (and soft attention's), if the model has it.
    fn relaxed(&self) -> Option<&dyn Relaxed> {
        None
    }
}

/// The three capability accessors of outputs that implement [`Enumerable`], [`Sampled`] and
/// [`Relaxed`] themselves, written inside their `impl AlignmentOutputs`:
///
/// ```ignore
/// impl AlignmentOutputs for MyOutputs {
///     fn prior_scores(&self) -> &Tensor { &self.prior }
///     varattn::every_likelihood_capability!();
/// }
/// ```
#[macro_export]
macro_rules! every_likelihood_capability {
    () => {
        fn enumerable(&self) -> Option<&dyn $crate::objective::Enumerable> {
            Some(self)
        }
        fn sampled(&self) -> Option<&dyn $crate::objective::Sampled> {
            Some(self)
        }
        fn relaxed(&self) -> Option<&dyn $crate::objective::Relaxed> {
            Some(self)
        }
    };
}

/// log f(x, i) of the gold output for every alignment i.
pub trait Enumerable {
    /// `[..., S]`.
    fn log_f_all(&self) -> Result<Tensor>;
}

/// log f(x, z) of the gold output at drawn alignments only.
pub trait Sampled {
    /// At indices `z [K, ...]` (u32): `[K, ...]`.
    fn log_f_at(&self, z: &Tensor) -> Result<Tensor>;
}

/// log f(x, w) of the gold output for a relaxed alignment w on the simplex (the model reads the
/// context Σ_i w_i x̃_i); soft attention is the point w = E_p\[z\].
pub trait Relaxed: AlignmentOutputs {
    /// At `w [..., S]`: `[...]`.
    fn log_f_relaxed(&self, w: &Tensor) -> Result<Tensor>;
    /// log f(x, E_p\[z\]), the soft-attention likelihood `[...]`: `log_f_relaxed` at the prior's
    /// probabilities.
    fn log_f_soft(&self) -> Result<Tensor> {
        let p = Categorical::from_logits(self.prior_scores(), self.position_mask())?.probs()?;
        self.log_f_relaxed(&p)
    }
    /// sg(log f(x, E_p\[z\])): the soft-attention likelihood as a constant (the REINFORCE baseline).
    /// Models override this to compute it from detached inputs, so that no graph is recorded and
    /// nothing is kept for a backward pass that never comes.
    fn log_f_soft_detached(&self) -> Result<Tensor> {
        Ok(self.log_f_soft()?.detach())
    }
}

/// The error of an objective that needs a capability the model does not have.
fn missing(objective: &str, capability: &str, what: &str) -> candle_core::Error {
    candle_core::Error::Msg(format!(
        "{objective} needs {what}, and the model has none: implement varattn::objective::{capability} for its outputs and return it from AlignmentOutputs::{}()",
        capability.to_lowercase()
    ))
}

const ALL_LIKELIHOOD: &str = "the likelihood at every alignment";
const RELAXED_LIKELIHOOD: &str = "the likelihood at a relaxed alignment (soft attention's context)";

/// log f(x, i) for every alignment, or an error naming `objective` and the missing [`Enumerable`].
pub fn log_f_all(out: &dyn AlignmentOutputs, objective: &str) -> Result<Tensor> {
    out.enumerable().ok_or_else(|| missing(objective, "Enumerable", ALL_LIKELIHOOD))?.log_f_all()
}

/// log f(x, z) at drawn `z [K, ...]`: the model's [`Sampled`], else a gather from its
/// [`Enumerable::log_f_all`].
pub fn log_f_at(out: &dyn AlignmentOutputs, z: &Tensor, objective: &str) -> Result<Tensor> {
    match (out.sampled(), out.enumerable()) {
        (Some(s), _) => s.log_f_at(z),
        (None, Some(e)) => crate::distributions::gather_last(&e.log_f_all()?, z),
        (None, None) => Err(missing(objective, "Sampled", "the likelihood at drawn alignments (or at every alignment)")),
    }
}

/// The model's [`Relaxed`] likelihood, or an error naming `objective`.
pub fn relaxed<'a>(out: &'a dyn AlignmentOutputs, objective: &str) -> Result<&'a dyn Relaxed> {
    out.relaxed().ok_or_else(|| missing(objective, "Relaxed", RELAXED_LIKELIHOOD))
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
/// soft-attention baseline of Deng et al. (b_t = log f(x, E_p\[z\])) unless `state` carries a
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
    let name = kind.name();
    let at = |z: &Tensor| log_f_at(out, z, name);
    match *kind {
        ObjectiveKind::Soft => soft(&prior, &relaxed(out, name)?.log_f_soft()?, smask),
        ObjectiveKind::Exact => exact_marginal(&prior, &log_f_all(out, name)?, smask),
        ObjectiveKind::HardEnum => hard_enum(&prior, &log_f_all(out, name)?, smask),
        ObjectiveKind::VarEnum => variational_enum(&prior, &posterior()?, &log_f_all(out, name)?, smask),
        ObjectiveKind::HardSample { samples } | ObjectiveKind::VarSample { samples } => {
            let soft_score;
            let baseline = match state.moving_average.as_mut() {
                Some(ma) => Baseline::MovingAverage(ma),
                None => {
                    let f = out.relaxed().ok_or_else(|| {
                        missing(&format!("{name} (with the soft-attention baseline)"), "Relaxed", RELAXED_LIKELIHOOD)
                    })?;
                    soft_score = f.log_f_soft_detached()?;
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
            let f = relaxed(out, name)?;
            let p = Dirichlet::from_scores(out.prior_scores(), positivity, pmask)?;
            let q_scores = out
                .posterior_scores()
                .ok_or_else(|| candle_core::Error::Msg("var-relaxed needs an inference network".into()))?;
            let q = Dirichlet::from_scores(q_scores, positivity, pmask)?;
            variational_relaxed(&p, &q, |w| f.log_f_relaxed(w), rng, smask)
        }
        ObjectiveKind::Gumbel { temperature } => {
            let q = posterior()?;
            let f = relaxed(out, name)?;
            gumbel_softmax(&prior, &q, temperature, |w| f.log_f_relaxed(w), rng, smask)
        }
        ObjectiveKind::Rws { samples } => rws(&prior, &posterior()?, at, samples, rng, smask),
        ObjectiveKind::Vimco { samples } => {
            let q = out.posterior_scores().map(|s| Categorical::from_logits(s, pmask)).transpose()?;
            vimco(&prior, q.as_ref(), at, samples, rng, smask)
        }
        ObjectiveKind::KMax { k } => kmax_marginal_masked(&prior, k, |idx| log_f_at_last(out, idx, name), smask),
    }
}

/// log f at indices laid out `[..., K]` (top-K) through the model's `[K, ...]` evaluator, so the
/// cost grows with K, not S.
fn log_f_at_last(out: &dyn AlignmentOutputs, idx: &Tensor, objective: &str) -> Result<Tensor> {
    let rank = idx.rank();
    let to_front: Vec<usize> = std::iter::once(rank - 1).chain(0..rank - 1).collect();
    let to_back: Vec<usize> = (1..rank).chain(std::iter::once(0)).collect();
    let z = idx.permute(to_front)?.contiguous()?;
    log_f_at(out, &z, objective)?.permute(to_back)?.contiguous()
}

/// Held-out metrics of a trained model, evaluated as Deng et al. do: the exact marginal
/// log Σ_i p_i f(x, i) for every latent row (the K-Max marginal for `KMax`, K capped at S), the model's own likelihood for soft attention, and
/// for the relaxed (Dirichlet) row the likelihood at the prior-mean context E_{Dir(a_p)}\[z\] (a
/// cheap deterministic score, used for validation; its test perplexity comes from
/// [`relaxed_held_out_bound`]).
pub fn held_out_metrics(kind: &ObjectiveKind, out: &dyn AlignmentOutputs) -> Result<Metrics> {
    Ok(held_out(kind, out)?.metrics)
}

/// The held-out evaluation of [`held_out_metrics`] as an [`Estimate`], whose `log_lik` holds the
/// per-step likelihood the metrics sum.
pub fn held_out(kind: &ObjectiveKind, out: &dyn AlignmentOutputs) -> Result<Estimate> {
    let prior = Categorical::from_logits(out.prior_scores(), out.position_mask())?;
    let name = kind.name();
    Ok(match kind {
        ObjectiveKind::Soft => soft(&prior, &relaxed(out, name)?.log_f_soft()?, out.step_mask())?,
        ObjectiveKind::VarRelaxed { positivity } => {
            use crate::distributions::Distribution;
            let mean = Dirichlet::from_scores(out.prior_scores(), *positivity, out.position_mask())?.mean()?;
            let as_cat = Categorical::from_log_probs(mean.clamp(1e-30, 1.0)?.log()?, None);
            soft(&as_cat, &relaxed(out, name)?.log_f_relaxed(&mean)?, out.step_mask())?
        }
        ObjectiveKind::KMax { k } => {
            let k = (*k).min(prior.num_positions()?);
            let log_f = log_f_all(out, name)?.contiguous()?;
            kmax_marginal_masked(&prior, k, |idx| log_f.gather(&idx.contiguous()?, candle_core::D::Minus1), out.step_mask())?
        }
        _ => {
            let e = out.enumerable().ok_or_else(|| missing(&format!("the held-out exact marginal of {name}"), "Enumerable", ALL_LIKELIHOOD))?;
            exact_marginal(&prior, &e.log_f_all()?, out.step_mask())?
        }
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
    let f = relaxed(out, "the relaxed row's held-out bound")?;
    Ok(relaxed_iw_bound(&p, &q, |z| f.log_f_relaxed(z), samples, rng, out.step_mask())?.metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    /// A model that only enumerates: prior scores and log f for every alignment.
    struct Minimal {
        prior: Tensor,
        log_f: Tensor,
    }

    impl AlignmentOutputs for Minimal {
        fn prior_scores(&self) -> &Tensor {
            &self.prior
        }
        fn enumerable(&self) -> Option<&dyn Enumerable> {
            Some(self)
        }
    }

    impl Enumerable for Minimal {
        fn log_f_all(&self) -> Result<Tensor> {
            Ok(self.log_f.clone())
        }
    }

    /// The same model with a relaxed likelihood that reads log Σ_i w_i f_i.
    struct WithRelaxed(Minimal);

    impl AlignmentOutputs for WithRelaxed {
        fn prior_scores(&self) -> &Tensor {
            &self.0.prior
        }
        fn enumerable(&self) -> Option<&dyn Enumerable> {
            Some(&self.0)
        }
        fn relaxed(&self) -> Option<&dyn Relaxed> {
            Some(self)
        }
    }

    impl Relaxed for WithRelaxed {
        fn log_f_relaxed(&self, w: &Tensor) -> Result<Tensor> {
            (w * self.0.log_f.exp()?)?.sum(D::Minus1)?.log()
        }
    }

    /// `ObjectiveKind::name` (in error messages) spells each kind as a config writes it.
    #[test]
    fn every_kind_is_named_as_a_config_writes_it() {
        #[derive(serde::Serialize)]
        struct Row {
            objective: ObjectiveKind,
        }
        for (_, kind) in ObjectiveKind::all_paper_rows() {
            let text = toml::to_string(&Row { objective: kind }).unwrap();
            assert!(text.contains(&format!("kind = \"{}\"", kind.name())), "{kind:?}: {text}");
        }
    }

    #[test]
    fn an_enumerating_model_trains_the_enumerated_and_sampled_rows_and_the_others_name_the_missing_capability() {
        let dev = Device::Cpu;
        let m = Minimal { prior: Tensor::new(&[[0.0f64, 1.0, 2.0], [1.0, 0.0, -1.0]], &dev).unwrap(), log_f: Tensor::new(&[[-0.2f64, -2.5, -1.0], [-3.0, -0.1, -0.7]], &dev).unwrap() };
        let z = Tensor::new(&[[2u32, 0], [1, 1]], &dev).unwrap(); // [K = 2, B = 2]
        // without a Sampled capability, log f at drawn alignments is gathered from log_f_all
        assert_eq!(log_f_at(&m, &z, "test").unwrap().to_vec2::<f64>().unwrap(), [[-1.0, -3.0], [-2.5, -0.1]]);
        let mut state = EstimatorState::default();
        let mut rng = SeededRng::new(1);
        for kind in [ObjectiveKind::Exact, ObjectiveKind::HardEnum, ObjectiveKind::KMax { k: 2 }] {
            let e = estimate(&kind, &m, &mut state, &mut rng).unwrap();
            assert!(e.loss.to_scalar::<f64>().unwrap().is_finite(), "{kind:?}");
        }
        // sampling with the soft-attention baseline needs the relaxed likelihood; with a moving
        // average it does not
        let err = estimate(&ObjectiveKind::HardSample { samples: 3 }, &m, &mut state, &mut rng).unwrap_err().to_string();
        assert!(err.contains("hard-sample (with the soft-attention baseline) needs") && err.contains("Relaxed") && err.contains("relaxed()"), "{err}");
        let mut averaged = EstimatorState { moving_average: Some(crate::objective::MovingAverage::new(0.9)), ..Default::default() };
        let e = estimate(&ObjectiveKind::HardSample { samples: 3 }, &m, &mut averaged, &mut rng).unwrap();
        assert!(e.loss.to_scalar::<f64>().unwrap().is_finite());
        let err = estimate(&ObjectiveKind::Soft, &m, &mut state, &mut rng).unwrap_err().to_string();
        assert!(err.starts_with("soft needs the likelihood at a relaxed alignment") && err.contains("Relaxed"), "{err}");
        let err = estimate(&ObjectiveKind::Gumbel { temperature: 1.0 }, &m, &mut state, &mut rng).unwrap_err().to_string();
        assert!(err.contains("needs an inference network"), "{err}");
        // the relaxed capability's soft likelihood defaults to log_f_relaxed at the prior's probabilities
        let r = WithRelaxed(m);
        let soft_lik = r.log_f_soft().unwrap().to_vec1::<f64>().unwrap();
        let p = candle_nn::ops::softmax(&r.0.prior, D::Minus1).unwrap();
        let by_hand = (p * r.0.log_f.exp().unwrap()).unwrap().sum(D::Minus1).unwrap().log().unwrap().to_vec1::<f64>().unwrap();
        for (a, b) in soft_lik.iter().zip(&by_hand) {
            assert!((a - b).abs() < 1e-12, "{soft_lik:?} vs {by_hand:?}");
        }
        let e = estimate(&ObjectiveKind::HardSample { samples: 3 }, &r, &mut state, &mut rng).unwrap();
        assert!(e.loss.to_scalar::<f64>().unwrap().is_finite());
    }
}
