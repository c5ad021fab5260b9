//! Reports: the papers' tables from finished runs, and figures.
pub mod tables;
