//! What the running kernel offers the TIME_WAIT probes: symbol addresses
//! (/proc/kallsyms), traceable functions (BTF) and kprobe support. Names
//! differ across kernel versions, so they are looked up, never assumed.

use std::fs;
use std::path::Path;

use libbpf_rs::btf::{types::Func, Btf};

/// A snapshot of the kernel facts the probe choice needs.
pub struct Kernel {
    kallsyms: String,
    btf: Option<Btf<'static>>,
}

impl Kernel {
    /// Reads /proc/kallsyms (addresses need root, which we have) and the
    /// kernel BTF at `btf_path`.
    pub fn inspect(btf_path: &Path) -> Kernel {
        Kernel {
            kallsyms: fs::read_to_string("/proc/kallsyms").unwrap_or_default(),
            btf: Btf::from_path(btf_path).ok(),
        }
    }

    /// Address of a text symbol, `None` if absent or hidden (kptr_restrict).
    pub fn symbol(&self, name: &str) -> Option<u64> {
        symbol_in(&self.kallsyms, name)
    }

    /// Whether fentry/fexit could target `name`: it must be a BTF function.
    pub fn btf_func(&self, name: &str) -> bool {
        self.btf.as_ref().is_some_and(|btf| btf.type_by_name::<Func<'_>>(name).is_some())
    }

    /// Kprobes exist when the kernel registered their perf event source.
    pub fn has_kprobes(&self) -> bool {
        Path::new("/sys/bus/event_source/devices/kprobe").exists()
    }
}

fn symbol_in(kallsyms: &str, name: &str) -> Option<u64> {
    kallsyms.lines().find_map(|line| {
        let mut cols = line.split_whitespace();
        let addr = cols.next()?;
        let kind = cols.next()?;
        let sym = cols.next()?;
        if sym != name || !matches!(kind, "t" | "T") {
            return None;
        }
        u64::from_str_radix(addr, 16).ok().filter(|&a| a != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_text_symbols_only() {
        let syms = "ffffffff82065730 t tw_timer_handler\n\
                    ffffffff83000000 d tw_timer_handler_data\n\
                    0000000000000000 T hidden_by_kptr_restrict\n\
                    ffffffff820657d0 T inet_twsk_free\t[some_module]\n";
        assert_eq!(symbol_in(syms, "tw_timer_handler"), Some(0xffffffff82065730));
        assert_eq!(symbol_in(syms, "inet_twsk_free"), Some(0xffffffff820657d0));
        assert_eq!(symbol_in(syms, "tw_timer_handler_data"), None);
        assert_eq!(symbol_in(syms, "hidden_by_kptr_restrict"), None);
        assert_eq!(symbol_in(syms, "absent"), None);
    }
}
