//! Beam search with the length penalty of Wu et al. (2016):
//! score(Y) = log P(Y | X) / lp(Y), lp(Y) = (5 + |Y|)^α / (5 + 1)^α.
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
}

/// Wu et al.'s length penalty lp(Y) for |Y| tokens.
pub fn length_penalty(len: usize, alpha: f64) -> f64 {
    ((5.0 + len as f64) / 6.0).powf(alpha)
}

/// Decode one source sentence `src [S]` (u32 ids, no padding); returns the best hypothesis
/// without BOS/EOS. Each beam's next-token distribution comes from
/// [`NmtModel::next_token_log_probs`] with the given marginalisation (soft, exact, K-Max).
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
        let (h, scores, next) = model.step(&enc, &y_prev, &state, None)?;
        let logp = model.next_token_log_probs(&enc, &h, &scores, how)?.to_vec2::<f32>()?;
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
    fn length_penalty_matches_wu_et_al() {
        assert!((length_penalty(1, 1.0) - 1.0).abs() < 1e-12);
        assert!((length_penalty(7, 1.0) - 2.0).abs() < 1e-12);
        assert!((length_penalty(7, 0.0) - 1.0).abs() < 1e-12);
        assert!((length_penalty(19, 0.5) - 2.0).abs() < 1e-12);
    }
}
