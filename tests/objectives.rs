//! Objectives: Jensen inequalities, finite-difference gradients of the differentiable
//! surrogates, and unbiasedness of the sampled estimators against enumeration.
mod common;
use candle_core::{Tensor, Var, D};
use common::*;
use varattn::distributions::{Categorical, Dirichlet, Distribution, Positivity};
use varattn::objective::*;
use varattn::rng::SeededRng;

fn row(x: &[f64]) -> Tensor {
    Tensor::new(x, &cpu()).unwrap().unsqueeze(0).unwrap()
}

/// log f at sampled indices `z [K, N]` from per-alignment values `[S]` shared by all N tokens.
fn gather_shared(log_f: &Tensor, z: &Tensor) -> candle_core::Result<Tensor> {
    let (k, n) = z.dims2()?;
    let s = log_f.dim(D::Minus1)?;
    log_f.reshape((1, 1, s))?.broadcast_as((k, n, s))?.contiguous()?
        .gather(&z.unsqueeze(D::Minus1)?.contiguous()?, D::Minus1)?.squeeze(D::Minus1)
}

fn grads(loss: &Tensor, vars: &[&Var]) -> Vec<Vec<f64>> {
    let g = loss.backward().unwrap();
    vars.iter().map(|v| to_f64s(g.get(v).expect("no gradient"))).collect()
}

fn assert_close(a: &[Vec<f64>], b: &[Vec<f64>], tol: f64, what: &str) {
    for (va, vb) in a.iter().zip(b) {
        for (x, y) in va.iter().zip(vb) {
            assert!((x - y).abs() < tol, "{what}: estimated {va:?} vs reference {vb:?}");
        }
    }
}

const PRIOR: [f64; 4] = [0.3, -0.4, 1.1, 0.0];
const POST: [f64; 4] = [-0.5, 0.9, 0.2, 0.4];
const LOG_F: [f64; 4] = [-0.3, -2.2, -1.0, -0.6];

#[test]
fn jensen_bounds_hold_and_elbo_is_tight_at_the_true_posterior() {
    let mut rng = SeededRng::new(0);
    for _ in 0..50 {
        let s = 2 + rng.next_index(6);
        let draw = |rng: &mut SeededRng, scale: f64| -> Vec<f64> { (0..s).map(|_| scale * rng.next_normal()).collect() };
        let lp = draw(&mut rng, 2.0);
        let lq = draw(&mut rng, 2.0);
        let lf: Vec<f64> = draw(&mut rng, 1.5).iter().map(|x| -x.abs()).collect();
        let prior = Categorical::from_logits(&row(&lp), None).unwrap();
        let q = Categorical::from_logits(&row(&lq), None).unwrap();
        let log_f = row(&lf);
        let exact = exact_marginal(&prior, &log_f, None).unwrap().metrics.objective_sum;
        let hard = hard_enum(&prior, &log_f, None).unwrap().metrics.objective_sum;
        let elbo = variational_enum(&prior, &q, &log_f, None).unwrap().metrics.objective_sum;
        assert!(hard <= exact + 1e-12, "hard-enum {hard} > exact {exact}");
        assert!(elbo <= exact + 1e-12, "ELBO {elbo} > exact {exact}");
        // the true posterior p(z | y) ∝ p_i f_i makes the ELBO exact
        let post_logits = (prior.log_probs() + &log_f).unwrap();
        let post = Categorical::from_logits(&post_logits, None).unwrap();
        let tight = variational_enum(&prior, &post, &log_f, None).unwrap().metrics.objective_sum;
        assert!((tight - exact).abs() < 1e-10, "ELBO at true posterior {tight} vs exact {exact}");
    }
}

#[test]
fn enumerated_surrogates_match_finite_differences() {
    // parameters: [prior logits (4) | posterior logits (4) | log f (4)], two tokens, one masked
    let x0: Vec<f64> = PRIOR.iter().chain(&POST).chain(&LOG_F).cloned().collect();
    let mask = Tensor::new(&[1.0f64, 0.0], &cpu()).unwrap();
    let unpack = |x: &Tensor| {
        let two = |t: Tensor| Tensor::stack(&[t.clone(), (t * 0.5).unwrap()], 0).unwrap();
        (two(x.narrow(0, 0, 4).unwrap()), two(x.narrow(0, 4, 4).unwrap()), two(x.narrow(0, 8, 4).unwrap()))
    };
    type Obj = fn(&Categorical, &Categorical, &Tensor, Option<&Tensor>) -> candle_core::Result<Estimate>;
    let objectives: [(&str, Obj); 4] = [
        ("exact", |p, _, f, m| exact_marginal(p, f, m)),
        ("hard-enum", |p, _, f, m| hard_enum(p, f, m)),
        ("var-enum", |p, q, f, m| variational_enum(p, q, f, m)),
        ("soft", |p, _, f, m| soft(p, &p.probs()?.mul(f)?.sum(D::Minus1)?, m)),
    ];
    for (name, obj) in objectives {
        check_gradient(&x0, |x| {
            let (lp, lq, lf) = unpack(x);
            let p = Categorical::from_logits(&lp, None)?;
            let q = Categorical::from_logits(&lq, None)?;
            Ok(obj(&p, &q, &lf, Some(&mask))?.loss)
        }, 1e-6, 1e-7);
        let _ = name;
    }
    // K-Max (K = 2 of 4; no ties, so the top-K set is locally constant)
    check_gradient(&x0, |x| {
        let (lp, _, lf) = unpack(x);
        let p = Categorical::from_logits(&lp, None)?;
        Ok(kmax_marginal_masked(&p, 2, |idx| lf.gather(idx, D::Minus1), Some(&mask))?.loss)
    }, 1e-6, 1e-7);
}

#[test]
fn token_mask_excludes_padded_steps() {
    let prior = Categorical::from_logits(&Tensor::new(&[PRIOR, POST], &cpu()).unwrap(), None).unwrap();
    let log_f = Tensor::new(&[LOG_F, [-5.0, -6.0, -7.0, -8.0]], &cpu()).unwrap();
    let mask = Tensor::new(&[1.0f64, 0.0], &cpu()).unwrap();
    let masked = exact_marginal(&prior, &log_f, Some(&mask)).unwrap();
    let first = exact_marginal(&Categorical::from_logits(&row(&PRIOR), None).unwrap(), &row(&LOG_F), None).unwrap();
    assert_eq!(masked.metrics.tokens, 1.0);
    assert!((scalar(&masked.loss) - scalar(&first.loss)).abs() < 1e-12);
    assert!((masked.metrics.nll_sum.unwrap() - first.metrics.nll_sum.unwrap()).abs() < 1e-12);
}

#[test]
fn kmax_with_all_positions_is_exact_and_only_asks_for_k_values() {
    let prior = Categorical::from_logits(&row(&PRIOR), None).unwrap();
    let log_f = row(&LOG_F);
    let exact = exact_marginal(&prior, &log_f, None).unwrap().metrics.nll_sum.unwrap();
    let full = kmax_marginal(&prior, 4, |i| log_f.gather(i, D::Minus1)).unwrap().metrics.nll_sum.unwrap();
    assert!((full - exact).abs() < 1e-12);
    let k1 = kmax_marginal(&prior, 1, |i| {
        assert_eq!(i.dims(), &[1, 1]);
        assert_eq!(i.flatten_all()?.to_vec1::<u32>()?, vec![2]); // argmax of the prior
        log_f.gather(i, D::Minus1)
    }).unwrap();
    // with K = 1 the K-Max model is f at the prior's mode
    assert!((k1.metrics.nll_sum.unwrap() - 1.0).abs() < 1e-12);
}

/// Gradients of the sampled estimators averaged over many seeded samples (N tokens sharing the
/// same parameters) against the exact gradient of the objective they estimate.
struct Problem {
    prior: Var,
    post: Var,
    log_f: Var,
}

impl Problem {
    fn new() -> Self {
        Problem { prior: var(&PRIOR), post: var(&POST), log_f: var(&LOG_F) }
    }
    fn cats(&self, n: usize) -> (Categorical, Categorical) {
        let b = |v: &Var| v.as_tensor().unsqueeze(0).unwrap().broadcast_as((n, 4)).unwrap();
        (Categorical::from_logits(&b(&self.prior), None).unwrap(), Categorical::from_logits(&b(&self.post), None).unwrap())
    }
    fn vars(&self) -> [&Var; 3] {
        [&self.prior, &self.post, &self.log_f]
    }
    fn enum_grads(&self, f: impl Fn(&Categorical, &Categorical, &Tensor) -> Estimate) -> Vec<Vec<f64>> {
        let (p, q) = self.cats(1);
        let lf = self.log_f.as_tensor().unsqueeze(0).unwrap();
        let loss = f(&p, &q, &lf).loss;
        let g = loss.backward().unwrap();
        self.vars().iter().map(|v| g.get(v).map(to_f64s).unwrap_or_else(|| vec![0.0; 4])).collect()
    }
    fn sampled_grads(&self, est: Estimate) -> Vec<Vec<f64>> {
        let g = est.loss.backward().unwrap();
        self.vars().iter().map(|v| g.get(v).map(to_f64s).unwrap_or_else(|| vec![0.0; 4])).collect()
    }
}

#[test]
fn reinforce_for_hard_attention_is_unbiased() {
    let n = 100_000;
    let pb = Problem::new();
    let reference = pb.enum_grads(|p, _, f| hard_enum(p, f, None).unwrap());
    let (p, _) = pb.cats(n);
    let lf = pb.log_f.as_tensor().clone();
    let soft_score = Tensor::full(-0.9f64, n, &cpu()).unwrap();
    for (name, baseline, k) in [
        ("soft baseline", Baseline::Soft(&soft_score), 1),
        ("no baseline", Baseline::None, 1),
        ("leave-one-out", Baseline::LeaveOneOut, 3),
    ] {
        let est = hard_sample(&p, |z| gather_shared(&lf, z), k, baseline, &mut SeededRng::new(21), None).unwrap();
        let got = pb.sampled_grads(est);
        assert_close(&got, &reference, 0.01, name);
    }
    let mut ma = MovingAverage::new(0.9);
    let est = hard_sample(&p, |z| gather_shared(&lf, z), 1, Baseline::MovingAverage(&mut ma), &mut SeededRng::new(22), None).unwrap();
    assert_close(&pb.sampled_grads(est), &reference, 0.01, "moving average");
    assert!(ma.value.is_some());
}

#[test]
fn reinforce_for_variational_attention_is_unbiased() {
    let n = 100_000;
    let pb = Problem::new();
    let reference = pb.enum_grads(|p, q, f| variational_enum(p, q, f, None).unwrap());
    let (p, q) = pb.cats(n);
    let lf = pb.log_f.as_tensor().clone();
    let soft_score = Tensor::full(-0.9f64, n, &cpu()).unwrap();
    let est = variational_sample(&p, &q, |z| gather_shared(&lf, z), 1, Baseline::Soft(&soft_score), &mut SeededRng::new(31), None).unwrap();
    assert_close(&pb.sampled_grads(est), &reference, 0.01, "var-sample");
}

#[test]
fn vimco_gradient_is_unbiased_for_the_k_sample_bound() {
    // E_{z1,z2 ~ q}[log ½(w(z1) + w(z2))] enumerated over all S² pairs.
    let pb = Problem::new();
    let (p1, q1) = pb.cats(1);
    let lf = pb.log_f.as_tensor().clone();
    let log_w = ((p1.log_probs().squeeze(0).unwrap() + &lf).unwrap() - q1.log_probs().squeeze(0).unwrap()).unwrap();
    let qp = q1.probs().unwrap().squeeze(0).unwrap();
    let s = 4;
    let a = log_w.unsqueeze(1).unwrap().broadcast_as((s, s)).unwrap();
    let b = log_w.unsqueeze(0).unwrap().broadcast_as((s, s)).unwrap();
    let pair_bound = (Tensor::stack(&[a, b], 0).unwrap().log_sum_exp(0).unwrap() - 2f64.ln()).unwrap();
    let weights = qp.unsqueeze(1).unwrap().broadcast_mul(&qp.unsqueeze(0).unwrap()).unwrap();
    let expected_bound = weights.mul(&pair_bound).unwrap().sum_all().unwrap().neg().unwrap();
    let reference = grads(&expected_bound, &pb.vars());
    let n = 200_000;
    let (p, q) = pb.cats(n);
    let est = vimco(&p, Some(&q), |z| gather_shared(&lf, z), 2, &mut SeededRng::new(41), None).unwrap();
    assert_close(&pb.sampled_grads(est), &reference, 0.012, "vimco");
}

#[test]
fn vimco_signals_match_a_direct_computation() {
    let lw = [-1.0f64, -0.2, -3.5, -0.7];
    let t = Tensor::new(&lw, &cpu()).unwrap().unsqueeze(1).unwrap();
    let (bound, signal) = vimco_learning_signals(&t).unwrap();
    let k = lw.len() as f64;
    let l = (lw.iter().map(|x| x.exp()).sum::<f64>() / k).ln();
    assert!((to_f64s(&bound)[0] - l).abs() < 1e-12);
    let sig = to_f64s(&signal);
    for (j, s) in sig.iter().enumerate() {
        let others: Vec<f64> = lw.iter().enumerate().filter(|(i, _)| *i != j).map(|(_, x)| *x).collect();
        let geo = others.iter().sum::<f64>() / (k - 1.0);
        let lj = ((others.iter().map(|x| x.exp()).sum::<f64>() + geo.exp()) / k).ln();
        assert!((s - (l - lj)).abs() < 1e-12);
    }
    assert!(vimco_learning_signals(&Tensor::new(&[[0.0f64]], &cpu()).unwrap()).is_err());
}

#[test]
fn rws_with_many_samples_approaches_the_marginal_and_posterior_gradients() {
    let pb = Problem::new();
    let k = 4000;
    let n = 25;
    let (p, q) = pb.cats(n);
    let lf = pb.log_f.as_tensor().clone();
    let est = rws(&p, &q, |z| gather_shared(&lf, z), k, &mut SeededRng::new(51), None).unwrap();
    let got = pb.sampled_grads(est);
    // p and f: the wake gradient tends to ∇ log p(y) (self-normalised, consistent as K → ∞)
    let exact = pb.enum_grads(|p, _, f| exact_marginal(p, f, None).unwrap());
    assert_close(&[got[0].clone(), got[2].clone()], &[exact[0].clone(), exact[2].clone()], 0.01, "rws wake-p");
    // q: tends to ∇_q Σ_i p(z=i | y) log q_i with the true posterior held fixed
    let (p1, q1) = pb.cats(1);
    let post = candle_nn::ops::softmax(&(p1.log_probs() + pb.log_f.as_tensor().unsqueeze(0).unwrap()).unwrap(), D::Minus1).unwrap().detach();
    let target = post.mul(q1.log_probs()).unwrap().sum_all().unwrap().neg().unwrap();
    let want = grads(&target, &[&pb.post]);
    assert_close(&[got[1].clone()], &want, 0.01, "rws wake-q");
}

/// The RWS gradient for given samples is the authors' estimator (harvardnlp/var-attn, `wsram`):
/// ∇_f = Σ_k w̃_k ∇ log f(z_k), ∇_p = Σ_k (w̃_k - b^p_k) ∇ log p(z_k) with b^p the normalised
/// ratios p/q, ∇_q = Σ_k (w̃_k - 1/K) ∇ log q(z_k), here written out by hand for softmax logits
/// (∇_l log softmax(l)_z = e_z - softmax(l)).
#[test]
fn rws_gradient_is_the_authors_estimator_with_both_control_variates() {
    let pb = Problem::new();
    let (p, q) = pb.cats(1);
    let lf = pb.log_f.as_tensor().clone();
    let k = 6;
    let seed = 61;
    let est = rws(&p, &q, |z| gather_shared(&lf, z), k, &mut SeededRng::new(seed), None).unwrap();
    let got = pb.sampled_grads(est);
    // the same draws, from the same generator state
    let z: Vec<usize> = to_f64s(&q.sample_n(k, &mut SeededRng::new(seed)).unwrap().to_dtype(candle_core::DType::F64).unwrap())
        .iter()
        .map(|&x| x as usize)
        .collect();
    let softmax = |l: &[f64]| -> Vec<f64> {
        let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = l.iter().map(|x| (x - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    };
    let (pp, qq) = (softmax(&PRIOR), softmax(&POST));
    let log_ratio: Vec<f64> = z.iter().map(|&i| pp[i].ln() - qq[i].ln()).collect();
    let w = softmax(&log_ratio.iter().zip(&z).map(|(r, &i)| r + LOG_F[i]).collect::<Vec<_>>());
    let bp = softmax(&log_ratio);
    let mut want = vec![vec![0.0; 4]; 3];
    for (j, &i) in z.iter().enumerate() {
        for s in 0..4 {
            let hit = if s == i { 1.0 } else { 0.0 };
            // the loss is minus the surrogate (one token)
            want[0][s] -= (w[j] - bp[j]) * (hit - pp[s]);
            want[1][s] -= (w[j] - 1.0 / k as f64) * (hit - qq[s]);
            want[2][s] -= w[j] * hit;
        }
    }
    assert_close(&got, &want, 1e-9, "rws gradient for given samples");
    // the plain wake gradients (no control variates) differ on these draws
    let plain_p: Vec<f64> = (0..4).map(|s| -z.iter().enumerate().map(|(j, &i)| w[j] * ((s == i) as u8 as f64 - pp[s])).sum::<f64>()).collect();
    assert!(plain_p.iter().zip(&got[0]).any(|(a, b)| (a - b).abs() > 1e-3), "the p control variate changed nothing");
}

/// Neither RWS nor VIMCO has a separate KL term in its loss (the authors' RWS loss has none; the
/// VIMCO bound holds KL implicitly), so a KL weight (warm-up) must leave their loss unchanged.
#[test]
fn kl_weight_does_not_leak_into_multi_sample_losses() {
    let pb = Problem::new();
    let (p, q) = pb.cats(3);
    let lf = pb.log_f.as_tensor().clone();
    let ests = [
        ("rws", rws(&p, &q, |z| gather_shared(&lf, z), 4, &mut SeededRng::new(7), None).unwrap()),
        ("vimco", vimco(&p, Some(&q), |z| gather_shared(&lf, z), 4, &mut SeededRng::new(7), None).unwrap()),
    ];
    for (name, est) in ests {
        assert!(est.metrics.kl_sum.unwrap() > 0.0, "{name}: KL still reported");
        let base = pb.sampled_grads(Estimate { loss: est.loss_with_kl_weight(1.0).unwrap(), ..est.clone() });
        for w in [0.0, 0.3, 2.0] {
            let loss = est.loss_with_kl_weight(w).unwrap();
            assert_eq!(scalar(&loss), scalar(&est.loss), "{name}: KL weight {w} changed the loss");
            let g = pb.sampled_grads(Estimate { loss, ..est.clone() });
            assert_close(&g, &base, 1e-12, name);
        }
    }
    // a variational objective with an explicit KL term does scale it
    let ve = variational_enum(&p, &q, &lf.unsqueeze(0).unwrap().broadcast_as((3, 4)).unwrap(), None).unwrap();
    let kl_mean = ve.metrics.kl_sum.unwrap() / ve.metrics.tokens;
    assert!((scalar(&ve.loss_with_kl_weight(0.5).unwrap()) - (scalar(&ve.loss) - 0.5 * kl_mean)).abs() < 1e-9);
}

/// The relaxed row's test bound on a toy with a closed form: f(x, z) = z_1, so
/// log p(y) = log E_{Dir(a_p)}[z_1] = log(a_1 / a_0). Averaged over many tokens, L_K stays below
/// it, rises with K, and comes close at large K; with q = p it is the plain Monte Carlo marginal
/// log 1/K Σ_k f(z_k), z_k ~ p, for the very draws the generator gives.
#[test]
fn relaxed_importance_weighted_bound_against_a_closed_form() {
    let n = 2000;
    let rows = |a: &[f64]| Tensor::new(a, &cpu()).unwrap().unsqueeze(0).unwrap().broadcast_as((n, 3)).unwrap().contiguous().unwrap();
    let a_p = [2.0, 1.0, 3.0];
    let p = Dirichlet::new(rows(&a_p), None).unwrap();
    let q = Dirichlet::new(rows(&[3.5, 1.5, 2.5]), None).unwrap();
    let f = |z: &Tensor| z.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?.log();
    let truth = (a_p[0] / a_p.iter().sum::<f64>()).ln();
    let mean_bound = |k: usize, seed: u64| -> f64 {
        let est = relaxed_iw_bound(&p, &q, f, k, &mut SeededRng::new(seed), None).unwrap();
        -est.metrics.nll_sum.unwrap() / est.metrics.tokens
    };
    let (b1, b8, b128) = (mean_bound(1, 3), mean_bound(8, 4), mean_bound(128, 5));
    assert!(b1 < b8 && b8 < b128, "bound does not rise with K: {b1}, {b8}, {b128}");
    assert!(b128 <= truth + 0.01 && b128 > truth - 0.03, "K = 128: {b128} vs log p(y) = {truth}");
    assert!(b1 < truth - 0.05, "K = 1 is the ELBO, well below log p(y): {b1} vs {truth}");
    // q = p: the plain Monte Carlo marginal of the same draws
    let small = Dirichlet::new(Tensor::new(&[[2.0f64, 1.0, 3.0], [0.5, 0.7, 0.9]], &cpu()).unwrap(), None).unwrap();
    let k = 5;
    let est = relaxed_iw_bound(&small, &small, f, k, &mut SeededRng::new(9), None).unwrap();
    let mut rng = SeededRng::new(9);
    let draws: Vec<Vec<f64>> = (0..k).map(|_| to_f64s(&small.sample(&mut rng).unwrap())).collect();
    let mc: f64 = (0..2)
        .map(|r| (draws.iter().map(|z| z[3 * r]).sum::<f64>() / k as f64).ln())
        .sum();
    assert!((-est.metrics.nll_sum.unwrap() - mc).abs() < 1e-9, "q = p: {} vs Monte Carlo {mc}", -est.metrics.nll_sum.unwrap());
    assert!(relaxed_iw_bound(&small, &small, f, 0, &mut SeededRng::new(9), None).is_err());
}

#[test]
fn gumbel_softmax_surrogate_is_differentiable_and_reproducible() {
    let x0: Vec<f64> = PRIOR.iter().chain(&POST).chain(&LOG_F).cloned().collect();
    let loss_at = |x: &Tensor, seed: u64| -> candle_core::Result<Tensor> {
        let p = Categorical::from_logits(&x.narrow(0, 0, 4)?.unsqueeze(0)?, None)?;
        let q = Categorical::from_logits(&x.narrow(0, 4, 4)?.unsqueeze(0)?, None)?;
        let lf = x.narrow(0, 8, 4)?.unsqueeze(0)?;
        Ok(gumbel_softmax(&p, &q, 0.5, |y| y.mul(&lf)?.sum(D::Minus1), &mut SeededRng::new(seed), None)?.loss)
    };
    // the same seed gives the same noise, so the surrogate is a smooth function of x
    check_gradient(&x0, |x| loss_at(x, 61), 1e-6, 1e-6);
    let x = Tensor::new(x0.as_slice(), &cpu()).unwrap();
    assert_eq!(scalar(&loss_at(&x, 61).unwrap()), scalar(&loss_at(&x, 61).unwrap()));
    assert_ne!(scalar(&loss_at(&x, 61).unwrap()), scalar(&loss_at(&x, 62).unwrap()));
}

#[test]
fn dirichlet_relaxed_gradient_is_unbiased_for_a_linear_likelihood() {
    // With log f(x, z) = Σ_i z_i c_i, E_{Dir(a)}[log f] = Σ_i c_i a_i / a_0 in closed form.
    let n = 100_000;
    let c = Tensor::new(&LOG_F, &cpu()).unwrap();
    let sq = var(&[0.2, -0.5, 0.8, 0.1]);
    let sp = var(&[0.0, 0.3, -0.2, 0.5]);
    let bcast = |v: &Var, n: usize| v.as_tensor().unsqueeze(0).unwrap().broadcast_as((n, 4)).unwrap();
    let q = Dirichlet::from_scores(&bcast(&sq, n), Positivity::Exp, None).unwrap();
    let p = Dirichlet::from_scores(&bcast(&sp, n), Positivity::Exp, None).unwrap();
    let est = variational_relaxed(&p, &q, |z| z.broadcast_mul(&c)?.sum(D::Minus1), &mut SeededRng::new(71), None).unwrap();
    let got = grads(&est.loss, &[&sq, &sp]);
    let q1 = Dirichlet::from_scores(&bcast(&sq, 1), Positivity::Exp, None).unwrap();
    let p1 = Dirichlet::from_scores(&bcast(&sp, 1), Positivity::Exp, None).unwrap();
    use varattn::distributions::{Distribution, KlDivergence};
    let exact = (q1.mean().unwrap().broadcast_mul(&c).unwrap().sum_all().unwrap() - q1.kl(&p1).unwrap().sum_all().unwrap()).unwrap().neg().unwrap();
    let want = grads(&exact, &[&sq, &sp]);
    assert_close(&got, &want, 0.01, "dirichlet rsample");
}

#[test]
fn kl_weight_rescales_only_the_kl_term() {
    let prior = Categorical::from_logits(&row(&PRIOR), None).unwrap();
    let q = Categorical::from_logits(&row(&POST), None).unwrap();
    let log_f = row(&LOG_F);
    let est = variational_enum(&prior, &q, &log_f, None).unwrap();
    let kl = est.metrics.kl_sum.unwrap();
    let full = scalar(&est.loss_with_kl_weight(1.0).unwrap());
    let none = scalar(&est.loss_with_kl_weight(0.0).unwrap());
    let half = scalar(&est.loss_with_kl_weight(0.5).unwrap());
    assert!((full - none - kl).abs() < 1e-12 && (half - none - 0.5 * kl).abs() < 1e-12);
    // objectives without a KL term are unchanged
    let ex = exact_marginal(&prior, &log_f, None).unwrap();
    assert_eq!(scalar(&ex.loss_with_kl_weight(0.0).unwrap()), scalar(&ex.loss));
}

/// A model's outputs given directly, for testing the dispatch.
struct Given {
    prior: Tensor,
    post: Tensor,
    log_f: Tensor,
}

impl AlignmentOutputs for Given {
    fn prior_scores(&self) -> &Tensor {
        &self.prior
    }
    fn posterior_scores(&self) -> Option<&Tensor> {
        Some(&self.post)
    }
    fn position_mask(&self) -> Option<&Tensor> {
        None
    }
    fn step_mask(&self) -> Option<&Tensor> {
        None
    }
    varattn::every_likelihood_capability!();
}

impl Enumerable for Given {
    fn log_f_all(&self) -> candle_core::Result<Tensor> {
        Ok(self.log_f.clone())
    }
}

impl Sampled for Given {
    fn log_f_at(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        gather_shared(&self.log_f.squeeze(0)?, z)
    }
}

impl Relaxed for Given {
    fn log_f_relaxed(&self, w: &Tensor) -> candle_core::Result<Tensor> {
        w.mul(&self.log_f)?.sum(D::Minus1)
    }
    fn log_f_soft(&self) -> candle_core::Result<Tensor> {
        self.log_f_relaxed(&candle_nn::ops::softmax(&self.prior, D::Minus1)?)
    }
}

#[test]
fn held_out_metrics_follow_the_row_kind() {
    let g = Given { prior: row(&PRIOR), post: row(&POST), log_f: row(&LOG_F) };
    let prior = Categorical::from_logits(&g.prior, None).unwrap();
    let exact = held_out_metrics(&ObjectiveKind::Exact, &g).unwrap().nll_sum.unwrap();
    assert!((exact - exact_marginal(&prior, &g.log_f, None).unwrap().metrics.nll_sum.unwrap()).abs() < 1e-12);
    // K-Max with K = 1 is f at the prior's mode (position 2: log f = -1.0); K ≥ S is exact
    let k1 = held_out_metrics(&ObjectiveKind::KMax { k: 1 }, &g).unwrap().nll_sum.unwrap();
    assert!((k1 - 1.0).abs() < 1e-12, "K-Max(1) NLL {k1}");
    let k9 = held_out_metrics(&ObjectiveKind::KMax { k: 9 }, &g).unwrap().nll_sum.unwrap();
    assert!((k9 - exact).abs() < 1e-12);
    // soft: the model's own likelihood at the prior-weighted context
    let soft_nll = held_out_metrics(&ObjectiveKind::Soft, &g).unwrap().nll_sum.unwrap();
    assert!((soft_nll + scalar(&g.log_f_soft().unwrap().sum_all().unwrap())).abs() < 1e-12);
}
