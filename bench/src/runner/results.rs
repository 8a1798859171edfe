//! bench/results.json: everything the tables show, plus every run, so a
//! later reader can recompute or compare without rerunning.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::machine::Machine;
use super::measure::Record;
use super::summary::RowSummary;
use super::Options;

#[derive(Serialize)]
struct Results<'a> {
    machine: &'a Machine,
    config: Config,
    rows: &'a [RowSummary],
    runs: &'a [Record],
}

#[derive(Serialize)]
struct Config {
    connections: u64,
    rounds: u32,
    mode: String,
    concurrency: Option<u32>,
    settle_ms: u64,
    rows: String,
}

pub fn write(path: &Path, machine: &Machine, opts: &Options, rows: &[RowSummary], runs: &[Record]) -> Result<()> {
    let doc = Results {
        machine,
        config: Config {
            connections: opts.connections,
            rounds: opts.rounds,
            mode: opts.mode.name().to_string(),
            concurrency: (opts.mode == crate::loadgen::Mode::Concurrent).then_some(opts.concurrency),
            settle_ms: opts.settle_ms,
            rows: opts.rows.clone(),
        },
        rows,
        runs,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&doc).context("encoding the results")?;
    fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}
