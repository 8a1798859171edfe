//! Opens the BPF skeleton, writes the configuration into .rodata, loads,
//! attaches, and reads the counters that say what was lost.

use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, OpenObject, RingBuffer, RingBufferBuilder};

pub mod abi;
mod decode;
pub mod kernel;
pub mod libbpf_log;
mod lost;
pub mod preflight;
pub mod ring;
pub mod scope;
mod tw_probe;

use self::abi::{AF_INET, AF_INET6};
pub use self::decode::{Probe, ProbeEvent, ResetCause, TwEvent};
use self::kernel::{Kernel, COOKIE_FN, RECURSION_CHECK_FN};
pub use self::lost::Lost;
pub use self::scope::{CgroupScope, NetnsScope};
pub use self::tw_probe::TwProbe;
use self::tw_probe::{TwPlan, BIRTH_FNS, FREE_FNS, REARM_FN, TIMER_FN};

use crate::skel::{types, OpenTcpstateSkel, TcpstateSkel, TcpstateSkelBuilder};

/// What to trace: the kernel-side filters and the TIME_WAIT probe wanted.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The original tool's server; `None` traces every TCP socket.
    pub server: Option<SocketAddr>,
    /// Only IPv4 (4) or IPv6 (6) sockets.
    pub family: Option<u8>,
    pub lports: Vec<u16>,
    pub rports: Vec<u16>,
    /// Only sockets of this cgroup v2 or below it.
    pub cgroup: Option<CgroupScope>,
    /// Only sockets of this network namespace (its inode).
    pub netns: Option<u32>,
    pub ringbuf_kb: u32,
    pub tw_probe: TwProbe,
    /// Overrides the choice among [`FREE_FNS`].
    pub tw_free_fn: Option<String>,
    /// Kernel BTF, for CO-RE and for finding traceable functions.
    pub btf: PathBuf,
    /// Connection records: CLOSE records carry the socket's counters, and
    /// resets are traced.
    pub records: bool,
}

/// Storage for the attempts `Tracer::start` may make: one per probe kind
/// tried (a failed load is all-or-nothing, so each try reopens the object).
pub type Slots = [MaybeUninit<OpenObject>; 4];

pub fn slots() -> Slots {
    std::array::from_fn(|_| MaybeUninit::uninit())
}

/// The loaded programs and maps.
pub struct Tracer<'obj> {
    skel: TcpstateSkel<'obj>,
    /// The TIME_WAIT probe kind in use.
    pub tw_probe: TwProbe,
    /// Kinds tried before it, with why each was refused.
    pub refused: Vec<(TwProbe, String)>,
    /// Whether state changes the kernel skips the main program for are
    /// caught, and why (or why not).
    pub nested: NestedBackup,
}

/// Attached programs: dropping it detaches them.
pub struct Links(#[allow(dead_code)] Vec<Link>);

/// The backup program for state changes the kernel skips the main program
/// for (a softirq on top of a tcp_set_state() on the same CPU).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NestedBackup {
    /// Attached, reporting exactly when the main program's own recursion
    /// guard (prog->active) is raised on the CPU.
    MainGuard,
    /// Not loaded: this kernel never skips a raw tracepoint program.
    NotNeeded,
    /// Not attached, for the reason given: the kernel's skips are lost, and
    /// counted as lost.
    Unavailable(String),
}

impl NestedBackup {
    /// What -v says about it, after "attached tp_btf/inet_sock_set_state".
    pub fn describe(&self) -> String {
        match self {
            NestedBackup::MainGuard => ", and a backup for nested events keyed on the main program's recursion \
                                        guard (this kernel skips a tracepoint program that fires while it runs)"
                .into(),
            NestedBackup::NotNeeded => format!(
                "; no backup for nested events: this kernel never skips a raw tracepoint program \
                 (no {RECURSION_CHECK_FN}: before Linux 6.1)"
            ),
            NestedBackup::Unavailable(why) => {
                format!("; no backup for nested events ({why}): the runs the kernel skips are counted as lost")
            }
        }
    }
}

impl<'obj> Tracer<'obj> {
    /// Loads and attaches, picking the TIME_WAIT probe kind: the one asked
    /// for, or with `auto` the first of fentry, kprobe, timer this kernel
    /// accepts, and none rather than no tracing at all.
    pub fn start(cfg: &Config, slots: &'obj mut Slots) -> Result<(Tracer<'obj>, Links, String)> {
        let mut wanted = BIRTH_FNS.to_vec();
        wanted.extend([REARM_FN, TIMER_FN, RECURSION_CHECK_FN, COOKIE_FN]);
        wanted.extend(FREE_FNS);
        wanted.extend(cfg.tw_free_fn.as_deref());
        let kernel = Kernel::inspect(&wanted);
        let setup = Setup {
            // Where it cannot be told, the backup is loaded: keyed on
            // prog->active it reports nothing on a kernel that never raises
            // it for tracepoints.
            backup: kernel.skips_nested_runs() != Some(false),
            hz: kernel.hz().unwrap_or(0),
            cookies: kernel.tracing_socket_cookies(),
            resets: cfg.records.then(Resets::of_running_kernel).flatten(),
        };
        let kinds = match cfg.tw_probe {
            TwProbe::Auto => vec![TwProbe::Fentry, TwProbe::Kprobe, TwProbe::Timer, TwProbe::Off],
            kind => vec![kind],
        };
        let mut refused = Vec::new();
        let mut slots = slots.iter_mut();
        for kind in kinds {
            let attempt = TwPlan::new(kind, &kernel, cfg.tw_free_fn.as_deref()).and_then(|plan| {
                let slot = slots.next().ok_or_else(|| anyhow!("no storage left for another attempt"))?;
                let mut skel = load(cfg, &plan, &setup, slot)?;
                // The state program first: until it is attached nothing is
                // traced, and a watcher that sees tcpstate's first link must
                // be able to count on that (the iterator's comes next).
                let mut links = vec![attach_named(&skel.progs.inet_sock_set_state, "tp_btf/inet_sock_set_state")?];
                let nested = if setup.backup { find_main_guard(&mut skel) } else { NestedBackup::NotNeeded };
                if nested == NestedBackup::MainGuard {
                    let backup = &skel.progs.inet_sock_set_state_nested;
                    links.push(attach_named(backup, "tp_btf/inet_sock_set_state (backup)")?);
                }
                links.extend(plan.attach(&skel)?);
                let mut described =
                    format!("{}; {}{}", plan.describe(), kernel.describe_hz(), kernel.describe_source());
                if let Some(resets) = setup.resets {
                    links.extend(resets.attach(&skel)?);
                    described.push_str(resets.describe());
                }
                if !setup.cookies {
                    described.push_str(NO_COOKIES);
                }
                Ok((skel, Links(links), described, nested))
            });
            match attempt {
                Ok((skel, links, described, nested)) => {
                    return Ok((Tracer { skel, tw_probe: kind, refused, nested }, links, described));
                }
                // Without TIME_WAIT probes this is the tracer itself failing.
                Err(e) if kind == TwProbe::Off => return Err(e),
                Err(e) if cfg.tw_probe != TwProbe::Auto => {
                    return Err(e.context(format!(
                        "TIME_WAIT probe '{}' cannot run on this kernel (try --tw-probe auto)",
                        kind.name()
                    )))
                }
                Err(e) => refused.push((kind, format!("{e:#}"))),
            }
        }
        bail!("no way to load the tracer on this kernel")
    }

    /// A reader for the event ring; `on_record` gets each raw record.
    pub fn ring_buffer<'a>(&'a self, on_record: impl FnMut(&[u8]) -> i32 + 'a) -> Result<RingBuffer<'a>> {
        let mut builder = RingBufferBuilder::new();
        builder.add(&self.skel.maps.events, on_record).context("setting up the ring buffer")?;
        builder.build().context("setting up the ring buffer")
    }

    /// What the kernel side could not deliver so far.
    pub fn lost(&self) -> Result<Lost> {
        lost::read(&self.skel)
    }
}

/// Runs the find_main_prog iterator once, which finds the main program's
/// recursion guard for the backup, then once on each CPU this process may
/// use, so that it learns each CPU's per-CPU offset (the backup then saves
/// a map lookup and a probe read a run).
fn find_main_guard(skel: &mut TcpstateSkel<'_>) -> NestedBackup {
    let found = (|| -> Result<bool> {
        let id = libbpf_rs::Program::id_from_fd(skel.progs.inet_sock_set_state.as_fd())?;
        let bss = skel.maps.bss_data.as_deref_mut().ok_or_else(|| anyhow!("no .bss"))?;
        bss.main_prog_id = id;
        let link = skel.progs.find_main_prog.attach()?;
        let run = || -> Result<()> {
            let mut iter = libbpf_rs::Iter::new(&link)?;
            std::io::Read::read_to_end(&mut iter, &mut Vec::new())?;
            Ok(())
        };
        run()?;
        on_each_cpu(run);
        Ok(skel.maps.bss_data.as_deref().is_some_and(|b| b.main_guard_pcpu != 0))
    })();
    match found {
        Ok(true) => NestedBackup::MainGuard,
        Ok(false) => NestedBackup::Unavailable("struct bpf_prog has no per-CPU int pointer 'active' here".into()),
        Err(e) => NestedBackup::Unavailable(format!("finding the main program's guard failed: {e:#}")),
    }
}

/// The state tracepoint, and its backup where it has a guard to read.
fn attach_named(prog: &libbpf_rs::ProgramMut<'_>, what: &str) -> Result<Link> {
    prog.attach().with_context(|| format!("attaching {what}"))
}

/// What -v adds to the probes line on kernels whose tracing programs get
/// no socket cookie.
const NO_COOKIES: &str = "; connection ids: tcpstate's own (tracing programs get no socket cookie before 5.12)";

/// What the kernel offers, which the object is configured for before load.
struct Setup {
    /// The nested-event backup is loaded.
    backup: bool,
    /// CONFIG_HZ; 0: not known.
    hz: u32,
    /// Tracing programs may call bpf_get_socket_cookie().
    cookies: bool,
    /// The reset programs to load, with --connections.
    resets: Option<Resets>,
}

/// The reset programs connection records need: tcp_send_reset's arguments
/// differ between kernels, so one of two programs is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resets {
    /// 6.10+: the tracepoint gives the kernel's reason.
    WithReason,
    WithoutReason,
}

impl Resets {
    /// The kind this kernel's tracepoint has: its format in tracefs lists
    /// a `reason` field from 6.10. (Parsing the kernel's BTF would tell too,
    /// at several MiB of memory and tens of ms.) None where tracefs shows no
    /// reset tracepoints (records then cannot tell resets apart: preflight
    /// said so); without tracefs, the program without the reason, which
    /// loads everywhere.
    fn of_running_kernel() -> Option<Resets> {
        let Some(events) = preflight::tracefs_events() else { return Some(Resets::WithoutReason) };
        let format = std::fs::read_to_string(events.join("tcp/tcp_send_reset/format")).ok()?;
        let has_reason = format.lines().any(|l| l.trim_start().starts_with("field:") && l.contains(" reason;"));
        events.join("tcp/tcp_receive_reset").is_dir().then_some(if has_reason {
            Resets::WithReason
        } else {
            Resets::WithoutReason
        })
    }

    /// What -v adds to the probes line.
    fn describe(self) -> &'static str {
        match self {
            Resets::WithReason => "; resets: tp_btf/tcp_send_reset (with the kernel's reason), tcp_receive_reset",
            Resets::WithoutReason => "; resets: tp_btf/tcp_send_reset (no reason before 6.10), tcp_receive_reset",
        }
    }

    fn attach(self, skel: &TcpstateSkel<'_>) -> Result<Vec<Link>> {
        let send = match self {
            Resets::WithReason => &skel.progs.tcp_send_reset_reason,
            Resets::WithoutReason => &skel.progs.tcp_send_reset,
        };
        Ok(vec![
            attach_named(send, "tp_btf/tcp_send_reset")?,
            attach_named(&skel.progs.tcp_receive_reset, "tp_btf/tcp_receive_reset")?,
        ])
    }
}

/// Runs `f` on each CPU this thread may use, then restores its affinity.
/// Best effort: a CPU it cannot move to is skipped.
fn on_each_cpu(f: impl Fn() -> Result<()>) {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let Ok(allowed) = sched_getaffinity(Pid::from_raw(0)) else { return };
    for cpu in (0..CpuSet::count()).filter(|&c| allowed.is_set(c).unwrap_or(false)) {
        let mut one = CpuSet::new();
        if one.set(cpu).is_ok() && sched_setaffinity(Pid::from_raw(0), &one).is_ok() {
            let _ = f();
        }
    }
    let _ = sched_setaffinity(Pid::from_raw(0), &allowed);
}

/// Opens a fresh copy of the object, configures it for `plan` and for what
/// the kernel offers (`setup`), loads it.
fn load<'obj>(
    cfg: &Config,
    plan: &TwPlan,
    setup: &Setup,
    slot: &'obj mut MaybeUninit<OpenObject>,
) -> Result<TcpstateSkel<'obj>> {
    let mut builder = TcpstateSkelBuilder::default();
    builder.obj_builder.name("tcpstate").context("naming the BPF object")?;
    if cfg.btf != Path::new(preflight::KERNEL_BTF) {
        builder.obj_builder.btf_custom_path(&cfg.btf).context("using --btf")?;
    }
    let mut open = builder.open(slot).context("opening the BPF object")?;
    configure(&mut open, cfg)?;
    if cfg.cgroup.is_some() {
        size_tw_memory(&mut open, setup.cookies)?;
    }
    let ro = rodata(&mut open)?;
    ro.hz = setup.hz;
    ro.cookies = setup.cookies;
    ro.want_counters = cfg.records;
    plan.apply(&mut open)?;
    open.progs.inet_sock_set_state_nested.set_autoload(setup.backup);
    open.progs.find_main_prog.set_autoload(setup.backup);
    let resets = setup.resets;
    open.progs.tcp_send_reset.set_autoload(resets == Some(Resets::WithoutReason));
    open.progs.tcp_send_reset_reason.set_autoload(resets == Some(Resets::WithReason));
    open.progs.tcp_receive_reset.set_autoload(resets.is_some());
    libbpf_log::clear();
    open.load().map_err(load_error)
}

pub(super) fn rodata<'a>(open: &'a mut OpenTcpstateSkel<'_>) -> Result<&'a mut types::rodata> {
    open.maps.rodata_data.as_deref_mut().ok_or_else(|| anyhow!("BPF object has no .rodata"))
}

fn configure(open: &mut OpenTcpstateSkel<'_>, cfg: &Config) -> Result<()> {
    let ring_bytes = cfg.ringbuf_kb.checked_mul(1024).context("ring buffer size overflows")?;
    open.maps.events.set_max_entries(ring_bytes).context("sizing the ring buffer")?;
    let ro = rodata(open)?;
    if let Some(server) = cfg.server {
        ro.has_server = true;
        ro.server_port = server.port();
        (ro.server_family, ro.server_ip) = ip_words(server.ip());
    }
    ro.target_family = match cfg.family {
        Some(4) => AF_INET,
        Some(6) => AF_INET6,
        _ => 0,
    };
    ro.nr_lports = fill_ports(&mut ro.lports, &cfg.lports)?;
    ro.nr_rports = fill_ports(&mut ro.rports, &cfg.rports)?;
    ro.netns_target = cfg.netns.unwrap_or(0);
    if let Some(cgroup) = &cfg.cgroup {
        (ro.cgroup_target, ro.cgroup_level) = (cgroup.id, cgroup.level);
    }
    // Wake the reader early only when the ring is a quarter full; otherwise
    // it drains on its own short tick.
    ro.wakeup_bytes = u64::from(ring_bytes / 4);
    Ok(())
}

/// --cgroup: how many of the target's connections on their way to TIME_WAIT
/// the kernel side follows, allocated in full at load (each map has room
/// for one entry otherwise). With cookies (5.12+), slots of a direct-mapped
/// array (16 bytes each, 8 MiB): the connections among the last 2^19
/// sockets given a cookie. Before, entries of an LRU hash (about 7 MiB).
/// One overwritten or pushed out loses its timewait socket's events, whose
/// end tcpstate then forgets after 10 minutes.
const TW_SLOTS: u32 = 1 << 19;
const TW_CGROUP_ENTRIES: u32 = 65_536;

fn size_tw_memory(open: &mut OpenTcpstateSkel<'_>, cookies: bool) -> Result<()> {
    if cookies {
        open.maps.tw_slots.set_max_entries(TW_SLOTS).context("sizing the cgroup slots")?;
        rodata(open)?.tw_slot_mask = TW_SLOTS - 1;
    } else {
        open.maps.tw_cgroup.set_max_entries(TW_CGROUP_ENTRIES).context("sizing the cgroup map")?;
    }
    Ok(())
}

/// An address as the kernel side compares it: family, and network-order
/// 32-bit words with IPv4 in the first. v4-mapped IPv6 is IPv4, as the
/// kernel side folds it.
fn ip_words(ip: IpAddr) -> (u16, [u32; 4]) {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let words = |b: &[u8]| -> [u32; 4] {
        let mut w = [0u32; 4];
        for (i, chunk) in b.chunks(4).enumerate() {
            w[i] = u32::from_ne_bytes(chunk.try_into().expect("4-byte chunk"));
        }
        w
    };
    match ip {
        IpAddr::V4(v4) => (AF_INET, words(&v4.octets())),
        IpAddr::V6(v6) => (AF_INET6, words(&v6.octets())),
    }
}

fn fill_ports(dst: &mut [u16], ports: &[u16]) -> Result<u32> {
    if ports.len() > dst.len() {
        bail!("at most {} ports per filter", dst.len());
    }
    dst[..ports.len()].copy_from_slice(ports);
    Ok(ports.len() as u32)
}

/// Names the program libbpf complained about, with the kernel's reason.
fn load_error(err: libbpf_rs::Error) -> anyhow::Error {
    match libbpf_log::failed_program() {
        Some(prog) => anyhow!("loading BPF program '{prog}' failed: {err} (run with -v for libbpf's log)"),
        None => anyhow!("loading the BPF object failed: {err} (run with -v for libbpf's log)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_network_order_words() {
        let (fam, w) = ip_words("127.0.0.1".parse().unwrap());
        assert_eq!(fam, AF_INET);
        assert_eq!(w[0].to_ne_bytes(), [127, 0, 0, 1]);
        assert_eq!(&w[1..], &[0, 0, 0]);
        let (fam, w) = ip_words("::ffff:10.1.2.3".parse().unwrap());
        assert_eq!((fam, w[0].to_ne_bytes()), (AF_INET, [10, 1, 2, 3]));
        let (fam, w) = ip_words("::1".parse().unwrap());
        assert_eq!(fam, AF_INET6);
        assert_eq!(w[3].to_ne_bytes(), [0, 0, 0, 1]);
    }

    #[test]
    fn port_filters_fit_the_kernel_array() {
        let mut dst = [0u16; 4];
        assert_eq!(fill_ports(&mut dst, &[80, 443]).unwrap(), 2);
        assert_eq!(dst, [80, 443, 0, 0]);
        assert!(fill_ports(&mut dst, &[1, 2, 3, 4, 5]).is_err());
    }
}
