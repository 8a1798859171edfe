//! The shared time axis: linear, except that idle stretches far longer than
//! everything else are cut out and replaced by a fixed-width break.
//!
//! Without breaks a curl → nginx trace is unreadable: the whole exchange
//! takes a millisecond and TIME_WAIT sixty seconds, so everything but
//! TIME_WAIT would share one pixel. The rule for a break is deliberately
//! strict, so ordinary pauses stay to scale: a gap between consecutive event
//! times is cut when it is more than [`FAR_LONGER`] times the median gap AND
//! more than [`DOMINANT`] times all smaller gaps together (it would otherwise
//! take over three quarters of the axis). Gaps are tested from the longest
//! down and the first that fails ends the search.

use std::cmp::Reverse;

use super::style::{format_instant, format_tick, text_width};

/// Width of one break on the axis, in pixels (less when there are many).
pub const BREAK_PX: f64 = 72.0;
/// A break must be this many times the median gap.
const FAR_LONGER: f64 = 20.0;
/// A break must be this many times all smaller gaps together.
const DOMINANT: f64 = 3.0;
/// At most this many breaks; the dominance rule rarely allows more than a few.
const MAX_BREAKS: usize = 12;
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
    spans: Vec<Span>,
    left: f64,
}

impl Axis {
    /// An axis over `times` (sorted, without repeats) from `left` to `left + width`.
    pub fn new(times: &[u64], left: f64, width: f64) -> Axis {
        let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let broken = long_gaps(&gaps);
        let breaks = broken.iter().filter(|&&b| b).count();
        let break_px = match breaks {
            0 => 0.0,
            n => BREAK_PX.min(width * 0.4 / n as f64),
        };
        let linear_ns: f64 =
            gaps.iter().zip(&broken).filter(|(_, &b)| !b).map(|(&g, _)| g as f64).sum();
        let scale = if linear_ns > 0.0 {
            (width - breaks as f64 * break_px).max(0.0) / linear_ns
        } else {
            0.0
        };
        let mut spans: Vec<Span> = Vec::new();
        let mut x = left;
        for (i, (&gap, &is_break)) in gaps.iter().zip(&broken).enumerate() {
            let w = if is_break { break_px } else { gap as f64 * scale };
            match spans.last_mut() {
                Some(last) if !is_break && !last.broken => {
                    last.t1 = times[i + 1];
                    last.x1 = x + w;
                }
                _ => spans.push(Span {
                    t0: times[i],
                    t1: times[i + 1],
                    x0: x,
                    x1: x + w,
                    broken: is_break,
                }),
            }
            x += w;
        }
        Axis { spans, left }
    }

    /// The x of time `t`; inside a break, proportionally across it.
    pub fn x(&self, t: u64) -> f64 {
        let i = self.spans.partition_point(|s| s.t1 < t);
        let Some(s) = self.spans.get(i).or(self.spans.last()) else {
            return self.left;
        };
        let t = t.clamp(s.t0, s.t1);
        if s.t1 == s.t0 {
            return s.x0;
        }
        s.x0 + (s.x1 - s.x0) * ((t - s.t0) as f64 / (s.t1 - s.t0) as f64)
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
            candidates.push(Tick { x: b.x0, label: format_instant(b.t0), anchor: Anchor::End });
            candidates.push(Tick { x: b.x1, label: format_instant(b.t1), anchor: Anchor::Start });
        }
        for s in self.spans.iter().filter(|s| !s.broken) {
            candidates.extend(round_ticks(s, |t| self.x(t)));
        }
        if self.spans.is_empty() {
            candidates.push(Tick {
                x: self.left,
                label: format_tick(0, 1_000_000),
                anchor: Anchor::Middle,
            });
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
/// [`TICK_SPACING_PX`].
fn round_ticks(s: &Span, x: impl Fn(u64) -> f64) -> Vec<Tick> {
    let width = s.x1 - s.x0;
    if width < 1.0 || s.t1 == s.t0 {
        return vec![Tick { x: s.x0, label: format_instant(s.t0), anchor: Anchor::Middle }];
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

/// Which gaps become breaks (see the module comment).
fn long_gaps(gaps: &[u64]) -> Vec<bool> {
    let mut out = vec![false; gaps.len()];
    if gaps.len() < 2 {
        return out;
    }
    let mut sorted = gaps.to_vec();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2] as f64;
    let mut rest: f64 = gaps.iter().map(|&g| g as f64).sum();
    let mut order: Vec<usize> = (0..gaps.len()).collect();
    order.sort_by_key(|&i| Reverse(gaps[i]));
    for &i in order.iter().take(MAX_BREAKS) {
        let gap = gaps[i] as f64;
        rest -= gap;
        if gap > FAR_LONGER * median && gap > DOMINANT * rest {
            out[i] = true;
        } else {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The curl → nginx exchange: about 0.6 ms of transitions, then TIME_WAIT.
    const CURL: [u64; 11] = [
        0,
        18_204,
        27_911,
        35_377,
        412_560,
        421_018,
        425_770,
        611_402,
        620_345,
        628_913,
        60_003_871_245,
    ];

    #[test]
    fn time_wait_becomes_a_break_and_the_exchange_keeps_its_scale() {
        let axis = Axis::new(&CURL, 100.0, 1000.0);
        let breaks: Vec<&Span> = axis.breaks().collect();
        assert_eq!(breaks.len(), 1);
        assert_eq!((breaks[0].t0, breaks[0].t1), (628_913, 60_003_871_245));
        assert!((breaks[0].x1 - breaks[0].x0 - BREAK_PX).abs() < 1e-9);
        assert!((axis.x(0) - 100.0).abs() < 1e-9);
        assert!((axis.right() - 1100.0).abs() < 1e-6);
        // The linear part is to scale: 412.56 µs of 628.913 µs.
        let expect = 100.0 + (1000.0 - BREAK_PX) * 412_560.0 / 628_913.0;
        assert!((axis.x(412_560) - expect).abs() < 1e-6);
        assert_eq!(axis.breaks_within(620_345, 60_003_871_245).count(), 1);
        assert_eq!(axis.breaks_within(0, 628_913).count(), 0);
    }

    #[test]
    fn ordinary_pauses_are_not_breaks() {
        // Evenly spaced, or one pause that is long but not dominant.
        assert!(Axis::new(&[0, 10, 20, 30, 40], 0.0, 100.0).breaks().next().is_none());
        assert!(Axis::new(&[0, 100, 200, 300, 1000], 0.0, 100.0).breaks().next().is_none());
        assert!(Axis::new(&[0, 1_000_000_000], 0.0, 100.0).breaks().next().is_none());
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
        assert!(
            ticks.iter().any(|t| t.label == "0.629 ms" && t.anchor == Anchor::End),
            "{ticks:?}"
        );
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
