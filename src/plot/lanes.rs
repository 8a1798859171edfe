//! Drawing the connection groups: per lane its label, state segments (with
//! tears where they cross an axis break), transition markers and, in the
//! detailed layout, the `time:STATE` label of each marker.
//!
//! A lane's label is its name (`client 127.0.0.1:51234`) and, when a
//! connection record says how the connection ended, a second, smaller line
//! under it (`time_wait_expired · 78 B out, 853 B in`): two short lines
//! keep the gutter narrow where one long line would be cut.
//!
//! In a trace with containers, each container's groups come under a
//! heading band (`container 0123456789ab (docker)`, `no container`), and a
//! lane whose socket is not in its heading's container names its own
//! after its endpoint (`client 172.17.0.3:51234 (container 89abcdef0123)`).

use std::f64::consts::FRAC_1_SQRT_2;
use std::fmt;

use svg::node::element::{Circle, Group as G, Line, Polyline, Rectangle, Text, Title};
use svg::Node;

use super::axis::{Axis, Span};
use super::draw::Metrics;
use super::model::{Group, GroupKind, Lane, Mark, Role, Segment, Timeline};
use super::style::{
    fit_text, format_bytes, format_duration, format_instant, px, state_colour, text_colour_on, text_width,
};
use super::{ConnEnd, ContainerTag};
use crate::state::TcpState;

/// Length of the open-ended segment after a lane's last event.
pub const STUB_PX: f64 = 46.0;
/// A stub is never shorter than this, even right before a break.
const MIN_STUB_PX: f64 = 12.0;
/// How far a marker label may move to clear its neighbours.
const MAX_LABEL_SHIFT: f64 = 36.0;
/// Marker labels start this far above the bar, leaving room for the stems
/// that lead moved labels back to their markers.
pub const LABEL_RISE: f64 = 11.0;
/// Breaks are drawn as two tears this far inside the break's edges.
const TEAR_INSET: f64 = 9.0;
/// A break narrower than this gets one tear in its middle, not two.
const NARROW_BREAK_PX: f64 = 56.0;
/// Marker labels rise at 45°.
const LABEL_ANGLE: f64 = -45.0;

/// The text left of a lane.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LaneLabel {
    /// Its role and, when known, its own endpoint (see [`lane_label`]).
    pub name: String,
    /// How its connection ended (see [`end_label`]), drawn under the name.
    pub end: Option<String>,
}

/// One line: the name, then the end after a `·`.
impl fmt::Display for LaneLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        match &self.end {
            Some(end) => write!(f, " · {end}"),
            None => Ok(()),
        }
    }
}

/// A connection record's word on a lane: its end cause and, when the record
/// has counters, the payload bytes the socket sent and received.
pub fn end_label(end: &ConnEnd) -> String {
    match end.bytes {
        Some((sent, received)) => {
            format!("{} · {} out, {} in", end.end, format_bytes(sent), format_bytes(received))
        }
        None => end.end.to_string(),
    }
}

/// A lane's name: its role and, when known, its own endpoint.
pub fn lane_label(kind: &GroupKind, role: Role, ordinal: Option<usize>) -> String {
    let numbered = |name: &str| match ordinal {
        Some(n) => format!("{name} #{n}"),
        None => name.to_string(),
    };
    match (kind, role) {
        (GroupKind::Connection { server, .. }, Role::Server) => format!("server {server}"),
        (GroupKind::Connection { client, .. }, Role::Client) => format!("client {client}"),
        (GroupKind::Listener(Some(ep)), _) => format!("listener {ep}"),
        (_, Role::Server) => numbered("server"),
        (_, Role::Client) => numbered("client"),
        (_, Role::Listener) => numbered("listener"),
    }
}

/// What a marker says: the original script's `time:STATE`.
pub fn mark_label(mark: &Mark) -> String {
    format!("{}:{}", format_instant(mark.t_ns), mark.new)
}

/// Every lane label of `t`, in drawing order. Groups without addresses are
/// numbered (connections and listeners each from 1) when there are several
/// of their kind, so their lanes can be told apart.
pub fn lane_labels(t: &Timeline) -> Vec<LaneLabel> {
    let count = |kind: GroupKind| t.groups.iter().filter(|g| g.kind == kind).count();
    let mut seen: Vec<(GroupKind, usize, usize)> =
        [GroupKind::Unaddressed, GroupKind::Listener(None)].into_iter().map(|k| (k, count(k), 0)).collect();
    let mut labels = Vec::new();
    for g in &t.groups {
        let ordinal = seen.iter_mut().find(|(k, _, _)| *k == g.kind).and_then(|(_, total, n)| {
            *n += 1;
            (*total > 1).then_some(*n)
        });
        labels.extend(g.lanes.iter().map(|l| {
            let mut name = lane_label(&g.kind, l.role, ordinal);
            if let Some(own) = own_container(t, g, l) {
                name = format!("{name} ({own})");
            }
            LaneLabel { name, end: l.end.as_ref().map(end_label) }
        }));
    }
    labels
}

/// `container 0123456789ab (docker)` (a heading) or without the runtime
/// (a lane's label); `no container` for none.
fn container_name(container: Option<ContainerTag>, runtime: bool) -> String {
    match container {
        Some(c) if runtime => format!("container {c}"),
        Some(c) => format!("container {}", c.short_id()),
        None => "no container".to_string(),
    }
}

/// The lane's own container, when it is not the one its group is drawn
/// under: the other end of a connection between containers, or between a
/// container and a socket in none.
fn own_container(t: &Timeline, g: &Group, l: &Lane) -> Option<String> {
    let differs = t.by_container && !l.marks.is_empty() && l.container != g.container;
    differs.then(|| container_name(l.container, false))
}

/// Draws every group from `top` down, each container's under its heading
/// when the trace has containers. Returns the zebra backgrounds (to go
/// under the axis breaks' bands), the lanes and headings, and the y below
/// the last group.
pub fn draw_groups(t: &Timeline, axis: &Axis, m: &Metrics, top: f64) -> (G, G, f64) {
    let mut backgrounds = G::new();
    let mut content = G::new();
    let mut labels = lane_labels(t).into_iter();
    let mut y = top;
    for (i, group) in t.groups.iter().enumerate() {
        let first_of_container = i == 0 || t.groups[i - 1].container != group.container;
        if t.by_container && first_of_container {
            content.append(heading(&container_name(group.container, true), m, y));
            y += m.heading_h;
        }
        let height = group.lanes.len() as f64 * m.lane_height() + m.group_pad;
        if i % 2 == 1 {
            backgrounds.append(rect(0.0, y, m.width, height, "#f4f6f9"));
        }
        let mut lane_y = y + m.group_pad / 2.0;
        for lane in &group.lanes {
            let label = labels.next().unwrap_or_default();
            content.append(LaneDrawing { axis, m, bar_y: lane_y + m.label_band }.lane(lane, &label));
            lane_y += m.lane_height();
        }
        y += height;
        content.append(line(0.0, y, m.width, y, "#d9dde3", 1.0));
    }
    (backgrounds, content, y)
}

/// A band across the picture with `label` in bold, `m.heading_h` high
/// from `y`; drawn over the axis breaks' bands, which it interrupts.
fn heading(label: &str, m: &Metrics, y: f64) -> G {
    let label = fit_text(label, m.font, m.width - 2.0 * m.margin);
    G::new()
        .add(rect(0.0, y, m.width, m.heading_h, "#e3e7ed"))
        .add(line(0.0, y + m.heading_h, m.width, y + m.heading_h, "#c3c8d0", 1.0))
        .add(
            text(m.margin, y + m.heading_h / 2.0 + m.font * 0.36, label, m.font)
                .set("font-weight", "bold")
                .set("fill", "#333333"),
        )
}

/// One lane being drawn at a given height.
struct LaneDrawing<'a> {
    axis: &'a Axis,
    m: &'a Metrics,
    /// Top of the lane's bar.
    bar_y: f64,
}

impl LaneDrawing<'_> {
    fn lane(&self, lane: &Lane, label: &LaneLabel) -> G {
        let m = self.m;
        let mid = self.bar_y + m.bar_h / 2.0;
        let mut g = G::new();
        let gutter_text = fit_text(&label.name, m.font, m.gutter - 8.0);
        g.append(text(m.margin, mid + m.font * 0.36, gutter_text, m.font).set("fill", "#222222"));
        if let Some(end) = &label.end {
            // Cut to the gutter like the name; the whole label stays as a tooltip.
            let end_text = fit_text(end, m.small_font, m.gutter - 8.0);
            g.append(
                text(m.margin, mid + m.end_line_below(), end_text, m.small_font)
                    .set("fill", "#555555")
                    .add(Title::new(label.to_string())),
            );
        }
        g.append(line(m.plot_left, mid, m.plot_left + m.plot_width, mid, "#d0d4da", 1.0));
        if lane.marks.is_empty() {
            g.append(
                text(m.plot_left + 6.0, mid + m.font * 0.36, "(no events traced)", m.font)
                    .set("fill", "#888888")
                    .set("font-style", "italic"),
            );
        }
        for seg in &lane.segments {
            g.append(self.segment(seg));
        }
        g.append(self.markers(&lane.marks));
        g
    }

    /// A state's bar: coloured, tooltip with its real length, torn where it
    /// crosses a break (with that real length written in the tear), and its
    /// name written on it where the name fits.
    ///
    /// A lane's last state lasted at least until the trace's last event
    /// (unless it is CLOSE: the socket is gone), so it is drawn that far,
    /// then as a faded stub: the trace ended, the state did not.
    fn segment(&self, seg: &Segment) -> G {
        let (m, axis) = (self.m, self.axis);
        let colour = state_colour(seg.state);
        let end = match seg.end_ns {
            Some(end) => end,
            None if seg.state == TcpState::CLOSE => seg.start_ns,
            None => axis.last_t().max(seg.start_ns),
        };
        let (x0, x1) = (axis.x(seg.start_ns), axis.x(end));
        let mut g = G::new();
        let tooltip = Title::new(segment_tooltip(seg, end));
        g.append(rect(x0, self.bar_y, (x1 - x0).max(1.0), m.bar_h, colour).add(tooltip.clone()));
        let mut visible_end = x1;
        if seg.end_ns.is_none() {
            let room = axis.room_before_break(x1).unwrap_or(f64::INFINITY);
            let stub = STUB_PX.min(room).max(MIN_STUB_PX);
            g.append(rect(x1, self.bar_y, stub, m.bar_h, colour).set("fill-opacity", 0.45).add(tooltip));
            visible_end = x1 + stub;
        }
        let breaks: Vec<&Span> = axis.breaks_within(seg.start_ns, end).collect();
        for b in &breaks {
            if b.x1 - b.x0 >= NARROW_BREAK_PX {
                g.append(self.tear(b.x0 + TEAR_INSET));
                g.append(self.tear(b.x1 - TEAR_INSET));
            } else {
                g.append(self.tear((b.x0 + b.x1) / 2.0));
            }
        }
        // The real length, between the tears of the widest break crossed,
        // or else after the state's name.
        let at_least = if seg.end_ns.is_none() { "≥" } else { "" };
        let duration = format!("{at_least}{}", format_duration(end - seg.start_ns));
        // Widest first, then the one standing for the longest time.
        let widest = breaks.iter().max_by(|p, q| {
            ((p.x1 - p.x0).round(), p.t1 - p.t0)
                .partial_cmp(&((q.x1 - q.x0).round(), q.t1 - q.t0))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let in_break = widest.filter(|b| {
            b.x1 - b.x0 >= NARROW_BREAK_PX
                && text_width(&duration, m.small_font) + 4.0 <= b.x1 - b.x0 - 2.0 * TEAR_INSET
        });
        if let Some(b) = in_break {
            g.append(self.centred(&duration, (b.x0 + b.x1) / 2.0, colour).set("font-weight", "bold"));
        }
        let name = seg.state.to_string();
        let mut names = Vec::new();
        if !breaks.is_empty() && in_break.is_none() {
            names.push(format!("{name} {duration}"));
        }
        names.push(name);
        let (a, b) = widest_visible(x0, visible_end, &breaks);
        if let Some(name) = names.iter().find(|n| text_width(n, m.small_font) + 8.0 <= b - a) {
            g.append(self.centred(name, (a + b) / 2.0, colour));
        }
        g
    }

    /// Text centred on the bar at `x`, readable on `background`.
    fn centred(&self, s: &str, x: f64, background: &str) -> Text {
        let m = self.m;
        text(x, self.bar_y + m.bar_h / 2.0 + m.small_font * 0.36, s, m.small_font)
            .set("text-anchor", "middle")
            .set("fill", text_colour_on(background))
    }

    /// A white zigzag across the bar: the "cut" of an axis break.
    fn tear(&self, x: f64) -> Polyline {
        let (top, bottom) = (self.bar_y - 2.0, self.bar_y + self.m.bar_h + 2.0);
        let mut points = Vec::new();
        let mut y = top;
        let mut left = true;
        while y <= bottom + 0.01 {
            let dx = if left { -3.0 } else { 3.0 };
            points.push(format!("{},{}", px(x + dx), px(y)));
            y += 3.5;
            left = !left;
        }
        Polyline::new()
            .set("points", points.join(" "))
            .set("fill", "none")
            .set("stroke", "#ffffff")
            .set("stroke-width", 2.2)
    }

    /// Markers, and in the detailed layout their rotated `time:STATE`
    /// labels, spread apart where markers crowd (see [`spread_labels`]),
    /// each hanging from a thin stem that leads back to its marker.
    fn markers(&self, marks: &[Mark]) -> G {
        let m = self.m;
        let mid = self.bar_y + m.bar_h / 2.0;
        let xs: Vec<f64> = marks.iter().map(|mark| self.axis.x(mark.t_ns)).collect();
        let mut g = G::new();
        if m.detail {
            let spacing = (m.small_font + 2.0) / FRAC_1_SQRT_2;
            for ((mark, &x), lx) in marks.iter().zip(&xs).zip(spread_labels(&xs, spacing)) {
                if let Some(lx) = lx {
                    g.append(self.marker_label(mark, x, lx));
                }
            }
        }
        for (mark, &x) in marks.iter().zip(&xs) {
            g.append(marker(mark, x, mid, m.marker_r));
        }
        g
    }

    /// A label whose text starts at `lx`, above the marker at `x`: a stem
    /// rises from the bar and, when the label had to move, bends towards it.
    fn marker_label(&self, mark: &Mark, x: f64, lx: f64) -> G {
        let m = self.m;
        let top = self.bar_y - 1.0;
        let (base_x, base_y) = (lx + 2.0, self.bar_y - LABEL_RISE);
        let mut g = G::new();
        let stem = if (lx - x).abs() > 0.5 {
            format!("{},{} {},{} {},{}", px(x), px(top), px(x), px(top - 3.0), px(lx), px(base_y + 1.0))
        } else {
            format!("{},{} {},{}", px(x), px(top), px(x), px(base_y + 1.0))
        };
        g.append(
            Polyline::new().set("points", stem).set("fill", "none").set("stroke", "#9aa0a8").set("stroke-width", 0.8),
        );
        g.append(
            text(base_x, base_y, mark_label(mark), m.small_font)
                .set("fill", "#333333")
                .set("transform", format!("rotate({LABEL_ANGLE} {} {})", px(base_x), px(base_y))),
        );
        g
    }
}

/// Where each marker's label goes: at its marker where there is room,
/// otherwise spread symmetrically around the crowd so that neighbours are
/// `spacing` apart (the least total movement, by pooling adjacent
/// violators). A label that would have to move more than
/// [`MAX_LABEL_SHIFT`] is left out (`None`), the most displaced first, and
/// the rest spread again; its marker keeps the text as a tooltip.
pub fn spread_labels(xs: &[f64], spacing: f64) -> Vec<Option<f64>> {
    let mut kept: Vec<usize> = (0..xs.len()).collect();
    loop {
        // Blocks of labels packed `spacing` apart: (first kept index, count, left end).
        let mut blocks: Vec<(usize, usize, f64)> = Vec::new();
        for (k, &i) in kept.iter().enumerate() {
            blocks.push((k, 1, xs[i]));
            while blocks.len() >= 2 {
                let (b, n, left) = blocks[blocks.len() - 1];
                let (a, m, prev_left) = blocks[blocks.len() - 2];
                if prev_left + m as f64 * spacing <= left {
                    break;
                }
                // Merge: the left end that moves the labels least on average.
                let wanted: f64 =
                    kept[a..b + n].iter().enumerate().map(|(j, &i)| xs[i] - j as f64 * spacing).sum::<f64>()
                        / (m + n) as f64;
                blocks.pop();
                blocks.pop();
                blocks.push((a, m + n, wanted));
            }
        }
        let mut placed = vec![None; xs.len()];
        for &(a, n, left) in &blocks {
            for j in 0..n {
                placed[kept[a + j]] = Some(left + j as f64 * spacing);
            }
        }
        let worst = kept
            .iter()
            .enumerate()
            .map(|(k, &i)| (k, (placed[i].unwrap_or(xs[i]) - xs[i]).abs()))
            .max_by(|p, q| p.1.total_cmp(&q.1));
        match worst {
            Some((k, shift)) if shift > MAX_LABEL_SHIFT => {
                kept.remove(k);
            }
            _ => return placed,
        }
    }
}

/// The widest part of `x0..x1` not covered by `breaks` (sorted by x).
fn widest_visible(x0: f64, x1: f64, breaks: &[&Span]) -> (f64, f64) {
    let mut best = (x0, x0);
    let mut start = x0;
    for b in breaks.iter().map(|b| (b.x0, b.x1)).chain([(x1, x1)]) {
        if b.0 - start > best.1 - best.0 {
            best = (start, b.0);
        }
        start = b.1;
    }
    best
}

/// `end` is where the bar stops: the next transition, or for a lane's last
/// state the trace's last event.
fn segment_tooltip(seg: &Segment, end: u64) -> String {
    let (from, to) = (format_instant(seg.start_ns), format_instant(end));
    let length = format_duration(end - seg.start_ns);
    match seg.end_ns {
        Some(_) => format!("{} for {length} ({from} → {to})", seg.state),
        None => format!("{} from {from} until the trace ended (at least {length})", seg.state),
    }
}

/// A transition: filled with the new state's colour; hollow and dashed when
/// the transition was inferred rather than seen.
pub fn marker(mark: &Mark, x: f64, y: f64, r: f64) -> Circle {
    let mut tip = format!("{}: {} → {}", format_instant(mark.t_ns), mark.old, mark.new);
    let mut c =
        Circle::new().set("cx", px(x)).set("cy", px(y)).set("r", r).set("stroke", "#222222").set("stroke-width", 1.2);
    if mark.inferred {
        tip.push_str(" (inferred: not seen, deduced from the next event)");
        c = c.set("fill", "#ffffff").set("stroke-dasharray", "2 1.5");
    } else {
        c = c.set("fill", state_colour(mark.new));
    }
    c.add(Title::new(tip))
}

pub fn rect(x: f64, y: f64, w: f64, h: f64, fill: &str) -> Rectangle {
    Rectangle::new()
        .set("x", px(x))
        .set("y", px(y))
        .set("width", px(w.max(0.0)))
        .set("height", px(h.max(0.0)))
        .set("fill", fill)
}

pub fn line(x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, width: f64) -> Line {
    Line::new()
        .set("x1", px(x1))
        .set("y1", px(y1))
        .set("x2", px(x2))
        .set("y2", px(y2))
        .set("stroke", stroke)
        .set("stroke-width", width)
}

pub fn text(x: f64, y: f64, content: impl Into<String>, size: f64) -> Text {
    Text::new(content).set("x", px(x)).set("y", px(y)).set("font-size", size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_labels_name_the_lane_s_own_endpoint() {
        let kind =
            GroupKind::Connection { server: "127.0.0.1:80".parse().unwrap(), client: "[::1]:5000".parse().unwrap() };
        assert_eq!(lane_label(&kind, Role::Server, None), "server 127.0.0.1:80");
        assert_eq!(lane_label(&kind, Role::Client, None), "client [::1]:5000");
        assert_eq!(lane_label(&GroupKind::Unaddressed, Role::Client, Some(2)), "client #2");
        assert_eq!(lane_label(&GroupKind::Listener(None), Role::Listener, None), "listener");
    }

    #[test]
    fn a_lane_with_a_connection_record_is_labelled_with_its_end_and_bytes() {
        use crate::conn::EndCause;
        use crate::plot::{build_labelled_timeline, draw, Ends, PlotEvent, PlotOptions, Side, Tuple};
        let lo = "127.0.0.1".parse().unwrap();
        let ev = |ts_ns, side, (old, new), (sport, dport), id| PlotEvent {
            ts_ns,
            side,
            old,
            new,
            conn: Some(Tuple { saddr: lo, sport, daddr: lo, dport }),
            socket: Some(id),
            inferred: false,
            container: None,
        };
        let events = [
            ev(0, Side::Client, (TcpState::CLOSE, TcpState::SYN_SENT), (5000, 80), 7),
            ev(1, Side::Server, (TcpState::LISTEN, TcpState::SYN_RECV), (80, 5000), 8),
            ev(2, Side::Client, (TcpState::SYN_SENT, TcpState::ESTABLISHED), (5000, 80), 7),
        ];
        let netns_exit = ConnEnd { end: EndCause::TimeWaitNetnsExit, bytes: Some((78, 10_240)) };
        // The server's record is not there: its lane keeps its name alone.
        let ends = Ends::from([(7, netns_exit), (9, ConnEnd { end: EndCause::Open, bytes: None })]);
        let opts = PlotOptions::default();
        let t = build_labelled_timeline(&events, &ends, &opts).unwrap();
        let labels: Vec<String> = lane_labels(&t).iter().map(ToString::to_string).collect();
        assert_eq!(
            labels,
            ["server 127.0.0.1:80", "client 127.0.0.1:5000 · time_wait_netns_exit · 78 B out, 10.0 KiB in"]
        );
        // Drawn as a second line under the name, whole at the default width.
        let svg = draw::document(&t, &opts);
        assert!(svg.contains("\ntime_wait_netns_exit · 78 B out, 10.0 KiB in\n<title>"), "{svg}");
        // Cut to the gutter in a narrow picture; the tooltip keeps it whole.
        let narrow = draw::document(&t, &PlotOptions { width: 480, ..opts });
        assert!(narrow.contains("\ntime_wait_netns_exit…\n<title>"), "{narrow}");
        assert!(narrow.contains(&format!("<title>{}</title>", labels[1])), "{narrow}");
        assert_eq!(end_label(&ConnEnd { end: EndCause::Open, bytes: None }), "open");
    }

    #[test]
    fn crowded_labels_spread_around_their_markers() {
        // Far apart: where the markers are.
        assert_eq!(spread_labels(&[0.0, 50.0, 100.0], 18.0), [Some(0.0), Some(50.0), Some(100.0)]);
        // Two on one spot: one each side.
        assert_eq!(spread_labels(&[100.0, 100.0], 18.0), [Some(91.0), Some(109.0)]);
        // A crowd next to a free label: the crowd spreads, the free one stays.
        let placed = spread_labels(&[100.0, 101.0, 102.0, 200.0], 18.0);
        assert_eq!(placed[3], Some(200.0));
        assert!((placed[1].unwrap() - 101.0).abs() < 1e-9);
        // Too many on one spot: the most displaced are left to tooltips,
        // later ones first; the rest stay apart and near their markers.
        let xs = [300.0; 8];
        let placed = spread_labels(&xs, 18.0);
        let kept: Vec<f64> = placed.iter().flatten().copied().collect();
        assert!(kept.len() >= 3 && kept.len() < 8, "{placed:?}");
        assert!(placed[0].is_some(), "{placed:?}");
        assert!(kept.windows(2).all(|w| w[1] - w[0] >= 18.0 - 1e-9), "{kept:?}");
        assert!(kept.iter().all(|x| (x - 300.0).abs() <= MAX_LABEL_SHIFT), "{kept:?}");
        assert!(spread_labels(&[], 18.0).is_empty());
    }

    #[test]
    fn widest_visible_part_skips_breaks() {
        let b = Span { t0: 0, t1: 1, x0: 10.0, x1: 80.0, broken: true };
        assert_eq!(widest_visible(0.0, 100.0, &[&b]), (80.0, 100.0));
        assert_eq!(widest_visible(0.0, 100.0, &[]), (0.0, 100.0));
    }
}
