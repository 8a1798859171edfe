//! tcpstate: trace every TCP state transition, labelled server or client.
//!
//! The folders are the design: `trace` is the kernel side's user-space
//! half (loading and probe choice, kernel facts, preflight checks, libbpf's
//! log, reading and decoding the ring: the probes' view); `conn` is the
//! connection table (the user's view: identity, side, owner, states and
//! times, TIME_WAIT); `output` is where records go (formats, the exit
//! summary, metrics); `plot` draws timelines; `cgroup` turns the cgroup
//! ids the kernel reports into paths and containers. `model` holds the
//! words they share, `cli` the command line, `app` the run loop.

pub mod app;
pub mod cgroup;
pub mod cli;
pub mod conn;
pub mod docs;
pub mod model;
pub mod output;
#[cfg(feature = "plot")]
pub mod plot;
pub mod state;
pub mod trace;

#[allow(clippy::all, non_camel_case_types, non_upper_case_globals, dead_code)]
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/tcpstate.skel.rs"));
}

#[allow(clippy::all, non_camel_case_types, non_upper_case_globals, dead_code)]
pub mod facts_skel {
    include!(concat!(env!("OUT_DIR"), "/kernel_facts.skel.rs"));
}
