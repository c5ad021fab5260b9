#![allow(dead_code)]
//! Helpers shared by the integration tests.
use candle_core::{Device, Result, Tensor, Var};

pub fn cpu() -> Device {
    Device::Cpu
}

pub fn var(data: &[f64]) -> Var {
    Var::new(data, &Device::Cpu).unwrap()
}

pub fn to_f64s(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(candle_core::DType::F64).unwrap().to_vec1::<f64>().unwrap()
}

pub fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(candle_core::DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// Central finite differences of a scalar function of one parameter vector, compared with the
/// gradient candle's backward pass records. Fails with the worst coordinate.
pub fn check_gradient<F>(x0: &[f64], f: F, h: f64, tol: f64)
where
    F: Fn(&Tensor) -> Result<Tensor>,
{
    let x = var(x0);
    let y = f(x.as_tensor()).unwrap();
    let grads = y.backward().unwrap();
    let analytic = to_f64s(grads.get(&x).expect("no gradient reached the parameter"));
    for i in 0..x0.len() {
        let mut up = x0.to_vec();
        let mut down = x0.to_vec();
        up[i] += h;
        down[i] -= h;
        let fu = scalar(&f(&Tensor::new(up.as_slice(), &Device::Cpu).unwrap()).unwrap());
        let fd = scalar(&f(&Tensor::new(down.as_slice(), &Device::Cpu).unwrap()).unwrap());
        let numeric = (fu - fd) / (2.0 * h);
        let err = (numeric - analytic[i]).abs() / (1.0 + numeric.abs());
        assert!(err < tol, "coordinate {i}: analytic {} vs finite difference {numeric} (x = {x0:?})", analytic[i]);
    }
}
