//! Reports: the papers' tables from finished runs, and figures.
pub mod plot;
pub mod tables;
