//! Parallel corpora as subword ids, and padded batches for the NMT model.
//!
//! Ids follow the joint BPE of [`super::ding::train_bpe`]: `<pad>` = 0, `<unk>` = 1, `<s>` = 2,
//! `</s>` = 3. A target sequence y_1..y_T is fed as `<s> y_1 .. y_{T-1}` and predicted as
//! `y_1 .. y_{T-1} </s>`.
use super::ding::{Pair, ParallelCorpus};
use crate::rng::SeededRng;
use anyhow::{anyhow, Result};
use candle_core::{Device, Tensor};

pub const PAD: u32 = 0;
pub const UNK: u32 = 1;
pub const BOS: u32 = 2;
pub const EOS: u32 = 3;

/// One sentence pair as ids (no BOS/EOS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPair {
    pub src: Vec<u32>,
    pub tgt: Vec<u32>,
}

/// A split of id pairs plus the count of pairs dropped for length or emptiness.
#[derive(Debug, Clone, Default)]
pub struct IdSplit {
    pub pairs: Vec<IdPair>,
    pub dropped_too_long: usize,
    pub dropped_empty: usize,
}

/// Encode pairs with the tokenizer; pairs with an empty side are dropped, and so are pairs with
/// a side longer than `max_len` subwords when `drop_long` (training); otherwise long sides are
/// kept whole (evaluation must score every sentence).
pub fn encode_split(tok: &tokenizers::Tokenizer, pairs: &[Pair], max_len: usize, drop_long: bool) -> Result<IdSplit> {
    let mut out = IdSplit::default();
    for (k, p) in pairs.iter().enumerate() {
        let enc = |s: &str| -> Result<Vec<u32>> {
            Ok(tok.encode(s, false).map_err(|e| anyhow!("tokenizing pair {k}: {e}"))?.get_ids().to_vec())
        };
        let (src, tgt) = (enc(&p.src)?, enc(&p.tgt)?);
        if src.is_empty() || tgt.is_empty() {
            out.dropped_empty += 1;
        } else if drop_long && (src.len() > max_len || tgt.len() + 1 > max_len) {
            out.dropped_too_long += 1;
        } else {
            out.pairs.push(IdPair { src, tgt });
        }
    }
    Ok(out)
}

/// The tokenised corpus.
#[derive(Debug, Clone)]
pub struct IdCorpus {
    pub train: IdSplit,
    pub valid: IdSplit,
    pub test: IdSplit,
    pub vocab: usize,
}

pub fn encode_corpus(tok: &tokenizers::Tokenizer, corpus: &ParallelCorpus, max_len: usize) -> Result<IdCorpus> {
    Ok(IdCorpus {
        train: encode_split(tok, &corpus.train, max_len, true)?,
        valid: encode_split(tok, &corpus.valid, max_len, false)?,
        test: encode_split(tok, &corpus.test, max_len, false)?,
        vocab: tok.get_vocab_size(true),
    })
}

/// A padded batch. Shapes: src `[B, S]`, tgt_in/tgt_out `[B, T]` (u32), masks f32.
#[derive(Debug, Clone)]
pub struct NmtBatch {
    pub src: Tensor,
    pub src_mask: Tensor,
    pub tgt_in: Tensor,
    pub tgt_out: Tensor,
    pub tgt_mask: Tensor,
    /// Number of real target tokens (EOS included).
    pub tokens: usize,
    /// Indices of the pairs in their split.
    pub indices: Vec<usize>,
}

impl NmtBatch {
    pub fn new(pairs: &[IdPair], indices: &[usize], device: &Device) -> candle_core::Result<Self> {
        let b = indices.len();
        let s = indices.iter().map(|&i| pairs[i].src.len()).max().unwrap_or(1);
        let t = indices.iter().map(|&i| pairs[i].tgt.len() + 1).max().unwrap_or(1);
        let (mut src, mut smask) = (vec![PAD; b * s], vec![0f32; b * s]);
        let (mut tin, mut tout, mut tmask) = (vec![PAD; b * t], vec![PAD; b * t], vec![0f32; b * t]);
        let mut tokens = 0;
        for (r, &i) in indices.iter().enumerate() {
            let p = &pairs[i];
            for (j, &x) in p.src.iter().enumerate() {
                src[r * s + j] = x;
                smask[r * s + j] = 1.0;
            }
            let n = p.tgt.len() + 1;
            for j in 0..n {
                tin[r * t + j] = if j == 0 { BOS } else { p.tgt[j - 1] };
                tout[r * t + j] = if j < p.tgt.len() { p.tgt[j] } else { EOS };
                tmask[r * t + j] = 1.0;
            }
            tokens += n;
        }
        Ok(Self {
            src: Tensor::from_vec(src, (b, s), device)?,
            src_mask: Tensor::from_vec(smask, (b, s), device)?,
            tgt_in: Tensor::from_vec(tin, (b, t), device)?,
            tgt_out: Tensor::from_vec(tout, (b, t), device)?,
            tgt_mask: Tensor::from_vec(tmask, (b, t), device)?,
            tokens,
            indices: indices.to_vec(),
        })
    }
}

/// Batches of at most `batch_size` sentences. Training order: pairs are shuffled, cut into
/// pools of 50 batches, each pool sorted by source length (little padding), and the batches
/// shuffled — all with the given generator. Evaluation order (`rng = None`): sorted by length.
pub fn make_batches(pairs: &[IdPair], batch_size: usize, rng: Option<&mut SeededRng>) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..pairs.len()).collect();
    let key = |i: &usize| (pairs[*i].src.len(), pairs[*i].tgt.len());
    match rng {
        None => {
            idx.sort_by_key(key);
            idx.chunks(batch_size).map(|c| c.to_vec()).collect()
        }
        Some(rng) => {
            rng.shuffle(&mut idx);
            let mut batches: Vec<Vec<usize>> = Vec::new();
            for pool in idx.chunks_mut(batch_size * 50) {
                pool.sort_by_key(key);
                batches.extend(pool.chunks(batch_size).map(|c| c.to_vec()));
            }
            rng.shuffle(&mut batches);
            batches
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs() -> Vec<IdPair> {
        vec![
            IdPair { src: vec![5, 6, 7], tgt: vec![8, 9] },
            IdPair { src: vec![5], tgt: vec![10, 11, 12] },
            IdPair { src: vec![6, 6], tgt: vec![8] },
        ]
    }

    #[test]
    fn batch_shifts_targets_and_masks_padding() -> candle_core::Result<()> {
        let b = NmtBatch::new(&pairs(), &[0, 1], &Device::Cpu)?;
        assert_eq!(b.src.to_vec2::<u32>()?, vec![vec![5, 6, 7], vec![5, 0, 0]]);
        assert_eq!(b.tgt_in.to_vec2::<u32>()?, vec![vec![BOS, 8, 9, 0], vec![BOS, 10, 11, 12]]);
        assert_eq!(b.tgt_out.to_vec2::<u32>()?, vec![vec![8, 9, EOS, 0], vec![10, 11, 12, EOS]]);
        assert_eq!(b.tgt_mask.to_vec2::<f32>()?, vec![vec![1., 1., 1., 0.], vec![1., 1., 1., 1.]]);
        assert_eq!(b.tokens, 7);
        Ok(())
    }

    #[test]
    fn batches_cover_every_pair_once_and_are_seeded() {
        let many: Vec<IdPair> = (0..103).map(|i| IdPair { src: vec![1; 1 + i % 7], tgt: vec![1; 1 + i % 5] }).collect();
        let a = make_batches(&many, 8, Some(&mut SeededRng::new(1)));
        let b = make_batches(&many, 8, Some(&mut SeededRng::new(1)));
        let c = make_batches(&many, 8, Some(&mut SeededRng::new(2)));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut all: Vec<usize> = a.concat();
        all.sort();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
        assert!(a.iter().all(|x| x.len() <= 8));
    }
}
