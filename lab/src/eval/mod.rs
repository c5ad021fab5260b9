//! Evaluation metrics.
pub mod beam;
pub mod bleu;
pub mod calibration;
pub mod chrf;
