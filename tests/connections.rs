//! `--connections` against the real kernel: one record per connection when
//! it ends, with real nginx, curl and sockets the tests open and close.
//! Every tracer here is given the test's own server, so it sees the test's
//! connections only, and every record's side is decided by that server.
//!
//! Kernel facts these tests rest on (6.18, measured with bpftrace):
//! - `tcp_sock.bytes_received` counts the peer's FIN, `bytes_acked` counts
//!   the connect side's SYN and an acknowledged FIN; a record counts
//!   payload only, which is what the applications see.
//! - A close with SO_LINGER 0 moves the socket to CLOSE before the reset
//!   goes out and before `sk_err` is set: the aborting side's record has
//!   no error. The side that receives the reset has ECONNRESET.
//! - An ICMP host unreachable that arrives while connect() holds the
//!   socket only sets `sk_err_soft`; a blocking connect ends at the next
//!   SYN's ICMP, with EHOSTUNREACH in `sk_err`.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The states of a client that closes first.
const CLIENT_STATES: [&str; 5] = ["SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"];
/// The states of an accepted socket whose client closes first.
const SERVER_STATES: [&str; 4] = ["SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK"];

/// The `--connections` tracer for `server` (IP:PORT).
fn record_tracer(server: &str) -> Tracer {
    Tracer::start(&["--server", server, "--connections", "-o", "json"])
}

/// The same, then a transition tracer with the same filter, attached after
/// it (see [`LAG_NS`]).
fn record_and_stream_tracers(server: &str) -> (Tracer, Tracer) {
    let records = record_tracer(server);
    let stream = Tracer::start(&["--server", server, "-o", "json", "--skaddr"]);
    (records, stream)
}

/// The records of a stopped tracer, checked against the spec; every one
/// of them decided by the configured server.
fn records_of(out: &Output) -> Vec<Value> {
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let recs = records(&out.stdout);
    for r in &recs {
        assert_eq!(r["side_by"], "server", "{r}");
    }
    recs
}

/// The one record of `side`.
fn the<'a>(recs: &'a [Value], side: &str) -> &'a Value {
    let found: Vec<&Value> = recs.iter().filter(|r| r["side"] == side).collect();
    assert_eq!(found.len(), 1, "one {side} record: {recs:#?}");
    found[0]
}

/// The one connection of a transition stream that starts with `first`.
fn stream_conn(stdout: &str, first: &str) -> Vec<Value> {
    let found: Vec<Vec<Value>> =
        connections(&json_events(stdout)).into_iter().filter(|c| transition(&c[0]) == first).collect();
    assert_eq!(found.len(), 1, "one connection starting with {first}: {found:#?}");
    found.into_iter().next().unwrap()
}

/// A connection that ended cleanly: the application's bytes, each sent
/// once and acknowledged; RTT samples taken (the smoothed RTT is never
/// below the minimum: every sample it averages is at least the minimum).
fn assert_clean_bytes(r: &Value, sent: u64, received: u64) {
    assert_eq!(counter(r, "bytes_sent"), sent, "{r}");
    assert_eq!(counter(r, "bytes_acked"), sent, "payload acknowledged, SYN and FIN not counted: {r}");
    assert_eq!(counter(r, "bytes_received"), received, "payload received, FIN not counted: {r}");
    assert_eq!(counter(r, "bytes_retrans"), 0, "{r}");
    assert_eq!(counter(r, "retransmits"), 0, "{r}");
    let (srtt, min) = (counter(r, "srtt_us"), counter(r, "min_rtt_us"));
    assert!(0 < min && min <= srtt, "{r}");
    assert!(r["error"].is_null(), "{r}");
}

/// Segments seen at both ends of a loopback connection: the server's
/// `segs_in` counts the client's SYN and every segment the client sent
/// after, plus `to_server` sent after the client's last moment; the client's
/// `segs_in` counts the SYN-ACK (sent by the request socket, counted on no
/// server socket), the server's segments and `to_client` sent after the
/// server's last moment.
fn assert_segments(client: &Value, server: &Value, to_server: u64, to_client: u64) {
    assert_eq!(counter(server, "segs_in"), counter(client, "segs_out") + to_server, "{client}\n{server}");
    assert_eq!(counter(client, "segs_in"), counter(server, "segs_out") + 1 + to_client, "{client}\n{server}");
}

/// A TIME_WAIT entered just now, ended 300 ms later by deleting its
/// namespace (nginx first): the moments it was known entered, the deletion
/// began, and both tracers had told its end.
fn end_time_wait_with_the_namespace(ns: Netns, nginx: Nginx, records: &Tracer, stream: &Tracer) -> (u64, u64, u64) {
    let handed_off = mono_ns();
    thread::sleep(Duration::from_millis(300));
    let deleting = mono_ns();
    drop(nginx);
    ns.delete();
    wait_for_in_stream(stream, "TIME_WAIT:CLOSE", 1, Duration::from_secs(20));
    let seen = mono_ns();
    wait_for_records(records, 2, Duration::from_secs(5));
    (handed_off, deleting, seen)
}

/// A connection that carried no payload.
fn assert_no_bytes(r: &Value) {
    for k in ["bytes_sent", "bytes_acked", "bytes_received", "bytes_retrans"] {
        assert_eq!(counter(r, k), 0, "{k}: {r}");
    }
}

/// A connect that never got an answer from its peer: only SYNs went out,
/// nothing came in, no RTT sample.
fn assert_only_syns(r: &Value) {
    assert_no_bytes(r);
    assert_eq!(counter(r, "segs_in"), 0, "{r}");
    assert_eq!(counter(r, "retransmits"), counter(r, "segs_out") - 1, "every segment is the SYN: {r}");
    assert!(r["srtt_us"].is_null() && r["min_rtt_us"].is_null(), "{r}");
}

/// TIME_WAIT began between `entered` and ended between `left` (monotonic
/// moments the test took around what caused each).
fn assert_time_wait_between(r: &Value, entered: (u64, u64), left: (u64, u64)) {
    let (start, end) = (time_wait_start(r), counter(r, "end_ns"));
    assert!(entered.0 <= start && start <= entered.1, "TIME_WAIT from {start}, not in {entered:?}: {r}");
    assert!(left.0 <= end && end <= left.1, "TIME_WAIT until {end}, not in {left:?}: {r}");
}

/// curl's own count of what it sent and received, and its pid.
struct CurlRun {
    pid: u32,
    request: u64,
    header: u64,
    download: u64,
}

fn curl_counted(mut cmd: Command, url: &str) -> CurlRun {
    let child = cmd
        .args(["-sS", "-g", "-o", "/dev/null", "--max-time", "10"])
        .args(["-w", "%{size_request} %{size_header} %{size_download}", url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl not found: run `make deps`");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "curl {url}: {}", out.status);
    let sizes: Vec<u64> = String::from_utf8_lossy(&out.stdout).split(' ').map(|s| s.parse().unwrap()).collect();
    let [request, header, download] = sizes[..] else { panic!("curl -w printed {sizes:?}") };
    CurlRun { pid, request, header, download }
}

/// The user story: curl fetches a 10000-byte file from nginx in a
/// namespace that is then deleted. Each side's record has curl's byte
/// counts, no retransmission, an RTT, the states and times the transition
/// stream of the same run shows, and the client's TIME_WAIT ends with the
/// namespace, between the moments the test took.
#[test]
fn curl_to_nginx_records_match_curl_and_the_transition_stream() {
    if !require_root() {
        return;
    }
    let server = format!("127.0.0.1:{}", free_port());
    let (records, stream) = record_and_stream_tracers(&server);
    let ns = Netns::new("conn-curl");
    let nginx = Nginx::serve(Some(&ns), &server, 10_000, Keepalive::On);
    let before = mono_ns();
    let curl = curl_counted(ns.cmd("curl"), &format!("http://{server}/body"));
    assert_eq!(curl.download, 10_000);
    wait_for_in_stream(&stream, "LAST_ACK:CLOSE", 1, Duration::from_secs(5));
    wait_for_in_stream(&stream, "FIN_WAIT2:TIME_WAIT", 1, Duration::from_secs(5));
    let (handed_off, deleting, seen) = end_time_wait_with_the_namespace(ns, nginx, &records, &stream);
    let (out, stream) = (records.stop(), stream.stop());
    let recs = records_of(&out);
    assert_eq!(recs.len(), 2, "{recs:#?}");
    let (client, server) = (the(&recs, "client"), the(&recs, "server"));

    assert_eq!(record_states(client), CLIENT_STATES);
    assert_eq!(client["end"], "time_wait_netns_exit");
    assert_eq!(record_states(server), SERVER_STATES);
    assert_eq!(server["end"], "passive_close");
    assert!(server["time_wait_ns"].is_null());
    assert_record_tells_stream(client, &stream_conn(&stream.stdout, "CLOSE:SYN_SENT"));
    assert_record_tells_stream(server, &stream_conn(&stream.stdout, "LISTEN:SYN_RECV"));
    assert_time_wait_between(client, (before, handed_off), (deleting, seen));
    assert!(counter(client, "time_wait_ns") >= 300_000_000, "{client}");

    assert_eq!((client["pid"].as_u64(), &client["comm"]), (Some(curl.pid.into()), &"curl".into()));
    assert_eq!(server["comm"], "nginx");
    assert_ne!(server["pid"], client["pid"]);
    assert_ne!(client["conn_id"], server["conn_id"]);
    assert_eq!(client["netns"], server["netns"]);
    assert_eq!((&client["sport"], &client["dport"]), (&server["dport"], &server["sport"]));
    assert_clean_bytes(client, curl.request, curl.header + curl.download);
    assert_clean_bytes(server, curl.header + curl.download, curl.request);
    assert_segments(client, server, 0, 0);
}

/// A connect to a closed port: the kernel answers the SYN with a reset.
#[test]
fn refused_connect_ends_refused_with_econnrefused() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let tracer = record_tracer(&format!("127.0.0.1:{port}"));
    let child = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--max-time", "10", &format!("http://127.0.0.1:{port}/")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(7), "curl: couldn't connect");
    wait_for_records(&tracer, 1, Duration::from_secs(5));
    let recs = records_of(&tracer.stop());
    assert_eq!(recs.len(), 1, "no socket answered, so no server record: {recs:#?}");
    let r = the(&recs, "client");
    assert_eq!(record_states(r), ["SYN_SENT"]);
    assert_eq!((&r["end"], &r["error"]), (&"refused".into(), &"ECONNREFUSED".into()));
    assert_eq!((r["pid"].as_u64(), &r["comm"]), (Some(pid.into()), &"curl".into()));
    assert_eq!(r["dport"], port);
    assert_ne!(r["sport"], 0);
    assert_no_bytes(r);
    assert_eq!((counter(r, "segs_out"), counter(r, "segs_in"), counter(r, "retransmits")), (1, 1, 0), "SYN, RST");
    assert!(r["srtt_us"].is_null() && r["min_rtt_us"].is_null(), "{r}");
    assert!(r["time_wait_ns"].is_null());
}

/// SO_LINGER on, timeout 0: close() resets the connection.
fn set_linger_zero(s: &TcpStream) {
    let linger = nix::libc::linger { l_onoff: 1, l_linger: 0 };
    nix::sys::socket::setsockopt(&s.as_fd(), nix::sys::socket::sockopt::Linger, &linger).unwrap();
}

/// Both ends of a reset connection in this process's records: established,
/// no payload; the aborting side's record has no error (the kernel sets it
/// after the CLOSE), the other side's ECONNRESET.
fn assert_reset_pair(recs: &[Value], aborter: &str) -> (Value, Value) {
    assert_eq!(recs.len(), 2, "two records, none for the listener: {recs:#?}");
    let (client, server) = (the(recs, "client").clone(), the(recs, "server").clone());
    assert_eq!(record_states(&client), ["SYN_SENT", "ESTABLISHED"]);
    assert_eq!(record_states(&server), ["SYN_RECV", "ESTABLISHED"]);
    let (aborted, reset) = if aborter == "client" { (&client, &server) } else { (&server, &client) };
    assert_eq!((&aborted["end"], &aborted["error"]), (&"aborted".into(), &Value::Null), "{aborted}");
    assert_eq!((&reset["end"], &reset["error"]), (&"reset_received".into(), &"ECONNRESET".into()), "{reset}");
    for r in [&client, &server] {
        assert_no_bytes(r);
        assert_eq!(counter(r, "retransmits"), 0, "{r}");
        assert!(r["time_wait_ns"].is_null(), "{r}");
    }
    assert_ne!(client["conn_id"], server["conn_id"]);
    (client, server)
}

/// The client resets (SO_LINGER 0) a connection nginx has accepted.
#[test]
fn linger_zero_client_aborts_and_the_server_receives_the_reset() {
    if !require_root() {
        return;
    }
    let server = format!("127.0.0.1:{}", free_port());
    let tracer = record_tracer(&server);
    let nginx = Nginx::start_on(&server);
    let port = nginx.addr.port();
    let stream = TcpStream::connect(nginx.addr).unwrap();
    let local = stream.local_addr().unwrap().port();
    set_linger_zero(&stream);
    wait_for(Duration::from_secs(5), "nginx to accept", || {
        socket_states(port).iter().filter(|s| *s == "01").count() == 2
    });
    drop(stream);
    wait_for_records(&tracer, 2, Duration::from_secs(5));
    let recs = records_of(&tracer.stop());
    let (client, server) = assert_reset_pair(&recs, "client");
    assert_eq!(
        (client["sport"].as_u64(), client["pid"].as_u64()),
        (Some(local.into()), Some(std::process::id().into()))
    );
    assert_eq!(server["comm"], "nginx");
    // The client's RST leaves after its last moment (its CLOSE).
    assert_segments(&client, &server, 1, 0);
}

/// The server (a listener of the test's own) resets (SO_LINGER 0) the
/// connection it accepted; the client then reads ECONNRESET. The listener,
/// closed before tracing stops, is no connection: no record.
#[test]
fn linger_zero_server_aborts_and_the_client_receives_the_reset() {
    if !require_root() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let tracer = record_tracer(&server.to_string());
    let mut client = TcpStream::connect(server).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    set_linger_zero(&accepted);
    drop(accepted);
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let err = std::io::Read::read(&mut client, &mut [0u8; 16]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::ECONNRESET), "{err}");
    drop(client);
    // Records come out once tcpstate is past its start, where it found the
    // listener's owner in /proc: only then may the listener go.
    wait_for_records(&tracer, 2, Duration::from_secs(5));
    drop(listener);
    let recs = records_of(&tracer.stop());
    let (client, server) = assert_reset_pair(&recs, "server");
    for r in [&client, &server] {
        assert_eq!(r["pid"].as_u64(), Some(std::process::id().into()), "{r}");
    }
    // The server's RST leaves after its last moment.
    assert_segments(&client, &server, 0, 1);
}

/// A blocking connect from the routed namespace to `dest`: its error, how
/// long it took, and the one record the tracer printed. (Not a connect
/// with a timeout: that one polls and reads SO_ERROR, which takes the
/// soft error an early ICMP left, and then closes a socket with no error.)
fn failed_connect(dest: &str) -> (std::io::Error, Duration, Value) {
    let routed = Routed::new("conn-routed");
    let server: SocketAddr = format!("{dest}:{}", free_port()).parse().unwrap();
    let tracer = record_tracer(&server.to_string());
    let started = Instant::now();
    let err = routed.client.run_in(move || TcpStream::connect(server).unwrap_err());
    let took = started.elapsed();
    wait_for_records(&tracer, 1, Duration::from_secs(5));
    let recs = records_of(&tracer.stop());
    assert_eq!(recs.len(), 1, "{recs:#?}");
    let r = the(&recs, "client");
    assert_eq!(record_states(r), ["SYN_SENT"]);
    assert_eq!(r["pid"].as_u64(), Some(std::process::id().into()));
    assert_eq!((r["daddr"].as_str(), r["saddr"].as_str()), (Some(dest), Some("10.200.0.1")));
    assert_eq!(r["netns"].as_u64(), Some(netns_inode(&routed.client)));
    assert_only_syns(r);
    assert!(r["time_wait_ns"].is_null());
    assert!(counter(r, "duration_ns") < took.as_nanos() as u64, "SYN_SENT outlived connect(): {r} vs {took:?}");
    (err, took, r.clone())
}

/// The router drops the SYNs: connect gives up after one retransmission
/// timeout doubled (1 s + 2 s).
#[test]
fn syn_into_a_blackhole_times_out() {
    if !require_root() {
        return;
    }
    let (err, took, r) = failed_connect(Routed::BLACKHOLE);
    assert_eq!(err.raw_os_error(), Some(nix::libc::ETIMEDOUT), "{err}");
    assert_eq!((&r["end"], &r["error"]), (&"timed_out".into(), &"ETIMEDOUT".into()), "{r}");
    assert!(counter(&r, "retransmits") >= 1, "{r}");
    assert!(took >= Duration::from_secs(3), "connect gave up after {took:?}");
    assert!(counter(&r, "duration_ns") >= 2_900_000_000, "{r}");
}

/// The router answers the SYN with ICMP host unreachable, which aborts a
/// connect (at the first SYN whose ICMP arrives while connect() does not
/// hold the socket: here the retransmitted one, 1 s later).
#[test]
fn icmp_host_unreachable_ends_the_connect() {
    if !require_root() {
        return;
    }
    let (err, took, r) = failed_connect(Routed::UNREACHABLE);
    assert_eq!(err.raw_os_error(), Some(nix::libc::EHOSTUNREACH), "{err}");
    assert_eq!((&r["end"], &r["error"]), (&"unreachable".into(), &"EHOSTUNREACH".into()), "{r}");
    assert!(took < Duration::from_secs(3), "an answer, not a timeout: {took:?}");
}

/// nginx with `keepalive_timeout 0` closes first when its client reads to
/// the end (the transition stream shows which side sent the first FIN), so
/// the server's socket goes through TIME_WAIT, which ends with the
/// namespace; the client closes passively.
#[test]
fn nginx_closing_first_leaves_the_time_wait_on_the_server() {
    if !require_root() {
        return;
    }
    let server = format!("127.0.0.1:{}", free_port());
    let (records, stream) = record_and_stream_tracers(&server);
    let ns = Netns::new("conn-srvclose");
    let nginx = Nginx::serve(Some(&ns), &server, 3000, Keepalive::Off);
    let addr = nginx.addr;
    let before = mono_ns();
    let ex = ns.run_in(move || get_counted(TcpStream::connect(addr).unwrap(), "/body", true));
    wait_for_in_stream(&stream, "FIN_WAIT2:TIME_WAIT", 1, Duration::from_secs(5));
    wait_for_in_stream(&stream, "LAST_ACK:CLOSE", 1, Duration::from_secs(5));
    let (handed_off, deleting, seen) = end_time_wait_with_the_namespace(ns, nginx, &records, &stream);
    let (out, stream) = (records.stop(), stream.stop());
    let recs = records_of(&out);
    assert_eq!(recs.len(), 2, "{recs:#?}");
    let (client, server) = (the(&recs, "client"), the(&recs, "server"));
    let (client_events, server_events) =
        (stream_conn(&stream.stdout, "CLOSE:SYN_SENT"), stream_conn(&stream.stdout, "LISTEN:SYN_RECV"));
    assert_eq!(transition(&server_events[2]), "ESTABLISHED:FIN_WAIT1", "nginx closed first: {server_events:#?}");
    assert_eq!(transition(&client_events[2]), "ESTABLISHED:CLOSE_WAIT", "{client_events:#?}");
    assert_eq!(record_states(server), ["SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"]);
    assert_eq!(server["end"], "time_wait_netns_exit");
    assert_eq!(record_states(client), ["SYN_SENT", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK"]);
    assert_eq!(client["end"], "passive_close");
    assert_record_tells_stream(client, &client_events);
    assert_record_tells_stream(server, &server_events);
    assert_time_wait_between(server, (before, handed_off), (deleting, seen));
    assert_eq!(server["comm"], "nginx");
    assert_clean_bytes(client, ex.sent, ex.received);
    assert_clean_bytes(server, ex.received, ex.sent);
    assert_segments(client, server, 0, 0);
}

/// With tcp_tw_reuse, a new connect from the same port takes over the
/// tuple of a timewait socket older than tcp_tw_reuse_delay (1 s): the
/// first client's TIME_WAIT ends inside the second connect (after its
/// SYN_SENT, before its ESTABLISHED). The second is still in TIME_WAIT at
/// exit and is printed as open, its counters read at its hand-off.
#[test]
fn a_reused_tuple_ends_time_wait() {
    if !require_root() {
        return;
    }
    let server = format!("127.0.0.1:{}", free_port());
    let tracer = record_tracer(&server);
    let ns = Netns::new("conn-reuse");
    let ok = ns.cmd("sysctl").args(["-qw", "net.ipv4.tcp_tw_reuse=1"]).status().unwrap();
    assert!(ok.success());
    let nginx = Nginx::start_in(Some(&ns), &server);
    let (addr, local) = (nginx.addr, free_port());
    let handing_off = mono_ns();
    let first = ns.run_in(move || get_counted(connect_from(addr, local), "/", false));
    // The first server socket's record: nginx saw the client's FIN and
    // closed, and the ack of its FIN is what ended it, so the client's
    // TIME_WAIT began by now (on a loaded machine, after get_counted
    // returned).
    wait_for_records(&tracer, 1, Duration::from_secs(5));
    let handed_off = mono_ns();
    thread::sleep(Duration::from_millis(1500));
    let reusing = mono_ns();
    let second = ns.run_in(move || get_counted(connect_from(addr, local), "/", false));
    let reused = mono_ns();
    wait_for_records(&tracer, 3, Duration::from_secs(5));
    let recs = records_of(&tracer.stop());
    assert_eq!(recs.len(), 4, "{recs:#?}");
    let clients: Vec<&Value> = recs.iter().filter(|r| r["side"] == "client").collect();
    let servers: Vec<&Value> = recs.iter().filter(|r| r["side"] == "server").collect();
    assert_eq!((clients.len(), servers.len()), (2, 2), "{recs:#?}");
    let (old, new) = if clients[0]["open"] == true { (clients[1], clients[0]) } else { (clients[0], clients[1]) };
    assert_eq!(record_states(old), CLIENT_STATES);
    assert_eq!(old["end"], "time_wait_reused");
    assert_time_wait_between(old, (handing_off, handed_off), (reusing, reused));
    assert!(counter(old, "time_wait_ns") >= 1_000_000_000, "tcp_tw_reuse_delay: {old}");
    let killed = counter(old, "end_ns");
    let connecting = counter(new, "start_ns");
    let established = connecting + new["states"][0]["ns"].as_u64().unwrap();
    assert!((connecting..=established).contains(&killed), "ended at {killed}, second connect {new}");
    assert_eq!((&new["end"], &new["open"]), (&"open".into(), &true.into()));
    assert_eq!(record_states(new), CLIENT_STATES, "still in TIME_WAIT at exit");
    assert_ne!(old["conn_id"], new["conn_id"]);
    for (r, ex) in [(old, first), (new, second)] {
        assert_eq!(r["sport"], local, "the same tuple: {r}");
        assert_clean_bytes(r, ex.sent, ex.received);
    }
    for s in &servers {
        assert_eq!(record_states(s), SERVER_STATES);
        assert_eq!(s["end"], "passive_close");
    }
}

/// 8 threads × 50 connections to nginx in a namespace that is then
/// deleted: exactly one record per connection and side, none lost, no id
/// twice, and each client's byte counts are its server's, reversed.
#[test]
fn parallel_burst_gives_one_record_per_connection_and_side() {
    if !require_root() {
        return;
    }
    const THREADS: usize = 8;
    const PER_THREAD: usize = 50;
    const N: usize = THREADS * PER_THREAD;
    let server = format!("127.0.0.1:{}", free_port());
    let tracer = record_tracer(&server);
    let ns = Netns::new("conn-burst");
    // No tuple reuse: every TIME_WAIT must end with the namespace.
    let ok = ns.cmd("sysctl").args(["-qw", "net.ipv4.tcp_tw_reuse=0"]).status().unwrap();
    assert!(ok.success());
    let nginx = Nginx::start_in(Some(&ns), &server);
    let addr = nginx.addr;
    let ports: Vec<u16> = ns.run_in(move || {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| thread::spawn(move || (0..PER_THREAD).map(|_| http_get(addr)).collect::<Vec<u16>>()))
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    wait_for_records(&tracer, N, Duration::from_secs(20));
    drop(nginx);
    ns.delete();
    wait_for_records(&tracer, 2 * N, Duration::from_secs(30));
    thread::sleep(Duration::from_millis(200));
    let out = tracer.stop();
    let recs = records_of(&out);
    assert_eq!(recs.len(), 2 * N);
    let ids: std::collections::BTreeSet<u64> = recs.iter().map(|r| counter(r, "conn_id")).collect();
    assert_eq!(ids.len(), 2 * N, "no conn_id twice");
    let mut servers: std::collections::BTreeMap<u64, &Value> = Default::default();
    for s in recs.iter().filter(|r| r["side"] == "server") {
        assert_eq!(record_states(s), SERVER_STATES);
        assert_eq!(s["end"], "passive_close");
        assert!(servers.insert(counter(s, "dport"), s).is_none(), "two server records for {s}");
    }
    let mut client_ports: Vec<u64> = Vec::new();
    for c in recs.iter().filter(|r| r["side"] == "client") {
        assert_eq!(record_states(c), CLIENT_STATES);
        assert_eq!(c["end"], "time_wait_netns_exit");
        // Not always this process: a child that another test forks holds
        // every descriptor until its exec, and may be the one that closes.
        assert!(c["pid"].is_u64(), "owner known: {c}");
        let port = counter(c, "sport");
        let s = servers.get(&port).unwrap_or_else(|| panic!("no server record for {c}"));
        assert_eq!(counter(c, "bytes_sent"), counter(s, "bytes_received"), "{c}\n{s}");
        assert_eq!(counter(c, "bytes_received"), counter(s, "bytes_sent"), "{c}\n{s}");
        client_ports.push(port);
    }
    let mut want: Vec<u64> = ports.iter().map(|&p| p.into()).collect();
    want.sort_unstable();
    client_ports.sort_unstable();
    assert_eq!(client_ports, want, "one client record per connection made");
    assert_eq!(servers.len(), N);
    assert!(out.stderr.contains("lost 0:"), "{}", out.stderr);
}

/// Connections still established when tracing stops are printed at exit,
/// marked open, with no counters (their last moment was not seen).
#[test]
fn connections_open_at_exit_are_printed_as_open() {
    if !require_root() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let tracer = record_tracer(&server.to_string());
    let client = TcpStream::connect(server).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    thread::sleep(Duration::from_millis(100));
    let stopping = mono_ns();
    let recs = records_of(&tracer.stop());
    let stopped = mono_ns();
    drop((client, accepted, listener));
    assert_eq!(recs.len(), 2, "{recs:#?}");
    let (client, server) = (the(&recs, "client"), the(&recs, "server"));
    assert_eq!(record_states(client), ["SYN_SENT", "ESTABLISHED"]);
    assert_eq!(record_states(server), ["SYN_RECV", "ESTABLISHED"]);
    for r in [client, server] {
        assert_eq!((&r["end"], &r["open"]), (&"open".into(), &true.into()), "{r}");
        assert!(RECORD_COUNTERS.iter().all(|k| r[*k].is_null()), "no counters: {r}");
        let end = counter(r, "end_ns");
        assert!((stopping..=stopped).contains(&end), "an open record ends when tracing does: {r}");
    }
}

fn usage_error(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN).args(args).stdin(Stdio::null()).stdout(Stdio::null()).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `--connections` needs a format with room for a record, and is not
/// `--raw`: usage errors, one line, exit 2, before anything is loaded.
#[test]
fn connections_needs_a_record_format_and_no_raw() {
    let (code, stderr) = usage_error(&["--connections"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with(
            "tcpstate: --connections needs -o table, json or csv (the original line has no room for a record)"
        ),
        "{stderr}"
    );
    let (code, stderr) = usage_error(&["--connections", "--raw", "-o", "json"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.contains("--connections") && stderr.contains("--raw"), "{stderr}");
}

/// `-c N` counts records with --connections: two refused connects (two
/// transitions each) end a `-c 2` run by themselves, with both records.
#[test]
fn count_ends_the_run_after_that_many_records() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let server = format!("127.0.0.1:{port}");
    let tracer = Tracer::start(&["--server", &server, "--connections", "-o", "json", "-c", "2"]);
    for _ in 0..2 {
        let refused = TcpStream::connect(&server).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    }
    let out = tracer.finish();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let recs = records(&out.stdout);
    assert_eq!(recs.len(), 2, "{}", out.stdout);
    assert!(recs.iter().all(|r| r["end"] == "refused"), "{}", out.stdout);
    assert!(out.stderr.contains("2 connections: 2 ended (refused 2)"), "{}", out.stderr);
}
