//! Aligned columns for people watching a terminal.

use std::io::{self, Write};

use super::{Clock, Formatter};
use crate::event::Event;

pub struct Table {
    clock: Clock,
    /// Address column width: 39 fits any IPv6 address, 15 any IPv4 one.
    addr_width: usize,
}

impl Table {
    /// `wide` when IPv6 addresses may appear.
    pub fn new(clock: Clock, wide: bool) -> Table {
        Table { clock, addr_width: if wide { 39 } else { 15 } }
    }
}

impl Formatter for Table {
    fn header(&mut self, out: &mut dyn Write) -> io::Result<()> {
        let w = self.addr_width;
        writeln!(
            out,
            "{:<15} {:<6} {:>7} {:<16} {:<w$} {:>5} {:<w$} {:>5} {:<12}    {:<12} {:>10}",
            "TIME", "SIDE", "PID", "COMM", "LADDR", "LPORT", "RADDR", "RPORT", "OLD", "NEW", "MS"
        )
    }

    fn event(&mut self, out: &mut dyn Write, ev: &Event) -> io::Result<()> {
        let w = self.addr_width;
        let pid = ev.pid.map_or_else(|| "-".to_string(), |p| p.to_string());
        let ms = ev.prev_state_ms().map_or_else(|| "-".to_string(), |ms| format!("{ms:.3}"));
        writeln!(
            out,
            "{:<15} {:<6} {:>7} {:<16} {:<w$} {:>5} {:<w$} {:>5} {:<12} -> {:<12} {:>10}",
            self.clock.format(ev.ts_ns),
            ev.side,
            pid,
            ev.comm.as_deref().unwrap_or("-"),
            ev.saddr.to_string(),
            ev.sport,
            ev.daddr.to_string(),
            ev.dport,
            ev.old_label(),
            ev.new,
            ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::{render, sample};

    #[test]
    fn columns_line_up_under_the_header() {
        let mut unknown = sample(1, 8);
        unknown.pid = None;
        unknown.comm = None;
        unknown.prev_state_ns = None;
        let out = render(Box::new(Table::new(Clock::relative(), false)), &[sample(2, 1), unknown]);
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
    fn wide_table_fits_ipv6() {
        let mut ev = sample(2, 1);
        ev.saddr = "fd00:1234:5678:9abc:def0:1234:5678:9abc".parse().unwrap();
        let out = render(Box::new(Table::new(Clock::relative(), true)), &[ev]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0].find("LPORT"), lines[1].find("51234"));
    }
}
