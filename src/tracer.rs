//! Opens the BPF skeleton, writes the configuration into .rodata, loads,
//! attaches, and reads the counters that say what was lost.

use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, OpenObject, RingBuffer, RingBufferBuilder};

use crate::libbpf_log;
use crate::skel::{OpenTcpstateSkel, TcpstateSkel, TcpstateSkelBuilder};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
/// Index in the `counters` map (enum counter in src/bpf/tcpstate.h).
const CNT_RINGBUF_FULL: u32 = 0;

/// What to trace: the kernel-side filters.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The original tool's server; `None` traces every TCP socket.
    pub server: Option<SocketAddr>,
    /// Only IPv4 (4) or IPv6 (6) sockets.
    pub family: Option<u8>,
    pub lports: Vec<u16>,
    pub rports: Vec<u16>,
    /// Only sockets owned by this process.
    pub pid: Option<u32>,
    pub ringbuf_kb: u32,
}

/// The loaded programs and maps.
pub struct Tracer<'obj> {
    skel: TcpstateSkel<'obj>,
}

/// Attached programs: dropping it detaches them.
pub struct Links(#[allow(dead_code)] Vec<Link>);

/// Events the kernel side could not deliver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// The ring buffer was full.
    pub ringbuf_full: u64,
    /// The kernel skipped a program because it was already running on that
    /// CPU (bpf_prog_info.recursion_misses), per program.
    pub recursion_misses: Vec<(String, u64)>,
}

impl Lost {
    pub fn total(&self) -> u64 {
        self.ringbuf_full + self.recursion_misses.iter().map(|(_, n)| n).sum::<u64>()
    }
}

impl<'obj> Tracer<'obj> {
    /// Opens, configures and loads the BPF object.
    pub fn load(cfg: &Config, storage: &'obj mut MaybeUninit<OpenObject>) -> Result<Tracer<'obj>> {
        let mut open = TcpstateSkelBuilder::default()
            .open(storage)
            .context("opening the BPF object")?;
        configure(&mut open, cfg)?;
        let skel = open.load().map_err(load_error)?;
        Ok(Tracer { skel })
    }

    /// Attaches every loaded program.
    pub fn attach(&self) -> Result<Links> {
        let prog = &self.skel.progs.inet_sock_set_state;
        let link = prog
            .attach()
            .with_context(|| "attaching tp_btf/inet_sock_set_state".to_string())?;
        Ok(Links(vec![link]))
    }

    /// A reader for the event ring; `on_record` gets each raw record.
    pub fn ring_buffer<'a>(&'a self, on_record: impl FnMut(&[u8]) -> i32 + 'a) -> Result<RingBuffer<'a>> {
        let mut builder = RingBufferBuilder::new();
        builder.add(&self.skel.maps.events, on_record).context("setting up the ring buffer")?;
        builder.build().context("setting up the ring buffer")
    }

    /// Reads the drop counters and each program's recursion misses.
    pub fn lost(&self) -> Result<Lost> {
        let key = CNT_RINGBUF_FULL.to_ne_bytes();
        let per_cpu = self
            .skel
            .maps
            .counters
            .lookup_percpu(&key, MapFlags::ANY)
            .context("reading the drop counters")?
            .unwrap_or_default();
        let ringbuf_full = per_cpu
            .iter()
            .filter_map(|v| v.get(..8)?.try_into().ok().map(u64::from_ne_bytes))
            .sum();
        let prog = &self.skel.progs.inet_sock_set_state;
        let recursion_misses = vec![("inet_sock_set_state".to_string(), recursion_misses(prog)?)];
        Ok(Lost { ringbuf_full, recursion_misses })
    }
}

fn configure(open: &mut OpenTcpstateSkel<'_>, cfg: &Config) -> Result<()> {
    let ring_bytes = cfg.ringbuf_kb.checked_mul(1024).context("ring buffer size overflows")?;
    open.maps
        .events
        .set_max_entries(ring_bytes)
        .context("sizing the ring buffer")?;
    let ro = open.maps.rodata_data.as_deref_mut().ok_or_else(|| anyhow!("BPF object has no .rodata"))?;
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
    ro.target_pid = cfg.pid.unwrap_or(0);
    ro.nr_lports = fill_ports(&mut ro.lports, &cfg.lports)?;
    ro.nr_rports = fill_ports(&mut ro.rports, &cfg.rports)?;
    // Wake the reader early only when the ring is a quarter full; otherwise
    // it drains on its own short tick.
    ro.wakeup_bytes = u64::from(ring_bytes / 4);
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

fn recursion_misses(prog: &libbpf_rs::Program<'_>) -> Result<u64> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    use std::os::fd::AsRawFd;
    // SAFETY: info is a properly sized, zeroed bpf_prog_info; the fd is the
    // program's own, alive as long as `prog`.
    let ret = unsafe {
        libbpf_sys::bpf_prog_get_info_by_fd(
            prog.as_fd().as_raw_fd(),
            &mut info,
            &mut len,
        )
    };
    if ret != 0 {
        bail!("reading program info: {}", std::io::Error::from_raw_os_error(-ret));
    }
    Ok(info.recursion_misses)
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
