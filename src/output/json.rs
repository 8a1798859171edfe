//! One JSON object per line, for jq and log pipelines. Written by hand,
//! field by field, straight into the output buffer: at a hundred thousand
//! events a second the per-event allocations of a generic serializer show.

use std::io;

use super::put::{put, Hex, NanosAsMs, Or, Put};
use super::Formatter;
use crate::event::Event;

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
    fn header(&mut self, _out: &mut Vec<u8>) -> io::Result<()> {
        Ok(())
    }

    fn event(&mut self, out: &mut Vec<u8>, ev: &Event) -> io::Result<()> {
        put!(
            out,
            "{\"ts_ns\":",
            ev.ts_ns,
            ",\"side\":\"",
            ev.side,
            "\",\"old\":\"",
            ev.old_label(),
            "\",\"new\":\"",
            ev.new,
            "\",\"family\":",
            ev.family(),
            ",\"saddr\":\"",
            ev.saddr,
            "\",\"sport\":",
            ev.sport,
            ",\"daddr\":\"",
            ev.daddr,
            "\",\"dport\":",
            ev.dport,
            ",\"pid\":",
            Or(ev.pid, "null"),
            ",\"comm\":",
            Or(ev.comm.as_ref().map(|c| JsonString(c.as_str())), "null"),
            ",\"skaddr\":\"",
            Hex(ev.skaddr),
            "\",\"netns\":",
            ev.netns,
            ",\"prev_state_ms\":",
            Or(ev.prev_state_ns.map(NanosAsMs), "null"),
            ",\"inferred\":",
            ev.inferred,
        );
        if ev.is_raw_tw() {
            put!(out, ",\"source\":\"", ev.source.as_str(), '"');
        }
        put!(out, "}\n");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::{render, sample};

    #[test]
    fn one_object_per_line_with_every_key() {
        let mut unknown = sample(1, 8);
        unknown.pid = None;
        unknown.comm = None;
        unknown.prev_state_ns = None;
        let out = render(Box::new(Json), &[sample(2, 1), unknown]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"ts_ns":1000000123,"side":"client","old":"SYN_SENT","new":"ESTABLISHED","family":4,"saddr":"127.0.0.1","sport":51234,"daddr":"127.0.0.2","dport":80,"pid":4242,"comm":"curl","skaddr":"0xffff888012345678","netns":4026531840,"prev_state_ms":2.500000,"inferred":false}"#
        );
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert!(v["pid"].is_null() && v["comm"].is_null() && v["prev_state_ms"].is_null());
        assert_eq!(v["new"], "CLOSE_WAIT");
    }

    #[test]
    fn every_line_is_valid_json_whatever_the_comm() {
        let mut ev = sample(1, 4);
        ev.comm = Some(crate::event::Comm::from("a\"b\\c"));
        ev.saddr = "fe80::1".parse().unwrap();
        ev.prev_state_ns = Some(60_000_123_456);
        let out = render(Box::new(Json), &[ev]);
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(v["comm"], "a\"b\\c");
        assert_eq!(v["saddr"], "fe80::1");
        assert_eq!(v["prev_state_ms"].as_f64(), Some(60_000.123456));
    }
}
