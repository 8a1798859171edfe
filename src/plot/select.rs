//! `--port`, `--conn` and `--max-conns`: which groups make the picture.
//!
//! Filters work on whole groups (a connection is kept with both its lanes)
//! and the limit keeps the earliest groups, so the picture of a long trace
//! starts where the trace starts. Listener groups have their own budget of
//! `max_conns`: one busy listener must not push every connection out.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use anyhow::{anyhow, bail, Result};

use super::model::GroupKind;
use super::PlotOptions;

/// The groups kept, in their original order, and how many the limit dropped.
#[derive(Debug)]
pub(super) struct Selection<T> {
    pub kept: Vec<T>,
    pub omitted_conns: usize,
    pub omitted_listeners: usize,
}

/// Applies the filters and the limit of `opts` to `items` (groups in order
/// of their first event), each described by `kind`.
pub(super) fn select<T>(items: Vec<T>, kind: impl Fn(&T) -> &GroupKind, opts: &PlotOptions) -> Result<Selection<T>> {
    if opts.max_conns == 0 {
        bail!("--max-conns 0 would draw nothing: give at least 1");
    }
    let spec = opts.conn.as_deref().map(ConnSpec::parse).transpose()?;
    let filter = Filter { port: opts.port, spec };
    let mut ports = BTreeSet::new();
    let mut matching = Vec::new();
    for item in items {
        let ends = endpoints(kind(&item));
        ports.extend(ends.iter().map(SocketAddr::port));
        if filter.keeps(&ends) {
            matching.push(item);
        }
    }
    if matching.is_empty() {
        bail!("{}", filter.nothing_left(&ports));
    }
    let mut sel = Selection { kept: Vec::new(), omitted_conns: 0, omitted_listeners: 0 };
    let (mut conns, mut listeners) = (0usize, 0usize);
    for item in matching {
        let (count, omitted) = match kind(&item) {
            GroupKind::Listener(_) => (&mut listeners, &mut sel.omitted_listeners),
            _ => (&mut conns, &mut sel.omitted_conns),
        };
        if *count < opts.max_conns {
            *count += 1;
            sel.kept.push(item);
        } else {
            *omitted += 1;
        }
    }
    Ok(sel)
}

/// A group's known endpoints: server then client, or the listening one.
fn endpoints(kind: &GroupKind) -> Vec<SocketAddr> {
    match *kind {
        GroupKind::Connection { server, client } => vec![server, client],
        GroupKind::Listener(Some(ep)) => vec![ep],
        GroupKind::Listener(None) | GroupKind::Unaddressed => Vec::new(),
    }
}

struct Filter {
    port: Option<u16>,
    spec: Option<ConnSpec>,
}

impl Filter {
    fn keeps(&self, ends: &[SocketAddr]) -> bool {
        self.port.is_none_or(|p| ends.iter().any(|e| e.port() == p))
            && self.spec.as_ref().is_none_or(|s| s.matches(ends))
    }

    /// Why nothing matched, and what would.
    fn nothing_left(&self, ports: &BTreeSet<u16>) -> String {
        let asked = match (self.port, &self.spec) {
            (Some(p), Some(_)) => format!("--port {p} together with --conn"),
            (Some(p), None) => format!("--port {p}"),
            _ => "--conn".to_string(),
        };
        if ports.is_empty() {
            return format!(
                "{asked} needs addresses, but this trace has none (the original ts:<ns>:<side>:<OLD>:<NEW> \
                 lines carry none): trace with `tcpstate -o json` and plot that, or drop {asked}"
            );
        }
        let shown: Vec<String> = ports.iter().take(12).map(u16::to_string).collect();
        let more = if ports.len() > shown.len() { ", …" } else { "" };
        format!("no connection matches {asked}; the trace has ports {}{more}", shown.join(", "))
    }
}

/// `--conn`: both endpoints in either order, or one endpoint.
#[derive(Debug, PartialEq)]
enum ConnSpec {
    Pair(SocketAddr, SocketAddr),
    One(SocketAddr),
}

impl ConnSpec {
    fn parse(text: &str) -> Result<ConnSpec> {
        let endpoint =
            |s: &str| s.trim().parse::<SocketAddr>().ok().map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()));
        let parsed = match text.split_once('-') {
            Some((a, b)) => endpoint(a).zip(endpoint(b)).map(|(a, b)| ConnSpec::Pair(a, b)),
            None => endpoint(text).map(ConnSpec::One),
        };
        parsed.ok_or_else(|| {
            anyhow!(
                "--conn '{text}' is not SADDR:SPORT-DADDR:DPORT or ADDR:PORT: write e.g. \
                 127.0.0.1:80-127.0.0.1:51234, [::1]:80-[::1]:40000 or 127.0.0.1:51234"
            )
        })
    }

    fn matches(&self, ends: &[SocketAddr]) -> bool {
        match *self {
            ConnSpec::Pair(a, b) => ends == [a, b] || ends == [b, a],
            ConnSpec::One(a) => ends.contains(&a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(server: &str, client: &str) -> GroupKind {
        GroupKind::Connection { server: server.parse().unwrap(), client: client.parse().unwrap() }
    }

    fn run(items: Vec<GroupKind>, opts: PlotOptions) -> Result<Selection<GroupKind>> {
        select(items, |k| k, &opts)
    }

    #[test]
    fn conn_spec_takes_either_order_and_one_endpoint() {
        let a: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let pair = ConnSpec::parse("127.0.0.1:5000-127.0.0.1:80").unwrap();
        assert!(pair.matches(&[a, b]) && pair.matches(&[b, a]));
        assert!(!pair.matches(&[a]));
        assert!(ConnSpec::parse("[::ffff:127.0.0.1]:80").unwrap().matches(&[a, b]));
        assert_eq!(
            ConnSpec::parse(" [::1]:80 - [::1]:9 ").unwrap(),
            ConnSpec::Pair("[::1]:80".parse().unwrap(), "[::1]:9".parse().unwrap())
        );
        for bad in ["", "80", "1.2.3.4", "a-b", "127.0.0.1:80-"] {
            let err = ConnSpec::parse(bad).unwrap_err().to_string();
            assert!(err.contains("e.g."), "{bad}: {err}");
        }
    }

    #[test]
    fn port_filter_keeps_either_end_and_listeners() {
        let items = vec![
            GroupKind::Listener(Some("0.0.0.0:80".parse().unwrap())),
            conn("127.0.0.1:80", "127.0.0.1:5000"),
            conn("127.0.0.1:22", "127.0.0.1:6000"),
        ];
        let sel = run(items.clone(), PlotOptions { port: Some(80), ..Default::default() }).unwrap();
        assert_eq!(sel.kept, items[..2]);
        let sel = run(items.clone(), PlotOptions { port: Some(6000), ..Default::default() }).unwrap();
        assert_eq!(sel.kept, items[2..]);
        let err = run(items, PlotOptions { port: Some(443), ..Default::default() }).unwrap_err().to_string();
        assert!(err.contains("--port 443") && err.contains("22, 80, 5000, 6000"), "{err}");
    }

    #[test]
    fn filters_on_a_trace_without_addresses_explain_the_fix() {
        let opts = PlotOptions { port: Some(80), ..Default::default() };
        let err = run(vec![GroupKind::Unaddressed], opts).unwrap_err().to_string();
        assert!(err.contains("-o json"), "{err}");
    }

    #[test]
    fn limit_keeps_the_first_and_counts_the_rest() {
        let mut items: Vec<GroupKind> =
            (0..5).map(|i| conn("127.0.0.1:80", &format!("127.0.0.1:{}", 5000 + i))).collect();
        items.insert(2, GroupKind::Listener(None));
        let sel = run(items.clone(), PlotOptions { max_conns: 2, ..Default::default() }).unwrap();
        assert_eq!(sel.kept, vec![items[0], items[1], items[2]]);
        assert_eq!((sel.omitted_conns, sel.omitted_listeners), (3, 0));
        assert!(run(items, PlotOptions { max_conns: 0, ..Default::default() }).is_err());
    }
}
