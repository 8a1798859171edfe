//! Containers (issue 14): every event carries its socket's own cgroup id,
//! softirq ones and TIME_WAIT included; `--cgroup` and `--netns` trace one
//! container, decided in the kernel. Real nginx and curl, in cgroups and
//! network namespaces the tests make and remove. Traffic stays in those
//! namespaces, so what the tracers print is the tests' own.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;

const LISTENER: [&str; 2] = ["CLOSE:LISTEN", "LISTEN:CLOSE"];

/// An accepted socket whose server closes first: the server goes through
/// TIME_WAIT (a FIN_WAIT2 the kernel may park in a timewait socket first).
const SERVER_CLOSES: [&str; 6] = [
    "LISTEN:SYN_RECV",
    "SYN_RECV:ESTABLISHED",
    "ESTABLISHED:FIN_WAIT1",
    "FIN_WAIT1:FIN_WAIT2",
    "FIN_WAIT2:TIME_WAIT",
    "TIME_WAIT:CLOSE",
];

/// Its client, which closes passively.
const CLIENT_PASSIVE: [&str; 5] =
    ["CLOSE:SYN_SENT", "SYN_SENT:ESTABLISHED", "ESTABLISHED:CLOSE_WAIT", "CLOSE_WAIT:LAST_ACK", "LAST_ACK:CLOSE"];

/// One connection as a test compares it: side, the server's port, its
/// transitions in order, and every cgroup id its events carried.
type Seen = (String, u64, Vec<String>, BTreeSet<Option<u64>>);

/// The JSON events of one tracer, grouped by connection id (the kernel's
/// cookie: reused socket addresses cannot mix two connections), each
/// described as [`Seen`], sorted.
fn seen(stdout: &str) -> Vec<Seen> {
    let mut conns: BTreeMap<u64, Vec<serde_json::Value>> = BTreeMap::new();
    for ev in json_events(stdout) {
        conns.entry(ev["conn_id"].as_u64().unwrap()).or_default().push(ev);
    }
    let mut seen: Vec<Seen> = conns
        .values()
        .map(|evs| {
            let side = evs[0]["side"].as_str().unwrap().to_string();
            let port = if side == "server" { &evs[0]["sport"] } else { &evs[0]["dport"] };
            let cgroups = evs.iter().map(|e| e["cgroup_id"].as_u64()).collect();
            (side, port.as_u64().unwrap(), transitions(evs), cgroups)
        })
        .collect();
    seen.sort();
    seen
}

fn expect(side: &str, port: u16, seq: &[&str], cgroup: u64) -> Seen {
    (side.into(), port.into(), seq.iter().map(|s| s.to_string()).collect(), BTreeSet::from([Some(cgroup)]))
}

fn sorted(mut v: Vec<Seen>) -> Vec<Seen> {
    v.sort();
    v
}

/// One request with `Connection: close`, read to the end: nginx closes
/// first, then this client.
fn get_until_closed(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("tcpstate test"), "{answer}");
}

/// curl from `cgroup`, in `ns`: it closes first (nginx keeps the connection alive).
fn curl_in(cgroup: &Cgroup, ns: &Netns, addr: SocketAddr) {
    let mut curl = ns.cmd("curl");
    curl.args(["-sS", "-o", "/dev/null", "--max-time", "10", &format!("http://{addr}/")]);
    let status = cgroup.run(&curl).status().expect("curl not found: run `make deps`");
    assert!(status.success(), "curl: {status}");
}

/// The id of the cgroup this test runs in (`0::/path` in /proc/self/cgroup).
fn own_cgroup_id() -> u64 {
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = own.lines().find_map(|l| l.strip_prefix("0::")).expect("no cgroup v2 line in /proc/self/cgroup");
    let dir: PathBuf = Cgroup::mount().unwrap().join(path.trim_start_matches('/'));
    std::fs::metadata(dir).unwrap().ino()
}

/// Two nginx, each in a cgroup of its own (two levels below the root, so the
/// kernel's ancestor check is asked at the depth tcpstate computed), curl
/// from a third, and clients of the test's own cgroup that let nginx close
/// first: one connection each way per nginx, so that both ends reach
/// TIME_WAIT, which ends with their namespace.
#[test]
fn cgroup_ids_and_the_cgroup_filter() {
    if !require_root() {
        return;
    }
    let Some(mount) = Cgroup::mount() else {
        eprintln!("skipped: no cgroup2 mount");
        return;
    };
    let top = Cgroup::new("ctr");
    // nginx B's cgroup is named as Docker names a container's (systemd driver).
    let container = "0123456789abcdef".repeat(4);
    let (a, b, clients) = (top.child("a"), top.child(&format!("docker-{container}.scope")), top.child("clients"));
    let ns = Netns::new("ctr-cg");
    let (pa, pb) = (free_port(), free_port());
    let ns_path = format!("/run/netns/{}", ns.name);
    let a_path = a.path.to_str().unwrap();
    let all = Tracer::start(&["--netns", &ns_path, "-o", "json"]);
    let only_a = Tracer::start(&["--cgroup", a_path, "-o", "json"]);
    let records = Tracer::start(&[
        "--cgroup",
        clients.path.to_str().unwrap(),
        "--netns",
        &ns_path,
        "--connections",
        "-o",
        "json",
    ]);
    let served_a = Tracer::start(&["--cgroup", top.path.to_str().unwrap(), "127.0.0.1", &pa.to_string(), "-o", "json"]);

    let nginx_a = Nginx::start_in_cgroup(Some(&ns), &a, &format!("127.0.0.1:{pa}"));
    let nginx_b = Nginx::start_in_cgroup(Some(&ns), &b, &format!("127.0.0.1:{pb}"));
    for addr in [nginx_a.addr, nginx_b.addr] {
        curl_in(&clients, &ns, addr);
        ns.run_in(move || get_until_closed(addr));
    }
    wait_for_in_stream(&all, "LAST_ACK:CLOSE", 4, Duration::from_secs(10));
    drop((nginx_a, nginx_b));
    ns.delete();
    wait_for_in_stream(&all, "TIME_WAIT:CLOSE", 4, Duration::from_secs(10));
    let (all, only_a, records, served_a) = (all.stop(), only_a.stop(), records.stop(), served_a.stop());
    for out in [&all, &only_a, &records, &served_a] {
        assert_eq!(out.code, Some(0), "{}", out.stderr);
    }

    let (ida, idb, idc, own) = (a.id(), b.id(), clients.id(), own_cgroup_id());
    assert!(a.path.starts_with(&mount) && [ida, idb, idc].iter().all(|&id| id > 1 && id != own));
    let server_a = vec![
        expect("server", pa, &LISTENER, ida),
        expect("server", pa, &SERVER_SEQ, ida),
        expect("server", pa, &SERVER_CLOSES, ida),
    ];
    let curl_a = expect("client", pa, &full_client_seq(), idc);
    let mut every = server_a.clone();
    every.extend([
        curl_a.clone(),
        expect("client", pa, &CLIENT_PASSIVE, own),
        expect("server", pb, &LISTENER, idb),
        expect("server", pb, &SERVER_SEQ, idb),
        expect("server", pb, &SERVER_CLOSES, idb),
        expect("client", pb, &full_client_seq(), idc),
        expect("client", pb, &CLIENT_PASSIVE, own),
    ]);
    // Every event of every socket carries its own cgroup's id: SYN_RECV,
    // FIN_WAIT2 and TIME_WAIT (set in softirq, on top of whichever task ran)
    // and the timewait sockets' events (which have no cgroup) included.
    assert_eq!(seen(&all.stdout), sorted(every), "{}", all.stdout);
    // --cgroup: nginx A's sockets, none of nginx B's, curl's or the test's.
    assert_eq!(seen(&only_a.stdout), sorted(server_a.clone()), "{}", only_a.stdout);
    // A parent takes the cgroups below it; the server's rule still applies.
    let mut under_top = server_a;
    under_top.push(curl_a);
    assert_eq!(seen(&served_a.stdout), sorted(under_top), "{}", served_a.stdout);

    // Each event names its cgroup by path, relative to the cgroup2 mount,
    // and B's container, found from that path.
    let relative = |c: &Cgroup| format!("/{}", c.path.strip_prefix(&mount).unwrap().display());
    let mut named = BTreeSet::new();
    for e in json_events(&all.stdout) {
        let container_keys = (e["container_id"].as_str(), e["container_runtime"].as_str(), e["pod_uid"].as_str());
        if e["cgroup_id"] == ida {
            assert_eq!((e["cgroup"].as_str(), container_keys), (Some(relative(&a).as_str()), (None, None, None)));
        } else if e["cgroup_id"] == idb {
            assert_eq!(e["cgroup"].as_str(), Some(relative(&b).as_str()), "{e}");
            assert_eq!(container_keys, (Some(container.as_str()), Some("docker"), None), "{e}");
        } else if e["cgroup_id"] == idc {
            assert_eq!(e["cgroup"].as_str(), Some(relative(&clients).as_str()), "{e}");
        }
        named.insert(e["cgroup"].as_str().map(str::to_string));
    }
    assert!(named.contains(&Some(relative(&b))) && !named.contains(&None), "{named:?}");

    let recs = common::records(&records.stdout);
    assert_eq!(recs.len(), 2, "{}", records.stdout);
    for r in &recs {
        assert_eq!(record_states(r), ["SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"], "{r}");
        assert_eq!((r["cgroup_id"].as_u64(), r["end"].as_str()), (Some(idc), Some("time_wait_netns_exit")), "{r}");
        assert_eq!(
            (r["cgroup"].as_str(), r["container_id"].as_str()),
            (Some(relative(&clients).as_str()), None),
            "{r}"
        );
    }
}

/// A process that keeps a namespace company, so that `/proc/PID/ns/net`
/// names it; killed on drop.
struct Resident(Child);

impl Drop for Resident {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two namespaces serve the same address and port: each tracer shows the
/// one it was given, by path, by inode number or by a process of it, with
/// the server's rule and -4 applied as well.
#[test]
fn the_netns_filter_takes_every_spelling() {
    if !require_root() {
        return;
    }
    let (x, y) = (Netns::new("ctr-x"), Netns::new("ctr-y"));
    let port = free_port();
    let resident = Resident(y.cmd("sleep").arg("60").stdin(Stdio::null()).spawn().unwrap());
    let (inode_x, inode_y) = (netns_inode(&x), netns_inode(&y));
    let by_path =
        Tracer::start(&["--netns", &format!("/run/netns/{}", x.name), "127.0.0.1", &port.to_string(), "-o", "json"]);
    let by_inode = Tracer::start(&["--netns", &inode_x.to_string(), "-o", "json"]);
    let by_process = Tracer::start(&["--netns", &format!("/proc/{}/ns/net", resident.0.id()), "-4", "-o", "json"]);
    let at = format!("127.0.0.1:{port}");
    let (nginx_x, nginx_y) = (Nginx::start_in(Some(&x), &at), Nginx::start_in(Some(&y), &at));
    let addr = nginx_x.addr;
    x.run_in(move || http_get(addr));
    for _ in 0..2 {
        y.run_in(move || http_get(addr));
    }
    wait_for_in_stream(&by_inode, "LAST_ACK:CLOSE", 1, Duration::from_secs(10));
    wait_for_in_stream(&by_process, "LAST_ACK:CLOSE", 2, Duration::from_secs(10));
    drop((nginx_x, nginx_y, resident));
    x.delete();
    y.delete();
    wait_for_in_stream(&by_inode, "TIME_WAIT:CLOSE", 1, Duration::from_secs(10));
    wait_for_in_stream(&by_process, "TIME_WAIT:CLOSE", 2, Duration::from_secs(10));
    let (by_path, by_inode, by_process) = (by_path.stop(), by_inode.stop(), by_process.stop());

    // Sides, ports and transitions: the cgroups are the other test's.
    let conn = |side: &str, seq: &[&str]| -> (String, u64, Vec<String>) {
        (side.into(), port.into(), seq.iter().map(|s| s.to_string()).collect())
    };
    let mut one = vec![conn("server", &LISTENER), conn("server", &SERVER_SEQ), conn("client", &full_client_seq())];
    one.sort();
    let mut two = one.clone();
    two.extend([conn("server", &SERVER_SEQ), conn("client", &full_client_seq())]);
    two.sort();
    for (out, want, inode) in [(&by_path, &one, inode_x), (&by_inode, &one, inode_x), (&by_process, &two, inode_y)] {
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let got: Vec<(String, u64, Vec<String>)> =
            seen(&out.stdout).into_iter().map(|(s, p, t, _)| (s, p, t)).collect();
        assert_eq!(&got, want, "{}", out.stdout);
        assert!(json_events(&out.stdout).iter().all(|e| e["netns"].as_u64() == Some(inode)), "{}", out.stdout);
    }
}
