//! The words every part of tcpstate shares: which end of a connection a
//! socket is, the process that owns it, its addresses and ports.

use std::fmt;
use std::net::IpAddr;

pub use crate::state::TcpState;

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

    /// The spelling tcpstate writes (`server`, `client`), nothing else.
    pub fn from_name(name: &str) -> Option<Side> {
        match name {
            "server" => Some(Side::Server),
            "client" => Some(Side::Client),
            _ => None,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A socket's addresses and ports from its own point of view: `s*` is the
/// local end, `d*` the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
}

impl Tuple {
    /// 4 or 6, as JSON and CSV print it.
    pub fn family(&self) -> u8 {
        if self.saddr.is_ipv4() {
            4
        } else {
            6
        }
    }
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

/// A process, as the kernel side names it: only in the owner's own system
/// calls, so never a bystander that softirq happened to run on top of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub comm: Option<Comm>,
}

/// A full socket's counters (struct tcp_sock), read by the kernel side at
/// its last moment as a full socket: its CLOSE, or its hand-off to the
/// timewait socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Payload bytes sent, retransmissions included (bytes_sent).
    pub bytes_sent: u64,
    /// Payload bytes the peer acknowledged (bytes_acked, less the SYN and
    /// FIN the kernel counts in it).
    pub bytes_acked: u64,
    /// Payload bytes received in order (bytes_received, less a FIN).
    pub bytes_received: u64,
    /// Payload bytes retransmitted (bytes_retrans).
    pub bytes_retrans: u64,
    /// Segments received and sent, SYN, FIN and pure ACKs included.
    pub segs_in: u32,
    pub segs_out: u32,
    /// Segments retransmitted over the connection's life (total_retrans).
    pub retransmits: u32,
    /// Smoothed RTT in µs; `None` before the first RTT sample.
    pub srtt_us: Option<u32>,
    /// Minimum RTT seen in µs (the windowed minimum, rtt_min); `None`
    /// before the first sample.
    pub min_rtt_us: Option<u32>,
    /// The error that ended it (sk_err, an errno), 0 when none.
    pub error: u32,
    /// Everything sent was acknowledged at close, a FIN if one was sent
    /// (then counted in the kernel's bytes_acked): the connection table
    /// takes it out, knowing whether one was.
    pub acked_all: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn sides_round_trip_their_names() {
        for side in [Side::Server, Side::Client] {
            assert_eq!(Side::from_name(side.as_str()), Some(side));
        }
        assert_eq!(Side::from_name("Server"), None);
    }
}
