//! The transitions each connection causes, as `inet_sock_set_state` shows
//! them (checked by hand with bpftrace on this machine's kernel; see
//! bench/README.md). The runner compares tracers against these counts.

use std::fmt;
use std::str::FromStr;

/// How each connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The client closes first: client FIN_WAIT1/2 then TIME_WAIT, server
    /// CLOSE_WAIT/LAST_ACK.
    ClientClose,
    /// The client closes with SO_LINGER 0: a RST, no TIME_WAIT.
    Reset,
    /// As `ClientClose`, with C connections established at once.
    Concurrent,
}

/// A transition, by the kernel's state names.
pub type Pair = (&'static str, &'static str);

const CLIENT_CLOSE: &[Pair] = &[
    // client
    ("CLOSE", "SYN_SENT"),
    ("SYN_SENT", "ESTABLISHED"),
    ("ESTABLISHED", "FIN_WAIT1"),
    ("FIN_WAIT1", "FIN_WAIT2"),
    // The full socket's end after handing over to its timewait socket; a
    // tracer with TIME_WAIT probes shows FIN_WAIT2:TIME_WAIT instead.
    ("FIN_WAIT2", "CLOSE"),
    // server (accepted socket)
    ("LISTEN", "SYN_RECV"),
    ("SYN_RECV", "ESTABLISHED"),
    ("ESTABLISHED", "CLOSE_WAIT"),
    ("CLOSE_WAIT", "LAST_ACK"),
    ("LAST_ACK", "CLOSE"),
];

const RESET: &[Pair] = &[
    ("CLOSE", "SYN_SENT"),
    ("SYN_SENT", "ESTABLISHED"),
    ("ESTABLISHED", "CLOSE"),
    ("LISTEN", "SYN_RECV"),
    ("SYN_RECV", "ESTABLISHED"),
    ("ESTABLISHED", "CLOSE"),
];

/// The listener, once per run: listen() and close().
pub const LISTENER: &[Pair] = &[("CLOSE", "LISTEN"), ("LISTEN", "CLOSE")];

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::ClientClose, Mode::Reset, Mode::Concurrent];

    pub fn name(self) -> &'static str {
        match self {
            Mode::ClientClose => "client-close",
            Mode::Reset => "reset",
            Mode::Concurrent => "concurrent",
        }
    }

    /// The transitions of one connection, client and server side.
    pub fn per_connection(self) -> &'static [Pair] {
        match self {
            Mode::ClientClose | Mode::Concurrent => CLIENT_CLOSE,
            Mode::Reset => RESET,
        }
    }

    /// Whether the client aborts with a RST instead of a FIN.
    pub fn resets(self) -> bool {
        self == Mode::Reset
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("'{s}' is not a mode: use client-close, reset or concurrent"))
    }
}

/// Expected count per `OLD:NEW` for `n` connections plus the listener,
/// identical pairs merged.
pub fn by_pair(mode: Mode, n: u64) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    let all = mode.per_connection().iter().map(|p| (p, n)).chain(LISTENER.iter().map(|p| (p, 1)));
    for ((old, new), count) in all {
        let key = format!("{old}:{new}");
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, c)) => *c += count,
            None => out.push((key, count)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_close_is_ten_per_connection_and_reset_six() {
        assert_eq!(Mode::ClientClose.per_connection().len(), 10);
        assert_eq!(Mode::Concurrent.per_connection().len(), 10);
        assert_eq!(Mode::Reset.per_connection().len(), 6);
    }

    #[test]
    fn pairs_merge_both_sides_and_the_listener() {
        let pairs = by_pair(Mode::Reset, 5);
        let get = |k: &str| pairs.iter().find(|(p, _)| p == k).map(|(_, c)| *c);
        assert_eq!(get("ESTABLISHED:CLOSE"), Some(10));
        assert_eq!(get("CLOSE:LISTEN"), Some(1));
        assert_eq!(pairs.iter().map(|(_, c)| c).sum::<u64>(), 5 * 6 + 2);
    }

    #[test]
    fn modes_parse_by_name() {
        for m in Mode::ALL {
            assert_eq!(m.name().parse::<Mode>(), Ok(m));
        }
        assert!("fin".parse::<Mode>().is_err());
    }
}
