//! The original tool's line: `ts:<ns>:<side>:<OLD>:<NEW>`, byte for byte.

use super::line::Line;
use super::put::put;
use super::Formatter;

pub struct Original;

impl Formatter for Original {
    fn header(&mut self, _out: &mut Vec<u8>) {}

    // The command line refuses --connections with this format: the
    // original line has no room for a record.
    fn connection_header(&mut self, _out: &mut Vec<u8>) {}

    fn connection(&mut self, _out: &mut Vec<u8>, _record: &crate::conn::ConnRecord) {}

    fn line(&mut self, out: &mut Vec<u8>, l: &Line<'_>) {
        put!(out, "ts:", l.ts_ns, ':', l.side, ':', l.old_label(), ':', l.new, '\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::{render, sample};

    #[test]
    fn the_line_is_the_original_tools() {
        let out = render(Box::new(Original), &[sample(2, 1), sample(200, 7)]);
        assert_eq!(out, "ts:1000000123:client:SYN_SENT:ESTABLISHED\nts:1000000123:client:UNKNOWN(200):CLOSE\n");
    }
}
