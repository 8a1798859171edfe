//! The fields of a transition line and of a connection record
//! (`--connections`) as JSON and CSV print them: one list of names and one
//! of values each, so that JSON's keys, CSV's header and the order of both
//! cannot drift apart.
//!
//! These are the formats stores load (ClickHouse, an OpenTelemetry
//! Collector's filelog receiver, jq pipelines), so every line has the same
//! keys, whatever the event: a key without a value is null, never missing.
//! Changing a key, its meaning or its type raises [`SCHEMA_VERSION`].

use std::io::Write;
use std::net::IpAddr;
use std::num::NonZeroU64;

use nix::errno::Errno;

use super::line::Line;
use super::put::{put, Put};
use crate::cgroup::Cgroup;
use crate::conn::{ConnRecord, Counters, Span};
use crate::model::{Owner, TcpState, Tuple};

/// The version of the key set below, the first key of every JSON line and
/// CSV row. 1 was the unversioned set before it; 2 added `schema_version`,
/// `host`, `time_unix_nano`, `probe`, and the cgroup and container keys
/// (`cgroup_id`, `cgroup`, `container_id`, `container_runtime`, `pod_uid`),
/// and made `skaddr` null unless asked for (`--skaddr`, `--raw`): a kernel
/// address tells a fleet's store the kernel's memory layout and joins
/// nothing `conn_id` does not.
pub(crate) const SCHEMA_VERSION: u64 = 2;

/// What every record of one run carries besides its own fields.
#[derive(Clone, Debug, Default)]
pub struct RunFields {
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC (see `output::wall_offset_ns`),
    /// for the wall-clock times.
    pub wall_offset_ns: i128,
    /// `--hostname`: the name stores group a fleet's lines by.
    pub host: Option<Box<str>>,
    /// `--skaddr` (or `--raw`): print the sockets' kernel addresses.
    pub skaddr: bool,
}

/// Where a connection is (its tuple, network namespace and cgroup) and
/// who owns it: the keys a transition line and a connection record share,
/// in order, after their own first ones.
const PLACE_NAMES: [&str; 13] = [
    "family",
    "saddr",
    "sport",
    "daddr",
    "dport",
    "netns",
    "cgroup_id",
    "cgroup",
    "container_id",
    "container_runtime",
    "pod_uid",
    "pid",
    "comm",
];

/// The values of [`PLACE_NAMES`], each null when not known.
fn place_values<'a>(
    t: &Tuple,
    netns: u32,
    cgroup_id: Option<NonZeroU64>,
    cgroup: Option<&'a Cgroup>,
    owner: Option<&'a Owner>,
) -> [Value<'a>; 13] {
    use Value::*;
    let [cgroup, container_id, container_runtime, pod_uid] = cgroup_values(cgroup);
    [
        Number(Some(t.family().into())),
        Addr(t.saddr),
        Number(Some(t.sport.into())),
        Addr(t.daddr),
        Number(Some(t.dport.into())),
        Number(Some(netns.into())),
        Number(cgroup_id.map(NonZeroU64::get)),
        cgroup,
        container_id,
        container_runtime,
        pod_uid,
        Number(owner.map(|o| o.pid.into())),
        Text(owner.and_then(|o| o.comm.as_ref()).map(|c| c.as_str())),
    ]
}

/// `parts` one after the other, as one array of `N` (their total length).
const fn join<T: Copy, const N: usize>(fill: T, parts: &[&[T]]) -> [T; N] {
    let mut out = [fill; N];
    let (mut at, mut part) = (0, 0);
    while part < parts.len() {
        let mut i = 0;
        while i < parts[part].len() {
            out[at] = parts[part][i];
            (at, i) = (at + 1, i + 1);
        }
        part += 1;
    }
    assert!(at == N, "the parts do not fill the array");
    out
}

/// A transition line's keys, in order (CSV puts a `time` column first).
pub(crate) const LINE_NAMES: [&str; 26] = join(
    "",
    &[
        &["schema_version", "host", "time_unix_nano", "ts_ns", "conn_id", "side", "old", "new", "probe"],
        &PLACE_NAMES,
        &["prev_state_ms", "inferred", "earliest_ns", "skaddr"],
    ],
);

/// The values of `l`, in the order of [`LINE_NAMES`].
pub(crate) fn line_values<'a>(l: &'a Line<'a>, run: &'a RunFields) -> [Value<'a>; 26] {
    use Value::*;
    let first = [
        Number(Some(SCHEMA_VERSION)),
        Text(run.host.as_deref()),
        Number(Some(unix_ns(l.ts_ns, run.wall_offset_ns))),
        Number(Some(l.ts_ns)),
        Number(Some(l.conn_id)),
        Word(l.side.as_str()),
        State(l.old),
        State(l.new),
        Text(l.probe),
    ];
    let place = place_values(l.tuple, l.netns, l.cgroup_id, l.cgroup, l.owner);
    let last = [
        Millis(l.time_in_old_ns),
        Bool(l.inferred()),
        Number(l.earliest_ns),
        KernelAddress(Some(l.skaddr).filter(|_| run.skaddr)),
    ];
    join(Bool(false), &[&first, &place, &last])
}

/// A connection record's keys, in order.
pub(crate) const NAMES: [&str; 37] = join(
    "",
    &[
        &[
            "schema_version",
            "host",
            "conn_id",
            "side",
            "side_by",
            "start_ns",
            "end_ns",
            "start_unix_ns",
            "end_unix_ns",
            "duration_ns",
        ],
        &PLACE_NAMES,
        &[
            "states",
            "time_wait_ns",
            "bytes_sent",
            "bytes_acked",
            "bytes_received",
            "bytes_retrans",
            "segs_in",
            "segs_out",
            "retransmits",
            "srtt_us",
            "min_rtt_us",
            "error",
            "end",
            "open",
        ],
    ],
);

/// One field's value, by the kind of rendering it needs: each format
/// decides how null, quotes and escaping look.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Value<'a> {
    /// A number, or null.
    Number(Option<u64>),
    Bool(bool),
    /// A name that needs no escaping anywhere (side, end cause).
    Word(&'static str),
    Addr(IpAddr),
    /// An errno, by name (`ECONNREFUSED`); 0 (none) is null.
    Error(u32),
    /// Text from outside (a comm), which may need escaping; or null.
    Text(Option<&'a str>),
    State(TcpState),
    /// A duration in ns, printed in ms (`2.500000`), or null.
    Millis(Option<u64>),
    /// A kernel address, printed in hex (`0xffff888012345678`), or null.
    KernelAddress(Option<u64>),
    States(&'a [Span]),
}

/// The values of `r`, in the order of [`NAMES`].
pub(crate) fn values<'a>(r: &'a ConnRecord, run: &'a RunFields) -> [Value<'a>; 37] {
    use Value::*;
    let wall_offset_ns = run.wall_offset_ns;
    let counters = r.counters.as_ref();
    let counter = |get: fn(&Counters) -> u64| Number(counters.map(get));
    let rtt = |get: fn(&Counters) -> Option<u32>| Number(counters.and_then(get).map(u64::from));
    let first = [
        Number(Some(SCHEMA_VERSION)),
        Text(run.host.as_deref()),
        Number(Some(r.conn_id)),
        Word(r.side.as_str()),
        Word(r.side_rule.as_str()),
        Number(Some(r.start_ns)),
        Number(Some(r.end_ns)),
        Number(Some(unix_ns(r.start_ns, wall_offset_ns))),
        Number(Some(unix_ns(r.end_ns, wall_offset_ns))),
        Number(Some(r.duration_ns())),
    ];
    let place = place_values(&r.tuple, r.netns, r.cgroup_id, r.cgroup.as_deref(), r.owner.as_ref());
    let last = [
        States(&r.states),
        Number(time_wait_ns(r)),
        counter(|c| c.bytes_sent),
        counter(|c| c.bytes_acked),
        counter(|c| c.bytes_received),
        counter(|c| c.bytes_retrans),
        counter(|c| c.segs_in.into()),
        counter(|c| c.segs_out.into()),
        counter(|c| c.retransmits.into()),
        rtt(|c| c.srtt_us),
        rtt(|c| c.min_rtt_us),
        Error(counters.map_or(0, |c| c.error)),
        Word(r.end.as_str()),
        Bool(r.is_open()),
    ];
    join(Bool(false), &[&first, &place, &last])
}

/// A cgroup's path, container id, runtime and Kubernetes pod UID, each
/// null when not known.
pub(crate) fn cgroup_values(cgroup: Option<&Cgroup>) -> [Value<'_>; 4] {
    let container = cgroup.and_then(|c| c.container.as_ref());
    [
        Value::Text(cgroup.map(|c| &*c.path)),
        Value::Text(container.map(|c| c.id.as_str())),
        Value::Text(container.map(|c| c.runtime.as_str())),
        Value::Text(container.and_then(|c| c.pod_uid.as_deref())),
    ]
}

/// A monotonic timestamp on the wall clock, clamped to what a u64 holds.
pub(crate) fn unix_ns(mono_ns: u64, wall_offset_ns: i128) -> u64 {
    (i128::from(mono_ns) + wall_offset_ns).clamp(0, u64::MAX.into()) as u64
}

/// How long its TIME_WAIT lasted, when it had one whose start was seen.
fn time_wait_ns(r: &ConnRecord) -> Option<u64> {
    r.states.iter().rev().find(|s| s.state == TcpState::TIME_WAIT).and_then(|s| s.ns)
}

/// An errno by its C name (`ECONNREFUSED`), as `errno(3)` and the kernel
/// sources spell it: what people search for. A number this libc does not
/// name prints as `E<n>`.
pub(crate) struct ErrnoName(pub u32);

impl Put for ErrnoName {
    fn put(&self, out: &mut Vec<u8>) {
        match i32::try_from(self.0).map(Errno::from_raw) {
            // nix's variants are named after the C constants.
            Ok(errno) if errno != Errno::UnknownErrno => {
                let _ = write!(out, "{errno:?}");
            }
            _ => put!(out, 'E', self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::put::to_string;
    use crate::output::tests::sample_connection;

    #[test]
    fn errno_names_are_the_c_constants() {
        for (n, name) in [
            (libc::ECONNREFUSED, "ECONNREFUSED"),
            (libc::ECONNRESET, "ECONNRESET"),
            (libc::ETIMEDOUT, "ETIMEDOUT"),
            (libc::EHOSTUNREACH, "EHOSTUNREACH"),
            (libc::ENETUNREACH, "ENETUNREACH"),
            (libc::EPIPE, "EPIPE"),
            (libc::EPROTO, "EPROTO"),
        ] {
            assert_eq!(to_string(&ErrnoName(n as u32)), name);
        }
        assert_eq!(to_string(&ErrnoName(4000)), "E4000");
        assert_eq!(to_string(&ErrnoName(u32::MAX)), "E4294967295");
    }

    #[test]
    fn time_wait_is_its_span_and_wall_clock_is_offset() {
        let mut r = sample_connection();
        assert_eq!(time_wait_ns(&r), Some(60_000_123_456));
        r.states.retain(|s| s.state != TcpState::TIME_WAIT);
        assert_eq!(time_wait_ns(&r), None);
        assert_eq!(unix_ns(5, 1_700_000_000_000_000_000), 1_700_000_000_000_000_005);
        assert_eq!(unix_ns(5, -10), 0);
    }
}
