//! Output formats. Each turns an [`Event`] into bytes; the [`Printer`] owns
//! the buffered writer so that a burst of events costs one write(2) per
//! drained batch, not one per line.

mod csv;
mod json;
pub(crate) mod put;
mod table;

use std::fmt;
use std::io::{self, Write};

use self::put::{put, Padded, Put};
use crate::cli::Format;
use crate::event::Event;

pub use self::csv::Csv;
pub use self::json::Json;
pub use self::table::Table;

/// Turns the kernel's monotonic timestamps into the TIME column.
#[derive(Clone, Debug)]
pub struct Clock {
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, in ns, when wall-clock time is wanted.
    wall_offset_ns: Option<i128>,
    first_ts: Option<u64>,
}

impl Clock {
    /// Time since the first event, in seconds.
    pub fn relative() -> Clock {
        Clock { wall_offset_ns: None, first_ts: None }
    }

    /// Wall-clock time of day, from the current offset between the clocks.
    pub fn wall() -> Clock {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Clock::with_wall_offset(real - mono)
    }

    pub fn with_wall_offset(offset_ns: i128) -> Clock {
        Clock { wall_offset_ns: Some(offset_ns), first_ts: None }
    }

    /// `HH:MM:SS.ffffff` (UTC) or seconds since the first event.
    pub fn format(&mut self, ts_ns: u64) -> Stamp {
        match self.wall_offset_ns {
            Some(offset) => {
                let real = ts_ns as i128 + offset;
                let day_ns = real.rem_euclid(86_400 * 1_000_000_000) as u64;
                Stamp::TimeOfDay { secs: day_ns / 1_000_000_000, micros: day_ns % 1_000_000_000 / 1000 }
            }
            None => {
                let first = *self.first_ts.get_or_insert(ts_ns);
                let delta = ts_ns.saturating_sub(first);
                Stamp::Since { secs: delta / 1_000_000_000, micros: delta % 1_000_000_000 / 1000 }
            }
        }
    }
}

/// A formatted TIME value that honours width and alignment without
/// allocating (it is printed for every event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stamp {
    TimeOfDay { secs: u64, micros: u64 },
    Since { secs: u64, micros: u64 },
}

impl Put for Stamp {
    fn put(&self, out: &mut Vec<u8>) {
        match *self {
            Stamp::TimeOfDay { secs, micros } => put!(
                out,
                Padded(secs / 3600, 2),
                ':',
                Padded(secs / 60 % 60, 2),
                ':',
                Padded(secs % 60, 2),
                '.',
                Padded(micros, 6)
            ),
            Stamp::Since { secs, micros } => put!(out, secs, '.', Padded(micros, 6)),
        }
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&put::to_string(self))
    }
}

/// Now, on the clock of the kernel's bpf_ktime_get_ns().
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// One output format: how a header and an event look. Formats append to a
/// plain byte buffer: formatting through a `dyn Write` costs a dynamic call
/// per fragment, which showed at a hundred thousand events a second.
pub trait Formatter {
    fn header(&mut self, out: &mut Vec<u8>) -> io::Result<()>;
    fn event(&mut self, out: &mut Vec<u8>, ev: &Event) -> io::Result<()>;
}

/// The original tool's line: `ts:<ns>:<side>:<OLD>:<NEW>`.
pub struct Seed;

impl Formatter for Seed {
    fn header(&mut self, _out: &mut Vec<u8>) -> io::Result<()> {
        Ok(())
    }

    fn event(&mut self, out: &mut Vec<u8>, ev: &Event) -> io::Result<()> {
        put!(out, "ts:", ev.ts_ns, ':', ev.side, ':', ev.old_label(), ':', ev.new, '\n');
        Ok(())
    }
}

/// Bytes buffered before they are written out (also written at each flush).
const BUFFER: usize = 64 * 1024;

/// Writes events in one format to one destination, buffered.
pub struct Printer {
    format: Box<dyn Formatter>,
    out: Box<dyn Write>,
    buf: Vec<u8>,
    header_done: bool,
}

impl Printer {
    pub fn new(format: Box<dyn Formatter>, out: Box<dyn Write>) -> Printer {
        Printer { format, out, buf: Vec::with_capacity(BUFFER + 1024), header_done: false }
    }

    /// The format chosen on the command line, on its usual stream: the
    /// original line on stderr (as the original), the others on stdout.
    pub fn for_format(format: Format, clock: Clock, wide: bool) -> Printer {
        let (fmt, out): (Box<dyn Formatter>, Box<dyn Write>) = match format {
            Format::Seed => (Box::new(Seed), Box::new(io::stderr())),
            Format::Table => (Box::new(Table::new(clock, wide)), Box::new(io::stdout())),
            Format::Json => (Box::new(Json), Box::new(io::stdout())),
            Format::Csv => (Box::new(Csv::new(clock)), Box::new(io::stdout())),
        };
        Printer::new(fmt, out)
    }

    /// Writes the header (once) even if no event ever comes.
    pub fn start(&mut self) -> io::Result<()> {
        if !self.header_done {
            self.header_done = true;
            self.format.header(&mut self.buf)?;
        }
        Ok(())
    }

    pub fn event(&mut self, ev: &Event) -> io::Result<()> {
        self.start()?;
        self.format.event(&mut self.buf, ev)?;
        if self.buf.len() >= BUFFER {
            self.write_out()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.write_out()?;
        self.out.flush()
    }

    fn write_out(&mut self) -> io::Result<()> {
        let result = self.out.write_all(&self.buf);
        self.buf.clear();
        result
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::tests::raw_event;

    pub(crate) fn sample(old: u8, new: u8) -> Event {
        // As src/sockets.rs completes it: 2.5 ms in the previous state.
        Event { prev_state_ns: Some(2_500_000), ..Event::from_raw(&raw_event(old, new)).unwrap() }
    }

    pub(crate) fn render(format: Box<dyn Formatter>, events: &[Event]) -> String {
        let mut buf = Vec::new();
        let mut f = format;
        f.header(&mut buf).unwrap();
        for ev in events {
            f.event(&mut buf, ev).unwrap();
        }
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn seed_line_is_the_original() {
        let out = render(Box::new(Seed), &[sample(2, 1), sample(200, 7)]);
        assert_eq!(out, "ts:1000000123:client:SYN_SENT:ESTABLISHED\nts:1000000123:client:UNKNOWN(200):CLOSE\n");
    }

    #[test]
    fn relative_clock_counts_from_the_first_event() {
        let mut c = Clock::relative();
        assert_eq!(c.format(5_000_000_000).to_string(), "0.000000");
        assert_eq!(c.format(6_234_567_890).to_string(), "1.234567");
        assert_eq!(format!("{:<10}|", c.format(5_000_000_000)), "0.000000  |");
    }

    #[test]
    fn wall_clock_prints_time_of_day() {
        // monotonic 1 s + offset of 13:45:10 exactly
        let mut c = Clock::with_wall_offset((13 * 3600 + 45 * 60 + 9) * 1_000_000_000);
        assert_eq!(c.format(1_000_250_000).to_string(), "13:45:10.000250");
    }
}
