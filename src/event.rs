//! Decoding the kernel's `struct event` (src/bpf/tcpstate.h) into a value
//! the output formats can print without knowing the ABI.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{bail, Result};

use crate::skel::types;
use crate::state::TcpState;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Which end of the connection a socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Server,
    Client,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Client => "client",
        }
    }

    /// The kernel could not tell (no server configured and the socket's
    /// birth was not seen): servers usually sit on the lower, well-known
    /// port, clients on a higher ephemeral one.
    pub fn guess_from_ports(sport: u16, dport: u16) -> Side {
        if sport <= dport {
            Side::Server
        } else {
            Side::Client
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What produced an event (enum source in the ABI header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The inet_sock_set_state tracepoint: a full socket changed state.
    SetState,
    /// A timewait socket was created.
    TwAlloc,
    /// A timewait socket's timer was armed or re-armed.
    TwArm,
    /// A timewait socket's timer was removed.
    TwCancel,
    /// A timewait socket's timer fired.
    TwExpire,
    /// A timewait socket's last reference was dropped.
    TwFree,
    /// Not produced by a probe: the TIME_WAIT lifecycle synthesised it.
    Lifecycle,
}

impl Source {
    fn from_raw(v: u8) -> Result<Source> {
        Ok(match v {
            0 => Source::SetState,
            1 => Source::TwAlloc,
            2 => Source::TwArm,
            3 => Source::TwCancel,
            4 => Source::TwExpire,
            5 => Source::TwFree,
            _ => bail!("unknown event source {v}: the BPF object and the binary disagree"),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::SetState => "set_state",
            Source::TwAlloc => "tw_alloc",
            Source::TwArm => "tw_arm",
            Source::TwCancel => "tw_cancel",
            Source::TwExpire => "tw_expire",
            Source::TwFree => "tw_free",
            Source::Lifecycle => "lifecycle",
        }
    }
}

/// A connection as its full socket and its timewait socket both report it:
/// namespace and 4-tuple (the socket's own end first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub netns: u32,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
}

/// One TCP state transition, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns), as the original printed.
    pub ts_ns: u64,
    pub side: Side,
    pub old: TcpState,
    pub new: TcpState,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    /// Owning process; `None` when the kernel side never saw it act.
    pub pid: Option<u32>,
    pub comm: Option<Comm>,
    pub skaddr: u64,
    pub netns: u32,
    /// Time spent in `old`; `None` when the socket's previous transition was not seen.
    pub prev_state_ns: Option<u64>,
    pub source: Source,
    /// Caught by the backup program after the main one was skipped.
    pub nested: bool,
    /// Not seen by any probe: deduced from the next event's old state.
    pub inferred: bool,
    /// Timewait socket events: the kernel's tw_substate.
    pub tw_substate: TcpState,
}

impl Event {
    /// Decodes one ring buffer record.
    pub fn decode(data: &[u8]) -> Result<Event> {
        // Ring records are 8-byte aligned: read in place, no copy.
        if let Ok(raw) = plain::from_bytes::<types::event>(data) {
            return Event::from_raw(raw);
        }
        let mut raw = types::event::default();
        if plain::copy_from_bytes(&mut raw, data).is_err() {
            bail!(
                "short event record ({} bytes, want {}): the BPF object and the binary disagree",
                data.len(),
                std::mem::size_of::<types::event>()
            );
        }
        Event::from_raw(&raw)
    }

    pub fn from_raw(raw: &types::event) -> Result<Event> {
        let (saddr, daddr) = match raw.family {
            AF_INET => (ipv4(&raw.saddr), ipv4(&raw.daddr)),
            AF_INET6 => (IpAddr::V6(Ipv6Addr::from(raw.saddr)), IpAddr::V6(Ipv6Addr::from(raw.daddr))),
            f => bail!("unknown address family {f} in event"),
        };
        let side = match raw.side {
            1 => Side::Server,
            2 => Side::Client,
            _ => Side::guess_from_ports(raw.sport, raw.dport),
        };
        // The kernel names the process only in its own system calls: most
        // events have no pid, and their comm bytes are not worth decoding.
        let pid = (raw.pid != 0).then_some(raw.pid);
        let comm = pid.map(|_| Comm::from_raw(&raw.comm)).filter(|c| !c.is_empty());
        Ok(Event {
            ts_ns: raw.ts_ns,
            side,
            old: TcpState(raw.oldstate),
            new: TcpState(raw.newstate),
            saddr,
            sport: raw.sport,
            daddr,
            dport: raw.dport,
            pid,
            comm,
            skaddr: raw.skaddr,
            netns: raw.netns,
            // The kernel keeps no per-socket state: src/sockets.rs fills it.
            prev_state_ns: None,
            source: Source::from_raw(raw.source)?,
            nested: false,
            inferred: false,
            tw_substate: TcpState(raw.tw_substate),
        })
    }

    /// The connection this event belongs to.
    pub fn conn_key(&self) -> ConnKey {
        ConnKey { netns: self.netns, saddr: self.saddr, sport: self.sport, daddr: self.daddr, dport: self.dport }
    }

    /// A raw timewait probe event (shown only with --raw), as opposed to a
    /// state transition.
    pub fn is_raw_tw(&self) -> bool {
        !matches!(self.source, Source::SetState | Source::Lifecycle)
    }

    /// What the OLD column shows: the state left, or for a raw timewait
    /// probe event the probe's name (`tw_arm -> TIME_WAIT`).
    pub fn old_label(&self) -> Cow<'static, str> {
        if self.is_raw_tw() {
            Cow::Borrowed(self.source.as_str())
        } else {
            self.old.name()
        }
    }

    /// 4 or 6, as the JSON and CSV formats print it.
    pub fn family(&self) -> u8 {
        if self.saddr.is_ipv4() {
            4
        } else {
            6
        }
    }
}

fn ipv4(bytes: &[u8; 16]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
}

/// A task's comm (at most 15 bytes), stored inline so that decoding and
/// copying events allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Comm {
    bytes: [u8; 15],
    len: u8,
}

impl Comm {
    /// Up to the first NUL; bytes that are not printable ASCII become '?',
    /// so that the result is always valid, printable UTF-8.
    pub fn from_raw(raw: &[i8]) -> Comm {
        let mut comm = Comm { bytes: [0; 15], len: 0 };
        for &c in raw.iter().take(15).take_while(|&&c| c != 0) {
            let b = c as u8;
            comm.bytes[comm.len as usize] = if b.is_ascii_graphic() || b == b' ' { b } else { b'?' };
            comm.len += 1;
        }
        comm
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("?")
    }

    /// The same, as bytes: printable ASCII by construction, so output can
    /// take them without UTF-8 validation.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl From<&str> for Comm {
    fn from(s: &str) -> Comm {
        let raw: Vec<i8> = s.bytes().map(|b| b as i8).collect();
        Comm::from_raw(&raw)
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A raw client event as the kernel side would send it.
    pub(crate) fn raw_event(old: u8, new: u8) -> types::event {
        let mut raw = types::event {
            ts_ns: 1_000_000_123,
            skaddr: 0xffff_8880_1234_5678,
            pid: 4242,
            netns: 4026531840,
            sport: 51234,
            dport: 80,
            family: AF_INET,
            side: 2,
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

    fn bytes_of(raw: &types::event) -> Vec<u8> {
        // SAFETY: plain C struct, read as bytes of its own size.
        unsafe { plain::as_bytes(raw) }.to_vec()
    }

    #[test]
    fn decodes_an_ipv4_client_event() {
        let ev = Event::decode(&bytes_of(&raw_event(2, 1))).unwrap();
        assert_eq!(ev.side, Side::Client);
        assert_eq!((ev.old, ev.new), (TcpState::SYN_SENT, TcpState::ESTABLISHED));
        assert_eq!(ev.saddr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(ev.daddr, "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((ev.sport, ev.dport), (51234, 80));
        assert_eq!(ev.pid, Some(4242));
        assert_eq!(ev.comm.map(|c| c.to_string()).as_deref(), Some("curl"));
        assert_eq!(ev.family(), 4);
        assert_eq!(ev.source, Source::SetState);
    }

    #[test]
    fn decodes_ipv6_and_unknown_owner() {
        let mut raw = raw_event(10, 3);
        raw.family = AF_INET6;
        raw.saddr = Ipv6Addr::LOCALHOST.octets();
        raw.daddr = Ipv6Addr::LOCALHOST.octets();
        raw.pid = 0;
        raw.side = 1;
        let ev = Event::decode(&bytes_of(&raw)).unwrap();
        assert_eq!(ev.saddr, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(ev.family(), 6);
        assert_eq!(ev.side, Side::Server);
        assert_eq!((ev.pid, ev.comm), (None, None));
    }

    #[test]
    fn comm_is_printable_and_bounded() {
        let mut raw = [0i8; 16];
        for (d, s) in raw.iter_mut().zip(b"a\"b\x01\xffcdefghijklmnop") {
            *d = *s as i8;
        }
        assert_eq!(Comm::from_raw(&raw).as_str(), "a\"b??cdefghijkl");
        assert_eq!(Comm::from("nginx").as_str(), "nginx");
    }

    #[test]
    fn unknown_side_is_guessed_from_ports() {
        let mut raw = raw_event(1, 4);
        raw.side = 0;
        assert_eq!(Event::from_raw(&raw).unwrap().side, Side::Client);
        raw.sport = 443;
        raw.dport = 50000;
        assert_eq!(Event::from_raw(&raw).unwrap().side, Side::Server);
    }

    #[test]
    fn short_or_corrupt_records_are_errors() {
        assert!(Event::decode(&[0u8; 10]).is_err());
        let mut raw = raw_event(1, 4);
        raw.family = 99;
        assert!(Event::from_raw(&raw).is_err());
        let mut raw = raw_event(1, 4);
        raw.source = 200;
        assert!(Event::from_raw(&raw).is_err());
    }
}
