//! One JSON object per line, for jq and log pipelines. Written by hand,
//! field by field, straight into the output buffer: at a hundred thousand
//! events a second the per-event allocations of a generic serializer show.

use super::line::Line;
use super::put::{put, Hex, NanosAsMs, Or, Put};
use super::Formatter;

pub struct Json;

/// A JSON string. Comms are printable ASCII already (see `Comm`), but a
/// quote or a backslash is allowed there and must be escaped.
struct JsonString<'a>(&'a str);

impl Put for JsonString<'_> {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        for &b in self.0.as_bytes() {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b if b < 0x20 => put!(out, "\\u00", Hex2(b)),
                b => out.push(b),
            }
        }
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

impl Formatter for Json {
    fn connection(&mut self, _out: &mut Vec<u8>, _record: &crate::conn::ConnRecord) {
        // TODO(13): connection records
    }

    fn header(&mut self, _out: &mut Vec<u8>) {}

    fn line(&mut self, out: &mut Vec<u8>, l: &Line<'_>) {
        let t = l.tuple;
        put!(
            out,
            "{\"ts_ns\":",
            l.ts_ns,
            ",\"side\":\"",
            l.side,
            "\",\"old\":\"",
            l.old,
            "\",\"new\":\"",
            l.new,
            "\",\"family\":",
            t.family(),
            ",\"saddr\":\"",
            t.saddr,
            "\",\"sport\":",
            t.sport,
            ",\"daddr\":\"",
            t.daddr,
            "\",\"dport\":",
            t.dport,
            ",\"pid\":",
            Or(l.owner.map(|o| o.pid), "null"),
            ",\"comm\":",
            Or(l.owner.and_then(|o| o.comm.as_ref()).map(|c| JsonString(c.as_str())), "null"),
            ",\"skaddr\":\"",
            Hex(l.skaddr),
            "\",\"netns\":",
            l.netns,
            ",\"prev_state_ms\":",
            Or(l.time_in_old_ns.map(NanosAsMs), "null"),
            ",\"inferred\":",
            l.inferred(),
            ",\"earliest_ns\":",
            Or(l.earliest_ns, "null"),
            ",\"conn_id\":",
            l.conn_id,
        );
        if let Some(probe) = l.probe {
            put!(out, ",\"source\":\"", probe, '"');
        }
        put!(out, "}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::{inferred, raw_probe, render, sample, with};

    #[test]
    fn one_object_per_line_with_every_key() {
        let unknown = with(sample(1, 8), |t| {
            t.owner = None;
            t.time_in_old_ns = None;
        });
        let out = render(Box::new(Json), &[sample(2, 1), unknown, inferred(4, 5)]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"ts_ns":1000000123,"side":"client","old":"SYN_SENT","new":"ESTABLISHED","family":4,"saddr":"127.0.0.1","sport":51234,"daddr":"127.0.0.2","dport":80,"pid":4242,"comm":"curl","skaddr":"0xffff888012345678","netns":4026531840,"prev_state_ms":2.500000,"inferred":false,"earliest_ns":null,"conn_id":77}"#
        );
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert!(v["pid"].is_null() && v["comm"].is_null() && v["prev_state_ms"].is_null());
        assert_eq!(v["new"], "CLOSE_WAIT");
        let v: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!((v["inferred"].as_bool(), v["earliest_ns"].as_u64()), (Some(true), Some(999_000_000)));
    }

    #[test]
    fn raw_probe_events_carry_their_source() {
        let out = render(Box::new(Json), &[raw_probe()]);
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(
            (v["old"].as_str(), v["new"].as_str(), v["source"].as_str()),
            (Some("tw_arm"), Some("TIME_WAIT"), Some("tw_arm"))
        );
        assert_eq!((v["conn_id"].as_u64(), v["skaddr"].as_str()), (Some(77), Some("0xffff888099990000")));
    }

    #[test]
    fn every_line_is_valid_json_whatever_the_comm() {
        let ev = with(sample(1, 4), |t| {
            t.owner.as_mut().unwrap().comm = Some(crate::model::Comm::from("a\"b\\c"));
            t.tuple.saddr = "fe80::1".parse().unwrap();
            t.time_in_old_ns = Some(60_000_123_456);
        });
        let out = render(Box::new(Json), &[ev]);
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(v["comm"], "a\"b\\c");
        assert_eq!(v["saddr"], "fe80::1");
        assert_eq!(v["prev_state_ms"].as_f64(), Some(60_000.123456));
    }
}
