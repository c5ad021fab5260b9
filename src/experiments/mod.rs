//! Experiments: a configuration plus a seed in, a trained model and a results file out.
pub mod nmt;
pub mod vqa;

use candle_core::Device;
use std::path::PathBuf;

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub preset: String,
    pub seed: u64,
    pub out_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// Stop (after checkpointing) once this many steps are done — to test resumption.
    pub stop_after_steps: Option<usize>,
    pub device: Device,
    pub progress: bool,
}


