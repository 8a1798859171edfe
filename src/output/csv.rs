//! A header line, then one row per transition: the JSON fields, in order.

use super::line::Line;
use super::put::{put, Hex, NanosAsMs, Or};
use super::{Clock, Formatter};

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

const HEADER: &str = "time,ts_ns,side,old,new,family,saddr,sport,daddr,dport,pid,comm,skaddr,netns,prev_state_ms,\
                      inferred,earliest_ns,conn_id";

/// Quotes a field only when it needs it (RFC 4180).
fn field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

impl Formatter for Csv {
    fn connection(&mut self, _out: &mut Vec<u8>, _record: &crate::conn::ConnRecord) {
        // TODO(13): connection records
    }

    fn header(&mut self, out: &mut Vec<u8>) {
        put!(out, HEADER, '\n');
    }

    fn line(&mut self, out: &mut Vec<u8>, l: &Line<'_>) {
        let t = l.tuple;
        put!(
            out,
            self.clock.format(l.ts_ns),
            ',',
            l.ts_ns,
            ',',
            l.side,
            ',',
            l.old,
            ',',
            l.new,
            ',',
            t.family(),
            ',',
            t.saddr,
            ',',
            t.sport,
            ',',
            t.daddr,
            ',',
            t.dport,
            ',',
            Or(l.owner.map(|o| o.pid), ""),
            ',',
            field(l.owner.and_then(|o| o.comm.as_ref()).map_or("", |c| c.as_str())),
            ',',
            Hex(l.skaddr),
            ',',
            l.netns,
            ',',
            Or(l.time_in_old_ns.map(NanosAsMs), ""),
            ',',
            l.inferred(),
            ',',
            Or(l.earliest_ns, ""),
            ',',
            l.conn_id,
            '\n',
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::{render, sample, with};

    #[test]
    fn header_then_rows() {
        let odd = with(sample(1, 4), |t| {
            t.owner = Some(crate::model::Owner { pid: 9, comm: Some(crate::model::Comm::from("a,\"b\"")) })
        });
        let unowned = with(sample(1, 4), |t| t.owner = None);
        let out = render(Box::new(Csv::new(Clock::relative())), &[sample(2, 1), odd, unowned]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "time,ts_ns,side,old,new,family,saddr,sport,daddr,dport,pid,comm,skaddr,netns,prev_state_ms,inferred,\
             earliest_ns,conn_id"
        );
        assert!(lines.iter().all(|l| l.split(',').count() >= 18), "a value for every column: {out}");
        assert_eq!(
            lines[1],
            "0.000000,1000000123,client,SYN_SENT,ESTABLISHED,4,127.0.0.1,51234,127.0.0.2,80,4242,curl,0xffff888012345678,4026531840,2.500000,false,,77"
        );
        assert_eq!(
            lines[2],
            "0.000000,1000000123,client,ESTABLISHED,FIN_WAIT1,4,127.0.0.1,51234,127.0.0.2,80,9,\"a,\"\"b\"\"\",0xffff888012345678,4026531840,2.500000,false,,77"
        );
        assert_eq!(
            lines[3],
            "0.000000,1000000123,client,ESTABLISHED,FIN_WAIT1,4,127.0.0.1,51234,127.0.0.2,80,,,0xffff888012345678,4026531840,2.500000,false,,77"
        );
    }
}
