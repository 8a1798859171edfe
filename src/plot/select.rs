//! `--port`, `--conn`, `--container` and `--max-conns`: which groups make
//! the picture.
//!
//! Filters work on whole groups (a connection is kept with both its lanes)
//! and the limit keeps the earliest groups, so the picture of a long trace
//! starts where the trace starts. Listener groups have their own budget of
//! `max_conns`: one busy listener must not push every connection out.
//! `--container` keeps a connection with either end in the container, like
//! `--port` does with either end's port.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use anyhow::{anyhow, bail, Result};

use super::container::first_seen;
use super::model::GroupKind;
use super::{ContainerTag, PlotOptions};

/// What the filters look at in a group.
pub(super) trait Selectable {
    fn kind(&self) -> &GroupKind;
    /// The containers of its sockets.
    fn containers(&self) -> Vec<ContainerTag>;
}

/// The groups kept, in their original order, and how many the limit dropped.
#[derive(Debug)]
pub(super) struct Selection<T> {
    pub kept: Vec<T>,
    pub omitted_conns: usize,
    pub omitted_listeners: usize,
}

/// Applies the filters and the limit of `opts` to `items` (groups in order
/// of their first event).
pub(super) fn select<T: Selectable>(items: Vec<T>, opts: &PlotOptions) -> Result<Selection<T>> {
    if opts.max_conns == 0 {
        bail!("--max-conns 0 would draw nothing: give at least 1");
    }
    let spec = opts.conn.as_deref().map(ConnSpec::parse).transpose()?;
    let container = opts.container.as_deref().map(container_spec).transpose()?;
    let filter = Filter { port: opts.port, spec, container };
    let mut seen = Seen::default();
    let mut matching = Vec::new();
    for item in items {
        let ends = endpoints(item.kind());
        let containers = item.containers();
        seen.add(&ends, &containers);
        if filter.keeps(&ends, &containers) {
            matching.push(item);
        }
    }
    if matching.is_empty() {
        bail!("{}", filter.nothing_left(&seen));
    }
    let mut sel = Selection { kept: Vec::new(), omitted_conns: 0, omitted_listeners: 0 };
    let (mut conns, mut listeners) = (0usize, 0usize);
    for item in matching {
        let (count, omitted) = match item.kind() {
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

/// The ports and containers of all groups, for the message when nothing
/// matches.
#[derive(Default)]
struct Seen {
    ports: BTreeSet<u16>,
    /// In order of appearance, with repeats.
    containers: Vec<ContainerTag>,
}

impl Seen {
    fn add(&mut self, ends: &[SocketAddr], containers: &[ContainerTag]) {
        self.ports.extend(ends.iter().map(SocketAddr::port));
        self.containers.extend(containers);
    }
}

struct Filter<'a> {
    port: Option<u16>,
    spec: Option<ConnSpec>,
    container: Option<&'a str>,
}

impl Filter<'_> {
    fn keeps(&self, ends: &[SocketAddr], containers: &[ContainerTag]) -> bool {
        self.port.is_none_or(|p| ends.iter().any(|e| e.port() == p))
            && self.spec.as_ref().is_none_or(|s| s.matches(ends))
            && self.container.is_none_or(|id| containers.iter().any(|c| c.matches(id)))
    }

    /// Why nothing matched, and what would.
    fn nothing_left(&self, seen: &Seen) -> String {
        let mut asked = Vec::new();
        if let Some(p) = self.port {
            asked.push(format!("--port {p}"));
        }
        if self.spec.is_some() {
            asked.push("--conn".to_string());
        }
        if let Some(id) = self.container {
            asked.push(format!("--container {id}"));
        }
        let asked = asked.join(" together with ");
        let by_address = self.port.is_some() || self.spec.is_some();
        if by_address && seen.ports.is_empty() {
            return format!(
                "{asked} needs addresses, but this trace has none (the original ts:<ns>:<side>:<OLD>:<NEW> \
                 lines carry none): trace with `tcpstate -o json` and plot that, or drop {asked}"
            );
        }
        if self.container.is_some() && seen.containers.is_empty() {
            return format!(
                "{asked} needs containers, but no event of this trace names one (container_id is null or \
                 missing: sockets in no container, or a trace from before containers); drop --container"
            );
        }
        let mut has = Vec::new();
        if by_address {
            has.push(format!("ports {}", some_of(seen.ports.iter())));
        }
        if self.container.is_some() {
            let containers = first_seen(seen.containers.iter().copied());
            has.push(format!("containers {}", some_of(containers.iter().map(ContainerTag::short_id))));
        }
        format!("no connection matches {asked}; the trace has {}", has.join(" and "))
    }
}

/// The first dozen of `items`, then `…` if there are more.
fn some_of<T: ToString>(items: impl ExactSizeIterator<Item = T>) -> String {
    let total = items.len();
    let shown: Vec<String> = items.take(12).map(|i| i.to_string()).collect();
    let more = if total > shown.len() { ", …" } else { "" };
    format!("{}{more}", shown.join(", "))
}

/// `--container`: a container id or its first characters. Kubernetes'
/// `containerd://<id>` form (a pod's `containerStatuses`) is taken too.
fn container_spec(text: &str) -> Result<&str> {
    let id = text.trim();
    let id = id.split_once("://").map_or(id, |(_, id)| id);
    // A cgroup path or a stray space is the likely mistake.
    if id.is_empty() || id.chars().any(|c| c == '/' || c.is_whitespace() || c.is_control()) {
        bail!(
            "--container '{text}' is not a container id: give its first characters as `docker ps` or \
             `crictl ps` show them (e.g. 0123456789ab), or the whole id"
        );
    }
    Ok(id)
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

    impl Selectable for GroupKind {
        fn kind(&self) -> &GroupKind {
            self
        }

        fn containers(&self) -> Vec<ContainerTag> {
            Vec::new()
        }
    }

    fn run(items: Vec<GroupKind>, opts: PlotOptions) -> Result<Selection<GroupKind>> {
        select(items, &opts)
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

    /// A group with containers.
    struct InContainers(GroupKind, Vec<ContainerTag>);

    impl Selectable for InContainers {
        fn kind(&self) -> &GroupKind {
            &self.0
        }

        fn containers(&self) -> Vec<ContainerTag> {
            self.1.clone()
        }
    }

    #[test]
    fn container_filter_keeps_either_end_by_id_prefix() {
        let a = ContainerTag::new("aaaa56789abcdef0", None).unwrap();
        let b = ContainerTag::new("bbbb56789abcdef0", None).unwrap();
        let items = || {
            vec![
                InContainers(conn("10.0.0.2:80", "10.0.0.3:5000"), vec![a, b]),
                InContainers(conn("10.0.0.2:80", "10.0.0.1:5001"), vec![a]),
                InContainers(conn("127.0.0.1:22", "127.0.0.1:6000"), vec![]),
            ]
        };
        let kept = |id: &str, port: Option<u16>| -> Result<Vec<GroupKind>> {
            let opts = PlotOptions { container: Some(id.to_string()), port, ..Default::default() };
            Ok(select(items(), &opts)?.kept.into_iter().map(|i| i.0).collect())
        };
        let all: Vec<GroupKind> = items().into_iter().map(|i| i.0).collect();
        assert_eq!(kept("aaaa", None).unwrap(), all[..2]);
        assert_eq!(kept("bbbb56789abcdef0", None).unwrap(), all[..1]);
        assert_eq!(kept(" containerd://bbbb5 ", None).unwrap(), all[..1]);
        let err = kept("cccc", None).unwrap_err().to_string();
        assert!(
            err.contains("no connection matches --container cccc; the trace has containers aaaa56789abc, bbbb56789abc"),
            "{err}"
        );
        let err = kept("bbbb", Some(5001)).unwrap_err().to_string();
        assert!(err.contains("--port 5001 together with --container bbbb; the trace has ports 22, 80"), "{err}");
        assert!(err.contains(" and containers aaaa56789abc, bbbb56789abc"), "{err}");
        for bad in ["", " ", "/system.slice/docker-aaaa.scope", "aa bb"] {
            let err = kept(bad, None).unwrap_err().to_string();
            assert!(err.contains("is not a container id") && err.contains("e.g."), "{bad:?}: {err}");
        }
        let opts = PlotOptions { container: Some("aaaa".into()), ..Default::default() };
        let err = run(vec![conn("127.0.0.1:80", "127.0.0.1:5000")], opts).unwrap_err().to_string();
        assert!(err.contains("needs containers, but no event of this trace names one"), "{err}");
    }
}
