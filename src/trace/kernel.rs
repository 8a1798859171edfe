//! What the running kernel offers the probes: function addresses, whether a
//! function is in BTF, whether fentry may load, kprobe support, whether it
//! skips a raw tracepoint program that fires while it runs, and its tick rate
//! (HZ). Names differ across kernel versions, so they are looked up, never
//! assumed.
//!
//! Asked of the kernel by a small syscall program (src/bpf/kernel_facts.bpf.c)
//! where the kernel has its helpers (5.16+); /proc/kallsyms and
//! /proc/timer_list otherwise.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::mem::MaybeUninit;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use libbpf_rs::libbpf_sys as sys;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use crate::facts_skel::KernelFactsSkelBuilder;

/// What the kernel_facts program can look up in one run (MAX_NAMES, NAME_LEN).
const MAX_NAMES: usize = 12;
const NAME_LEN: usize = 64;

/// The functions the probes may need, as this kernel has them.
pub struct Kernel {
    symbols: HashMap<String, u64>,
    /// vmlinux BTF ids of the functions found there; `None` when only
    /// /proc/kallsyms could be read (then fentry is simply tried).
    btf_ids: Option<HashMap<String, u32>>,
    hz: Option<u32>,
    /// The kernel's config file gave `hz` (else it was measured).
    hz_configured: bool,
    /// Why kernel_facts could not ask the kernel, where it could not (the
    /// facts then come from /proc).
    refused: Option<String>,
}

impl Kernel {
    /// Looks up `names` (at most MAX_NAMES when asked of the kernel).
    pub fn inspect(names: &[&str]) -> Kernel {
        match ask_the_kernel(names) {
            Ok((kernel, clocks)) => {
                let (hz, hz_configured) = tick_rate(Some(clocks), measure_hz);
                Kernel { hz, hz_configured, ..kernel }
            }
            // Kernels before 5.16 (5.10 among them: no syscall programs
            // before 5.14) refuse kernel_facts.
            Err(e) => {
                let (hz, hz_configured) = tick_rate(timer_list_clocks(), || None);
                Kernel {
                    symbols: File::open("/proc/kallsyms")
                        .map(|f| find_symbols(BufReader::new(f), names))
                        .unwrap_or_default(),
                    btf_ids: None,
                    hz,
                    hz_configured,
                    refused: Some(e.root_cause().to_string()),
                }
            }
        }
    }

    /// The tick rate, CONFIG_HZ: from the kernel's config where the system
    /// has it (where libbpf would look), else measured; `None` if neither.
    pub fn hz(&self) -> Option<u32> {
        self.hz
    }

    /// What -v says of the tick rate.
    pub fn describe_hz(&self) -> String {
        match (self.hz, self.hz_configured) {
            (Some(hz), true) => format!("HZ {hz} (the kernel's config)"),
            (Some(hz), false) => format!("HZ {hz} (measured)"),
            (None, _) => "HZ unknown".into(),
        }
    }

    /// What -v says of where the functions were looked up, when not by
    /// kernel_facts.
    pub fn describe_source(&self) -> String {
        match &self.refused {
            Some(why) => format!("; functions from /proc/kallsyms (this kernel refuses kernel_facts: {why})"),
            None => String::new(),
        }
    }

    /// Address of a function, `None` if absent or hidden (kptr_restrict).
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).copied()
    }

    /// Kprobes exist when the kernel registered their perf event source.
    pub fn has_kprobes(&self) -> bool {
        Path::new("/sys/bus/event_source/devices/kprobe").exists()
    }

    /// Whether an fentry program on `function` may load: a two-instruction
    /// program, so that a kernel refusing fentry/fexit (a lockdown or LSM
    /// policy says EPERM) costs microseconds rather than a full load of the
    /// tracer. `Ok` too when it cannot be told (no BTF ids known).
    pub fn fentry_loads(&self, function: &str) -> Result<()> {
        let Some(ids) = &self.btf_ids else { return Ok(()) };
        let id = *ids.get(function).ok_or_else(|| anyhow!("{function} is not in the kernel's BTF"))?;
        load_empty_fentry(id).map_err(|e| anyhow!("the kernel refuses fentry/{function}: {e}"))
    }

    /// Whether this kernel skips a raw tracepoint program that fires while
    /// the same program runs on the CPU: since 6.1 (commit 05b24ff9b2cf)
    /// __bpf_trace_run() checks prog->active, and that commit introduced
    /// [`RECURSION_CHECK_FN`]. Its absence tells where the kernel was asked,
    /// or where /proc/kallsyms showed the other functions asked for;
    /// `None` when it cannot be told (kallsyms hid every address).
    pub fn skips_nested_runs(&self) -> Option<bool> {
        let found = self.symbol(RECURSION_CHECK_FN).is_some()
            || self.btf_ids.as_ref().is_some_and(|ids| ids.contains_key(RECURSION_CHECK_FN));
        (found || self.btf_ids.is_some() || !self.symbols.is_empty()).then_some(found)
    }

    /// Whether tracing programs may call bpf_get_socket_cookie(): 5.12
    /// (commit c5dbb89fc2ac) gave it to them as [`COOKIE_FN`]. Where that
    /// cannot be told, no: the kernel side then reads no cookie at all, and
    /// tcpstate numbers connections itself.
    pub fn tracing_socket_cookies(&self) -> bool {
        self.symbol(COOKIE_FN).is_some()
    }
}

/// Made global by the commit that made raw tracepoints skip nested runs.
pub const RECURSION_CHECK_FN: &str = "bpf_prog_inc_misses_counter";

/// What bpf_get_socket_cookie() runs in tracing programs (5.12+).
pub const COOKIE_FN: &str = "bpf_get_socket_ptr_cookie";

/// Jiffies and CLOCK_MONOTONIC (ns) read at one moment.
type Clocks = (u64, u64);

/// Runs kernel_facts.bpf.c's lookup: one bpf_kallsyms_lookup_name() and
/// one bpf_btf_find_by_name_kind() per name, and jiffies and the monotonic
/// clock read at one moment.
fn ask_the_kernel(names: &[&str]) -> Result<(Kernel, Clocks)> {
    if names.len() > MAX_NAMES || names.iter().any(|n| n.len() >= NAME_LEN) {
        return Err(anyhow!("too many or too long names to ask the kernel for"));
    }
    let mut storage = MaybeUninit::uninit();
    let mut open = KernelFactsSkelBuilder::default().open(&mut storage).context("opening kernel_facts")?;
    open.progs.measure_jiffy.set_autoload(false);
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
    let kernel = Kernel { symbols, btf_ids: Some(btf_ids), hz: None, hz_configured: false, refused: None };
    Ok((kernel, (bss.jiffies_now, bss.mono_now)))
}

/// Measures a jiffy with kernel_facts.bpf.c's measure_jiffy (a spin of at
/// most two jiffies, only where nothing else tells the tick rate).
fn measure_hz() -> Option<u32> {
    let mut storage = MaybeUninit::uninit();
    let mut open = KernelFactsSkelBuilder::default().open(&mut storage).ok()?;
    open.progs.lookup.set_autoload(false);
    let skel = open.load().ok()?;
    skel.progs.measure_jiffy.test_run(Default::default()).ok()?;
    hz_of_jiffy(skel.maps.bss_data.as_deref()?.jiffy_ns)
}

/// The tick rate, and whether the kernel's config gave it. Jiffies' start
/// tells it (`clocks`), but not within a minute of its wrap: then the config
/// file, else `measure`.
fn tick_rate(clocks: Option<Clocks>, measure: impl FnOnce() -> Option<u32>) -> (Option<u32>, bool) {
    if let Some(hz) = clocks.and_then(hz_of_clocks) {
        return (Some(hz), false);
    }
    match config_hz() {
        Some(hz) => (Some(hz), true),
        None => (measure(), false),
    }
}

/// Jiffies and CLOCK_MONOTONIC from /proc/timer_list (root only), for
/// kernels that refuse kernel_facts.
fn timer_list_clocks() -> Option<Clocks> {
    File::open("/proc/timer_list").ok().and_then(|f| clocks_of_timer_list(BufReader::new(f)))
}

/// Its top line `now at N nsecs` (ktime_get(), the monotonic clock) and the
/// first CPU's `jiffies: N`, a few lines on: printed microseconds apart.
fn clocks_of_timer_list(text: impl BufRead) -> Option<Clocks> {
    let mut now = None;
    for line in text.lines().map_while(Result::ok) {
        if let Some(ns) = line.strip_prefix("now at ").and_then(|l| l.strip_suffix(" nsecs")) {
            now = ns.parse().ok();
        } else if let Some(jiffies) = line.strip_prefix("jiffies: ") {
            return Some((jiffies.trim().parse().ok()?, now?));
        }
    }
    None
}

/// The tick rate from jiffies and CLOCK_MONOTONIC read at one moment. The
/// kernel starts jiffies at INITIAL_JIFFIES, 2^32 - 300 * HZ on 64-bit (so
/// that it wraps five minutes after boot, include/linux/jiffies.h), and
/// counts HZ a second of monotonic time from there. The usual tick rate
/// (x86 and arm64 offer no other) that predicts the jiffies read is it, when
/// it does so by far the best: not within a minute or so of the wrap, where
/// every rate predicts about the same.
fn hz_of_clocks((jiffies, mono_ns): (u64, u64)) -> Option<u32> {
    let secs = mono_ns as f64 / 1e9;
    let mut errors: Vec<(f64, u32)> = COMMON_HZ
        .iter()
        .map(|&hz| {
            let predicted = (1u64 << 32) as f64 + f64::from(hz) * (secs - 300.0);
            ((jiffies as f64 - predicted).abs() / f64::from(hz), hz)
        })
        .collect();
    errors.sort_by(|a, b| a.0.total_cmp(&b.0));
    let ((best_err, hz), (next_err, _)) = (errors[0], errors[1]);
    // Errors in seconds: the tick starts a little after the clock at boot.
    (best_err < 5.0 && next_err > best_err + 10.0).then_some(hz)
}

/// The usual tick rates (x86's and arm64's choices); a measured one this
/// close to one of them is it.
const COMMON_HZ: [u32; 4] = [100, 250, 300, 1000];

/// The tick rate of a measured jiffy.
fn hz_of_jiffy(jiffy_ns: u64) -> Option<u32> {
    let hz = 1_000_000_000u64.checked_div(jiffy_ns)? as u32;
    COMMON_HZ.into_iter().find(|&c| c.abs_diff(hz) * 20 <= c).or(Some(hz)).filter(|hz| (10..=10_000).contains(hz))
}

/// CONFIG_HZ from the kernel's config, read where libbpf reads it:
/// /boot/config-RELEASE, else /proc/config.gz.
fn config_hz() -> Option<u32> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    [format!("/boot/config-{}", release.trim()), "/proc/config.gz".to_string()]
        .iter()
        .find_map(|path| read_maybe_gzipped(path))
        .and_then(|config| config.lines().find_map(|l| l.strip_prefix("CONFIG_HZ=")?.trim().parse().ok()))
}

// zlib, which libbpf already links for the same job.
extern "C" {
    fn gzopen(path: *const c_char, mode: *const c_char) -> *mut c_void;
    fn gzread(file: *mut c_void, buf: *mut c_void, len: c_uint) -> c_int;
    fn gzclose(file: *mut c_void) -> c_int;
}

/// A file's text, gunzipped if it is gzip (zlib reads plain files as is).
fn read_maybe_gzipped(path: &str) -> Option<String> {
    let (path, mode) = (CString::new(path).ok()?, CString::new("rb").ok()?);
    // SAFETY: NUL-terminated strings that outlive the call.
    let file = unsafe { gzopen(path.as_ptr(), mode.as_ptr()) };
    if file.is_null() {
        return None;
    }
    let (mut text, mut buf) = (Vec::new(), vec![0u8; 64 * 1024]);
    loop {
        // SAFETY: an open file and a buffer of the length given.
        let n = unsafe { gzread(file, buf.as_mut_ptr().cast(), buf.len() as c_uint) };
        if n <= 0 {
            break;
        }
        text.extend_from_slice(&buf[..n as usize]);
    }
    // SAFETY: the file opened above, closed once.
    unsafe { gzclose(file) };
    String::from_utf8(text).ok()
}

/// `r0 = 0; exit` as an fentry program on BTF function `btf_id`.
fn load_empty_fentry(btf_id: u32) -> io::Result<()> {
    let mut mov = sys::bpf_insn { code: (sys::BPF_ALU64 | sys::BPF_MOV | sys::BPF_K) as u8, ..Default::default() };
    mov.set_dst_reg(0);
    let exit = sys::bpf_insn { code: (sys::BPF_JMP | sys::BPF_EXIT) as u8, ..Default::default() };
    let insns = [mov, exit];
    let mut opts = sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<sys::bpf_prog_load_opts>() as _,
        expected_attach_type: sys::BPF_TRACE_FENTRY,
        attach_btf_id: btf_id,
        ..Default::default()
    };
    let (name, license) = (CString::new("fentry_probe")?, CString::new("GPL")?);
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
    fn fentry_probe_tells_what_this_kernel_allows() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let k = Kernel::inspect(&["inet_twsk_free"]);
        // Refused here (EPERM); the QEMU kernels of tests/kernels allow it
        // (their auto kind must pick fentry, which needs this Ok).
        if let Err(e) = k.fentry_loads("inet_twsk_free") {
            assert!(e.to_string().starts_with("the kernel refuses fentry/inet_twsk_free: "), "{e}");
        }
        let err = k.fentry_loads("not_a_function").unwrap_err().to_string();
        assert_eq!(err, "not_a_function is not in the kernel's BTF");
    }

    #[test]
    fn tick_rates_come_from_the_config_or_a_measured_jiffy() {
        assert_eq!(hz_of_jiffy(4_000_000), Some(250));
        assert_eq!(hz_of_jiffy(4_100_000), Some(250), "close enough");
        assert_eq!(hz_of_jiffy(3_333_333), Some(300));
        assert_eq!(hz_of_jiffy(1_003_000), Some(1000));
        assert_eq!(hz_of_jiffy(8_000_000), Some(125), "uncommon, but a tick rate");
        assert_eq!(hz_of_jiffy(0), None);
        assert_eq!(hz_of_jiffy(1_000_000_000), None, "no kernel ticks once a second");
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        // A measured jiffy, and jiffies' start, agree with the config,
        // where there is one.
        let (_, clocks) = ask_the_kernel(&["tw_timer_handler"]).unwrap();
        let measured = measure_hz();
        assert!(measured.is_some());
        if let Some(hz) = config_hz() {
            assert_eq!(Some(hz), measured);
            let uptime = clocks.1 / 1_000_000_000;
            if !(240..=360).contains(&uptime) {
                assert_eq!(hz_of_clocks(clocks), Some(hz), "{clocks:?}");
            }
        }
        assert_eq!(Kernel::inspect(&["tw_timer_handler"]).hz(), measured);
    }

    #[test]
    fn timer_list_gives_both_clocks() {
        let text = "Timer List Version: v0.8\nHRTIMER_MAX_CLOCK_BASES: 8\nnow at 12345678901 nsecs\n\ncpu: 0\n \
                    clock 0:\n  .idle_jiffies   : 4294670000\njiffies: 4294670123\n\njiffies: 4294670999\n";
        assert_eq!(clocks_of_timer_list(text.as_bytes()), Some((4294670123, 12345678901)));
        assert_eq!(clocks_of_timer_list("jiffies: 5\n".as_bytes()), None, "no time before it");
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        // Read here, it tells what kernel_facts' clocks tell.
        let (_, clocks) = ask_the_kernel(&["tw_timer_handler"]).unwrap();
        let uptime = clocks.1 / 1_000_000_000;
        if !(240..=360).contains(&uptime) {
            assert_eq!(timer_list_clocks().and_then(hz_of_clocks), hz_of_clocks(clocks));
        }
    }

    #[test]
    fn jiffies_start_tells_the_tick_rate() {
        let at = |hz: u64, secs: f64| {
            let jiffies = (1u64 << 32) - 300 * hz + (hz as f64 * secs) as u64;
            (jiffies, (secs * 1e9) as u64)
        };
        // Ten seconds after boot (a test guest), a day after.
        for hz in [100, 250, 300, 1000] {
            assert_eq!(hz_of_clocks(at(hz, 10.0)), Some(hz as u32));
            assert_eq!(hz_of_clocks(at(hz, 86_400.0)), Some(hz as u32));
        }
        // The tick starting half a second late does not fool it.
        let (jiffies, mono) = at(250, 12.0);
        assert_eq!(hz_of_clocks((jiffies - 125, mono)), Some(250));
        // Near the wrap, every rate predicts about the same: not told.
        assert_eq!(hz_of_clocks(at(250, 301.0)), None);
        // Nonsense is no rate.
        assert_eq!(hz_of_clocks((5, 10_000_000_000)), None);
    }

    #[test]
    fn nested_runs_are_skipped_where_the_recursion_check_is() {
        let kernel = |symbols: &[&str], btf: Option<&[&str]>| Kernel {
            symbols: symbols.iter().map(|s| (s.to_string(), 1)).collect(),
            btf_ids: btf.map(|names| names.iter().map(|s| (s.to_string(), 1)).collect()),
            hz: None,
            hz_configured: false,
            refused: None,
        };
        assert_eq!(kernel(&[RECURSION_CHECK_FN], Some(&[])).skips_nested_runs(), Some(true));
        assert_eq!(kernel(&[], Some(&[RECURSION_CHECK_FN])).skips_nested_runs(), Some(true));
        assert_eq!(kernel(&["tw_timer_handler"], Some(&[])).skips_nested_runs(), Some(false));
        // Only /proc/kallsyms (5.10): it showed the others, so it would
        // show this one; nothing there at all: cannot be told.
        assert_eq!(kernel(&["tw_timer_handler"], None).skips_nested_runs(), Some(false));
        assert_eq!(kernel(&[RECURSION_CHECK_FN], None).skips_nested_runs(), Some(true));
        assert_eq!(kernel(&[], None).skips_nested_runs(), None);
        if nix::unistd::geteuid().is_root() {
            // 6.18 here: it skips.
            assert_eq!(Kernel::inspect(&[RECURSION_CHECK_FN]).skips_nested_runs(), Some(true));
        }
    }
}
