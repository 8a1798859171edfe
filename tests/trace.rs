//! The tracer against the real kernel, a real nginx and real curl.
//! Every assertion filters on the test's own ports: the tracer sees the
//! whole machine.

mod common;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::thread;
use std::time::Duration;

use common::*;

/// The original tool's interface: positional server, `ts:` lines on
/// stderr, nothing else there.
#[test]
fn seed_output_shows_both_sides_of_curl_to_nginx() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string()]);
    let nginx = Nginx::start_on(&format!("127.0.0.1:{port}"));
    assert_eq!(curl(&nginx.url()), 0);
    wait_for(Duration::from_secs(5), "the server socket to close", || {
        !common::has_connection(port)
    });
    let out = tracer.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "the original format writes nothing on stdout");
    for line in out.stderr.lines() {
        assert!(line.starts_with("ts:"), "unexpected line on stderr: {line:?}");
    }
    let lines = seed_lines(&out.stderr);
    let side = |s: &str| -> Vec<String> {
        lines.iter().filter(|(side, _)| side == s).map(|(_, t)| t.clone()).collect()
    };
    let mut server = vec!["CLOSE:LISTEN".to_string()];
    server.extend(SERVER_SEQ.iter().map(|s| s.to_string()));
    assert_eq!(side("server"), server);
    let client: Vec<String> = CLIENT_SEQ.iter().map(|s| s.to_string()).collect();
    assert_eq!(side("client"), client);
    assert_eq!(lines.len(), server.len() + client.len(), "only server and client lines");
}

/// Traces one curl request to nginx at `host` in JSON and returns the
/// server's accepted socket and the client socket, each in order.
fn json_curl(host: &str) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let port = free_port();
    let server = format!("{host}:{port}");
    let tracer = Tracer::start(&["--server", &server, "-o", "json"]);
    let nginx = Nginx::start_on(&server);
    assert_eq!(curl(&nginx.url()), 0);
    wait_for(Duration::from_secs(5), "the connection to close", || !has_connection(port));
    let out = tracer.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let socks = by_socket(&json_events(&out.stdout));
    let pick = |first: &str| -> Vec<serde_json::Value> {
        let found: Vec<_> = socks.iter().filter(|evs| transition(&evs[0]) == first).collect();
        assert_eq!(found.len(), 1, "one socket starting with {first}: {socks:#?}");
        found[0].clone()
    };
    (pick("LISTEN:SYN_RECV"), pick("CLOSE:SYN_SENT"))
}

/// Checks sides, addresses, ports, family and owners of one connection.
fn assert_connection(server: &[serde_json::Value], client: &[serde_json::Value], ip: IpAddr) {
    assert_eq!(transitions(server), SERVER_SEQ);
    assert_eq!(transitions(client), CLIENT_SEQ);
    let family = if ip.is_ipv4() { 4 } else { 6 };
    let server_port = server[0]["sport"].as_u64().unwrap();
    let client_port = client[1]["sport"].as_u64().unwrap();
    for ev in server {
        assert_eq!(ev["side"], "server");
        assert_eq!(ev["family"], family);
        assert_eq!(ev["saddr"], ip.to_string());
        assert_eq!(ev["daddr"], ip.to_string());
        assert_eq!((ev["sport"].as_u64(), ev["dport"].as_u64()), (Some(server_port), Some(client_port)));
        assert_eq!(ev["comm"], "nginx", "server socket owned by nginx: {ev}");
    }
    for (i, ev) in client.iter().enumerate() {
        assert_eq!(ev["side"], "client");
        assert_eq!(ev["family"], family);
        assert_eq!(ev["daddr"], ip.to_string());
        assert_eq!(ev["dport"].as_u64(), Some(server_port));
        // connect() sets SYN_SENT before it picks the local port.
        if i > 0 {
            assert_eq!(ev["sport"].as_u64(), Some(client_port));
        }
        assert_eq!(ev["comm"], "curl", "client socket owned by curl: {ev}");
    }
    let pids = |evs: &[serde_json::Value]| -> Vec<u64> { evs.iter().map(|e| e["pid"].as_u64().unwrap()).collect() };
    assert!(pids(client).windows(2).all(|w| w[0] == w[1]), "one curl process");
    assert!(!pids(server).contains(&pids(client)[0]), "curl never owns nginx's socket");
    // Time in the previous state is known from the second transition on.
    assert!(server[0]["prev_state_ms"].is_null());
    for ev in server[1..].iter().chain(&client[1..]) {
        assert!(ev["prev_state_ms"].as_f64().unwrap() >= 0.0, "{ev}");
    }
    let ts: Vec<u64> = client.iter().map(|e| e["ts_ns"].as_u64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "timestamps in order");
}

#[test]
fn json_carries_the_tuple_and_the_right_owners() {
    if !require_root() {
        return;
    }
    let (server, client) = json_curl("127.0.0.1");
    assert_connection(&server, &client, "127.0.0.1".parse().unwrap());
}

#[test]
fn ipv6_connections_are_traced() {
    if !require_root() {
        return;
    }
    let (server, client) = json_curl("[::1]");
    assert_connection(&server, &client, "::1".parse().unwrap());
}

#[test]
fn refused_connect_goes_from_syn_sent_to_close() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json"]);
    assert_ne!(curl(&format!("http://127.0.0.1:{port}/")), 0);
    let out = tracer.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let events = json_events(&out.stdout);
    assert_eq!(transitions(&events), ["CLOSE:SYN_SENT", "SYN_SENT:CLOSE"]);
    assert!(events.iter().all(|e| e["side"] == "client" && e["comm"] == "curl"));
}

#[test]
fn reset_close_ends_both_sides_at_once() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json"]);
    let nginx = Nginx::start_on(&format!("127.0.0.1:{port}"));
    let stream = TcpStream::connect(nginx.addr).unwrap();
    let local = stream.local_addr().unwrap().port();
    // SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    let linger = nix::libc::linger { l_onoff: 1, l_linger: 0 };
    nix::sys::socket::setsockopt(&stream.as_fd(), nix::sys::socket::sockopt::Linger, &linger).unwrap();
    wait_for(Duration::from_secs(5), "nginx to accept", || socket_states(port).iter().filter(|s| *s == "01").count() == 2);
    drop(stream);
    wait_for(Duration::from_secs(5), "the connection to close", || !has_connection(port));
    let out = tracer.stop();
    let socks = by_socket(&json_events(&out.stdout));
    let client: Vec<_> = socks.iter().filter(|e| e[0]["side"] == "client").collect();
    let server: Vec<_> = socks.iter().filter(|e| transition(&e[0]) == "LISTEN:SYN_RECV").collect();
    assert_eq!(client.len(), 1);
    assert_eq!(transitions(client[0]), ["CLOSE:SYN_SENT", "SYN_SENT:ESTABLISHED", "ESTABLISHED:CLOSE"]);
    assert_eq!(client[0][2]["sport"].as_u64(), Some(local.into()));
    assert_eq!(client[0][2]["pid"].as_u64(), Some(std::process::id().into()));
    assert_eq!(server.len(), 1);
    assert_eq!(transitions(server[0]), ["LISTEN:SYN_RECV", "SYN_RECV:ESTABLISHED", "ESTABLISHED:CLOSE"]);
}

/// Parallel connections: every transition of every connection arrives,
/// and the summary reports nothing lost.
#[test]
fn parallel_burst_is_counted_exactly() {
    if !require_root() {
        return;
    }
    const THREADS: usize = 8;
    const PER_THREAD: usize = 50;
    let port = free_port();
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json"]);
    let nginx = Nginx::start_on(&format!("127.0.0.1:{port}"));
    let addr: SocketAddr = nginx.addr;
    let workers: Vec<_> = (0..THREADS)
        .map(|_| thread::spawn(move || (0..PER_THREAD).map(|_| http_get(addr)).collect::<Vec<u16>>()))
        .collect();
    let ports: Vec<u16> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    wait_for(Duration::from_secs(10), "all connections to close", || !has_connection(port));
    let out = tracer.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let events = json_events(&out.stdout);
    let socks = by_socket(&events);
    let n = THREADS * PER_THREAD;
    let clients: Vec<_> = socks.iter().filter(|e| e[0]["side"] == "client").collect();
    let servers: Vec<_> = socks.iter().filter(|e| transition(&e[0]) == "LISTEN:SYN_RECV").collect();
    assert_eq!((clients.len(), servers.len()), (n, n));
    for c in &clients {
        assert_eq!(transitions(c), CLIENT_SEQ);
        assert!(ports.contains(&(c[1]["sport"].as_u64().unwrap() as u16)));
    }
    for s in &servers {
        assert_eq!(transitions(s), SERVER_SEQ);
    }
    // listener's CLOSE:LISTEN + 5 per client + 5 per server
    assert_eq!(events.len(), 1 + 10 * n);
    assert!(out.stderr.contains(&format!("tcpstate: {} transitions", 1 + 10 * n)), "{}", out.stderr);
    assert!(out.stderr.contains("lost 0:"), "{}", out.stderr);
}
