//! A header line, then one row per transition (or per connection with
//! `--connections`): the JSON fields, in order.

use super::fields::{self, ErrnoName, RunFields, Value};
use super::line::Line;
use super::put::{put, put_joined, Hex, NanosAsMs, Or, Put};
use super::{Clock, Formatter};
use crate::conn::ConnRecord;

pub struct Csv {
    clock: Clock,
    run: RunFields,
}

impl Csv {
    /// For transitions a `time` column comes first (wall clock with -T,
    /// else seconds since the first event), then the same fields as the
    /// JSON format. Connection records have exactly the JSON fields: their
    /// start and end are on the wall clock already.
    pub fn new(clock: Clock, run: RunFields) -> Csv {
        Csv { clock, run }
    }
}

/// Quotes a field only when it needs it (RFC 4180).
fn field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// A connection record's field as a CSV cell: null is an empty cell.
struct CsvValue<'a>(Value<'a>);

impl Put for CsvValue<'_> {
    fn put(&self, out: &mut Vec<u8>) {
        match self.0 {
            Value::Number(n) => put!(out, Or(n, "")),
            Value::Bool(b) => put!(out, b),
            Value::Word(w) => put!(out, w),
            Value::Addr(a) => put!(out, a),
            Value::Error(0) => {}
            Value::Error(e) => put!(out, ErrnoName(e)),
            Value::Text(t) => put!(out, field(t.unwrap_or_default())),
            Value::State(s) => put!(out, s),
            Value::Millis(ns) => put!(out, Or(ns.map(NanosAsMs), "")),
            Value::KernelAddress(a) => put!(out, Or(a.map(Hex), "")),
            // `SYN_SENT=0.051234;FIN_WAIT2~=…` (ms): no quotes needed.
            Value::States(spans) => put_joined(out, ";", spans, |out, s| {
                put!(out, s.state, if s.inferred { "~=" } else { "=" }, Or(s.ns.map(NanosAsMs), "?"))
            }),
        }
    }
}

impl Formatter for Csv {
    fn header(&mut self, out: &mut Vec<u8>) {
        put!(out, "time,");
        put_joined(out, ",", fields::LINE_NAMES, |out, name| name.put(out));
        out.push(b'\n');
    }

    fn connection_header(&mut self, out: &mut Vec<u8>) {
        put_joined(out, ",", fields::NAMES, |out, name| name.put(out));
        out.push(b'\n');
    }

    fn connection(&mut self, out: &mut Vec<u8>, record: &ConnRecord) {
        put_joined(out, ",", fields::values(record, &self.run), |out, value| CsvValue(value).put(out));
        out.push(b'\n');
    }

    fn line(&mut self, out: &mut Vec<u8>, l: &Line<'_>) {
        put!(out, self.clock.format(l.ts_ns), ',');
        put_joined(out, ",", fields::line_values(l, &self.run), |out, value| CsvValue(value).put(out));
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::{
        inferred_connection, raw_probe, refused_connection, render, render_connections, sample, sample_cgroup,
        sample_connection, with,
    };

    /// `out` with the sample container's path, id and runtime cells (as in
    /// `…,5321,/system.slice/docker-<id>.scope,<id>,docker,,4242,…`) as `{CG}`.
    fn short(out: String) -> String {
        let cgroup = sample_cgroup();
        let container = cgroup.container.as_ref().unwrap();
        out.replace(&format!("{},{},{},", cgroup.path, container.id, container.runtime.as_str()), "{CG}")
    }

    #[test]
    fn header_then_rows() {
        let odd = with(sample(1, 4), |t| {
            t.owner = Some(crate::model::Owner { pid: 9, comm: Some(crate::model::Comm::from("a,\"b\"")) })
        });
        let unowned = with(sample(1, 4), |t| (t.owner, t.cgroup_id, t.cgroup) = (None, None, None));
        let run = RunFields { wall_offset_ns: 1_700_000_000_000_000_000, ..RunFields::default() };
        let out = short(render(Box::new(Csv::new(Clock::relative(), run)), &[sample(2, 1), odd, unowned]));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "time,schema_version,host,time_unix_nano,ts_ns,conn_id,side,old,new,probe,family,saddr,sport,daddr,dport,\
             netns,cgroup_id,cgroup,container_id,container_runtime,pod_uid,pid,comm,prev_state_ms,inferred,earliest_ns,skaddr"
        );
        assert!(lines.iter().all(|l| l.split(',').count() >= 23), "a value for every column: {out}");
        assert_eq!(
            lines[1],
            "0.000000,2,,1700000001000000123,1000000123,77,client,SYN_SENT,ESTABLISHED,,4,127.0.0.1,51234,127.0.0.2,80,\
             4026531840,5321,{CG},4242,curl,2.500000,false,,"
        );
        assert_eq!(
            lines[2],
            "0.000000,2,,1700000001000000123,1000000123,77,client,ESTABLISHED,FIN_WAIT1,,4,127.0.0.1,51234,127.0.0.2,80,\
             4026531840,5321,{CG},9,\"a,\"\"b\"\"\",2.500000,false,,"
        );
        assert_eq!(
            lines[3],
            "0.000000,2,,1700000001000000123,1000000123,77,client,ESTABLISHED,FIN_WAIT1,,4,127.0.0.1,51234,127.0.0.2,80,\
             4026531840,,,,,,,,2.500000,false,,"
        );
    }

    #[test]
    fn host_probe_and_kernel_address_when_asked_for() {
        let run = RunFields { wall_offset_ns: 0, host: Some("web-1".into()), skaddr: true };
        let out = short(render(Box::new(Csv::new(Clock::relative(), run)), &[raw_probe()]));
        assert_eq!(
            out.lines().nth(1),
            Some(
                "0.000000,2,web-1,1000000123,1000000123,77,client,TIME_WAIT,TIME_WAIT,tw_arm,4,127.0.0.1,51234,\
                 127.0.0.2,80,4026531840,5321,{CG},,,,false,,0xffff888099990000"
            )
        );
    }

    #[test]
    fn a_connection_is_one_row_of_the_json_fields() {
        let mut inferred = inferred_connection();
        inferred.owner = Some(crate::model::Owner { pid: 9, comm: Some(crate::model::Comm::from("a,b")) });
        (inferred.cgroup_id, inferred.cgroup) = (None, None);
        let out = short(render_connections(
            Box::new(Csv::new(
                Clock::relative(),
                RunFields { wall_offset_ns: 1_700_000_000_000_000_000, host: Some("web-1".into()), skaddr: false },
            )),
            &[sample_connection(), refused_connection(), inferred],
        ));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "schema_version,host,conn_id,side,side_by,start_ns,end_ns,start_unix_ns,end_unix_ns,duration_ns,family,saddr,sport,daddr,dport,\
                 netns,cgroup_id,cgroup,container_id,container_runtime,pod_uid,pid,comm,states,time_wait_ns,bytes_sent,bytes_acked,bytes_received,bytes_retrans,segs_in,segs_out,\
                 retransmits,srtt_us,min_rtt_us,error,end,open",
                "2,web-1,77,client,origin,1000000123,61002624813,1700000001000000123,1700000061002624813,60002624690,4,127.0.0.1,\
                 51234,127.0.0.2,80,4026531840,5321,{CG},4242,curl,SYN_SENT=0.051234;ESTABLISHED=2.000000;FIN_WAIT1=0.150000;\
                 FIN_WAIT2=0.300000;TIME_WAIT=60000.123456,60000123456,77,77,853,0,6,5,0,53,21,,time_wait_expired,false",
                "2,web-1,77,client,origin,1000000123,1000051357,1700000001000000123,1700000001000051357,51234,4,127.0.0.1,51234,\
                 127.0.0.2,80,4026531840,5321,{CG},4242,curl,SYN_SENT=0.051234,,0,0,0,0,1,1,0,,,ECONNREFUSED,refused,false",
                "2,web-1,77,server,ports,1000000123,61002624813,1700000001000000123,1700000061002624813,60002624690,4,127.0.0.1,\
                 51234,127.0.0.2,80,4026531840,,,,,,9,\"a,b\",ESTABLISHED=?;FIN_WAIT1~=0.000007,,,,,,,,,,,,open,true",
            ]
        );
    }
}
