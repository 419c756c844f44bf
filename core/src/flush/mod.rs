//! Flushing: the scheduler that decides when a region flushes and the task
//! that turns immutable memtables into Parquet SSTs and a manifest edit.

mod scheduler;
mod task;

pub use scheduler::{FlushScheduler, FlushStatusView, FlushTask};
pub use task::{flush_job, FlushEnv, FlushSnapshot};
