//! The metrics recorder of a run: the core's `metrics` calls land here
//! (installed thread-locally around the run, so parallel runs never mix),
//! beside a tally of the core's events from every engine generation. At
//! quiescence the `metrics_agree` check holds one against the other: a
//! metric recorded in the wrong place, or not at all on some path, makes
//! the exported numbers lie while every reply and row is right.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use flush_core::events::CoreEvent;
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

/// What the recorder holds and what the events said, at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsReading {
    /// `name{label=value,...}` -> total.
    pub counters: BTreeMap<String, u64>,
    pub gauges: BTreeMap<String, f64>,
    /// `name{label=value,...}` -> how many values were recorded.
    pub histogram_counts: BTreeMap<String, u64>,
    pub events: EventTally,
}

impl MetricsReading {
    /// The sum of every series of counter `name`, whatever its labels.
    pub fn counter_total(&self, name: &str) -> u64 {
        series_of(&self.counters, name).sum()
    }

    pub fn gauge(&self, name: &str) -> f64 {
        self.gauges.get(name).copied().unwrap_or(0.0)
    }

    pub fn histogram_count(&self, series: &str) -> u64 {
        self.histogram_counts.get(series).copied().unwrap_or(0)
    }
}

fn series_of<'a, V: Copy + 'a>(
    map: &'a BTreeMap<String, V>,
    name: &'a str,
) -> impl Iterator<Item = V> + 'a {
    map.iter()
        .filter(move |(series, _)| {
            series.as_str() == name
                || series
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{'))
        })
        .map(|(_, value)| *value)
}

/// The core's events, counted from every engine generation (a dead
/// engine's events are muted in the trace, but its metrics still count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventTally {
    pub flushes_scheduled: u64,
    pub flushes_merged: u64,
    pub flushes_failed: u64,
    pub flushes_committed: u64,
    pub bytes_committed: u64,
    pub ssts_written: u64,
}

#[derive(Clone, Default)]
pub struct SimMetrics {
    state: Arc<Mutex<MetricsReading>>,
}

impl SimMetrics {
    fn lock(&self) -> MutexGuard<'_, MetricsReading> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn reading(&self) -> MetricsReading {
        self.lock().clone()
    }

    pub fn tally(&self, event: &CoreEvent) {
        let mut state = self.lock();
        let tally = &mut state.events;
        match event {
            CoreEvent::FlushScheduled { .. } => tally.flushes_scheduled += 1,
            CoreEvent::FlushMerged { .. } => tally.flushes_merged += 1,
            CoreEvent::FlushFailed { .. } => tally.flushes_failed += 1,
            CoreEvent::FlushCommitted { bytes, .. } => {
                tally.flushes_committed += 1;
                tally.bytes_committed += bytes;
            }
            CoreEvent::SstWritten { .. } => tally.ssts_written += 1,
            _ => {}
        }
    }

    /// A recorder writing into this run's reading.
    pub fn recorder(&self) -> SimRecorder {
        SimRecorder {
            metrics: self.clone(),
        }
    }
}

pub struct SimRecorder {
    metrics: SimMetrics,
}

/// `name{a=1,b=2}`, labels in the order given (the core's are fixed).
fn series(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|label| format!("{}={}", label.key(), label.value()))
        .collect();
    if labels.is_empty() {
        key.name().to_string()
    } else {
        format!("{}{{{}}}", key.name(), labels.join(","))
    }
}

struct Series {
    metrics: SimMetrics,
    name: String,
}

impl CounterFn for Series {
    fn increment(&self, value: u64) {
        *self
            .metrics
            .lock()
            .counters
            .entry(self.name.clone())
            .or_default() += value;
    }

    fn absolute(&self, value: u64) {
        self.metrics
            .lock()
            .counters
            .insert(self.name.clone(), value);
    }
}

impl GaugeFn for Series {
    fn increment(&self, value: f64) {
        *self
            .metrics
            .lock()
            .gauges
            .entry(self.name.clone())
            .or_default() += value;
    }

    fn decrement(&self, value: f64) {
        GaugeFn::increment(self, -value);
    }

    fn set(&self, value: f64) {
        self.metrics.lock().gauges.insert(self.name.clone(), value);
    }
}

impl HistogramFn for Series {
    fn record(&self, _value: f64) {
        *self
            .metrics
            .lock()
            .histogram_counts
            .entry(self.name.clone())
            .or_default() += 1;
    }
}

impl SimRecorder {
    fn series(&self, key: &Key) -> Arc<Series> {
        Arc::new(Series {
            metrics: self.metrics.clone(),
            name: series(key),
        })
    }
}

impl Recorder for SimRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.series(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.series(key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.series(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_sum_over_labels_and_gauges_move_both_ways() {
        let metrics = SimMetrics::default();
        let recorder = metrics.recorder();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("c", "reason" => "a").increment(2);
            metrics::counter!("c", "reason" => "b").increment(3);
            metrics::counter!("cc").increment(7);
            metrics::gauge!("g").increment(2.0);
            metrics::gauge!("g").decrement(1.0);
            metrics::histogram!("h", "stage" => "total").record(0.5);
        });
        let reading = metrics.reading();
        assert_eq!(reading.counter_total("c"), 5);
        assert_eq!(reading.counter_total("cc"), 7);
        assert_eq!(reading.gauge("g"), 1.0);
        assert_eq!(reading.histogram_count("h{stage=total}"), 1);
    }
}
