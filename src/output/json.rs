//! One JSON object per line, for jq and log pipelines.

use std::io::{self, Write};

use serde::Serialize;

use super::Formatter;
use crate::event::Event;

pub struct Json;

/// The JSON object's keys, in the order they are written.
#[derive(Serialize)]
struct Record<'a> {
    ts_ns: u64,
    side: &'static str,
    old: String,
    new: String,
    family: u8,
    saddr: String,
    sport: u16,
    daddr: String,
    dport: u16,
    pid: Option<u32>,
    comm: Option<&'a str>,
    skaddr: String,
    netns: u32,
    prev_state_ms: Option<f64>,
    inferred: bool,
    /// Only on raw timewait probe events (--raw).
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'static str>,
}

impl<'a> From<&'a Event> for Record<'a> {
    fn from(ev: &'a Event) -> Record<'a> {
        Record {
            ts_ns: ev.ts_ns,
            side: ev.side.as_str(),
            old: ev.old_label().into_owned(),
            new: ev.new.to_string(),
            family: ev.family(),
            saddr: ev.saddr.to_string(),
            sport: ev.sport,
            daddr: ev.daddr.to_string(),
            dport: ev.dport,
            pid: ev.pid,
            comm: ev.comm.as_deref(),
            skaddr: format!("{:#x}", ev.skaddr),
            netns: ev.netns,
            prev_state_ms: ev.prev_state_ms(),
            inferred: ev.inferred,
            source: ev.is_raw_tw().then(|| ev.source.as_str()),
        }
    }
}

impl Formatter for Json {
    fn header(&mut self, _out: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }

    fn event(&mut self, out: &mut dyn Write, ev: &Event) -> io::Result<()> {
        serde_json::to_writer(&mut *out, &Record::from(ev))?;
        out.write_all(b"\n")
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
            r#"{"ts_ns":1000000123,"side":"client","old":"SYN_SENT","new":"ESTABLISHED","family":4,"saddr":"127.0.0.1","sport":51234,"daddr":"127.0.0.2","dport":80,"pid":4242,"comm":"curl","skaddr":"0xffff888012345678","netns":4026531840,"prev_state_ms":2.5,"inferred":false}"#
        );
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert!(v["pid"].is_null() && v["comm"].is_null() && v["prev_state_ms"].is_null());
        assert_eq!(v["new"], "CLOSE_WAIT");
    }
}
