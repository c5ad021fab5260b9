//! Data sets: the offline corpora (Ding de-en, later easy-VQA and cmudict) and, later, the Hub.
pub mod cmudict;
pub mod ding;
pub mod easy_vqa;
pub mod nmt;
