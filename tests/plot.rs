//! `tcpstate plot` through the library API: sample traces of curl → nginx
//! on loopback in both input formats (tests/data/plot), the SVG and PNG they
//! make, and property tests that no input makes the plotter panic.
#![cfg(feature = "plot")]

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use resvg::tiny_skia::Pixmap;
use tcpstate::conn::EndCause;
use tcpstate::plot::model::{GroupKind, Lane, Role};
use tcpstate::plot::{
    build_timeline, parse_trace, render_labelled_svg, render_png, render_svg, run, ConnEnd, ContainerTag, Ends,
    PlotArgs, PlotEvent, PlotOptions, Side, Tuple,
};
use tcpstate::state::TcpState;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/plot").join(name)
}

fn events(name: &str) -> Vec<PlotEvent> {
    let (events, warnings) = parse_trace(&fs::read(data(name)).unwrap(), true).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    events
}

fn all_conns() -> PlotOptions {
    PlotOptions { max_conns: 1000, ..PlotOptions::default() }
}

/// The text content of every `<text>` element.
fn texts(svg: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_text = false;
    for event in svg::read(svg).unwrap() {
        match event {
            svg::parser::Event::Tag("text", svg::node::element::tag::Type::Start, _) => in_text = true,
            svg::parser::Event::Tag("text", _, _) => in_text = false,
            svg::parser::Event::Text(t) if in_text => out.push(t.to_string()),
            svg::parser::Event::Error(e) => panic!("SVG does not parse: {e:?}"),
            _ => {}
        }
    }
    out
}

fn lanes_of(t: &tcpstate::plot::Timeline) -> Vec<Vec<Lane>> {
    t.groups.iter().map(|g| g.lanes.clone()).collect()
}

#[test]
fn both_formats_give_the_same_picture_model() {
    for name in ["curl_nginx", "curl_nginx_x50"] {
        let original = build_timeline(&events(&format!("{name}.log")), &all_conns()).unwrap();
        let json = build_timeline(&events(&format!("{name}.jsonl")), &all_conns()).unwrap();
        assert_eq!(original.t0_ns, json.t0_ns, "{name}");
        assert_eq!(lanes_of(&original), lanes_of(&json), "{name}: lanes, segments and marks differ");
        assert_eq!(original.times(), json.times());
        assert_eq!(original.states(), json.states());
    }
}

#[test]
fn the_curl_nginx_model_has_the_reference_sequences() {
    let t = build_timeline(&events("curl_nginx.jsonl"), &PlotOptions::default()).unwrap();
    assert_eq!(t.groups.len(), 1);
    assert_eq!(
        t.groups[0].kind,
        GroupKind::Connection { server: "127.0.0.1:80".parse().unwrap(), client: "127.0.0.1:51234".parse().unwrap() }
    );
    let states = |l: &Lane| l.segments.iter().map(|s| s.state.to_string()).collect::<Vec<_>>().join(" ");
    let [server, client] = &t.groups[0].lanes[..] else { panic!("two lanes expected") };
    assert_eq!(server.role, Role::Server);
    assert_eq!(states(server), "SYN_RECV ESTABLISHED CLOSE_WAIT LAST_ACK CLOSE");
    assert_eq!(client.role, Role::Client);
    assert_eq!(states(client), "SYN_SENT ESTABLISHED FIN_WAIT1 FIN_WAIT2 TIME_WAIT CLOSE");
    let time_wait = client.segments[4];
    assert_eq!(time_wait.end_ns.unwrap() - time_wait.start_ns, 60_003_250_900);
    assert_eq!(client.segments[5].end_ns, None);
}

/// The lanes' states in order, one string per lane.
fn lane_states(g: &tcpstate::plot::model::Group) -> Vec<String> {
    g.lanes.iter().map(|l| l.segments.iter().map(|s| s.state.to_string()).collect::<Vec<_>>().join(" ")).collect()
}

#[test]
fn connect_s_port_0_event_joins_its_connection() {
    // As the kernel reports it: connect() enters SYN_SENT before it picks
    // the local port.
    for name in ["curl_nginx.jsonl", "curl_nginx_x50.jsonl"] {
        let evs = events(name);
        let first_connects = evs.iter().filter(|e| e.old == TcpState::CLOSE && e.new == TcpState::SYN_SENT);
        assert!(first_connects.clone().count() > 0);
        assert!(first_connects.clone().all(|e| e.conn.unwrap().sport == 0), "{name}");
        // With socket addresses, and without them (by continuity).
        let without: Vec<PlotEvent> = evs.iter().map(|e| PlotEvent { socket: None, ..*e }).collect();
        for evs in [evs.clone(), without] {
            let t = build_timeline(&evs, &all_conns()).unwrap();
            let conns: Vec<_> = t.groups.iter().filter(|g| matches!(g.kind, GroupKind::Connection { .. })).collect();
            assert_eq!(conns.len(), first_connects.clone().count(), "{name}");
            for g in conns {
                let GroupKind::Connection { client, .. } = g.kind else { unreachable!() };
                assert_ne!(client.port(), 0, "{name}: {:?}", g.kind);
                let [server, client] = &lane_states(g)[..] else { panic!("two lanes") };
                assert!(server.starts_with("SYN_RECV ESTABLISHED"), "{name}: {server}");
                assert!(client.starts_with("SYN_SENT ESTABLISHED"), "{name}: {client}");
            }
        }
    }
}

#[test]
fn the_demo_trace_is_one_connection_and_its_listener() {
    // `make demo`: nginx starts during the trace, curl fetches a page, nginx
    // stops, and TIME_WAIT ends early when the namespace is deleted.
    let t = build_timeline(&events("demo.jsonl"), &PlotOptions::default()).unwrap();
    let kinds: Vec<GroupKind> = t.groups.iter().map(|g| g.kind).collect();
    assert_eq!(
        kinds,
        [
            GroupKind::Listener(Some("127.0.0.1:8089".parse().unwrap())),
            GroupKind::Connection {
                server: "127.0.0.1:8089".parse().unwrap(),
                client: "127.0.0.1:34084".parse().unwrap()
            }
        ]
    );
    assert_eq!(lane_states(&t.groups[0]), ["LISTEN CLOSE"]);
    // The original tool's lines (no addresses) tell the same story.
    let bare: Vec<PlotEvent> =
        events("demo.jsonl").into_iter().map(|e| PlotEvent { conn: None, socket: None, ..e }).collect();
    let original = build_timeline(&bare, &PlotOptions::default()).unwrap();
    assert_eq!(lanes_of(&original), lanes_of(&t));
    assert_eq!(
        lane_states(&t.groups[1]),
        ["SYN_RECV ESTABLISHED CLOSE_WAIT LAST_ACK CLOSE", "SYN_SENT ESTABLISHED FIN_WAIT1 FIN_WAIT2 TIME_WAIT CLOSE"]
    );
}

#[test]
fn the_demo_svg_cuts_the_idle_stretches_and_says_how_long_they_were() {
    let svg = render_svg(&events("demo.jsonl"), &PlotOptions::default()).unwrap();
    let texts = texts(&svg);
    let has = |s: &str| texts.iter().any(|t| t == s);
    // Every transition keeps its label: the exchange is no longer squeezed
    // into a few pixels next to the idle LISTEN and TIME_WAIT.
    for expected in [
        "0.000 ms:LISTEN",
        "90.387 ms:SYN_SENT",
        "90.426 ms:ESTABLISHED",
        "90.432 ms:SYN_RECV",
        "90.439 ms:ESTABLISHED",
        "92.689 ms:FIN_WAIT1",
        "92.695 ms:CLOSE_WAIT",
        "92.706 ms:LAST_ACK",
        "92.709 ms:FIN_WAIT2",
        "92.714 ms:TIME_WAIT",
        "92.721 ms:CLOSE",
        "313.385 ms:CLOSE",
        "337.683 ms:CLOSE",
        // The real lengths: LISTEN, TIME_WAIT, and the axis' jumps.
        "313 ms",
        "245 ms",
        "+90.4 ms",
        "+221 ms",
    ] {
        assert!(has(expected), "no text {expected:?} in {texts:?}");
    }
    assert!(svg.matches("without events, not to scale").count() >= 1);
}

#[test]
fn the_curl_nginx_svg_shows_lanes_states_and_the_time_wait_break() {
    let svg = render_svg(&events("curl_nginx.jsonl"), &PlotOptions::default()).unwrap();
    let texts = texts(&svg);
    let has = |s: &str| texts.iter().any(|t| t == s);
    for expected in [
        "server 127.0.0.1:80",
        "client 127.0.0.1:51234",
        "ESTABLISHED",
        "CLOSE_WAIT",
        "FIN_WAIT2",
        "TIME_WAIT",
        "0.000 ms:SYN_SENT",
        "0.028 ms:ESTABLISHED",
        "0.620 ms:TIME_WAIT",
        "60.004 s:CLOSE",
        // The TIME_WAIT segment's real length, written in its tear, and the
        // time the axis break stands for.
        "60.0 s",
        "+60.0 s",
    ] {
        assert!(has(expected), "no text {expected:?} in {texts:?}");
    }
    // Two white zigzag tears across the TIME_WAIT bar, and the shaded band.
    let tears = svg.lines().filter(|l| l.starts_with("<polyline") && l.contains("#ffffff"));
    assert_eq!(tears.count(), 2, "{svg}");
    assert!(svg.contains("without events, not to scale"));
    // The same in the original format, which has no addresses.
    let texts = self::texts(&render_svg(&events("curl_nginx.log"), &PlotOptions::default()).unwrap());
    assert!(texts.iter().any(|t| t == "server") && texts.iter().any(|t| t == "client"), "{texts:?}");
    assert!(texts.iter().any(|t| t == "60.0 s"));
}

#[test]
fn the_png_is_not_blank_and_has_the_svg_size() {
    let svg = render_svg(&events("curl_nginx.jsonl"), &PlotOptions::default()).unwrap();
    let png = render_png(&svg).unwrap();
    let pixmap = Pixmap::decode_png(&png).unwrap();
    assert_eq!(pixmap.width(), 1200);
    let height: f64 = svg.split("height=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
    assert_eq!(f64::from(pixmap.height()), height);
    let pixels = pixmap.pixels();
    let white = pixels.iter().filter(|p| (p.red(), p.green(), p.blue()) == (255, 255, 255)).count();
    assert!(white < pixels.len() * 95 / 100, "almost blank: {white} of {} white", pixels.len());
    // TIME_WAIT's red (#d62728) and ESTABLISHED's green (#2ca02c) are drawn.
    for (r, g, b) in [(0xd6, 0x27, 0x28), (0x2c, 0xa0, 0x2c)] {
        assert!(pixels.iter().any(|p| (p.red(), p.green(), p.blue()) == (r, g, b)), "no #{r:02x}{g:02x}{b:02x}");
    }
}

#[test]
fn fifty_connections_are_limited_and_the_rest_counted() {
    let evs = events("curl_nginx_x50.jsonl");
    let svg = render_svg(&evs, &PlotOptions::default()).unwrap();
    let texts = texts(&svg);
    assert!(texts.iter().any(|t| t.starts_with("30 more connections not drawn (--max-conns 20)")), "{texts:?}");
    assert!(texts.iter().any(|t| t == "listener 0.0.0.0:80"));
    assert_eq!(texts.iter().filter(|t| t.starts_with("client 127.0.0.1:")).count(), 20);
    // The compact layout leaves marker labels to tooltips.
    assert!(!texts.iter().any(|t| t.contains(" ms:")));
    let all = render_svg(&evs, &all_conns()).unwrap();
    assert!(!all.contains("more connections not drawn"));
}

#[test]
fn port_and_conn_filters_pick_connections() {
    let evs = events("curl_nginx_x50.jsonl");
    let t = build_timeline(&evs, &PlotOptions { port: Some(40313), ..PlotOptions::default() }).unwrap();
    assert_eq!(t.groups.len(), 1);
    let spec = "127.0.0.1:40313-127.0.0.1:80".to_string();
    let by_conn = build_timeline(&evs, &PlotOptions { conn: Some(spec), ..PlotOptions::default() }).unwrap();
    assert_eq!(lanes_of(&by_conn), lanes_of(&t));
    // One connection is drawn in the detailed layout, labels and all.
    let svg = render_svg(&evs, &PlotOptions { port: Some(40313), ..PlotOptions::default() }).unwrap();
    assert!(texts(&svg).iter().any(|t| t.ends_with(" ms:ESTABLISHED")));
    let err = render_svg(&evs, &PlotOptions { port: Some(443), ..PlotOptions::default() }).unwrap_err();
    assert!(err.to_string().contains("no connection matches --port 443"), "{err}");
    let err = render_svg(&evs, &PlotOptions { conn: Some("nonsense".into()), ..PlotOptions::default() }).unwrap_err();
    assert!(err.to_string().contains("e.g."), "{err}");
    let err = render_svg(&events("curl_nginx.log"), &PlotOptions { port: Some(80), ..PlotOptions::default() });
    assert!(err.unwrap_err().to_string().contains("-o json"));
}

#[test]
fn inferred_transitions_get_hollow_dashed_markers() {
    let input = br#"{"ts_ns":1000,"side":"client","old":"CLOSE","new":"SYN_SENT"}
{"ts_ns":2000,"side":"client","old":"SYN_SENT","new":"ESTABLISHED","inferred":true}"#;
    let (evs, _) = parse_trace(input, true).unwrap();
    let svg = render_svg(&evs, &PlotOptions::default()).unwrap();
    assert!(svg.contains(r#"stroke-dasharray="2 1.5""#));
    assert!(texts(&svg).iter().any(|t| t == "inferred transition"));
}

#[test]
fn broken_lines_warn_with_line_numbers_and_strict_refuses_them() {
    let input = fs::read(data("broken.log")).unwrap();
    let (evs, warnings) = parse_trace(&input, false).unwrap();
    assert_eq!(evs.len(), 2);
    let lines: Vec<&str> = warnings.iter().map(|w| w.split(':').next().unwrap()).collect();
    assert_eq!(lines, ["line 3", "line 4", "line 5", "line 6", "line 8"], "{warnings:#?}");
    assert!(warnings[0].contains("'abc'") && warnings[1].contains("sideways") && warnings[3].contains("ESTABLISHD"));
    let err = parse_trace(&input, true).unwrap_err().to_string();
    assert!(err.starts_with("line 3:") && err.contains("--strict"), "{err}");
    let err = parse_trace(b"Tracing... Hit Ctrl-C to end.\n^C\n", false).unwrap_err().to_string();
    assert!(err.contains("no TCP state transitions"), "{err}");
    assert!(render_svg(&[], &PlotOptions::default()).is_err());
}

/// A fresh scratch directory for files the command writes.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tcpstate-plot-test-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn args(input: PathBuf, output: PathBuf) -> PlotArgs {
    PlotArgs {
        input,
        output,
        png: None,
        strict: false,
        max_conns: 20,
        port: None,
        conn: None,
        container: None,
        width: 1200,
        title: Some("curl → nginx".into()),
    }
}

#[test]
fn the_command_writes_svg_and_png() {
    let dir = scratch("cmd");
    let mut a = args(data("curl_nginx.log"), dir.join("t.svg"));
    a.png = Some(dir.join("t.png"));
    run(&a).unwrap();
    let svg = fs::read_to_string(dir.join("t.svg")).unwrap();
    assert!(texts(&svg).iter().any(|t| t == "curl → nginx"));
    assert!(Pixmap::decode_png(&fs::read(dir.join("t.png")).unwrap()).is_ok());

    let err = run(&args(data("curl_nginx.log"), dir.join("t.png"))).unwrap_err().to_string();
    assert!(err.contains("--png"), "{err}");
    let err = run(&args(dir.join("missing.log"), dir.join("u.svg"))).unwrap_err();
    assert!(format!("{err:#}").contains("missing.log"), "{err:#}");
    let mut strict = args(data("broken.log"), dir.join("b.svg"));
    strict.strict = true;
    assert!(run(&strict).is_err());
    strict.strict = false;
    run(&strict).unwrap();
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn connection_records_label_their_lanes_and_change_nothing_else() {
    // The curl → nginx trace as a --connections run sees it: each socket
    // with its own connection id, then one record per socket.
    let trace = fs::read_to_string(data("curl_nginx.jsonl")).unwrap();
    let trace = trace.replace(r#""side":"client""#, r#""conn_id":7,"side":"client""#);
    let trace = trace.replace(r#""side":"server""#, r#""conn_id":8,"side":"server""#);
    let records = [
        r#"{"conn_id":7,"side":"client","states":[],"bytes_sent":78,"bytes_received":10240,"end":"time_wait_expired"}"#,
        r#"{"conn_id":8,"side":"server","states":[],"bytes_sent":10240,"bytes_received":78,"end":"passive_close"}"#,
    ];
    let dir = scratch("records");
    fs::write(dir.join("t.jsonl"), format!("{trace}{}\n", records.join("\n"))).unwrap();
    run(&args(dir.join("t.jsonl"), dir.join("t.svg"))).unwrap();
    let texts = texts(&fs::read_to_string(dir.join("t.svg")).unwrap());
    for label in ["time_wait_expired · 78 B out, 10.0 KiB in", "passive_close · 10.0 KiB out, 78 B in"] {
        assert!(texts.iter().any(|t| t == label), "{label} not in {texts:?}");
    }

    // Records alone: one error that says what to trace.
    fs::write(dir.join("r.jsonl"), records.join("\n")).unwrap();
    let err = run(&args(dir.join("r.jsonl"), dir.join("r.svg"))).unwrap_err().to_string();
    assert!(err.contains("only 2 connection records") && err.contains("-o json (transitions)"), "{err}");

    // Ends of no drawn connection leave the picture as it was, to the byte.
    let (evs, _) = parse_trace(trace.as_bytes(), true).unwrap();
    let unrelated = Ends::from([(99, ConnEnd { end: EndCause::Refused, bytes: Some((0, 0)) })]);
    let opts = PlotOptions::default();
    assert_eq!(render_labelled_svg(&evs, &unrelated, &opts).unwrap(), render_svg(&evs, &opts).unwrap());
    let _ = fs::remove_dir_all(dir);
}

const IN_A: &str = "container 4f1c0a9e7b3d (docker)";
const IN_B: &str = "container 9ec39b91f3d7 (podman)";

/// The container headings and lane labels of `svg`, in drawing order.
fn headings_and_lanes(svg: &str) -> Vec<String> {
    let lane = |t: &str| ["server ", "client ", "listener "].iter().any(|p| t.starts_with(p));
    texts(svg).into_iter().filter(|t| t.starts_with("container ") || t == "no container" || lane(t)).collect()
}

#[test]
fn containers_draw_their_connections_under_headings() {
    // On one host: curl → nginx on the host, then a podman container (host
    // network) fetching from outside and from nginx in a docker container,
    // which starts listening in between; last a curl on the host to it.
    let evs = events("containers.jsonl");
    let svg = render_svg(&evs, &PlotOptions::default()).unwrap();
    assert_eq!(
        headings_and_lanes(&svg),
        [
            // The podman container's first connection is the trace's second.
            IN_B,
            "server 93.184.216.34:443",
            "client 192.168.1.20:50000",
            // Connections to a container's server are the container's,
            // wherever the client is; the client's lane says where it is.
            IN_A,
            "listener 0.0.0.0:80",
            "server 172.17.0.2:80",
            "client 172.17.0.1:41000 (container 9ec39b91f3d7)",
            "server 172.17.0.2:80",
            "client 172.17.0.1:40100 (no container)",
            // The trace's first connection, in no container: last.
            "no container",
            "server 127.0.0.1:8080",
            "client 127.0.0.1:51000",
        ]
    );
    let texts = texts(&svg);
    assert!(texts.iter().any(|t| t.starts_with("4 connections  ·  1 listener  ·  2 containers  ·  ")), "{texts:?}");
    check_svg(&svg);

    // --container keeps connections with either end in it, under the
    // heading they had.
    let only = |id: &str| {
        let opts = PlotOptions { container: Some(id.into()), ..PlotOptions::default() };
        render_svg(&evs, &opts).map(|svg| headings_and_lanes(&svg))
    };
    let b = only("9ec39b91f3d7").unwrap();
    assert_eq!(b.iter().filter(|t| t.starts_with("container ")).collect::<Vec<_>>(), [IN_B, IN_A]);
    assert_eq!(b.len(), 6, "{b:?}");
    let a = only("4f1c0a9e7b3d52e8a61c0f9b2d7e4a3c5b6d8e9f0a1b2c3d4e5f60718293a4b5").unwrap();
    assert_eq!(a[0], IN_A);
    assert_eq!(a.len(), 6, "{a:?}");
    let err = only("ffff").unwrap_err().to_string();
    assert!(err.contains("the trace has containers 9ec39b91f3d7, 4f1c0a9e7b3d"), "{err}");
    let err = only("/system.slice").unwrap_err().to_string();
    assert!(err.contains("is not a container id"), "{err}");

    // The same trace without its containers: no headings, time order.
    let bare: Vec<PlotEvent> = evs.iter().map(|e| PlotEvent { container: None, ..*e }).collect();
    let plain = headings_and_lanes(&render_svg(&bare, &PlotOptions::default()).unwrap());
    assert_eq!(plain[..2], ["server 127.0.0.1:8080", "client 127.0.0.1:51000"]);
    assert!(!plain.iter().any(|t| t.contains("container")), "{plain:?}");
}

#[test]
fn traces_without_containers_draw_as_before() {
    // Old traces have no container keys; null keys are the same.
    let trace = fs::read_to_string(data("curl_nginx.jsonl")).unwrap();
    let with_nulls = trace.replace(r#","inferred""#, r#","container_id":null,"container_runtime":null,"inferred""#);
    assert_ne!(trace, with_nulls);
    let (evs, _) = parse_trace(with_nulls.as_bytes(), true).unwrap();
    let opts = PlotOptions::default();
    assert_eq!(render_svg(&evs, &opts).unwrap(), render_svg(&events("curl_nginx.jsonl"), &opts).unwrap());
    assert!(!build_timeline(&evs, &opts).unwrap().by_container);
}

// ---- property tests: no input makes the plotter panic ----

const STATE_NAMES: [&str; 16] = [
    "CLOSE",
    "LISTEN",
    "SYN_SENT",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "CLOSING",
    "NEW_SYN_RECV",
    "UNKNOWN(0)",
    "UNKNOWN(255)",
    "UNKNOWN(x)",
    "",
];

/// Lines that are events, nearly events, or neither.
fn trace_line() -> impl Strategy<Value = String> {
    let state = proptest::sample::select(&STATE_NAMES[..]);
    let side = proptest::sample::select(&["server", "client", "sideways", ""][..]);
    let ts = prop_oneof![any::<u64>().prop_map(|t| t.to_string()), "[0-9a-z-]{0,22}"];
    prop_oneof![
        (ts.clone(), side.clone(), state.clone(), state.clone())
            .prop_map(|(t, s, o, n)| format!("ts:{t}:{s}:{o}:{n}")),
        (ts, side, state.clone(), state, any::<Option<bool>>(), "[ -~]{0,12}").prop_map(|(t, s, o, n, inf, junk)| {
            let inferred = inf.map_or("null".to_string(), |b| b.to_string());
            format!(r#"{{"ts_ns":{t},"side":"{s}","old":"{o}","new":"{n}","saddr":"::1","sport":80,"daddr":"{junk}","dport":5,"inferred":{inferred}}}"#)
        }),
        "\\PC{0,60}",
        "[{}:ts\\[\\]\" 0-9]{0,40}",
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        Just(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Just(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        Just("::ffff:127.0.0.1".parse().unwrap()),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

fn plot_event() -> impl Strategy<Value = PlotEvent> {
    let state = prop_oneof![3 => (1u8..=13).prop_map(TcpState), 1 => any::<u8>().prop_map(TcpState)];
    let port = prop_oneof![Just(0u16), Just(80), 40000u16..40004, any::<u16>()];
    let conn =
        (ip(), port.clone(), ip(), port).prop_map(|(saddr, sport, daddr, dport)| Tuple { saddr, sport, daddr, dport });
    let ts = prop_oneof![0u64..2_000, 1_000_000_000_000u64..1_000_100_000_000, any::<u64>()];
    // A few addresses, so that sockets share them and the reuse rules run.
    let socket = proptest::option::of(prop_oneof![0u64..4, any::<u64>()]);
    // Mostly none, as in traces from before containers.
    let container = prop_oneof![3 => Just(None), 1 => proptest::sample::select(&["a", "b", "\u{0}<&", ""][..]).prop_map(|id| ContainerTag::new(id, None))];
    (ts, any::<bool>(), state.clone(), state, proptest::option::of(conn), socket, any::<bool>(), container).prop_map(
        |(ts_ns, server, old, new, conn, socket, inferred, container)| PlotEvent {
            ts_ns,
            side: if server { Side::Server } else { Side::Client },
            old,
            new,
            conn,
            socket,
            inferred,
            container,
        },
    )
}

fn options() -> impl Strategy<Value = PlotOptions> {
    let port = proptest::option::of(prop_oneof![Just(80u16), any::<u16>()]);
    let conn = proptest::option::of(prop_oneof![
        Just("127.0.0.1:80".to_string()),
        Just("[::1]:40001-[::1]:80".to_string()),
        "[0-9a-f.:\\[\\] -]{0,30}",
    ]);
    let container = proptest::option::of(prop_oneof![Just("a".to_string()), "[ -~]{0,14}"]);
    let title = proptest::option::of("(?s:.{0,300})");
    (1usize..30, port, conn, container, 0u32..3000, title).prop_map(
        |(max_conns, port, conn, container, width, title)| PlotOptions {
            max_conns,
            port,
            conn,
            container,
            width,
            title,
        },
    )
}

/// The SVG is well-formed and every coordinate is a finite number.
fn check_svg(svg: &str) {
    for event in svg::read(svg).unwrap() {
        match event {
            svg::parser::Event::Tag(_, _, attributes) => {
                for name in ["x", "y", "width", "height", "cx", "cy", "r", "x1", "y1", "x2", "y2"] {
                    if let Some(v) = attributes.get(name) {
                        let n: f64 = v.parse().unwrap_or_else(|_| panic!("{name}={v:?}"));
                        assert!(n.is_finite(), "{name}={v}");
                    }
                }
            }
            svg::parser::Event::Error(e) => panic!("SVG does not parse: {e:?}"),
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_parser_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000), strict: bool) {
        let _ = parse_trace(&bytes, strict);
    }

    #[test]
    fn the_parser_never_panics_on_near_events(lines in proptest::collection::vec(trace_line(), 0..30), strict: bool) {
        let input = lines.join("\n");
        if let Ok((events, warnings)) = parse_trace(input.as_bytes(), strict) {
            prop_assert!(!events.is_empty());
            prop_assert!(!strict || warnings.is_empty());
            prop_assert!(warnings.iter().all(|w| w.starts_with("line ")));
        }
    }

    #[test]
    fn render_never_panics(events in proptest::collection::vec(plot_event(), 0..60), opts in options()) {
        match render_svg(&events, &opts) {
            Ok(svg) => check_svg(&svg),
            // Only a filter that matches nothing, or no events, may fail.
            Err(_) => prop_assert!(
                events.is_empty() || opts.port.is_some() || opts.conn.is_some() || opts.container.is_some()
            ),
        }
    }

    #[test]
    fn parsed_traces_always_render(lines in proptest::collection::vec(trace_line(), 1..30)) {
        if let Ok((events, _)) = parse_trace(lines.join("\n").as_bytes(), false) {
            check_svg(&render_svg(&events, &PlotOptions::default()).unwrap());
        }
    }
}

proptest! {
    // Rasterising is slow in debug builds: fewer cases.
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn any_rendered_svg_rasterises(
        events in proptest::collection::vec(plot_event(), 1..25),
        title in "(?s:.{0,40})",
    ) {
        let opts = PlotOptions { title: Some(title), ..PlotOptions::default() };
        let svg = render_svg(&events, &opts).unwrap();
        prop_assert!(render_png(&svg).is_ok());
    }
}
