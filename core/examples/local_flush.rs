//! flush-core outside the simulator: a few thousand rows into two regions
//! on local disk, flushed to Parquet, then every SST listed and read back.
//!
//! ```text
//! cargo run -p flush-core --example local_flush [DIR]
//! ```
//!
//! `DIR` must be new or empty; without it a fresh temporary directory is
//! used and kept, so the files can be inspected afterwards. The write buffer
//! is small on purpose: engine-full flushes happen while writing, then a
//! manual flush per region takes what is left. The walk-through itself is
//! `flush_core::local::walkthrough`, shared with the test that checks its files.

use std::error::Error;
use std::path::PathBuf;

use flush_core::local::walkthrough::run;

/// The directory to use: the one given (new or empty), or a fresh kept
/// temporary one.
fn target_dir() -> Result<PathBuf, Box<dyn Error>> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        let dir = tempfile::Builder::new()
            .prefix("flushsim-local-flush-")
            .tempdir()?;
        return Ok(dir.keep());
    };
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        return Err(format!(
            "{} is not empty; give a new or empty directory",
            dir.display()
        )
        .into());
    }
    Ok(dir)
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = target_dir()?;
    println!("flushing into {}", dir.display());
    let reports = run(&dir)?;
    let mut total_rows = 0;
    for report in &reports {
        println!(
            "{}: {} rows written, {} SSTs",
            report.region_id,
            report.written.len(),
            report.files.len()
        );
        for file in &report.files {
            let first = file.rows.iter().map(|r| r.sequence).min().unwrap_or(0);
            let last = file.rows.iter().map(|r| r.sequence).max().unwrap_or(0);
            println!(
                "  {:<40} {:>6} rows {:>8} bytes  sequences {first}..={last}",
                file.path,
                file.rows.len(),
                file.size_bytes
            );
            total_rows += file.rows.len();
        }
    }
    let written: usize = reports.iter().map(|r| r.written.len()).sum();
    println!("{total_rows} of {written} rows read back from Parquet");
    if total_rows != written {
        return Err("rows read back differ from rows written".into());
    }
    Ok(())
}
