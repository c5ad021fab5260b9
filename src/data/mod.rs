//! Data sets: the offline corpora (Ding de-en, later easy-VQA and cmudict) and, later, the Hub.
pub mod cmudict;
pub mod ding;
pub mod easy_vqa;
pub mod nmt;

/// One line per split, `"<name>  <count>"` (two spaces), e.g. `train  15839`, as every
/// `varattn data prepare` prints for scripts to read.
pub fn split_lines(splits: &[(&str, usize)]) -> Vec<String> {
    splits.iter().map(|(name, n)| format!("{name}  {n}")).collect()
}
