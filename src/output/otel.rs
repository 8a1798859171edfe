//! `-o json --schema otel`: the transition line with the keys of the
//! OpenTelemetry semantic conventions, so that an OpenTelemetry Collector's
//! filelog receiver (deploy/otel/collector.yaml) files each line as a log
//! record whose attributes dashboards and other tools already know:
//! `network.peer.address`, `process.pid`, `host.name` … What the
//! conventions have no name for is under `tcpstate.`.
//!
//! `network.community_id` is the flow's Community ID (v1, seed 0), the key
//! Zeek, Suricata and packet-capture tools put on the same connection.

use super::community_id::community_id;
use std::num::NonZeroU64;

use super::fields::{cgroup_values, RunFields, Value, SCHEMA_VERSION};
use super::line::Line;
use crate::model::TcpState;

/// The keys, in order. Every line has all of them (null when unknown).
pub(crate) const NAMES: [&str; 25] = [
    "time_unix_nano",
    "host.name",
    "network.transport",
    "network.type",
    "network.local.address",
    "network.local.port",
    "network.peer.address",
    "network.peer.port",
    "network.community_id",
    "network.connection.state",
    "tcpstate.state.previous",
    "tcpstate.side",
    "tcpstate.connection.id",
    "tcpstate.previous_state.duration_ms",
    "tcpstate.inferred",
    "tcpstate.probe",
    "tcpstate.netns",
    "tcpstate.cgroup.id",
    "tcpstate.cgroup.path",
    "tcpstate.schema_version",
    "process.pid",
    "process.executable.name",
    "container.id",
    "container.runtime.name",
    "k8s.pod.uid",
];

/// The flow's Community ID once both ends are known: null for connect()'s
/// first event (no local port yet) and for listeners (no peer).
pub(crate) fn flow_id(l: &Line<'_>) -> Option<String> {
    let t = l.tuple;
    (t.sport != 0 && t.dport != 0).then(|| community_id(t.saddr, t.sport, t.daddr, t.dport, 0))
}

/// The values of `l`, in the order of [`NAMES`]; `flow` is [`flow_id`]'s.
pub(crate) fn values<'a>(l: &'a Line<'a>, run: &'a RunFields, flow: Option<&'a str>) -> [Value<'a>; 25] {
    use Value::*;
    let t = l.tuple;
    let [cgroup, container_id, container_runtime, pod_uid] = cgroup_values(l.cgroup);
    [
        Number(Some(super::fields::unix_ns(l.ts_ns, run.wall_offset_ns))),
        Text(run.host.as_deref()),
        Word("tcp"),
        Word(if t.family() == 4 { "ipv4" } else { "ipv6" }),
        Addr(t.saddr),
        Number(Some(t.sport.into())),
        Addr(t.daddr),
        Number(Some(t.dport.into())),
        Text(flow),
        Word(state_value(l.new)),
        Word(state_value(l.old)),
        Word(l.side.as_str()),
        Number(Some(l.conn_id)),
        Millis(l.time_in_old_ns),
        Bool(l.inferred()),
        Text(l.probe),
        Number(Some(l.netns.into())),
        Number(l.cgroup_id.map(NonZeroU64::get)),
        cgroup,
        Number(Some(SCHEMA_VERSION)),
        Number(l.owner.map(|o| o.pid.into())),
        Text(l.owner.and_then(|o| o.comm.as_ref()).map(|c| c.as_str())),
        container_id,
        container_runtime,
        pod_uid,
    ]
}

/// A state as `network.connection.state` spells it (RFC 9293's names, in
/// the conventions' lower case: `syn_received`, `fin_wait_1`); states the
/// conventions do not list, in tcpstate's name, lower case.
fn state_value(s: TcpState) -> &'static str {
    match s {
        TcpState::ESTABLISHED => "established",
        TcpState::SYN_SENT => "syn_sent",
        TcpState::SYN_RECV => "syn_received",
        TcpState::FIN_WAIT1 => "fin_wait_1",
        TcpState::FIN_WAIT2 => "fin_wait_2",
        TcpState::TIME_WAIT => "time_wait",
        TcpState::CLOSE => "close",
        TcpState::CLOSE_WAIT => "close_wait",
        TcpState::LAST_ACK => "last_ack",
        TcpState::LISTEN => "listen",
        TcpState::CLOSING => "closing",
        TcpState::NEW_SYN_RECV => "new_syn_recv",
        TcpState::BOUND_INACTIVE => "bound_inactive",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_state_has_its_own_value() {
        let values: Vec<&str> = TcpState::all().map(state_value).collect();
        assert!(!values.contains(&"unknown"), "{values:?}");
        let mut unique = values.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), values.len());
        assert_eq!(state_value(TcpState(200)), "unknown");
    }
}
