//! The SVG document: title, legend, the groups (see [`super::lanes`]), the
//! time axis with its breaks, and notes on what was left out.
//!
//! Two layouts, picked by how many groups are drawn: up to
//! [`DETAIL_MAX_GROUPS`] every marker carries its rotated `time:STATE`
//! label, as the original matplotlib script did; beyond that lanes are thin
//! bars without marker labels (each marker and segment keeps a tooltip), so
//! 50 connections still fit on a screen.

use std::f64::consts::FRAC_1_SQRT_2;

use svg::node::element::{Group as G, Text, Title};
use svg::{Document, Node};

use super::axis::{Anchor, Axis, TICK_FONT};
use super::container::first_seen;
use super::lanes::{draw_groups, lane_labels, line, mark_label, marker, rect, text, LABEL_RISE, STUB_PX};
use super::model::{GroupKind, Mark, Timeline};
use super::style::{fit_text, format_duration, state_colour, text_width, FONT_FAMILY};
use super::PlotOptions;
use crate::state::TcpState;

/// Above this many groups, the compact layout.
pub const DETAIL_MAX_GROUPS: usize = 6;

/// Sizes of everything, fixed once per picture.
pub struct Metrics {
    pub width: f64,
    pub margin: f64,
    pub gutter: f64,
    pub plot_left: f64,
    pub plot_width: f64,
    pub detail: bool,
    pub font: f64,
    pub small_font: f64,
    pub bar_h: f64,
    pub marker_r: f64,
    /// Room above each bar for marker labels (0 in the compact layout).
    pub label_band: f64,
    pub lane_gap: f64,
    pub group_pad: f64,
    /// A container heading's band (see [`super::lanes`]).
    pub heading_h: f64,
}

impl Metrics {
    fn new(t: &Timeline, opts: &PlotOptions) -> Metrics {
        let width = f64::from(opts.width.clamp(480, 20_000));
        let detail = t.groups.len() <= DETAIL_MAX_GROUPS;
        let (font, small_font) = if detail { (12.0, 11.0) } else { (11.0, 10.0) };
        let margin = 14.0;
        let labels = lane_labels(t);
        let widest_end = labels.iter().flat_map(|l| &l.end).map(|e| text_width(e, small_font));
        let widest_lane = labels.iter().map(|l| text_width(&l.name, font)).chain(widest_end).fold(0.0, f64::max);
        let gutter = (widest_lane + 16.0).clamp(80.0, width * 0.3);
        let widest_mark = if detail {
            t.lanes().flat_map(|l| &l.marks).map(|m| text_width(&mark_label(m), small_font)).fold(0.0, f64::max)
        } else {
            0.0
        };
        // Rotated labels of the last markers reach this far right of the axis.
        let right = (widest_mark * FRAC_1_SQRT_2 + 8.0).max(STUB_PX + 12.0).min(width * 0.25);
        let plot_left = margin + gutter;
        let mut m = Metrics {
            width,
            margin,
            gutter,
            plot_left,
            plot_width: (width - plot_left - right).max(40.0),
            detail,
            font,
            small_font,
            bar_h: if detail { 22.0 } else { 14.0 },
            marker_r: if detail { 4.5 } else { 3.2 },
            label_band: if detail { (widest_mark * FRAC_1_SQRT_2 + LABEL_RISE + 5.0).clamp(24.0, 176.0) } else { 0.0 },
            lane_gap: if detail { 10.0 } else { 4.0 },
            group_pad: if detail { 10.0 } else { 6.0 },
            heading_h: font + 10.0,
        };
        // Room under the bar for the end line of a lane's label, with its descenders.
        if labels.iter().any(|l| l.end.is_some()) {
            m.lane_gap = m.lane_gap.max(m.end_line_below() + m.small_font * 0.3 - m.bar_h / 2.0);
        }
        m
    }

    /// Where the second line of a lane's label (how its connection ended)
    /// stands: its baseline this far below the middle of the bar.
    pub fn end_line_below(&self) -> f64 {
        self.font * 0.36 + self.small_font + 2.0
    }

    pub fn lane_height(&self) -> f64 {
        self.label_band + self.bar_h + self.lane_gap
    }
}

/// The whole picture as SVG text.
pub fn document(t: &Timeline, opts: &PlotOptions) -> String {
    let m = Metrics::new(t, opts);
    let axis = Axis::new(&t.times(), m.plot_left, m.plot_width);
    let mut y = 0.0;
    let header = header(t, opts, &m, &mut y);
    let legend = legend(t, &axis, &m, &mut y);
    let lanes_top = y + 6.0;
    let (backgrounds, groups, lanes_bottom) = draw_groups(t, &axis, &m, lanes_top);
    let bands = break_bands(&axis, lanes_top, lanes_bottom);
    let mut y = lanes_bottom;
    let axis_drawing = draw_axis(&axis, &m, &mut y);
    let notes = notes(t, opts, &m, &mut y);
    let height = (y + 14.0).ceil();

    Document::new()
        .set("width", m.width)
        .set("height", height)
        .set("viewBox", (0, 0, m.width, height))
        .set("font-family", FONT_FAMILY)
        .add(rect(0.0, 0.0, m.width, height, "#ffffff"))
        .add(header)
        .add(legend)
        .add(backgrounds)
        .add(bands)
        .add(groups)
        .add(axis_drawing)
        .add(notes)
        .to_string()
}

/// Title and a one-line summary of what is shown.
fn header(t: &Timeline, opts: &PlotOptions, m: &Metrics, y: &mut f64) -> G {
    let title = printable(opts.title.as_deref().unwrap_or("TCP state timeline"));
    let title = fit_text(&title, 17.0, m.width - 2.0 * m.margin);
    let conns = t.groups.iter().filter(|g| !matches!(g.kind, GroupKind::Listener(_))).count();
    let listeners = t.groups.len() - conns;
    let transitions: usize = t.lanes().map(|l| l.marks.len()).sum();
    let mut summary = vec![count(conns, "connection")];
    if listeners > 0 {
        summary.push(count(listeners, "listener"));
    }
    if t.by_container {
        // Every container drawn, also those only at the other end of a connection.
        let containers = first_seen(t.lanes().filter_map(|l| l.container));
        summary.push(count(containers.len(), "container"));
    }
    summary.push(count(transitions, "transition"));
    if let Some(p) = opts.port {
        summary.push(format!("port {p}"));
    }
    if let Some(c) = &opts.conn {
        summary.push(format!("--conn {}", printable(c)));
    }
    if let Some(c) = &opts.container {
        summary.push(format!("--container {}", printable(c)));
    }
    summary.push(format!("0 ms = first event (ts {} ns)", t.t0_ns));
    *y = 52.0;
    G::new()
        .add(text(m.margin, 26.0, title, 17.0).set("font-weight", "bold").set("fill", "#111111"))
        .add(text(m.margin, 44.0, summary.join("  ·  "), 11.0).set("fill", "#555555"))
}

/// User text without control characters, which XML does not allow.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// One swatch per state drawn, then the marker and break conventions, in
/// rows that wrap at the picture's width.
fn legend(t: &Timeline, axis: &Axis, m: &Metrics, y: &mut f64) -> G {
    const ROW: f64 = 20.0;
    const SWATCH: f64 = 16.0;
    let size = 11.0;
    let mut g = G::new();
    let mut x = m.margin;
    let mut row_y = *y + 8.0;
    let mut place = |g: &mut G, w: f64, draw: &dyn Fn(f64, f64) -> G| {
        if x + w > m.width - m.margin && x > m.margin {
            x = m.margin;
            row_y += ROW;
        }
        g.append(draw(x, row_y));
        x += w + 16.0;
    };
    for state in t.states() {
        let name = state.to_string();
        let w = SWATCH + 5.0 + text_width(&name, size);
        place(&mut g, w, &|x, y| {
            G::new()
                .add(rect(x, y, SWATCH, 11.0, state_colour(state)))
                .add(text(x + SWATCH + 5.0, y + 10.0, name.clone(), size).set("fill", "#222222"))
        });
    }
    // Marker conventions, drawn with the real marker code in a neutral state.
    let seen = Mark { t_ns: 0, old: TcpState::CLOSE, new: TcpState::CLOSE, inferred: false };
    let mut conventions = vec![("transition", seen)];
    if t.has_inferred() {
        conventions.push(("inferred transition", Mark { inferred: true, ..seen }));
    }
    for (label, mark) in conventions {
        let w = 14.0 + text_width(label, size);
        place(&mut g, w, &|x, y| {
            G::new()
                .add(marker(&mark, x + 5.0, y + 5.5, 4.5))
                .add(text(x + 14.0, y + 10.0, label, size).set("fill", "#222222"))
        });
    }
    let stub = "state when the trace ended";
    place(&mut g, SWATCH + 5.0 + text_width(stub, size), &|x, y| {
        G::new()
            .add(rect(x, y, SWATCH, 11.0, "#777777").set("fill-opacity", 0.45))
            .add(text(x + SWATCH + 5.0, y + 10.0, stub, size).set("fill", "#222222"))
    });
    if axis.breaks().next().is_some() {
        let cut = "idle time cut short (real length written on it)";
        place(&mut g, SWATCH + 5.0 + text_width(cut, size), &|x, y| {
            G::new()
                .add(rect(x, y - 2.0, SWATCH, 15.0, "#e6e9ee"))
                .add(line(x + 2.0, y + 12.0, x + 7.0, y - 1.0, "#555555", 1.2))
                .add(line(x + 8.0, y + 12.0, x + 13.0, y - 1.0, "#555555", 1.2))
                .add(text(x + SWATCH + 5.0, y + 10.0, cut, size).set("fill", "#222222"))
        });
    }
    *y = row_y + ROW;
    g
}

/// Shaded bands behind the lanes where the axis is cut.
fn break_bands(axis: &Axis, top: f64, bottom: f64) -> G {
    let mut g = G::new();
    for b in axis.breaks() {
        g.append(
            rect(b.x0, top, b.x1 - b.x0, bottom - top, "#e6e9ee")
                .add(Title::new(format!("{} without events, not to scale", format_duration(b.t1 - b.t0)))),
        );
        for x in [b.x0, b.x1] {
            g.append(line(x, top, x, bottom, "#c3c8d0", 1.0).set("stroke-dasharray", "3 3"));
        }
    }
    g
}

/// The axis line (interrupted at breaks, with `//` marks and the time each
/// break stands for), its ticks and its title.
fn draw_axis(axis: &Axis, m: &Metrics, y: &mut f64) -> G {
    let base = *y + 10.0;
    let mut g = G::new();
    let mut from = axis.left();
    for b in axis.breaks() {
        g.append(line(from, base, b.x0, base, "#333333", 1.2));
        for x in [b.x0, b.x1] {
            g.append(line(x - 3.5, base + 6.0, x + 3.5, base - 6.0, "#333333", 1.4));
        }
        let jump = format!("+{}", format_duration(b.t1 - b.t0));
        if text_width(&jump, TICK_FONT) + 6.0 <= b.x1 - b.x0 {
            g.append(tick_text(&jump, (b.x0 + b.x1) / 2.0, base, Anchor::Middle).set("font-style", "italic"));
        }
        from = b.x1;
    }
    g.append(line(from, base, axis.right().max(from + 1.0), base, "#333333", 1.2));
    for tick in axis.ticks() {
        g.append(line(tick.x, base, tick.x, base + 5.0, "#333333", 1.0));
        g.append(tick_text(&tick.label, tick.x, base, tick.anchor).set("fill", "#222222"));
    }
    let mut title = "time since the first event".to_string();
    if axis.breaks().next().is_some() {
        title.push_str(" (shaded: idle time cut short, its real length under the axis)");
    }
    let title = fit_text(&title, 11.0, m.width - m.plot_left - m.margin);
    g.append(text(m.plot_left, base + 36.0, title, 11.0).set("fill", "#555555"));
    *y = base + 40.0;
    g
}

fn tick_text(label: &str, x: f64, base: f64, anchor: Anchor) -> Text {
    text(x, base + 18.0, label, TICK_FONT).set("text-anchor", anchor.as_str()).set("fill", "#555555")
}

/// What `--max-conns` left out, and how to see it.
fn notes(t: &Timeline, opts: &PlotOptions, m: &Metrics, y: &mut f64) -> G {
    let mut g = G::new();
    let mut left_out = Vec::new();
    if t.omitted_conns > 0 {
        left_out.push(count(t.omitted_conns, "more connection"));
    }
    if t.omitted_listeners > 0 {
        left_out.push(count(t.omitted_listeners, "more listener"));
    }
    if !m.detail {
        *y += 18.0;
        let hint = format!(
            "Many connections: marker labels are left to tooltips (hover in a browser); \
             --conn, --port or --max-conns {DETAIL_MAX_GROUPS} draw every transition labelled."
        );
        g.append(text(m.margin, *y, hint, 11.0).set("fill", "#555555"));
    }
    if !left_out.is_empty() {
        *y += 20.0;
        let pick = if t.by_container { "--port, --conn or --container" } else { "--port or --conn" };
        let note = format!(
            "{} not drawn (--max-conns {}): raise --max-conns, or pick with {pick}",
            left_out.join(" and "),
            opts.max_conns
        );
        g.append(text(m.margin, *y, note, 12.0).set("fill", "#a00000").set("font-weight", "bold"));
    }
    g
}
