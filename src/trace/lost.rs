//! What the kernel side could not deliver, and what it recovered: its
//! counters (in the mapped .bss) and each program's count of runs the
//! kernel skipped. The exit summary and the metrics report them.

use std::os::fd::{AsFd, AsRawFd};

use anyhow::{anyhow, Context, Result};

use super::abi::{CNT_RECOVERED, CNT_RINGBUF_FULL, CNT_TW_RINGBUF_FULL};
use libbpf_rs::skel::Skel;

use crate::skel::TcpstateSkel;

/// Events the kernel side could not deliver, and those it recovered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// State changes dropped because the ring buffer was full.
    pub ringbuf_full: u64,
    /// TIME_WAIT probe events dropped because the ring buffer was full.
    pub tw_ringbuf_full: u64,
    /// State changes the kernel skipped the main program for, because it was
    /// already running on that CPU (its bpf_prog_info.recursion_misses).
    pub skipped: u64,
    /// Of those, the ones the backup program caught (0 without a backup:
    /// every skip is then lost).
    pub recovered: u64,
    /// The same count for the TIME_WAIT probe programs; the timer kind's
    /// include skipped timers of every kind, not only timewait sockets'.
    pub tw_skipped: Vec<(String, u64)>,
}

impl Lost {
    /// State transitions lost for good.
    pub fn total(&self) -> u64 {
        self.ringbuf_full + self.skipped.saturating_sub(self.recovered)
    }
}

/// Reads the drop counters and each loaded program's recursion misses.
pub(super) fn read(skel: &TcpstateSkel<'_>) -> Result<Lost> {
    // Skips before recoveries: the kernel counts a skip before the backup
    // program reports it, so read in this order `skipped - recovered` never
    // counts as lost an event whose recovery is merely in flight (an alert
    // on lost events would fire for nothing).
    let skipped = recursion_misses_of(&skel.progs.inet_sock_set_state)?;
    let mut lost = Lost {
        ringbuf_full: counter(skel, CNT_RINGBUF_FULL)?,
        tw_ringbuf_full: counter(skel, CNT_TW_RINGBUF_FULL)?,
        recovered: counter(skel, CNT_RECOVERED)?,
        skipped,
        tw_skipped: Vec::new(),
    };
    for prog in skel.object().progs().filter(|p| p.autoload()) {
        let name = prog.name().to_string_lossy().into_owned();
        if name.starts_with("tw_") {
            lost.tw_skipped.push((name, recursion_misses_of(&prog)?));
        }
    }
    Ok(lost)
}

/// A kernel-side counter, read from the mapped .bss (no system call, so it
/// still works after --user dropped every privilege).
fn counter(skel: &TcpstateSkel<'_>, index: usize) -> Result<u64> {
    let bss = skel.maps.bss_data.as_deref().ok_or_else(|| anyhow!("BPF object has no .bss"))?;
    let slot = bss.counters.get(index).ok_or_else(|| anyhow!("no counter {index}"))?;
    // SAFETY: an aligned u64 in the mapped .bss that BPF programs update
    // atomically; a volatile read sees their latest value.
    Ok(unsafe { std::ptr::read_volatile(slot) })
}

/// The kernel's count of runs it skipped for `prog`, from the program's
/// /proc/self/fdinfo entry: unlike bpf_prog_get_info_by_fd() that needs no
/// privilege, so it still works after --user. Kernels before 5.12 have no
/// such count (and their raw tracepoints and trampolines never skip a
/// program): 0 there.
fn recursion_misses_of(prog: &libbpf_rs::Program<'_>) -> Result<u64> {
    let path = format!("/proc/self/fdinfo/{}", prog.as_fd().as_raw_fd());
    let info = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    match fdinfo_field(&info, "recursion_misses") {
        Some(misses) => Ok(misses),
        None if fdinfo_field(&info, "prog_type").is_some() => Ok(0),
        None => Err(anyhow!("{path} is not a BPF program's")),
    }
}

fn fdinfo_field(info: &str, key: &str) -> Option<u64> {
    info.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fdinfo_fields() {
        let info = "pos:\t0\nprog_type:\t26\nrun_cnt:\t0\nrecursion_misses:\t17\nverified_insns:\t900\n";
        assert_eq!(fdinfo_field(info, "recursion_misses"), Some(17));
        assert_eq!(fdinfo_field(info, "run_cnt"), Some(0));
        assert_eq!(fdinfo_field(info, "missing"), None);
    }

    #[test]
    fn nothing_lost_is_zero_and_recovered_runs_are_not_lost() {
        assert_eq!(Lost::default().total(), 0);
        let lost = Lost { ringbuf_full: 2, skipped: 5, recovered: 4, ..Lost::default() };
        assert_eq!(lost.total(), 3);
    }
}
