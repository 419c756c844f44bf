//! When a long sweep stops drawing seeds: a time budget (`--time-budget
//! 8h`) or a number of failed seeds (`--until-failures K`).
//!
//! A budget decides only *how many* seeds run, never *which*: the sweep
//! draws its seeds in the fixed order of [`crate::seeds::SeedSource`] and
//! checks the rule before each draw, so a budgeted sweep runs a prefix of
//! that order and every seed's outcome is the one it has in any other
//! sweep. Seeds already running when the rule trips are finished and
//! counted, so the seeds run stay a prefix with no hole.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The longest budget accepted: a year, far past any CI job's limit.
const BUDGET_SECONDS_MAX: u64 = 366 * 24 * 3_600;

/// `--time-budget`: a duration written with units, `90s`, `30m`, `8h`,
/// `1h30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeBudget(pub Duration);

impl FromStr for TimeBudget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let expected = "expected a duration with units, e.g. 90s, 30m, 8h or 1h30m";
        let mut seconds: u64 = 0;
        let mut digits = String::new();
        for character in text.trim().chars() {
            if character.is_ascii_digit() {
                digits.push(character);
                continue;
            }
            let unit_seconds = match character {
                's' => 1,
                'm' => 60,
                'h' => 3_600,
                'd' => 86_400,
                _ => return Err(format!("time budget '{text}': {expected}")),
            };
            let count: u64 = digits
                .parse()
                .map_err(|_| format!("time budget '{text}': {expected}"))?;
            digits.clear();
            seconds = count
                .checked_mul(unit_seconds)
                .and_then(|part| seconds.checked_add(part))
                .ok_or_else(|| format!("time budget '{text}' is too long"))?;
        }
        if !digits.is_empty() {
            return Err(format!(
                "time budget '{text}': '{digits}' has no unit; {expected}"
            ));
        }
        if seconds == 0 {
            return Err(format!("time budget '{text}': {expected}, above zero"));
        }
        if seconds > BUDGET_SECONDS_MAX {
            return Err(format!(
                "time budget '{text}' is too long: at most {} days",
                BUDGET_SECONDS_MAX / 86_400
            ));
        }
        Ok(TimeBudget(Duration::from_secs(seconds)))
    }
}

impl fmt::Display for TimeBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0.as_secs();
        let (hours, minutes, rest) = (seconds / 3_600, seconds / 60 % 60, seconds % 60);
        let mut written = false;
        for (value, unit) in [(hours, "h"), (minutes, "m"), (rest, "s")] {
            if value > 0 {
                write!(f, "{value}{unit}")?;
                written = true;
            }
        }
        if !written {
            write!(f, "0s")?;
        }
        Ok(())
    }
}

/// What stops a sweep before the end of its seeds; both off: it runs them
/// all (and an open range needs one of them on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StopRule {
    pub time_budget: Option<TimeBudget>,
    pub until_failures: Option<u64>,
}

impl StopRule {
    pub fn is_set(&self) -> bool {
        self.time_budget.is_some() || self.until_failures.is_some()
    }

    /// Why the sweep must stop drawing seeds now, if it must: after
    /// `elapsed` wall time with `failed` seeds failed so far.
    pub fn tripped(&self, elapsed: Duration, failed: u64) -> Option<String> {
        if let Some(budget) = self.time_budget {
            if elapsed >= budget.0 {
                return Some(format!("time budget {budget} spent"));
            }
        }
        match self.until_failures {
            Some(limit) if failed >= limit => {
                Some(format!("{failed} seeds failed (--until-failures {limit})"))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_with_units_and_print_back() {
        for (text, seconds) in [
            ("30s", 30),
            ("8h", 28_800),
            ("1h30m", 5_400),
            ("2d", 172_800),
        ] {
            let budget: TimeBudget = text.parse().expect("a budget with units parses");
            assert_eq!(budget.0.as_secs(), seconds, "{text}");
            let again: TimeBudget = budget.to_string().parse().expect("printed budgets parse");
            assert_eq!(again, budget, "{text}");
        }
        for bad in ["", "30", "0s", "h", "1x", "1.5h", "-3s", "999999999h"] {
            assert!(bad.parse::<TimeBudget>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn the_rule_trips_on_time_or_failures_and_says_which() {
        let rule = StopRule {
            time_budget: Some(TimeBudget(Duration::from_secs(10))),
            until_failures: Some(2),
        };
        assert_eq!(rule.tripped(Duration::from_secs(9), 1), None);
        let spent = rule.tripped(Duration::from_secs(10), 0);
        assert!(spent.is_some_and(|why| why.contains("time budget 10s")));
        let failed = rule.tripped(Duration::ZERO, 2);
        assert!(failed.is_some_and(|why| why.contains("--until-failures 2")));
        assert_eq!(StopRule::default().tripped(Duration::MAX, u64::MAX), None);
    }
}
