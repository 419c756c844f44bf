//! Fuzz inputs ⇄ op sequences.
//!
//! [`decode`] turns bytes into ops exactly as the `scheduler_ops` target's
//! `fuzz_target!(|ops: Vec<Op>| …)` does (libfuzzer-sys decodes a typed
//! input with `Arbitrary::arbitrary_take_rest`), so a crash file replays
//! here as it ran there. [`encode`] goes the other way, for writing seed
//! corpora and regression inputs from readable op lists; it follows
//! `arbitrary` 1.x's byte layout, and the round-trip test below fails if
//! that layout ever changes.

use arbitrary::{Arbitrary, Unstructured};

use crate::ops::Op;

/// The ops a fuzz input stands for. Inputs `arbitrary` cannot decode (none,
/// at present: every byte string decodes) give `None`, as the target
/// rejects them.
pub fn decode(bytes: &[u8]) -> Option<Vec<Op>> {
    Vec::<Op>::arbitrary_take_rest(Unstructured::new(bytes)).ok()
}

/// Number of [`Op`] variants; `encode` picks a variant by its index.
const OP_VARIANTS: u64 = 17;

/// Bytes that [`decode`] turns into `ops`.
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for op in ops {
        // A `Vec` taking the rest of the input: a "keep going" bool, then
        // the element.
        bytes.push(1);
        let leader_fields;
        let (variant, fields): (u64, &[u8]) = match op {
            Op::Write { region, rows } => (0, &[*region, *rows]),
            Op::Flush { region } => (1, std::slice::from_ref(region)),
            Op::Alter { region } => (2, std::slice::from_ref(region)),
            Op::Truncate { region } => (3, std::slice::from_ref(region)),
            Op::Drop { region } => (4, std::slice::from_ref(region)),
            Op::Close { region } => (5, std::slice::from_ref(region)),
            Op::Open { region } => (6, std::slice::from_ref(region)),
            Op::Create { region } => (7, std::slice::from_ref(region)),
            Op::Downgrade { region } => (8, std::slice::from_ref(region)),
            Op::SetRole { region, leader } => {
                leader_fields = [*region, u8::from(*leader)];
                (9, &leader_fields)
            }
            Op::RunJob => (10, &[]),
            Op::RejectNextJob => (11, &[]),
            Op::FailNextManifest => (12, &[]),
            Op::FailNextFreeze => (13, &[]),
            Op::Tick => (14, &[]),
            Op::LoseJob => (15, &[]),
            Op::Stop => (16, &[]),
        };
        // The derive picks variant `(u32 * count) >> 32`; take the
        // smallest u32 that lands on `variant`.
        let selector = u32::try_from((variant << 32).div_ceil(OP_VARIANTS))
            .expect("variant index below the variant count");
        bytes.extend_from_slice(&selector.to_le_bytes());
        bytes.extend_from_slice(fields);
    }
    bytes.push(0);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_round_trips() {
        let ops = vec![
            Op::Write { region: 2, rows: 7 },
            Op::Flush { region: 1 },
            Op::Alter { region: 0 },
            Op::Truncate { region: 2 },
            Op::Drop { region: 1 },
            Op::Close { region: 0 },
            Op::Open { region: 2 },
            Op::Create { region: 1 },
            Op::Downgrade { region: 0 },
            Op::SetRole {
                region: 1,
                leader: true,
            },
            Op::SetRole {
                region: 2,
                leader: false,
            },
            Op::RunJob,
            Op::RejectNextJob,
            Op::FailNextManifest,
            Op::FailNextFreeze,
            Op::Tick,
            Op::LoseJob,
            Op::Stop,
        ];
        assert_eq!(decode(&encode(&ops)), Some(ops));
        assert_eq!(decode(&[]), Some(Vec::new()));
    }
}
