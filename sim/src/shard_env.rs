//! `--shard auto`: the shard index and count from the environment of the
//! engine the sweep runs on, so a CI matrix, a Kubernetes Indexed Job or a
//! batch array fans a sweep out with no script around it.
//!
//! | engine | index | count |
//! |---|---|---|
//! | flushsim's own (GitHub Actions matrix, anything else) | `FLUSHSIM_SHARD_INDEX`, 1-based like `--shard K/N` | `FLUSHSIM_SHARD_COUNT` |
//! | Kubernetes Indexed Job | `JOB_COMPLETION_INDEX`, 0-based | `FLUSHSIM_SHARD_COUNT` (Kubernetes gives no count: set it to the Job's `completions`) |
//! | GitLab CI `parallel:` | `CI_NODE_INDEX`, 1-based | `CI_NODE_TOTAL` |
//! | Buildkite `parallelism:` | `BUILDKITE_PARALLEL_JOB`, 0-based | `BUILDKITE_PARALLEL_JOB_COUNT` |
//! | Slurm array | `SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN` (÷ `SLURM_ARRAY_TASK_STEP`) | `SLURM_ARRAY_TASK_COUNT` |
//!
//! Slurm task ids need not start at 0 or 1 (`--array=5-8`), so the index
//! is the id's offset from `SLURM_ARRAY_TASK_MIN`; an array with gaps
//! (`--array=1,4,9`) has no K/N reading and is refused.
//!
//! Engines set these variables for their own reasons too (GitLab's
//! `parallel:` may fan out a matrix of configurations, not shards), so
//! auto-sharding happens only when asked for with `--shard auto`; a sweep
//! without `--shard` that sees them prints a note and runs all its seeds.
//! Anything partial or inconsistent is an error naming the variables: a
//! shard silently misread would drop or repeat seeds across the fleet.

use std::fmt;
use std::str::FromStr;

use crate::seeds::Shard;

/// `--shard K/N` or `--shard auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardArg {
    Fixed(Shard),
    Auto,
}

impl FromStr for ShardArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim() == "auto" {
            return Ok(ShardArg::Auto);
        }
        if !text.contains('/') {
            return Err(format!(
                "shard '{text}' must look like K/N, e.g. 1/4, or be auto"
            ));
        }
        text.parse().map(ShardArg::Fixed)
    }
}

/// [`detect`] over the process's environment.
pub fn detect_from_process() -> Result<Option<DetectedShard>, ShardEnvError> {
    detect(&|name| std::env::var(name).ok())
}

/// The engines `--shard auto` reads, in the order they are looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Flushsim,
    Kubernetes,
    GitLab,
    Buildkite,
    Slurm,
}

impl Engine {
    pub const ALL: [Engine; 5] = [
        Engine::Flushsim,
        Engine::Kubernetes,
        Engine::GitLab,
        Engine::Buildkite,
        Engine::Slurm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Engine::Flushsim => "flushsim variables (e.g. from a GitHub Actions matrix)",
            Engine::Kubernetes => "Kubernetes Indexed Job",
            Engine::GitLab => "GitLab CI parallel",
            Engine::Buildkite => "Buildkite parallelism",
            Engine::Slurm => "Slurm array",
        }
    }

    /// The variables that mark this engine as present.
    fn index_variable(self) -> &'static str {
        match self {
            Engine::Flushsim => "FLUSHSIM_SHARD_INDEX",
            Engine::Kubernetes => "JOB_COMPLETION_INDEX",
            Engine::GitLab => "CI_NODE_INDEX",
            Engine::Buildkite => "BUILDKITE_PARALLEL_JOB",
            Engine::Slurm => "SLURM_ARRAY_TASK_ID",
        }
    }

    fn count_variable(self) -> &'static str {
        match self {
            Engine::Flushsim | Engine::Kubernetes => "FLUSHSIM_SHARD_COUNT",
            Engine::GitLab => "CI_NODE_TOTAL",
            Engine::Buildkite => "BUILDKITE_PARALLEL_JOB_COUNT",
            Engine::Slurm => "SLURM_ARRAY_TASK_COUNT",
        }
    }
}

/// A shard read from the environment, and from what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetectedShard {
    pub shard: Shard,
    pub engine: Engine,
    /// The variables read, `NAME=value, …`.
    pub variables: String,
}

impl fmt::Display for DetectedShard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shard {} from the {} ({})",
            self.shard,
            self.engine.name(),
            self.variables
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardEnvError {
    /// `--shard auto` and no engine's variables set.
    NoneFound,
    /// An index without its count, or a count without an index.
    Partial {
        present: String,
        missing: String,
    },
    NotANumber {
        variable: String,
        value: String,
    },
    /// The index is past the count (after the engine's own base).
    OutOfRange {
        variables: String,
        detail: String,
    },
    /// Two engines' variables give different shards.
    Conflict {
        first: String,
        second: String,
    },
}

impl fmt::Display for ShardEnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardEnvError::NoneFound => {
                let pairs: Vec<String> = Engine::ALL
                    .iter()
                    .map(|engine| {
                        format!("{}/{}", engine.index_variable(), engine.count_variable())
                    })
                    .collect();
                write!(
                    f,
                    "--shard auto: expected a shard index and count in the environment, saw \
                     none of {}",
                    pairs.join(", ")
                )
            }
            ShardEnvError::Partial { present, missing } => write!(
                f,
                "--shard auto: {present} is set but {missing} is not; expected both"
            ),
            ShardEnvError::NotANumber { variable, value } => write!(
                f,
                "--shard auto: expected {variable} to be a whole number, saw '{value}'"
            ),
            ShardEnvError::OutOfRange { variables, detail } => {
                write!(f, "--shard auto: {variables}: {detail}")
            }
            ShardEnvError::Conflict { first, second } => write!(
                f,
                "--shard auto: two engines disagree: {first}, but {second}; expected one \
                 shard, unset one engine's variables"
            ),
        }
    }
}

/// Reads the shard of the first engine whose variables are set from `env`
/// (`std::env::var` in the CLI, a map in tests); `Ok(None)` when none is.
/// A second engine's variables must give the same shard.
pub fn detect(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<DetectedShard>, ShardEnvError> {
    let mut found: Option<DetectedShard> = None;
    for engine in Engine::ALL {
        let Some(detected) = read_engine(engine, env)? else {
            continue;
        };
        match &found {
            None => found = Some(detected),
            Some(first) if first.shard == detected.shard => {}
            Some(first) => {
                return Err(ShardEnvError::Conflict {
                    first: first.to_string(),
                    second: detected.to_string(),
                })
            }
        }
    }
    if found.is_none() {
        check_no_orphan_count(env)?;
    }
    Ok(found)
}

/// `FLUSHSIM_SHARD_COUNT` alone means a forgotten index.
fn check_no_orphan_count(env: &dyn Fn(&str) -> Option<String>) -> Result<(), ShardEnvError> {
    let Some(count) = env("FLUSHSIM_SHARD_COUNT") else {
        return Ok(());
    };
    Err(ShardEnvError::Partial {
        present: format!("FLUSHSIM_SHARD_COUNT={count}"),
        missing: "FLUSHSIM_SHARD_INDEX (or Kubernetes' JOB_COMPLETION_INDEX)".to_string(),
    })
}

fn read_engine(
    engine: Engine,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<DetectedShard>, ShardEnvError> {
    let (index_name, count_name) = (engine.index_variable(), engine.count_variable());
    let index = env(index_name);
    let count = env(count_name);
    let (index, count) = match (index, count) {
        (None, None) => return Ok(None),
        // The count variable is shared with Kubernetes: alone, it is the
        // other engine's (or an orphan, caught when no engine is found).
        (None, Some(_)) if engine == Engine::Flushsim || engine == Engine::Kubernetes => {
            return Ok(None)
        }
        (None, Some(count)) => {
            return Err(ShardEnvError::Partial {
                present: format!("{count_name}={count}"),
                missing: index_name.to_string(),
            })
        }
        (Some(index), None) => {
            return Err(ShardEnvError::Partial {
                present: format!("{index_name}={index}"),
                missing: count_name.to_string(),
            })
        }
        (Some(index), Some(count)) => (index, count),
    };
    let mut variables = format!("{index_name}={index}, {count_name}={count}");
    let raw_index = number(index_name, &index)?;
    let count_value = number(count_name, &count)?;
    let position = match engine {
        Engine::Flushsim | Engine::GitLab => {
            raw_index
                .checked_sub(1)
                .ok_or_else(|| ShardEnvError::OutOfRange {
                    variables: variables.clone(),
                    detail: format!("{index_name} is 1-based, expected 1 to {count_value}, saw 0"),
                })?
        }
        Engine::Kubernetes | Engine::Buildkite => raw_index,
        Engine::Slurm => slurm_position(raw_index, count_value, env, &mut variables)?,
    };
    let shard = Shard {
        index: position + 1,
        count: count_value,
    };
    if count_value == 0 || position >= count_value {
        return Err(ShardEnvError::OutOfRange {
            variables,
            detail: format!(
                "expected a count of at least 1 and an index below it (shard K/N with 1 <= K \
                 <= N), saw shard {}/{count_value}",
                position + 1
            ),
        });
    }
    Ok(Some(DetectedShard {
        shard,
        engine,
        variables,
    }))
}

/// The 0-based position of a Slurm array task: its id's offset from the
/// array's lowest id, in steps. Gapped arrays are refused: their ids do
/// not number the tasks 0..COUNT.
fn slurm_position(
    id: u64,
    count: u64,
    env: &dyn Fn(&str) -> Option<String>,
    variables: &mut String,
) -> Result<u64, ShardEnvError> {
    let read = |name: &str, variables: &mut String| -> Result<Option<u64>, ShardEnvError> {
        let Some(value) = env(name) else {
            return Ok(None);
        };
        variables.push_str(&format!(", {name}={value}"));
        number(name, &value).map(Some)
    };
    let min = read("SLURM_ARRAY_TASK_MIN", variables)?.ok_or_else(|| ShardEnvError::Partial {
        present: "SLURM_ARRAY_TASK_ID".to_string(),
        missing: "SLURM_ARRAY_TASK_MIN (task ids need not start at 0)".to_string(),
    })?;
    let step = read("SLURM_ARRAY_TASK_STEP", variables)?
        .unwrap_or(1)
        .max(1);
    let max = read("SLURM_ARRAY_TASK_MAX", variables)?;
    let out_of_range = |detail: String| ShardEnvError::OutOfRange {
        variables: variables.clone(),
        detail,
    };
    let offset = id
        .checked_sub(min)
        .ok_or_else(|| out_of_range("the task id is below the array's lowest id".to_string()))?;
    if offset % step != 0 {
        return Err(out_of_range(format!(
            "the task id is not on the array's step of {step}"
        )));
    }
    let gapless_max = count
        .checked_sub(1)
        .and_then(|tasks| tasks.checked_mul(step))
        .and_then(|span| span.checked_add(min));
    if max.is_some() && max != gapless_max {
        return Err(out_of_range(format!(
            "expected an array without gaps (ids MIN, MIN+STEP, … with COUNT ids, e.g. \
             --array=0-{}), saw ids up to {} for {count} tasks",
            count.saturating_sub(1),
            max.unwrap_or_default()
        )));
    }
    Ok(offset / step)
}

fn number(variable: &str, value: &str) -> Result<u64, ShardEnvError> {
    value.trim().parse().map_err(|_| ShardEnvError::NotANumber {
        variable: variable.to_string(),
        value: value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Environment variables as (name, value) pairs.
    type Env<'a> = &'a [(&'a str, &'a str)];

    fn detect_in(pairs: &[(&str, &str)]) -> Result<Option<DetectedShard>, ShardEnvError> {
        let env: BTreeMap<String, String> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        detect(&|name| env.get(name).cloned())
    }

    fn shard_of(pairs: &[(&str, &str)]) -> (u64, u64, Engine) {
        let detected = detect_in(pairs)
            .unwrap_or_else(|error| panic!("{pairs:?}: {error}"))
            .unwrap_or_else(|| panic!("{pairs:?}: no shard found"));
        (detected.shard.index, detected.shard.count, detected.engine)
    }

    #[test]
    fn each_engine_maps_its_own_base_to_shard_k_of_n() {
        use Engine::*;
        let cases: &[(Env, (u64, u64, Engine))] = &[
            (
                &[("FLUSHSIM_SHARD_INDEX", "1"), ("FLUSHSIM_SHARD_COUNT", "4")],
                (1, 4, Flushsim),
            ),
            (
                &[("JOB_COMPLETION_INDEX", "0"), ("FLUSHSIM_SHARD_COUNT", "4")],
                (1, 4, Kubernetes),
            ),
            (
                &[("JOB_COMPLETION_INDEX", "3"), ("FLUSHSIM_SHARD_COUNT", "4")],
                (4, 4, Kubernetes),
            ),
            (
                &[("CI_NODE_INDEX", "2"), ("CI_NODE_TOTAL", "4")],
                (2, 4, GitLab),
            ),
            (
                &[
                    ("BUILDKITE_PARALLEL_JOB", "2"),
                    ("BUILDKITE_PARALLEL_JOB_COUNT", "4"),
                ],
                (3, 4, Buildkite),
            ),
            (
                &[
                    ("SLURM_ARRAY_TASK_ID", "7"),
                    ("SLURM_ARRAY_TASK_COUNT", "4"),
                    ("SLURM_ARRAY_TASK_MIN", "5"),
                    ("SLURM_ARRAY_TASK_MAX", "8"),
                ],
                (3, 4, Slurm),
            ),
            (
                &[
                    ("SLURM_ARRAY_TASK_ID", "20"),
                    ("SLURM_ARRAY_TASK_COUNT", "3"),
                    ("SLURM_ARRAY_TASK_MIN", "10"),
                    ("SLURM_ARRAY_TASK_STEP", "5"),
                ],
                (3, 3, Slurm),
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(shard_of(pairs), *expected, "{pairs:?}");
        }
        assert_eq!(detect_in(&[("HOME", "/root")]), Ok(None));
    }

    #[test]
    fn agreeing_engines_are_fine_and_disagreeing_ones_are_named() {
        let both = [
            ("CI_NODE_INDEX", "2"),
            ("CI_NODE_TOTAL", "4"),
            ("BUILDKITE_PARALLEL_JOB", "1"),
            ("BUILDKITE_PARALLEL_JOB_COUNT", "4"),
        ];
        assert_eq!(shard_of(&both), (2, 4, Engine::GitLab));
        let mut clash = both;
        clash[2].1 = "0";
        let error = detect_in(&clash).expect_err("two shards").to_string();
        assert!(
            error.contains("CI_NODE_INDEX=2") && error.contains("BUILDKITE_PARALLEL_JOB=0"),
            "{error}"
        );
    }

    #[test]
    fn partial_out_of_range_and_non_numeric_values_name_the_variables() {
        let cases: &[(Env, &str)] = &[
            (&[("CI_NODE_INDEX", "2")], "CI_NODE_TOTAL is not"),
            (&[("CI_NODE_TOTAL", "2")], "CI_NODE_INDEX is not"),
            (
                &[("JOB_COMPLETION_INDEX", "1")],
                "FLUSHSIM_SHARD_COUNT is not",
            ),
            (&[("FLUSHSIM_SHARD_COUNT", "4")], "FLUSHSIM_SHARD_INDEX"),
            (
                &[("FLUSHSIM_SHARD_INDEX", "0"), ("FLUSHSIM_SHARD_COUNT", "4")],
                "1-based",
            ),
            (
                &[("CI_NODE_INDEX", "5"), ("CI_NODE_TOTAL", "4")],
                "shard 5/4",
            ),
            (
                &[
                    ("BUILDKITE_PARALLEL_JOB", "4"),
                    ("BUILDKITE_PARALLEL_JOB_COUNT", "4"),
                ],
                "shard 5/4",
            ),
            (
                &[
                    ("BUILDKITE_PARALLEL_JOB", "x"),
                    ("BUILDKITE_PARALLEL_JOB_COUNT", "4"),
                ],
                "BUILDKITE_PARALLEL_JOB to be a whole number, saw 'x'",
            ),
            (
                &[("CI_NODE_INDEX", "1"), ("CI_NODE_TOTAL", "0")],
                "at least 1",
            ),
            (
                &[
                    ("SLURM_ARRAY_TASK_ID", "3"),
                    ("SLURM_ARRAY_TASK_COUNT", "4"),
                ],
                "SLURM_ARRAY_TASK_MIN",
            ),
            (
                &[
                    ("SLURM_ARRAY_TASK_ID", "9"),
                    ("SLURM_ARRAY_TASK_COUNT", "3"),
                    ("SLURM_ARRAY_TASK_MIN", "1"),
                    ("SLURM_ARRAY_TASK_MAX", "9"),
                ],
                "without gaps",
            ),
            (
                &[
                    ("SLURM_ARRAY_TASK_ID", "1"),
                    ("SLURM_ARRAY_TASK_COUNT", "3"),
                    ("SLURM_ARRAY_TASK_MIN", "2"),
                ],
                "below",
            ),
        ];
        for (pairs, needle) in cases {
            let error = detect_in(pairs).expect_err("refused").to_string();
            assert!(error.contains(needle), "{pairs:?}: {error}");
        }
    }
}
