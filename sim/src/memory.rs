//! What the process holds in memory: its resident set now and at its peak,
//! read from `/proc/self/status` (Linux). A sweep reports its peak so the
//! next leak shows up in every report, and the bounded-memory test reads
//! the resident set between runs.
//!
//! Read outside the simulation only: a reading never steers a run.

/// Peak resident set of this process so far, in MiB (`VmHWM`); `None`
/// where `/proc` does not tell.
pub fn peak_rss_mb() -> Option<u64> {
    status_kib("VmHWM:").map(|kib| kib.div_ceil(1024))
}

/// Resident set of this process now, in MiB (`VmRSS`); `None` where
/// `/proc` does not tell.
pub fn rss_mb() -> Option<u64> {
    status_kib("VmRSS:").map(|kib| kib.div_ceil(1024))
}

/// The value of one `kB` line of `/proc/self/status`.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kib(&status, field)
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(field))?;
    let value = line[field.len()..].trim().strip_suffix("kB")?;
    value.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        let status = "Name:\tflushsim\nVmHWM:\t   31936 kB\nVmRSS:\t   20480 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(31_936));
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(20_480));
        assert_eq!(parse_status_kib(status, "VmSwap:"), None);
        assert_eq!(parse_status_kib("VmHWM:\tlots\n", "VmHWM:"), None);
    }

    #[test]
    fn this_process_has_a_resident_set_no_larger_than_its_peak() {
        if let (Some(now), Some(peak)) = (rss_mb(), peak_rss_mb()) {
            assert!(now > 0);
            assert!(now <= peak, "resident {now} MiB above peak {peak} MiB");
        }
    }
}
