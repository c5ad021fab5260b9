//! Training machinery shared by every model: the optimiser (with state that checkpoints can
//! save), the training loop, checkpoints and resumption.
pub mod adam;
pub mod checkpoint;
pub mod runner;
pub use adam::{Adam, AdamConfig};
pub use varattn::nn::{params, ParamStore};
