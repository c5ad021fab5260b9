//! Reports: the papers' tables from finished runs, figures, and showing both in notebooks.
pub mod convergence;
pub mod notebook;
pub mod plot;
pub mod tables;
pub mod verdict;
