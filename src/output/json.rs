//! One JSON object per line, for jq and log pipelines. Written by hand,
//! field by field, straight into the output buffer: at a hundred thousand
//! events a second the per-event allocations of a generic serializer show.

use super::fields::{self, ErrnoName, RunFields, Value};
use super::line::Line;
use super::put::{put, put_joined, Hex, NanosAsMs, Or, Put};
use super::{otel, Formatter, Schema};
use crate::conn::ConnRecord;

pub struct Json {
    run: RunFields,
    schema: Schema,
    /// What comes before each value of a transition line, and of a
    /// connection record.
    line_keys: Keys,
    record_keys: Keys,
}

impl Json {
    pub fn new(run: RunFields) -> Json {
        Json::with_schema(run, Schema::Tcpstate)
    }

    pub fn with_schema(run: RunFields, schema: Schema) -> Json {
        let line_names: &[&str] = match schema {
            Schema::Tcpstate => &fields::LINE_NAMES,
            Schema::Otel => &otel::NAMES,
        };
        Json { run, schema, line_keys: Keys::new(line_names), record_keys: Keys::new(&fields::NAMES) }
    }
}

/// An object's keys as written before each value: `{"first":`, then
/// `,"name":`. Made once, so that a line costs one copy a key (a line has
/// 26 of them, and small copies were the largest cost of writing one).
struct Keys(Vec<Box<[u8]>>);

impl Keys {
    fn new(names: &[&str]) -> Keys {
        let before = |i: usize, name: &str| format!("{}\"{name}\":", if i == 0 { "{" } else { "," });
        Keys(names.iter().enumerate().map(|(i, name)| before(i, name).into_bytes().into_boxed_slice()).collect())
    }
}

/// Writes one object of `keys` and `values` as a line.
fn object<'a, const N: usize>(out: &mut Vec<u8>, keys: &Keys, values: [Value<'a>; N]) {
    debug_assert_eq!(keys.0.len(), N);
    for (key, value) in keys.0.iter().zip(values) {
        out.extend_from_slice(key);
        JsonValue(value).put(out);
    }
    out.extend_from_slice(b"}\n");
}

/// A JSON string. Comms are printable ASCII already (see `Comm`), but a
/// quote or a backslash is allowed there and must be escaped.
struct JsonString<'a>(&'a str);

impl Put for JsonString<'_> {
    fn put(&self, out: &mut Vec<u8>) {
        // Runs without anything to escape (usually the whole string) are
        // copied at once.
        let bytes = self.0.as_bytes();
        let mut clean = 0;
        out.push(b'"');
        for (i, &b) in bytes.iter().enumerate() {
            if b != b'"' && b != b'\\' && b >= 0x20 {
                continue;
            }
            out.extend_from_slice(&bytes[clean..i]);
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b => put!(out, "\\u00", Hex2(b)),
            }
            clean = i + 1;
        }
        out.extend_from_slice(&bytes[clean..]);
        out.push(b'"');
    }
}

/// Two lower-case hex digits (control characters in strings).
struct Hex2(u8);

impl Put for Hex2 {
    fn put(&self, out: &mut Vec<u8>) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        out.extend_from_slice(&[DIGITS[usize::from(self.0 >> 4)], DIGITS[usize::from(self.0 & 0xf)]]);
    }
}

/// A connection record's field as JSON.
struct JsonValue<'a>(Value<'a>);

impl Put for JsonValue<'_> {
    fn put(&self, out: &mut Vec<u8>) {
        match self.0 {
            Value::Number(n) => put!(out, Or(n, "null")),
            Value::Bool(b) => put!(out, b),
            Value::Word(w) => put!(out, '"', w, '"'),
            Value::Addr(a) => put!(out, '"', a, '"'),
            Value::Error(0) => put!(out, "null"),
            Value::Error(e) => put!(out, '"', ErrnoName(e), '"'),
            Value::Text(t) => put!(out, Or(t.map(JsonString), "null")),
            Value::State(s) => put!(out, '"', s, '"'),
            Value::Millis(ns) => put!(out, Or(ns.map(NanosAsMs), "null")),
            Value::KernelAddress(Some(a)) => put!(out, '"', Hex(a), '"'),
            Value::KernelAddress(None) => put!(out, "null"),
            Value::States(spans) => {
                out.push(b'[');
                put_joined(out, ",", spans, |out, s| {
                    put!(
                        out,
                        "{\"state\":\"",
                        s.state,
                        "\",\"ns\":",
                        Or(s.ns, "null"),
                        ",\"inferred\":",
                        s.inferred,
                        '}'
                    )
                });
                out.push(b']');
            }
        }
    }
}

impl Formatter for Json {
    fn header(&mut self, _out: &mut Vec<u8>) {}

    fn connection_header(&mut self, _out: &mut Vec<u8>) {}

    fn connection(&mut self, out: &mut Vec<u8>, record: &ConnRecord) {
        object(out, &self.record_keys, fields::values(record, &self.run));
    }

    fn line(&mut self, out: &mut Vec<u8>, l: &Line<'_>) {
        match self.schema {
            Schema::Tcpstate => object(out, &self.line_keys, fields::line_values(l, &self.run)),
            Schema::Otel => {
                let flow = otel::flow_id(l);
                object(out, &self.line_keys, otel::values(l, &self.run, flow.as_deref()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::{
        inferred, open_connection, raw_probe, refused_connection, render, render_connections, sample,
        sample_connection, with,
    };

    #[test]
    fn strings_escape_quotes_backslashes_and_control_characters() {
        let text = "a\"b\\c\u{1}d\te";
        let out = crate::output::put::to_string(&JsonString(text));
        assert_eq!(out, r#""a\"b\\c\u0001d\u0009e""#);
        assert_eq!(serde_json::from_str::<String>(&out).unwrap(), text);
        assert_eq!(crate::output::put::to_string(&JsonString("/system.slice/x")), r#""/system.slice/x""#);
    }

    #[test]
    fn one_object_per_line_with_every_key() {
        let unknown = with(sample(1, 8), |t| {
            t.owner = None;
            t.time_in_old_ns = None;
            (t.cgroup_id, t.cgroup) = (None, None);
        });
        let run = RunFields { wall_offset_ns: 1_700_000_000_000_000_000, ..RunFields::default() };
        let out = render(Box::new(Json::new(run)), &[sample(2, 1), unknown, inferred(4, 5)]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"schema_version":2,"host":null,"time_unix_nano":1700000001000000123,"ts_ns":1000000123,"conn_id":77,"side":"client","old":"SYN_SENT","new":"ESTABLISHED","probe":null,"family":4,"saddr":"127.0.0.1","sport":51234,"daddr":"127.0.0.2","dport":80,"netns":4026531840,"cgroup_id":5321,"cgroup":"/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope","container_id":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","container_runtime":"docker","pod_uid":null,"pid":4242,"comm":"curl","prev_state_ms":2.500000,"inferred":false,"earliest_ns":null,"skaddr":null}"#
        );
        let keys = |line: &str| -> Vec<String> {
            let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
            v.keys().cloned().collect()
        };
        assert!(lines.iter().all(|l| keys(l) == keys(lines[0])), "one key set: {out}");
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert!(v["pid"].is_null() && v["comm"].is_null() && v["prev_state_ms"].is_null());
        assert!(v["cgroup_id"].is_null());
        assert_eq!(v["new"], "CLOSE_WAIT");
        let v: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!((v["inferred"].as_bool(), v["earliest_ns"].as_u64()), (Some(true), Some(999_000_000)));
    }

    #[test]
    fn raw_probe_events_name_their_probe_in_its_own_field() {
        let run = RunFields { skaddr: true, host: Some("web-1".into()), ..RunFields::default() };
        let out = render(Box::new(Json::new(run)), &[raw_probe(), sample(2, 1)]);
        let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let v = &lines[0];
        assert_eq!(
            (v["old"].as_str(), v["new"].as_str(), v["probe"].as_str()),
            (Some("TIME_WAIT"), Some("TIME_WAIT"), Some("tw_arm"))
        );
        assert_eq!((v["conn_id"].as_u64(), v["skaddr"].as_str()), (Some(77), Some("0xffff888099990000")));
        assert_eq!(
            (lines[1]["skaddr"].as_str(), lines[1]["host"].as_str()),
            (Some("0xffff888012345678"), Some("web-1"))
        );
    }

    #[test]
    fn every_line_is_valid_json_whatever_the_comm() {
        let ev = with(sample(1, 4), |t| {
            t.owner.as_mut().unwrap().comm = Some(crate::model::Comm::from("a\"b\\c"));
            t.tuple.saddr = "fe80::1".parse().unwrap();
            t.time_in_old_ns = Some(60_000_123_456);
        });
        let out = render(Box::new(Json::new(RunFields::default())), &[ev]);
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(v["comm"], "a\"b\\c");
        assert_eq!(v["saddr"], "fe80::1");
        assert_eq!(v["prev_state_ms"].as_f64(), Some(60_000.123456));
    }

    #[test]
    fn a_connection_is_one_object_with_every_field_in_order() {
        let out = render_connections(
            Box::new(Json::new(RunFields { wall_offset_ns: 1_700_000_000_000_000_000, ..RunFields::default() })),
            &[sample_connection(), refused_connection(), open_connection()],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"schema_version":2,"host":null,"conn_id":77,"side":"client","side_by":"origin","start_ns":1000000123,"end_ns":61002624813,"start_unix_ns":1700000001000000123,"end_unix_ns":1700000061002624813,"duration_ns":60002624690,"family":4,"saddr":"127.0.0.1","sport":51234,"daddr":"127.0.0.2","dport":80,"netns":4026531840,"cgroup_id":5321,"cgroup":"/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope","container_id":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","container_runtime":"docker","pod_uid":null,"pid":4242,"comm":"curl","states":[{"state":"SYN_SENT","ns":51234,"inferred":false},{"state":"ESTABLISHED","ns":2000000,"inferred":false},{"state":"FIN_WAIT1","ns":150000,"inferred":false},{"state":"FIN_WAIT2","ns":300000,"inferred":false},{"state":"TIME_WAIT","ns":60000123456,"inferred":false}],"time_wait_ns":60000123456,"bytes_sent":77,"bytes_acked":77,"bytes_received":853,"bytes_retrans":0,"segs_in":6,"segs_out":5,"retransmits":0,"srtt_us":53,"min_rtt_us":21,"error":null,"end":"time_wait_expired","open":false}"#
        );
        let refused: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!((refused["error"].as_str(), refused["end"].as_str()), (Some("ECONNREFUSED"), Some("refused")));
        assert!(refused["srtt_us"].is_null() && refused["time_wait_ns"].is_null());
        assert_eq!(refused["bytes_sent"].as_u64(), Some(0));
        let open: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        for key in ["pid", "comm", "bytes_sent", "segs_in", "min_rtt_us", "error"] {
            assert!(open[key].is_null(), "{key}: {}", lines[2]);
        }
        assert_eq!(open["states"], serde_json::json!([{"state": "ESTABLISHED", "ns": null, "inferred": false}]));
        assert_eq!((open["end"].as_str(), open["open"].as_bool()), (Some("open"), Some(true)));
    }

    #[test]
    fn a_connection_is_valid_json_whatever_its_comm_and_states() {
        let mut r = sample_connection();
        r.owner.as_mut().unwrap().comm = Some(crate::model::Comm::from("a\"b\\c"));
        r.tuple.saddr = "fe80::1".parse().unwrap();
        r.tuple.daddr = "fe80::2".parse().unwrap();
        r.states[3].inferred = true;
        let out = render_connections(Box::new(Json::new(RunFields::default())), &[r]);
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(v["comm"], "a\"b\\c");
        assert_eq!((v["saddr"].as_str(), v["family"].as_u64()), (Some("fe80::1"), Some(6)));
        assert_eq!(v["states"][3], serde_json::json!({"state": "FIN_WAIT2", "ns": 300000, "inferred": true}));
    }
}
