//! The TIME_WAIT probe kinds this machine cannot run (fentry/fexit and
//! kprobes), proven on stock Debian kernels booted in QEMU: each kind, and
//! auto, must give the same coherent sequences as the timer kind here. The
//! fentry and kprobe kinds also run on inet_twsk_put, the fallback for
//! kernels without inet_twsk_free, where only the last reference counts.
//! tests/kernels/ fetches the kernels and builds the guest.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Boots `version`, runs tests/kernels/payload-timewait.sh, and returns the
/// guest's output per probe kind: (JSON lines, stderr lines).
fn boot(version: &str) -> Vec<(String, String, String)> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kernels");
    let out = Command::new(here.join("run.sh"))
        .arg(version)
        .arg(here.join("payload-timewait.sh"))
        .arg(BIN)
        .output()
        .expect("running tests/kernels/run.sh");
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "guest {version} failed ({}):\n{console}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sections = Vec::new();
    let mut rest = console.as_str();
    while let Some(start) = rest.find("@@BEGIN ") {
        let after = &rest[start + 8..];
        let kind = &after[..after.find("@@").unwrap()];
        let end = after.find(&format!("@@END {kind}@@")).expect("section end");
        let body = &after[kind.len() + 2..end];
        let json: String = body.lines().filter(|l| l.starts_with('{')).map(|l| format!("{l}\n")).collect();
        let stderr: String =
            body.lines().filter_map(|l| l.strip_prefix("stderr: ")).map(|l| format!("{l}\n")).collect();
        sections.push((kind.to_string(), json, stderr));
        rest = &after[end..];
    }
    sections
}

fn check_kernel(version: &str) {
    if !require_root() {
        return;
    }
    let sections = boot(version);
    let kinds: Vec<&str> = sections.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["fentry", "kprobe", "timer", "auto", "fentry:inet_twsk_put", "kprobe:inet_twsk_put"],
        "every probe kind ran on {version}"
    );
    for (kind, json, stderr) in &sections {
        let ctx = format!("{version} --tw-probe {kind}");
        // What -v says is in use: the kind, and the free function it watches.
        let (probe, free_fn) = kind.split_once(':').unwrap_or((kind, "inet_twsk_free"));
        // 6.10 renamed the hashdance when it took over arming the timer.
        let birth = if version == "6.1" { "inet_twsk_hashdance" } else { "inet_twsk_hashdance_schedule" };
        let expect = match probe {
            "auto" | "fentry" | "kprobe" => {
                let k = if probe == "auto" { "fentry" } else { probe };
                format!("TIME_WAIT probes: {k} ({k}/{birth}, {k}/__inet_twsk_schedule, {k}/{free_fn})")
            }
            _ => "TIME_WAIT probes: timer (".to_string(),
        };
        assert!(stderr.contains(&expect), "{ctx}: want {expect:?} in {stderr}");
        assert!(stderr.contains("lost 0:"), "{ctx}: {stderr}");
        let clients = client_connections(json);
        assert_eq!(clients.len(), 3, "{ctx}: {json}");
        for c in &clients {
            assert_eq!(transitions(c), full_client_seq(), "{ctx}");
            assert_time_wait_fields(c);
            assert_eq!(c[0]["comm"], "curl", "{ctx}");
        }
        let servers = server_connections(json);
        assert_eq!(servers.len(), 3, "{ctx}: {json}");
        for s in &servers {
            assert_eq!(transitions(s), SERVER_SEQ, "{ctx}");
            assert!(s.iter().all(|e| e["comm"] == "nginx"), "{ctx}: {s:?}");
        }
        assert_eq!(json.matches("\"new\":\"TIME_WAIT\"").count(), 3, "{ctx}: one entry per connection");
        assert_eq!(json.matches("\"old\":\"TIME_WAIT\"").count(), 3, "{ctx}: one exit per connection");
    }
}

#[test]
fn debian_6_1_every_probe_kind() {
    check_kernel("6.1");
}

#[test]
fn debian_6_12_every_probe_kind() {
    check_kernel("6.12");
}
