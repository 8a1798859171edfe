//! Checks that turn the kernel's terse refusals into one line that names
//! the problem and the fix, before anything is loaded.

use std::fs;
use std::path::Path;

use anyhow::{bail, Result};

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
    if libbpf_rs::btf::Btf::from_path(path).is_err() {
        bail!(
            "{} is not a BTF file: pass --btf the running kernel's BTF (e.g. /sys/kernel/btf/vmlinux)",
            path.display()
        );
    }
    Ok(())
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
    fn a_file_that_is_not_btf_is_refused() {
        let err = check_btf(Path::new("/proc/self/status")).unwrap_err().to_string();
        assert!(err.contains("is not a BTF file"), "{err}");
    }
}
