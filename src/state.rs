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
}
