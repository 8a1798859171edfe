//! What the running kernel offers the TIME_WAIT probes: function addresses,
//! whether a function is in BTF, whether fentry/fexit may load, and kprobe
//! support. Names differ across kernel versions, so they are looked up,
//! never assumed.
//!
//! Asked of the kernel by a small syscall program (src/bpf/kernel_facts.bpf.c)
//! where the kernel has its helpers (5.16+); /proc/kallsyms otherwise.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::mem::MaybeUninit;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use libbpf_rs::libbpf_sys as sys;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use crate::facts_skel::KernelFactsSkelBuilder;

/// What the kernel_facts program can look up in one run (MAX_NAMES, NAME_LEN).
const MAX_NAMES: usize = 8;
const NAME_LEN: usize = 64;

/// The functions the probes may need, as this kernel has them.
pub struct Kernel {
    symbols: HashMap<String, u64>,
    /// vmlinux BTF ids of the functions found there; `None` when only
    /// /proc/kallsyms could be read (then fentry is simply tried).
    btf_ids: Option<HashMap<String, u32>>,
}

impl Kernel {
    /// Looks up `names` (at most eight when asked of the kernel).
    pub fn inspect(names: &[&str]) -> Kernel {
        ask_the_kernel(names).unwrap_or_else(|_| Kernel {
            symbols: File::open("/proc/kallsyms").map(|f| find_symbols(BufReader::new(f), names)).unwrap_or_default(),
            btf_ids: None,
        })
    }

    /// Address of a function, `None` if absent or hidden (kptr_restrict).
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).copied()
    }

    /// Kprobes exist when the kernel registered their perf event source.
    pub fn has_kprobes(&self) -> bool {
        Path::new("/sys/bus/event_source/devices/kprobe").exists()
    }

    /// Whether an fexit program on `function` may load: a two-instruction
    /// program, so that a kernel refusing fentry/fexit (a lockdown or LSM
    /// policy says EPERM) costs microseconds rather than a full load of the
    /// tracer. `Ok` too when it cannot be told (no BTF ids known).
    pub fn fexit_loads(&self, function: &str) -> Result<()> {
        let Some(ids) = &self.btf_ids else { return Ok(()) };
        let id = *ids.get(function).ok_or_else(|| anyhow!("{function} is not in the kernel's BTF"))?;
        load_empty_fexit(id).map_err(|e| anyhow!("the kernel refuses fexit/{function}: {e}"))
    }
}

/// Runs kernel_facts.bpf.c: one bpf_kallsyms_lookup_name() and one
/// bpf_btf_find_by_name_kind() per name.
fn ask_the_kernel(names: &[&str]) -> Result<Kernel> {
    if names.len() > MAX_NAMES || names.iter().any(|n| n.len() >= NAME_LEN) {
        return Err(anyhow!("too many or too long names to ask the kernel for"));
    }
    let mut storage = MaybeUninit::uninit();
    let open = KernelFactsSkelBuilder::default().open(&mut storage).context("opening kernel_facts")?;
    let mut skel = open.load().context("loading kernel_facts")?;
    let bss = skel.maps.bss_data.as_deref_mut().ok_or_else(|| anyhow!("kernel_facts has no .bss"))?;
    for (i, name) in names.iter().enumerate() {
        for (dst, src) in bss.names[i].iter_mut().zip(name.bytes()) {
            *dst = src as i8;
        }
        bss.name_sizes[i] = name.len() as u32 + 1;
    }
    skel.progs.lookup.test_run(Default::default()).context("running kernel_facts")?;
    let bss = skel.maps.bss_data.as_deref().ok_or_else(|| anyhow!("kernel_facts has no .bss"))?;
    let (mut symbols, mut btf_ids) = (HashMap::new(), HashMap::new());
    for (i, name) in names.iter().enumerate() {
        if bss.addrs[i] != 0 {
            symbols.insert(name.to_string(), bss.addrs[i]);
        }
        let found = bss.btf_ids[i];
        let (module_fd, id) = ((found >> 32) as i32, found as u32);
        if module_fd > 0 {
            // In a module's BTF: we were handed a descriptor for it. The
            // probes only trace vmlinux functions.
            // SAFETY: a descriptor the kernel just installed for us.
            unsafe { libc::close(module_fd) };
        } else if found > 0 {
            btf_ids.insert(name.to_string(), id);
        }
    }
    Ok(Kernel { symbols, btf_ids: Some(btf_ids) })
}

/// `r0 = 0; exit` as an fexit program on BTF function `btf_id`.
fn load_empty_fexit(btf_id: u32) -> io::Result<()> {
    let mut mov = sys::bpf_insn { code: (sys::BPF_ALU64 | sys::BPF_MOV | sys::BPF_K) as u8, ..Default::default() };
    mov.set_dst_reg(0);
    let exit = sys::bpf_insn { code: (sys::BPF_JMP | sys::BPF_EXIT) as u8, ..Default::default() };
    let insns = [mov, exit];
    let mut opts = sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<sys::bpf_prog_load_opts>() as _,
        expected_attach_type: sys::BPF_TRACE_FEXIT,
        attach_btf_id: btf_id,
        ..Default::default()
    };
    let (name, license) = (CString::new("fexit_probe")?, CString::new("GPL")?);
    // SAFETY: valid instructions, NUL-terminated strings and options that
    // live across the call.
    let fd = unsafe {
        sys::bpf_prog_load(sys::BPF_PROG_TYPE_TRACING, name.as_ptr(), license.as_ptr(), insns.as_ptr(), 2, &mut opts)
    };
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: the program's descriptor, ours to close.
    unsafe { libc::close(fd) };
    Ok(())
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
        let k = Kernel::inspect(&["inet_twsk_alloc", "no_such_function_here"]);
        assert!(k.symbol("inet_twsk_alloc").is_some());
        assert!(k.symbol("no_such_function_here").is_none());
        // This kernel has the helpers; the fallback reads the same address.
        assert!(k.btf_ids.as_ref().is_some_and(|ids| ids.contains_key("inet_twsk_alloc")));
        let listed =
            File::open("/proc/kallsyms").map(|f| find_symbols(BufReader::new(f), &["inet_twsk_alloc"])).unwrap();
        assert_eq!(listed.get("inet_twsk_alloc").copied(), k.symbol("inet_twsk_alloc"));
    }

    #[test]
    fn fexit_probe_tells_what_this_kernel_allows() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let k = Kernel::inspect(&["inet_twsk_alloc"]);
        // Refused here (EPERM); the QEMU kernels of tests/kernels allow it
        // (their auto kind must pick fentry, which needs this Ok).
        if let Err(e) = k.fexit_loads("inet_twsk_alloc") {
            assert!(e.to_string().starts_with("the kernel refuses fexit/inet_twsk_alloc: "), "{e}");
        }
        let err = k.fexit_loads("not_a_function").unwrap_err().to_string();
        assert_eq!(err, "not_a_function is not in the kernel's BTF");
    }
}
