//! What the runs need before the first one: the programs, tracefs for
//! bpftrace, and a scratch directory.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::rows::{self, Tools};
use super::Options;

/// The programs the rows run: ours beside this binary, tcpstate there too
/// unless --tcpstate says otherwise, bpftrace from PATH if installed.
pub fn tools(opts: &Options) -> Result<Tools> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let dir = exe.parent().context("the bench binary has no directory")?.to_path_buf();
    let need = |p: PathBuf, hint: &str| -> Result<PathBuf> {
        if p.is_file() {
            Ok(p)
        } else {
            bail!("{} not found: {hint}", p.display())
        }
    };
    Ok(Tools {
        tcpstate: need(
            opts.tcpstate.clone().unwrap_or_else(|| dir.join("tcpstate")),
            "build it with `cargo build --release` or pass --tcpstate",
        )?,
        loadgen: need(dir.join("loadgen"), "build it with `cargo build --release -p tcpstate-bench`")?,
        floor: need(dir.join("floor"), "build it with `cargo build --release -p tcpstate-bench`")?,
        bpftrace: opts.bpftrace.clone().or_else(|| rows::which("bpftrace")),
    })
}

/// bpftrace 0.17 reads tracepoint formats from tracefs, which this machine
/// does not mount by itself.
pub fn ensure_tracefs() -> Result<()> {
    let dir = Path::new("/sys/kernel/tracing");
    if dir.join("events").is_dir() {
        return Ok(());
    }
    let status = std::process::Command::new("mount")
        .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
        .status()
        .context("running mount for tracefs")?;
    if !status.success() {
        bail!("mounting tracefs on /sys/kernel/tracing failed ({status}); bpftrace needs it");
    }
    Ok(())
}

/// A private tmpfs directory for tracer output; removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn create() -> Result<Scratch> {
        let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let dir = base.join(format!("tcpstate-bench.{}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
