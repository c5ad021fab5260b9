//! Models: what produces the prior p, the posterior q and log f(x, i). Models know nothing of
//! estimators; they implement [`crate::objective::AlignmentOutputs`].
pub mod nmt;
pub mod reversal;
pub mod vqa;
