//! `flushsim merge`: the reports of many shards (summaries from `sweep
//! --json`, streams from `sweep --jsonl`) made into one report with the
//! schema of a single sweep, after checking that they add up to one:
//!
//! - the same flushsim version, plan generator, workload and bugs
//!   (a seed under two of these is two different runs);
//! - every seed at most once across the inputs (no overlap);
//! - every seed an input promises is there (a stream killed mid-run, a
//!   stream cut short), and every shard K/N of a range is there for K in
//!   1..N, with the same range when no budget could stop them early.
//!
//! A budgeted sweep promises only the seeds it reached (its shards may
//! stop at different seeds); its coverage is checked up to its highest
//! seed. Counts, check tallies, faults and marks sum exactly; `wall_ms` is
//! the longest input's and `peak_rss_mb` the largest (see
//! [`SweepSummary::absorb`]); `fault_coverage` is judged again over the
//! sums.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::seeds::{SeedRange, Shard};
use crate::stream::{Item, ReadStream, StreamError, StreamHeader, StreamReader};
use crate::sweep::{SweepIdentity, SweepSummary};

/// Seeds named in full in a message.
const SEEDS_SHOWN: usize = 6;

/// One shard's report as read, and the seeds it covers.
#[derive(Debug)]
pub struct MergeInput {
    pub source: String,
    pub summary: SweepSummary,
    pub range: Option<SeedRange>,
    pub shard: Shard,
    /// A budget may have stopped it before its range's end.
    pub stops_early: bool,
    /// The seeds it ran, ascending.
    pub seeds: Vec<u64>,
}

#[derive(Debug)]
pub enum MergeProblem {
    Unreadable(StreamError),
    NoInputs,
    BadField {
        source: String,
        detail: String,
    },
    MixedVersions {
        first: String,
        first_identity: Box<SweepIdentity>,
        source: String,
        identity: Box<SweepIdentity>,
    },
    Missing {
        source: String,
        range: String,
        seeds: Vec<u64>,
    },
    Overlap {
        first: String,
        second: String,
        seeds: Vec<u64>,
    },
    MissingShards {
        range: String,
        count: u64,
        absent: Vec<u64>,
        present: Vec<String>,
    },
    MismatchedRanges {
        first: String,
        first_range: String,
        source: String,
        range: String,
    },
}

impl fmt::Display for MergeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MergeProblem::Unreadable(error) => write!(f, "{error}"),
            MergeProblem::NoInputs => write!(
                f,
                "no reports to merge: expected sweep reports (*.json), streams (*.jsonl) or `-` for stdin"
            ),
            MergeProblem::BadField { source, detail } => write!(f, "{source}: {detail}"),
            MergeProblem::MixedVersions { first, first_identity, source, identity } => write!(
                f,
                "mixed versions: {first} is {}, but {source} is {}; expected every shard from \
                 the same flushsim, plan generator, workload and bugs",
                first_identity,
                identity
            ),
            MergeProblem::Missing { source, range, seeds } => write!(
                f,
                "missing seeds: {source} promises the seeds of {range} but lacks {} (a run \
                 killed mid-way? `flushsim sweep ... --resume FILE` finishes a stream)",
                seed_list(seeds)
            ),
            MergeProblem::Overlap { first, second, seeds } => write!(
                f,
                "overlapping shards: {first} and {second} both ran {}; expected each seed once",
                seed_list(seeds)
            ),
            MergeProblem::MissingShards { range, count, absent, present } => {
                let absent: Vec<String> =
                    absent.iter().map(|index| format!("{index}/{count}")).collect();
                write!(
                    f,
                    "missing shards: of the {count} shards of {range}, no input has shard {} \
                     (present: {})",
                    absent.join(", "),
                    present.join(", ")
                )
            }
            MergeProblem::MismatchedRanges { first, first_range, source, range } => write!(
                f,
                "mismatched ranges: {first} is a shard of {first_range} but {source} of \
                 {range}; expected the shards of one range"
            ),
        }
    }
}

fn seed_list(seeds: &[u64]) -> String {
    let shown: Vec<String> = seeds.iter().take(SEEDS_SHOWN).map(u64::to_string).collect();
    let more = if seeds.len() > SEEDS_SHOWN {
        ", …"
    } else {
        ""
    };
    let noun = if seeds.len() == 1 { "seed" } else { "seeds" };
    format!("{} {noun} ({}{more})", seeds.len(), shown.join(", "))
}

/// The files `merge` reads for `arguments`: files as given, a directory's
/// `*.json` and `*.jsonl` in name order; `-` (stdin) stays as it is.
pub fn expand_paths(arguments: &[PathBuf]) -> Result<Vec<PathBuf>, MergeProblem> {
    let mut files = Vec::new();
    for argument in arguments {
        if !argument.is_dir() {
            files.push(argument.clone());
            continue;
        }
        let entries = std::fs::read_dir(argument).map_err(|error| {
            MergeProblem::Unreadable(StreamError::Io {
                source: argument.display().to_string(),
                error,
            })
        })?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| {
                let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                path.is_file() && (extension == "json" || extension == "jsonl")
            })
            .collect();
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// Reads every input; notes (a cut last line skipped) go to `notes`.
pub fn read_inputs(
    paths: &[PathBuf],
    notes: &mut Vec<String>,
) -> Result<Vec<MergeInput>, MergeProblem> {
    let mut inputs = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let stdin = std::io::stdin();
            read_items(
                StreamReader::new(stdin.lock(), "stdin".to_string()),
                &mut inputs,
                notes,
            )?;
        } else {
            read_file(path, &mut inputs, notes)?;
        }
    }
    Ok(inputs)
}

fn read_file(
    path: &Path,
    inputs: &mut Vec<MergeInput>,
    notes: &mut Vec<String>,
) -> Result<(), MergeProblem> {
    let source = path.display().to_string();
    if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
        let text = std::fs::read_to_string(path).map_err(|error| {
            MergeProblem::Unreadable(StreamError::Io {
                source: source.clone(),
                error,
            })
        })?;
        if let Ok(summary) = serde_json::from_str::<SweepSummary>(&text) {
            inputs.push(summary_input(source, summary)?);
            return Ok(());
        }
    }
    let reader = StreamReader::open(path).map_err(MergeProblem::Unreadable)?;
    read_items(reader, inputs, notes)
}

/// Reads a sequence of streams (each opened by its header) and one-line
/// summaries: one file, or many shards' streams concatenated on stdin.
fn read_items<R: BufRead>(
    mut reader: StreamReader<R>,
    inputs: &mut Vec<MergeInput>,
    notes: &mut Vec<String>,
) -> Result<(), MergeProblem> {
    let mut current: Option<(String, ReadStream)> = None;
    let mut streams = 0;
    while let Some(item) = reader.next_item().map_err(MergeProblem::Unreadable)? {
        match item {
            Item::Header(header) => {
                if let Some((source, stream)) = current.take() {
                    inputs.push(stream_input(source, stream)?);
                }
                streams += 1;
                let source = format!(
                    "{} (stream {streams} from line {})",
                    reader.source(),
                    reader.line()
                );
                current = Some((source, ReadStream::empty(header)));
            }
            Item::Seed(report) => match &mut current {
                Some((_, stream)) => stream.summary.add(&report),
                None => {
                    return Err(MergeProblem::Unreadable(StreamError::NoHeader {
                        source: reader.source().to_string(),
                        line: reader.line(),
                    }))
                }
            },
            Item::Summary(summary) => {
                let source = format!("{} line {}", reader.source(), reader.line());
                inputs.push(summary_input(source, *summary)?);
            }
        }
    }
    notes.extend(reader.cut_tail.take());
    if let Some((source, stream)) = current {
        let source = if streams == 1 {
            reader.source().to_string()
        } else {
            source
        };
        inputs.push(stream_input(source, stream)?);
    }
    Ok(())
}

fn parse_field<T: std::str::FromStr<Err = String>>(
    source: &str,
    field: &str,
    text: &str,
) -> Result<T, MergeProblem> {
    text.parse().map_err(|error| MergeProblem::BadField {
        source: source.to_string(),
        detail: format!("{field}: {error}"),
    })
}

fn parse_shard(source: &str, shard: Option<&String>) -> Result<Shard, MergeProblem> {
    shard.map_or(Ok(Shard::WHOLE), |text| parse_field(source, "shard", text))
}

/// A summary covers its shard of its seed range, all of it.
fn summary_input(source: String, summary: SweepSummary) -> Result<MergeInput, MergeProblem> {
    let Some(range_text) = &summary.seed_range else {
        return Err(MergeProblem::BadField {
            source,
            detail: "expected a seed_range, saw none (a sweep of a seed list, an older \
                     flushsim, or a merge of shards that stopped at different seeds): its \
                     coverage cannot be checked"
                .to_string(),
        });
    };
    let range: SeedRange = parse_field(&source, "seed_range", range_text)?;
    let shard = parse_shard(&source, summary.shard.as_ref())?;
    let seeds: Vec<u64> = match range.end {
        Some(end) => range.shard_seeds(shard, end).collect(),
        None => Vec::new(),
    };
    if seeds.len() as u64 != summary.seeds_run {
        return Err(MergeProblem::BadField {
            source,
            detail: format!(
                "expected seeds_run {} (shard {shard} of {range}), saw {}",
                seeds.len(),
                summary.seeds_run
            ),
        });
    }
    Ok(MergeInput {
        source,
        stops_early: summary.stopped_early.is_some(),
        summary,
        range: Some(range),
        shard,
        seeds,
    })
}

/// A stream covers the seeds it has lines for; what it promises is
/// checked against them in [`check`].
fn stream_input(source: String, stream: ReadStream) -> Result<MergeInput, MergeProblem> {
    let ReadStream { header, summary } = stream;
    let StreamHeader {
        seed_range,
        shard,
        stops_early,
        ..
    } = &header;
    let range: SeedRange = parse_field(&source, "seed_range", seed_range)?;
    let shard = parse_shard(&source, shard.as_ref())?;
    let seeds: Vec<u64> = summary.trace_hashes.keys().copied().collect();
    if seeds.len() as u64 != summary.seeds_run {
        return Err(MergeProblem::BadField {
            source,
            detail: format!(
                "expected each seed once, saw {} seed lines for {} seeds",
                summary.seeds_run,
                seeds.len()
            ),
        });
    }
    Ok(MergeInput {
        source,
        summary,
        range: Some(range),
        shard,
        stops_early: *stops_early || range.end.is_none(),
        seeds,
    })
}

/// Every problem that keeps the inputs from adding up to one sweep.
pub fn check(inputs: &[MergeInput]) -> Vec<MergeProblem> {
    let Some(first) = inputs.first() else {
        return vec![MergeProblem::NoInputs];
    };
    let mut problems = Vec::new();
    let first_identity = first.summary.identity();
    for input in inputs {
        let identity = input.summary.identity();
        if identity != first_identity {
            problems.push(MergeProblem::MixedVersions {
                first: first.source.clone(),
                first_identity: Box::new(first_identity.clone()),
                source: input.source.clone(),
                identity: Box::new(identity),
            });
        }
        problems.extend(missing_in(input));
    }
    problems.extend(overlaps(inputs));
    problems.extend(shard_families(inputs));
    problems
}

/// Seeds an input promises but lacks: its shard of its range, up to the
/// range's end, or up to its highest seed when a budget may have stopped
/// it.
fn missing_in(input: &MergeInput) -> Option<MergeProblem> {
    let range = input.range?;
    let end = if input.stops_early {
        input.seeds.last().map_or(range.start, |last| last + 1)
    } else {
        range.end?
    };
    let have: BTreeSet<u64> = input.seeds.iter().copied().collect();
    let seeds: Vec<u64> = range
        .shard_seeds(input.shard, end)
        .filter(|seed| !have.contains(seed))
        .collect();
    let promised = SeedRange {
        start: range.start,
        end: Some(end),
    };
    (!seeds.is_empty()).then(|| MergeProblem::Missing {
        source: input.source.clone(),
        range: format!("shard {} of {promised}", input.shard),
        seeds,
    })
}

fn overlaps(inputs: &[MergeInput]) -> Vec<MergeProblem> {
    let mut owner: BTreeMap<u64, usize> = BTreeMap::new();
    let mut shared: BTreeMap<(usize, usize), Vec<u64>> = BTreeMap::new();
    for (position, input) in inputs.iter().enumerate() {
        for seed in &input.seeds {
            if let Some(first) = owner.insert(*seed, position) {
                shared.entry((first, position)).or_default().push(*seed);
                owner.insert(*seed, first);
            }
        }
    }
    shared
        .into_iter()
        .map(|((first, second), seeds)| MergeProblem::Overlap {
            first: inputs[first].source.clone(),
            second: inputs[second].source.clone(),
            seeds,
        })
        .collect()
}

/// The shards of one range (one start, one count) must all be there, and
/// of the same range unless a budget let them stop at different seeds.
fn shard_families(inputs: &[MergeInput]) -> Vec<MergeProblem> {
    let mut families: BTreeMap<(u64, u64), Vec<&MergeInput>> = BTreeMap::new();
    for input in inputs {
        if let Some(range) = input.range {
            families
                .entry((range.start, input.shard.count))
                .or_default()
                .push(input);
        }
    }
    let mut problems = Vec::new();
    for ((start, count), members) in families {
        let present: BTreeSet<u64> = members.iter().map(|input| input.shard.index).collect();
        let absent: Vec<u64> = (1..=count)
            .filter(|index| !present.contains(index))
            .collect();
        let closed: Vec<&&MergeInput> = members.iter().filter(|input| !input.stops_early).collect();
        let range_of = |input: &MergeInput| input.range.map_or(String::new(), |r| r.to_string());
        if let Some(first) = closed.first() {
            for other in &closed[1..] {
                if other.range != first.range {
                    problems.push(MergeProblem::MismatchedRanges {
                        first: first.source.clone(),
                        first_range: range_of(first),
                        source: other.source.clone(),
                        range: range_of(other),
                    });
                }
            }
        }
        if !absent.is_empty() {
            let range = closed
                .first()
                .map_or(format!("the seeds from {start}"), |first| range_of(first));
            problems.push(MergeProblem::MissingShards {
                range,
                count,
                absent,
                present: members
                    .iter()
                    .map(|input| format!("{} in {}", input.shard, input.source))
                    .collect(),
            });
        }
    }
    problems
}

/// The one report the inputs add up to (after [`check`] found nothing).
pub fn merge(inputs: &[MergeInput]) -> Option<SweepSummary> {
    let first = inputs.first()?;
    let mut merged = SweepSummary::empty(first.summary.identity());
    let mut seeds: BTreeSet<u64> = BTreeSet::new();
    for input in inputs {
        merged.absorb(&input.summary);
        seeds.extend(input.seeds.iter().copied());
    }
    let (low, high) = (seeds.first().copied(), seeds.last().copied());
    if let (Some(low), Some(high)) = (low, high) {
        if high - low + 1 == seeds.len() as u64 {
            merged.seed_range = Some(
                SeedRange {
                    start: low,
                    end: Some(high + 1),
                }
                .to_string(),
            );
        } else {
            merged.stopped_early = Some(format!(
                "the shards stopped at different seeds: {} seeds between {low} and {high}, not \
                 one range",
                seeds.len()
            ));
        }
    }
    merged.conclude();
    Some(merged)
}

#[cfg(test)]
mod tests {
    use flush_core::bugs::Bugs;

    use super::*;
    use crate::sweep::SweepOptions;

    /// An input of shard `index/count` of `range` holding `seeds`.
    fn input(range: &str, index: u64, count: u64, stops_early: bool, seeds: &[u64]) -> MergeInput {
        let identity = SweepOptions::new(vec![], 1, Bugs::NONE).identity();
        let mut summary = SweepSummary::empty(identity);
        summary.seeds_run = seeds.len() as u64;
        MergeInput {
            source: format!("shard-{index}"),
            summary,
            range: Some(range.parse().expect("a range")),
            shard: Shard { index, count },
            stops_early,
            seeds: seeds.to_vec(),
        }
    }

    fn problems(inputs: &[MergeInput]) -> Vec<String> {
        check(inputs).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn budgeted_shards_may_stop_at_different_seeds() {
        let inputs = [
            input("100..", 1, 2, true, &[100, 102, 104, 106]),
            input("100..", 2, 2, true, &[101, 103]),
        ];
        assert_eq!(problems(&inputs), Vec::<String>::new());
        let merged = merge(&inputs).expect("a merge");
        assert_eq!(merged.seeds_run, 6);
        assert_eq!(merged.seed_range, None, "ragged: not one range");
        assert!(merged.stopped_early.is_some());
    }

    #[test]
    fn a_hole_in_a_stream_and_an_absent_budgeted_shard_are_named() {
        let holed = [
            input("100..", 1, 2, true, &[100, 104]),
            input("100..", 2, 2, true, &[101]),
        ];
        let found = problems(&holed);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("missing seeds: shard-1") && found[0].contains("(102)"),
            "{found:?}"
        );
        let alone = [input("100..", 2, 2, true, &[101, 103])];
        let found = problems(&alone);
        assert!(
            found.iter().any(|p| p.contains("no input has shard 1/2")),
            "{found:?}"
        );
    }

    #[test]
    fn unsharded_ranges_side_by_side_merge_into_one_range() {
        let inputs = [
            input("0..3", 1, 1, false, &[0, 1, 2]),
            input("3..5", 1, 1, false, &[3, 4]),
        ];
        assert_eq!(problems(&inputs), Vec::<String>::new());
        let merged = merge(&inputs).expect("a merge");
        assert_eq!(merged.seed_range.as_deref(), Some("0..5"));
    }
}
