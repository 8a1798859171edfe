//! Colours, text measurement and number formats shared by the axis and the
//! drawing, so that one state has one colour and one time one spelling
//! everywhere in the picture.

use crate::state::TcpState;

/// Font stack for every text element. DejaVu Sans first: it is what Debian's
/// `fonts-dejavu-core` installs and what the PNG renderer finds on CI.
pub const FONT_FAMILY: &str = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif";

/// The fixed colour of each kernel state, grouped by phase: blues while
/// opening, green when established, warm colours while closing, greys when
/// closed or idle, so the picture reads at a glance.
pub fn state_colour(state: TcpState) -> &'static str {
    match state {
        TcpState::LISTEN => "#17becf",
        TcpState::SYN_SENT => "#9ecae1",
        TcpState::SYN_RECV => "#4f8fcf",
        TcpState::NEW_SYN_RECV => "#c6dbef",
        TcpState::ESTABLISHED => "#2ca02c",
        TcpState::FIN_WAIT1 => "#ffbb78",
        TcpState::FIN_WAIT2 => "#ff7f0e",
        TcpState::CLOSING => "#e377c2",
        TcpState::TIME_WAIT => "#d62728",
        TcpState::CLOSE_WAIT => "#c5b0d5",
        TcpState::LAST_ACK => "#9467bd",
        TcpState::CLOSE => "#9a9a9a",
        TcpState::BOUND_INACTIVE => "#bcbd22",
        // States this build does not know: browns, stable per number.
        TcpState(n) => ["#8c564b", "#c49c94", "#a0522d", "#d2b48c"][usize::from(n) % 4],
    }
}

/// Black or white, whichever reads better on `background` (`#rrggbb`).
pub fn text_colour_on(background: &str) -> &'static str {
    let channel =
        |i: usize| background.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()).map_or(0.0, f64::from);
    let luma = 0.299 * channel(1) + 0.587 * channel(3) + 0.114 * channel(5);
    if luma > 150.0 {
        "#111111"
    } else {
        "#ffffff"
    }
}

/// Estimated width in pixels of `text` in DejaVu Sans at `size` px.
///
/// The SVG is written without font access, so label placement needs an
/// estimate; these per-class advances are DejaVu Sans's own, rounded up, so
/// the estimate errs on the wide side and labels do not collide.
pub fn text_width(text: &str, size: f64) -> f64 {
    let em: f64 = text
        .chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' => 0.30,
            ' ' | '(' | ')' | '[' | ']' | 'f' | 't' | 'r' | '-' => 0.40,
            'm' | 'w' | 'M' | 'W' => 0.95,
            c if c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' => 0.70,
            _ => 0.62,
        })
        .sum();
    em * size
}

/// Cuts `text` to at most `max` pixels wide, ending in `…` when cut.
pub fn fit_text(text: &str, size: f64, max: f64) -> String {
    if text_width(text, size) <= max {
        return text.to_string();
    }
    let mut out = String::new();
    for c in text.chars() {
        out.push(c);
        if text_width(&out, size) + text_width("…", size) > max {
            out.pop();
            break;
        }
    }
    out.push('…');
    out
}

/// A transition's time since the first event, as marker labels show it:
/// microsecond precision in ms for the first 10 s, then seconds.
pub fn format_instant(t_ns: u64) -> String {
    if t_ns < 10_000_000_000 {
        format!("{:.3} ms", t_ns as f64 / 1e6)
    } else {
        format!("{:.3} s", t_ns as f64 / 1e9)
    }
}

/// A duration with three significant figures and a unit that fits:
/// `60.0 s`, `2.50 s`, `412 ms`, `1.25 ms`, `35 µs`.
pub fn format_duration(ns: u64) -> String {
    let v = ns as f64;
    match ns {
        0..=999 => format!("{ns} ns"),
        1_000..=999_999 => format!("{} µs", three_figures(v / 1e3)),
        1_000_000..=999_999_999 => format!("{} ms", three_figures(v / 1e6)),
        _ => format!("{} s", three_figures(v / 1e9)),
    }
}

/// A byte count in binary units, with three significant figures above
/// 1 KiB: `78 B`, `10.0 KiB`, `1.50 MiB`.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{} {}", three_figures(v), UNITS[unit])
}

fn three_figures(v: f64) -> String {
    match v {
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 10.0 => format!("{v:.1}"),
        v => format!("{v:.2}"),
    }
}

/// An axis tick at `t_ns` where ticks are `step_ns` apart, in the unit
/// [`format_instant`] uses at that time (ms, or s from 10 s on, or when the
/// step is a second or more) with just enough decimals for the step.
pub fn format_tick(t_ns: u64, step_ns: u64) -> String {
    let (value, step, unit) = if step_ns >= 1_000_000_000 || t_ns >= 10_000_000_000 {
        (t_ns as f64 / 1e9, step_ns as f64 / 1e9, "s")
    } else {
        (t_ns as f64 / 1e6, step_ns as f64 / 1e6, "ms")
    };
    let decimals = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
    format!("{value:.decimals$} {unit}")
}

/// Rounds a coordinate to 1/100 px: enough for any renderer, and keeps the
/// SVG short and stable for tests.
pub fn px(v: f64) -> f64 {
    if v.is_finite() {
        (v * 100.0).round() / 100.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_state_has_its_own_colour() {
        let mut colours: Vec<&str> = TcpState::all().map(state_colour).collect();
        colours.sort_unstable();
        colours.dedup();
        assert_eq!(colours.len(), TcpState::all().count());
        assert_eq!(state_colour(TcpState(40)), state_colour(TcpState(40)));
    }

    #[test]
    fn text_contrasts_with_its_background() {
        assert_eq!(text_colour_on("#ffffff"), "#111111");
        assert_eq!(text_colour_on("#d62728"), "#ffffff");
        assert_eq!(text_colour_on("bogus"), "#ffffff");
    }

    #[test]
    fn times_and_durations_read_naturally() {
        assert_eq!(format_instant(412_345), "0.412 ms");
        assert_eq!(format_instant(60_003_871_245), "60.004 s");
        assert_eq!(format_duration(60_003_250_900), "60.0 s");
        assert_eq!(format_duration(2_500_000_000), "2.50 s");
        assert_eq!(format_duration(412_000_000), "412 ms");
        assert_eq!(format_duration(35_000), "35.0 µs");
        assert_eq!(format_duration(12), "12 ns");
        assert_eq!(format_bytes(78), "78 B");
        assert_eq!(format_bytes(10_240), "10.0 KiB");
        assert_eq!(format_bytes(1_572_864), "1.50 MiB");
        assert_eq!(format_bytes(u64::MAX), "16384 PiB");
        assert_eq!(format_tick(200_000, 100_000), "0.2 ms");
        assert_eq!(format_tick(60_000_000_000, 5_000_000_000), "60 s");
        assert_eq!(format_tick(3_000_000, 1_000_000), "3 ms");
        assert_eq!(format_tick(60_200_000_000, 100_000_000), "60.2 s");
    }

    #[test]
    fn long_text_is_cut_to_fit() {
        let cut = fit_text("client [2001:db8::1234:5678:9abc]:51234", 11.0, 120.0);
        assert!(cut.ends_with('…') && text_width(&cut, 11.0) <= 120.0, "{cut}");
        assert_eq!(fit_text("server", 11.0, 120.0), "server");
    }
}
