//! Distributions: closed forms against Monte Carlo with many seeded samples, densities against
//! known values and numerical integration, masking against the truncated problem.
mod common;
use candle_core::{Device, Tensor, D};
use common::*;
use varattn::distributions::*;
use varattn::rng::SeededRng;

fn t1(x: &[f64]) -> Tensor {
    Tensor::new(x, &cpu()).unwrap()
}

/// Mean and standard error of a sample.
fn mean_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (v / n).sqrt())
}

/// Monte Carlo KL(q || p) = E_q[log q(z) - log p(z)] with n draws in one batch.
fn mc_kl<Q: Distribution, P: Distribution>(q: &Q, p: &P, rng: &mut SeededRng) -> (f64, f64) {
    let z = q.sample(rng).unwrap();
    let diff = (q.log_prob(&z).unwrap() - p.log_prob(&z).unwrap()).unwrap();
    mean_se(&to_f64s(&diff))
}

#[test]
fn dirichlet_kl_matches_monte_carlo() {
    let n = 40_000;
    for (a, b) in [
        (vec![0.5, 1.0, 2.0], vec![1.0, 1.0, 1.0]),
        (vec![3.0, 0.2, 0.7, 5.0], vec![0.9, 2.0, 1.5, 0.4]),
    ] {
        let s = a.len();
        let rep = |v: &[f64]| t1(v).unsqueeze(0).unwrap().repeat((n, 1)).unwrap();
        let q = Dirichlet::new(rep(&a), None).unwrap();
        let p = Dirichlet::new(rep(&b), None).unwrap();
        let closed = to_f64s(&q.kl(&p).unwrap())[0];
        let (mc, se) = mc_kl(&q, &p, &mut SeededRng::new(1));
        assert!((closed - mc).abs() < 4.0 * se + 1e-3, "S={s}: closed {closed} vs MC {mc} ± {se}");
    }
}

#[test]
fn dirichlet_entropy_matches_monte_carlo_and_log_prob_is_normalised() {
    let n = 40_000;
    let a = [0.7, 1.5, 4.0];
    let q = Dirichlet::new(t1(&a).unsqueeze(0).unwrap().repeat((n, 1)).unwrap(), None).unwrap();
    let z = q.sample(&mut SeededRng::new(2)).unwrap();
    let (mc, se) = mean_se(&to_f64s(&q.log_prob(&z).unwrap().neg().unwrap()));
    let closed = to_f64s(&q.entropy().unwrap())[0];
    assert!((closed - mc).abs() < 4.0 * se, "entropy {closed} vs MC {mc} ± {se}");
    // Dir(1,1,1) is uniform on the 2-simplex, whose area (in the z1, z2 chart) is 1/2.
    let u = Dirichlet::new(t1(&[1.0, 1.0, 1.0]).unsqueeze(0).unwrap(), None).unwrap();
    let lp = to_f64s(&u.log_prob(&t1(&[0.2, 0.3, 0.5]).unsqueeze(0).unwrap()).unwrap())[0];
    assert!((lp - 2f64.ln()).abs() < 1e-12);
    // mean is a / a0
    let m = to_f64s(&q.mean().unwrap().get(0).unwrap());
    for (mi, ai) in m.iter().zip(a) {
        assert!((mi - ai / 6.2).abs() < 1e-12);
    }
}

#[test]
fn dirichlet_samples_have_the_right_moments() {
    let n = 50_000;
    let a = [0.3, 2.0, 5.0];
    let q = Dirichlet::new(t1(&a).unsqueeze(0).unwrap().repeat((n, 1)).unwrap(), None).unwrap();
    let z = q.sample(&mut SeededRng::new(3)).unwrap();
    let a0: f64 = a.iter().sum();
    for (i, ai) in a.iter().enumerate() {
        let zi = to_f64s(&z.narrow(1, i, 1).unwrap());
        let (m, se) = mean_se(&zi);
        assert!((m - ai / a0).abs() < 4.0 * se, "E[z_{i}] {m} vs {}", ai / a0);
    }
    let sums = to_f64s(&z.sum(D::Minus1).unwrap());
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-9));
}

#[test]
fn dirichlet_padding_equals_the_truncated_distribution() {
    let a = t1(&[0.5, 2.0, 1.5, 9.0]).unsqueeze(0).unwrap();
    let b = t1(&[1.0, 0.3, 2.5, 9.0]).unsqueeze(0).unwrap();
    let mask = t1(&[1.0, 1.0, 1.0, 0.0]).unsqueeze(0).unwrap();
    let qm = Dirichlet::new(a.clone(), Some(mask.clone())).unwrap();
    let pm = Dirichlet::new(b.clone(), Some(mask)).unwrap();
    let q3 = Dirichlet::new(a.narrow(1, 0, 3).unwrap(), None).unwrap();
    let p3 = Dirichlet::new(b.narrow(1, 0, 3).unwrap(), None).unwrap();
    let close = |x: &Tensor, y: &Tensor| (to_f64s(x)[0] - to_f64s(y)[0]).abs() < 1e-10;
    assert!(close(&qm.kl(&pm).unwrap(), &q3.kl(&p3).unwrap()));
    assert!(close(&qm.entropy().unwrap(), &q3.entropy().unwrap()));
    let z = qm.sample(&mut SeededRng::new(0)).unwrap();
    assert_eq!(to_f64s(&z)[3], 0.0, "padding got weight");
    assert!(close(&qm.log_prob(&z).unwrap(), &q3.log_prob(&z.narrow(1, 0, 3).unwrap()).unwrap()));
}

#[test]
fn weibull_gamma_kl_matches_monte_carlo() {
    let n = 60_000;
    for (k, lam, alpha, beta) in [(2.0, 0.5, 1.0, 1.0), (10.0, 0.3, 0.5, 2.0), (0.8, 1.7, 3.0, 0.7)] {
        let full = |v: f64| Tensor::full(v, n, &cpu()).unwrap();
        let q = Weibull::new(full(k), full(lam));
        let p = Gamma::new(full(alpha), full(beta));
        let closed = to_f64s(&q.kl(&p).unwrap())[0];
        let (mc, se) = mc_kl(&q, &p, &mut SeededRng::new(7));
        assert!((closed - mc).abs() < 4.0 * se + 1e-4, "k={k} λ={lam}: closed {closed} vs MC {mc} ± {se}");
        let (ment, se_h) = mean_se(&to_f64s(&q.log_prob(&q.sample(&mut SeededRng::new(8)).unwrap()).unwrap().neg().unwrap()));
        let h = to_f64s(&q.entropy().unwrap())[0];
        assert!((h - ment).abs() < 4.0 * se_h, "Weibull entropy {h} vs MC {ment}");
        let (m, se_m) = mean_se(&to_f64s(&q.sample(&mut SeededRng::new(9)).unwrap()));
        let mean = to_f64s(&q.mean().unwrap())[0];
        assert!((mean - m).abs() < 4.0 * se_m, "Weibull mean {mean} vs MC {m}");
    }
}

#[test]
fn gamma_kl_entropy_and_log_prob() {
    let n = 60_000;
    let full = |v: f64| Tensor::full(v, n, &cpu()).unwrap();
    let q = Gamma::new(full(2.5), full(1.5));
    let p = Gamma::new(full(0.8), full(0.4));
    let closed = to_f64s(&q.kl(&p).unwrap())[0];
    let (mc, se) = mc_kl(&q, &p, &mut SeededRng::new(11));
    assert!((closed - mc).abs() < 4.0 * se, "Gamma KL {closed} vs MC {mc} ± {se}");
    let h = to_f64s(&q.entropy().unwrap())[0];
    let (mh, seh) = mean_se(&to_f64s(&q.log_prob(&q.sample(&mut SeededRng::new(12)).unwrap()).unwrap().neg().unwrap()));
    assert!((h - mh).abs() < 4.0 * seh);
    // Gamma(1, β) is Exponential(β): log p(x) = ln β - β x
    let e = Gamma::new(t1(&[1.0]), t1(&[2.0]));
    assert!((to_f64s(&e.log_prob(&t1(&[0.3])).unwrap())[0] - (2f64.ln() - 0.6)).abs() < 1e-12);
}

#[test]
fn weibull_reparameterised_gradient_matches_closed_form_mean() {
    // E[S] = λ Γ(1 + 1/k): the average pathwise gradient of S w.r.t. (k, λ) over many draws
    // must match the gradient of the closed form.
    let n = 100_000;
    let k = candle_core::Var::new(&[3.0f64], &cpu()).unwrap();
    let lam = candle_core::Var::new(&[0.7f64], &cpu()).unwrap();
    let w = Weibull::new(k.as_tensor().broadcast_as(n).unwrap(), lam.as_tensor().broadcast_as(n).unwrap());
    let s = w.rsample(&mut SeededRng::new(13)).unwrap().mean_all().unwrap();
    let g = s.backward().unwrap();
    let (gk, gl) = (to_f64s(g.get(&k).unwrap())[0], to_f64s(g.get(&lam).unwrap())[0]);
    let kk = 3.0f64;
    let gamma = |x: f64| varattn::special::scalar::lgamma(x).exp();
    let dl = gamma(1.0 + 1.0 / kk);
    let dk = 0.7 * gamma(1.0 + 1.0 / kk) * varattn::special::scalar::digamma(1.0 + 1.0 / kk) * (-1.0 / (kk * kk));
    assert!((gl - dl).abs() < 0.01, "dE/dλ {gl} vs {dl}");
    assert!((gk - dk).abs() < 0.01, "dE/dk {gk} vs {dk}");
}

#[test]
fn categorical_kl_entropy_and_masking() {
    let logits = t1(&[0.3, -1.0, 2.0, 0.5]).unsqueeze(0).unwrap();
    let other = t1(&[1.0, 0.0, -0.5, 2.0]).unsqueeze(0).unwrap();
    let q = Categorical::from_logits(&logits, None).unwrap();
    let p = Categorical::from_logits(&other, None).unwrap();
    // direct computation from probabilities
    let pq = to_f64s(&q.probs().unwrap());
    let pp = to_f64s(&p.probs().unwrap());
    let kl: f64 = pq.iter().zip(&pp).map(|(a, b)| a * (a / b).ln()).sum();
    let h: f64 = -pq.iter().map(|a| a * a.ln()).sum::<f64>();
    assert!((to_f64s(&q.kl(&p).unwrap())[0] - kl).abs() < 1e-12);
    assert!((to_f64s(&q.entropy().unwrap())[0] - h).abs() < 1e-12);
    // masking the last position equals the 3-position distribution
    let mask = t1(&[1.0, 1.0, 1.0, 0.0]).unsqueeze(0).unwrap();
    let qm = Categorical::from_logits(&logits, Some(&mask)).unwrap();
    let q3 = Categorical::from_logits(&logits.narrow(1, 0, 3).unwrap(), None).unwrap();
    let pm = to_f64s(&qm.probs().unwrap());
    assert_eq!(pm[3], 0.0);
    for (a, b) in pm.iter().zip(to_f64s(&q3.probs().unwrap())) {
        assert!((a - b).abs() < 1e-12);
    }
    assert!((to_f64s(&qm.entropy().unwrap())[0] - to_f64s(&q3.entropy().unwrap())[0]).abs() < 1e-12);
    let z = qm.sample_n(5000, &mut SeededRng::new(0)).unwrap().flatten_all().unwrap().to_vec1::<u32>().unwrap();
    assert!(z.iter().all(|&i| i < 3), "a padded position was sampled");
}

#[test]
fn top_k_keeps_the_most_probable_and_renormalises() {
    let logits = t1(&[0.1, 3.0, -2.0, 1.0, 2.0]).unsqueeze(0).unwrap();
    let p = Categorical::from_logits(&logits, None).unwrap();
    let (idx, lp) = p.top_k(2).unwrap();
    assert_eq!(idx.flatten_all().unwrap().to_vec1::<u32>().unwrap(), vec![1, 4]);
    let probs = to_f64s(&lp.exp().unwrap());
    let (e3, e2) = (3f64.exp(), 2f64.exp());
    assert!((probs[0] - e3 / (e3 + e2)).abs() < 1e-12 && (probs[1] - e2 / (e3 + e2)).abs() < 1e-12);
    let r = p.restrict_to_top_k(2).unwrap();
    let rp = to_f64s(&r.probs().unwrap());
    assert!(rp[0] == 0.0 && rp[2] == 0.0 && rp[3] == 0.0);
    assert!((rp[1] - probs[0]).abs() < 1e-12);
    assert!(p.top_k(6).is_err());
}

#[test]
fn concrete_density_integrates_to_one_and_low_temperature_is_one_hot() {
    // S = 2: y = (t, 1 - t); the density over the chart t ∈ (0, 1) must integrate to 1. The
    // density has integrable end-point singularities for τ < 1, so integrate in s with
    // t = 3s² - 2s³ (dt = 6s(1 - s) ds), which makes the integrand bounded.
    let logits = t1(&[0.4, -0.3]).unsqueeze(0).unwrap();
    for tau in [0.5, 1.0, 2.0] {
        let q = RelaxedCategorical::from_logits(&logits, tau, None).unwrap();
        let m = 20_000;
        let ss: Vec<f64> = (0..m).map(|i| (i as f64 + 0.5) / m as f64).collect();
        let ys: Vec<f64> = ss.iter().flat_map(|s| {
            let t = 3.0 * s * s - 2.0 * s * s * s;
            [t, 1.0 - t]
        }).collect();
        let y = Tensor::from_vec(ys, (m, 2), &cpu()).unwrap();
        let q_rep = RelaxedCategorical::from_logits(&logits.repeat((m, 1)).unwrap(), tau, None).unwrap();
        let dens = to_f64s(&q_rep.log_prob(&y).unwrap().exp().unwrap());
        let integral: f64 = dens.iter().zip(&ss).map(|(d, s)| d * 6.0 * s * (1.0 - s)).sum::<f64>() / m as f64;
        assert!((integral - 1.0).abs() < 1e-4, "τ={tau}: ∫ density = {integral}");
        let _ = q;
    }
    // at τ = 0.01 samples are nearly one-hot and distributed as the categorical
    let n = 20_000;
    let probs = [0.2f64, 0.5, 0.3];
    let lg = t1(&probs.map(f64::ln)).unsqueeze(0).unwrap().repeat((n, 1)).unwrap();
    let y = RelaxedCategorical::from_logits(&lg, 0.01, None).unwrap().sample(&mut SeededRng::new(5)).unwrap();
    let maxes = to_f64s(&y.max(D::Minus1).unwrap());
    let near_one_hot = maxes.iter().filter(|&&m| m > 0.99).count() as f64 / n as f64;
    assert!(near_one_hot > 0.97, "only {near_one_hot} of samples near one-hot at τ=0.01");
    let arg = y.argmax(D::Minus1).unwrap().to_vec1::<u32>().unwrap();
    for (i, p) in probs.iter().enumerate() {
        let f = arg.iter().filter(|&&a| a as usize == i).count() as f64 / n as f64;
        assert!((f - p).abs() < 5.0 * (p * (1.0 - p) / n as f64).sqrt(), "argmax freq {f} vs {p}");
    }
}

#[test]
fn bernoulli_closed_forms() {
    let lq = 0.7f64;
    let lp = -1.2f64;
    let q = Bernoulli::from_logits(t1(&[lq]));
    let p = Bernoulli::from_logits(t1(&[lp]));
    let s = |l: f64| 1.0 / (1.0 + (-l).exp());
    let (a, b) = (s(lq), s(lp));
    let kl = a * (a / b).ln() + (1.0 - a) * ((1.0 - a) / (1.0 - b)).ln();
    assert!((to_f64s(&q.kl(&p).unwrap())[0] - kl).abs() < 1e-12);
    let h = -(a * a.ln() + (1.0 - a) * (1.0 - a).ln());
    assert!((to_f64s(&q.entropy().unwrap())[0] - h).abs() < 1e-12);
    assert!((to_f64s(&q.log_prob(&t1(&[1.0])).unwrap())[0] - a.ln()).abs() < 1e-12);
    assert!((to_f64s(&q.log_prob(&t1(&[0.0])).unwrap())[0] - (1.0 - a).ln()).abs() < 1e-12);
    let n = 50_000;
    let big = Bernoulli::from_logits(Tensor::full(lq, n, &Device::Cpu).unwrap());
    let (m, se) = mean_se(&to_f64s(&big.sample(&mut SeededRng::new(1)).unwrap()));
    assert!((m - a).abs() < 4.0 * se);
}

#[test]
fn same_seed_same_samples_for_every_distribution() {
    let lg = t1(&[0.1, 0.5, -0.2]).unsqueeze(0).unwrap();
    let draws = |seed: u64| {
        let mut r = SeededRng::new(seed);
        let mut v = to_f64s(&Categorical::from_logits(&lg, None).unwrap().sample_n(4, &mut r).unwrap().to_dtype(candle_core::DType::F64).unwrap());
        v.extend(to_f64s(&Dirichlet::from_scores(&lg, Positivity::Softplus, None).unwrap().sample(&mut r).unwrap()));
        v.extend(to_f64s(&RelaxedCategorical::from_logits(&lg, 0.5, None).unwrap().sample(&mut r).unwrap()));
        v.extend(to_f64s(&Weibull::with_mean(5.0, &lg.exp().unwrap()).unwrap().sample(&mut r).unwrap()));
        v.extend(to_f64s(&Bernoulli::from_logits(lg.clone()).sample(&mut r).unwrap()));
        v
    };
    assert_eq!(draws(10), draws(10));
    assert_ne!(draws(10), draws(11));
}
