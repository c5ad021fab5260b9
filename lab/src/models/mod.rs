//! Models: what produces the prior p, the posterior q and log f(x, i). Models know nothing of
//! estimators; the attention models implement [`crate::objective::AlignmentOutputs`], the
//! online monotonic transducer hands per-step scores to [`crate::objective::monotonic_estimate`].
pub mod nmt;
pub mod backbone;
pub mod reversal;
pub mod vqa;
pub mod transducer;
pub mod vqa_features;
