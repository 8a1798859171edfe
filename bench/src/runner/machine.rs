//! The machine the numbers come from: they mean little without it.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub kernel: String,
    pub cpu_model: String,
    pub nproc: usize,
    /// /proc/loadavg when the bench started and ended: other work on a
    /// shared machine shows up here.
    pub loadavg_start: String,
    pub loadavg_end: Option<String>,
    pub tcpstate_version: Option<String>,
    pub bpftrace_version: Option<String>,
    pub unix_time: u64,
}

impl Machine {
    pub fn describe(tcpstate: &Path, bpftrace: Option<&Path>) -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            kernel: read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
                .unwrap_or_else(|| "unknown".into()),
            nproc: std::thread::available_parallelism().map(usize::from).unwrap_or(1),
            loadavg_start: loadavg(),
            loadavg_end: None,
            tcpstate_version: version(tcpstate),
            bpftrace_version: bpftrace.and_then(version),
            unix_time: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        }
    }
}

/// The three load averages.
pub fn loadavg() -> String {
    read_trim("/proc/loadavg").map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

fn read_trim(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// First line of `PROG --version`.
fn version(prog: &Path) -> Option<String> {
    let out = Command::new(prog).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().map(|l| l.trim().to_string()).filter(|l| !l.is_empty())
}
