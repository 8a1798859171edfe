//! One JSON object per line, for jq and log pipelines. Written by hand,
//! field by field, straight into the output buffer: at a hundred thousand
//! events a second the per-event allocations of a generic serializer show.

use std::io::{self, Write};

use super::{Formatter, NanosAsMs};
use crate::event::Event;

pub struct Json;

/// Writes `s` as a JSON string.
fn string(out: &mut Vec<u8>, s: &str) -> io::Result<()> {
    out.write_all(b"\"")?;
    for c in s.chars() {
        match c {
            '"' => out.write_all(b"\\\"")?,
            '\\' => out.write_all(b"\\\\")?,
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32)?,
            c => write!(out, "{c}")?,
        }
    }
    out.write_all(b"\"")
}

impl Formatter for Json {
    fn header(&mut self, _out: &mut Vec<u8>) -> io::Result<()> {
        Ok(())
    }

    fn event(&mut self, out: &mut Vec<u8>, ev: &Event) -> io::Result<()> {
        write!(
            out,
            "{{\"ts_ns\":{},\"side\":\"{}\",\"old\":\"{}\",\"new\":\"{}\",\"family\":{},\"saddr\":\"{}\",\"sport\":{},\"daddr\":\"{}\",\"dport\":{},\"pid\":",
            ev.ts_ns,
            ev.side,
            ev.old_label(),
            ev.new,
            ev.family(),
            ev.saddr,
            ev.sport,
            ev.daddr,
            ev.dport
        )?;
        match ev.pid {
            Some(pid) => write!(out, "{pid}")?,
            None => out.write_all(b"null")?,
        }
        out.write_all(b",\"comm\":")?;
        match &ev.comm {
            Some(comm) => string(out, comm.as_str())?,
            None => out.write_all(b"null")?,
        }
        write!(
            out,
            ",\"skaddr\":\"{:#x}\",\"netns\":{},\"prev_state_ms\":",
            ev.skaddr, ev.netns
        )?;
        match ev.prev_state_ns {
            Some(ns) => write!(out, "{}", NanosAsMs(ns))?,
            None => out.write_all(b"null")?,
        }
        write!(out, ",\"inferred\":{}", ev.inferred)?;
        if ev.is_raw_tw() {
            write!(out, ",\"source\":\"{}\"", ev.source.as_str())?;
        }
        out.write_all(b"}\n")
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
