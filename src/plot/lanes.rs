//! Drawing the connection groups: per lane its label, state segments (with
//! tears where they cross an axis break), transition markers and, in the
//! detailed layout, the `time:STATE` label of each marker.

use std::f64::consts::FRAC_1_SQRT_2;

use svg::node::element::{Circle, Group as G, Line, Polyline, Rectangle, Text, Title};
use svg::Node;

use super::axis::{Axis, Span};
use super::draw::Metrics;
use super::model::{GroupKind, Lane, Mark, Role, Segment, Timeline};
use super::style::{
    fit_text, format_duration, format_instant, px, state_colour, text_colour_on, text_width,
};
use crate::state::TcpState;

/// Length of the open-ended segment after a lane's last event.
pub const STUB_PX: f64 = 46.0;
/// A stub is never shorter than this, even right before a break.
const MIN_STUB_PX: f64 = 12.0;
/// How far a marker label may slide right to avoid its neighbour.
const MAX_LABEL_SHIFT: f64 = 30.0;
/// Breaks are drawn as two tears this far inside the break's edges.
const TEAR_INSET: f64 = 9.0;
/// Marker labels rise at 45°.
const LABEL_ANGLE: f64 = -45.0;

/// The text left of a lane: its role and, when known, its own endpoint.
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
pub fn lane_labels(t: &Timeline) -> Vec<String> {
    let count = |kind: GroupKind| t.groups.iter().filter(|g| g.kind == kind).count();
    let mut seen: Vec<(GroupKind, usize, usize)> =
        [GroupKind::Unaddressed, GroupKind::Listener(None)]
            .into_iter()
            .map(|k| (k, count(k), 0))
            .collect();
    let mut labels = Vec::new();
    for g in &t.groups {
        let ordinal = seen.iter_mut().find(|(k, _, _)| *k == g.kind).and_then(|(_, total, n)| {
            *n += 1;
            (*total > 1).then_some(*n)
        });
        labels.extend(g.lanes.iter().map(|l| lane_label(&g.kind, l.role, ordinal)));
    }
    labels
}

/// Draws every group from `top` down. Returns the zebra backgrounds (to go
/// under the axis breaks' bands), the lanes, and the y below the last group.
pub fn draw_groups(t: &Timeline, axis: &Axis, m: &Metrics, top: f64) -> (G, G, f64) {
    let mut backgrounds = G::new();
    let mut content = G::new();
    let mut labels = lane_labels(t).into_iter();
    let mut y = top;
    for (i, group) in t.groups.iter().enumerate() {
        let height = group.lanes.len() as f64 * m.lane_height() + m.group_pad;
        if i % 2 == 1 {
            backgrounds.append(rect(0.0, y, m.width, height, "#f4f6f9"));
        }
        let mut lane_y = y + m.group_pad / 2.0;
        for lane in &group.lanes {
            let label = labels.next().unwrap_or_default();
            content
                .append(LaneDrawing { axis, m, bar_y: lane_y + m.label_band }.lane(lane, &label));
            lane_y += m.lane_height();
        }
        y += height;
        content.append(line(0.0, y, m.width, y, "#d9dde3", 1.0));
    }
    (backgrounds, content, y)
}

/// One lane being drawn at a given height.
struct LaneDrawing<'a> {
    axis: &'a Axis,
    m: &'a Metrics,
    /// Top of the lane's bar.
    bar_y: f64,
}

impl LaneDrawing<'_> {
    fn lane(&self, lane: &Lane, label: &str) -> G {
        let m = self.m;
        let mid = self.bar_y + m.bar_h / 2.0;
        let mut g = G::new();
        let gutter_text = fit_text(label, m.font, m.gutter - 8.0);
        g.append(text(m.margin, mid + m.font * 0.36, gutter_text, m.font).set("fill", "#222222"));
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
            g.append(
                rect(x1, self.bar_y, stub, m.bar_h, colour).set("fill-opacity", 0.45).add(tooltip),
            );
            visible_end = x1 + stub;
        }
        let breaks: Vec<&Span> = axis.breaks_within(seg.start_ns, end).collect();
        for (i, b) in breaks.iter().enumerate() {
            g.append(self.tear(b.x0 + TEAR_INSET));
            g.append(self.tear(b.x1 - TEAR_INSET));
            let at_least = if seg.end_ns.is_none() { "≥" } else { "" };
            let duration = format!("{at_least}{}", format_duration(end - seg.start_ns));
            if i == 0 && text_width(&duration, m.small_font) + 4.0 <= b.x1 - b.x0 - 2.0 * TEAR_INSET
            {
                g.append(
                    self.centred(&duration, (b.x0 + b.x1) / 2.0, colour).set("font-weight", "bold"),
                );
            }
        }
        let name = seg.state.to_string();
        let (a, b) = widest_visible(x0, visible_end, &breaks);
        if text_width(&name, m.small_font) + 8.0 <= b - a {
            g.append(self.centred(&name, (a + b) / 2.0, colour));
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
    /// labels, each slid right just enough to clear the previous one; a
    /// label that would have to slide too far is left to the tooltip.
    fn markers(&self, marks: &[Mark]) -> G {
        let m = self.m;
        let mid = self.bar_y + m.bar_h / 2.0;
        let spacing = (m.small_font + 2.0) / FRAC_1_SQRT_2;
        let mut next_free = f64::MIN;
        let mut g = G::new();
        for mark in marks {
            let x = self.axis.x(mark.t_ns);
            if m.detail {
                let lx = x.max(next_free);
                if lx - x <= MAX_LABEL_SHIFT {
                    next_free = lx + spacing;
                    g.append(self.marker_label(mark, x, lx));
                }
            }
            g.append(marker(mark, x, mid, m.marker_r));
        }
        g
    }

    fn marker_label(&self, mark: &Mark, x: f64, lx: f64) -> G {
        let m = self.m;
        let (base_x, base_y) = (lx + 2.0, self.bar_y - 5.0);
        let mut g = G::new();
        if lx > x + 0.5 {
            g.append(line(x, self.bar_y, lx, base_y + 2.0, "#9aa0a8", 0.8));
        }
        g.append(
            text(base_x, base_y, mark_label(mark), m.small_font)
                .set("fill", "#333333")
                .set("transform", format!("rotate({LABEL_ANGLE} {} {})", px(base_x), px(base_y))),
        );
        g
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
    let mut c = Circle::new()
        .set("cx", px(x))
        .set("cy", px(y))
        .set("r", r)
        .set("stroke", "#222222")
        .set("stroke-width", 1.2);
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
        let kind = GroupKind::Connection {
            server: "127.0.0.1:80".parse().unwrap(),
            client: "[::1]:5000".parse().unwrap(),
        };
        assert_eq!(lane_label(&kind, Role::Server, None), "server 127.0.0.1:80");
        assert_eq!(lane_label(&kind, Role::Client, None), "client [::1]:5000");
        assert_eq!(lane_label(&GroupKind::Unaddressed, Role::Client, Some(2)), "client #2");
        assert_eq!(lane_label(&GroupKind::Listener(None), Role::Listener, None), "listener");
    }

    #[test]
    fn widest_visible_part_skips_breaks() {
        let b = Span { t0: 0, t1: 1, x0: 10.0, x1: 80.0, broken: true };
        assert_eq!(widest_visible(0.0, 100.0, &[&b]), (80.0, 100.0));
        assert_eq!(widest_visible(0.0, 100.0, &[]), (0.0, 100.0));
    }
}
