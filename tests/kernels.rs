//! The TIME_WAIT probe kinds this machine cannot run (fentry/fexit and
//! kprobes), proven on stock Debian kernels booted in QEMU (11's 5.10, 12's
//! 6.1 and 6.12): each kind, and auto, must give the same coherent sequences
//! as the timer kind here, and what each kernel lacks is asserted. The
//! fentry and kprobe kinds also run on inet_twsk_put, the fallback for
//! kernels without inet_twsk_free, where only the last reference counts.
//! Beyond curl -> nginx: timewait sockets born on both vCPUs at once, DCCP's
//! timewait sockets (which share TCP's functions) kept out, and a parked
//! FIN_WAIT2 turned TIME_WAIT observed when it happens. And the connection
//! records (--connections) of curl -> nginx, a refused connect and an abort,
//! with auto's probes and the timer's. tests/kernels/ fetches the kernels and
//! builds the guest (with twhelper.c, built here).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Connections per loop of the parallel scenario (two loops, one per vCPU).
const PARALLEL: usize = 40;

/// Bytes of the body nginx returns in the records scenario (a newline follows).
const RECORDS_BODY: u64 = 1000;

/// One run of the guest payload, `KIND[:FUNC][+SCENARIO]`: its JSON lines,
/// its stderr lines and its notes.
struct Section {
    run: String,
    json: String,
    stderr: String,
    notes: String,
}

/// tests/kernels/twhelper.c, built static so that it runs in the guest.
fn build_twhelper(here: &Path) -> PathBuf {
    let out = std::env::temp_dir().join(format!("tcpstate-twhelper-{}", std::process::id()));
    let status = Command::new("gcc")
        .args(["-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg(here.join("twhelper.c"))
        .status()
        .expect("running gcc (apt-get install gcc libc6-dev)");
    assert!(status.success(), "building twhelper.c");
    out
}

/// Boots `version`, runs tests/kernels/payload-timewait.sh, and returns the
/// guest's output per run.
fn boot(version: &str) -> Vec<Section> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kernels");
    let twhelper = build_twhelper(&here);
    let args = [BIN.to_string(), format!("{}=/usr/local/bin/twhelper", twhelper.display())];
    let env = format!("PARALLEL={PARALLEL} RECORDS_BODY={RECORDS_BODY}");
    let sections = guest::boot(version, "payload-timewait.sh", &args, &[("PAYLOAD_ENV", env)]);
    let _ = std::fs::remove_file(&twhelper);
    sections
        .into_iter()
        .map(|s| Section { json: s.json(), stderr: s.lines("stderr: "), notes: s.lines("note: "), run: s.name })
        .collect()
}

/// What a guest kernel offers tcpstate, as it really behaves there.
struct Offers {
    /// The hashdance's name: 6.10 renamed it when it took over arming the
    /// timer.
    birth: &'static str,
    /// Raw tracepoints skip a program that fires while it runs (6.1+), so
    /// the nested-event backup is attached.
    skips_nested: bool,
    /// Tracing programs may call bpf_get_socket_cookie() (5.12+): conn_ids
    /// are cookies, else tcpstate's own, from 2^48.
    cookies: bool,
    /// tcp_send_reset gives the kernel's reason (6.10+).
    reset_reason: bool,
    /// kernel_facts, a syscall program (5.14+) with 5.16's helpers, loads;
    /// else the functions come from /proc/kallsyms.
    kernel_facts: bool,
}

fn offers(version: &str) -> Offers {
    match version {
        "5.10" => Offers {
            birth: "inet_twsk_hashdance",
            skips_nested: false,
            cookies: false,
            reset_reason: false,
            kernel_facts: false,
        },
        "6.1" => Offers {
            birth: "inet_twsk_hashdance",
            skips_nested: true,
            cookies: true,
            reset_reason: false,
            kernel_facts: true,
        },
        "6.12" => Offers {
            birth: "inet_twsk_hashdance_schedule",
            skips_nested: true,
            cookies: true,
            reset_reason: true,
            kernel_facts: true,
        },
        other => panic!("no guest kernel {other}"),
    }
}

/// The first id tcpstate gives itself (src/conn/record.rs: LOCAL_IDS).
const LOCAL_IDS: u64 = 1 << 48;

/// What -v says is attached for a kind on this kernel.
fn probes_line(version: &str, kind: &str) -> String {
    let (probe, free_fn) = kind.split_once(':').unwrap_or((kind, "inet_twsk_free"));
    let birth = offers(version).birth;
    match probe {
        "auto" | "fentry" | "kprobe" => {
            let k = if probe == "auto" { "fentry" } else { probe };
            format!("TIME_WAIT probes: {k} ({k}/{birth}, {k}/__inet_twsk_schedule, {k}/{free_fn})")
        }
        _ => "TIME_WAIT probes: timer (".to_string(),
    }
}

/// [`assert_time_wait_fields`], saying where first.
fn check_time_wait_fields(ctx: &str, conn: &[serde_json::Value]) {
    let (handoff, death) = (&conn[conn.len() - 2], &conn[conn.len() - 1]);
    assert_ne!(death["skaddr"], handoff["skaddr"], "{ctx}: {conn:?}");
    assert_time_wait_fields(conn);
}

/// Every event names both ends: the listener its own (it has no peer), every
/// connection's event its own and its peer's, the client's CLOSE:SYN_SENT
/// aside, whose local port connect() picks after it. The kernel fires the
/// accept (LISTEN:SYN_RECV) before the new socket has its peer's address
/// (5.10, 6.1, 6.12): tcpstate prints it with the socket's next event's.
fn check_both_ends(ctx: &str, json: &str) {
    for e in json_events(json) {
        let t = transition(&e);
        if e["side"] == "server" && (t == "CLOSE:LISTEN" || t == "LISTEN:CLOSE") {
            let ends = (&e["saddr"], &e["sport"], &e["daddr"], &e["dport"]);
            assert_eq!(ends, (&"127.0.0.1".into(), &8080.into(), &"0.0.0.0".into(), &0.into()), "{ctx}: {e}");
            continue;
        }
        assert!(e["saddr"] != "0.0.0.0" && e["daddr"] != "0.0.0.0" && e["dport"] != 0, "{ctx}: both ends: {e}");
        assert_eq!(e["sport"] != 0, t != "CLOSE:SYN_SENT", "{ctx}: the local port: {e}");
    }
}

/// One conn_id per connection, none shared: the kernel's cookies, or
/// tcpstate's own numbers where tracing programs get none.
fn check_conn_ids(ctx: &str, version: &str, conns: &[Vec<serde_json::Value>]) {
    let mut ids = BTreeSet::new();
    for c in conns {
        let id = c[0]["conn_id"].as_u64().unwrap_or_else(|| panic!("{ctx}: no conn_id: {c:?}"));
        assert!(c.iter().all(|e| e["conn_id"] == id), "{ctx}: one conn_id: {c:?}");
        assert_eq!(id >= LOCAL_IDS, !offers(version).cookies, "{ctx}: cookie or tcpstate's own: {c:?}");
        assert!(ids.insert(id), "{ctx}: conn_id {id} names two connections");
    }
}

/// Three curl connections, each through TIME_WAIT to its end.
fn check_curls(ctx: &str, json: &str) -> Vec<Vec<serde_json::Value>> {
    check_both_ends(ctx, json);
    let clients = client_connections(json);
    assert_eq!(clients.len(), 3, "{ctx}: {json}");
    for c in &clients {
        assert_eq!(transitions(c), full_client_seq(), "{ctx}");
        check_time_wait_fields(ctx, c);
        assert_eq!(c[0]["comm"], "curl", "{ctx}");
    }
    clients
}

fn check_nginx(ctx: &str, version: &str, json: &str) {
    let clients = check_curls(ctx, json);
    let servers = server_connections(json);
    assert_eq!(servers.len(), 3, "{ctx}: {json}");
    for s in &servers {
        assert_eq!(transitions(s), SERVER_SEQ, "{ctx}");
        assert!(s.iter().all(|e| e["comm"] == "nginx"), "{ctx}: {s:?}");
    }
    // Every socket here is in the root cgroup: its id on every event.
    let ids: BTreeSet<String> = json_events(json).iter().map(|e| e["cgroup_id"].to_string()).collect();
    assert_eq!(ids.len(), 1, "{ctx}: one cgroup: {ids:?}");
    assert!(ids.iter().all(|id| id.parse::<u64>().is_ok()), "{ctx}: known: {ids:?}");
    check_conn_ids(ctx, version, &[clients, servers].concat());
    assert_eq!(json.matches("\"new\":\"TIME_WAIT\"").count(), 3, "{ctx}: one entry per connection");
    assert_eq!(json.matches("\"old\":\"TIME_WAIT\"").count(), 3, "{ctx}: one exit per connection");
}

/// `--cgroup` on the parent of curl's cgroup, nginx in another: curl's three
/// connections only, TIME_WAIT included (the timewait socket has no cgroup:
/// the kernel side remembered its full socket, by cookie, or by tuple on
/// 5.10), every event with the cgroup curl's socket was made in.
fn check_cgroup(ctx: &str, version: &str, section: &Section) {
    let json = &section.json;
    let id = match noted(&section.notes, "cgroup").as_slice() {
        [n] if n.len() == 1 => n[0],
        other => panic!("{ctx}: cgroup notes {other:?}: {}", section.notes),
    };
    let clients = check_curls(ctx, json);
    for c in &clients {
        assert!(c.iter().all(|e| e["cgroup_id"] == id), "{ctx}: curl's cgroup {id}: {c:?}");
    }
    assert!(json_events(json).iter().all(|e| e["side"] == "client"), "{ctx}: nothing of nginx's: {json}");
    check_conn_ids(ctx, version, &clients);
}

/// Timewait sockets born on both vCPUs at once: each connection gets its
/// own entry and exit, with its own tuple. Both sides are grouped by the
/// client's port rather than by socket address: a client that closes before
/// its FIN is acked may be parked in FIN_WAIT2 first, and then enters
/// TIME_WAIT on its timewait socket, its full socket's lifetime never ending
/// in a transition of its own (the next socket at that address would join
/// its group).
fn check_parallel(ctx: &str, json: &str) {
    let events = json_events(json);
    let clients: Vec<&serde_json::Value> = events.iter().filter(|e| e["side"] == "client").collect();
    let connects = clients.iter().filter(|e| transition(e) == "CLOSE:SYN_SENT").count();
    assert_eq!(connects, 2 * PARALLEL, "{ctx}: {json}");
    let mut by_port: BTreeMap<u64, Vec<serde_json::Value>> = BTreeMap::new();
    for e in clients.iter().filter(|e| e["sport"] != 0) {
        by_port.entry(e["sport"].as_u64().unwrap()).or_default().push((*e).clone());
    }
    assert_eq!(by_port.len(), 2 * PARALLEL, "{ctx}: one port per connection");
    for (port, conn) in &by_port {
        assert_eq!(transitions(conn), full_client_seq()[1..], "{ctx}: port {port}: {conn:?}");
        let tuple =
            |e: &serde_json::Value| (e["saddr"].clone(), e["daddr"].clone(), e["dport"].clone(), e["netns"].clone());
        assert!(conn.iter().all(|e| tuple(e) == tuple(&conn[0])), "{ctx}: port {port}: {conn:?}");
        let (established, death) = (&conn[0], &conn[conn.len() - 1]);
        assert_ne!(death["skaddr"], established["skaddr"], "{ctx}: the timewait socket's own: {conn:?}");
        assert!(death["prev_state_ms"].as_f64().unwrap() > 0.0, "{ctx}: {conn:?}");
    }
    let mut servers: BTreeMap<u64, Vec<serde_json::Value>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["side"] == "server" && e["dport"] != 0) {
        servers.entry(e["dport"].as_u64().unwrap()).or_default().push(e.clone());
    }
    assert_eq!(servers.keys().collect::<Vec<_>>(), by_port.keys().collect::<Vec<_>>(), "{ctx}");
    // The kernel fires LISTEN:SYN_RECV before the child socket has its
    // peer's port; tcpstate holds it until the socket's next event and
    // prints it with the peer, under the socket's own conn_id.
    let accepted = events.iter().filter(|e| transition(e) == "LISTEN:SYN_RECV").count();
    assert_eq!(accepted, 2 * PARALLEL, "{ctx}");
    for (port, conn) in &servers {
        assert_eq!(transitions(conn), SERVER_SEQ, "{ctx}: server of port {port}: {conn:?}");
        assert!(conn.iter().all(|e| e["conn_id"] == conn[0]["conn_id"]), "{ctx}: one conn_id: {conn:?}");
    }
    assert_eq!(json.matches("\"new\":\"TIME_WAIT\"").count(), 2 * PARALLEL, "{ctx}: one entry per connection");
    assert_eq!(json.matches("\"old\":\"TIME_WAIT\"").count(), 2 * PARALLEL, "{ctx}: one exit per connection");
}

/// A DCCP connection through its own TIME_WAIT on the traced port: nothing
/// at all, not even raw timewait records.
fn check_dccp(ctx: &str, section: &Section) {
    let timewaited: u64 = section
        .notes
        .lines()
        .find_map(|l| l.strip_prefix("dccp timewaited "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{ctx}: no DCCP timewait count: {}", section.notes));
    assert!(timewaited >= 1, "{ctx}: the DCCP connection had a timewait socket");
    assert_eq!(section.json, "", "{ctx}: DCCP is not TCP");
}

/// A parked FIN_WAIT2 turned TIME_WAIT 300 ms later by the server's FIN, in
/// the probes' raw records of the client's timewait socket.
fn check_parked(ctx: &str, kind: &str, json: &str) {
    let tw: Vec<serde_json::Value> =
        json_events(json).into_iter().filter(|e| e["side"] == "client" && e["probe"].is_string()).collect();
    let (first, last) = (tw.first().expect("timewait records"), tw.last().unwrap());
    let source = |e: &serde_json::Value| e["probe"].as_str().unwrap().to_string();
    let ts = |e: &serde_json::Value| e["ts_ns"].as_u64().unwrap();
    assert_eq!(first["new"], "FIN_WAIT2", "{ctx}: born parked: {json}");
    assert_eq!(last["new"], "TIME_WAIT", "{ctx}: died in TIME_WAIT: {json}");
    if kind.starts_with("timer") {
        // The re-arm may land in the timer's own bucket: no event then.
        return;
    }
    assert_eq!(source(first), "tw_alloc", "{ctx}");
    assert_eq!(source(last), "tw_free", "{ctx}");
    let rearms: Vec<&serde_json::Value> = tw.iter().filter(|e| source(e) == "tw_arm").collect();
    assert_eq!(rearms.len(), 1, "{ctx}: the server's FIN, seen as it re-arms the timer: {json}");
    assert_eq!(rearms[0]["new"], "TIME_WAIT", "{ctx}: substate read after the change");
    assert!(ts(rearms[0]) > ts(first) + 250_000_000, "{ctx}: at the FIN, 300 ms after the parking");
    assert_eq!(tw.len(), 3, "{ctx}: {json}");
}

/// The numbers of the notes `WHAT N N...` of a section.
fn noted(notes: &str, what: &str) -> Vec<Vec<u64>> {
    let numbers = |l: &str| l.split(' ').map(|n| n.parse().unwrap_or_else(|_| panic!("bad note {what} {l}"))).collect();
    notes.lines().filter_map(|l| l.strip_prefix(what)?.strip_prefix(' ')).map(numbers).collect()
}

/// The states a sequence of transitions enters, CLOSE left out (not a span).
fn entered(seq: &[&str]) -> Vec<String> {
    seq.iter().map(|t| t.split_once(':').unwrap().1).filter(|&s| s != "CLOSE").map(String::from).collect()
}

/// What one connection record must say.
struct Want {
    states: Vec<String>,
    end: &'static str,
    error: Option<&'static str>,
    comm: &'static str,
    sent: u64,
    received: u64,
}

fn check_record(ctx: &str, r: &serde_json::Value, want: &Want) {
    let states: Vec<&str> = r["states"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(states, want.states, "{ctx}: {r}");
    assert!(r["states"].as_array().unwrap().iter().all(|s| s["ns"].is_u64() && s["inferred"] == false), "{ctx}: {r}");
    assert_eq!((r["end"].as_str(), r["open"].as_bool()), (Some(want.end), Some(false)), "{ctx}: {r}");
    assert_eq!(r["error"].as_str(), want.error, "{ctx}: {r}");
    assert_eq!(r["comm"], want.comm, "{ctx}: {r}");
    // A guest under software emulation on a loaded host can be starved
    // long enough for a tail-loss probe or an RTO to fire (seen once: a
    // FIN sent again, 216 ms in LAST_ACK): bytes_sent then counts the
    // payload sent again, which bytes_retrans says. The payload once is
    // exact either way; retransmissions stay few and add up.
    let count = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{ctx}: no {k}: {r}"));
    assert_eq!(
        (count("bytes_sent") - count("bytes_retrans"), count("bytes_received")),
        (want.sent, want.received),
        "{ctx}: {r}"
    );
    assert!(count("retransmits") <= 3, "{ctx}: {r}");
    assert!(count("bytes_retrans") == 0 || count("retransmits") > 0, "{ctx}: {r}");
    if states.contains(&"ESTABLISHED") {
        assert!(r["srtt_us"].as_u64().unwrap() > 0, "{ctx}: {r}");
    }
    // TIME_WAIT's real length, up to the namespace's exit.
    let time_wait = r["states"].as_array().unwrap().iter().find(|s| s["state"] == "TIME_WAIT").map(|s| &s["ns"]);
    assert_eq!(&r["time_wait_ns"], time_wait.unwrap_or(&serde_json::Value::Null), "{ctx}: {r}");
}

/// The records of one namespace: a refused connect, three curl -> nginx
/// requests whose bytes are curl's own count, and an abort; exactly one
/// record per socket, printed when it ended; -v names the reset probes and
/// the summary counts them all.
fn check_records(ctx: &str, version: &str, section: &Section) {
    let (json, notes, stderr) = (&section.json, &section.notes, &section.stderr);
    let resets = if offers(version).reset_reason { "with the kernel's reason" } else { "no reason before 6.10" };
    let resets = format!("; resets: tp_btf/tcp_send_reset ({resets}), tcp_receive_reset");
    assert!(stderr.contains(&resets), "{ctx}: want {resets:?} in {stderr}");
    assert!(!notes.contains("timed out"), "{ctx}: records printed as connections end: {notes}{json}");
    let records = json_events(json);
    let of_port = |side: &str, port: u64| {
        let key = if side == "client" { "sport" } else { "dport" };
        let found: Vec<&serde_json::Value> = records.iter().filter(|r| r["side"] == side && r[key] == port).collect();
        assert_eq!(found.len(), 1, "{ctx}: one {side} record for client port {port}: {json}");
        found[0]
    };
    let curls = noted(notes, "curl");
    assert_eq!(curls.len(), 3, "{ctx}: {notes}");
    for c in &curls {
        let &[port, request, header, download] = c.as_slice() else { panic!("{ctx}: curl note {c:?}") };
        assert_eq!(download, RECORDS_BODY + 1, "{ctx}: the body and its newline");
        let client = Want {
            states: entered(&CLIENT_SEQ),
            end: "time_wait_netns_exit",
            error: None,
            comm: "curl",
            sent: request,
            received: header + download,
        };
        check_record(ctx, of_port("client", port), &client);
        let server = Want {
            states: entered(&SERVER_SEQ),
            end: "passive_close",
            comm: "nginx",
            sent: client.received,
            received: client.sent,
            ..client
        };
        check_record(ctx, of_port("server", port), &server);
    }
    let (port, bytes) = match noted(notes, "abort").as_slice() {
        [a] if a.len() == 2 => (a[0], a[1]),
        other => panic!("{ctx}: abort notes {other:?}"),
    };
    let client = Want {
        states: entered(&CLIENT_SEQ[..2]),
        end: "aborted",
        error: None,
        comm: "twhelper",
        sent: bytes,
        received: 0,
    };
    check_record(ctx, of_port("client", port), &client);
    let server = Want {
        states: entered(&SERVER_SEQ[..2]),
        end: "reset_received",
        error: Some("ECONNRESET"),
        sent: 0,
        received: bytes,
        ..client
    };
    check_record(ctx, of_port("server", port), &server);
    // The refused connect: the client record of no noted port.
    let noted_ports: Vec<u64> = curls.iter().map(|c| c[0]).chain([port]).collect();
    let refused: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["side"] == "client" && !noted_ports.iter().any(|&p| r["sport"] == p)).collect();
    assert_eq!(refused.len(), 1, "{ctx}: {json}");
    let want = Want {
        states: entered(&CLIENT_SEQ[..1]),
        end: "refused",
        error: Some("ECONNREFUSED"),
        comm: "curl",
        sent: 0,
        received: 0,
    };
    check_record(ctx, refused[0], &want);
    // Nothing else: one record per socket, each its own connection, all in
    // the one namespace.
    assert_eq!(records.len(), 2 * curls.len() + 3, "{ctx}: {json}");
    let ids: BTreeSet<u64> = records.iter().map(|r| r["conn_id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), records.len(), "{ctx}: {json}");
    assert!(records.iter().all(|r| r["netns"] == records[0]["netns"]), "{ctx}: {json}");
    let (n, c) = (records.len(), curls.len());
    let summary = format!(
        "{n} connections: {n} ended (passive_close {c}, reset_received 1, refused 1, aborted 1, \
         time_wait_netns_exit {c}), 0 still open at exit"
    );
    assert!(stderr.contains(&summary), "{ctx}: want {summary:?} in {stderr}");
}

fn check_kernel(version: &str) {
    if !require_root() {
        return;
    }
    let sections = boot(version);
    let runs: Vec<&str> = sections.iter().map(|s| s.run.as_str()).collect();
    assert_eq!(
        runs,
        [
            "fentry",
            "fentry+parallel",
            "fentry+dccp",
            "fentry+parked",
            "kprobe",
            "kprobe+parallel",
            "kprobe+dccp",
            "kprobe+parked",
            "timer",
            "timer+dccp",
            "timer+parked",
            "timer+records",
            "timer+cgroup",
            "auto",
            "auto+records",
            "auto+cgroup",
            "fentry:inet_twsk_put",
            "kprobe:inet_twsk_put"
        ],
        "every run on {version}"
    );
    for section in &sections {
        let ctx = format!("{version} {}", section.run);
        let (kind, scenario) = section.run.split_once('+').unwrap_or((&section.run, "nginx"));
        let stderr = &section.stderr;
        let expect = probes_line(version, kind);
        assert!(stderr.contains(&expect), "{ctx}: want {expect:?} in {stderr}");
        let backup = if offers(version).skips_nested {
            "a backup for nested events keyed on the main program's recursion guard"
        } else {
            "no backup for nested events: this kernel never skips a raw tracepoint program \
             (no bpf_prog_inc_misses_counter: before Linux 6.1)"
        };
        assert!(stderr.contains(backup), "{ctx}: want {backup:?} in {stderr}");
        let own_ids = "; connection ids: tcpstate's own (tracing programs get no socket cookie before 5.12)";
        assert_eq!(stderr.contains(own_ids), !offers(version).cookies, "{ctx}: {stderr}");
        // 5.10 knows no syscall programs: the kernel says EINVAL.
        let kallsyms = "; functions from /proc/kallsyms (this kernel refuses kernel_facts: Invalid argument";
        assert_eq!(stderr.contains(kallsyms), !offers(version).kernel_facts, "{ctx}: {stderr}");
        // Debian's kernels are built with CONFIG_HZ_250 and ship no config
        // file the guest can read: tcpstate measures the tick (from
        // jiffies' start, which 5.10 shows in /proc/timer_list only).
        assert!(stderr.contains("; HZ 250 (measured)"), "{ctx}: {stderr}");
        assert!(stderr.contains("lost 0:"), "{ctx}: {stderr}");
        match scenario {
            "nginx" => check_nginx(&ctx, version, &section.json),
            "parallel" => check_parallel(&ctx, &section.json),
            "dccp" => check_dccp(&ctx, section),
            "parked" => check_parked(&ctx, kind, &section.json),
            "records" => check_records(&ctx, version, section),
            "cgroup" => check_cgroup(&ctx, version, section),
            other => panic!("unknown scenario {other}"),
        }
    }
}

#[test]
fn debian_5_10_every_probe_kind() {
    check_kernel("5.10");
}

#[test]
fn debian_6_1_every_probe_kind() {
    check_kernel("6.1");
}

#[test]
fn debian_6_12_every_probe_kind() {
    check_kernel("6.12");
}
