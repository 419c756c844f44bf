//! The event trace of a run and its hash.
//!
//! Every request, reply, injected fault, core event and phase change becomes
//! one line stamped with simulated time. The lines are folded into a 64-bit
//! FNV-1a hash as they come: two runs of a seed are the same run exactly when
//! their hashes match. Lines are kept only when asked (`replay --trace`).
//!
//! The busiest sources (core events, requests, replies: three lines in four)
//! are hashed from their fields (`Hash`), never formatted unless the lines
//! are kept; the rest come as `fmt::Arguments`, formatted straight into the
//! hash. Either way a sweep, which keeps no lines, builds no text for its
//! trace. `Hash` feeds integers in native byte order: hashes are the same
//! on every little-endian 64-bit machine, which is all we run on.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::Serialize;

/// One line of the trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TraceLine {
    /// Position in the trace: the logical clock of the run.
    pub step: u64,
    /// Simulated time since the run started, in microseconds.
    pub t_us: u64,
    pub source: &'static str,
    pub text: String,
}

impl TraceLine {
    pub fn render(&self) -> String {
        format!(
            "{:>6}.{:03}ms {:<8} {}",
            self.t_us / 1_000,
            self.t_us % 1_000,
            self.source,
            self.text
        )
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bit: tiny, stable across platforms and versions.
#[derive(Clone, Copy, Debug)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(FNV_OFFSET)
    }
}

impl Fnv64 {
    pub fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// Lets a line's fields be hashed with their own `Hash`.
impl Hasher for Fnv64 {
    fn write(&mut self, bytes: &[u8]) {
        Fnv64::write(self, bytes);
    }

    fn finish(&self) -> u64 {
        Fnv64::finish(self)
    }
}

/// Formats text into the hash without building a string.
impl fmt::Write for Fnv64 {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.write(text.as_bytes());
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct Trace {
    hash: Fnv64,
    events: u64,
    keep_lines: bool,
    lines: Vec<TraceLine>,
    /// Core-event counts by mark name.
    marks: BTreeMap<&'static str, u64>,
}

impl Trace {
    pub fn new(keep_lines: bool) -> Self {
        Trace {
            keep_lines,
            ..Trace::default()
        }
    }

    /// Appends a line; returns its step.
    pub fn record(&mut self, t_us: u64, source: &'static str, text: fmt::Arguments<'_>) -> u64 {
        self.begin(t_us, source);
        // Writing into the hash cannot fail; a `Display` impl that errs
        // would be our bug and shows as a hash that differs.
        let _ = fmt::Write::write_fmt(&mut self.hash, text);
        self.end(t_us, source, || text.to_string())
    }

    /// Appends a line hashed from `fields`; `text` makes its text, called
    /// only when lines are kept. Returns its step.
    pub fn record_fields(
        &mut self,
        t_us: u64,
        source: &'static str,
        fields: &impl Hash,
        text: impl FnOnce() -> String,
    ) -> u64 {
        self.begin(t_us, source);
        fields.hash(&mut self.hash);
        self.end(t_us, source, text)
    }

    fn begin(&mut self, t_us: u64, source: &'static str) {
        self.hash.write(&t_us.to_le_bytes());
        self.hash.write(source.as_bytes());
        self.hash.write(b" ");
    }

    fn end(&mut self, t_us: u64, source: &'static str, text: impl FnOnce() -> String) -> u64 {
        self.hash.write(b"\n");
        self.events += 1;
        let step = self.events;
        if self.keep_lines {
            self.lines.push(TraceLine {
                step,
                t_us,
                source,
                text: text(),
            });
        }
        step
    }

    pub fn mark(&mut self, mark: &'static str) {
        *self.marks.entry(mark).or_default() += 1;
    }

    /// The step the next line will get.
    pub fn next_step(&self) -> u64 {
        self.events + 1
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    pub fn marks(&self) -> &BTreeMap<&'static str, u64> {
        &self.marks
    }

    pub fn take_lines(&mut self) -> Vec<TraceLine> {
        std::mem::take(&mut self.lines)
    }
}

/// A trace hash as printed: 16 hex digits.
pub fn format_hash(hash: u64) -> String {
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_values() {
        let mut empty = Fnv64::default();
        empty.write(b"");
        assert_eq!(empty.finish(), 0xcbf2_9ce4_8422_2325);
        let mut a = Fnv64::default();
        a.write(b"a");
        assert_eq!(a.finish(), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn hash_depends_on_time_and_order() {
        let mut one = Trace::new(false);
        one.record(1, "x", format_args!("a"));
        one.record(2, "x", format_args!("b"));
        let mut two = Trace::new(false);
        two.record(1, "x", format_args!("b"));
        two.record(2, "x", format_args!("a"));
        let mut three = Trace::new(true);
        three.record(1, "x", format_args!("a"));
        three.record(3, "x", format_args!("b"));
        assert_ne!(one.hash(), two.hash());
        assert_ne!(one.hash(), three.hash());
        assert_eq!(three.take_lines().len(), 2);
    }

    #[test]
    fn formatted_lines_hash_as_their_text() {
        let mut formatted = Trace::new(true);
        formatted.record(7, "src", format_args!("{} of {:>3}", 12, "ab"));
        let mut text = Fnv64::default();
        text.write(&7u64.to_le_bytes());
        text.write(b"src 12 of  ab\n");
        assert_eq!(formatted.hash(), text.finish());
        assert_eq!(formatted.take_lines()[0].text, "12 of  ab");
    }

    #[test]
    fn fielded_lines_hash_their_fields_and_keep_their_text() {
        let mut one = Trace::new(true);
        one.record_fields(5, "core", &(1u64, "a"), || "one a".to_string());
        let mut other = Trace::new(false);
        other.record_fields(5, "core", &(2u64, "a"), || unreachable!("lines not kept"));
        let mut same = Trace::new(false);
        same.record_fields(5, "core", &(1u64, "a"), || unreachable!("lines not kept"));
        assert_ne!(one.hash(), other.hash());
        assert_eq!(one.hash(), same.hash());
        assert_eq!(one.take_lines()[0].text, "one a");
    }
}
