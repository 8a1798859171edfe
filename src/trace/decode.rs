//! Ring records decoded into what the probes saw: [`ProbeEvent`], the
//! kernel's view. Turning that into the user's view (connections, sides,
//! owners, time in state, TIME_WAIT) is the connection table's job
//! (src/conn), never this module's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU64;

use anyhow::{bail, Result};

use super::abi::{self, RawCounters, RawEvent};
use crate::model::{Comm, Counters, Owner, Side, TcpState, Tuple};

/// What a probe saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The inet_sock_set_state tracepoint: a full socket changed state.
    SetState { old: TcpState, new: TcpState },
    /// A timewait socket event, with the socket's substate (TIME_WAIT, or
    /// FIN_WAIT2 while the kernel parks a FIN_WAIT2 in it).
    Timewait { what: TwEvent, substate: TcpState },
    /// `--connections`: a full socket sent or received a reset, in `state`;
    /// for one sent, who wanted it where the kernel says (6.10+).
    Reset { sent: bool, state: TcpState, cause: ResetCause },
}

/// Who wanted a reset sent, as the kernel's reason tells (6.10+).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetCause {
    /// No reason given, or one that says nothing either way: the socket's
    /// state at the reset tells.
    Untold,
    /// The application's close() or disconnect.
    Application,
    /// The kernel's own decision (a timeout, memory, an unexpected segment).
    Kernel,
}

/// The timewait socket events the TIME_WAIT probes report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwEvent {
    /// Created and handed its connection.
    Born,
    /// Its timer armed or re-armed.
    Armed,
    /// Its timer removed: a death, unless a re-arm or the expiry follows.
    Cancelled,
    /// Its timer fired: death.
    Expired,
    /// Freed: death.
    Freed,
}

impl TwEvent {
    /// The name `--raw` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            TwEvent::Born => "tw_alloc",
            TwEvent::Armed => "tw_arm",
            TwEvent::Cancelled => "tw_cancel",
            TwEvent::Expired => "tw_expire",
            TwEvent::Freed => "tw_free",
        }
    }

    /// Parses what [`TwEvent::as_str`] prints.
    pub fn from_name(name: &str) -> Option<TwEvent> {
        [TwEvent::Born, TwEvent::Armed, TwEvent::Cancelled, TwEvent::Expired, TwEvent::Freed]
            .into_iter()
            .find(|e| e.as_str() == name)
    }

    /// Tells by itself that the socket is gone.
    pub fn is_death(self) -> bool {
        matches!(self, TwEvent::Expired | TwEvent::Freed)
    }
}

/// One ring record, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeEvent {
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns), as the original printed.
    pub ts_ns: u64,
    pub probe: Probe,
    /// The socket cookie (a timewait socket carries its full socket's); 0
    /// when the kernel gave none.
    pub cookie: u64,
    /// Kernel address of the socket or timewait socket.
    pub skaddr: u64,
    pub tuple: Tuple,
    pub netns: u32,
    /// The socket's cgroup v2 id, read from the socket itself (a timewait
    /// socket has none: its records carry the full socket's with
    /// `--cgroup`, and the connection table supplies it otherwise); `None`
    /// when not known.
    pub cgroup_id: Option<NonZeroU64>,
    /// The configured server's rule, applied in the kernel; `None` without
    /// a server.
    pub server_rule: Option<Side>,
    /// The process, when the change ran in its own system call.
    pub actor: Option<Owner>,
    /// Timewait events in TIME_WAIT: when the kernel last armed the timer
    /// for TCP_TIMEWAIT_LEN (the kernel's clock), if known.
    pub tw_armed_ns: Option<u64>,
    /// `--connections`, on a full socket's CLOSE: its counters then (boxed:
    /// every event is moved several times, few carry these).
    pub counters: Option<Box<Counters>>,
    /// Timewait deaths: the socket's network namespace is being deleted.
    pub netns_dying: bool,
}

impl ProbeEvent {
    /// Decodes one ring buffer record: a `struct event`, or flagged
    /// EV_COUNTERS a `struct event_counters`.
    pub fn decode(data: &[u8]) -> Result<ProbeEvent> {
        // Ring records are 8-byte aligned: read in place, no copy.
        let mut ev = match plain::from_bytes::<RawEvent>(data) {
            Ok(raw) => ProbeEvent::from_raw(raw)?,
            Err(_) => {
                let mut raw = RawEvent::default();
                if plain::copy_from_bytes(&mut raw, data).is_err() {
                    bail!(
                        "short event record ({} bytes, want {}): the BPF object and the binary disagree",
                        data.len(),
                        std::mem::size_of::<RawEvent>()
                    );
                }
                ProbeEvent::from_raw(&raw)?
            }
        };
        if data.get(FLAGS_AT).is_some_and(|&f| f & abi::EV_COUNTERS != 0) {
            let mut raw = RawCounters::default();
            if plain::copy_from_bytes(&mut raw, &data[std::mem::size_of::<RawEvent>()..]).is_err() {
                bail!("short counters record ({} bytes): the BPF object and the binary disagree", data.len());
            }
            ev.counters = Some(Box::new(counters(&raw)));
        }
        Ok(ev)
    }

    pub fn from_raw(raw: &RawEvent) -> Result<ProbeEvent> {
        let (saddr, daddr) = match raw.family {
            abi::AF_INET => (ipv4(&raw.saddr), ipv4(&raw.daddr)),
            abi::AF_INET6 => (IpAddr::V6(Ipv6Addr::from(raw.saddr)), IpAddr::V6(Ipv6Addr::from(raw.daddr))),
            f => bail!("unknown address family {f} in event"),
        };
        let timewait = |what| Probe::Timewait { what, substate: TcpState(raw.tw_substate) };
        let probe = match raw.source {
            abi::SRC_SET_STATE => Probe::SetState { old: TcpState(raw.oldstate), new: TcpState(raw.newstate) },
            abi::SRC_TW_ALLOC => timewait(TwEvent::Born),
            abi::SRC_TW_ARM => timewait(TwEvent::Armed),
            abi::SRC_TW_CANCEL => timewait(TwEvent::Cancelled),
            abi::SRC_TW_EXPIRE => timewait(TwEvent::Expired),
            abi::SRC_TW_FREE => timewait(TwEvent::Freed),
            abi::SRC_RESET_SENT | abi::SRC_RESET_RECEIVED => Probe::Reset {
                sent: raw.source == abi::SRC_RESET_SENT,
                state: TcpState(raw.newstate),
                cause: match raw.reset_cause {
                    abi::RESET_APP_ABORT => ResetCause::Application,
                    abi::RESET_KERNEL => ResetCause::Kernel,
                    _ => ResetCause::Untold,
                },
            },
            s => bail!("unknown event source {s}: the BPF object and the binary disagree"),
        };
        let server_rule = match raw.side {
            abi::SIDE_SERVER => Some(Side::Server),
            abi::SIDE_CLIENT => Some(Side::Client),
            _ => None,
        };
        // The kernel names the process only in its own system calls: most
        // events have no pid, and their comm bytes are not worth decoding.
        let actor = (raw.pid != 0)
            .then(|| Owner { pid: raw.pid, comm: Some(Comm::from_raw(&raw.comm)).filter(|c| !c.is_empty()) });
        Ok(ProbeEvent {
            ts_ns: raw.ts_ns,
            probe,
            cookie: raw.cookie,
            skaddr: raw.skaddr,
            tuple: Tuple { saddr, sport: raw.sport, daddr, dport: raw.dport },
            netns: raw.netns,
            cgroup_id: NonZeroU64::new(raw.cgroup_id),
            server_rule,
            actor,
            tw_armed_ns: (raw.tw_armed_ns != 0).then_some(raw.tw_armed_ns),
            counters: None,
            netns_dying: raw.flags & abi::EV_NETNS_DYING != 0,
        })
    }
}

/// Where the flags byte sits in a record (read before decoding the rest).
const FLAGS_AT: usize = std::mem::offset_of!(RawEvent, flags);

/// The kernel's counters as users see them: no sample is `None`, not 0.
fn counters(raw: &RawCounters) -> Counters {
    let fin_received = raw.seq_flags & abi::SEQ_FIN_RECEIVED != 0;
    Counters {
        bytes_sent: raw.bytes_sent,
        bytes_acked: raw.bytes_acked,
        bytes_received: raw.bytes_received.saturating_sub(u64::from(fin_received)),
        bytes_retrans: raw.bytes_retrans,
        segs_in: raw.segs_in,
        segs_out: raw.segs_out,
        retransmits: raw.total_retrans,
        srtt_us: (raw.srtt_us != 0).then_some(raw.srtt_us),
        min_rtt_us: (raw.min_rtt_us != u32::MAX).then_some(raw.min_rtt_us),
        error: raw.sk_err,
        acked_all: raw.seq_flags & abi::SEQ_ALL_ACKED != 0,
    }
}

fn ipv4(bytes: &[u8; 16]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A raw client record as the kernel side would send it.
    pub(crate) fn raw_event(old: u8, new: u8) -> RawEvent {
        let mut raw = RawEvent {
            ts_ns: 1_000_000_123,
            cookie: 77,
            skaddr: 0xffff_8880_1234_5678,
            pid: 4242,
            netns: 4026531840,
            cgroup_id: 5321,
            sport: 51234,
            dport: 80,
            family: abi::AF_INET,
            side: abi::SIDE_CLIENT,
            oldstate: old,
            newstate: new,
            ..Default::default()
        };
        raw.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        raw.daddr[..4].copy_from_slice(&[127, 0, 0, 2]);
        for (dst, src) in raw.comm.iter_mut().zip(b"curl") {
            *dst = *src as i8;
        }
        raw
    }

    fn bytes_of(raw: &RawEvent) -> Vec<u8> {
        // SAFETY: plain C struct, read as bytes of its own size.
        unsafe { plain::as_bytes(raw) }.to_vec()
    }

    #[test]
    fn decodes_an_ipv4_client_event() {
        let ev = ProbeEvent::decode(&bytes_of(&raw_event(2, 1))).unwrap();
        assert_eq!(ev.server_rule, Some(Side::Client));
        assert_eq!(ev.probe, Probe::SetState { old: TcpState::SYN_SENT, new: TcpState::ESTABLISHED });
        assert_eq!(ev.tuple.saddr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(ev.tuple.daddr, "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((ev.tuple.sport, ev.tuple.dport), (51234, 80));
        assert_eq!(ev.actor.map(|o| o.pid), Some(4242));
        assert_eq!(ev.actor.and_then(|o| o.comm).map(|c| c.to_string()).as_deref(), Some("curl"));
        assert_eq!(ev.tuple.family(), 4);
        assert_eq!((ev.cookie, ev.tw_armed_ns), (77, None));
        assert_eq!(ev.cgroup_id, NonZeroU64::new(5321));
    }

    #[test]
    fn decodes_ipv6_and_unknown_owner() {
        let mut raw = raw_event(10, 3);
        raw.family = abi::AF_INET6;
        raw.saddr = Ipv6Addr::LOCALHOST.octets();
        raw.daddr = Ipv6Addr::LOCALHOST.octets();
        raw.pid = 0;
        raw.side = abi::SIDE_SERVER;
        raw.cgroup_id = 0;
        let ev = ProbeEvent::decode(&bytes_of(&raw)).unwrap();
        assert_eq!(ev.cgroup_id, None, "0: the kernel does not know the cgroup");
        assert_eq!(ev.tuple.saddr, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(ev.tuple.family(), 6);
        assert_eq!(ev.server_rule, Some(Side::Server));
        assert_eq!(ev.actor, None);
    }

    #[test]
    fn without_a_server_the_kernel_decides_no_side() {
        let mut raw = raw_event(1, 4);
        raw.side = 0;
        assert_eq!(ProbeEvent::from_raw(&raw).unwrap().server_rule, None);
    }

    #[test]
    fn timewait_records_carry_their_substate_and_arming_time() {
        let mut raw = raw_event(0, 0);
        raw.source = abi::SRC_TW_CANCEL;
        raw.tw_substate = 6;
        raw.tw_armed_ns = 123;
        let ev = ProbeEvent::from_raw(&raw).unwrap();
        assert_eq!(ev.probe, Probe::Timewait { what: TwEvent::Cancelled, substate: TcpState::TIME_WAIT });
        assert_eq!(ev.tw_armed_ns, Some(123));
        for what in [TwEvent::Born, TwEvent::Armed, TwEvent::Cancelled, TwEvent::Expired, TwEvent::Freed] {
            assert_eq!(TwEvent::from_name(what.as_str()), Some(what));
        }
    }

    #[test]
    fn a_close_with_counters_carries_them_less_the_fin() {
        let mut raw = raw_event(9, 7);
        raw.flags = abi::EV_COUNTERS;
        let counters = RawCounters {
            bytes_sent: 500,
            bytes_acked: 501,
            bytes_received: 1001,
            segs_in: 6,
            segs_out: 4,
            srtt_us: 23,
            min_rtt_us: u32::MAX,
            seq_flags: abi::SEQ_FIN_RECEIVED | abi::SEQ_ALL_ACKED,
            ..Default::default()
        };
        let mut bytes = bytes_of(&raw);
        // SAFETY: plain C struct, read as bytes of its own size.
        bytes.extend_from_slice(unsafe { plain::as_bytes(&counters) });
        let c = ProbeEvent::decode(&bytes).unwrap().counters.unwrap();
        assert_eq!((c.bytes_sent, c.bytes_acked, c.bytes_received), (500, 501, 1000));
        assert_eq!((c.srtt_us, c.min_rtt_us, c.acked_all), (Some(23), None, true));
        // Flagged but short: the object and the binary disagree.
        assert!(ProbeEvent::decode(&bytes[..bytes.len() - 8]).is_err());
        raw.flags = 0;
        assert_eq!(ProbeEvent::decode(&bytes_of(&raw)).unwrap().counters, None);
    }

    #[test]
    fn resets_carry_the_state_and_who_wanted_them() {
        let mut raw = raw_event(1, 1);
        raw.source = abi::SRC_RESET_SENT;
        raw.reset_cause = abi::RESET_APP_ABORT;
        let ev = ProbeEvent::from_raw(&raw).unwrap();
        assert_eq!(ev.probe, Probe::Reset { sent: true, state: TcpState::ESTABLISHED, cause: ResetCause::Application });
        raw.source = abi::SRC_RESET_RECEIVED;
        raw.reset_cause = 0;
        let ev = ProbeEvent::from_raw(&raw).unwrap();
        assert_eq!(ev.probe, Probe::Reset { sent: false, state: TcpState::ESTABLISHED, cause: ResetCause::Untold });
    }

    #[test]
    fn short_or_corrupt_records_are_errors() {
        assert!(ProbeEvent::decode(&[0u8; 10]).is_err());
        let mut raw = raw_event(1, 4);
        raw.family = 99;
        assert!(ProbeEvent::from_raw(&raw).is_err());
        let mut raw = raw_event(1, 4);
        raw.source = 200;
        assert!(ProbeEvent::from_raw(&raw).is_err());
    }
}
