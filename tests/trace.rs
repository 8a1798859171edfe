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
    wait_for(Duration::from_secs(5), "the server socket to close", || !common::has_connection(port));
    let out = tracer.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "the original format writes nothing on stdout");
    for line in out.stderr.lines() {
        assert!(line.starts_with("ts:"), "unexpected line on stderr: {line:?}");
    }
    let lines = seed_lines(&out.stderr);
    let side =
        |s: &str| -> Vec<String> { lines.iter().filter(|(side, _)| side == s).map(|(_, t)| t.clone()).collect() };
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
    let tracer = Tracer::start(&["--server", &server, "-o", "json", "--skaddr"]);
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
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json", "--hostname=web-7"]);
    let named = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "csv", "--hostname"]);
    let before = unix_now_ns();
    assert_ne!(curl(&format!("http://127.0.0.1:{port}/")), 0);
    let after = unix_now_ns();
    let (out, csv) = (tracer.stop(), named.stop());
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let events = json_events(&out.stdout);
    assert_eq!(transitions(&events), ["CLOSE:SYN_SENT", "SYN_SENT:CLOSE"]);
    assert!(events.iter().all(|e| e["side"] == "client" && e["comm"] == "curl"));
    // What a store needs: the schema, the host, the wall clock, no kernel address.
    for e in &events {
        assert_eq!((e["schema_version"].as_u64(), e["host"].as_str()), (Some(2), Some("web-7")), "{e}");
        assert!(e["skaddr"].is_null() && e["probe"].is_null() && e["conn_id"] == events[0]["conn_id"], "{e}");
        let t = e["time_unix_nano"].as_u64().unwrap();
        // The offset between the clocks is taken once at start: allow 1 s.
        assert!(t + 1_000_000_000 >= before && t <= after + 1_000_000_000, "{t} not in [{before}, {after}]");
    }
    let host = nix::sys::utsname::uname().unwrap().nodename().to_string_lossy().into_owned();
    let rows: Vec<&str> = csv.stdout.lines().collect();
    assert!(rows[0].starts_with("time,schema_version,host,") && rows[0].ends_with(",skaddr"), "{}", rows[0]);
    assert_eq!(rows.len(), 3, "{}", csv.stdout);
    assert!(rows[1..].iter().all(|r| r.split(',').nth(2) == Some(host.as_str()) && r.ends_with(',')), "{rows:?}");
}

fn unix_now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

#[test]
fn reset_close_ends_both_sides_at_once() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json", "--skaddr"]);
    let nginx = Nginx::start_on(&format!("127.0.0.1:{port}"));
    let stream = TcpStream::connect(nginx.addr).unwrap();
    let local = stream.local_addr().unwrap().port();
    // SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    let linger = nix::libc::linger { l_onoff: 1, l_linger: 0 };
    nix::sys::socket::setsockopt(&stream.as_fd(), nix::sys::socket::sockopt::Linger, &linger).unwrap();
    wait_for(Duration::from_secs(5), "nginx to accept", || {
        socket_states(port).iter().filter(|s| *s == "01").count() == 2
    });
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
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json", "--skaddr"]);
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

/// Without a server every socket is reported; the side comes from how the
/// socket began, and the port filters pick the test's own.
#[test]
fn without_a_server_sides_come_from_how_sockets_began() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let p = port.to_string();
    let local = Tracer::start(&["-L", &p, "-o", "json", "--skaddr"]);
    let remote = Tracer::start(&["-D", &p, "-o", "json", "--skaddr"]);
    let nginx = Nginx::start_on(&format!("127.0.0.1:{port}"));
    assert_eq!(curl(&nginx.url()), 0);
    wait_for(Duration::from_secs(5), "the connection to close", || !has_connection(port));
    let (local, remote) = (local.stop(), remote.stop());
    // -L: the listener and the accepted socket, all server side.
    let events = json_events(&local.stdout);
    assert!(events.iter().all(|e| e["side"] == "server" && e["sport"].as_u64() == Some(port.into())));
    let mut expect = vec!["CLOSE:LISTEN"];
    expect.extend(SERVER_SEQ);
    assert_eq!(transitions(&events), expect);
    // -D: curl's socket, client side.
    let events = json_events(&remote.stdout);
    assert!(events.iter().all(|e| e["side"] == "client" && e["dport"].as_u64() == Some(port.into())));
    assert_eq!(transitions(&events), CLIENT_SEQ);
}

#[test]
fn pid_filter_keeps_one_owners_sockets() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let nginx = Nginx::start_on(&format!("127.0.0.1:{port}"));
    let me = std::process::id().to_string();
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json", "--skaddr", "-p", &me]);
    assert_eq!(curl(&nginx.url()), 0); // another process: not shown
    http_get(nginx.addr); // this one: shown, client side only
    wait_for(Duration::from_secs(5), "the connections to close", || !has_connection(port));
    let out = tracer.stop();
    let events = json_events(&out.stdout);
    assert_eq!(transitions(&events), CLIENT_SEQ);
    assert!(events.iter().all(|e| e["pid"].as_u64() == Some(std::process::id().into())));
}

#[test]
fn family_filters_split_ipv4_from_ipv6() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let p = port.to_string();
    let v4 = Tracer::start(&["-4", "-D", &p, "-o", "json", "--skaddr"]);
    let v6 = Tracer::start(&["-6", "-D", &p, "-o", "json", "--skaddr"]);
    let n4 = Nginx::start_on(&format!("127.0.0.1:{port}"));
    let n6 = Nginx::start_on(&format!("[::1]:{port}"));
    assert_eq!(curl(&n4.url()), 0);
    assert_eq!(curl(&n6.url()), 0);
    wait_for(Duration::from_secs(5), "the connections to close", || !has_connection(port));
    let (v4, v6) = (json_events(&v4.stop().stdout), json_events(&v6.stop().stdout));
    assert_eq!(transitions(&v4), CLIENT_SEQ);
    assert_eq!(transitions(&v6), CLIENT_SEQ);
    assert!(v4.iter().all(|e| e["family"] == 4 && e["daddr"] == "127.0.0.1"));
    assert!(v6.iter().all(|e| e["family"] == 6 && e["daddr"] == "::1"));
}

#[test]
fn count_and_duration_end_the_run() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let nginx = Nginx::start_on(&format!("127.0.0.1:{port}"));
    let counted = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json", "--skaddr", "-c", "3"]);
    let timed = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "csv", "-d", "1.5"]);
    let started = std::time::Instant::now();
    assert_eq!(curl(&nginx.url()), 0);
    let counted = counted.finish();
    assert_eq!(counted.code, Some(0), "{}", counted.stderr);
    assert_eq!(json_events(&counted.stdout).len(), 3);
    assert!(counted.stderr.contains("tcpstate: 3 transitions"), "{}", counted.stderr);
    let timed = timed.finish();
    assert_eq!(timed.code, Some(0));
    assert!(started.elapsed() < Duration::from_secs(10));
    let rows: Vec<&str> = timed.stdout.lines().collect();
    assert!(rows[0].starts_with("time,schema_version,host,time_unix_nano,ts_ns,"), "{}", rows[0]);
    assert_eq!(rows.len(), 1 + 10, "header and ten transitions: {}", timed.stdout);
}

#[test]
fn table_and_wall_clock_time() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let nginx = Nginx::start_on(&format!("127.0.0.1:{port}"));
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "table", "-T", "-4"]);
    assert_eq!(curl(&nginx.url()), 0);
    wait_for(Duration::from_secs(5), "the connection to close", || !has_connection(port));
    let out = tracer.stop();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("TIME            SIDE       PID COMM"), "{}", lines[0]);
    assert_eq!(lines.len(), 11);
    let row = lines.iter().find(|l| l.contains("SYN_SENT     -> ESTABLISHED")).unwrap();
    // HH:MM:SS.micros of today (UTC), then the side and curl's pid and comm.
    let time = &row[..15];
    assert!(time.as_bytes()[2] == b':' && time.as_bytes()[8] == b'.', "{row}");
    assert!(row[16..].starts_with("client"), "{row}");
    assert!(row.contains(" curl "), "{row}");
    assert!(out.stderr.starts_with("tcpstate: 10 transitions"), "{}", out.stderr);
}

#[test]
fn sigterm_detaches_drains_and_summarises() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json", "--skaddr"]);
    let pid = tracer.pid();
    let nginx = Nginx::start_on(&format!("127.0.0.1:{port}"));
    assert_eq!(curl(&nginx.url()), 0);
    let out = tracer.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(out.code, Some(0));
    assert!(out.stderr.contains("transitions"), "{}", out.stderr);
    assert!(!has_bpf_link(pid));
}

/// A reader that stops early (`| head -1`) ends tcpstate quietly.
#[test]
fn closed_stdout_ends_quietly() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let nginx = Nginx::start_on(&format!("127.0.0.1:{port}"));
    let script = format!("{BIN} 127.0.0.1 {port} -o json | head -1; echo \"exit=${{PIPESTATUS[0]}}\"");
    let mut child = std::process::Command::new("bash")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first line reaches head once tcpstate is attached; keep making
    // connections until the pipeline has ended (head took its line, and
    // tcpstate's next write found the pipe closed). Waiting on the shell
    // itself: asking for its children raced with the shell starting them.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        assert_eq!(curl(&nginx.url()), 0);
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout.starts_with("{\"schema_version\":2,"), "{stdout}");
    assert!(stdout.ends_with("exit=0\n"), "{stdout}");
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");
}

/// `--schema otel`: the same events under the OpenTelemetry names, every
/// line with every key, and one Community ID for both ends of a connection
/// (null until both ends are known).
#[test]
fn otel_schema_names_fields_by_the_conventions_and_joins_both_ends() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let server = format!("127.0.0.1:{port}");
    let tracer = Tracer::start(&["--server", &server, "-o", "json", "--schema", "otel", "--hostname=web-9"]);
    let nginx = Nginx::start_on(&server);
    assert_eq!(curl(&nginx.url()), 0);
    wait_for(Duration::from_secs(5), "the connection to close", || !has_connection(port));
    drop(nginx);
    let out = tracer.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let events = json_events(&out.stdout);
    let keys: Vec<String> = events[0].as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys.len(), 25, "{keys:?}");
    for e in &events {
        let obj = e.as_object().unwrap();
        assert_eq!(obj.keys().cloned().collect::<Vec<_>>(), keys, "one key set: {e}");
        assert_eq!((e["network.transport"].as_str(), e["network.type"].as_str()), (Some("tcp"), Some("ipv4")));
        assert_eq!(e["host.name"], "web-9");
        assert!(e["tcpstate.side"] == "client" || e["tcpstate.side"] == "server", "{e}");
    }
    let state = |e: &serde_json::Value| {
        format!(
            "{}:{}",
            e["tcpstate.state.previous"].as_str().unwrap(),
            e["network.connection.state"].as_str().unwrap()
        )
    };
    let client: Vec<&serde_json::Value> = events.iter().filter(|e| e["tcpstate.side"] == "client").collect();
    let states: Vec<String> = client.iter().map(|e| state(e)).collect();
    assert_eq!(
        states,
        [
            "close:syn_sent",
            "syn_sent:established",
            "established:fin_wait_1",
            "fin_wait_1:fin_wait_2",
            "fin_wait_2:time_wait"
        ]
    );
    assert!(client.iter().all(|e| e["process.executable.name"] == "curl" && e["process.pid"].is_u64()));
    // connect()'s first event has no local port yet: no flow to name.
    assert!(client[0]["network.community_id"].is_null() && client[0]["network.local.port"] == 0);
    let id = client[1]["network.community_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("1:") && id.ends_with('=') && id.len() == 30, "{id}");
    for e in &events {
        // Listeners have no peer; connect()'s first event no local port.
        if e["network.peer.port"] == 0 || e["network.local.port"] == 0 {
            assert!(e["network.community_id"].is_null(), "{e}");
        } else {
            assert_eq!(e["network.community_id"], id.as_str(), "both ends, one flow: {e}");
        }
    }
    let server_events = events.iter().filter(|e| e["tcpstate.side"] == "server" && e["network.peer.port"] != 0);
    assert_eq!(server_events.count(), 5, "{events:#?}");
}
