//! A header line, then one row per transition: the JSON fields, in order.

use std::io;

use super::put::{put, Hex, NanosAsMs, Or};
use super::{Clock, Formatter};
use crate::event::Event;

pub struct Csv {
    clock: Clock,
}

impl Csv {
    /// A `time` column comes first (wall clock with -T, else seconds since
    /// the first event), then the same fields as the JSON format.
    pub fn new(clock: Clock) -> Csv {
        Csv { clock }
    }
}

const HEADER: &str =
    "time,ts_ns,side,old,new,family,saddr,sport,daddr,dport,pid,comm,skaddr,netns,prev_state_ms,inferred";

/// Quotes a field only when it needs it (RFC 4180).
fn field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

impl Formatter for Csv {
    fn header(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        put!(out, HEADER, '\n');
        Ok(())
    }

    fn event(&mut self, out: &mut Vec<u8>, ev: &Event) -> io::Result<()> {
        put!(
            out,
            self.clock.format(ev.ts_ns),
            ',',
            ev.ts_ns,
            ',',
            ev.side,
            ',',
            ev.old_label(),
            ',',
            ev.new,
            ',',
            ev.family(),
            ',',
            ev.saddr,
            ',',
            ev.sport,
            ',',
            ev.daddr,
            ',',
            ev.dport,
            ',',
            Or(ev.pid, ""),
            ',',
            field(ev.comm.as_ref().map_or("", |c| c.as_str())),
            ',',
            Hex(ev.skaddr),
            ',',
            ev.netns,
            ',',
            Or(ev.prev_state_ns.map(NanosAsMs), ""),
            ',',
            ev.inferred,
            '\n',
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::{render, sample};

    #[test]
    fn header_then_rows() {
        let mut odd = sample(1, 4);
        odd.comm = Some(crate::event::Comm::from("a,\"b\""));
        odd.pid = None;
        let out = render(Box::new(Csv::new(Clock::relative())), &[sample(2, 1), odd]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(
            lines[1],
            "0.000000,1000000123,client,SYN_SENT,ESTABLISHED,4,127.0.0.1,51234,127.0.0.2,80,4242,curl,0xffff888012345678,4026531840,2.500000,false"
        );
        assert_eq!(
            lines[2],
            "0.000000,1000000123,client,ESTABLISHED,FIN_WAIT1,4,127.0.0.1,51234,127.0.0.2,80,,\"a,\"\"b\"\"\",0xffff888012345678,4026531840,2.500000,false"
        );
    }
}
