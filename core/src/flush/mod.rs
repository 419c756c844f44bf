//! Flushing: the scheduler that decides when a region flushes and the task
//! that turns immutable memtables into Parquet SSTs and a manifest edit,
//! and the guard that reports a job dropped before it finished.

mod job_end;
mod scheduler;
mod task;

pub use job_end::{Acceptance, LostReports};
pub use scheduler::{FlushScheduler, FlushStatusView, FlushTask};
pub use task::{flush_job, FlushEnv, FlushSnapshot};
