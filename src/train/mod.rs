//! Training machinery shared by every model: the optimiser (with state that checkpoints can
//! save), and later the loop, checkpoints and resumption.
pub mod adam;
pub mod checkpoint;
pub mod params;
pub mod runner;
pub use adam::{Adam, AdamConfig};
pub use params::ParamStore;
