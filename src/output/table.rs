//! Aligned columns for people watching a terminal.

use std::io::Write;
use std::net::IpAddr;

use super::line::Line;
use super::put::{put, put_joined, Human, Millis, Or, Put};
use super::{Clock, Formatter};
use crate::cgroup::{short_id, Cgroup, SHORT_ID};
use crate::conn::{ConnRecord, Span};

pub struct Table {
    clock: Clock,
    /// Address column width: 39 fits any IPv6 address, 15 any IPv4 one.
    addr_width: usize,
    /// The same for `addr:port` (`[addr]:port` for IPv6).
    endpoint_width: usize,
    /// Show the CONTAINER column.
    containers: bool,
}

impl Table {
    /// `wide` when IPv6 addresses may appear; `containers` when the host
    /// runs containers (a CONTAINER column after COMM).
    pub fn new(clock: Clock, wide: bool, containers: bool) -> Table {
        Table { clock, addr_width: if wide { 39 } else { 15 }, endpoint_width: if wide { 47 } else { 21 }, containers }
    }

    /// One row of `--connections`, header or record.
    fn connection_row(&self, out: &mut Vec<u8>, values: [&dyn Put; 15]) {
        for (&(title, width, align), value) in CONNECTION_COLUMNS.iter().zip(values) {
            if title == CONTAINER.0 && !self.containers {
                continue;
            }
            cell(out, if width == ENDPOINT { self.endpoint_width } else { width }, align, &value);
        }
        out.pop();
        out.push(b'\n');
    }
}

/// The CONTAINER column: title and width, a short id and a space.
const CONTAINER: (&str, usize) = ("CONTAINER", SHORT_ID + 1);

/// A container's short id; `-` when the socket's cgroup is no container's
/// (or not known).
struct ShortContainer<'a>(Option<&'a Cgroup>);

impl Put for ShortContainer<'_> {
    fn put(&self, out: &mut Vec<u8>) {
        match self.0.and_then(|c| c.container.as_ref()) {
            Some(c) => short_id(&c.id).put(out),
            None => out.push(b'-'),
        }
    }
}

/// The width of the LOCAL and REMOTE columns, whatever the address width.
const ENDPOINT: usize = usize::MAX;

/// The columns of `--connections`: title, width, alignment. STATES, last,
/// takes what it needs.
const CONNECTION_COLUMNS: [(&str, usize, Align); 15] = [
    ("END TIME", 15, Left),
    ("CONN", 10, Right),
    ("SIDE", 6, Left),
    ("LOCAL", ENDPOINT, Left),
    ("REMOTE", ENDPOINT, Left),
    ("PID", 7, Right),
    ("COMM", 16, Left),
    (CONTAINER.0, CONTAINER.1, Left),
    ("DURATION", 9, Right),
    ("TX", 10, Right),
    ("RX", 10, Right),
    ("RETR", 4, Right),
    ("RTT", 9, Right),
    ("END", 20, Left),
    ("STATES", 0, Left),
];

/// `addr:port`, `[addr]:port` for IPv6.
struct Endpoint(IpAddr, u16);

impl Put for Endpoint {
    fn put(&self, out: &mut Vec<u8>) {
        match self.0 {
            IpAddr::V4(_) => put!(out, self.0, ':', self.1),
            IpAddr::V6(_) => put!(out, '[', self.0, "]:", self.1),
        }
    }
}

/// `SYN_SENT 51us > ESTABLISHED 2.000ms > FIN_WAIT2~ ? > …`: `~` marks a
/// state no probe saw entered, `?` a time whose start was not seen.
struct CompactStates<'a>(&'a [Span]);

impl Put for CompactStates<'_> {
    fn put(&self, out: &mut Vec<u8>) {
        if self.0.is_empty() {
            return out.push(b'-');
        }
        put_joined(out, " > ", self.0, |out, s| {
            put!(out, s.state, if s.inferred { "~ " } else { " " }, Or(s.ns.map(Human), "?"))
        });
    }
}

impl Formatter for Table {
    fn connection_header(&mut self, out: &mut Vec<u8>) {
        let titles = CONNECTION_COLUMNS.map(|(title, ..)| title);
        self.connection_row(out, titles.each_ref().map(|t| t as &dyn Put));
    }

    fn connection(&mut self, out: &mut Vec<u8>, r: &ConnRecord) {
        let c = r.counters.as_ref();
        let t = &r.tuple;
        let end_time = self.clock.format(r.end_ns);
        self.connection_row(
            out,
            [
                &end_time,
                &r.conn_id,
                &r.side,
                &Endpoint(t.saddr, t.sport),
                &Endpoint(t.daddr, t.dport),
                &Or(r.owner.map(|o| o.pid), "-"),
                &Or(r.owner.and_then(|o| o.comm), "-"),
                &ShortContainer(r.cgroup.as_deref()),
                &Human(r.duration_ns()),
                &Or(c.map(|c| c.bytes_sent), "-"),
                &Or(c.map(|c| c.bytes_received), "-"),
                &Or(c.map(|c| c.retransmits), "-"),
                &Or(c.and_then(|c| c.srtt_us).map(|us| Human(u64::from(us) * 1000)), "-"),
                &r.end.as_str(),
                &CompactStates(&r.states),
            ],
        );
    }

    fn header(&mut self, out: &mut Vec<u8>) {
        let w = self.addr_width;
        let _ = write!(out, "{:<15} {:<6} {:>7} {:<16} ", "TIME", "SIDE", "PID", "COMM");
        if self.containers {
            let _ = write!(out, "{:<1$} ", CONTAINER.0, CONTAINER.1);
        }
        let _ = writeln!(
            out,
            "{:<w$} {:>5} {:<w$} {:>5} {:<12}    {:<12} {:>10}",
            "LADDR", "LPORT", "RADDR", "RPORT", "OLD", "NEW", "MS"
        );
    }

    fn line(&mut self, out: &mut Vec<u8>, l: &Line<'_>) {
        let w = self.addr_width;
        let line = out;
        cell(line, 15, Left, &self.clock.format(l.ts_ns));
        cell(line, 6, Left, &l.side);
        cell(line, 7, Right, &Or(l.owner.map(|o| o.pid), "-"));
        cell(line, 16, Left, &Or(l.owner.and_then(|o| o.comm), "-"));
        if self.containers {
            cell(line, CONTAINER.1, Left, &ShortContainer(l.cgroup));
        }
        cell(line, w, Left, &l.tuple.saddr);
        cell(line, 5, Right, &l.tuple.sport);
        cell(line, w, Left, &l.tuple.daddr);
        cell(line, 5, Right, &l.tuple.dport);
        cell(line, 12, Left, &l.old_label());
        line.extend_from_slice(b"-> ");
        cell(line, 12, Left, &l.new);
        cell(line, 10, Right, &Or(l.time_in_old_ns.map(Millis), "-"));
        // Cells end in a separating space; the line ends in a newline.
        line.pop();
        line.push(b'\n');
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
}
use Align::{Left, Right};

/// Appends one cell, padded to `width`, and a separating space. The value
/// is written in place; right alignment then moves it behind the padding
/// byte by byte (right-aligned cells are a few digits: a library rotate
/// cost more than the rest of the cell).
fn cell(line: &mut Vec<u8>, width: usize, align: Align, value: &impl Put) {
    let start = line.len();
    value.put(line);
    let len = line.len() - start;
    let pad = width.saturating_sub(len);
    line.resize(line.len() + pad, b' ');
    if align == Right && pad > 0 {
        for i in (0..len).rev() {
            line[start + pad + i] = line[start + i];
        }
        line[start..start + pad].fill(b' ');
    }
    line.push(b' ');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::{
        inferred_connection, refused_connection, render, render_connections, sample, sample_connection, with,
    };

    #[test]
    fn columns_line_up_under_the_header() {
        let unknown = with(sample(1, 8), |t| {
            t.owner = None;
            t.time_in_old_ns = None;
        });
        let out = render(Box::new(Table::new(Clock::relative(), false, false)), &[sample(2, 1), unknown]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "TIME            SIDE       PID COMM             LADDR           LPORT RADDR           RPORT OLD             NEW                  MS",
                "0.000000        client    4242 curl             127.0.0.1       51234 127.0.0.2          80 SYN_SENT     -> ESTABLISHED       2.500",
                "0.000000        client       - -                127.0.0.1       51234 127.0.0.2          80 ESTABLISHED  -> CLOSE_WAIT            -",
            ]
        );
    }

    #[test]
    fn a_container_column_when_the_host_runs_containers() {
        let host = with(sample(1, 8), |t| t.cgroup = None);
        let out = render(Box::new(Table::new(Clock::relative(), false, true)), &[sample(2, 1), host]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "TIME            SIDE       PID COMM             CONTAINER     LADDR           LPORT RADDR           RPORT OLD             NEW                  MS",
                "0.000000        client    4242 curl             0123456789ab  127.0.0.1       51234 127.0.0.2          80 SYN_SENT     -> ESTABLISHED       2.500",
                "0.000000        client    4242 curl             -             127.0.0.1       51234 127.0.0.2          80 ESTABLISHED  -> CLOSE_WAIT        2.500",
            ]
        );
        let out = render_connections(Box::new(Table::new(Clock::relative(), false, true)), &[sample_connection()]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0].find("CONTAINER"), lines[1].find("0123456789ab"), "{out}");
        assert_eq!(lines[0].find("DURATION").map(|at| at + 8), lines[1].find("60.00s").map(|at| at + 6), "{out}");
    }

    #[test]
    fn wide_table_fits_ipv6() {
        let ev = with(sample(2, 1), |t| t.tuple.saddr = "fd00:1234:5678:9abc:def0:1234:5678:9abc".parse().unwrap());
        let out = render(Box::new(Table::new(Clock::relative(), true, false)), &[ev]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0].find("LPORT"), lines[1].find("51234"));
    }

    #[test]
    fn connections_line_up_under_their_header() {
        let inferred = inferred_connection();
        let out = render_connections(
            Box::new(Table::new(Clock::relative(), false, false)),
            &[sample_connection(), refused_connection(), inferred],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "END TIME              CONN SIDE   LOCAL                 REMOTE                    PID COMM              \
                 DURATION         TX         RX RETR       RTT END                  STATES",
                "0.000000                77 client 127.0.0.1:51234       127.0.0.2:80             4242 curl                \
                 60.00s         77        853    0      53us time_wait_expired    SYN_SENT 51us > ESTABLISHED 2.000ms > \
                 FIN_WAIT1 150us > FIN_WAIT2 300us > TIME_WAIT 60.00s",
                "0.000000                77 client 127.0.0.1:51234       127.0.0.2:80             4242 curl                  \
                 51us          0          0    0         - refused              SYN_SENT 51us",
                "0.000000                77 server 127.0.0.1:51234       127.0.0.2:80                - -                   \
                 60.00s          -          -    -         - open                 ESTABLISHED ? > FIN_WAIT1~ 7ns",
            ]
        );
    }

    #[test]
    fn wide_connection_table_fits_ipv6_endpoints() {
        let mut r = sample_connection();
        r.tuple.saddr = "fd00:1234:5678:9abc:def0:1234:5678:9abc".parse().unwrap();
        let out = render_connections(Box::new(Table::new(Clock::relative(), true, false)), &[r]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].contains(" [fd00:1234:5678:9abc:def0:1234:5678:9abc]:51234 127.0.0.2:80 "), "{}", lines[1]);
        assert_eq!(lines[0].find("REMOTE"), lines[1].find("127.0.0.2:80"));
        assert_eq!(lines[0].find("STATES"), lines[1].find("SYN_SENT"));
    }
}
