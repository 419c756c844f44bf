//! A sweep's JSON Lines stream (`sweep --jsonl FILE`): a header line, then
//! one line per finished seed, each written whole and flushed as the seed
//! finishes, so a job killed at any moment keeps every seed it finished.
//!
//! The header says what the seeds are of (versions, workload, bugs, seed
//! range, shard), so `flushsim merge` can check a stream's coverage like a
//! summary's, and `sweep --resume FILE` can refuse to continue a stream of
//! another sweep. A seed line is the seed's [`Report`] as `replay --json`
//! prints it, tagged `"line": "seed"`.
//!
//! Reading tolerates the one defect a kill leaves: a last line cut short
//! (no newline, not JSON). It is skipped with a note; a bad line anywhere
//! else is an error.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::report::Report;
use crate::sweep::{SweepIdentity, SweepSummary};

/// One line of a stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "line", rename_all = "snake_case")]
pub enum StreamLine {
    Header(StreamHeader),
    Seed(Box<Report>),
}

/// The first line of a stream: what its seeds are of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHeader {
    pub identity: SweepIdentity,
    /// The range asked for, before sharding: `A..B`, or `A..` when open.
    pub seed_range: String,
    pub shard: Option<String>,
    /// A time budget or failure cap may stop the sweep before its range
    /// ends: the stream then promises only the seeds up to its highest.
    pub stops_early: bool,
}

impl StreamHeader {
    /// Whether a sweep with header `other` continues this stream: the
    /// same seeds of the same kind (the stop rule may differ).
    pub fn continued_by(&self, other: &StreamHeader) -> bool {
        self.identity == other.identity
            && self.seed_range == other.seed_range
            && self.shard == other.shard
    }
}

#[derive(Debug)]
pub enum StreamError {
    Io {
        source: String,
        error: io::Error,
    },
    Exists {
        path: String,
    },
    BadLine {
        source: String,
        line: usize,
        error: String,
    },
    NoHeader {
        source: String,
        line: usize,
    },
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Io { source, error } => write!(f, "{source}: {error}"),
            StreamError::Exists { path } => write!(
                f,
                "{path} exists: continue it with --resume {path}, or remove it"
            ),
            StreamError::BadLine {
                source,
                line,
                error,
            } => write!(
                f,
                "{source} line {line}: expected a line of a flushsim sweep stream (a header or \
                 a seed) or a sweep summary, saw: {error}"
            ),
            StreamError::NoHeader { source, line } => write!(
                f,
                "{source} line {line}: expected the stream's header line (written first by \
                 `sweep --jsonl`) before its seed lines"
            ),
        }
    }
}

/// Where a stream's lines go: each line is one `write_all` of the whole
/// line and its newline, flushed at once. A SIGKILL loses only a line
/// being written, never a finished one (the kernel has it; surviving a
/// machine crash would take an fsync per line, which a sweep does not pay).
pub struct StreamWriter {
    out: Box<dyn Write + Send>,
    name: String,
}

impl StreamWriter {
    /// A new stream file; an existing one is refused (resume it instead).
    pub fn create(path: &Path) -> Result<Self, StreamError> {
        let name = path.display().to_string();
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|error| match error.kind() {
                io::ErrorKind::AlreadyExists => StreamError::Exists { path: name.clone() },
                _ => StreamError::Io {
                    source: name.clone(),
                    error,
                },
            })?;
        Ok(StreamWriter {
            out: Box::new(file),
            name,
        })
    }

    pub fn stdout() -> Self {
        StreamWriter {
            out: Box::new(io::stdout()),
            name: "stdout".to_string(),
        }
    }

    pub fn write(&mut self, line: &StreamLine) -> Result<(), StreamError> {
        let mut text = serde_json::to_string(line).map_err(|error| StreamError::Io {
            source: self.name.clone(),
            error: io::Error::other(error),
        })?;
        text.push('\n');
        self.out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
            .map_err(|error| StreamError::Io {
                source: self.name.clone(),
                error,
            })
    }
}

/// What a stream (or a stdin of several) holds, line by line.
#[derive(Debug)]
pub enum Item {
    Header(StreamHeader),
    Seed(Box<Report>),
    /// A whole sweep summary on one line (`merge -` accepts those too).
    Summary(Box<SweepSummary>),
}

/// Reads items line by line, noting a last line cut short.
pub struct StreamReader<R> {
    reader: R,
    source: String,
    line: usize,
    /// Bytes of the complete lines read so far (where a resume appends).
    pub complete_bytes: u64,
    /// The last line read ended without a newline (a resume adds one).
    pub unterminated: bool,
    /// Set when the last line was cut short and skipped.
    pub cut_tail: Option<String>,
}

impl StreamReader<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self, StreamError> {
        let file = File::open(path).map_err(|error| StreamError::Io {
            source: path.display().to_string(),
            error,
        })?;
        Ok(StreamReader::new(
            BufReader::new(file),
            path.display().to_string(),
        ))
    }
}

impl<R: BufRead> StreamReader<R> {
    pub fn new(reader: R, source: String) -> Self {
        StreamReader {
            reader,
            source,
            line: 0,
            complete_bytes: 0,
            unterminated: false,
            cut_tail: None,
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The next item, skipping blank lines; `None` at the end (or at a
    /// last line cut short, noted in `cut_tail`).
    pub fn next_item(&mut self) -> Result<Option<Item>, StreamError> {
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            let read =
                self.reader
                    .read_until(b'\n', &mut bytes)
                    .map_err(|error| StreamError::Io {
                        source: self.source.clone(),
                        error,
                    })?;
            if read == 0 {
                return Ok(None);
            }
            self.line += 1;
            let terminated = bytes.last() == Some(&b'\n');
            let text = String::from_utf8_lossy(&bytes);
            if text.trim().is_empty() {
                self.complete_bytes += read as u64;
                continue;
            }
            match parse_item(text.trim()) {
                Ok(item) => {
                    self.complete_bytes += read as u64;
                    self.unterminated = !terminated;
                    return Ok(Some(item));
                }
                Err(_) if !terminated => {
                    self.cut_tail = Some(format!(
                        "{} line {}: the last line is cut short ({} bytes, no newline: a kill \
                         mid-write?); skipped",
                        self.source, self.line, read
                    ));
                    return Ok(None);
                }
                Err(error) => {
                    return Err(StreamError::BadLine {
                        source: self.source.clone(),
                        line: self.line,
                        error,
                    })
                }
            }
        }
    }

    pub fn line(&self) -> usize {
        self.line
    }
}

fn parse_item(text: &str) -> Result<Item, String> {
    match serde_json::from_str::<StreamLine>(text) {
        Ok(StreamLine::Header(header)) => Ok(Item::Header(header)),
        Ok(StreamLine::Seed(report)) => Ok(Item::Seed(report)),
        Err(line_error) => serde_json::from_str::<SweepSummary>(text)
            .map(|summary| Item::Summary(Box::new(summary)))
            .map_err(|_| line_error.to_string()),
    }
}

/// A stream read back whole: its header and its seeds summed up (the
/// seeds themselves are the summary's `trace_hashes` keys).
#[derive(Debug)]
pub struct ReadStream {
    pub header: StreamHeader,
    pub summary: SweepSummary,
}

impl ReadStream {
    /// Seeds counted from this stream so far.
    pub fn empty(header: StreamHeader) -> Self {
        let mut summary = SweepSummary::empty(header.identity.clone());
        summary.shard = header.shard.clone();
        ReadStream { header, summary }
    }
}

/// Reads one stream file (`--resume`): a header, then seeds.
pub fn read_stream_file(
    path: &Path,
) -> Result<(ReadStream, StreamReader<BufReader<File>>), StreamError> {
    let mut reader = StreamReader::open(path)?;
    let header = match reader.next_item()? {
        Some(Item::Header(header)) => header,
        _ => {
            return Err(StreamError::NoHeader {
                source: reader.source().to_string(),
                line: reader.line().max(1),
            })
        }
    };
    let mut stream = ReadStream::empty(header);
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Seed(report) => stream.summary.add(&report),
            Item::Header(_) | Item::Summary(_) => {
                return Err(StreamError::BadLine {
                    source: reader.source().to_string(),
                    line: reader.line(),
                    error: "a second header or a summary inside one sweep's stream".to_string(),
                })
            }
        }
    }
    Ok((stream, reader))
}

/// Opens a stream read by [`read_stream_file`] for appending: a cut last
/// line is cut off, a complete last line without its newline gets one.
pub fn reopen_for_append(
    path: &Path,
    reader: &StreamReader<BufReader<File>>,
) -> Result<StreamWriter, StreamError> {
    let name = path.display().to_string();
    let io_error = |error| StreamError::Io {
        source: name.clone(),
        error,
    };
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error)?;
    file.set_len(reader.complete_bytes).map_err(io_error)?;
    let mut file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_error)?;
    if reader.unterminated {
        file.write_all(b"\n").map_err(io_error)?;
    }
    Ok(StreamWriter {
        out: Box::new(file),
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(text: &str) -> (Vec<String>, Option<String>, Result<(), String>) {
        let mut reader = StreamReader::new(text.as_bytes(), "test".to_string());
        let mut kinds = Vec::new();
        let result = loop {
            match reader.next_item() {
                Ok(Some(Item::Header(_))) => kinds.push("header".to_string()),
                Ok(Some(Item::Seed(report))) => kinds.push(format!("seed {}", report.seed)),
                Ok(Some(Item::Summary(_))) => kinds.push("summary".to_string()),
                Ok(None) => break Ok(()),
                Err(error) => break Err(error.to_string()),
            }
        };
        (kinds, reader.cut_tail, result)
    }

    fn header_line() -> String {
        let options = crate::sweep::SweepOptions::new(vec![], 1, flush_core::bugs::Bugs::NONE);
        let header = StreamHeader {
            identity: options.identity(),
            seed_range: "0..".to_string(),
            shard: None,
            stops_early: true,
        };
        serde_json::to_string(&StreamLine::Header(header)).expect("headers serialise")
    }

    #[test]
    fn a_cut_last_line_is_skipped_with_a_note_and_a_bad_middle_line_is_an_error() {
        let header = header_line();
        let (kinds, cut, result) = items(&format!("{header}\n{{\"line\":\"seed\",\"se"));
        assert_eq!(kinds, vec!["header"]);
        assert!(result.is_ok());
        assert!(cut.is_some_and(|note| note.contains("line 2")));
        let (_, _, result) = items(&format!("{header}\n{{\"line\":\"se\n{header}\n"));
        let error = result.expect_err("a bad line in the middle is an error");
        assert!(error.contains("test line 2"), "{error}");
        let (kinds, cut, _) = items(&format!("\n{header}"));
        assert_eq!(
            (kinds.len(), cut),
            (1, None),
            "a complete unterminated line counts"
        );
    }
}
