//! Reading a trace: the original tool's `ts:<ns>:<side>:<OLD>:<NEW>` lines
//! and `tcpstate -o json` lines, told apart line by line.
//!
//! Deciding per line rather than per file means a log that mixes both (or
//! carries libbpf chatter, shell prompts, `Ctrl-C` echoes) still draws: a
//! line is an event candidate only if it starts like one (`ts:` or `{`);
//! everything else is skipped silently. A candidate that fails to parse is a
//! warning naming its line, because it is most likely a truncated or edited
//! event the user wants to know about.
//!
//! A JSON line can also be a connection record (`--connections -o json`:
//! it has `end` and `states`, and no `old` or `new`). Records are not drawn;
//! they label the lanes of their connections (see [`Trace::ends`]).
//!
//! A JSON event's `container_id` (with `container_runtime`) names its
//! socket's container; traces from before containers have no such key and
//! read as before.

use std::borrow::Cow;
use std::net::IpAddr;

use anyhow::{bail, Result};
use serde_json::{Map, Value};

use super::{ConnEnd, ContainerTag, PlotEvent, Side, Trace, Tuple};
use crate::cgroup::Runtime;
use crate::conn::EndCause;
use crate::state::TcpState;

/// What one line of input turned out to be.
enum Line {
    Event(PlotEvent),
    /// A connection record: its connection id and how it ended.
    Record((u64, ConnEnd)),
    /// Looked like an event but was not one: why.
    Broken(String),
    /// Anything else (banners, log chatter, blank lines).
    Other,
}

/// Parses a whole trace: [`read_trace`] without the connection records.
pub fn parse_trace(input: &[u8], strict: bool) -> Result<(Vec<PlotEvent>, Vec<String>)> {
    read_trace(input, strict).map(|(trace, warnings)| (trace.events, warnings))
}

/// Parses a whole trace.
///
/// Returns the events in input order, the ends of the connection records
/// among them, and one warning per broken line, each starting with
/// `line N:`. With `strict`, the first broken line is an error instead. No
/// events at all is an error too, since there is nothing to draw and the
/// user most likely gave the wrong file (or records without transitions).
///
/// Never panics: invalid UTF-8 is replaced (so such a line cannot parse and
/// becomes a warning if it looked like an event).
pub fn read_trace(input: &[u8], strict: bool) -> Result<(Trace, Vec<String>)> {
    let mut trace = Trace::default();
    let mut warnings = Vec::new();
    for (index, raw) in input.split(|&b| b == b'\n').enumerate() {
        let n = index + 1;
        let text: Cow<str> = String::from_utf8_lossy(raw);
        match classify(text.trim()) {
            Line::Event(ev) => trace.events.push(ev),
            Line::Record((conn_id, end)) => {
                trace.ends.insert(conn_id, end);
            }
            Line::Broken(why) if strict => {
                bail!("line {n}: {why} (fix or delete that line, or drop --strict to skip broken lines)")
            }
            Line::Broken(why) => warnings.push(format!("line {n}: {why}")),
            Line::Other => {}
        }
    }
    if trace.events.is_empty() && !trace.ends.is_empty() {
        let records = trace.ends.len();
        bail!(
            "no TCP state transitions in the input, only {records} connection record{}: trace with -o json \
             (transitions) to draw; --connections records alone have no transitions",
            if records == 1 { "" } else { "s" }
        );
    }
    if trace.events.is_empty() {
        // A final newline ends the last line rather than starting another.
        let lines = input.split(|&b| b == b'\n').count() - usize::from(input.is_empty() || input.ends_with(b"\n"));
        bail!("{}", no_events_message(lines, &warnings));
    }
    Ok((trace, warnings))
}

fn no_events_message(lines: usize, warnings: &[String]) -> String {
    let mut msg = format!(
        "no TCP state transitions in the input ({lines} line{} read): expected lines like \
         `ts:1000123456789:client:CLOSE:SYN_SENT` (tcpstate's default output, on stderr) \
         or JSON lines from `tcpstate -o json`",
        if lines == 1 { "" } else { "s" }
    );
    if let Some(first) = warnings.first() {
        msg.push_str(&format!(
            "; {} line{} looked like events but could not be read, the first at {first}",
            warnings.len(),
            if warnings.len() == 1 { "" } else { "s" }
        ));
    }
    msg
}

fn classify(line: &str) -> Line {
    if let Some(rest) = line.strip_prefix("ts:") {
        return match parse_original(rest) {
            Ok(ev) => Line::Event(ev),
            Err(why) => Line::Broken(why),
        };
    }
    if line.starts_with('{') {
        return parse_json(line);
    }
    Line::Other
}

/// `<ns>:<side>:<OLD>:<NEW>`, what follows `ts:`.
fn parse_original(rest: &str) -> Result<PlotEvent, String> {
    let fields: Vec<&str> = rest.split(':').collect();
    let [ts, side, old, new] = fields[..] else {
        return Err(format!("expected ts:<ns>:<side>:<OLD>:<NEW> (5 fields), found {} fields", fields.len() + 1));
    };
    Ok(PlotEvent {
        ts_ns: ts.parse().map_err(|_| format!("timestamp '{}' is not a whole number of nanoseconds", clip(ts)))?,
        side: side_from(side)?,
        old: state_from(old)?,
        new: state_from(new)?,
        conn: None,
        socket: None,
        inferred: false,
        container: None,
    })
}

/// A `{` line: an event object, a broken one, or some other JSON object.
fn parse_json(line: &str) -> Line {
    let obj: Map<String, Value> = match serde_json::from_str(line) {
        Ok(obj) => obj,
        Err(e) => return Line::Broken(format!("not a complete JSON object ({e})")),
    };
    let record =
        ["end", "states"].iter().all(|k| obj.contains_key(*k)) && !["old", "new"].iter().any(|k| obj.contains_key(*k));
    if record {
        return json_record(&obj).map_or_else(Line::Broken, Line::Record);
    }
    // A JSON object with none of our keys is someone else's log line.
    if !["ts_ns", "side", "old", "new"].iter().any(|k| obj.contains_key(*k)) {
        return Line::Other;
    }
    // A raw probe event (`--raw`: `probe`, or `source` before schema 2) is
    // what a kernel probe saw, not a transition: the picture has no lane for it.
    if ["probe", "source"].iter().any(|k| present(&obj, k).is_some()) {
        return Line::Other;
    }
    match json_event(&obj) {
        Ok(ev) => Line::Event(ev),
        Err(why) => Line::Broken(why),
    }
}

fn json_event(obj: &Map<String, Value>) -> Result<PlotEvent, String> {
    let ts_ns = match present(obj, "ts_ns") {
        None => return Err("JSON event has no \"ts_ns\"".into()),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("\"ts_ns\" is {}, not a whole number of nanoseconds", clip(&v.to_string())))?,
    };
    Ok(PlotEvent {
        ts_ns,
        side: side_from(required_str(obj, "side")?)?,
        old: state_from(required_str(obj, "old")?)?,
        new: state_from(required_str(obj, "new")?)?,
        conn: json_conn(obj)?,
        socket: socket(obj)?,
        inferred: match present(obj, "inferred") {
            None => false,
            Some(v) => v.as_bool().ok_or("\"inferred\" is not true or false")?,
        },
        container: json_container(obj)?,
    })
}

/// A connection record's id, end cause and payload bytes (`bytes_sent`,
/// `bytes_received`; null when the record has no counters).
fn json_record(obj: &Map<String, Value>) -> Result<(u64, ConnEnd), String> {
    let conn_id = whole(obj, "conn_id")?.filter(|&id| id != 0).ok_or("connection record has no \"conn_id\"")?;
    let name = required_str(obj, "end")?;
    let end = EndCause::from_name(name).ok_or_else(|| {
        format!("end '{}' is not an end cause (expected a name like time_wait_expired or reset_received)", clip(name))
    })?;
    let bytes = match (whole(obj, "bytes_sent")?, whole(obj, "bytes_received")?) {
        (Some(sent), Some(received)) => Some((sent, received)),
        _ => None,
    };
    Ok((conn_id, ConnEnd { end, bytes }))
}

/// The 4-tuple when all four keys are there; `None` when any is missing or
/// null (older traces, other producers). A value of the wrong kind is an error
/// because it means the line is not what it claims to be.
fn json_conn(obj: &Map<String, Value>) -> Result<Option<Tuple>, String> {
    let keys = ["saddr", "sport", "daddr", "dport"];
    if keys.iter().any(|k| present(obj, k).is_none()) {
        return Ok(None);
    }
    Ok(Some(Tuple {
        saddr: addr(obj, "saddr")?,
        sport: port(obj, "sport")?,
        daddr: addr(obj, "daddr")?,
        dport: port(obj, "dport")?,
    }))
}

/// The socket's container: `container_id`, with the runtime when
/// `container_runtime` names one this build knows (a newer tcpstate's
/// runtime is drawn without its name); `None` when the id is missing, null
/// or empty.
fn json_container(obj: &Map<String, Value>) -> Result<Option<ContainerTag>, String> {
    let Some(id) = optional_str(obj, "container_id")? else {
        return Ok(None);
    };
    let runtime = optional_str(obj, "container_runtime")?.and_then(Runtime::from_name);
    Ok(ContainerTag::new(id, runtime))
}

/// Which socket's life an event belongs to: its connection id where the
/// trace has them, else the socket's kernel address.
fn socket(obj: &Map<String, Value>) -> Result<Option<u64>, String> {
    match whole(obj, "conn_id")? {
        Some(id) => Ok(Some(id).filter(|&id| id != 0)),
        None => skaddr(obj),
    }
}

/// The whole number under `key`; `None` when missing or null.
fn whole(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    present(obj, key)
        .map(|v| v.as_u64().ok_or_else(|| format!("\"{key}\" {} is not a whole number", clip(&v.to_string()))))
        .transpose()
}

/// The socket's kernel address: `"0xffff…"` as tcpstate writes it (or a
/// plain number); `None` when missing, null or 0.
fn skaddr(obj: &Map<String, Value>) -> Result<Option<u64>, String> {
    let Some(v) = present(obj, "skaddr") else {
        return Ok(None);
    };
    let parsed = match v {
        Value::String(s) => {
            let s = s.trim();
            match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => s.parse().ok(),
            }
        }
        v => v.as_u64(),
    };
    // 0 is no socket: something that did not know the address.
    parsed.map(|a| Some(a).filter(|&a| a != 0)).ok_or_else(|| {
        format!("\"skaddr\" {} is not a socket address like \"0xffff888012345678\"", clip(&v.to_string()))
    })
}

/// The value of `key` unless it is missing or null.
fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn required_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    optional_str(obj, key)?.ok_or_else(|| format!("JSON event has no \"{key}\""))
}

/// The string under `key`; `None` when missing or null.
fn optional_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    present(obj, key).map(|v| v.as_str().ok_or_else(|| format!("\"{key}\" is not a string"))).transpose()
}

fn addr(obj: &Map<String, Value>, key: &str) -> Result<IpAddr, String> {
    let text = required_str(obj, key)?;
    text.parse().map_err(|_| format!("\"{key}\" '{}' is not an IPv4 or IPv6 address", clip(text)))
}

fn port(obj: &Map<String, Value>, key: &str) -> Result<u16, String> {
    present(obj, key)
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| format!("\"{key}\" is not a port number (0 to 65535)"))
}

fn side_from(name: &str) -> Result<Side, String> {
    Side::from_name(name).ok_or_else(|| format!("side '{}' is neither 'server' nor 'client'", clip(name)))
}

fn state_from(name: &str) -> Result<TcpState, String> {
    TcpState::from_name(name).ok_or_else(|| {
        format!(
            "'{}' is not a TCP state (expected a kernel name without TCP_, like ESTABLISHED, or UNKNOWN(<n>))",
            clip(name)
        )
    })
}

/// Quotes at most 40 characters of user input, so one garbage line cannot
/// flood the terminal.
fn clip(s: &str) -> Cow<'_, str> {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        None => Cow::Borrowed(s),
        Some((cut, _)) => Cow::Owned(format!("{}…", &s[..cut])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_lines_parse_and_other_text_is_skipped() {
        let input = b"Tracing... Ctrl-C to end\nts:5:server:LISTEN:SYN_RECV\r\n\n  ts:9:client:CLOSE:UNKNOWN(42)\n";
        let (events, warnings) = parse_trace(input, true).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].ts_ns, 5);
        assert_eq!(events[0].side, Side::Server);
        assert_eq!(events[0].new, TcpState::SYN_RECV);
        assert_eq!(events[1].new, TcpState(42));
        assert!(events.iter().all(|e| e.conn.is_none() && !e.inferred));
    }

    #[test]
    fn json_lines_parse_with_missing_and_null_optional_keys() {
        let input = br#"{"ts_ns":7,"side":"client","old":"CLOSE","new":"SYN_SENT","saddr":"::1","sport":40000,"daddr":"::1","dport":80,"pid":null,"extra":[1]}
{"ts_ns":8,"side":"server","old":"LISTEN","new":"SYN_RECV","saddr":null,"inferred":true}
{"level":"info","msg":"unrelated"}"#;
        let (events, warnings) = parse_trace(input, true).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(events.len(), 2);
        let conn = events[0].conn.unwrap();
        assert_eq!((conn.sport, conn.dport), (40000, 80));
        assert_eq!(events[1].conn, None);
        assert!(events[1].inferred);
        assert_eq!((events[0].socket, events[1].socket), (None, None));
    }

    #[test]
    fn raw_probe_events_are_not_transitions() {
        let input =
            br#"{"schema_version":2,"ts_ns":7,"side":"client","old":"TIME_WAIT","new":"TIME_WAIT","probe":"tw_arm"}
{"ts_ns":8,"side":"client","old":"tw_arm","new":"TIME_WAIT","source":"tw_arm"}
{"schema_version":2,"ts_ns":9,"side":"client","old":"TIME_WAIT","new":"CLOSE","probe":null}"#;
        let (events, warnings) = parse_trace(input, true).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(events.iter().map(|e| (e.ts_ns, e.new)).collect::<Vec<_>>(), [(9, TcpState::CLOSE)]);
    }

    #[test]
    fn skaddr_is_read_as_tcpstate_writes_it() {
        let input = br#"{"ts_ns":1,"side":"client","old":"CLOSE","new":"SYN_SENT","skaddr":"0xffff8881e44f40c0"}
{"ts_ns":2,"side":"client","old":"CLOSE","new":"SYN_SENT","skaddr":12345}
{"ts_ns":3,"side":"client","old":"CLOSE","new":"SYN_SENT","skaddr":null}
{"ts_ns":3,"side":"client","old":"CLOSE","new":"SYN_SENT","skaddr":"0x0"}
{"ts_ns":4,"side":"client","old":"CLOSE","new":"SYN_SENT","skaddr":"0xnothex"}"#;
        let (events, warnings) = parse_trace(input, false).unwrap();
        let addrs: Vec<Option<u64>> = events.iter().map(|e| e.socket).collect();
        assert_eq!(addrs, [Some(0xffff_8881_e44f_40c0), Some(12345), None, None]);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("line 5:") && warnings[0].contains("skaddr"), "{warnings:?}");
    }

    #[test]
    fn the_connection_id_names_the_socket_where_the_trace_has_one() {
        let input =
            br#"{"ts_ns":1,"side":"client","old":"CLOSE","new":"SYN_SENT","skaddr":"0xffff8881e44f40c0","conn_id":4242}
{"ts_ns":2,"side":"client","old":"TIME_WAIT","new":"CLOSE","skaddr":"0xffff888100000000","conn_id":4242}
{"ts_ns":3,"side":"client","old":"CLOSE","new":"SYN_SENT","conn_id":"x"}"#;
        let (events, warnings) = parse_trace(input, false).unwrap();
        assert_eq!(events.iter().map(|e| e.socket).collect::<Vec<_>>(), [Some(4242), Some(4242)]);
        assert!(warnings.len() == 1 && warnings[0].contains("conn_id"), "{warnings:?}");
    }

    #[test]
    fn the_container_comes_from_container_id_and_its_runtime() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let input = format!(
            r#"{{"ts_ns":1,"side":"client","old":"CLOSE","new":"SYN_SENT","container_id":"{id}","container_runtime":"docker"}}
{{"ts_ns":2,"side":"client","old":"CLOSE","new":"SYN_SENT","container_id":"web","container_runtime":"rkt"}}
{{"ts_ns":3,"side":"client","old":"CLOSE","new":"SYN_SENT","container_id":null,"container_runtime":null}}
{{"ts_ns":4,"side":"client","old":"CLOSE","new":"SYN_SENT"}}
{{"ts_ns":5,"side":"client","old":"CLOSE","new":"SYN_SENT","container_id":""}}
{{"ts_ns":6,"side":"client","old":"CLOSE","new":"SYN_SENT","container_id":42}}"#
        );
        let (events, warnings) = parse_trace(input.as_bytes(), false).unwrap();
        let containers: Vec<Option<ContainerTag>> = events.iter().map(|e| e.container).collect();
        assert_eq!(
            containers,
            [ContainerTag::new(id, Some(Runtime::Docker)), ContainerTag::new("web", None), None, None, None]
        );
        assert!(warnings.len() == 1 && warnings[0].starts_with("line 6:"), "{warnings:?}");
        assert!(warnings[0].contains("container_id"), "{warnings:?}");
    }

    /// `tcpstate --connections -o json`'s line for a client that closed first.
    const RECORD: &str = r#"{"conn_id":77,"side":"client","side_by":"origin","start_ns":1000000123,"end_ns":61002624813,"start_unix_ns":1700000001000000123,"end_unix_ns":1700000061002624813,"duration_ns":60002624690,"family":4,"saddr":"127.0.0.1","sport":51234,"daddr":"127.0.0.2","dport":80,"netns":4026531840,"pid":4242,"comm":"curl","states":[{"state":"SYN_SENT","ns":51234,"inferred":false},{"state":"TIME_WAIT","ns":60000123456,"inferred":false}],"time_wait_ns":60000123456,"bytes_sent":77,"bytes_acked":77,"bytes_received":10240,"bytes_retrans":0,"segs_in":6,"segs_out":5,"retransmits":0,"srtt_us":53,"min_rtt_us":21,"error":null,"end":"time_wait_expired","open":false}"#;

    #[test]
    fn connection_records_among_transitions_give_their_connections_ends() {
        let input = [
            r#"{"ts_ns":1,"side":"client","old":"CLOSE","new":"SYN_SENT","conn_id":77}"#,
            RECORD,
            r#"{"conn_id":78,"side":"server","states":[],"bytes_sent":null,"bytes_received":null,"end":"open"}"#,
            r#"{"conn_id":79,"side":"server","states":[],"end":"gone"}"#,
            r#"{"side":"server","states":[],"end":"open"}"#,
        ]
        .join("\n");
        let (trace, warnings) = read_trace(input.as_bytes(), false).unwrap();
        assert_eq!(trace.events.len(), 1);
        assert_eq!(trace.events[0].socket, Some(77));
        assert_eq!(trace.ends.len(), 2, "{:?}", trace.ends);
        assert_eq!(trace.ends[&77], ConnEnd { end: EndCause::TimeWaitExpired, bytes: Some((77, 10_240)) });
        assert_eq!(trace.ends[&78], ConnEnd { end: EndCause::Open, bytes: None });
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("line 4:") && warnings[0].contains("'gone'"), "{warnings:?}");
        assert!(warnings[1].starts_with("line 5:") && warnings[1].contains("conn_id"), "{warnings:?}");
        // parse_trace reads the same lines, without the records.
        assert_eq!(parse_trace(input.as_bytes(), false).unwrap().0, trace.events);
    }

    #[test]
    fn records_without_transitions_are_one_error_naming_the_fix() {
        let err = read_trace(format!("{RECORD}\n").as_bytes(), false).unwrap_err().to_string();
        assert!(err.starts_with("no TCP state transitions in the input, only 1 connection record:"), "{err}");
        assert!(err.contains("trace with -o json (transitions) to draw"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn broken_lines_name_their_line_and_reason() {
        let input = "ts:1:server:LISTEN:SYN_RECV\n\
                     ts:abc:server:LISTEN:SYN_RECV\n\
                     ts:1:sideways:A:B\n\
                     {\"side\":\"client\",\"old\":\"CLOSE\",\"new\":\"SYN_SENT\"}\n\
                     ts:2:client:CLOSE:SYN_SNET\n\
                     {\"ts_ns\":3,\"side\":\"client\",\"old\":\"CLOSE\",\"new\":\"SYN_SENT\",\"saddr\":\"x\",\"sport\":1,\"daddr\":\"::1\",\"dport\":2}\n\
                     {\"ts_ns\":-4,\n\
                     ts:1:server:LISTEN\n";
        let (events, warnings) = parse_trace(input.as_bytes(), false).unwrap();
        assert_eq!(events.len(), 1);
        let expect = [
            ("line 2:", "'abc'"),
            ("line 3:", "sideways"),
            ("line 4:", "ts_ns"),
            ("line 5:", "SYN_SNET"),
            ("line 6:", "saddr"),
            ("line 7:", "JSON"),
            ("line 8:", "5 fields"),
        ];
        assert_eq!(warnings.len(), expect.len(), "{warnings:#?}");
        for (w, (line, needle)) in warnings.iter().zip(expect) {
            assert!(w.starts_with(line) && w.contains(needle), "{w}");
        }
        let err = parse_trace(input.as_bytes(), true).unwrap_err().to_string();
        assert!(err.starts_with("line 2:") && err.contains("--strict"), "{err}");
    }

    #[test]
    fn no_events_is_one_error_that_says_what_was_expected() {
        let err = parse_trace(b"hello\nworld\n", false).unwrap_err().to_string();
        assert!(err.contains("no TCP state transitions") && err.contains("ts:"), "{err}");
        assert!(err.contains("(2 lines read)"), "{err}");
        let err = parse_trace(b"", false).unwrap_err().to_string();
        assert!(err.contains("(0 lines read)"), "{err}");
        let err = parse_trace(b"ts:x:server:A:B\n", false).unwrap_err().to_string();
        assert!(err.contains("(1 line read)") && err.contains("first at line 1:"), "{err}");
    }

    #[test]
    fn invalid_utf8_is_a_warning_not_a_panic() {
        let input = b"ts:1:server:LISTEN:SYN_RECV\nts:2:client:CLOSE:\xff\xfe\n\xc3\x28 junk\n";
        let (events, warnings) = parse_trace(input, false).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("line 2:"));
    }

    #[test]
    fn long_garbage_is_clipped_in_messages() {
        let line = format!("ts:{}:server:A:B", "9".repeat(500));
        let err = parse_trace(line.as_bytes(), true).unwrap_err().to_string();
        assert!(err.len() < 300, "{err}");
    }
}
