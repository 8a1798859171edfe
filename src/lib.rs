//! tcpstate: trace every TCP state transition, labelled server or client.
//!
//! One module per job: `cli` (arguments), `preflight` (privilege and BTF
//! checks), `tracer` (BPF load/attach/counters), `event` (ABI decoding),
//! `output` (formats), `summary`, `app` (the run loop), `plot` (pictures).

pub mod app;
pub mod cli;
pub mod conn;
pub mod docs;
pub mod event;

pub mod lifecycle;
pub mod metrics;
pub mod model;
pub mod output;
pub mod plot;

pub mod sockets;
pub mod state;
pub mod summary;
pub mod trace;

#[allow(clippy::all, non_camel_case_types, non_upper_case_globals, dead_code)]
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/tcpstate.skel.rs"));
}

#[allow(clippy::all, non_camel_case_types, non_upper_case_globals, dead_code)]
pub mod facts_skel {
    include!(concat!(env!("OUT_DIR"), "/kernel_facts.skel.rs"));
}
