//! What the runner learns about a tracer from /proc, without its help:
//! whether it has attached, its CPU time and peak memory, and how many
//! events the kernel skipped for its programs.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

/// BPF attachments a process holds: tp_btf and friends show as bpf_link fds;
/// older-style tracepoint attachments (bpftrace 0.17) as perf_event fds
/// with a program attached (asked through BPF_TASK_FD_QUERY).
pub fn attachments(pid: i32) -> Result<usize> {
    let dir = format!("/proc/{pid}/fd");
    let mut n = 0;
    for entry in fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        let Ok(entry) = entry else { continue };
        // fds come and go while we look: a vanished one is simply skipped.
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if target == "anon_inode:bpf_link" {
            n += 1;
        } else if target == "anon_inode:[perf_event]" {
            let fd = entry.file_name().to_string_lossy().parse::<i32>().unwrap_or(-1);
            if fd >= 0 && perf_event_has_prog(pid, fd) {
                n += 1;
            }
        }
    }
    Ok(n)
}

fn perf_event_has_prog(pid: i32, fd: i32) -> bool {
    let mut buf = [0 as libc::c_char; 64];
    let mut len = buf.len() as u32;
    let (mut prog_id, mut fd_type, mut off, mut addr) = (0u32, 0u32, 0u64, 0u64);
    // SAFETY: every out-pointer refers to a live local of the right type;
    // buf_len says how much of buf may be written.
    let ret = unsafe {
        libbpf_sys::bpf_task_fd_query(
            pid,
            fd,
            0,
            buf.as_mut_ptr(),
            &mut len,
            &mut prog_id,
            &mut fd_type,
            &mut off,
            &mut addr,
        )
    };
    ret == 0 && prog_id != 0
}

/// Sum of `recursion_misses` over the process's BPF program fds (fdinfo
/// shows it for every program since Linux 5.12).
pub fn recursion_misses(pid: i32) -> Result<u64> {
    let dir = format!("/proc/{pid}/fd");
    let mut total = 0;
    for entry in fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        let Ok(entry) = entry else { continue };
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        if target.to_string_lossy() != "anon_inode:bpf-prog" {
            continue;
        }
        let info = format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy());
        if let Ok(text) = fs::read_to_string(&info) {
            total += field(&text, "recursion_misses:").unwrap_or(0);
        }
    }
    Ok(total)
}

/// VmHWM (peak resident set) in KiB.
pub fn peak_rss_kib(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    field(&text, "VmHWM:").with_context(|| format!("no VmHWM in {path}"))
}

/// Each thread's name, state and kernel wait channel ("bpftrace S
/// do_epoll_wait"): what a tracer that ignores SIGINT is doing.
pub fn thread_states(pid: i32) -> String {
    let dir = format!("/proc/{pid}/task");
    let Ok(tasks) = fs::read_dir(&dir) else {
        return format!("{dir} unreadable");
    };
    let mut out = Vec::new();
    for task in tasks.flatten().take(16) {
        let path = task.path();
        let read = |f: &str| fs::read_to_string(path.join(f)).unwrap_or_default().trim().to_string();
        let stat = read("stat");
        let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).unwrap_or("?").to_string();
        out.push(format!("{} {} {}", read("comm"), state, read("wchan")));
    }
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let signals: Vec<&str> = status
        .lines()
        .filter(|l| ["SigPnd:", "ShdPnd:", "SigBlk:", "SigIgn:"].iter().any(|p| l.starts_with(p)))
        .collect();
    format!("{}; {}", out.join(", "), signals.join(" ").replace('\t', " "))
}

/// utime + stime so far.
pub fn cpu_time(pid: i32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = stat_ticks(&text).with_context(|| format!("parsing {path}"))?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(Duration::from_secs_f64(ticks as f64 / hz))
}

/// utime + stime in clock ticks from a /proc/PID/stat line. The command
/// name may hold spaces and parentheses, so fields are counted after the
/// last ')': state is field 3, utime 14, stime 15.
fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The number after `name` on its line ("VmHWM:\t 5120 kB" → 5120).
fn field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The last non-empty line of a file, for "why did it fail" messages.
/// tcpstate's original output lines (`ts:...`, the original format writes them
/// to stderr) are skipped: the message is what came after them.
pub fn last_line(path: &Path) -> Option<String> {
    let text = fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&text);
    text.lines().rev().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("ts:")).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_after_the_command_name() {
        let stat = "42 (we ird) cmd) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 100 1000 200";
        assert_eq!(stat_ticks(stat), Some(10));
        assert_eq!(stat_ticks("garbage"), None);
    }

    #[test]
    fn fields_take_the_first_number() {
        let status = "Name:\tx\nVmHWM:\t    5120 kB\nVmRSS:\t 4000 kB\n";
        assert_eq!(field(status, "VmHWM:"), Some(5120));
        assert_eq!(field("recursion_misses:\t3\n", "recursion_misses:"), Some(3));
        assert_eq!(field(status, "VmPeak:"), None);
    }

    #[test]
    fn this_process_is_readable() {
        let me = std::process::id() as i32;
        assert!(peak_rss_kib(me).unwrap() > 0);
        assert!(cpu_time(me).is_ok());
        assert_eq!(attachments(me).unwrap(), 0);
        let threads = thread_states(me);
        assert!(threads.contains(" R ") || threads.contains(" S "), "{threads}");
    }
}
