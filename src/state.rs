//! TCP states as the kernel numbers them (`include/net/tcp_states.h`).
//!
//! Names are the kernel's without the `TCP_` prefix so that output stays
//! byte-for-byte what the original libbpf tool printed.

use std::borrow::Cow;
use std::fmt;

/// A TCP state number. Kept as the raw number so that a state this build does
/// not know (a newer kernel) still round-trips and prints as `UNKNOWN(<n>)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TcpState(pub u8);

/// (number, name) for every state the kernel defines.
const NAMES: [(u8, &str); 13] = [
    (1, "ESTABLISHED"),
    (2, "SYN_SENT"),
    (3, "SYN_RECV"),
    (4, "FIN_WAIT1"),
    (5, "FIN_WAIT2"),
    (6, "TIME_WAIT"),
    (7, "CLOSE"),
    (8, "CLOSE_WAIT"),
    (9, "LAST_ACK"),
    (10, "LISTEN"),
    (11, "CLOSING"),
    (12, "NEW_SYN_RECV"),
    (13, "BOUND_INACTIVE"),
];

impl TcpState {
    pub const ESTABLISHED: TcpState = TcpState(1);
    pub const SYN_SENT: TcpState = TcpState(2);
    pub const SYN_RECV: TcpState = TcpState(3);
    pub const FIN_WAIT1: TcpState = TcpState(4);
    pub const FIN_WAIT2: TcpState = TcpState(5);
    pub const TIME_WAIT: TcpState = TcpState(6);
    pub const CLOSE: TcpState = TcpState(7);
    pub const CLOSE_WAIT: TcpState = TcpState(8);
    pub const LAST_ACK: TcpState = TcpState(9);
    pub const LISTEN: TcpState = TcpState(10);
    pub const CLOSING: TcpState = TcpState(11);
    pub const NEW_SYN_RECV: TcpState = TcpState(12);
    pub const BOUND_INACTIVE: TcpState = TcpState(13);

    /// The kernel's name, or `None` for a number this build does not know.
    pub fn known_name(self) -> Option<&'static str> {
        NAMES.iter().find(|(n, _)| *n == self.0).map(|(_, s)| *s)
    }

    /// The name as printed, without allocating for known states.
    pub fn name(self) -> Cow<'static, str> {
        match self.known_name() {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(format!("UNKNOWN({})", self.0)),
        }
    }

    /// Parses what [`fmt::Display`] prints: a known name or `UNKNOWN(<n>)`.
    pub fn from_name(name: &str) -> Option<TcpState> {
        if let Some((n, _)) = NAMES.iter().find(|(_, s)| *s == name) {
            return Some(TcpState(*n));
        }
        let inner = name.strip_prefix("UNKNOWN(")?.strip_suffix(')')?;
        inner.parse().ok().map(TcpState)
    }

    /// Every state the kernel defines, in numeric order.
    pub fn all() -> impl Iterator<Item = TcpState> {
        NAMES.iter().map(|(n, _)| TcpState(*n))
    }
}

/// Every (old, new) pair the kernel's TCP state machine can report for a
/// full socket, as tcpstate reports it, read from the kernel's source
/// (`net/ipv4/tcp*.c`, `inet_connection_sock.c`):
///
/// - `inet_csk_listen_start()`: CLOSE -> LISTEN (LISTEN -> CLOSE if the port
///   is taken meanwhile); `__tcp_close()`, `tcp_disconnect()`, `tcp_abort()`
///   on a listener: LISTEN -> CLOSE.
/// - `inet_csk_clone_lock()`: an accepted child is a copy of its listener
///   set to SYN_RECV: LISTEN -> SYN_RECV.
/// - `tcp_v4_connect()`/`tcp_v6_connect()`: CLOSE -> SYN_SENT, and
///   SYN_SENT -> CLOSE when they fail after it.
/// - `tcp_rcv_synsent_state_process()`: SYN_SENT -> ESTABLISHED
///   (`tcp_finish_connect()`), SYN_SENT -> SYN_RECV (simultaneous open).
/// - `tcp_rcv_state_process()`: SYN_RECV -> ESTABLISHED,
///   FIN_WAIT1 -> FIN_WAIT2, LAST_ACK -> CLOSE, CLOSING -> TIME_WAIT.
/// - `tcp_fin()`: SYN_RECV or ESTABLISHED -> CLOSE_WAIT,
///   FIN_WAIT1 -> CLOSING, FIN_WAIT2 -> TIME_WAIT.
/// - `tcp_close_state()` (close(), shutdown()), whose table sets a state
///   even when it is the current one: ESTABLISHED or SYN_RECV -> FIN_WAIT1,
///   CLOSE_WAIT -> LAST_ACK, SYN_SENT -> CLOSE, and FIN_WAIT1, FIN_WAIT2,
///   LAST_ACK and CLOSING entered again (shutdown() then close()).
/// - `tcp_done()` (a reset, a timeout, an orphan's limits, `ss -K`),
///   `tcp_disconnect()`, an abort in `__tcp_close()`: any state but CLOSE,
///   LISTEN and TIME_WAIT -> CLOSE.
/// - `tcp_time_wait()` hands the connection to a timewait socket: the
///   kernel's FIN_WAIT2 -> CLOSE or CLOSING -> CLOSE on the full socket,
///   which tcpstate reports as -> TIME_WAIT (a FIN_WAIT2 parked by
///   `tcp_fin_timeout` stays FIN_WAIT2 and shows no transition); the
///   timewait socket's end is TIME_WAIT -> CLOSE, or FIN_WAIT2 -> CLOSE for
///   a parked FIN_WAIT2, whose FIN_WAIT2 -> TIME_WAIT comes when the peer's
///   FIN arrives.
///
/// Never: NEW_SYN_RECV (request sockets, not full ones, hold it),
/// BOUND_INACTIVE (a name for `inet_diag` only), a full socket in
/// TIME_WAIT. `--raw` shows the hand-off as the kernel's -> CLOSE. An
/// inferred transition spans a step no probe saw and can pair any states.
pub const KERNEL_TRANSITIONS: [(TcpState, TcpState); 29] = {
    use TcpState as S;
    [
        (S::CLOSE, S::LISTEN),
        (S::CLOSE, S::SYN_SENT),
        (S::LISTEN, S::CLOSE),
        (S::LISTEN, S::SYN_RECV),
        (S::SYN_SENT, S::ESTABLISHED),
        (S::SYN_SENT, S::SYN_RECV),
        (S::SYN_SENT, S::CLOSE),
        (S::SYN_RECV, S::ESTABLISHED),
        (S::SYN_RECV, S::FIN_WAIT1),
        (S::SYN_RECV, S::CLOSE_WAIT),
        (S::SYN_RECV, S::CLOSE),
        (S::ESTABLISHED, S::FIN_WAIT1),
        (S::ESTABLISHED, S::CLOSE_WAIT),
        (S::ESTABLISHED, S::CLOSE),
        (S::FIN_WAIT1, S::FIN_WAIT1),
        (S::FIN_WAIT1, S::FIN_WAIT2),
        (S::FIN_WAIT1, S::CLOSING),
        (S::FIN_WAIT1, S::CLOSE),
        (S::FIN_WAIT2, S::FIN_WAIT2),
        (S::FIN_WAIT2, S::TIME_WAIT),
        (S::FIN_WAIT2, S::CLOSE),
        (S::CLOSE_WAIT, S::LAST_ACK),
        (S::CLOSE_WAIT, S::CLOSE),
        (S::LAST_ACK, S::LAST_ACK),
        (S::LAST_ACK, S::CLOSE),
        (S::CLOSING, S::CLOSING),
        (S::CLOSING, S::TIME_WAIT),
        (S::CLOSING, S::CLOSE),
        (S::TIME_WAIT, S::CLOSE),
    ]
};

/// The states a connection can stay in: every state entered by one of
/// [`KERNEL_TRANSITIONS`] but CLOSE and LISTEN (a listener is no
/// connection), in numeric order.
pub fn connection_states() -> impl Iterator<Item = TcpState> {
    TcpState::all().filter(|&s| {
        s != TcpState::CLOSE && s != TcpState::LISTEN && KERNEL_TRANSITIONS.iter().any(|&(_, new)| new == s)
    })
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_kernel_numbering() {
        assert_eq!(TcpState(1).to_string(), "ESTABLISHED");
        assert_eq!(TcpState(6).to_string(), "TIME_WAIT");
        assert_eq!(TcpState(7).to_string(), "CLOSE");
        assert_eq!(TcpState(10).to_string(), "LISTEN");
        assert_eq!(TcpState(13).to_string(), "BOUND_INACTIVE");
    }

    #[test]
    fn unknown_numbers_print_their_value() {
        assert_eq!(TcpState(0).to_string(), "UNKNOWN(0)");
        assert_eq!(TcpState(200).to_string(), "UNKNOWN(200)");
    }

    #[test]
    fn names_round_trip() {
        for n in 0..=255u8 {
            let s = TcpState(n);
            assert_eq!(TcpState::from_name(&s.to_string()), Some(s));
        }
        assert_eq!(TcpState::from_name("TCP_CLOSE"), None);
        assert_eq!(TcpState::from_name("UNKNOWN(x)"), None);
    }

    #[test]
    fn padding_applies_to_names() {
        assert_eq!(format!("{:<12}|", TcpState::CLOSE), "CLOSE       |");
    }

    #[test]
    fn kernel_transitions_are_distinct_known_and_connected() {
        let mut pairs = KERNEL_TRANSITIONS.to_vec();
        pairs.sort();
        pairs.dedup();
        assert_eq!(pairs.len(), KERNEL_TRANSITIONS.len(), "a pair listed twice");
        for (old, new) in KERNEL_TRANSITIONS {
            assert!(old.known_name().is_some() && new.known_name().is_some());
            // Every state left was entered first, CLOSE (a new socket) aside.
            assert!(old == TcpState::CLOSE || KERNEL_TRANSITIONS.iter().any(|&(_, n)| n == old), "{old} -> {new}");
        }
        // Neither the request socket's state nor inet_diag's name is a
        // full socket's.
        for never in [TcpState::NEW_SYN_RECV, TcpState::BOUND_INACTIVE] {
            assert!(!KERNEL_TRANSITIONS.iter().any(|&(o, n)| o == never || n == never));
        }
        // A connection stays in every other state.
        let not_stays = [TcpState::CLOSE, TcpState::LISTEN, TcpState::NEW_SYN_RECV, TcpState::BOUND_INACTIVE];
        let stays: Vec<TcpState> = TcpState::all().filter(|s| !not_stays.contains(s)).collect();
        assert_eq!(connection_states().collect::<Vec<_>>(), stays);
    }
}
