//! What the running kernel offers the TIME_WAIT probes: function addresses
//! from /proc/kallsyms and kprobe support. Names differ across kernel
//! versions, so they are looked up, never assumed.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// The text symbols the probes may need.
pub struct Kernel {
    symbols: HashMap<String, u64>,
}

impl Kernel {
    /// Reads the addresses of `names` from /proc/kallsyms (addresses need
    /// root, which we have), in one streaming pass: the file is megabytes,
    /// and only these few symbols matter.
    pub fn inspect(names: &[&str]) -> Kernel {
        let symbols = File::open("/proc/kallsyms")
            .map(|f| find_symbols(BufReader::new(f), names))
            .unwrap_or_default();
        Kernel { symbols }
    }

    /// Address of a function, `None` if absent or hidden (kptr_restrict).
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).copied()
    }

    /// Kprobes exist when the kernel registered their perf event source.
    pub fn has_kprobes(&self) -> bool {
        Path::new("/sys/bus/event_source/devices/kprobe").exists()
    }
}

fn find_symbols(kallsyms: impl BufRead, names: &[&str]) -> HashMap<String, u64> {
    let mut found = HashMap::new();
    for line in kallsyms.lines().map_while(Result::ok) {
        let mut cols = line.split_whitespace();
        let (Some(addr), Some(kind), Some(sym)) = (cols.next(), cols.next(), cols.next()) else { continue };
        if !matches!(kind, "t" | "T") || !names.contains(&sym) || found.contains_key(sym) {
            continue;
        }
        if let Some(a) = u64::from_str_radix(addr, 16).ok().filter(|&a| a != 0) {
            found.insert(sym.to_string(), a);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_text_symbols_only() {
        let syms = "ffffffff82065730 t tw_timer_handler\n\
                    ffffffff83000000 d tw_timer_handler_data\n\
                    0000000000000000 T hidden_by_kptr_restrict\n\
                    ffffffff820657d0 T inet_twsk_free\t[some_module]\n\
                    ffffffff82065999 t inet_twsk_free\n";
        let names = ["tw_timer_handler", "inet_twsk_free", "tw_timer_handler_data", "hidden_by_kptr_restrict"];
        let found = find_symbols(syms.as_bytes(), &names);
        assert_eq!(found.get("tw_timer_handler"), Some(&0xffffffff82065730));
        assert_eq!(found.get("inet_twsk_free"), Some(&0xffffffff820657d0), "the first one wins");
        assert_eq!(found.get("tw_timer_handler_data"), None);
        assert_eq!(found.get("hidden_by_kptr_restrict"), None);
        assert_eq!(found.len(), 2);
    }

    #[test]
    fn reads_this_kernel() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let k = Kernel::inspect(&["inet_twsk_alloc"]);
        assert!(k.symbol("inet_twsk_alloc").is_some());
        assert!(k.symbol("no_such_function_here").is_none());
    }
}
