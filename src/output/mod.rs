//! Where the records go. Every output — the formats, the exit summary, the
//! metrics endpoint and the picture — is a [`Sink`]: it gets each record in
//! time order, a word after each batch with the table's state and the
//! kernel's counters, and the last word when tracing ends. None of them
//! keeps its own view of the connections; the table (src/conn) is the one.
//!
//! The formats turn a record into bytes ([`Formatter`]); the [`Printer`]
//! owns the buffered writer so that a burst costs one write(2) per drained
//! batch, not one per line.

pub(crate) mod community_id;
mod csv;
mod fields;
mod file;
mod json;
mod line;
#[cfg(feature = "metrics")]
pub mod metrics;
mod original;
mod otel;
pub(crate) mod put;
mod summary;
mod table;

use std::fmt;
use std::io::{self, Write};

use anyhow::{Context, Result};

pub use self::line::{Label, Line};
use self::put::{put, Padded, Put};
use crate::conn::{ConnRecord, ConnTable, Record};
use crate::trace::Lost;

pub use self::csv::Csv;
pub use self::fields::RunFields;
pub use self::file::{OutputFile, Rotation};
pub use self::json::Json;
pub use self::original::Original;
pub use self::summary::Summary;
pub use self::table::Table;

/// Output formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// ts:<ns>:<side>:<OLD>:<NEW> on stderr, the original tool's line
    #[default]
    #[value(alias = "seed")]
    Original,
    /// Aligned columns on stdout
    Table,
    /// One JSON object per line on stdout
    Json,
    /// A header line, then one row per transition on stdout
    Csv,
}

/// Which names JSON's keys follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Schema {
    /// tcpstate's own (schema_version 2)
    #[default]
    Tcpstate,
    /// OpenTelemetry semantic conventions (network.peer.address, process.pid …), with a Community ID
    Otel,
}

/// What the printer prints: a line per transition (raw probe events
/// included), or a record per connection (`--connections`). The connection
/// table may make both kinds of record (the metrics want connection
/// records whatever is printed); each mode prints only its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Transitions,
    Connections,
}

impl Mode {
    pub fn prints(self, record: &Record) -> bool {
        matches!(record, Record::Connection(_)) == (self == Mode::Connections)
    }
}

/// What the sinks may look at besides the records: the connection table and
/// the kernel side's loss counters, as they are now.
pub struct Status<'a> {
    pub table: &'a ConnTable,
    pub lost: &'a Lost,
    /// Lookups of a cgroup id that found no path (src/cgroup).
    pub cgroups_unresolved: u64,
}

/// Somewhere records go.
pub trait Sink {
    /// One record, in time order.
    fn record(&mut self, record: &Record) -> Result<()>;

    /// A batch of records is done: a moment to write out or to update.
    fn batch_done(&mut self, _status: &Status<'_>) -> Result<()> {
        Ok(())
    }

    /// Tracing ended, every record delivered: the last word.
    fn finish(&mut self, status: &Status<'_>) -> Result<()> {
        self.batch_done(status)
    }
}

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
        Clock::with_wall_offset(wall_offset_ns())
    }

    pub fn with_wall_offset(offset_ns: i128) -> Clock {
        Clock { wall_offset_ns: Some(offset_ns), first_ts: None }
    }

    /// The offset this clock prints wall-clock time with, if it does:
    /// other wall-clock fields should use the same one, so that they agree
    /// with the TIME column.
    pub fn wall_offset(&self) -> Option<i128> {
        self.wall_offset_ns
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

/// CLOCK_REALTIME minus CLOCK_MONOTONIC now, in ns: what turns the kernel's
/// timestamps into wall-clock time. Taken once at start, so that a clock
/// step while tracing (NTP) does not reorder what was printed.
pub fn wall_offset_ns() -> i128 {
    let mono = clock_ns(libc::CLOCK_MONOTONIC);
    let real = clock_ns(libc::CLOCK_REALTIME);
    real - mono
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// One output format: how a header and a record look. Formats append to a
/// plain byte buffer: formatting through a `dyn Write` costs a dynamic call
/// per fragment, which showed at a hundred thousand events a second.
pub trait Formatter {
    fn header(&mut self, out: &mut Vec<u8>);
    fn line(&mut self, out: &mut Vec<u8>, line: &Line<'_>);
    /// The header of `--connections`: its records have other columns.
    fn connection_header(&mut self, out: &mut Vec<u8>);
    /// One connection record (`--connections`).
    fn connection(&mut self, out: &mut Vec<u8>, record: &ConnRecord);
}

/// Bytes buffered before they are written out (also written at each flush).
const BUFFER: usize = 64 * 1024;

/// Where a printer writes: a stream, or a file it may hand over (`-w`).
pub enum Destination {
    Stream(Box<dyn Write>),
    File(OutputFile),
}

impl Destination {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Destination::Stream(w) => w.as_mut(),
            Destination::File(f) => f,
        }
    }
}

/// Writes records in one format to one destination, buffered.
pub struct Printer {
    format: Box<dyn Formatter>,
    mode: Mode,
    out: Destination,
    buf: Vec<u8>,
    header_done: bool,
}

impl Printer {
    pub fn new(format: Box<dyn Formatter>, mode: Mode, out: Destination) -> Printer {
        Printer { format, mode, out, buf: Vec::with_capacity(BUFFER + 1024), header_done: false }
    }

    /// The format chosen on the command line, on its usual stream: the
    /// original line on stderr (as the original), the others on stdout.
    /// `run.wall_offset_ns` is replaced by `clock`'s offset when it has one
    /// (-T), so that every wall-clock field agrees with the TIME column.
    /// `file`, when given (`-w`), replaces the stream.
    /// The table is `wide` for IPv6 and has a CONTAINER column with `containers`.
    pub fn for_format(
        (format, schema): (Format, Schema),
        mode: Mode,
        clock: Clock,
        (wide, containers): (bool, bool),
        mut run: RunFields,
        file: Option<OutputFile>,
    ) -> Printer {
        if let Some(offset) = clock.wall_offset() {
            run.wall_offset_ns = offset;
        }
        let (fmt, stream): (Box<dyn Formatter>, Box<dyn Write>) = match format {
            Format::Original => (Box::new(Original), Box::new(io::stderr())),
            Format::Table => (Box::new(Table::new(clock, wide, containers)), Box::new(io::stdout())),
            Format::Json => (Box::new(Json::with_schema(run, schema)), Box::new(io::stdout())),
            Format::Csv => (Box::new(Csv::new(clock, run)), Box::new(io::stdout())),
        };
        let out = match file {
            Some(file) => Destination::File(file),
            None => Destination::Stream(stream),
        };
        Printer::new(fmt, mode, out)
    }

    /// Writes the header (once) even if no record ever comes.
    pub fn start(&mut self) -> io::Result<()> {
        if !self.header_done {
            self.header();
        }
        self.flush()
    }

    fn header(&mut self) {
        self.header_done = true;
        match self.mode {
            Mode::Transitions => self.format.header(&mut self.buf),
            Mode::Connections => self.format.connection_header(&mut self.buf),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.write_out()?;
        self.out.writer().flush()
    }

    fn write_out(&mut self) -> io::Result<()> {
        let result = self.out.writer().write_all(&self.buf);
        self.buf.clear();
        result
    }

    /// Hands the output file over when its rotation is due (or, at the
    /// end, whenever it has something in it); the next file gets its own
    /// header.
    fn rotate(&mut self, at_end: bool) -> Result<()> {
        let Destination::File(file) = &mut self.out else {
            return Ok(());
        };
        if (at_end || file.rotation_due()) && file.rotate().context("rotating the output file")?.is_some() {
            self.header_done = false;
        }
        Ok(())
    }
}

impl Sink for Printer {
    fn record(&mut self, record: &Record) -> Result<()> {
        if !self.mode.prints(record) {
            return Ok(());
        }
        if !self.header_done {
            self.header();
        }
        match Line::of(record) {
            Some(line) => self.format.line(&mut self.buf, &line),
            None => {
                if let Record::Connection(c) = record {
                    self.format.connection(&mut self.buf, c);
                }
            }
        }
        if self.buf.len() >= BUFFER {
            self.write_out().context("writing the output")?;
        }
        Ok(())
    }

    fn batch_done(&mut self, _status: &Status<'_>) -> Result<()> {
        self.flush().context("writing the output")?;
        self.rotate(false)
    }

    fn finish(&mut self, _status: &Status<'_>) -> Result<()> {
        self.flush().context("writing the output")?;
        self.rotate(true)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::conn::{Counters, EndCause, Inferred, RawProbe, SideRule, Span, Transition};
    use crate::model::{Comm, Owner, Side, TcpState, Tuple};
    use crate::trace::TwEvent;

    /// A docker container's cgroup (its id repeats `0123456789abcdef`).
    pub(crate) fn sample_cgroup() -> std::sync::Arc<crate::cgroup::Cgroup> {
        let path = format!("/system.slice/docker-{}.scope", "0123456789abcdef".repeat(4));
        let container = crate::cgroup::container_of(&path);
        std::sync::Arc::new(crate::cgroup::Cgroup { id: 5321, path: path.into(), container })
    }

    /// A client transition as the connection table reports it: 2.5 ms in
    /// the previous state.
    pub(crate) fn sample(old: u8, new: u8) -> Record {
        Record::Transition(Transition {
            ts_ns: 1_000_000_123,
            conn_id: 77,
            side: Side::Client,
            old: TcpState(old),
            new: TcpState(new),
            tuple: Tuple {
                saddr: "127.0.0.1".parse().unwrap(),
                sport: 51234,
                daddr: "127.0.0.2".parse().unwrap(),
                dport: 80,
            },
            netns: 4026531840,
            cgroup_id: std::num::NonZeroU64::new(5321),
            cgroup: Some(sample_cgroup()),
            owner: Some(Owner { pid: 4242, comm: Some(Comm::from("curl")) }),
            skaddr: 0xffff_8880_1234_5678,
            time_in_old_ns: Some(2_500_000),
            inferred: None,
        })
    }

    /// The sample's transition, to change a field.
    pub(crate) fn with(record: Record, change: impl FnOnce(&mut Transition)) -> Record {
        let Record::Transition(mut t) = record else { unreachable!() };
        change(&mut t);
        Record::Transition(t)
    }

    /// An inferred one.
    pub(crate) fn inferred(old: u8, new: u8) -> Record {
        with(sample(old, new), |t| {
            t.inferred = Some(Inferred { earliest_ns: 999_000_000 });
            t.time_in_old_ns = None;
        })
    }

    /// A raw timewait probe event (`--raw`).
    pub(crate) fn raw_probe() -> Record {
        let Record::Transition(t) = sample(6, 6) else { unreachable!() };
        Record::Probe(RawProbe {
            ts_ns: t.ts_ns,
            conn_id: 77,
            side: Side::Client,
            what: TwEvent::Armed,
            substate: TcpState::TIME_WAIT,
            tuple: t.tuple,
            netns: t.netns,
            cgroup_id: t.cgroup_id,
            cgroup: t.cgroup,
            skaddr: 0xffff_8880_9999_0000,
        })
    }

    /// The sample's connection as it ends: a client that closed first,
    /// after its full minute of TIME_WAIT.
    pub(crate) fn sample_connection() -> ConnRecord {
        let Record::Transition(t) = sample(2, 1) else { unreachable!() };
        let span = |state, ns| Span { state, ns: Some(ns), inferred: false };
        let states = vec![
            span(TcpState::SYN_SENT, 51_234),
            span(TcpState::ESTABLISHED, 2_000_000),
            span(TcpState::FIN_WAIT1, 150_000),
            span(TcpState::FIN_WAIT2, 300_000),
            span(TcpState::TIME_WAIT, 60_000_123_456),
        ];
        let start_ns = 1_000_000_123;
        ConnRecord {
            conn_id: t.conn_id,
            start_ns,
            end_ns: start_ns + states.iter().filter_map(|s| s.ns).sum::<u64>(),
            side: t.side,
            side_rule: SideRule::Origin,
            tuple: t.tuple,
            netns: t.netns,
            cgroup_id: t.cgroup_id,
            cgroup: t.cgroup,
            owner: t.owner,
            states,
            counters: Some(Counters {
                bytes_sent: 77,
                bytes_acked: 77,
                bytes_received: 853,
                bytes_retrans: 0,
                segs_in: 6,
                segs_out: 5,
                retransmits: 0,
                srtt_us: Some(53),
                min_rtt_us: Some(21),
                error: 0,
                acked_all: true,
            }),
            end: EndCause::TimeWaitExpired,
        }
    }

    /// A connect() refused: SYN_SENT, then the reset (no RTT sample).
    pub(crate) fn refused_connection() -> ConnRecord {
        let mut r = sample_connection();
        r.states.truncate(1);
        r.end_ns = r.start_ns + 51_234;
        let c = r.counters.as_mut().unwrap();
        *c = Counters { segs_in: 1, segs_out: 1, error: libc::ECONNREFUSED as u32, ..Counters::default() };
        r.end = EndCause::Refused;
        r
    }

    /// A server connection seen mid-life, still established at exit: no
    /// start, no owner, no counters.
    pub(crate) fn open_connection() -> ConnRecord {
        let mut r = sample_connection();
        r.side = Side::Server;
        r.side_rule = SideRule::Ports;
        r.owner = None;
        r.counters = None;
        r.states = vec![Span { state: TcpState::ESTABLISHED, ns: None, inferred: false }];
        r.end = EndCause::Open;
        r
    }

    /// The open one, after a FIN_WAIT1 that no probe saw entered (7 ns).
    pub(crate) fn inferred_connection() -> ConnRecord {
        let mut r = open_connection();
        r.states.push(Span { state: TcpState::FIN_WAIT1, ns: Some(7), inferred: true });
        r
    }

    /// Header and records in the connection format.
    pub(crate) fn render_connections(mut format: Box<dyn Formatter>, records: &[ConnRecord]) -> String {
        let mut buf = Vec::new();
        format.connection_header(&mut buf);
        for r in records {
            format.connection(&mut buf, r);
        }
        String::from_utf8(buf).unwrap()
    }

    pub(crate) fn render(mut format: Box<dyn Formatter>, records: &[Record]) -> String {
        let mut buf = Vec::new();
        format.header(&mut buf);
        for r in records {
            format.line(&mut buf, &Line::of(r).unwrap());
        }
        String::from_utf8(buf).unwrap()
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

    /// A destination the test can read back.
    #[derive(Clone, Default)]
    struct Shared(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().write(buf)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What a CSV printer in `mode` writes for a transition then a connection.
    fn printed(mode: Mode) -> String {
        let out = Shared::default();
        let mut p = Printer::new(
            Box::new(Csv::new(Clock::relative(), RunFields::default())),
            mode,
            Destination::Stream(Box::new(out.clone())),
        );
        p.start().unwrap();
        p.record(&sample(2, 1)).unwrap();
        p.record(&raw_probe()).unwrap();
        p.record(&Record::Connection(Box::new(sample_connection()))).unwrap();
        p.flush().unwrap();
        let text = String::from_utf8(out.0.borrow().clone()).unwrap();
        text
    }

    #[test]
    fn each_mode_prints_its_own_records_under_its_own_header() {
        let transitions = printed(Mode::Transitions);
        let lines: Vec<&str> = transitions.lines().collect();
        assert_eq!(lines.len(), 3, "{transitions}");
        assert!(lines[0].starts_with("time,schema_version,") && lines[1].contains("SYN_SENT,ESTABLISHED"));
        let connections = printed(Mode::Connections);
        let lines: Vec<&str> = connections.lines().collect();
        assert_eq!(lines.len(), 2, "{connections}");
        assert!(
            lines[0].starts_with("schema_version,host,conn_id,side,") && lines[1].ends_with(",time_wait_expired,false")
        );
    }

    #[test]
    fn raw_probe_events_print_their_probe_in_the_old_column() {
        let out = render(Box::new(Original), &[raw_probe()]);
        assert_eq!(out, "ts:1000000123:client:tw_arm:TIME_WAIT\n");
    }
}
