//! The flush core's metrics, through the `metrics` facade: whoever runs the
//! core installs a recorder (a Prometheus exporter in a real engine, the
//! simulator's checking recorder in a run); with none installed every call
//! here is a no-op.
//!
//! The set follows what GreptimeDB's mito2 exports around flushes: flush
//! requests by reason, flush time (the whole flush and the memtable
//! encoding), bytes flushed, failed flushes, flushes in flight, and stalled
//! writes. Names are ours; each is recorded where the core's own state
//! changes, never derived later, so a recorder that disagrees with the
//! core's events shows a metric that lies.

use crate::request::FlushReason;

/// Counter, labelled `reason`: flush requests the scheduler took (started
/// or merged into a flush already running or pending).
pub const FLUSH_REQUESTS_TOTAL: &str = "flush_core_flush_requests_total";
/// Histogram of seconds, labelled `stage` = `total` (a committed flush from
/// job start to commit) or `encode` (one memtable to Parquet bytes).
pub const FLUSH_ELAPSED: &str = "flush_core_flush_elapsed_seconds";
/// Counter: bytes of SSTs committed by flushes.
pub const FLUSH_BYTES_TOTAL: &str = "flush_core_flush_bytes_total";
/// Counter: flushes that ended failed (reported to their worker).
pub const FLUSH_ERRORS_TOTAL: &str = "flush_core_flush_errors_total";
/// Gauge: flush jobs submitted and not yet ended.
pub const INFLIGHT_FLUSHES: &str = "flush_core_inflight_flushes";
/// Gauge: writes waiting for memory.
pub const WRITE_STALLED: &str = "flush_core_write_stalled";

pub fn flush_requested(reason: FlushReason) {
    metrics::counter!(FLUSH_REQUESTS_TOTAL, "reason" => reason.as_str()).increment(1);
}

pub fn flush_started() {
    metrics::gauge!(INFLIGHT_FLUSHES).increment(1.0);
}

pub fn flush_ended() {
    metrics::gauge!(INFLIGHT_FLUSHES).decrement(1.0);
}

pub fn flush_failed() {
    metrics::counter!(FLUSH_ERRORS_TOTAL).increment(1);
}

pub fn flush_committed(bytes: u64, elapsed_ms: u64) {
    metrics::counter!(FLUSH_BYTES_TOTAL).increment(bytes);
    metrics::histogram!(FLUSH_ELAPSED, "stage" => "total").record(elapsed_ms as f64 / 1_000.0);
}

pub fn memtable_encoded(elapsed_ms: u64) {
    metrics::histogram!(FLUSH_ELAPSED, "stage" => "encode").record(elapsed_ms as f64 / 1_000.0);
}

pub fn writes_stalled(count: usize) {
    metrics::gauge!(WRITE_STALLED).increment(count as f64);
}

pub fn writes_released(count: usize) {
    metrics::gauge!(WRITE_STALLED).decrement(count as f64);
}
