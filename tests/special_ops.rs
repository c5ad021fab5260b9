//! The special-function ops: values against known constants, gradients against finite
//! differences, and the implicit gamma gradient against a finite difference of an inverse-CDF
//! sample under fixed uniform noise.
mod common;
use candle_core::{DType, Device, Tensor};
use common::*;
use varattn::special::{self, scalar as sf};

#[test]
fn op_values_match_known_constants() {
    let x = Tensor::new(&[0.5f64, 1.0, 10.0], &cpu()).unwrap();
    let lg = to_f64s(&special::lgamma(&x).unwrap());
    assert!((lg[0] - 0.5723649429247001).abs() < 1e-9);
    assert!(lg[1].abs() < 1e-12);
    assert!((lg[2] - 12.801827480081469).abs() < 1e-9);
    let dg = to_f64s(&special::digamma(&x).unwrap());
    assert!((dg[0] + 1.9635100260214235).abs() < 1e-9);
    assert!((dg[1] + 0.5772156649015329).abs() < 1e-9);
    let tg = to_f64s(&special::trigamma(&x).unwrap());
    assert!((tg[1] - std::f64::consts::PI.powi(2) / 6.0).abs() < 1e-9);
    let sp = to_f64s(&special::softplus(&Tensor::new(&[-1000.0f64, 0.0, 1000.0], &cpu()).unwrap()).unwrap());
    assert!(sp[0] >= 0.0 && sp[0] < 1e-300 && (sp[1] - 2f64.ln()).abs() < 1e-15 && (sp[2] - 1000.0).abs() < 1e-12);
    let l1 = to_f64s(&special::log1p(&Tensor::new(&[1e-12f64], &cpu()).unwrap()).unwrap());
    assert!((l1[0] - 1e-12).abs() < 1e-24);
}

#[test]
fn ops_work_on_f32_and_strided_tensors() {
    let x = Tensor::new(&[[0.5f32, 1.0], [2.0, 3.0]], &cpu()).unwrap().t().unwrap();
    let y = special::lgamma(&x).unwrap().to_vec2::<f32>().unwrap();
    assert!((y[0][1] - 0.0).abs() < 1e-6); // lgamma(2) = 0 at [0][1] after transpose
    assert!((y[1][0] - 0.0).abs() < 1e-6); // lgamma(1)
    assert!((y[1][1] - 2f32.ln()).abs() < 1e-6); // lgamma(3) = ln 2
}

#[test]
fn gradients_match_finite_differences() {
    let pts = [0.05, 0.3, 1.0, 2.5, 7.0, 40.0];
    check_gradient(&pts, |x| special::lgamma(x)?.sum_all(), 1e-6, 1e-6);
    check_gradient(&pts, |x| special::digamma(x)?.sum_all(), 1e-6, 1e-5);
    check_gradient(&pts, |x| special::trigamma(x)?.sum_all(), 1e-6, 1e-4);
    let reals = [-30.0, -2.0, -0.1, 0.0, 0.7, 5.0, 30.0];
    check_gradient(&reals, |x| special::softplus(x)?.sum_all(), 1e-6, 1e-7);
    check_gradient(&[-0.9, -0.2, 0.0, 1e-3, 3.0], |x| special::log1p(x)?.sum_all(), 1e-7, 1e-6);
    // composed: weights on each output so that a wrong per-element gradient cannot cancel
    check_gradient(&pts, |x| special::lgamma(&(x * 2.0)?)?.mul(&special::digamma(x)?)?.sum_all(), 1e-6, 1e-5);
}

#[test]
fn implicit_gamma_gradient_matches_inverse_cdf_finite_difference() {
    // z(α, u) = P⁻¹(α, u); holding u fixed, dz/dα by central differences.
    for &alpha in &[0.05f64, 0.3, 1.0, 3.0, 20.0, 300.0] {
        for &u in &[0.02f64, 0.3, 0.5, 0.8, 0.98] {
            let z = sf::gamma_p_inv(alpha, u);
            let h = 1e-5 * alpha;
            let fd = (sf::gamma_p_inv(alpha + h, u) - sf::gamma_p_inv(alpha - h, u)) / (2.0 * h);
            // the op: value z, gradient to α
            let a = candle_core::Var::new(&[alpha], &cpu()).unwrap();
            let zt = Tensor::new(&[z], &cpu()).unwrap();
            let out = special::ops::implicit_gamma(a.as_tensor(), &zt).unwrap();
            assert_eq!(to_f64s(&out)[0], z, "implicit_gamma must return the sample unchanged");
            let g = out.sum_all().unwrap().backward().unwrap();
            let analytic = to_f64s(g.get(&a).unwrap())[0];
            let rel = (analytic - fd).abs() / fd.abs().max(1e-12);
            assert!(rel < 2e-3, "alpha {alpha}, u {u}: implicit {analytic} vs finite difference {fd}");
        }
    }
}

#[test]
fn gamma_rsample_is_seeded_and_positive() {
    let alpha = Tensor::new(&[0.01f32, 0.5, 2.0, 50.0], &cpu()).unwrap();
    let a = special::gamma_rsample(&alpha, &mut varattn::rng::SeededRng::new(4)).unwrap();
    let b = special::gamma_rsample(&alpha, &mut varattn::rng::SeededRng::new(4)).unwrap();
    let c = special::gamma_rsample(&alpha, &mut varattn::rng::SeededRng::new(5)).unwrap();
    assert_eq!(a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
    assert_ne!(a.to_vec1::<f32>().unwrap(), c.to_vec1::<f32>().unwrap());
    assert!(a.to_vec1::<f32>().unwrap().iter().all(|&x| x > 0.0));
    assert_eq!(a.dtype(), DType::F32);
    let _ = Device::Cpu;
}
