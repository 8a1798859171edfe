//! Appending values to the output buffer without `core::fmt`.
//!
//! At a few hundred thousand events a second, `write!` was the largest cost
//! left in user space (perf: `core::fmt::write`, `pad_integral` and the
//! `Display` of every integer and address). Every event field goes through
//! [`Put`] instead: integers through `itoa`, IPv4 addresses octet by octet,
//! fixed-point times digit by digit. IPv6 addresses, rare and with their
//! zero-run compression rules, still take std's `Display`.

use std::borrow::Cow;
use std::io::Write;
use std::net::IpAddr;

use crate::model::{Comm, Side, TcpState};

/// Something that appends itself to an output buffer.
pub(crate) trait Put {
    fn put(&self, out: &mut Vec<u8>);
}

/// Appends each value in turn: `put!(out, "ts:", ev.ts_ns, ":")`.
macro_rules! put {
    ($out:expr, $($value:expr),+ $(,)?) => {{
        let out: &mut Vec<u8> = $out;
        $($crate::output::put::Put::put(&$value, out);)+
    }};
}
pub(crate) use put;

impl Put for str {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl Put for char {
    fn put(&self, out: &mut Vec<u8>) {
        // Quotes and separators, a byte each: no encoding, no copy call.
        match u8::try_from(*self) {
            Ok(b) if b.is_ascii() => out.push(b),
            _ => out.extend_from_slice(self.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
}

impl<T: Put + ?Sized> Put for &T {
    fn put(&self, out: &mut Vec<u8>) {
        (**self).put(out);
    }
}

macro_rules! put_integers {
    ($($t:ty),*) => {$(
        impl Put for $t {
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(itoa::Buffer::new().format(*self).as_bytes());
            }
        }
    )*};
}
put_integers!(u8, u16, u32, u64);

impl Put for std::num::NonZeroU64 {
    fn put(&self, out: &mut Vec<u8>) {
        self.get().put(out);
    }
}

impl Put for bool {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

impl Put for Cow<'_, str> {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl Put for TcpState {
    fn put(&self, out: &mut Vec<u8>) {
        match self.known_name() {
            Some(name) => name.put(out),
            None => put!(out, "UNKNOWN(", self.0, ")"),
        }
    }
}

impl Put for Side {
    fn put(&self, out: &mut Vec<u8>) {
        self.as_str().put(out);
    }
}

impl Put for Comm {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl Put for IpAddr {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            IpAddr::V4(v4) => {
                let [a, b, c, d] = v4.octets();
                put!(out, a, ".", b, ".", c, ".", d);
            }
            IpAddr::V6(v6) => {
                let _ = write!(out, "{v6}");
            }
        }
    }
}

/// `value`, or `placeholder` when it is absent (`-` in the table, nothing
/// in CSV, `null` in JSON).
pub(crate) struct Or<T>(pub Option<T>, pub &'static str);

impl<T: Put> Put for Or<T> {
    fn put(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Some(v) => v.put(out),
            None => self.1.put(out),
        }
    }
}

/// `0x`-prefixed lower-case hexadecimal (socket addresses).
pub(crate) struct Hex(pub u64);

impl Put for Hex {
    fn put(&self, out: &mut Vec<u8>) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let nibbles = (16 - self.0.leading_zeros() as usize / 4).max(1);
        out.extend_from_slice(b"0x");
        for i in (0..nibbles).rev() {
            out.push(DIGITS[(self.0 >> (i * 4)) as usize & 0xf]);
        }
    }
}

/// `value` in exactly `digits` decimal digits, zero-padded (fractions,
/// clock fields).
pub(crate) struct Padded(pub u64, pub u32);

impl Put for Padded {
    fn put(&self, out: &mut Vec<u8>) {
        let Padded(value, digits) = *self;
        let mut div = 10u64.pow(digits.saturating_sub(1));
        while div > 0 {
            out.push(b'0' + (value / div % 10) as u8);
            div /= 10;
        }
    }
}

/// Nanoseconds as milliseconds with nanosecond precision (`2.500000`): exact,
/// without float noise (JSON and CSV `prev_state_ms`).
pub(crate) struct NanosAsMs(pub u64);

impl Put for NanosAsMs {
    fn put(&self, out: &mut Vec<u8>) {
        put!(out, self.0 / 1_000_000, ".", Padded(self.0 % 1_000_000, 6));
    }
}

/// Nanoseconds as milliseconds rounded to three decimals (the table's MS).
pub(crate) struct Millis(pub u64);

impl Put for Millis {
    fn put(&self, out: &mut Vec<u8>) {
        let micros = (self.0 + 500) / 1000;
        put!(out, micros / 1000, ".", Padded(micros % 1000, 3));
    }
}

/// A duration for people, at about four significant digits: `850ns`,
/// `53us`, `1.234ms`, `60.01s` (the table's DURATION, RTT and STATES).
pub(crate) struct Human(pub u64);

impl Put for Human {
    fn put(&self, out: &mut Vec<u8>) {
        let ns = self.0;
        // Each unit is chosen after rounding, so 999.9996 ms is `1.00s`.
        let micros = (ns + 500) / 1000;
        if ns < 1000 {
            put!(out, ns, "ns");
        } else if micros < 1000 {
            put!(out, micros, "us");
        } else if micros < 1_000_000 {
            put!(out, micros / 1000, '.', Padded(micros % 1000, 3), "ms");
        } else {
            let centis = (ns + 5_000_000) / 10_000_000;
            put!(out, centis / 100, '.', Padded(centis % 100, 2), 's');
        }
    }
}

/// Appends `items` with `sep` between them, each as `each` writes it.
pub(crate) fn put_joined<T>(
    out: &mut Vec<u8>,
    sep: &str,
    items: impl IntoIterator<Item = T>,
    mut each: impl FnMut(&mut Vec<u8>, T),
) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            sep.put(out);
        }
        each(out, item);
    }
}

/// Renders a value as a `String`, for `Display` impls and tests.
pub(crate) fn to_string(value: &impl Put) -> String {
    let mut out = Vec::new();
    value.put(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_hex_match_std() {
        for v in [0u64, 1, 9, 10, 4242, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(to_string(&v), v.to_string());
            assert_eq!(to_string(&Hex(v)), format!("{v:#x}"));
        }
        assert_eq!(to_string(&Hex(0xffff_8880_1234_5678)), "0xffff888012345678");
    }

    #[test]
    fn addresses_match_std() {
        for a in [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "10.20.3.4",
            "::1",
            "2001:db8::8:800:200c:417a",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(to_string(&ip), ip.to_string());
        }
    }

    #[test]
    fn fixed_point_times() {
        assert_eq!(to_string(&NanosAsMs(2_500_000)), "2.500000");
        assert_eq!(to_string(&NanosAsMs(61_797_000_123)), "61797.000123");
        assert_eq!(to_string(&NanosAsMs(7)), "0.000007");
        assert_eq!(to_string(&Millis(2_500_000)), "2.500");
        assert_eq!(to_string(&Millis(1_999_600)), "2.000");
        assert_eq!(to_string(&Padded(5, 2)), "05");
        assert_eq!(to_string(&Padded(123_456, 6)), "123456");
    }

    #[test]
    fn human_durations_pick_the_unit_after_rounding() {
        for (ns, want) in [
            (0, "0ns"),
            (999, "999ns"),
            (1_499, "1us"),
            (51_234, "51us"),
            (999_499, "999us"),
            (999_500, "1.000ms"),
            (1_234_400, "1.234ms"),
            (999_999_499, "999.999ms"),
            (999_999_500, "1.00s"),
            (60_005_000_000, "60.01s"),
            (3_723_450_000_000, "3723.45s"),
        ] {
            assert_eq!(to_string(&Human(ns)), want, "{ns} ns");
        }
    }

    #[test]
    fn joined_puts_separators_between_only() {
        let mut out = Vec::new();
        put_joined(&mut out, ", ", [1u8, 2, 3], |out, n| n.put(out));
        put_joined(&mut out, ", ", [0u8; 0], |out, n| n.put(out));
        assert_eq!(out, b"1, 2, 3");
    }

    #[test]
    fn states_and_placeholders() {
        assert_eq!(to_string(&TcpState(6)), "TIME_WAIT");
        assert_eq!(to_string(&TcpState(200)), "UNKNOWN(200)");
        assert_eq!(to_string(&Or(None::<u32>, "-")), "-");
        assert_eq!(to_string(&Or(Some(5u32), "-")), "5");
        let mut out = Vec::new();
        put!(&mut out, "a", 1u8, ':', true);
        assert_eq!(out, b"a1:true");
    }
}
