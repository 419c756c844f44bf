//! The checks a run makes, by name: one enum instead of string constants,
//! so a misspelt check is a compile error. A leaf module: the world records
//! a violation of a check without importing the checks themselves (they
//! live in `oracle`); reports and JSON keep the snake-case names.

use std::fmt;

macro_rules! checks {
    ($($variant:ident = $name:literal,)*) => {
        /// One named check.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Check { $($variant,)* }

        impl Check {
            /// Every check, in report order.
            pub const ALL: &'static [Check] = &[$(Check::$variant,)*];

            /// The name reports, JSON and messages use.
            pub const fn as_str(self) -> &'static str {
                match self { $(Check::$variant => $name,)* }
            }
        }
    };
}

checks! {
    ExactlyOnceReply = "exactly_once_reply",
    ReplyKind = "reply_kind",
    BufferAccounting = "buffer_accounting",
    SchedulerState = "scheduler_state",
    NoLostRows = "no_lost_rows",
    ManifestConsistency = "manifest_consistency",
    MonotonicFlushMarks = "monotonic_flush_marks",
    Liveness = "liveness",
    Recovery = "recovery",
    NoOrphanSsts = "no_orphan_ssts",
    IdleMemory = "idle_memory",
    VersionMatchesManifest = "version_matches_manifest",
    Writability = "writability",
    MetricsAgree = "metrics_agree",
    FaultCoverage = "fault_coverage",
    NoPanic = "no_panic",
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        for check in Check::ALL {
            let name = check.as_str();
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
        }
        let mut names: Vec<&str> = Check::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Check::ALL.len());
    }
}
