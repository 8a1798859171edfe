//! tcpstate's connection-storm benchmark.
//!
//! Three binaries share this library: `loadgen` (the storm: a tiny server and
//! its clients on loopback, in a fresh network namespace, reporting exactly
//! how many TCP state transitions it caused), `floor` (the cheapest possible
//! tracer, a lower bound on tracing cost) and `bench` (the runner: starts each
//! tracer, runs the storm under it, measures, and prints the comparison).

pub mod floor;
pub mod loadgen;
pub mod runner;
