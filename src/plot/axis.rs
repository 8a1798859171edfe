//! The shared time axis: linear, except that idle stretches far longer than
//! everything else are cut out and replaced by a narrow break, across
//! all lanes at once so that they stay aligned.
//!
//! Without breaks a curl → nginx trace is unreadable: the whole exchange
//! takes a millisecond and TIME_WAIT sixty seconds (or a listener waits a
//! few hundred milliseconds around it), so everything else would share one
//! pixel. The axis is built on the set of event times of all lanes. Gaps
//! between consecutive times are tested from the longest down, and one is
//! cut while the events are crowded (the median gap would be drawn narrower
//! than [`CROWDED_PX`]) and the gap is more than [`FAR_LONGER`] times the
//! median gap and more than [`SIZEABLE`] of the time still drawn to scale;
//! the first gap that fails ends the search, so ordinary pauses stay to
//! scale. Last, a break must be [`DISTINCT`] times every gap left to scale:
//! of twenty similar pauses between connections, none is cut rather than
//! some.
//!
//! Every stretch between breaks gets at least [`MIN_STRETCH_PX`], so an
//! event between two breaks (a listener closing between the exchange and
//! the end of TIME_WAIT) stands clear of both.

use std::cmp::Reverse;

use super::style::{format_instant, format_tick, text_width};

/// Width of one break on the axis, in pixels (less when there are many).
pub const BREAK_PX: f64 = 72.0;
/// Breaks take at most this part of the axis.
const BREAKS_SHARE: f64 = 0.4;
/// A break must be this many times the median gap.
const FAR_LONGER: f64 = 8.0;
/// A break must be this part of the time still drawn to scale.
const SIZEABLE: f64 = 0.05;
/// Breaks are made only while the median gap would be drawn narrower than
/// this: a picture whose events are far enough apart needs none.
const CROWDED_PX: f64 = 8.0;
/// A break must be this many times the longest gap drawn to scale.
const DISTINCT: f64 = 2.0;
/// At most this many breaks.
const MAX_BREAKS: usize = 12;
/// The narrowest a stretch between breaks (or the axis ends) is drawn.
pub const MIN_STRETCH_PX: f64 = 24.0;
/// Aim for a tick label about every this many pixels.
const TICK_SPACING_PX: f64 = 100.0;
/// Tick label font size.
pub const TICK_FONT: f64 = 10.0;

/// A stretch of the axis: either linear, or a break standing for `t0..t1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    pub t0: u64,
    pub t1: u64,
    pub x0: f64,
    pub x1: f64,
    pub broken: bool,
}

/// Where a tick label hangs from its tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    pub fn as_str(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tick {
    pub x: f64,
    pub label: String,
    pub anchor: Anchor,
}

/// Time (ns since the first event) → x (pixels).
#[derive(Clone, Debug)]
pub struct Axis {
    /// Stretches and breaks, alternating, starting and ending with a stretch.
    spans: Vec<Span>,
    /// Per span, where its times are drawn: a stretch narrower than
    /// [`MIN_STRETCH_PX`] is centred in its slot; a break uses all of it.
    inner: Vec<(f64, f64)>,
    left: f64,
}

impl Axis {
    /// An axis over `times` (sorted, without repeats) from `left` to `left + width`.
    pub fn new(times: &[u64], left: f64, width: f64) -> Axis {
        let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let broken = long_gaps(&gaps, width);
        // Stretches: runs of times not separated by a break, as index ranges.
        let mut stretches: Vec<(usize, usize)> = Vec::new();
        let mut first = 0;
        for (i, _) in broken.iter().enumerate().filter(|(_, &b)| b) {
            stretches.push((first, i));
            first = i + 1;
        }
        if !times.is_empty() {
            stretches.push((first, times.len() - 1));
        }
        let breaks = stretches.len().saturating_sub(1);
        let cut: Vec<u64> = stretches.windows(2).map(|w| times[w[1].0] - times[w[0].1]).collect();
        let break_px = break_widths(&cut, width);
        let room = (width - break_px.iter().sum::<f64>()).max(0.0);
        let lengths: Vec<f64> = stretches.iter().map(|&(a, b)| (times[b] - times[a]) as f64).collect();
        let min_px = match breaks {
            0 => 0.0,
            _ => MIN_STRETCH_PX.min(room / stretches.len() as f64),
        };
        let scale = shared_scale(&lengths, room, min_px);
        let mut spans = Vec::new();
        let mut inner = Vec::new();
        let mut x = left;
        for (k, (&(a, b), &len)) in stretches.iter().zip(&lengths).enumerate() {
            let drawn = len * scale;
            let slot = drawn.max(min_px);
            let pad = (slot - drawn) / 2.0;
            spans.push(Span { t0: times[a], t1: times[b], x0: x, x1: x + slot, broken: false });
            inner.push((x + pad, x + pad + drawn));
            x += slot;
            if k + 1 < stretches.len() {
                let t1 = times[b + 1];
                let w = break_px[k];
                spans.push(Span { t0: times[b], t1, x0: x, x1: x + w, broken: true });
                inner.push((x, x + w));
                x += w;
            }
        }
        Axis { spans, inner, left }
    }

    /// The x of time `t`; inside a break, proportionally across it.
    pub fn x(&self, t: u64) -> f64 {
        let last = self.spans.len().saturating_sub(1);
        let mut i = self.spans.partition_point(|s| s.t1 < t).min(last);
        let Some(s) = self.spans.get(i) else {
            return self.left;
        };
        // A break's end time is drawn where the next stretch begins.
        if s.broken && t >= s.t1 && i < last {
            i += 1;
        }
        let (s, (c0, c1)) = (self.spans[i], self.inner[i]);
        let t = t.clamp(s.t0, s.t1);
        if s.t1 == s.t0 {
            return c0;
        }
        c0 + (c1 - c0) * ((t - s.t0) as f64 / (s.t1 - s.t0) as f64)
    }

    /// The x of the last event.
    pub fn right(&self) -> f64 {
        self.spans.last().map_or(self.left, |s| s.x1)
    }

    /// The time of the last event.
    pub fn last_t(&self) -> u64 {
        self.spans.last().map_or(0, |s| s.t1)
    }

    /// Room right of `x` before the next break begins, if one does.
    pub fn room_before_break(&self, x: f64) -> Option<f64> {
        self.breaks().find(|b| b.x0 >= x - 0.01).map(|b| b.x0 - x)
    }

    pub fn left(&self) -> f64 {
        self.left
    }

    pub fn breaks(&self) -> impl Iterator<Item = &Span> {
        self.spans.iter().filter(|s| s.broken)
    }

    /// The breaks lying wholly inside `start..=end`: a segment over that time
    /// is drawn shorter than it lasted and must say so.
    pub fn breaks_within(&self, start: u64, end: u64) -> impl Iterator<Item = &Span> {
        self.breaks().filter(move |b| b.t0 >= start && b.t1 <= end)
    }

    /// Tick labels that do not overlap each other or a break: first the edges
    /// of each break (exact times, so the reader sees where time jumps), then
    /// round values on every linear stretch.
    pub fn ticks(&self) -> Vec<Tick> {
        let mut candidates: Vec<Tick> = Vec::new();
        for b in self.breaks() {
            let (t0, t1) = (b.t0, b.t1);
            candidates.push(Tick { x: self.x(t0), label: format_instant(t0), anchor: Anchor::End });
            candidates.push(Tick { x: self.x(t1), label: format_instant(t1), anchor: Anchor::Start });
        }
        for (s, &(c0, c1)) in self.spans.iter().zip(&self.inner).filter(|(s, _)| !s.broken) {
            candidates.extend(round_ticks(s, c1 - c0, |t| self.x(t)));
        }
        if self.spans.is_empty() {
            candidates.push(Tick { x: self.left, label: format_tick(0, 1_000_000), anchor: Anchor::Middle });
        }
        self.place(candidates)
    }

    /// Keeps candidates, in priority order, whose labels have room.
    fn place(&self, candidates: Vec<Tick>) -> Vec<Tick> {
        // A break's inside is off limits, except for the padding of the
        // labels at its edges.
        let mut taken: Vec<(f64, f64)> = self.breaks().map(|b| (b.x0 + 7.0, b.x1 - 7.0)).collect();
        let mut placed = Vec::new();
        for tick in candidates {
            let w = text_width(&tick.label, TICK_FONT);
            let (a, b) = match tick.anchor {
                Anchor::Start => (tick.x, tick.x + w),
                Anchor::Middle => (tick.x - w / 2.0, tick.x + w / 2.0),
                Anchor::End => (tick.x - w, tick.x),
            };
            let (a, b) = (a - 6.0, b + 6.0);
            if taken.iter().all(|&(c, d)| b <= c || a >= d) {
                taken.push((a, b));
                placed.push(tick);
            }
        }
        placed.sort_by(|p, q| p.x.total_cmp(&q.x));
        placed
    }
}

/// Multiples of a 1-2-5 step inside a linear span, about every
/// [`TICK_SPACING_PX`]; `width` is what the span's times take on the axis.
fn round_ticks(s: &Span, width: f64, x: impl Fn(u64) -> f64) -> Vec<Tick> {
    if width < 1.0 || s.t1 == s.t0 {
        return vec![Tick { x: x(s.t0), label: format_instant(s.t0), anchor: Anchor::Middle }];
    }
    let step = nice_step((s.t1 - s.t0) as f64 * TICK_SPACING_PX / width);
    let first = s.t0.div_ceil(step).saturating_mul(step);
    let mut ticks = Vec::new();
    let mut t = first;
    while t <= s.t1 && ticks.len() < 100 {
        ticks.push(Tick { x: x(t), label: format_tick(t, step), anchor: Anchor::Middle });
        match t.checked_add(step) {
            Some(next) => t = next,
            None => break,
        }
    }
    ticks
}

/// The smallest 1, 2 or 5 × 10ⁿ ns at least `raw`.
fn nice_step(raw: f64) -> u64 {
    if raw.is_nan() || raw <= 1.0 {
        return 1;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let factor = match raw / magnitude {
        f if f <= 1.0 => 1.0,
        f if f <= 2.0 => 2.0,
        f if f <= 5.0 => 5.0,
        _ => 10.0,
    };
    // `as` saturates at u64::MAX for a step beyond the clock's range.
    ((factor * magnitude) as u64).max(1)
}

/// The width of each break standing for the gaps `cut`: [`BREAK_PX`] while
/// they take at most [`BREAKS_SHARE`] of the axis; beyond that they share
/// that part, longer gaps (in orders of magnitude) getting wider breaks, so
/// that a 60 s TIME_WAIT stands out among pauses of milliseconds.
fn break_widths(cut: &[u64], width: f64) -> Vec<f64> {
    let budget = width * BREAKS_SHARE;
    if cut.len() as f64 * BREAK_PX <= budget {
        return vec![BREAK_PX; cut.len()];
    }
    let shortest = cut.iter().copied().min().unwrap_or(1).max(1) as f64;
    let weights: Vec<f64> = cut.iter().map(|&g| 1.0 + 0.5 * (g.max(1) as f64 / shortest).log10()).collect();
    let total: f64 = weights.iter().sum();
    weights.iter().map(|w| (budget * w / total).min(BREAK_PX)).collect()
}

/// Pixels per nanosecond shared by every stretch, such that the stretches
/// fill `room` when each is at least `min_px` wide.
fn shared_scale(lengths: &[f64], room: f64, min_px: f64) -> f64 {
    let mut narrow = vec![false; lengths.len()];
    loop {
        let fixed = narrow.iter().filter(|&&n| n).count() as f64 * min_px;
        let free: f64 = lengths.iter().zip(&narrow).filter(|(_, &n)| !n).map(|(l, _)| l).sum();
        if free <= 0.0 {
            return 0.0;
        }
        let scale = (room - fixed).max(0.0) / free;
        let mut changed = false;
        for (l, n) in lengths.iter().zip(narrow.iter_mut()) {
            if !*n && l * scale < min_px {
                *n = true;
                changed = true;
            }
        }
        if !changed {
            return scale;
        }
    }
}

/// Which gaps become breaks on an axis `width` pixels wide (see the module
/// comment).
fn long_gaps(gaps: &[u64], width: f64) -> Vec<bool> {
    let mut out = vec![false; gaps.len()];
    if gaps.len() < 2 {
        return out;
    }
    let mut sorted = gaps.to_vec();
    sorted.sort_unstable();
    // The lower median: with two gaps, the shorter one is the typical one.
    let median = sorted[(sorted.len() - 1) / 2] as f64;
    let mut linear: f64 = gaps.iter().map(|&g| g as f64).sum();
    let mut order: Vec<usize> = (0..gaps.len()).collect();
    order.sort_by_key(|&i| Reverse(gaps[i]));
    for (k, &i) in order.iter().take(MAX_BREAKS).enumerate() {
        let gap = gaps[i] as f64;
        let room = width - k as f64 * BREAK_PX;
        let crowded = median * room < CROWDED_PX * linear;
        if crowded && gap > FAR_LONGER * median && gap > SIZEABLE * linear {
            out[i] = true;
            linear -= gap;
        } else {
            break;
        }
    }
    // A break must stand out from what stays to scale: among many similar
    // pauses (one connection after another), cutting some would mislead.
    loop {
        let longest_kept = gaps.iter().zip(&out).filter(|(_, &b)| !b).map(|(&g, _)| g).max();
        let shortest_cut = (0..gaps.len()).filter(|&i| out[i]).min_by_key(|&i| gaps[i]);
        match (longest_kept, shortest_cut) {
            (Some(kept), Some(i)) if (gaps[i] as f64) < DISTINCT * kept as f64 => out[i] = false,
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The curl → nginx exchange: about 0.6 ms of transitions, then TIME_WAIT.
    const CURL: [u64; 11] =
        [0, 18_204, 27_911, 35_377, 412_560, 421_018, 425_770, 611_402, 620_345, 628_913, 60_003_871_245];

    #[test]
    fn time_wait_becomes_a_break_and_the_exchange_keeps_its_scale() {
        let axis = Axis::new(&CURL, 100.0, 1000.0);
        let breaks: Vec<&Span> = axis.breaks().collect();
        assert_eq!(breaks.len(), 1);
        assert_eq!((breaks[0].t0, breaks[0].t1), (628_913, 60_003_871_245));
        assert!((breaks[0].x1 - breaks[0].x0 - BREAK_PX).abs() < 1e-9);
        assert!((axis.x(0) - 100.0).abs() < 1e-9);
        assert!((axis.right() - 1100.0).abs() < 1e-6);
        // The linear part is to scale: 412.56 µs of 628.913 µs, in what the
        // break and the last event's own stretch leave.
        let linear = 1000.0 - BREAK_PX - MIN_STRETCH_PX;
        let expect = 100.0 + linear * 412_560.0 / 628_913.0;
        assert!((axis.x(412_560) - expect).abs() < 1e-6);
        assert!((axis.x(628_913) - breaks[0].x0).abs() < 1e-6);
        // The last event stands clear of the break, in the middle of its stretch.
        assert!((axis.x(60_003_871_245) - (breaks[0].x1 + MIN_STRETCH_PX / 2.0)).abs() < 1e-6);
        assert_eq!(axis.breaks_within(620_345, 60_003_871_245).count(), 1);
        assert_eq!(axis.breaks_within(0, 628_913).count(), 0);
    }

    /// The demo trace: nginx listens, curl connects 90 ms later, the
    /// exchange takes 2.3 ms (mostly ESTABLISHED waiting for the response),
    /// nginx stops 221 ms later and TIME_WAIT ends 24 ms after that.
    const DEMO: [u64; 13] = [
        0,
        90_387_201,
        90_425_501,
        90_432_025,
        90_438_842,
        92_689_488,
        92_694_855,
        92_705_611,
        92_708_751,
        92_714_117,
        92_721_325,
        313_384_999,
        337_682_538,
    ];

    #[test]
    fn every_long_idle_stretch_of_the_demo_is_cut() {
        let axis = Axis::new(&DEMO, 0.0, 1000.0);
        let cut: Vec<(u64, u64)> = axis.breaks().map(|b| (b.t0, b.t1)).collect();
        assert_eq!(
            cut,
            [(0, 90_387_201), (90_438_842, 92_689_488), (92_721_325, 313_384_999), (313_384_999, 337_682_538)]
        );
        // The handshake and the close share what is left, to one scale.
        let hello = axis.x(90_438_842) - axis.x(90_387_201);
        let bye = axis.x(92_721_325) - axis.x(92_689_488);
        assert!(hello > 250.0 && bye > 150.0, "{hello} {bye}");
        assert!((hello / bye - 51_641.0 / 31_837.0).abs() < 1e-6);
        // The listener's close sits between two breaks, clear of both.
        let b: Vec<&Span> = axis.breaks().collect();
        assert!(axis.x(313_384_999) >= b[2].x1 + 10.0);
        assert!(axis.x(313_384_999) <= b[3].x0 - 10.0);
    }

    #[test]
    fn a_few_connections_far_apart_are_each_drawn_readable() {
        let few: Vec<u64> = (0..5u64).flat_map(|c| (0..10).map(move |i| c * 13_000_000 + i * 50_000)).collect();
        let axis = Axis::new(&few, 0.0, 1000.0);
        assert_eq!(axis.breaks().count(), 4);
        assert!(axis.x(450_000) - axis.x(0) > 100.0);
    }

    #[test]
    fn ordinary_pauses_are_not_breaks() {
        // Evenly spaced, or one pause that is long but not dominant.
        assert!(Axis::new(&[0, 10, 20, 30, 40], 0.0, 100.0).breaks().next().is_none());
        assert!(Axis::new(&[0, 100, 200, 300, 1000], 0.0, 100.0).breaks().next().is_none());
        assert!(Axis::new(&[0, 1_000_000_000], 0.0, 100.0).breaks().next().is_none());
        // Long and far above the median, but neither a sizeable part of the
        // trace nor dominant over the rest: the 377 µs ESTABLISHED of CURL.
        let hello = &CURL[..10];
        assert!(Axis::new(hello, 0.0, 1000.0).breaks().next().is_none());
        // Many regular connections: the pauses between them are the median.
        let many: Vec<u64> = (0..20u64).flat_map(|c| (0..10).map(move |i| c * 13_000_000 + i * 50_000)).collect();
        assert!(Axis::new(&many, 0.0, 100.0).breaks().next().is_none());
    }

    #[test]
    fn x_is_monotonic_and_inside_the_axis() {
        let axis = Axis::new(&CURL, 0.0, 800.0);
        let mut times: Vec<u64> = (0..=70_000_000_000u64).step_by(97_000_001).chain(CURL).collect();
        times.sort_unstable();
        let xs: Vec<f64> = times.iter().map(|&t| axis.x(t)).collect();
        for pair in xs.windows(2) {
            assert!(pair[0] <= pair[1] + 1e-9, "{pair:?}");
        }
        assert!(xs.iter().all(|&x| (0.0..=800.0 + 1e-6).contains(&x)));
    }

    #[test]
    fn ticks_are_round_and_do_not_overlap() {
        let axis = Axis::new(&CURL, 0.0, 1000.0);
        let ticks = axis.ticks();
        assert!(ticks.iter().any(|t| t.label == "0.0 ms"), "{ticks:?}");
        assert!(ticks.iter().any(|t| t.label == "0.629 ms" && t.anchor == Anchor::End), "{ticks:?}");
        assert!(ticks.iter().any(|t| t.label == "60.004 s"), "{ticks:?}");
        for pair in ticks.windows(2) {
            assert!(pair[0].x < pair[1].x);
        }
    }

    #[test]
    fn degenerate_axes_do_not_divide_by_zero() {
        for times in [&[][..], &[5], &[0, u64::MAX], &[0, 1, u64::MAX]] {
            let axis = Axis::new(times, 10.0, 500.0);
            for &t in times.iter().chain(&[0, 3, u64::MAX]) {
                assert!(axis.x(t).is_finite());
            }
            assert!(!axis.ticks().is_empty());
        }
        assert_eq!(nice_step(f64::NAN), 1);
        assert_eq!(nice_step(1e30), u64::MAX);
        assert_eq!(nice_step(3.0), 5);
    }
}
