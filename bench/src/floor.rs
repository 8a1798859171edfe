//! The floor row's tracer (bench/floor.bpf.c): one tp_btf program that only
//! counts the bench's transitions. Its cost is the least any tracer of
//! inet_sock_set_state can pay, so it separates "attaching a program" from
//! "what tcpstate does per event".

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, OpenObject};
use serde::{Deserialize, Serialize};

#[allow(clippy::all, non_camel_case_types, non_upper_case_globals, dead_code)]
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/floor.skel.rs"));
}

use skel::{FloorSkel, FloorSkelBuilder};

/// What the loader prints as JSON when stopped.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    /// Transitions the program counted.
    pub received: u64,
    /// Times the kernel skipped the program (bpf_prog_info.recursion_misses).
    pub missed: u64,
}

/// Which empty programs run beside the counter, each at one of tcpstate's
/// attachment points: what being called there costs, before any work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Empty {
    /// A second inet_sock_set_state program (tcpstate's nested-event backup).
    pub backup: bool,
    /// timer_start, timer_cancel and timer_expire_entry programs
    /// (tcpstate's tracepoint-only TIME_WAIT probes).
    pub timers: bool,
}

/// The loaded, attached counter; dropping it detaches.
pub struct Floor<'obj> {
    skel: FloorSkel<'obj>,
    _links: Vec<Link>,
}

impl<'obj> Floor<'obj> {
    /// Loads the program filtered on `port` and attaches it, with the
    /// `empty` programs asked for.
    pub fn attach(port: u16, empty: Empty, storage: &'obj mut MaybeUninit<OpenObject>) -> Result<Self> {
        let mut open = FloorSkelBuilder::default().open(storage).context("opening the floor BPF object")?;
        let ro = open.maps.rodata_data.as_deref_mut().ok_or_else(|| anyhow!("floor object has no .rodata"))?;
        ro.port_be = port.to_be();
        let skel = open.load().context("loading the floor BPF program")?;
        let progs = &skel.progs;
        let mut wanted = vec![(&progs.count_transition, "inet_sock_set_state")];
        if empty.backup {
            wanted.push((&progs.empty_backup, "inet_sock_set_state (second program)"));
        }
        if empty.timers {
            wanted.push((&progs.empty_timer_start, "timer_start"));
            wanted.push((&progs.empty_timer_cancel, "timer_cancel"));
            wanted.push((&progs.empty_timer_expire, "timer_expire_entry"));
        }
        let links = wanted
            .into_iter()
            .map(|(prog, point)| prog.attach().with_context(|| format!("attaching tp_btf/{point}")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Floor { skel, _links: links })
    }

    /// The counter and the kernel's skip count, read now.
    pub fn counts(&self) -> Result<Counts> {
        let bss = self.skel.maps.bss_data.as_deref().ok_or_else(|| anyhow!("floor object has no .bss"))?;
        // SAFETY: the .bss is mmapped and stays valid while skel lives; the
        // BPF side writes it concurrently, hence the volatile read.
        let received = unsafe { std::ptr::read_volatile(&bss.transitions) };
        Ok(Counts { received, missed: recursion_misses(&self.skel.progs.count_transition)? })
    }
}

/// The kernel's count of runs it skipped because the program was already
/// active on that CPU: events a tracer lost without being told.
fn recursion_misses(prog: &libbpf_rs::Program<'_>) -> Result<u64> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: info is a zeroed bpf_prog_info of the size given; the fd is
    // the program's own and outlives the call.
    let ret = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(prog.as_fd().as_raw_fd(), &mut info, &mut len) };
    if ret != 0 {
        bail!("reading the floor program's info: {}", std::io::Error::from_raw_os_error(-ret));
    }
    Ok(info.recursion_misses)
}
