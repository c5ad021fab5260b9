//! The online monotonic transducer and its estimators (Lawson et al. 2018) against exact
//! enumeration on words short enough that every emit sequence can be listed: q is a normalised
//! distribution over A(S, T), sampling honours the forcing rules, each estimator's mean gradient
//! matches the exact gradient of its objective within the sample standard error, and the VIMCO
//! bound E[L_K] increases with K towards log p(y | x).
use candle_core::{DType, Device, Tensor, Var, D};
use varattn_lab::models::transducer::{all_alignments, PathChoice, Transducer, TransducerBatch, TransducerConfig};
use varattn::objective::{monotonic_estimate, MonotonicEstimator, MonotonicState, RunningMoments};
use varattn::rng::SeededRng;
use varattn_lab::train::ParamStore;

const N_LABELS: usize = 5;

fn tiny(seed: u64) -> (ParamStore, Transducer) {
    let cfg = TransducerConfig { letter_emb: 3, label_emb: 3, hidden: 4, q_hidden: 3, q_attn: 3, baseline_hidden: 3, init: 0.6 };
    let mut ps = ParamStore::new(seed, cfg.init, &Device::Cpu);
    let m = Transducer::new(&mut ps, &cfg, 27, N_LABELS).unwrap();
    (ps, m)
}

/// Two words: S = 4, T = 2 (6 alignments) and S = 3, T = 2 (3 alignments, padded).
fn words() -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
    (vec![vec![3, 1, 20, 5], vec![4, 15, 7]], vec![vec![0, 3], vec![1, 4]])
}

fn batch_of(letters: &[Vec<u32>], labels: &[Vec<u32>], copies: usize) -> TransducerBatch {
    let l: Vec<Vec<u32>> = (0..copies).flat_map(|_| letters.iter().cloned()).collect();
    let y: Vec<Vec<u32>> = (0..copies).flat_map(|_| labels.iter().cloned()).collect();
    TransducerBatch::new(&l, &y, &Device::Cpu).unwrap()
}

/// The model's parameters (generative and posterior; the baselines' own squared-error loss is
/// not part of the objective).
fn model_vars(ps: &ParamStore) -> Vec<(String, Var)> {
    ps.named_vars().into_iter().filter(|(n, _)| !n.starts_with("baseline.")).collect()
}

fn flat_grad(loss: &Tensor, vars: &[(String, Var)]) -> Vec<f64> {
    let g = loss.backward().unwrap();
    vars.iter()
        .flat_map(|(_, v)| match g.get(v.as_tensor()) {
            Some(t) => t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap(),
            None => vec![0.0; v.as_tensor().elem_count()],
        })
        .collect()
}

/// log p(y, b | x) and log q(b | x, y) of every alignment of one word, `[P]` each, differentiable.
fn enumerate_word(m: &Transducer, letters: &[u32], labels: &[u32]) -> (Tensor, Tensor) {
    let paths = all_alignments(letters.len(), labels.len());
    let given: Vec<Vec<Vec<u8>>> = paths.iter().map(|p| vec![p.clone()]).collect();
    let b = TransducerBatch::new(&[letters.to_vec()], &[labels.to_vec()], &Device::Cpu).unwrap();
    let (s, _) = m.score_paths(&b, paths.len(), PathChoice::Given(&given)).unwrap();
    (s.log_p.sum(D::Minus1).unwrap().squeeze(1).unwrap(), s.log_q.sum(D::Minus1).unwrap().squeeze(1).unwrap())
}

/// The exact ELBO Σ_b q(b) (log p(y, b | x) - log q(b | x, y)) of one word.
fn exact_elbo(m: &Transducer, letters: &[u32], labels: &[u32]) -> Tensor {
    let (lp, lq) = enumerate_word(m, letters, labels);
    lq.exp().unwrap().mul(&(lp - &lq).unwrap()).unwrap().sum_all().unwrap()
}

/// The exact E_{b^1, b^2 ~ q}[L_2], L_2 = log (w_1 + w_2) / 2, of one word.
fn exact_vimco2(m: &Transducer, letters: &[u32], labels: &[u32]) -> Tensor {
    let (lp, lq) = enumerate_word(m, letters, labels);
    let p = lq.dim(0).unwrap();
    let lw = (lp - &lq).unwrap();
    let a = lw.unsqueeze(1).unwrap().broadcast_as((p, p)).unwrap();
    let b = lw.unsqueeze(0).unwrap().broadcast_as((p, p)).unwrap();
    let pair = Tensor::stack(&[a, b], 2).unwrap().log_sum_exp(2).unwrap().affine(1.0, -(2f64).ln()).unwrap();
    let q = lq.exp().unwrap();
    let qq = q.unsqueeze(1).unwrap().broadcast_mul(&q.unsqueeze(0).unwrap()).unwrap();
    qq.mul(&pair).unwrap().sum_all().unwrap()
}

/// Mean and standard error over `reps` independent batch gradients of the estimator, each the
/// mean of `copies` single-word estimates.
fn estimator_gradients(
    ps: &ParamStore,
    m: &Transducer,
    est: &MonotonicEstimator,
    state: &MonotonicState,
    copies: usize,
    reps: usize,
    seed: u64,
) -> (Vec<f64>, Vec<f64>) {
    let (letters, labels) = words();
    let batch = batch_of(&letters, &labels, copies);
    let vars = model_vars(ps);
    let mut rng = SeededRng::new(seed);
    let mut draws = vec![];
    for _ in 0..reps {
        let (scores, _) = m.score_paths(&batch, est.samples(), PathChoice::Sample(&mut rng)).unwrap();
        let base = match est {
            MonotonicEstimator::Reinforce { .. } => Some(m.baseline_per_label(&batch, false).unwrap()),
            MonotonicEstimator::Nvil { .. } => Some(m.baseline_per_label(&batch, true).unwrap()),
            _ => None,
        };
        let mut st = state.clone();
        let e = monotonic_estimate(est, &scores, base.as_ref(), &mut st, false, 0.0).unwrap();
        assert_eq!(&st, state, "update_state = false changed the state");
        draws.push(flat_grad(&e.estimate.loss, &vars));
    }
    let n = reps as f64;
    let dim = draws[0].len();
    let mean: Vec<f64> = (0..dim).map(|c| draws.iter().map(|d| d[c]).sum::<f64>() / n).collect();
    let se: Vec<f64> = (0..dim)
        .map(|c| (draws.iter().map(|d| (d[c] - mean[c]).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt())
        .collect();
    (mean, se)
}

/// The exact gradient of the per-label loss -(Σ_words objective) / Σ T for the two words.
fn exact_gradient(ps: &ParamStore, m: &Transducer, objective: impl Fn(&Transducer, &[u32], &[u32]) -> Tensor) -> Vec<f64> {
    let (letters, labels) = words();
    let total: usize = labels.iter().map(Vec::len).sum();
    let mut sum = objective(m, &letters[0], &labels[0]);
    for i in 1..letters.len() {
        sum = (sum + objective(m, &letters[i], &labels[i])).unwrap();
    }
    flat_grad(&(sum.neg().unwrap() / total as f64).unwrap(), &model_vars(ps))
}

/// z-scores (mean - exact) / se of the coordinates with a nonzero standard error; coordinates
/// the estimator never moves must have an exact gradient of (numerically) zero.
fn z_scores(mean: &[f64], se: &[f64], exact: &[f64]) -> Vec<f64> {
    let mut z = vec![];
    for ((m, s), e) in mean.iter().zip(se).zip(exact) {
        if *s < 1e-10 {
            assert!((m - e).abs() < 1e-6, "a deterministic coordinate differs: {m} vs exact {e}");
        } else {
            z.push((m - e) / s);
        }
    }
    z
}

fn assert_unbiased(what: &str, z: &[f64]) {
    let max = z.iter().fold(0f64, |a, b| a.max(b.abs()));
    println!("{what}: {} coordinates, max |z| {max:.2}", z.len());
    assert!(z.len() > 100, "{what}: only {} coordinates compared", z.len());
    // |z| > 5.5 has probability ~1e-6 per coordinate for an unbiased estimator (t with 59 dof).
    // The coordinates are strongly correlated (the noise comes from which of the few alignments
    // were drawn), which makes the maximum only less likely to be large.
    assert!(max < 5.5, "{what}: max |z| = {max}");
}

const COPIES: usize = 150;
const REPS: usize = 60;

#[test]
fn q_is_a_distribution_over_the_alignments_and_forcing_holds() {
    let (_, m) = tiny(1);
    // Σ_{b ∈ A(S, T)} q(b) = 1 for several (S, T)
    for (letters, labels) in [(vec![1u32, 2, 3, 4, 5], vec![0u32, 1, 2]), (vec![7, 8, 9, 10, 11, 12], vec![4]), (vec![5, 6, 7], vec![1, 2, 3])] {
        let (_, lq) = enumerate_word(&m, &letters, &labels);
        let total: f64 = lq.exp().unwrap().sum_all().unwrap().to_dtype(DType::F64).unwrap().to_scalar().unwrap();
        assert!((total - 1.0).abs() < 1e-5, "S = {}, T = {}: Σ q = {total}", letters.len(), labels.len());
    }
    // sampled decisions: exactly T emissions, forced steps carry no log q, padding nothing
    let letters = vec![vec![1u32, 2, 3, 4, 5, 6, 7], vec![8, 9, 10], vec![11, 12, 13, 14, 15, 16], vec![1, 1, 1, 1]];
    let labels = vec![vec![0u32, 1, 2], vec![3, 4, 0], vec![1], vec![2, 2]];
    let batch = TransducerBatch::new(&letters, &labels, &Device::Cpu).unwrap();
    let k = 300;
    let (scores, dec) = m.score_paths(&batch, k, PathChoice::Sample(&mut SeededRng::new(5))).unwrap();
    let lq = scores.log_q.to_vec3::<f32>().unwrap();
    let free = scores.free.to_vec3::<f32>().unwrap();
    let lp = scores.log_p.to_vec3::<f32>().unwrap();
    let mut first_emit_seen = [false; 2];
    for kk in 0..k {
        for (w, (xs, ys)) in letters.iter().zip(&labels).enumerate() {
            let d = &dec[kk][w];
            let (s, t) = (xs.len(), ys.len());
            assert_eq!(d.iter().map(|&x| x as usize).sum::<usize>(), t, "sample {kk} word {w}: {d:?}");
            let mut n = 0;
            for i in 0..d.len() {
                if i >= s {
                    assert_eq!((d[i], lq[kk][w][i], lp[kk][w][i], free[kk][w][i]), (0, 0.0, 0.0, 0.0), "padding step {i} of word {w}");
                    continue;
                }
                let forced_emit = s - i == t - n;
                let forced_skip = n == t;
                if forced_emit {
                    assert_eq!(d[i], 1, "word {w} sample {kk}: emission forced at step {i}");
                }
                if forced_skip {
                    assert_eq!(d[i], 0, "word {w} sample {kk}: non-emission forced at step {i}");
                }
                let forced = forced_emit || forced_skip;
                assert_eq!(free[kk][w][i], if forced { 0.0 } else { 1.0 });
                if forced {
                    assert_eq!(lq[kk][w][i], 0.0);
                } else {
                    assert!(lq[kk][w][i] < 0.0);
                }
                if w < 2 && i == 0 {
                    first_emit_seen[d[0] as usize] = true;
                }
                n += d[i] as usize;
            }
        }
    }
    // where q is free, both decisions occur
    assert!(first_emit_seen[0] && first_emit_seen[1]);
    // word 1 has S = T: every step forced, log q = 0
    assert!(lq.iter().all(|k| k[1].iter().all(|&x| x == 0.0)));
    // given decisions outside A(S, T) are rejected, naming the step
    let bad = vec![vec![vec![1u8, 1, 1, 1, 0, 0, 0], vec![1, 1, 1], vec![1, 0, 0, 0, 0, 0], vec![1, 1, 0, 0]]];
    let e = m.score_paths(&batch, 1, PathChoice::Given(&bad)).unwrap_err().to_string();
    assert!(e.contains("word 0") && e.contains("step 3"), "{e}");
    // more labels than letters is an error
    let b = TransducerBatch::new(&[vec![1, 2]], &[vec![0, 1, 2]], &Device::Cpu).unwrap();
    assert!(m.score_paths(&b, 1, PathChoice::Sample(&mut SeededRng::new(0))).is_err());
}

#[test]
fn single_sample_estimators_are_unbiased_for_the_elbo() {
    let (ps, m) = tiny(7);
    let exact = exact_gradient(&ps, &m, exact_elbo);
    // NVIL with frozen moments: centre 1.3, scale max(1, σ) = 1 (σ = 0.5)
    let nvil_state = MonotonicState { moments: RunningMoments { mean: Some(1.3), var: Some(0.25) }, ..Default::default() };
    for (what, est, state) in [
        ("reinforce", MonotonicEstimator::Reinforce { samples: 1 }, MonotonicState::default()),
        ("nvil", MonotonicEstimator::Nvil { samples: 1, moments_decay: 0.8 }, nvil_state),
        ("vimco-per-step", MonotonicEstimator::VimcoPerStep { samples: 3 }, MonotonicState::default()),
    ] {
        let (mean, se) = estimator_gradients(&ps, &m, &est, &state, COPIES, REPS, 11);
        assert_unbiased(what, &z_scores(&mean, &se, &exact));
    }
}

#[test]
fn vimco_is_unbiased_for_the_k_sample_bound_and_not_for_the_elbo() {
    let (ps, m) = tiny(9);
    let exact = exact_gradient(&ps, &m, exact_vimco2);
    let (mean, se) = estimator_gradients(&ps, &m, &MonotonicEstimator::Vimco { samples: 2 }, &MonotonicState::default(), COPIES, REPS, 13);
    assert_unbiased("vimco K = 2", &z_scores(&mean, &se, &exact));
    // the same comparison can fail: against the ELBO's gradient the estimate is far off
    let elbo = exact_gradient(&ps, &m, exact_elbo);
    let z = z_scores(&mean, &se, &elbo);
    let max = z.iter().fold(0f64, |a, b| a.max(b.abs()));
    assert!(max > 8.0, "VIMCO's gradient is indistinguishable from the ELBO's (max |z| {max})");
}

/// E[L_K] by enumerating all P^K tuples of alignments, from log w and log q of the P alignments.
fn exact_expected_bound(lw: &[f64], lq: &[f64], k: usize) -> f64 {
    let p = lw.len();
    let mut total = 0.0;
    let mut idx = vec![0usize; k];
    loop {
        let log_prob: f64 = idx.iter().map(|&i| lq[i]).sum();
        let m = idx.iter().map(|&i| lw[i]).fold(f64::NEG_INFINITY, f64::max);
        let lse = m + idx.iter().map(|&i| (lw[i] - m).exp()).sum::<f64>().ln() - (k as f64).ln();
        total += log_prob.exp() * lse;
        let mut j = 0;
        loop {
            if j == k {
                return total;
            }
            idx[j] += 1;
            if idx[j] < p {
                break;
            }
            idx[j] = 0;
            j += 1;
        }
    }
}

#[test]
fn vimco_bound_increases_with_k_below_the_log_marginal() {
    let (_, m) = tiny(3);
    let letters = vec![3u32, 1, 20, 5, 9];
    let labels = vec![0u32, 3];
    let (lp, lq) = enumerate_word(&m, &letters, &labels);
    let lp: Vec<f64> = lp.to_dtype(DType::F64).unwrap().to_vec1().unwrap();
    let lq: Vec<f64> = lq.to_dtype(DType::F64).unwrap().to_vec1().unwrap();
    let lw: Vec<f64> = lp.iter().zip(&lq).map(|(a, b)| a - b).collect();
    let mx = lp.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let log_marginal = mx + lp.iter().map(|x| (x - mx).exp()).sum::<f64>().ln();
    let bounds: Vec<f64> = (1..=4).map(|k| exact_expected_bound(&lw, &lq, k)).collect();
    println!("log p(y|x) = {log_marginal:.5}, E[L_K] K=1..4: {bounds:?}");
    for w in bounds.windows(2) {
        assert!(w[0] < w[1], "E[L_K] must increase with K: {bounds:?}");
    }
    assert!(bounds[3] < log_marginal, "{bounds:?} vs {log_marginal}");
    // q is not the posterior here, so the bound is not tight
    assert!(log_marginal - bounds[0] > 1e-3);
    // the estimator's reported bound is an unbiased estimate of E[L_K] (K = 3)
    let copies = 4000;
    let batch = batch_of(std::slice::from_ref(&letters), std::slice::from_ref(&labels), copies);
    let (scores, _) = m.score_paths(&batch, 3, PathChoice::Sample(&mut SeededRng::new(21))).unwrap();
    let e = monotonic_estimate(&MonotonicEstimator::Vimco { samples: 3 }, &scores, None, &mut MonotonicState::default(), false, 0.0).unwrap();
    let mean = e.estimate.metrics.objective_sum / copies as f64;
    let lw_t = (scores.log_p.sum(D::Minus1).unwrap() - scores.log_q.sum(D::Minus1).unwrap()).unwrap();
    let per_word: Vec<f64> = (lw_t.log_sum_exp(0).unwrap() - 3f64.ln()).unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap();
    let sd = (per_word.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (copies as f64 - 1.0)).sqrt();
    let se = sd / (copies as f64).sqrt();
    assert!((mean - bounds[2]).abs() < 4.0 * se, "Monte Carlo L_3 {mean} vs exact {} (se {se})", bounds[2]);
    // and the ELBO reported by the single-sample estimators is E[L_1]
    let e = monotonic_estimate(&MonotonicEstimator::VimcoPerStep { samples: 3 }, &scores, None, &mut MonotonicState::default(), false, 0.0).unwrap();
    let elbo_mc = e.estimate.metrics.objective_sum / copies as f64;
    assert!((elbo_mc - bounds[0]).abs() < 0.05 * bounds[0].abs().max(1.0), "{elbo_mc} vs {}", bounds[0]);
}

#[test]
fn state_updates_and_entropy_bonus_move_only_what_they_should() {
    let (ps, m) = tiny(4);
    let (letters, labels) = words();
    let batch = batch_of(&letters, &labels, 8);
    let (scores, _) = m.score_paths(&batch, 2, PathChoice::Sample(&mut SeededRng::new(1))).unwrap();
    let nvil = MonotonicEstimator::Nvil { samples: 2, moments_decay: 0.8 };
    let base = m.baseline_per_label(&batch, true).unwrap();
    let mut st = MonotonicState::default();
    let e = monotonic_estimate(&nvil, &scores, Some(&base), &mut st, true, 0.0).unwrap();
    assert_eq!(st.steps, 1);
    assert!(st.moments.mean.is_some() && st.signal_count == 32.0 && e.signals.len() == 32);
    // the entropy bonus changes q's gradient and leaves p's alone
    let vars = model_vars(&ps);
    let g0 = flat_grad(&e.estimate.loss, &vars);
    let e1 = monotonic_estimate(&nvil, &scores, Some(&base), &mut MonotonicState::default(), false, 0.5).unwrap();
    let g1 = flat_grad(&e1.estimate.loss, &vars);
    let mut offset = 0;
    for (name, v) in &vars {
        let n = v.as_tensor().elem_count();
        let differs = (offset..offset + n).any(|c| (g0[c] - g1[c]).abs() > 1e-9);
        if name.starts_with("p.") {
            assert!(!differs, "{name}: the entropy bonus reached the generative model");
        }
        offset += n;
    }
    assert!(g0.iter().zip(&g1).any(|(a, b)| (a - b).abs() > 1e-6), "the entropy bonus changed nothing");
    // the estimators need their baselines
    assert!(monotonic_estimate(&MonotonicEstimator::Reinforce { samples: 2 }, &scores, None, &mut st, false, 0.0).is_err());
}
