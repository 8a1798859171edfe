//! Running tcpstate where it matters: privilege drop, setuid refusal,
//! several instances at once, signals in the middle of a burst.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

fn status_field(pid: u32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_default().trim().to_string()
}

#[test]
fn user_drops_every_privilege_and_keeps_tracing() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json", "--user", "nobody", "-v"]);
    let pid = tracer.pid();
    wait_for(Duration::from_secs(10), "the switch to nobody", || status_field(pid, "Uid:").starts_with("65534"));
    assert_eq!(status_field(pid, "Uid:"), "65534\t65534\t65534\t65534");
    assert_eq!(status_field(pid, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(pid, "CapPrm:"), "0000000000000000");
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
    let nginx = Nginx::start_on(&format!("127.0.0.1:{port}"));
    assert_eq!(curl(&nginx.url()), 0);
    wait_for(Duration::from_secs(5), "the connection to close", || !has_connection(port));
    let out = tracer.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let events = json_events(&out.stdout);
    assert_eq!(events.len(), 11, "listener and both sides: {}", out.stdout);
    assert!(out.stderr.contains("now running as nobody (uid 65534), without capabilities"), "{}", out.stderr);
    assert!(out.stderr.contains("tcpstate: 11 transitions (server 6, client 5); lost 0:"), "{}", out.stderr);
}

#[test]
fn setuid_installs_are_refused() {
    if !require_root() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tcpstate-suid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("tcpstate");
    std::fs::copy(BIN, &copy).unwrap();
    Command::new("chmod").args(["0755", dir.to_str().unwrap()]).status().unwrap();
    Command::new("chmod").args(["4755", copy.to_str().unwrap()]).status().unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&copy)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // On a nosuid mount the bit is ignored: then it runs as nobody, and the
    // privilege check speaks instead.
    let nosuid = Command::new("findmnt")
        .args(["-no", "OPTIONS", "-T"])
        .arg(std::env::temp_dir())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).split(',').any(|opt| opt.trim() == "nosuid"));
    let want = if nosuid { "needs root" } else { "refusing to run setuid or setgid: remove the bit" };
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(want), "want {want:?}: {stderr}");
}

#[test]
fn two_instances_at_once_both_see_everything() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let a = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json"]);
    let b = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "csv", "--tw-probe", "off"]);
    let nginx = Nginx::start_on(&format!("127.0.0.1:{port}"));
    for _ in 0..5 {
        http_get(nginx.addr);
    }
    wait_for(Duration::from_secs(5), "the connections to close", || !has_connection(port));
    let (a, b) = (a.stop(), b.stop());
    assert_eq!(json_events(&a.stdout).len(), 1 + 5 * 10);
    assert_eq!(b.stdout.lines().count(), 1 + 1 + 5 * 10, "CSV header, listener, 5 connections");
    assert_eq!(b.stdout.matches(",FIN_WAIT2,CLOSE,").count(), 5, "without TIME_WAIT probes the hand-off shows");
    assert_eq!(a.stdout.matches("\"new\":\"TIME_WAIT\"").count(), 5);
}

/// A burst in flight when the signal comes: tcpstate detaches, drains what
/// is queued, summarises and exits 0, leaving nothing attached.
fn signal_during_burst(sig: Signal) {
    let port = free_port();
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json"]);
    let pid = tracer.pid();
    let nginx = Nginx::start_on(&format!("127.0.0.1:{port}"));
    let addr: SocketAddr = nginx.addr;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                (0..150).for_each(|_| {
                    http_get(addr);
                })
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(100));
    let out = tracer.signal(sig);
    workers.into_iter().for_each(|w| w.join().unwrap());
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let printed = json_events(&out.stdout).len();
    assert!(printed > 0);
    assert!(out.stderr.contains(&format!("tcpstate: {printed} transitions")), "{}", out.stderr);
    assert!(out.stderr.contains("lost 0:"), "{}", out.stderr);
    assert!(!has_bpf_link(pid));
}

#[test]
fn sigint_during_a_burst() {
    if require_root() {
        signal_during_burst(Signal::SIGINT);
    }
}

#[test]
fn sigterm_during_a_burst() {
    if require_root() {
        signal_during_burst(Signal::SIGTERM);
    }
}

#[cfg(feature = "plot")]
#[test]
fn plot_of_random_bytes_is_one_clear_error() {
    let junk: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let path = std::env::temp_dir().join(format!("tcpstate-junk-{}", std::process::id()));
    std::fs::write(&path, junk).unwrap();
    let out = Command::new(BIN).arg("plot").arg(&path).arg("-o").arg("/dev/null").output().unwrap();
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("tcpstate: ") && last.contains("no TCP state transitions in the input"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// --metrics, scraped with curl while tracing.
#[cfg(feature = "metrics")]
#[test]
fn metrics_are_scrapeable_while_tracing() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json", "--metrics", &metrics_addr]);
    let nginx = Nginx::start_on(&format!("127.0.0.1:{port}"));
    assert_eq!(curl(&nginx.url()), 0);
    let scrape = || {
        let out = Command::new("curl").args(["-sS", &format!("http://{metrics_addr}/metrics")]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let want = [
        "tcpstate_transitions_total{side=\"client\",old=\"CLOSE\",new=\"SYN_SENT\"} 1",
        "tcpstate_transitions_total{side=\"client\",old=\"FIN_WAIT2\",new=\"TIME_WAIT\"} 1",
        "tcpstate_transitions_total{side=\"server\",old=\"LAST_ACK\",new=\"CLOSE\"} 1",
        "tcpstate_sockets{side=\"client\",state=\"TIME_WAIT\"} 1",
        "tcpstate_sockets{side=\"server\",state=\"LISTEN\"} 1",
        "tcpstate_timewait_sockets 1",
        "tcpstate_events_lost_total{reason=\"ring_buffer_full\"} 0",
    ];
    let mut text = String::new();
    wait_for(Duration::from_secs(10), "the metrics to show the connection", || {
        text = scrape();
        want.iter().all(|line| text.lines().any(|l| l == *line))
    });
    assert!(text.contains("# TYPE tcpstate_transitions_total counter"), "{text}");
    let out = tracer.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(json_events(&out.stdout).len(), 11, "the scrapes are not on the traced port");
}

/// The connection table's bound: a tiny table crowded by TIME_WAIT sockets
/// evicts its quietest connections, says how many in the summary and the
/// metrics alike, and every transition is still printed.
#[cfg(feature = "metrics")]
#[test]
fn a_full_connection_table_is_counted_not_silent() {
    if !require_root() {
        return;
    }
    const N: usize = 10;
    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let args = ["127.0.0.1", &port.to_string(), "-o", "json", "--metrics", &metrics_addr, "--conn-table-size", "4"];
    let tracer = Tracer::start(&args);
    let ns = Netns::new("tablefull");
    let nginx = Nginx::start_in(Some(&ns), &format!("127.0.0.1:{port}"));
    let addr = nginx.addr;
    ns.run_in(move || {
        (0..N).for_each(|_| {
            http_get(addr);
        })
    });
    let scrape = || {
        let out = Command::new("curl").args(["-sS", &format!("http://{metrics_addr}/metrics")]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let evicted = |text: &str| -> Option<u64> {
        text.lines().find_map(|l| l.strip_prefix("tcpstate_connections_evicted_total ")?.parse().ok())
    };
    let mut text = String::new();
    wait_for(Duration::from_secs(10), "every transition to be counted", || {
        text = scrape();
        text.lines().any(|l| l == "tcpstate_transitions_total{side=\"client\",old=\"FIN_WAIT2\",new=\"TIME_WAIT\"} 10")
    });
    let out = tracer.stop();
    drop(nginx);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // The listener and ten connections held in TIME_WAIT need eleven places.
    let n = evicted(&text).unwrap_or_else(|| panic!("no eviction count in\n{text}"));
    assert!(n >= 7, "{n} evicted: {text}");
    assert!(out.stderr.contains(&format!("; {n} connections evicted (table full)")), "{}", out.stderr);
    assert_eq!(json_events(&out.stdout).len(), 1 + N * 10, "every transition printed");
    assert_eq!(out.stdout.matches("\"new\":\"TIME_WAIT\"").count(), N);
}

/// The backup program for events the kernel skips must find the main
/// program's recursion guard on this kernel (else it falls back to a flag);
/// and in normal operation it must report nothing twice.
#[test]
fn nested_events_are_watched_through_the_main_programs_guard() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let tracer = Tracer::start(&["127.0.0.1", &port.to_string(), "-o", "json", "-v"]);
    let nginx = Nginx::start_on(&format!("127.0.0.1:{port}"));
    for _ in 0..20 {
        http_get(nginx.addr);
    }
    wait_for(Duration::from_secs(5), "the connections to close", || !has_connection(port));
    let out = tracer.stop();
    assert!(
        out.stderr.contains("a backup for nested events keyed on the main program's recursion guard"),
        "{}",
        out.stderr
    );
    assert_eq!(json_events(&out.stdout).len(), 1 + 20 * 10, "no event twice");
}
