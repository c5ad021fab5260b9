//! Experiments: a configuration plus a seed in, a trained model and a results file out.
pub mod g2p;
pub mod nmt;
pub mod vqa;
pub mod vqa_v2;

pub use crate::train::runner::RunOptions;
