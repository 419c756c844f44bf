//! `metrics_agree`: the core's exported metrics tell the truth.

use super::*;

/// At quiescence the core's exported metrics tell the truth: no flush in
/// flight and no write stalled unless the engine says so, and every
/// counter equal to what the core's events (from every engine generation)
/// saw happen.
pub(super) fn metrics_agree(observed: &Observations, violations: &Violations) -> CheckResult {
    if !observed.quiescent {
        return not_quiescent(Check::MetricsAgree);
    }
    let metrics = &observed.metrics_at_views;
    let alive = &observed.alive_buffers;
    let flushes_running: usize = alive.iter().map(|b| b.flushes_running).sum();
    let stalled_writes: usize = alive.iter().map(|b| b.stalled_writes).sum();
    let events = &metrics.events;
    let mut problems = Vec::new();
    let mut expect = |what: &str, expected: f64, seen: f64| {
        if expected != seen {
            problems.push(format!("{what}: expected {expected}, saw {seen}"));
        }
    };
    expect(
        telemetry::INFLIGHT_FLUSHES,
        flushes_running as f64,
        metrics.gauge(telemetry::INFLIGHT_FLUSHES),
    );
    expect(
        telemetry::WRITE_STALLED,
        stalled_writes as f64,
        metrics.gauge(telemetry::WRITE_STALLED),
    );
    expect(
        telemetry::FLUSH_REQUESTS_TOTAL,
        (events.flushes_scheduled + events.flushes_merged) as f64,
        metrics.counter_total(telemetry::FLUSH_REQUESTS_TOTAL) as f64,
    );
    expect(
        telemetry::FLUSH_ERRORS_TOTAL,
        events.flushes_failed as f64,
        metrics.counter_total(telemetry::FLUSH_ERRORS_TOTAL) as f64,
    );
    expect(
        telemetry::FLUSH_BYTES_TOTAL,
        events.bytes_committed as f64,
        metrics.counter_total(telemetry::FLUSH_BYTES_TOTAL) as f64,
    );
    let total = format!("{}{{stage=total}}", telemetry::FLUSH_ELAPSED);
    expect(
        &total,
        events.flushes_committed as f64,
        metrics.histogram_count(&total) as f64,
    );
    let encode = format!("{}{{stage=encode}}", telemetry::FLUSH_ELAPSED);
    let encoded = metrics.histogram_count(&encode);
    if encoded < events.ssts_written {
        problems.push(format!(
            "{encode}: expected at least one encoding per SST written ({}), saw {encoded}",
            events.ssts_written
        ));
    }
    CheckResult::from_problems(
        Check::MetricsAgree,
        format!(
            "{} flush requests, {} failures, {} bytes flushed: every metric agrees",
            events.flushes_scheduled + events.flushes_merged,
            events.flushes_failed,
            events.bytes_committed
        ),
        violations.of(Check::MetricsAgree),
        problems,
    )
}
