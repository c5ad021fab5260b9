//! Alignment attention (AA-CT, AA-GAN, AA-OT), gradient reversal, Bayesian attention (BAM,
//! BABN) and multi-head attention: math against brute force, closed forms, Monte Carlo and
//! finite differences.
use candle_core::{DType, Tensor, Var, D};
use varattn::attention::bayesian::{bayesian_layers, kl_to_gamma, weibull_attention, BayesConfig, BayesKind, PriorConfig};
use varattn::distributions::{Distribution, Gamma, Weibull};
use varattn::nn::grad_reverse;
use varattn::objective::alignment_attention::{cosine_cost, ct_loss, gan_loss, ot_loss, sinkhorn_plan, SmallMlp};
use varattn::rng::SeededRng;

mod common;
use common::{check_gradient, cpu, scalar, to_f64s};

fn t3(data: &[f64], shape: (usize, usize, usize)) -> Tensor {
    Tensor::from_slice(data, shape, &cpu()).unwrap()
}

fn normal(rng: &mut SeededRng, shape: &[usize]) -> Tensor {
    rng.normal(shape, &cpu()).unwrap().to_dtype(DType::F64).unwrap()
}

#[test]
fn gradient_reversal_negates_the_finite_difference() {
    // f(x) = Σ sin(x_i) x_i; through the reversal the recorded gradient is -f'(x)
    let x0 = [0.3, -1.2, 2.0];
    let f = |x: &Tensor| x.sin()?.mul(x)?.sum_all();
    let x = Var::new(&x0[..], &cpu()).unwrap();
    let y = f(&grad_reverse(x.as_tensor()).unwrap()).unwrap();
    assert!((scalar(&y) - scalar(&f(x.as_tensor()).unwrap())).abs() < 1e-15, "forward is not the identity");
    let g = to_f64s(y.backward().unwrap().get(&x).unwrap());
    let h = 1e-6;
    for i in 0..3 {
        let (mut up, mut down) = (x0, x0);
        up[i] += h;
        down[i] -= h;
        let fd = (scalar(&f(&Tensor::new(&up[..], &cpu()).unwrap()).unwrap())
            - scalar(&f(&Tensor::new(&down[..], &cpu()).unwrap()).unwrap()))
            / (2.0 * h);
        assert!(fd.abs() > 1e-3, "a test point with a zero derivative proves nothing");
        assert!((g[i] + fd).abs() < 1e-7, "coordinate {i}: reversed gradient {} vs -FD {}", g[i], -fd);
    }
    // f32 and strided input
    let m = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &cpu()).unwrap().t().unwrap();
    assert_eq!(grad_reverse(&m).unwrap().to_vec2::<f32>().unwrap(), vec![vec![1.0, 3.0], vec![2.0, 4.0]]);
}

#[test]
fn sinkhorn_plan_has_the_uniform_marginals() {
    let mut rng = SeededRng::new(1);
    let cost = cosine_cost(&normal(&mut rng, &[2, 5, 3]), &normal(&mut rng, &[2, 7, 3])).unwrap();
    let plan = sinkhorn_plan(&cost, 0.1, 300).unwrap();
    for r in to_f64s(&plan.sum(2).unwrap()) {
        assert!((r - 1.0 / 5.0).abs() < 1e-6, "row marginal {r}");
    }
    for c in to_f64s(&plan.sum(1).unwrap()) {
        assert!((c - 1.0 / 7.0).abs() < 1e-12, "column marginal {c}");
    }
    assert!(to_f64s(&plan).iter().all(|&p| p >= 0.0));
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 1 {
        return vec![vec![0]];
    }
    let mut out = vec![];
    for p in permutations(n - 1) {
        for pos in 0..n {
            let mut q = p.clone();
            q.insert(pos, n - 1);
            out.push(q);
        }
    }
    out
}

#[test]
fn ot_cost_matches_the_best_assignment_as_entropy_vanishes() {
    // with n = m and uniform weights the OT plan is a permutation / n (Birkhoff)
    let mut rng = SeededRng::new(7);
    let n = 5;
    for trial in 0..3 {
        let q = normal(&mut rng, &[1, n, 3]);
        let k = normal(&mut rng, &[1, n, 3]);
        let c = to_f64s(&cosine_cost(&q, &k).unwrap());
        let brute = permutations(n)
            .iter()
            .map(|p| (0..n).map(|i| c[i * n + p[i]]).sum::<f64>() / n as f64)
            .fold(f64::INFINITY, f64::min);
        let ot = scalar(&ot_loss(&q, &k, 0.002, 3000).unwrap());
        assert!((ot - brute).abs() < 1e-3, "trial {trial}: Sinkhorn {ot} vs assignment {brute}");
    }
}

#[test]
fn ot_loss_gradient_matches_finite_differences() {
    let mut rng = SeededRng::new(11);
    let k = normal(&mut rng, &[1, 4, 2]);
    let q0 = to_f64s(&normal(&mut rng, &[1, 3, 2]));
    check_gradient(&q0, |q| ot_loss(&q.reshape((1, 3, 2))?, &k, 0.3, 40), 1e-5, 1e-6);
}

/// τ(x) = s · tanh(x) as a two-layer perceptron (W₁ = I, W₂ = s I, no biases).
fn scaled_tanh(d: usize, s: f64, reversed: bool) -> SmallMlp {
    let eye = Tensor::eye(d, DType::F64, &cpu()).unwrap();
    let zeros = Tensor::zeros(d, DType::F64, &cpu()).unwrap();
    SmallMlp::from_weights(eye.clone(), zeros.clone(), (eye * s).unwrap(), zeros, reversed)
}

#[test]
fn ct_cost_is_lower_for_matching_sets_than_for_shifted_ones() {
    let mut rng = SeededRng::new(5);
    let q = normal(&mut rng, &[3, 6, 4]);
    let critic = scaled_tanh(4, 1.0, true);
    let navigator = scaled_tanh(4, 6.0, false);
    let same = scalar(&ct_loss(&q, &q, &critic, &navigator, 0.5).unwrap());
    let shifted = scalar(&ct_loss(&q, &(&q + 2.0).unwrap(), &critic, &navigator, 0.5).unwrap());
    let opposite = scalar(&ct_loss(&q, &q.neg().unwrap(), &critic, &navigator, 0.5).unwrap());
    assert!(same >= 0.0 && same < shifted && same < opposite, "same {same}, shifted {shifted}, opposite {opposite}");
    // a navigator that puts all mass on the nearest point makes identical sets cost ~0
    let sharp = scaled_tanh(4, 60.0, false);
    assert!(scalar(&ct_loss(&q, &q, &critic, &sharp, 0.5).unwrap()) < 0.02);
    // ρ weighs the two directions: with one query and many keys the forward plan (softmax over
    // the single query) is 1, so ρ = 1 gives the mean cost over keys
    let one_q = q.narrow(1, 0, 1).unwrap();
    let c = cosine_cost(&critic.forward(&one_q).unwrap(), &critic.forward(&q).unwrap()).unwrap();
    let fwd_only = scalar(&ct_loss(&one_q, &q, &critic, &navigator, 1.0).unwrap());
    assert!((fwd_only - scalar(&c.mean_all().unwrap())).abs() < 1e-12);
}

#[test]
fn ct_gradients_match_finite_differences_and_the_critic_ascends() {
    let mut rng = SeededRng::new(9);
    let k = normal(&mut rng, &[2, 4, 3]);
    let mk = |rng: &mut SeededRng, reversed: bool| {
        SmallMlp::from_weights(normal(rng, &[3, 5]), normal(rng, &[5]), normal(rng, &[5, 3]), normal(rng, &[3]), reversed)
    };
    let critic = mk(&mut rng, false);
    let navigator = mk(&mut rng, false);
    let q0 = to_f64s(&normal(&mut rng, &[2, 3, 3]));
    check_gradient(&q0, |q| ct_loss(&q.reshape((2, 3, 3))?, &k, &critic, &navigator, 0.3), 1e-5, 1e-6);
    // the critic behind a gradient reversal receives exactly the negated gradient
    let w = [normal(&mut rng, &[3, 5]), normal(&mut rng, &[5]), normal(&mut rng, &[5, 3]), normal(&mut rng, &[3])];
    let q = t3(&q0, (2, 3, 3));
    let grad_of_w1 = |reversed: bool| {
        let v = Var::from_tensor(&w[0]).unwrap();
        let c = SmallMlp::from_weights(v.as_tensor().clone(), w[1].clone(), w[2].clone(), w[3].clone(), reversed);
        let l = ct_loss(&q, &k, &c, &navigator, 0.5).unwrap();
        (scalar(&l), to_f64s(l.backward().unwrap().get(&v).unwrap()))
    };
    let (l_plain, g_plain) = grad_of_w1(false);
    let (l_rev, g_rev) = grad_of_w1(true);
    assert_eq!(l_plain, l_rev);
    assert!(g_plain.iter().any(|g| g.abs() > 1e-6));
    for (a, b) in g_plain.iter().zip(&g_rev) {
        assert!((a + b).abs() < 1e-12);
    }
}

#[test]
fn gan_loss_is_the_discriminators_cross_entropy_with_reversed_feature_gradients() {
    let mut rng = SeededRng::new(13);
    let disc = SmallMlp::from_weights(normal(&mut rng, &[2, 4]), normal(&mut rng, &[4]), normal(&mut rng, &[4, 1]), normal(&mut rng, &[1]), false);
    let k = normal(&mut rng, &[1, 5, 2]);
    let q0 = to_f64s(&normal(&mut rng, &[1, 3, 2]));
    let q = t3(&q0, (1, 3, 2));
    // by hand: mean softplus(-D(k)) + mean softplus(D(q))
    let sp = |x: f64| (1.0 + x.exp()).ln();
    let dk = to_f64s(&disc.forward(&k).unwrap());
    let dq = to_f64s(&disc.forward(&q).unwrap());
    let expected = dk.iter().map(|d| sp(-d)).sum::<f64>() / 5.0 + dq.iter().map(|d| sp(*d)).sum::<f64>() / 3.0;
    assert!((scalar(&gan_loss(&q, &k, &disc).unwrap()) - expected).abs() < 1e-12);
    // the features see -∂L/∂q (the attention maximises the discriminator's loss)
    let v = Var::new(q0.as_slice(), &cpu()).unwrap();
    let l = gan_loss(&v.as_tensor().reshape((1, 3, 2)).unwrap(), &k, &disc).unwrap();
    let g = to_f64s(l.backward().unwrap().get(&v).unwrap());
    let h = 1e-6;
    for i in 0..q0.len() {
        let (mut up, mut down) = (q0.clone(), q0.clone());
        up[i] += h;
        down[i] -= h;
        let fd = (scalar(&gan_loss(&t3(&up, (1, 3, 2)), &k, &disc).unwrap()) - scalar(&gan_loss(&t3(&down, (1, 3, 2)), &k, &disc).unwrap()))
            / (2.0 * h);
        assert!((g[i] + fd).abs() < 1e-7, "coordinate {i}: {} vs -FD {}", g[i], -fd);
    }
}

#[test]
fn bam_kl_matches_monte_carlo_within_its_standard_error() {
    // attention over S = 4 keys, contextual prior α = β softmax(g), β = 1; and a constant prior
    let dev = cpu();
    let logits = Tensor::new(&[[0.5f64, -1.0, 2.0, 0.0]], &dev).unwrap();
    let prior_logits = Tensor::new(&[[0.0f64, 1.0, -0.5, 0.3]], &dev).unwrap();
    for (k, alpha, beta) in [
        (10.0, varattn::attention::bayesian::contextual_alpha(&prior_logits, 1.0).unwrap(), 1.0),
        (3.0, Tensor::new(&[[0.5f64, 0.5, 0.5, 0.5]], &dev).unwrap(), 2.0),
    ] {
        let wa = weibull_attention(&logits, k, None).unwrap();
        let closed = scalar(&kl_to_gamma(&wa.q, &alpha, beta).unwrap().sum_all().unwrap());
        let n = 40_000;
        let lam = wa.q.lambda.broadcast_as((n, 4)).unwrap().contiguous().unwrap();
        let q = Weibull::new((lam.ones_like().unwrap() * k).unwrap(), lam.clone());
        let mut rng = SeededRng::new(3435);
        let s = q.sample(&mut rng).unwrap();
        let a = alpha.broadcast_as((n, 4)).unwrap().contiguous().unwrap();
        let p = Gamma::new(a.clone(), (a.ones_like().unwrap() * beta).unwrap());
        let log_ratio = (q.log_prob(&s).unwrap() - p.log_prob(&s).unwrap()).unwrap().sum(D::Minus1).unwrap();
        let xs = to_f64s(&log_ratio);
        let mean = xs.iter().sum::<f64>() / n as f64;
        let se = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0) / n as f64).sqrt();
        assert!((mean - closed).abs() < 4.0 * se, "k {k}: MC {mean} ± {se} vs closed form {closed}");
    }
}

#[test]
fn weibull_attention_has_the_softmax_as_its_mean() {
    let logits = Tensor::new(&[[0.5f64, -1.0, 2.0]], &cpu()).unwrap();
    let soft = to_f64s(&candle_nn::ops::softmax(&logits, D::Minus1).unwrap());
    // evaluation: the mean, exactly the softmax
    let det = weibull_attention(&logits, 10.0, None).unwrap();
    for (a, b) in to_f64s(&det.weights).iter().zip(&soft) {
        assert!((a - b).abs() < 1e-12);
    }
    // training: E[S] = softmax(s), checked on 20k reparameterised draws
    let big = logits.broadcast_as((20_000, 3)).unwrap().contiguous().unwrap();
    let mut rng = SeededRng::new(1);
    let wa = weibull_attention(&big, 5.0, Some(&mut rng)).unwrap();
    let s = to_f64s(&wa.unnormalised);
    for (j, want) in soft.iter().enumerate() {
        let col: Vec<f64> = s.iter().skip(j).step_by(3).copied().collect();
        let m = col.iter().sum::<f64>() / col.len() as f64;
        let sd = (col.iter().map(|x| (x - m).powi(2)).sum::<f64>() / col.len() as f64).sqrt();
        assert!((m - want).abs() < 4.0 * sd / (col.len() as f64).sqrt(), "E[S_{j}] = {m} vs {want}");
    }
    // normalised weights sum to one and carry a gradient to the scores
    let w = to_f64s(&wa.weights.sum(D::Minus1).unwrap());
    assert!(w.iter().all(|x| (x - 1.0).abs() < 1e-12));
}

#[test]
fn babn_chain_uses_the_upper_layers_sample_as_prior_shape() {
    let dev = cpu();
    let l1 = Tensor::new(&[[0.2f64, 1.0, -0.5]], &dev).unwrap();
    let l2 = Tensor::new(&[[1.5f64, 0.0, 0.3]], &dev).unwrap();
    let gate = Tensor::new(&[0.7f64], &dev).unwrap();
    let cfg = BayesConfig {
        kind: BayesKind::Babn,
        shape: 8.0,
        prior: PriorConfig::Constant { alpha: 0.3, beta: 2.0 },
        kl_weight: 1.0,
        chain_beta: 1.5,
    };
    let (layers, kl) = bayesian_layers(&cfg, &[l1.clone(), l2.clone()], &[gate.clone(), gate.clone()], &[None, None], None, true).unwrap();
    // by hand, mean weights (no sampling): top layer first
    let top = weibull_attention(&l2, 8.0, None).unwrap();
    let kl_top = kl_to_gamma(&top.q, &Tensor::new(&[[0.3f64, 0.3, 0.3]], &dev).unwrap(), 2.0).unwrap();
    let low_logits = (&l1 + top.weights.log().unwrap().broadcast_mul(&gate).unwrap()).unwrap();
    let low = weibull_attention(&low_logits, 8.0, None).unwrap();
    let kl_low = kl_to_gamma(&low.q, &(&top.weights * 1.5).unwrap(), 1.5).unwrap();
    let expected = scalar(&(kl_top + kl_low).unwrap().sum_all().unwrap());
    assert!((scalar(&kl.unwrap().sum_all().unwrap()) - expected).abs() < 1e-10);
    for (a, b) in to_f64s(&layers[0].weights).iter().zip(to_f64s(&low.weights)) {
        assert!((a - b).abs() < 1e-12);
    }
    // BAM: independent layers, each with the constant prior
    let bam = BayesConfig { kind: BayesKind::Bam, ..cfg };
    let (_, kl_bam) = bayesian_layers(&bam, &[l1.clone(), l2.clone()], &[], &[None, None], None, true).unwrap();
    let w1 = weibull_attention(&l1, 8.0, None).unwrap();
    let c = Tensor::new(&[[0.3f64, 0.3, 0.3]], &dev).unwrap();
    let expected = scalar(&(kl_to_gamma(&w1.q, &c, 2.0).unwrap() + kl_to_gamma(&top.q, &c, 2.0).unwrap()).unwrap().sum_all().unwrap());
    assert!((scalar(&kl_bam.unwrap().sum_all().unwrap()) - expected).abs() < 1e-10);
}

#[test]
fn bam_kl_gradient_matches_finite_differences() {
    // the training signal of the scores: d/ds Σ KL(Weibull(k, softmax(s)/Γ(1+1/k)) ‖ Gamma(α, β))
    let alpha = Tensor::new(&[[0.2f64, 0.5, 0.1, 0.3]], &cpu()).unwrap();
    check_gradient(
        &[0.3, -0.4, 1.1, 0.0],
        |s| {
            let wa = weibull_attention(&s.reshape((1, 4))?, 6.0, None)?;
            kl_to_gamma(&wa.q, &alpha, 1.3)?.sum_all()
        },
        1e-5,
        1e-6,
    );
    // and of the sampled weights at fixed noise (reparameterisation)
    check_gradient(
        &[0.3, -0.4, 1.1, 0.0],
        |s| {
            let mut rng = SeededRng::new(4);
            let wa = weibull_attention(&s.reshape((1, 4))?, 6.0, Some(&mut rng))?;
            wa.weights.mul(&Tensor::new(&[[1.0f64, -2.0, 0.5, 3.0]], &cpu())?)?.sum_all()
        },
        1e-5,
        1e-6,
    );
}
