//! Variational attention (Deng et al. 2018) dropped into a small candle model of one's own:
//! `cargo run --release --example variational_attention`.
//!
//! The task hides the alignment: a source x of S distinct tokens, a target y that is x in a random
//! order, y_t = x_{π(t)}. The decoder's prior p(z_t | x, y_<t) cannot know π(t); the inference
//! network q(z_t | x, y) reads y_t and can. The model is ordinary candle (`candle_nn` layers built
//! from a `VarBuilder`); the library adds the two attention layers, the distributions and the
//! objective, the ELBO
//!
//!   Σ_t E_{q(z_t)}[log f(y_t | x, z_t)] − KL(q(z_t) ‖ p(z_t)),
//!
//! enumerated over the S positions, whose gradient trains model, prior and inference network
//! together. The same `log_f` also gives the exact marginal log Σ_i p(z_t = i) f(y_t | x, i).
use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Embedding, Linear, Optimizer, VarBuilder};
use varattn::attention::{LatentAttention, LatentAttentionConfig};
use varattn::distributions::Distribution;
use varattn::nn::SeededVarMap;
use varattn::objective::{exact_marginal, variational_enum};
use varattn::rng::SeededRng;

const VOCAB: usize = 16; // token 0 starts the target, tokens 1.. make up sources
const LEN: usize = 6; // S = T
const DIM: usize = 32;

/// The researcher's model: embeddings, a decoder query, an output layer, and the two
/// latent-attention layers from the library (prior and inference network).
struct Model {
    tokens: Embedding,
    positions: Embedding,
    hidden: Linear,
    output: Linear,
    prior: LatentAttention,
    posterior: LatentAttention,
}

impl Model {
    fn new(vb: VarBuilder) -> Result<Self> {
        let attn = LatentAttentionConfig { query_dim: DIM, key_dim: DIM, hidden: DIM };
        // the inference network's query is [decoder state; y_t]: a sum would blur y_t with y_{t-1}
        let inference = LatentAttentionConfig { query_dim: 2 * DIM, ..attn };
        Ok(Self {
            tokens: candle_nn::embedding(VOCAB, DIM, vb.pp("tokens"))?,
            positions: candle_nn::embedding(LEN, DIM, vb.pp("positions"))?,
            hidden: candle_nn::linear(2 * DIM, DIM, vb.pp("hidden"))?,
            output: candle_nn::linear(DIM, VOCAB, vb.pp("output"))?,
            prior: LatentAttention::new(attn, vb.pp("prior"))?,
            posterior: LatentAttention::new(inference, vb.pp("posterior"))?,
        })
    }

    /// The prior p(z_t | x, y_<t), the posterior q(z_t | x, y) and log f(y_t | x, z_t = i)
    /// `[B, T, S]` for sources and targets `[B, S]` (u32).
    fn forward(&self, src: &Tensor, tgt: &Tensor) -> Result<(varattn::distributions::Categorical, varattn::distributions::Categorical, Tensor)> {
        let (b, t) = tgt.dims2()?;
        let keys = self.tokens.forward(src)?; // [B, S, D]
        let previous = Tensor::cat(&[Tensor::zeros((b, 1), DType::U32, src.device())?, tgt.narrow(1, 0, t - 1)?], 1)?;
        let steps = self.positions.forward(&Tensor::arange(0u32, t as u32, src.device())?)?.unsqueeze(0)?;
        let queries = self.tokens.forward(&previous)?.broadcast_add(&steps)?; // decoder state: [B, T, D]
        let prior = self.prior.forward(&queries, &keys, None)?;
        let posterior = self.posterior.forward(&Tensor::cat(&[&queries, &self.tokens.forward(tgt)?], D::Minus1)?, &keys, None)?;
        // f(y_t | x, z_t = i) = softmax(W_o tanh(W_h [x_i; q_t]))[y_t], for every i
        let s = keys.dim(1)?;
        let pairs = Tensor::cat(&[keys.unsqueeze(1)?.broadcast_as((b, t, s, DIM))?, queries.unsqueeze(2)?.broadcast_as((b, t, s, DIM))?], D::Minus1)?.contiguous()?;
        let log_probs = candle_nn::ops::log_softmax(&self.output.forward(&self.hidden.forward(&pairs)?.tanh()?)?, D::Minus1)?;
        let index = tgt.unsqueeze(2)?.unsqueeze(3)?.broadcast_as((b, t, s, 1))?.contiguous()?;
        let log_f = log_probs.gather(&index, D::Minus1)?.squeeze(D::Minus1)?;
        Ok((prior, posterior, log_f))
    }
}

/// A batch of sources (S distinct tokens), targets (a random permutation of the source) and the
/// true alignments π, all drawn from `rng`.
fn batch(rng: &mut SeededRng, size: usize, dev: &Device) -> Result<(Tensor, Tensor, Vec<u32>)> {
    let (mut src, mut tgt, mut align) = (vec![], vec![], vec![]);
    for _ in 0..size {
        let mut tokens: Vec<u32> = (1..VOCAB as u32).collect();
        rng.shuffle(&mut tokens);
        let mut order: Vec<u32> = (0..LEN as u32).collect();
        rng.shuffle(&mut order);
        src.extend_from_slice(&tokens[..LEN]);
        tgt.extend(order.iter().map(|&i| tokens[i as usize]));
        align.extend_from_slice(&order);
    }
    Ok((Tensor::from_vec(src, (size, LEN), dev)?, Tensor::from_vec(tgt, (size, LEN), dev)?, align))
}

/// What training reached on a held-out batch.
#[derive(Debug)]
struct Report {
    elbo: f64,
    exact_nll: f64,
    prior_entropy: f64,
    posterior_entropy: f64,
    posterior_accuracy: f64,
}

fn evaluate(model: &Model, rng: &mut SeededRng, dev: &Device) -> Result<Report> {
    let (src, tgt, align) = batch(rng, 256, dev)?;
    let (prior, posterior, log_f) = model.forward(&src, &tgt)?;
    let vae = variational_enum(&prior, &posterior, &log_f, None)?.metrics;
    let exact = exact_marginal(&prior, &log_f, None)?.metrics;
    let entropy = |d: &varattn::distributions::Categorical| -> Result<f64> { d.entropy()?.mean_all()?.to_scalar::<f32>().map(f64::from) };
    let guess = posterior.probs()?.argmax(D::Minus1)?.flatten_all()?.to_vec1::<u32>()?;
    let hits = guess.iter().zip(&align).filter(|(g, a)| g == a).count();
    Ok(Report {
        elbo: vae.objective_sum / vae.tokens,
        exact_nll: exact.nll_sum.unwrap_or(f64::NAN) / exact.tokens,
        prior_entropy: entropy(&prior)?,
        posterior_entropy: entropy(&posterior)?,
        posterior_accuracy: hits as f64 / align.len() as f64,
    })
}

/// Trains for `steps` batches of 32 from `seed` and reports on a held-out batch.
fn train(steps: usize, seed: u64, verbose: bool) -> Result<Report> {
    let dev = Device::Cpu;
    let vars = SeededVarMap::new(seed); // seeded, unlike candle's CPU generator
    let model = Model::new(vars.var_builder(DType::F32, &dev))?;
    // candle's AdamW decays weights by 0.01 unless told otherwise
    let params = candle_nn::ParamsAdamW { lr: 3e-3, weight_decay: 0.0, ..Default::default() };
    let mut opt = candle_nn::AdamW::new(vars.all_vars(), params)?;
    let root = SeededRng::new(seed);
    let (mut data, mut held_out) = (root.fork(1), root.fork(2));
    for step in 1..=steps {
        let (src, tgt, _) = batch(&mut data, 32, &dev)?;
        let (prior, posterior, log_f) = model.forward(&src, &tgt)?;
        let estimate = variational_enum(&prior, &posterior, &log_f, None)?;
        opt.backward_step(&estimate.loss)?;
        if verbose && (step % 100 == 0 || step == 1) {
            let r = evaluate(&model, &mut held_out.clone(), &dev)?;
            println!(
                "step {step:4}: ELBO {:.3} nats/token, exact NLL {:.3}, H(p) {:.3}, H(q) {:.3}, q finds π {:.1}%",
                r.elbo,
                r.exact_nll,
                r.prior_entropy,
                r.posterior_entropy,
                100.0 * r.posterior_accuracy
            );
        }
    }
    evaluate(&model, &mut held_out, &dev)
}

fn main() -> Result<()> {
    let r = train(600, 3435, true)?;
    println!(
        "the prior cannot know π(t) (H(p) {:.2} of log S = {:.2}); the inference network finds it for {:.1}% of the tokens (H(q) {:.3})",
        r.prior_entropy,
        (LEN as f64).ln(),
        100.0 * r.posterior_accuracy,
        r.posterior_entropy
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    /// `cargo test` runs the example's training (shorter) and checks what `main` says.
    #[test]
    fn the_inference_network_finds_the_alignment_the_prior_cannot() {
        let r = super::train(300, 3435, false).unwrap();
        assert!(r.posterior_accuracy > 0.9, "{r:?}");
        assert!(r.posterior_entropy < 0.5 * r.prior_entropy, "{r:?}");
        assert!(r.prior_entropy > 0.5 * (super::LEN as f64).ln(), "{r:?}");
        assert!(r.elbo <= -r.exact_nll + 1e-4, "the ELBO bounds the log marginal: {r:?}");
    }
}
