//! The exact marginal log Σ_i p_i f(x, i) and its Jensen bound for one target step, with the
//! library alone: `cargo run --example exact_marginal`.
use candle_core::{Device, Tensor};
use varattn::distributions::Categorical;
use varattn::objective::{exact_marginal, hard_enum};

fn main() -> candle_core::Result<()> {
    let prior = Categorical::from_logits(&Tensor::new(&[[0.0f32, 1.0, 2.0]], &Device::Cpu)?, None)?;
    let log_f = Tensor::new(&[[-0.2f32, -2.5, -1.0]], &Device::Cpu)?;
    let (exact, jensen) = (exact_marginal(&prior, &log_f, None)?, hard_enum(&prior, &log_f, None)?);
    println!("log marginal {:.4} >= Jensen bound {:.4}", exact.metrics.objective_sum, jensen.metrics.objective_sum);
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Both against the formulas written out by hand; the Jensen bound lies below.
    #[test]
    fn the_jensen_bound_is_below_the_exact_marginal() {
        use super::*;
        let prior = Categorical::from_logits(&Tensor::new(&[[0.0f64, 1.0, 2.0]], &Device::Cpu).unwrap(), None).unwrap();
        let log_f = Tensor::new(&[[-0.2f64, -2.5, -1.0]], &Device::Cpu).unwrap();
        let z: f64 = [0.0f64, 1.0, 2.0].iter().map(|l| l.exp()).sum();
        let p: Vec<f64> = [0.0f64, 1.0, 2.0].iter().map(|l| l.exp() / z).collect();
        let f = [-0.2f64, -2.5, -1.0];
        let exact_by_hand = p.iter().zip(f).map(|(p, lf)| p * lf.exp()).sum::<f64>().ln();
        let jensen_by_hand: f64 = p.iter().zip(f).map(|(p, lf)| p * lf).sum();
        let exact = exact_marginal(&prior, &log_f, None).unwrap().metrics.objective_sum;
        let jensen = hard_enum(&prior, &log_f, None).unwrap().metrics.objective_sum;
        assert!((exact - exact_by_hand).abs() < 1e-12 && (jensen - jensen_by_hand).abs() < 1e-12, "{exact} {jensen}");
        assert!(jensen < exact);
    }
}
