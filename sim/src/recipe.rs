//! A timeline's recipe: a seed's plan, forked at fault draws.
//!
//! A plain run draws every fault from streams seeded by its seed. A *split*
//! says: from fault draw `at_draw` on, re-seed the fault streams (and the
//! world's latency stream) from `seed`. Everything before the split is the
//! seed's own run, deterministically; everything after is another future
//! of the same past. `flushsim explore` splits a run at the moment it first
//! reached a rare state, and again in the children that reach something
//! new; a plan carries its splits, so a timeline replays, shrinks and
//! prints like any plan: `replay --seed S --recipe 120:77,348:9`.

use serde::{Deserialize, Serialize};

/// From fault draw `at_draw` (the count of fault decisions made before
/// it) on, the world's random streams come from `seed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub at_draw: u64,
    pub seed: u64,
}

/// Most splits one timeline may carry (deeper ones add nothing a sweep
/// could replay in reasonable time, and bound a hand-written recipe).
pub const MAX_SPLITS: usize = 64;

/// The splits of a recipe as text: `at_draw:seed` pairs, comma-separated,
/// draws strictly increasing.
pub fn format_splits(splits: &[Split]) -> String {
    splits
        .iter()
        .map(|split| format!("{}:{}", split.at_draw, split.seed))
        .collect::<Vec<_>>()
        .join(",")
}

/// The splits of one timeline, as the command line takes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipe(pub Vec<Split>);

impl Recipe {
    pub fn parse(text: &str) -> Result<Recipe, String> {
        parse_splits(text).map(Recipe)
    }
}

/// Parses [`format_splits`]' text; a clear message on anything else.
pub fn parse_splits(text: &str) -> Result<Vec<Split>, String> {
    let splits = text
        .split(',')
        .map(|pair| {
            let (draw, seed) = pair.trim().split_once(':').ok_or_else(|| {
                format!("recipe split {pair:?}: expected DRAW:SEED (two whole numbers)")
            })?;
            let number = |what: &str, value: &str| {
                value.trim().parse::<u64>().map_err(|_| {
                    format!("recipe split {pair:?}: {what} {value:?} is not a whole number")
                })
            };
            Ok(Split {
                at_draw: number("draw", draw)?,
                seed: number("seed", seed)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    check_splits(&splits).map_err(|expected| format!("recipe {text:?}: expected {expected}"))?;
    Ok(splits)
}

/// Splits a run can follow: at most [`MAX_SPLITS`], draws strictly
/// increasing (a later split at an earlier draw would never fire). The
/// error says what was expected.
pub fn check_splits(splits: &[Split]) -> Result<(), String> {
    if splits.len() > MAX_SPLITS {
        return Err(format!("at most {MAX_SPLITS} splits, saw {}", splits.len()));
    }
    for pair in splits.windows(2) {
        if pair[1].at_draw <= pair[0].at_draw {
            return Err(format!(
                "split draws strictly increasing, saw {} after {}",
                pair[1].at_draw, pair[0].at_draw
            ));
        }
    }
    Ok(())
}

/// A split's seed, drawn from its parent timeline and what it splits on:
/// the same exploration makes the same children.
pub fn child_seed(plan_seed: u64, splits: &[Split], salt: u64) -> u64 {
    let mut state = plan_seed ^ 0x9E37_79B9_7F4A_7C15;
    for split in splits {
        state = mix(state ^ split.at_draw);
        state = mix(state ^ split.seed);
    }
    mix(state ^ salt)
}

/// SplitMix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_print_and_parse_back() {
        let splits = vec![
            Split {
                at_draw: 3,
                seed: 99,
            },
            Split {
                at_draw: 40,
                seed: u64::MAX,
            },
        ];
        assert_eq!(parse_splits(&format_splits(&splits)), Ok(splits));
    }

    #[test]
    fn bad_recipes_say_what_is_wrong() {
        for (text, expected) in [
            ("12", "expected DRAW:SEED"),
            ("x:1", "draw \"x\" is not a whole number"),
            ("1:-4", "seed \"-4\" is not a whole number"),
            ("5:1,5:2", "strictly increasing, saw 5 after 5"),
            ("", "expected DRAW:SEED"),
        ] {
            let error = parse_splits(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn child_seeds_differ_by_salt_and_parent() {
        let a = child_seed(1, &[], 0);
        assert_ne!(a, child_seed(1, &[], 1));
        assert_ne!(a, child_seed(2, &[], 0));
        let parent = [Split {
            at_draw: 1,
            seed: a,
        }];
        assert_ne!(child_seed(1, &parent, 0), a);
    }
}
