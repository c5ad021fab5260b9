//! The fused CPU kernels of the laboratory's models: LSTM layers, the teacher-forced attention
//! decoder, the memory-lean gold log-softmax, vectorised exp/σ/tanh. The building blocks they
//! stand on (blocked matmuls, dropout, the parameter store) are the library's [`varattn::nn`].
pub mod attention_decoder;
pub mod fast_math;
pub mod gold_log_softmax;
pub mod lstm;
pub mod lstm_fused;

pub use gold_log_softmax::{gold_log_softmax, gold_log_softmax_keeping, gold_log_softmax_naive};
