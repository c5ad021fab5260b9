//! The exact marginal log Σ_i p_i f(x, i) and its Jensen bound for one target step, with the
//! library alone: `cargo run --example exact_marginal`.
use candle_core::{Device, Tensor};
use varattn::dist::Categorical;
use varattn::objective::{exact_marginal, hard_enum};

fn main() -> candle_core::Result<()> {
    let prior = Categorical::from_logits(&Tensor::new(&[[0.0f32, 1.0, 2.0]], &Device::Cpu)?, None)?;
    let log_f = Tensor::new(&[[-0.2f32, -2.5, -1.0]], &Device::Cpu)?;
    let (exact, jensen) = (exact_marginal(&prior, &log_f, None)?, hard_enum(&prior, &log_f, None)?);
    println!("log marginal {:.4} >= Jensen bound {:.4}", exact.metrics.objective_sum, jensen.metrics.objective_sum);
    Ok(())
}
