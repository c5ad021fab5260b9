//! Reports: the papers' tables from finished runs, figures, and showing both in notebooks.
pub mod convergence;
pub mod notebook;
pub mod tables;
pub mod verdict;

/// The figures, drawn by [`crate::plot`] (also used by the runs themselves); re-exported here
/// for the notebooks and callers that name `report::plot`.
pub use crate::plot;
