//! Which seeds a sweep runs, and in which order: a list or a range (closed
//! `A..B`, or open `A..` for a sweep that runs until a budget is spent),
//! one shard of it, minus the seeds a resumed stream already holds.
//!
//! The order depends on these alone, never on time, jobs or the machine:
//! shard K/N of a range draws `A+K-1, A+K-1+N, …` whether it runs for a
//! second or a night, so a budgeted sweep's seeds are a prefix of that
//! progression, a resume continues it without repeating or skipping a
//! seed, and N shards of one range cover it exactly once.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

/// `K/N`: the K-th of N interleaved slices of the seed list (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| format!("shard '{text}' must look like K/N, e.g. 1/4"))?;
        let index: u64 = index
            .trim()
            .parse()
            .map_err(|_| format!("shard '{text}': K must be a number"))?;
        let count: u64 = count
            .trim()
            .parse()
            .map_err(|_| format!("shard '{text}': N must be a number"))?;
        if count == 0 {
            return Err(format!("shard '{text}': N must be at least 1"));
        }
        if index == 0 || index > count {
            return Err(format!("shard '{text}': K must be between 1 and N={count}"));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The seeds of this shard: every N-th, starting at the K-th.
    pub fn select(self, seeds: &[u64]) -> Vec<u64> {
        seeds
            .iter()
            .enumerate()
            .filter(|(position, _)| *position as u64 % self.count == self.index - 1)
            .map(|(_, seed)| *seed)
            .collect()
    }

    /// The whole sweep: shard 1/1.
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };
}

/// `A..B`: seeds A (inclusive) to B (exclusive).
pub fn parse_seed_range(text: &str) -> Result<Range<u64>, String> {
    let range: SeedRange = text.parse()?;
    match range.end {
        Some(end) => Ok(range.start..end),
        None => Err(format!(
            "seed range '{text}' must look like A..B, e.g. 100..200"
        )),
    }
}

/// `A..B` (B exclusive) or `A..` (open: every seed from A on, for a sweep
/// with a time budget or a failure cap).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeedRange {
    pub start: u64,
    pub end: Option<u64>,
}

impl FromStr for SeedRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (start, end) = text.split_once("..").ok_or_else(|| {
            format!("seed range '{text}' must look like A..B or A.., e.g. 100..200")
        })?;
        let start: u64 = start
            .trim()
            .parse()
            .map_err(|_| format!("seed range '{text}': A must be a number"))?;
        if end.trim().is_empty() {
            return Ok(SeedRange { start, end: None });
        }
        let end: u64 = end
            .trim()
            .parse()
            .map_err(|_| format!("seed range '{text}': B must be a number"))?;
        if start >= end {
            return Err(format!("seed range '{text}' is empty: A must be below B"));
        }
        Ok(SeedRange {
            start,
            end: Some(end),
        })
    }
}

impl fmt::Display for SeedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end {
            Some(end) => write!(f, "{}..{end}", self.start),
            None => write!(f, "{}..", self.start),
        }
    }
}

impl SeedRange {
    pub fn closed(range: Range<u64>) -> Self {
        SeedRange {
            start: range.start,
            end: Some(range.end),
        }
    }

    /// The seeds `shard` runs of this range, below `end` (the range's own
    /// end when it has one), in order.
    pub fn shard_seeds(self, shard: Shard, end: u64) -> impl Iterator<Item = u64> {
        let end = self.end.map_or(end, |own| own.min(end));
        let first = self.start.saturating_add(shard.index - 1);
        (first..end).step_by(usize::try_from(shard.count).unwrap_or(usize::MAX))
    }
}

/// The seeds a sweep is asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seeds {
    /// These seeds, in this order (tests, the determinism check).
    List(Vec<u64>),
    /// A range, in increasing order (the command line).
    Range(SeedRange),
}

impl Seeds {
    /// The range these seeds are, if they are one: what the report
    /// records, and what `merge` checks coverage against.
    pub fn as_range(&self) -> Option<SeedRange> {
        match self {
            Seeds::Range(range) => Some(*range),
            Seeds::List(seeds) => {
                let (first, last) = (*seeds.first()?, *seeds.last()?);
                let contiguous = seeds.windows(2).all(|pair| pair[1] == pair[0] + 1);
                contiguous.then(|| SeedRange::closed(first..last + 1))
            }
        }
    }
}

/// The seeds still to run, handed out one at a time: a shard's slice of
/// [`Seeds`], skipping `done`. Deterministic: the same arguments give the
/// same sequence.
#[derive(Clone, Debug)]
pub struct SeedSource {
    order: Order,
    done: BTreeSet<u64>,
}

#[derive(Clone, Debug)]
enum Order {
    List {
        seeds: Vec<u64>,
        position: usize,
    },
    Range {
        next: Option<u64>,
        end: Option<u64>,
        step: u64,
    },
}

impl SeedSource {
    pub fn new(seeds: &Seeds, shard: Option<Shard>, done: BTreeSet<u64>) -> Self {
        let shard = shard.unwrap_or(Shard::WHOLE);
        let order = match seeds {
            Seeds::List(list) => Order::List {
                seeds: shard.select(list),
                position: 0,
            },
            Seeds::Range(range) => Order::Range {
                next: range.start.checked_add(shard.index - 1),
                end: range.end,
                step: shard.count,
            },
        };
        SeedSource { order, done }
    }

    /// How many seeds are left, when the list or range is closed.
    pub fn remaining(&self) -> Option<u64> {
        let ahead = match &self.order {
            Order::List { seeds, position } => seeds.get(*position..).unwrap_or(&[]).to_vec(),
            Order::Range {
                next: Some(next),
                end: Some(end),
                step,
            } => (*next..*end)
                .step_by(usize::try_from(*step).unwrap_or(usize::MAX))
                .collect(),
            Order::Range { next: None, .. } => Vec::new(),
            Order::Range { end: None, .. } => return None,
        };
        Some(
            ahead
                .iter()
                .filter(|seed| !self.done.contains(seed))
                .count() as u64,
        )
    }

    fn next_in_order(&mut self) -> Option<u64> {
        match &mut self.order {
            Order::List { seeds, position } => {
                let seed = seeds.get(*position).copied()?;
                *position += 1;
                Some(seed)
            }
            Order::Range { next, end, step } => {
                let seed = (*next)?;
                if end.is_some_and(|end| seed >= end) {
                    return None;
                }
                *next = seed.checked_add(*step);
                Some(seed)
            }
        }
    }
}

impl Iterator for SeedSource {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        loop {
            let seed = self.next_in_order()?;
            if !self.done.remove(&seed) {
                return Some(seed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_partition() {
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { index: 2, count: 3 }));
        for bad in ["3/2", "0/2", "1/0", "a/2", "1", "1/b", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad} should not parse");
        }
        let seeds: Vec<u64> = (10..20).collect();
        let mut all: Vec<u64> = (1..=3)
            .flat_map(|index| Shard { index, count: 3 }.select(&seeds))
            .collect();
        all.sort_unstable();
        assert_eq!(all, seeds);
        assert_eq!(
            Shard { index: 1, count: 3 }.select(&seeds),
            vec![10, 13, 16, 19]
        );
    }

    #[test]
    fn seed_ranges_parse() {
        assert_eq!(parse_seed_range("5..8"), Ok(5..8));
        assert_eq!(parse_seed_range(" 0 .. 1 "), Ok(0..1));
        for bad in ["8..5", "5..5", "a..3", "3..", "..3", "3-5", ""] {
            assert!(parse_seed_range(bad).is_err(), "{bad} should not parse");
        }
        let open: SeedRange = "7..".parse().expect("an open range parses");
        assert_eq!(
            open,
            SeedRange {
                start: 7,
                end: None
            }
        );
        assert_eq!(open.to_string(), "7..");
        assert_eq!(
            "3..9".parse::<SeedRange>().map(|r| r.to_string()),
            Ok("3..9".into())
        );
    }

    #[test]
    fn a_range_source_draws_the_same_seeds_as_select_on_the_list() {
        let range = SeedRange::closed(10..31);
        let list: Vec<u64> = (10..31).collect();
        for index in 1..=4 {
            let shard = Shard { index, count: 4 };
            let drawn: Vec<u64> =
                SeedSource::new(&Seeds::Range(range), Some(shard), BTreeSet::new()).collect();
            assert_eq!(drawn, shard.select(&list), "shard {shard}");
            assert_eq!(
                drawn,
                range.shard_seeds(shard, u64::MAX).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn a_resumed_source_fills_the_holes_then_goes_on() {
        let open = Seeds::Range(SeedRange {
            start: 100,
            end: None,
        });
        let shard = Some(Shard { index: 2, count: 3 });
        let done: BTreeSet<u64> = [101, 107, 110].into_iter().collect();
        let drawn: Vec<u64> = SeedSource::new(&open, shard, done).take(4).collect();
        assert_eq!(drawn, vec![104, 113, 116, 119]);
    }

    #[test]
    fn lists_are_ranges_only_when_contiguous_and_ascending() {
        assert_eq!(
            Seeds::List(vec![4, 5, 6]).as_range(),
            Some(SeedRange::closed(4..7))
        );
        assert_eq!(Seeds::List(vec![6, 5, 4]).as_range(), None);
        assert_eq!(Seeds::List(vec![]).as_range(), None);
    }
}
