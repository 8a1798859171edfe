//! TIME_WAIT from entry to death, with the probes this kernel accepts
//! (here: the timer tracepoints), against real nginx, curl and sockets.
//! Each test runs its connections in a network namespace of its own, so
//! that it can end their timewait sockets by deleting it.

mod common;
mod parked;

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::time::Duration;

use common::*;

fn count_in(stdout: &str, what: &str) -> usize {
    json_events(stdout).iter().filter(|e| transition(e) == what).count()
}

/// Waits until the tracer has printed `n` transitions `what`.
fn wait_for_transitions(tracer: &Tracer, what: &str, n: usize, limit: Duration) {
    wait_for(limit, &format!("{n} {what}"), || count_in(&tracer.stdout_now(), what) >= n);
}

/// Three curl requests in a namespace that is then deleted: each client
/// connection enters and leaves TIME_WAIT exactly once, and every event of
/// one connection carries its conn_id.
#[test]
fn namespace_exit_ends_time_wait_once_per_connection() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json", "--skaddr"]);
    let raw = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json", "--skaddr", "--raw"]);
    let ns = Netns::new("nsexit");
    let nginx = Nginx::start_in(Some(&ns), &format!("127.0.0.1:{port}"));
    for _ in 0..3 {
        let ok = ns.cmd("curl").args(["-sS", "-o", "/dev/null", &nginx.url()]).status().unwrap();
        assert!(ok.success());
    }
    wait_for_transitions(&tracer, "FIN_WAIT2:TIME_WAIT", 3, Duration::from_secs(5));
    drop(nginx);
    ns.delete();
    wait_for_transitions(&tracer, "TIME_WAIT:CLOSE", 3, Duration::from_secs(20));
    // Nothing more may come for these connections.
    std::thread::sleep(Duration::from_millis(200));
    let (out, raw) = (tracer.stop(), raw.stop());
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let conns = client_connections(&out.stdout);
    assert_eq!(conns.len(), 3);
    for c in &conns {
        assert_eq!(transitions(c), full_client_seq());
        assert_time_wait_fields(c);
        assert_eq!(c.last().unwrap()["comm"], "curl");
    }
    assert_eq!(count_in(&out.stdout, "FIN_WAIT2:CLOSE"), 0, "the hand-off is not shown");
    assert_one_conn_id_per_connection(&out.stdout, &raw.stdout);
}

/// Every event of one connection carries the same conn_id, connect()'s
/// (local port 0) and TIME_WAIT's end (another kernel address) included,
/// and no two connections share one. The timewait socket carries its full
/// socket's cookie: with --raw, the probe events show it.
fn assert_one_conn_id_per_connection(stdout: &str, raw_stdout: &str) {
    let id = |e: &serde_json::Value| e["conn_id"].as_u64().unwrap_or_else(|| panic!("no conn_id in {e}"));
    let mut seen = std::collections::BTreeSet::new();
    let (clients, servers) = (client_connections(stdout), server_connections(stdout));
    assert_eq!((clients.len(), servers.len()), (3, 3));
    for c in clients.iter().chain(&servers) {
        let ids: std::collections::BTreeSet<u64> = c.iter().map(id).collect();
        assert_eq!(ids.len(), 1, "one id for {c:#?}");
        assert!(seen.insert(id(&c[0])), "the id of {c:#?} is another connection's too");
    }
    for c in &clients {
        assert_eq!(c[0]["sport"], 0, "connect()'s first event has no port yet");
        assert_ne!(c[0]["skaddr"], c.last().unwrap()["skaddr"], "TIME_WAIT ends on the timewait socket");
    }
    // The raw probe events of each client's timewait socket (its tuple)
    // carry the cookie of its full socket's events.
    let raw_events = json_events(raw_stdout);
    for c in &clients {
        let tuple = |e: &serde_json::Value| (e["sport"].clone(), e["dport"].clone(), e["netns"].clone());
        let tw: Vec<&serde_json::Value> =
            raw_events.iter().filter(|e| e["probe"].is_string() && tuple(e) == tuple(&c[1])).collect();
        assert!(!tw.is_empty(), "no timewait probe event for {:?}", tuple(&c[1]));
        // A probe event is no transition: its socket's state in both columns.
        for e in &tw {
            assert!(["TIME_WAIT", "FIN_WAIT2"].contains(&e["new"].as_str().unwrap()) && e["old"] == e["new"], "{e}");
            assert!(e["probe"].as_str().unwrap().starts_with("tw_"), "{e}");
        }
        let full: Vec<&serde_json::Value> =
            raw_events.iter().filter(|e| e["probe"].is_null() && tuple(e) == tuple(&c[1])).collect();
        assert!(tw.iter().chain(&full).all(|e| id(e) == id(full[0])), "{tw:#?} {full:#?}");
        assert_eq!(id(full[0]), id(&c[0]), "--raw and the coherent stream name it alike");
    }
}

#[test]
fn many_connections_each_leave_time_wait_once() {
    if !require_root() {
        return;
    }
    const N: usize = 60;
    let port = free_port();
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json", "--skaddr"]);
    let ns = Netns::new("many");
    let nginx = Nginx::start_in(Some(&ns), &format!("127.0.0.1:{port}"));
    let addr = nginx.addr;
    ns.run_in(move || {
        let workers: Vec<_> = (0..6)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..N / 6).for_each(|_| {
                        http_get(addr);
                    })
                })
            })
            .collect();
        workers.into_iter().for_each(|w| w.join().unwrap());
    });
    wait_for_transitions(&tracer, "FIN_WAIT2:TIME_WAIT", N, Duration::from_secs(10));
    drop(nginx);
    ns.delete();
    wait_for_transitions(&tracer, "TIME_WAIT:CLOSE", N, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(200));
    let out = tracer.stop();
    let conns = client_connections(&out.stdout);
    assert_eq!(conns.len(), N);
    for c in &conns {
        assert_eq!(transitions(c), full_client_seq());
        assert_time_wait_fields(c);
    }
    assert!(out.stderr.contains("lost 0:"), "{}", out.stderr);
}

/// Who closes a test connection first.
#[derive(Clone, Copy)]
enum Closer {
    Client,
    /// The request says `Connection: close`: nginx closes after answering.
    Server,
}

/// One request from a client socket bound to a fixed port, as the reuse
/// tests need.
fn get_from_port(server: SocketAddr, local_port: u16) {
    request_from_port(server, local_port, Closer::Client)
}

fn request_from_port(server: SocketAddr, local_port: u16, closer: Closer) {
    use nix::sys::socket::{bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::empty(), None).unwrap();
    setsockopt(&fd, sockopt::ReuseAddr, &true).unwrap();
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::new(127, 0, 0, 1, local_port)).unwrap();
    let SocketAddr::V4(v4) = server else { panic!("IPv4 server expected") };
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(v4)).unwrap();
    // SAFETY: a connected TCP socket we own.
    let mut stream = unsafe { std::net::TcpStream::from_raw_fd(fd.into_raw_fd()) };
    match closer {
        Closer::Client => http_exchange(stream),
        Closer::Server => {
            use std::io::{Read, Write};
            stream.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap(); // until nginx's FIN
            assert!(answer.ends_with("tcpstate test\n"), "{answer}");
        }
    }
}

/// The server closes first, so the server's socket goes through TIME_WAIT;
/// a new SYN from the same client port then ends it (tcp_timewait_state_process
/// answers TCP_TW_SYN and the kernel deschedules the timewait socket).
#[test]
fn a_syn_on_the_servers_time_wait_ends_it() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json", "--skaddr"]);
    let ns = Netns::new("syn");
    let nginx = Nginx::start_in(Some(&ns), &format!("127.0.0.1:{port}"));
    let addr = nginx.addr;
    let local = free_port();
    ns.run_in(move || request_from_port(addr, local, Closer::Server));
    wait_for_transitions(&tracer, "FIN_WAIT2:TIME_WAIT", 1, Duration::from_secs(5));
    ns.run_in(move || request_from_port(addr, local, Closer::Server));
    wait_for_transitions(&tracer, "TIME_WAIT:CLOSE", 1, Duration::from_secs(5));
    wait_for_transitions(&tracer, "FIN_WAIT2:TIME_WAIT", 2, Duration::from_secs(5));
    let out = tracer.stop();
    let servers = server_connections(&out.stdout);
    assert_eq!(servers.len(), 2, "{}", out.stdout);
    let server_seq = [
        "LISTEN:SYN_RECV",
        "SYN_RECV:ESTABLISHED",
        "ESTABLISHED:FIN_WAIT1",
        "FIN_WAIT1:FIN_WAIT2",
        "FIN_WAIT2:TIME_WAIT",
    ];
    let mut ended = server_seq.to_vec();
    ended.push("TIME_WAIT:CLOSE");
    assert_eq!(transitions(&servers[0]), ended);
    assert_time_wait_fields(&servers[0]);
    assert!(servers[0].iter().all(|e| e["side"] == "server" && e["comm"] == "nginx"));
    assert_eq!(transitions(&servers[1]), server_seq, "the second is still in TIME_WAIT");
    let clients = client_connections(&out.stdout);
    let client_seq =
        ["CLOSE:SYN_SENT", "SYN_SENT:ESTABLISHED", "ESTABLISHED:CLOSE_WAIT", "CLOSE_WAIT:LAST_ACK", "LAST_ACK:CLOSE"];
    assert_eq!(clients.len(), 2);
    for c in &clients {
        assert_eq!(transitions(c), client_seq);
    }
    // Killed by the second connection's SYN: after its connect(), before it is established.
    let ts = |e: &serde_json::Value| e["ts_ns"].as_u64().unwrap();
    let death = servers[0].last().unwrap();
    assert!(ts(&clients[1][0]) <= ts(death) && ts(death) <= ts(&clients[1][1]), "{death} vs {:?}", clients[1]);
    assert_eq!(count_in(&out.stdout, "TIME_WAIT:CLOSE"), 1);
}

#[test]
fn reuse_by_a_new_connection_ends_time_wait() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json", "--skaddr"]);
    let ns = Netns::new("reuse");
    let ok = ns.cmd("sysctl").args(["-qw", "net.ipv4.tcp_tw_reuse=1"]).status().unwrap();
    assert!(ok.success());
    let nginx = Nginx::start_in(Some(&ns), &format!("127.0.0.1:{port}"));
    let addr = nginx.addr;
    let local = free_port();
    ns.run_in(move || get_from_port(addr, local));
    wait_for_transitions(&tracer, "FIN_WAIT2:TIME_WAIT", 1, Duration::from_secs(5));
    // tcp_tw_reuse only takes timewait sockets older than tcp_tw_reuse_delay (1 s).
    std::thread::sleep(Duration::from_millis(1500));
    ns.run_in(move || get_from_port(addr, local));
    wait_for_transitions(&tracer, "FIN_WAIT2:TIME_WAIT", 2, Duration::from_secs(5));
    wait_for_transitions(&tracer, "TIME_WAIT:CLOSE", 1, Duration::from_secs(5));
    let out = tracer.stop();
    let conns = client_connections(&out.stdout);
    assert_eq!(conns.len(), 2, "{:#?}", conns);
    let (first, second) = (&conns[0], &conns[1]);
    assert_eq!(transitions(first), full_client_seq());
    assert_time_wait_fields(first);
    assert_eq!(transitions(second), CLIENT_SEQ, "the second is still in TIME_WAIT");
    assert_eq!(first[1]["sport"], second[1]["sport"], "same tuple, reused");
    // Killed by the second connect(): after its SYN_SENT, before its ESTABLISHED.
    let ts = |e: &serde_json::Value| e["ts_ns"].as_u64().unwrap();
    let death = first.last().unwrap();
    assert!(ts(&second[0]) <= ts(death) && ts(death) <= ts(&second[1]), "{death} vs {second:?}");
    assert!(death["prev_state_ms"].as_f64().unwrap() >= 1000.0);
    assert_eq!(count_in(&out.stdout, "TIME_WAIT:CLOSE"), 1);
}

/// Issue 12's wrong story, on this kernel's probes (the timer kind): a
/// client parked by the kernel in a FIN_WAIT2 timewait socket turns
/// TIME_WAIT at the server's FIN with no timer event (the re-arm stays in
/// its timer wheel bucket), then dies with its namespace. The contract is
/// at the top of tests/parked/mod.rs.
fn parked_client_on_this_host(variant: parked::Variant, bucket: parked::Bucket, probe: parked::Probe) {
    if !require_root() {
        return;
    }
    let helper = parked::helper().to_str().unwrap();
    let port = free_port();
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json", "--skaddr", "--tw-probe", "timer"]);
    let ns = Netns::new(&format!("parked-{}-{}", variant.arg(), bucket.arg()));
    let ctx = format!("this host, --tw-probe timer, parked-fin-wait2 -m {} -b {}", variant.arg(), bucket.arg());
    let report = parked::run_helper(ns.cmd(helper), variant, bucket, port, &ctx);
    ns.delete();
    // The namespace's exit ends the client's timewait socket: wait for the
    // client's `-> CLOSE` (whatever it says), then a little for stragglers.
    let ended = |out: &str| {
        json_events(out).iter().any(|e| {
            e["side"] == "client"
                && e["sport"] == report.client_port
                && e["new"] == "CLOSE"
                && e["netns"] == report.netns
        })
    };
    let start = std::time::Instant::now();
    while !ended(&tracer.stdout_now()) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let out = tracer.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    if let Err(e) = parked::check_story(&out.stdout, &out.stderr, &report, variant, probe) {
        panic!("{ctx}: {e}");
    }
}

/// The client half-closes with data unacknowledged and closes 400 ms later
/// (FIN_WAIT1 re-entered); the server drains, then closes 300 ms later.
#[test]
fn parked_fin_wait2_after_a_half_close_is_told_as_time_wait() {
    parked_client_on_this_host(parked::Variant::Unacked, parked::Bucket::Same, parked::Probe::Timer);
}

/// The client closes after a plain exchange; the server's delayed ACK goes
/// out alone and it closes 300 ms later.
#[test]
fn parked_fin_wait2_after_a_lone_ack_is_told_as_time_wait() {
    parked_client_on_this_host(parked::Variant::Late, parked::Bucket::Same, parked::Probe::Timer);
}

/// The same half-close, timed so that the TIME_WAIT re-arm moves the timer
/// to the next wheel bucket: the timer kind then sees it (timer_cancel +
/// timer_start) and tells FIN_WAIT2:TIME_WAIT as observed, as fentry and
/// kprobe do. Today's code gets the TIME_WAIT right in this case.
#[test]
fn parked_fin_wait2_with_a_visible_rearm_is_observed() {
    parked_client_on_this_host(parked::Variant::Unacked, parked::Bucket::Other, parked::Probe::Observed);
}

/// The checker of the tests above and of tests/kernels_parked.rs, on stories
/// made by hand from a real run (tests/data/parked/: today's output, and it
/// rewritten to the contract for each probe kind): it accepts the right
/// story for its kind only, and rejects today's for the right reasons.
#[test]
fn parked_contract_checker_tells_right_from_wrong() {
    use parked::{check_story, Probe, Report, Variant};
    let read = |name: &str| std::fs::read_to_string(data(&format!("parked/{name}"))).unwrap();
    let report = Report::parse(&read("helper.txt"), Some(0), parked::Bucket::Same, "fixture");
    let summary = "tcpstate: 13 transitions (server 7, client 6); lost 0: ring buffer full 0, ...\n";
    let right_timer = read("right-timer.jsonl");
    let right_observed = read("right-observed.jsonl");
    check_story(&right_timer, summary, &report, Variant::Unacked, Probe::Timer).unwrap();
    check_story(&right_observed, summary, &report, Variant::Unacked, Probe::Observed).unwrap();

    let wrong =
        |json: &str, stderr: &str, variant, probe| check_story(json, stderr, &report, variant, probe).unwrap_err();
    let e = wrong(&right_timer, summary, Variant::Unacked, Probe::Observed);
    assert!(e.contains("FIN_WAIT2:TIME_WAIT is observed here"), "{e}");
    let e = wrong(&right_observed, summary, Variant::Unacked, Probe::Timer);
    assert!(e.contains("FIN_WAIT2:TIME_WAIT is inferred here") && e.contains("earliest_ns"), "{e}");
    let e = wrong(&right_timer, summary, Variant::Late, Probe::Timer);
    assert!(e.contains("client transitions"), "{e}");
    let e = wrong(&right_timer, "tcpstate: 13 transitions; lost 1: ...", Variant::Unacked, Probe::Timer);
    assert!(e.contains("lost 0:"), "{e}");
    let today = read("today-timer.jsonl");
    let e = wrong(&today, summary, Variant::Unacked, Probe::Timer);
    for why in
        ["no integer \"conn_id\"", "lack \"earliest_ns\"", "FIN_WAIT2:CLOSE: the kernel had the client in TIME_WAIT"]
    {
        assert!(e.contains(why), "want {why:?} in {e}");
    }
    assert!(e.contains("FIN_WAIT1:FIN_WAIT2 prev_state_ms Some(19.417298), want 419.568869"), "{e}");
}

/// The real thing: TIME_WAIT lasts TCP_TIMEWAIT_LEN, 60 s, then expires.
#[test]
fn time_wait_expires_after_sixty_seconds() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json", "--skaddr"]);
    let ns = Netns::new("expiry");
    let nginx = Nginx::start_in(Some(&ns), &format!("127.0.0.1:{port}"));
    let ok = ns.cmd("curl").args(["-sS", "-o", "/dev/null", &nginx.url()]).status().unwrap();
    assert!(ok.success());
    wait_for_transitions(&tracer, "TIME_WAIT:CLOSE", 1, Duration::from_secs(75));
    let out = tracer.stop();
    let conns = client_connections(&out.stdout);
    assert_eq!(conns.len(), 1);
    assert_eq!(transitions(&conns[0]), full_client_seq());
    assert_time_wait_fields(&conns[0]);
    let ms = conns[0].last().unwrap()["prev_state_ms"].as_f64().unwrap();
    // The kernel's timer wheel fires a 60 s timer up to one bucket late.
    let late = timer_wheel_slack_ms(60_000);
    assert!((59_900.0..=60_000.0 + late + 300.0).contains(&ms), "TIME_WAIT lasted {ms} ms (slack {late} ms)");
}

/// How late the timer wheel (kernel/time/timer.c) may fire a timer due in
/// `ms` on this kernel.
fn timer_wheel_slack_ms(ms: u64) -> f64 {
    wheel_slack_ms(ms, kernel_hz().unwrap_or(100))
}

/// The wheel files a timer in the level whose buckets, 8^level jiffies
/// wide, cover its delay (level n starts at 63 << 3(n-1) jiffies) and rounds
/// the expiry up to a bucket boundary.
fn wheel_slack_ms(ms: u64, hz: u64) -> f64 {
    let jiffies = ms * hz / 1000;
    let level = (1..9u32).find(|&l| jiffies < 63 << (3 * l)).unwrap_or(8);
    (1u64 << (3 * level)) as f64 * 1000.0 / hz as f64
}

/// CONFIG_HZ from /proc/config.gz, when the kernel exposes it.
fn kernel_hz() -> Option<u64> {
    let out = std::process::Command::new("zcat").arg("/proc/config.gz").output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| l.strip_prefix("CONFIG_HZ=")?.parse().ok())
}

#[test]
fn timer_wheel_slack_follows_the_kernel_levels() {
    assert_eq!(wheel_slack_ms(60_000, 250), 2048.0); // 15000 jiffies: level 3
    assert_eq!(wheel_slack_ms(60_000, 1000), 4096.0); // 60000 jiffies: level 4
    assert_eq!(wheel_slack_ms(100, 1000), 8.0); // 100 jiffies: level 1
}
