//! Timeline pictures of a trace: `tcpstate plot` and the tracer's `--plot`.
//!
//! The work is a pipeline, one module per step, so that each step can be
//! tested on its own and the tracer can enter it half-way with events it
//! already holds:
//!
//! 1. `parse`: bytes (original `ts:` lines or JSON lines) → [`PlotEvent`]s
//!    and warnings for broken lines.
//! 2. [`model`]: events → a [`Timeline`] of connection groups, each with a
//!    server and a client lane made of state segments and transition marks,
//!    and in a trace with containers, ordered by container.
//!    `select` applies `--port`, `--conn`, `--container` and `--max-conns`
//!    to the groups.
//! 3. `axis`: the shared time axis, with long idle stretches compressed
//!    behind visible breaks so that a 60 s TIME_WAIT does not squash the
//!    one-millisecond handshake into a pixel.
//! 4. `draw`: the SVG document, built with the `svg` crate, with
//!    `lanes` drawing each connection's lanes; `style` holds the colours,
//!    text measures and number formats they share with the axis.
//! 5. `png`: optional rasterising of that SVG with resvg (pure Rust).
//!
//! `command` is the `tcpstate plot` subcommand that strings them together.
//!
//! Connection records (`--connections`, or JSON lines of them in a file)
//! are not drawn themselves: each one only adds how its connection ended
//! and the bytes it moved to the label of that connection's lane, matched
//! by connection id (each side of a connection is its own socket, with its
//! own id and record).
//!
//! Choices a user can see:
//! - Listening sockets get their own one-lane "listener" group (rather than
//!   being dropped): when nginx starts during the trace, that is news.
//! - `-o FILE` is always SVG (`-` for stdout) and `--png FILE` adds a PNG of
//!   the same picture; `-o x.png` is refused with that hint.
//! - `--conn` takes `SADDR:SPORT-DADDR:DPORT` in either order (IPv6 in
//!   brackets), or one `ADDR:PORT` for every connection with that endpoint.
//! - Up to six groups every marker is labelled `time:STATE`; labels of
//!   crowded markers spread apart on stems, and one that would stray too
//!   far is left to its marker's tooltip. More groups get a compact layout
//!   whose markers and bars carry the same text as tooltips.
//! - Idle stretches are cut on the shared axis of all lanes only when the
//!   events would otherwise crowd, and each cut says how long it was: under
//!   the axis (`+221 ms`) and on every bar it crosses (the state's length).
//! - A trace with containers (JSON lines' `container_id`, or the tracer's
//!   own records) draws each container's connections together under a
//!   heading, containers in order of first appearance and sockets in no
//!   container last; a connection goes under its server end's container,
//!   or its client's when the server is in none (see [`model`]).
//!   Without containers the picture is what it was before them.
//! - PNG text needs a system font (Debian: `fonts-dejavu-core`); without one
//!   the PNG is drawn without text and a warning says so.

mod axis;
mod command;
mod container;
mod draw;
mod lanes;
pub mod model;
mod parse;
mod png;
mod select;
mod style;

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::conn::{ConnRecord, EndCause, Record, Transition};
pub use crate::model::{Side, Tuple};
use crate::output::{Sink, Status};
use crate::state::TcpState;

pub use self::command::{run, write_picture, PlotArgs};
pub use self::container::ContainerTag;
pub use self::model::{build_labelled_timeline, build_timeline, Timeline};
pub use self::parse::{parse_trace, read_trace};
pub use self::png::{fonts_available, render_png};

/// One TCP state transition, as much as the picture needs of it.
///
/// Both the trace parser and the tracer (`--plot`) produce these, so the
/// drawing code never sees where an event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlotEvent {
    /// Nanoseconds on any clock; only differences are drawn.
    pub ts_ns: u64,
    pub side: Side,
    pub old: TcpState,
    pub new: TcpState,
    /// The 4-tuple as seen from the event's own socket; `None` when the trace
    /// has no addresses (the original tool's lines).
    pub conn: Option<Tuple>,
    /// Which socket's life the event belongs to: tells sockets with the same
    /// 4-tuple apart and gives connect()'s first event, which has local port
    /// 0, its connection. The connection id (`conn_id` in JSON), the same
    /// from connect() to the end of TIME_WAIT; in traces from before
    /// connection ids, the kernel address of the socket (`skaddr`), which
    /// the timewait socket that takes over a closing connection changes.
    /// `None` when the trace has neither (the original tool's lines).
    pub socket: Option<u64>,
    /// The transition was deduced rather than seen; drawn with a hollow marker.
    pub inferred: bool,
    /// The container of the event's socket; `None` for a socket in no
    /// container, one whose cgroup was not found, and traces without
    /// containers (`container_id` null or missing, the original tool's lines).
    pub container: Option<ContainerTag>,
}

/// How a connection ended, as much as its lane's label tells: what one
/// connection record (`--connections`) adds to the picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnEnd {
    pub end: EndCause,
    /// Payload bytes sent and received; `None` when the record has no
    /// counters (still open, or its full socket's last moment not seen).
    pub bytes: Option<(u64, u64)>,
}

/// Connection ends by connection id (`conn_id`).
pub type Ends = HashMap<u64, ConnEnd>;

impl From<&ConnRecord> for ConnEnd {
    fn from(r: &ConnRecord) -> ConnEnd {
        ConnEnd { end: r.end, bytes: r.counters.map(|c| (c.bytes_sent, c.bytes_received)) }
    }
}

/// A trace as read: the transitions to draw and the ends of connections
/// that have a record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    pub events: Vec<PlotEvent>,
    pub ends: Ends,
}

/// What to draw and how big. `Default` is what `tcpstate plot` uses without
/// options, and what the tracer's `--plot` should pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlotOptions {
    /// Draw at most this many connections (and, separately, this many
    /// listener lanes); the rest are counted in a note under the picture.
    pub max_conns: usize,
    /// Keep only connections with this port at either end.
    pub port: Option<u16>,
    /// Keep only this connection: `SADDR:SPORT-DADDR:DPORT` (either order),
    /// or one `ADDR:PORT` to keep every connection with that endpoint.
    pub conn: Option<String>,
    /// Keep only connections with an end in this container: its id's first
    /// characters (at most 12, as `docker ps` shows it) or the whole id.
    pub container: Option<String>,
    /// Picture width in pixels; the height follows from the lane count.
    pub width: u32,
    /// Title line; `None` for the default.
    pub title: Option<String>,
}

impl Default for PlotOptions {
    fn default() -> PlotOptions {
        PlotOptions { max_conns: 20, port: None, conn: None, container: None, width: 1200, title: None }
    }
}

/// Draws `events` as an SVG document.
///
/// Fails (instead of drawing an empty picture) when there is nothing to
/// draw, when the filters leave nothing, or when `opts.conn` or
/// `opts.container` is malformed;
/// each message says what to change.
pub fn render_svg(events: &[PlotEvent], opts: &PlotOptions) -> Result<String> {
    render_labelled_svg(events, &Ends::new(), opts)
}

/// Draws `events` as [`render_svg`] does, each lane whose connection id has
/// an entry in `ends` labelled with how it ended.
pub fn render_labelled_svg(events: &[PlotEvent], ends: &Ends, opts: &PlotOptions) -> Result<String> {
    let timeline = build_labelled_timeline(events, ends, opts)?;
    Ok(draw::document(&timeline, opts))
}

/// The tracer's transition, for `--plot`: keeps exactly what is drawn.
impl From<&Transition> for PlotEvent {
    fn from(t: &Transition) -> PlotEvent {
        PlotEvent {
            ts_ns: t.ts_ns,
            side: t.side,
            old: t.old,
            new: t.new,
            conn: Some(t.tuple),
            socket: Some(t.conn_id),
            inferred: t.inferred.is_some(),
            container: t.cgroup.as_ref().and_then(|c| c.container.as_ref()).and_then(ContainerTag::of),
        }
    }
}

/// `--plot`: the transitions of a run, and with `--connections` or
/// `--metrics` the ends of its connections, kept to be drawn when tracing
/// ends.
pub struct Recorder {
    trace: Trace,
    /// More transitions came than PLOT_MAX.
    full: bool,
    /// More connection records came than PLOT_MAX.
    ends_full: bool,
    path: PathBuf,
    quiet: bool,
}

/// `--plot` keeps this many transitions at most (about 100 MB), and as many
/// connection ends, so that a long run cannot grow without bound.
const PLOT_MAX: usize = 1_000_000;

impl Recorder {
    pub fn new(path: PathBuf, quiet: bool) -> Recorder {
        Recorder { trace: Trace::default(), full: false, ends_full: false, path, quiet }
    }
}

impl Sink for Recorder {
    fn record(&mut self, record: &Record) -> Result<()> {
        match record {
            Record::Transition(t) if self.trace.events.len() < PLOT_MAX => self.trace.events.push(PlotEvent::from(t)),
            Record::Transition(_) => self.full = true,
            Record::Connection(c) if self.trace.ends.len() < PLOT_MAX || self.trace.ends.contains_key(&c.conn_id) => {
                self.trace.ends.insert(c.conn_id, ConnEnd::from(&**c));
            }
            Record::Connection(_) => self.ends_full = true,
            // Raw probe events (--raw) are not transitions.
            Record::Probe(_) => {}
        }
        Ok(())
    }

    fn finish(&mut self, _status: &Status<'_>) -> Result<()> {
        if !self.quiet {
            if self.full {
                eprintln!("tcpstate: warning: the picture shows the first {PLOT_MAX} transitions only");
            }
            if self.ends_full {
                eprintln!(
                    "tcpstate: warning: the picture labels lanes with the first {PLOT_MAX} connection records only"
                );
            }
        }
        write_picture(&self.trace, &PlotOptions::default(), &self.path, None)
            .with_context(|| format!("drawing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::{sample, with};

    fn transition(record: Record) -> Transition {
        let Record::Transition(t) = record else { unreachable!() };
        t
    }

    #[test]
    fn the_tracer_s_transitions_bring_their_container() {
        let ev = PlotEvent::from(&transition(sample(2, 1)));
        let container = ev.container.unwrap();
        assert_eq!(container.to_string(), "0123456789ab (docker)");
        assert!(container.matches(&"0123456789abcdef".repeat(4)));
        let on_host = transition(with(sample(2, 1), |t| t.cgroup = None));
        assert_eq!(PlotEvent::from(&on_host).container, None);
    }
}
