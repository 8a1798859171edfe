//! Checks that turn the kernel's terse refusals into one line that names
//! the problem and the fix, before anything is loaded.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::unistd::{self, Gid, Uid, User};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Where the kernel exposes its own BTF (CONFIG_DEBUG_INFO_BTF=y).
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Loading tracing programs needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN,
/// which implies both on older kernels).
pub fn check_privileges() -> Result<()> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = effective_caps(&status);
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    bail!("loading BPF programs needs root (or CAP_BPF and CAP_PERFMON): run tcpstate with sudo")
}

/// A setuid-root tcpstate would hand kernel tracing to anyone who can run
/// it; it runs only from a real root (or capable) user.
pub fn refuse_setuid() -> Result<()> {
    if unistd::getuid() != unistd::geteuid() || unistd::getgid() != unistd::getegid() {
        bail!("refusing to run setuid or setgid: remove the bit (chmod u-s,g-s) and run tcpstate with sudo");
    }
    Ok(())
}

/// The account `--user` names, looked up before anything is loaded.
pub fn lookup_user(name: &str) -> Result<User> {
    match User::from_name(name) {
        Ok(Some(user)) => Ok(user),
        _ => bail!("unknown user '{name}' for --user: name an existing account, e.g. nobody"),
    }
}

/// Becomes `user` for good, once every program is attached and the ring
/// buffer is mapped: reading events needs no privilege from then on. The
/// uid change clears every capability; no_new_privs keeps them from coming
/// back through exec. The process stays dumpable so that it can read its
/// own /proc/self/fdinfo (the kernel's skipped-run counts) afterwards.
pub fn drop_privileges(user: &User) -> Result<()> {
    let context = || format!("dropping privileges to {}", user.name);
    unistd::setgroups(&[user.gid]).with_context(context)?;
    unistd::setgid(user.gid).with_context(context)?;
    unistd::setuid(user.uid).with_context(context)?;
    // SAFETY: plain prctl calls with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
    }
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    if effective_caps(&status) != 0
        || unistd::setuid(Uid::from_raw(0)).is_ok()
        || unistd::setgid(Gid::from_raw(0)).is_ok()
    {
        bail!("{}: capabilities remain after the switch", context());
    }
    Ok(())
}

/// The CapEff bit mask from /proc/self/status, 0 when absent.
fn effective_caps(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0)
}

/// CO-RE relocation needs the kernel's BTF; without it every load fails
/// with a message about relocations that helps nobody.
pub fn check_btf(path: &Path) -> Result<()> {
    if !path.exists() {
        bail!(
            "kernel BTF not found at {}: tcpstate needs a kernel built with CONFIG_DEBUG_INFO_BTF=y \
             (or --btf PATH to a BTF file of the running kernel)",
            path.display()
        );
    }
    // Raw BTF (what /sys/kernel/btf/vmlinux holds) or an ELF file with a
    // .BTF section; libbpf reads either. Only the magic is checked here:
    // parsing megabytes of BTF twice is what the load does anyway.
    let mut magic = [0u8; 4];
    let readable = fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic));
    if readable.is_err() || !(magic[..2] == [0x9f, 0xeb] || magic == *b"\x7fELF") {
        bail!(
            "{} is not a BTF file: pass --btf the running kernel's BTF (e.g. /sys/kernel/btf/vmlinux)",
            path.display()
        );
    }
    Ok(())
}

/// The oldest kernel with everything the tracer cannot do without: the
/// BPF ring buffer (5.8), BTF-typed tracepoints (5.5) and the state
/// tracepoint (4.16).
pub const MINIMUM_KERNEL: &str = "5.8";

/// What the kernel offers, asked before the object is loaded, so that a
/// kernel without it gets one line naming what is missing and the minimum
/// instead of libbpf's error about a map or a program.
pub fn check_kernel() -> Result<()> {
    // SAFETY: a plain probe call; NULL options are allowed.
    let ring = unsafe { libbpf_rs::libbpf_sys::libbpf_probe_bpf_map_type(RINGBUF, std::ptr::null()) };
    // 1: supported, 0: not; below 0 the probe itself failed (say, a
    // locked-down kernel): the load will tell then.
    if ring == 0 {
        bail!(
            "this kernel ({}) has no BPF ring buffer: tcpstate needs Linux {MINIMUM_KERNEL} or newer",
            kernel_release()
        );
    }
    if let Some(missing) = missing_tracepoint(&tracefs_events(), STATE_TRACEPOINT) {
        bail!(
            "this kernel ({}) has no {missing} tracepoint, which every transition comes from: \
             tcpstate needs Linux {MINIMUM_KERNEL} or newer",
            kernel_release()
        );
    }
    Ok(())
}

/// Tracepoints only some features need, and what is lost without them:
/// one line each (on stderr, before tracing), nothing fails.
pub fn optional_tracepoints(records: bool) -> Vec<String> {
    let events = tracefs_events();
    let mut lost = Vec::new();
    if records {
        for tp in RESET_TRACEPOINTS {
            if let Some(missing) = missing_tracepoint(&events, tp) {
                lost.push(format!("no {missing} tracepoint: connection records cannot tell resets apart"));
            }
        }
    }
    lost
}

const RINGBUF: libbpf_rs::libbpf_sys::bpf_map_type = libbpf_rs::libbpf_sys::BPF_MAP_TYPE_RINGBUF;
const STATE_TRACEPOINT: &str = "sock/inet_sock_set_state";
const RESET_TRACEPOINTS: [&str; 2] = ["tcp/tcp_send_reset", "tcp/tcp_receive_reset"];

/// tracefs's events directory, where it is mounted; `None` when it is not
/// (then nothing can be told from it).
pub(crate) fn tracefs_events() -> Option<std::path::PathBuf> {
    ["/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.join("sock").is_dir() || p.join("tcp").is_dir() || p.join("sched").is_dir())
}

/// `group/name` as `group:name` when tracefs is there and lacks it.
fn missing_tracepoint(events: &Option<std::path::PathBuf>, tp: &str) -> Option<String> {
    let events = events.as_ref()?;
    (!events.join(tp).is_dir()).then(|| tp.replace('/', ":"))
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| format!("Linux {}", u.release().to_string_lossy()))
        .unwrap_or_else(|_| "Linux, release unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_effective_capability_mask() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective_caps(status), 0x1ff_ffff_ffff);
        assert_eq!(effective_caps("Name: x\n"), 0);
    }

    #[test]
    fn missing_btf_names_the_path_and_the_fix() {
        let err = check_btf(Path::new("/nonexistent/vmlinux")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/vmlinux") && err.contains("CONFIG_DEBUG_INFO_BTF"));
    }

    #[test]
    fn this_kernel_has_what_tcpstate_needs() {
        check_kernel().unwrap();
        assert!(optional_tracepoints(true).is_empty(), "{:?}", optional_tracepoints(true));
    }

    #[test]
    fn a_missing_tracepoint_is_named_as_tracefs_names_it() {
        let events = tracefs_events();
        assert_eq!(missing_tracepoint(&events, "tcp/no_such_tracepoint").as_deref(), Some("tcp:no_such_tracepoint"));
        assert_eq!(missing_tracepoint(&events, STATE_TRACEPOINT), None);
        assert_eq!(missing_tracepoint(&None, "tcp/no_such_tracepoint"), None, "no tracefs: nothing to tell");
    }

    #[test]
    fn a_file_that_is_not_btf_is_refused() {
        let err = check_btf(Path::new("/proc/self/status")).unwrap_err().to_string();
        assert!(err.contains("is not a BTF file"), "{err}");
    }
}
