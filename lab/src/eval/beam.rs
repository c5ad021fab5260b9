//! Beam search with the length penalty of Wu et al. (2016):
//! score(Y) = log P(Y | X) / lp(Y), lp(Y) = (5 + |Y|)^α / (5 + 1)^α,
//! and, optionally, OpenNMT-py's end-of-sentence normalisation as the authors' `va.sh` uses it
//! (`-eos_norm 3`): when the t-th token is chosen (t = 1, 2, ...), log P(EOS) is lowered by
//! η · S / (t + 1) for a source of S tokens, and the lowered value is what the hypothesis keeps.
use crate::data::nmt::{BOS, EOS};
use crate::models::nmt::{Marginal, NmtModel};
use candle_core::{Device, Result, Tensor};

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BeamConfig {
    pub beam: usize,
    /// Length-penalty exponent α (paper: 1).
    pub alpha: f64,
    /// Maximum output length as a multiple of the source length, plus 5.
    pub max_len_ratio: f64,
    /// End-of-sentence normalisation η (OpenNMT-py's `eos_norm`; 0, the default, is off; the
    /// authors use 3): see [`eos_penalty`].
    #[serde(default)]
    pub eos_norm: f64,
}

/// The amount OpenNMT-py's `eos_norm` subtracts from log P(EOS) when the t-th output token is
/// chosen, t = `generated` + 1 (`generated` tokens already in the hypothesis), for a source of
/// `src_len` tokens: η · S / (t + 1). It falls as the hypothesis grows, so short outputs pay more.
pub fn eos_penalty(eos_norm: f64, src_len: usize, generated: usize) -> f64 {
    eos_norm * src_len as f64 / (generated as f64 + 2.0)
}

/// Wu et al.'s length penalty lp(Y) for |Y| tokens.
pub fn length_penalty(len: usize, alpha: f64) -> f64 {
    ((5.0 + len as f64) / 6.0).powf(alpha)
}

/// Decode one source sentence `src [S]` (u32 ids, no padding); returns the best hypothesis
/// without BOS/EOS. Each beam's next-token distribution comes from
/// [`NmtModel::next_token_log_probs`] with the given marginalisation (soft, exact, K-Max); under
/// K-Max the decoder also feeds the K-Max context ([`NmtModel::step_with`]).
pub fn beam_search(model: &NmtModel, src: &[u32], how: Marginal, cfg: &BeamConfig, device: &Device) -> Result<Vec<u32>> {
    let s = src.len();
    let src_t = Tensor::new(src, device)?.unsqueeze(0)?;
    let mask = Tensor::ones((1, s), candle_core::DType::F32, device)?;
    let enc1 = model.encode(&src_t, &mask, None)?;
    let max_len = (cfg.max_len_ratio * s as f64) as usize + 5;
    // alive hypotheses: (tokens, log prob)
    let mut alive: Vec<(Vec<u32>, f64)> = vec![(vec![], 0.0)];
    let mut finished: Vec<(Vec<u32>, f64)> = Vec::new();
    let mut state = model.initial_state(&enc1)?;
    let mut enc = enc1;
    for step in 0..max_len {
        let n = alive.len();
        let prev: Vec<u32> = alive.iter().map(|(t, _)| *t.last().unwrap_or(&BOS)).collect();
        let y_prev = Tensor::new(prev.as_slice(), device)?;
        let kmax = match how {
            Marginal::KMax(k) => Some(k),
            _ => None,
        };
        let (h, scores, next) = model.step_with(&enc, &y_prev, &state, None, kmax)?;
        let mut logp = model.next_token_log_probs(&enc, &h, &scores, how)?.to_vec2::<f32>()?;
        if cfg.eos_norm > 0.0 {
            let penalty = eos_penalty(cfg.eos_norm, s, step) as f32;
            logp.iter_mut().for_each(|row| row[EOS as usize] -= penalty);
        }
        // candidates: (beam row, token, total log prob)
        let mut cand: Vec<(usize, u32, f64)> = Vec::with_capacity(n * cfg.beam);
        for (r, row) in logp.iter().enumerate() {
            let mut top: Vec<(u32, f32)> = row.iter().enumerate().map(|(v, &l)| (v as u32, l)).collect();
            let k = cfg.beam.min(top.len());
            top.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
            for &(v, l) in &top[..k] {
                cand.push((r, v, alive[r].1 + l as f64));
            }
        }
        cand.sort_by(|a, b| b.2.total_cmp(&a.2));
        let mut keep_rows = Vec::new();
        let mut new_alive = Vec::new();
        for (r, v, lp) in cand {
            if new_alive.len() >= cfg.beam {
                break;
            }
            let mut toks = alive[r].0.clone();
            if v == EOS || step + 1 == max_len {
                if v != EOS {
                    toks.push(v);
                }
                finished.push((toks, lp));
            } else {
                toks.push(v);
                new_alive.push((toks, lp));
                keep_rows.push(r as u32);
            }
        }
        // stop when enough hypotheses finished and none alive can beat the best finished one
        let best_finished = finished
            .iter()
            .map(|(t, lp)| lp / length_penalty(t.len() + 1, cfg.alpha))
            .fold(f64::NEG_INFINITY, f64::max);
        let best_alive_bound = new_alive
            .iter()
            .map(|(_, lp)| lp / length_penalty(max_len, cfg.alpha))
            .fold(f64::NEG_INFINITY, f64::max);
        if new_alive.is_empty() || (finished.len() >= cfg.beam && best_finished >= best_alive_bound) {
            break;
        }
        let rows = Tensor::new(keep_rows.as_slice(), device)?;
        state = crate::models::nmt::DecoderState {
            lstm: next.lstm.iter().map(|(h, c)| Ok((h.index_select(&rows, 0)?, c.index_select(&rows, 0)?))).collect::<Result<_>>()?,
            feed: next.feed.index_select(&rows, 0)?,
        };
        if enc.states.dim(0)? != keep_rows.len() {
            let zeros = Tensor::zeros(keep_rows.len(), candle_core::DType::U32, device)?;
            enc = NmtModel::select_encoded(&enc, &zeros)?;
        }
        alive = new_alive;
    }
    let best = finished
        .into_iter()
        .max_by(|a, b| {
            let sa = a.1 / length_penalty(a.0.len() + 1, cfg.alpha);
            let sb = b.1 / length_penalty(b.0.len() + 1, cfg.alpha);
            sa.total_cmp(&sb)
        })
        .map(|(t, _)| t)
        .unwrap_or_default();
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eos_penalty_is_opennmt_eos_norm() {
        // OpenNMT-py: word_probs[eos] -= eos_norm * src_len / (cur_len + 1), cur_len = len(next_ys)
        // counting BOS, i.e. cur_len = tokens generated so far + 1.
        assert!((eos_penalty(3.0, 10, 0) - 15.0).abs() < 1e-12);
        assert!((eos_penalty(3.0, 10, 4) - 5.0).abs() < 1e-12);
        assert_eq!(eos_penalty(0.0, 10, 4), 0.0);
    }

    #[test]
    fn eos_norm_defaults_to_off_and_a_large_one_postpones_the_end() -> Result<()> {
        use crate::models::nmt::NmtModelConfig;
        use crate::train::ParamStore;
        let cfg: BeamConfig = toml::from_str("beam = 3\nalpha = 1.0\nmax_len_ratio = 1.0").unwrap();
        assert_eq!(cfg.eos_norm, 0.0);
        let dev = Device::Cpu;
        let mcfg = NmtModelConfig {
            emb: 6,
            enc_hidden: 5,
            enc_layers: 1,
            dec_hidden: 7,
            dec_layers: 1,
            attn_hidden: 4,
            out_hidden: 5,
            inf_hidden: 3,
            inf_layers: 1,
            dropout: 0.0,
            init: 0.3,
        };
        let mut ps = ParamStore::new(5, 0.3, &dev);
        let model = NmtModel::new(&mut ps, &mcfg, 12, false)?;
        // EOS made the likeliest token everywhere: without the normalisation the output is empty.
        let eos_bias = Tensor::from_vec((0..12).map(|v| if v == EOS as usize { 50f32 } else { 0.0 }).collect::<Vec<_>>(), 12, &dev)?;
        let (_, bias) = ps.named_vars().into_iter().find(|(n, _)| n == "output.w_o.bias").unwrap();
        bias.set(&(bias.as_tensor() + eos_bias)?)?;
        let src = [4u32, 5, 6, 7];
        let max_len = (cfg.max_len_ratio * src.len() as f64) as usize + 5;
        assert!(beam_search(&model, &src, Marginal::Exact, &cfg, &dev)?.is_empty());
        let strong = BeamConfig { eos_norm: 1e3, ..cfg };
        assert_eq!(beam_search(&model, &src, Marginal::Exact, &strong, &dev)?.len(), max_len);
        Ok(())
    }

    #[test]
    fn length_penalty_matches_wu_et_al() {
        assert!((length_penalty(1, 1.0) - 1.0).abs() < 1e-12);
        assert!((length_penalty(7, 1.0) - 2.0).abs() < 1e-12);
        assert!((length_penalty(7, 0.0) - 1.0).abs() < 1e-12);
        assert!((length_penalty(19, 0.5) - 2.0).abs() < 1e-12);
    }
}
