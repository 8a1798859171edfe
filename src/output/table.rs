//! Aligned columns for people watching a terminal.

use std::io::Write;

use super::line::Line;
use super::put::{Millis, Or, Put};
use super::{Clock, Formatter};

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
    fn connection(&mut self, _out: &mut Vec<u8>, _record: &crate::conn::ConnRecord) {
        // TODO(13): connection records
    }

    fn header(&mut self, out: &mut Vec<u8>) {
        let w = self.addr_width;
        let _ = writeln!(
            out,
            "{:<15} {:<6} {:>7} {:<16} {:<w$} {:>5} {:<w$} {:>5} {:<12}    {:<12} {:>10}",
            "TIME", "SIDE", "PID", "COMM", "LADDR", "LPORT", "RADDR", "RPORT", "OLD", "NEW", "MS"
        );
    }

    fn line(&mut self, out: &mut Vec<u8>, l: &Line<'_>) {
        let w = self.addr_width;
        let line = out;
        cell(line, 15, Left, &self.clock.format(l.ts_ns));
        cell(line, 6, Left, &l.side);
        cell(line, 7, Right, &Or(l.owner.map(|o| o.pid), "-"));
        cell(line, 16, Left, &Or(l.owner.and_then(|o| o.comm), "-"));
        cell(line, w, Left, &l.tuple.saddr);
        cell(line, 5, Right, &l.tuple.sport);
        cell(line, w, Left, &l.tuple.daddr);
        cell(line, 5, Right, &l.tuple.dport);
        cell(line, 12, Left, &l.old);
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
    use crate::output::tests::{render, sample, with};

    #[test]
    fn columns_line_up_under_the_header() {
        let unknown = with(sample(1, 8), |t| {
            t.owner = None;
            t.time_in_old_ns = None;
        });
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
        let ev = with(sample(2, 1), |t| t.tuple.saddr = "fd00:1234:5678:9abc:def0:1234:5678:9abc".parse().unwrap());
        let out = render(Box::new(Table::new(Clock::relative(), true)), &[ev]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0].find("LPORT"), lines[1].find("51234"));
    }
}
