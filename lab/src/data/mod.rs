//! Data sets: the offline corpora (Ding de-en, easy-VQA, cmudict) and the Hugging Face Hub sets
//! (IWSLT14/2017, WMT14/16/17 de-en, VQA 2.0; `hub*`).
pub mod cmudict;
pub mod ding;
pub mod easy_vqa;
pub mod hub;
pub mod manifest;
pub mod nmt;
pub mod vqa_v2;

/// One line per split, `"<name>  <count>"` (two spaces), e.g. `train  15839`, as every
/// `varattn data prepare` prints for scripts to read.
pub fn split_lines(splits: &[(&str, usize)]) -> Vec<String> {
    splits.iter().map(|(name, n)| format!("{name}  {n}")).collect()
}
