//! What the connection table hands to the outputs: the user's view.

use crate::model::{Owner, Side, TcpState, Tuple};
use crate::trace::TwEvent;

/// tcpstate's connection id: the kernel's socket cookie, unique for the boot
/// (a timewait socket carries its full socket's). On kernels that give no
/// cookie, tcpstate numbers connections itself from [`LOCAL_IDS`] up.
pub type ConnId = u64;

/// The first id tcpstate gives itself. Kernel cookies count up from 1 and
/// never get near it within a boot.
pub const LOCAL_IDS: ConnId = 1 << 48;

/// One record for the outputs, in time order.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Transition(Transition),
    /// With `--raw`: a timewait probe event, as the probe saw it.
    Probe(RawProbe),
}

impl Record {
    pub fn ts_ns(&self) -> u64 {
        match self {
            Record::Transition(t) => t.ts_ns,
            Record::Probe(p) => p.ts_ns,
        }
    }

    pub fn side(&self) -> Side {
        match self {
            Record::Transition(t) => t.side,
            Record::Probe(p) => p.side,
        }
    }
}

/// One TCP state transition of a connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns), as the original printed.
    pub ts_ns: u64,
    pub conn_id: ConnId,
    pub side: Side,
    pub old: TcpState,
    pub new: TcpState,
    pub tuple: Tuple,
    pub netns: u32,
    /// The owning process, once it was seen acting on the socket.
    pub owner: Option<Owner>,
    /// Kernel address of the socket that made it: the timewait socket's for
    /// the transitions a timewait socket makes.
    pub skaddr: u64,
    /// Time spent in `old`; `None` when its start was not seen.
    pub time_in_old_ns: Option<u64>,
    /// Set when no probe saw the transition.
    pub inferred: Option<Inferred>,
}

/// When a transition no probe saw can have happened: between `earliest_ns`
/// (the connection was last seen in the old state) and the transition's
/// `ts_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inferred {
    pub earliest_ns: u64,
}

/// A timewait socket event as a TIME_WAIT probe reported it (`--raw`).
#[derive(Clone, Debug, PartialEq)]
pub struct RawProbe {
    pub ts_ns: u64,
    pub conn_id: ConnId,
    pub side: Side,
    pub what: TwEvent,
    /// The substate the probe read (TIME_WAIT or FIN_WAIT2).
    pub substate: TcpState,
    pub tuple: Tuple,
    pub netns: u32,
    /// The timewait socket's address.
    pub skaddr: u64,
}
