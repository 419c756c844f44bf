//! The lines the crash test's parent and child exchange over the child's
//! stdin and stdout. Text, one message a line, so a transcript reads as a
//! log.
//!
//! ```text
//! parent -> child   <id> write <region> <write id>     rows made by rows_of()
//!                   <id> flush|truncate|drop|create|open <region>
//!                   <id> alter <region> <schema version>
//!                   stop
//! child -> parent   ready <region,region,...|-> torn=<n>
//!                   <id> ok | <id> written <first sequence> | <id> err <kind>
//!                   stopped <true|false>
//! ```

use flush_core::ids::RegionId;
use flush_core::memtable::RowValue;
use flush_core::request::Request;

/// Rows in one write of the crash test's workload.
pub const ROWS_PER_WRITE: usize = 8;

/// The rows of write `write_id`. Each row's series names its write and
/// position, so a row found on disk says which write it came from.
pub fn rows_of(write_id: u64) -> Vec<RowValue> {
    (0..ROWS_PER_WRITE)
        .map(|index| RowValue {
            series: series_name(write_id, index).into(),
            ts: (write_id * ROWS_PER_WRITE as u64 + index as u64) as i64,
            value: write_id as f64 + index as f64 * 0.125,
            fields: Vec::new(),
        })
        .collect()
}

pub fn series_name(write_id: u64, index: usize) -> String {
    format!("w{write_id}-{index}")
}

/// The write id and position a series name was made from.
pub fn parse_series(series: &str) -> Option<(u64, usize)> {
    let (write, index) = series.strip_prefix('w')?.split_once('-')?;
    Some((write.parse().ok()?, index.parse().ok()?))
}

/// What the parent asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Write { write_id: u64 },
    Flush,
    Alter { schema_version: u64 },
    Truncate,
    Drop,
    Create,
    Open,
}

impl Op {
    pub fn request(&self, region_id: RegionId) -> Request {
        match self {
            Op::Write { write_id } => Request::Write {
                region_id,
                rows: rows_of(*write_id).into(),
            },
            Op::Flush => Request::Flush { region_id },
            Op::Alter { schema_version } => Request::Alter {
                region_id,
                schema_version: *schema_version,
                add_field: None,
            },
            Op::Truncate => Request::Truncate { region_id },
            Op::Drop => Request::Drop { region_id },
            Op::Create => Request::create(region_id),
            Op::Open => Request::Open { region_id },
        }
    }
}

/// One line from the parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Request {
        id: u64,
        region_id: RegionId,
        op: Op,
    },
    Stop,
}

pub fn format_command(id: u64, region_id: RegionId, op: &Op) -> String {
    let region = region_id.0;
    match op {
        Op::Write { write_id } => format!("{id} write {region} {write_id}"),
        Op::Alter { schema_version } => format!("{id} alter {region} {schema_version}"),
        Op::Flush => format!("{id} flush {region}"),
        Op::Truncate => format!("{id} truncate {region}"),
        Op::Drop => format!("{id} drop {region}"),
        Op::Create => format!("{id} create {region}"),
        Op::Open => format!("{id} open {region}"),
    }
}

pub fn parse_command(line: &str) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words == ["stop"] {
        return Ok(Command::Stop);
    }
    let number = |index: usize, what: &str| -> Result<u64, String> {
        words
            .get(index)
            .and_then(|word| word.parse().ok())
            .ok_or_else(|| format!("'{line}': expected {what} at word {}", index + 1))
    };
    let id = number(0, "a request id")?;
    let region_id = RegionId(number(2, "a region id")?);
    let op = match words.get(1).copied() {
        Some("write") => Op::Write {
            write_id: number(3, "a write id")?,
        },
        Some("alter") => Op::Alter {
            schema_version: number(3, "a schema version")?,
        },
        Some("flush") => Op::Flush,
        Some("truncate") => Op::Truncate,
        Some("drop") => Op::Drop,
        Some("create") => Op::Create,
        Some("open") => Op::Open,
        _ => return Err(format!("'{line}': unknown command")),
    };
    Ok(Command::Request { id, region_id, op })
}

/// One line from the child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Ready { open: Vec<RegionId>, torn: u64 },
    Ok { id: u64 },
    Written { id: u64, first_sequence: u64 },
    Err { id: u64, kind: String },
    Stopped { graceful: bool },
}

pub fn format_ready(open: &[RegionId], torn: u64) -> String {
    let regions: Vec<String> = open.iter().map(|region| region.0.to_string()).collect();
    let regions = if regions.is_empty() {
        "-".to_string()
    } else {
        regions.join(",")
    };
    format!("ready {regions} torn={torn}")
}

pub fn parse_message(line: &str) -> Result<Message, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let bad = || format!("unexpected line from the child: '{line}'");
    match words.as_slice() {
        ["ready", regions, torn] => {
            let torn = torn
                .strip_prefix("torn=")
                .and_then(|n| n.parse().ok())
                .ok_or_else(bad)?;
            let open = if *regions == "-" {
                Vec::new()
            } else {
                regions
                    .split(',')
                    .map(|region| region.parse().map(RegionId).map_err(|_| bad()))
                    .collect::<Result<_, _>>()?
            };
            Ok(Message::Ready { open, torn })
        }
        ["stopped", graceful] => Ok(Message::Stopped {
            graceful: *graceful == "true",
        }),
        [id, rest @ ..] => {
            let id: u64 = id.parse().map_err(|_| bad())?;
            match rest {
                ["ok"] => Ok(Message::Ok { id }),
                ["written", sequence] => Ok(Message::Written {
                    id,
                    first_sequence: sequence.parse().map_err(|_| bad())?,
                }),
                ["err", kind] => Ok(Message::Err {
                    id,
                    kind: (*kind).to_string(),
                }),
                _ => Err(bad()),
            }
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_messages_round_trip() {
        let ops = [
            Op::Write { write_id: 17 },
            Op::Flush,
            Op::Alter { schema_version: 3 },
            Op::Truncate,
            Op::Drop,
            Op::Create,
            Op::Open,
        ];
        for op in ops {
            let line = format_command(9, RegionId(2), &op);
            assert_eq!(
                parse_command(&line),
                Ok(Command::Request {
                    id: 9,
                    region_id: RegionId(2),
                    op
                })
            );
        }
        assert_eq!(parse_command("stop"), Ok(Command::Stop));
        assert!(parse_command("1 write 2").is_err());
        assert!(parse_command("x flush 2").is_err());
        assert_eq!(
            parse_message(&format_ready(&[RegionId(1), RegionId(3)], 2)),
            Ok(Message::Ready {
                open: vec![RegionId(1), RegionId(3)],
                torn: 2
            })
        );
        assert_eq!(
            parse_message(&format_ready(&[], 0)),
            Ok(Message::Ready {
                open: vec![],
                torn: 0
            })
        );
        assert_eq!(
            parse_message("4 written 120"),
            Ok(Message::Written {
                id: 4,
                first_sequence: 120
            })
        );
        assert!(parse_message("4 wrote").is_err());
        assert_eq!(parse_series(&series_name(42, 7)), Some((42, 7)));
        assert_eq!(parse_series("host-1"), None);
    }
}
