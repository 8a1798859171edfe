//! Issue 12's wrong story on stock Debian 5.10, 6.1 and 6.12 kernels booted in
//! QEMU, with every TIME_WAIT probe kind that they run: fentry, kprobe and
//! timer. tests/kernels/payload-parked.sh traces parked-fin-wait2 (built by
//! tests/parked/mod.rs and put in the guest) once per way of parking the
//! client, each in a namespace that dies with it. The contract each kind's
//! story must meet is at the top of tests/parked/mod.rs.

mod common;
mod parked;

use std::time::Instant;

use common::*;
use parked::{Bucket, Probe, Report, Variant};

const KINDS: [&str; 3] = ["fentry", "kprobe", "timer"];

/// What the guest printed for one probe kind.
struct Section {
    kind: String,
    json: String,
    stderr: String,
    /// The helper's report per variant, its exit code taken out.
    helpers: Vec<(Variant, String, Option<i32>)>,
}

/// Boots `version` with the payload and returns each kind's section.
fn boot(version: &str) -> Vec<Section> {
    let start = Instant::now();
    let sections =
        guest::boot(version, "payload-parked.sh", &[BIN.to_string(), parked::helper().display().to_string()], &[]);
    eprintln!("{version}: guest ran in {:.1} s", start.elapsed().as_secs_f64());
    sections
        .into_iter()
        .map(|s| {
            let helpers = Variant::ALL
                .iter()
                .map(|&v| {
                    let text = s.lines(&format!("helper {}: ", v.arg()));
                    let exit = text.lines().rev().find_map(|l| l.strip_prefix("exit=")).and_then(|c| c.parse().ok());
                    (v, text, exit)
                })
                .collect();
            Section { json: s.json(), stderr: s.lines("stderr: "), helpers, kind: s.name }
        })
        .collect()
}

fn check_kernel(version: &str) {
    if !require_root() {
        return;
    }
    let sections = boot(version);
    let kinds: Vec<&str> = sections.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, KINDS, "every probe kind ran on {version}");
    // Every kind and variant is checked before failing, so that one boot
    // shows everything that is wrong.
    let mut failures = Vec::new();
    for s in &sections {
        let want = format!("TIME_WAIT probes: {} (", s.kind);
        assert!(s.stderr.contains(&want), "{version}: want {want:?} in {}", s.stderr);
        for (variant, text, exit) in &s.helpers {
            let ctx = format!("{version} --tw-probe {} parked-fin-wait2 -m {}", s.kind, variant.arg());
            let report = Report::parse(text, *exit, Bucket::Same, &ctx);
            if let Err(e) = parked::check_story(&s.json, &s.stderr, &report, *variant, Probe::of_kind(&s.kind)) {
                failures.push(format!("{ctx}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} runs failed:\n\n{}", failures.len(), KINDS.len() * 2, failures.join("\n\n"));
}

#[test]
fn debian_5_10_parked_fin_wait2_is_told_as_time_wait() {
    check_kernel("5.10");
}

#[test]
fn debian_6_1_parked_fin_wait2_is_told_as_time_wait() {
    check_kernel("6.1");
}

#[test]
fn debian_6_12_parked_fin_wait2_is_told_as_time_wait() {
    check_kernel("6.12");
}
