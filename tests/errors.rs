//! Bad input: one clear line on stderr naming the problem and the fix, a
//! non-zero exit code, and nothing of tcpstate left in the kernel.

mod common;

use std::process::{Command, Stdio};

use common::*;

struct Run {
    code: Option<i32>,
    stderr: String,
}

fn run(cmd: &mut Command) -> Run {
    let child = cmd.stdin(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_no_programs_of(pid);
    Run { code: out.status.code(), stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

/// bpftool names the processes holding each program: none may be `pid`.
fn assert_no_programs_of(pid: u32) {
    let Ok(out) = Command::new("bpftool").args(["-j", "prog", "show"]).output() else { return };
    let progs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    for prog in progs.as_array().into_iter().flatten() {
        for holder in prog["pids"].as_array().into_iter().flatten() {
            assert_ne!(holder["pid"].as_u64(), Some(pid.into()), "program left behind: {prog}");
        }
    }
}

fn tcpstate(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).stdout(Stdio::null());
    c
}

fn assert_one_line(r: &Run, code: i32, needle: &str) {
    assert_eq!(r.code, Some(code), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one line: {:?}", r.stderr);
    assert!(r.stderr.starts_with("tcpstate: "), "{}", r.stderr);
    assert!(r.stderr.contains(needle), "want {needle:?} in {}", r.stderr);
    assert!(!r.stderr.contains("panicked") && !r.stderr.contains("backtrace"), "{}", r.stderr);
}

#[test]
fn usage_errors_exit_2_with_the_fix() {
    for (args, needle) in [
        (&["300.1.1.1", "80"][..], "'300.1.1.1' is not an IPv4 or IPv6 address"),
        (&["127.0.0.1"], "<SERVER_PORT>"),
        (&["127.0.0.1", "0"], "use a number from 1 to 65535"),
        (&["127.0.0.1", "http"], "'http' is not a port"),
        (&["--server", "127.0.0.1"], "write e.g. 127.0.0.1:80 or [::1]:80"),
        (&["--server", "[::1]:0"], "port 0"),
        (&["-L", "80-90"], "'80-90' is not a port"),
        (&["-D", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17"], "at most 16 ports"),
        (&["-d", "-1"], "not a duration"),
        (&["-d", "soon"], "not a duration"),
        (&["-c", "0"], "greater than 0"),
        (&["-p", "abc"], "not a process id"),
        (&["-o", "xml"], "[possible values: original, table, json, csv]"),
        (&["--ringbuf-kb", "3"], "power of two"),
        (&["--tw-probe", "magic"], "[possible values: auto, fentry, kprobe, timer, off]"),
        (&["-4", "-6"], "cannot be used with"),
        (&["--connections"], "--connections needs -o table, json or csv (the original line has no room for a record)"),
        (&["--connections", "-o", "json", "--raw"], "cannot be used with"),
        (&["--frobnicate"], "unexpected argument '--frobnicate'"),
        (&["--rotate-secs", "60"], "--write <FILE>"),
        (&["-w", "x.json", "--rotate-mb", "0"], "greater than 0"),
        (&["--hostname=web 1"], "'web 1' is not a host name"),
        (&["--schema", "otel"], "--schema otel names the keys of transition lines: use it with -o json"),
        (&["--schema", "otel", "-o", "json", "--connections"], "without --connections"),
        (&["--schema", "ecs"], "[possible values: tcpstate, otel]"),
    ] {
        let r = run(&mut tcpstate(args));
        assert_one_line(&r, 2, needle);
    }
}

/// `--cgroup` and `--netns` name something that must exist and be what
/// they say: anything else is a usage error before anything is loaded.
#[test]
fn a_cgroup_or_netns_that_is_not_one_is_named() {
    let mut cases: Vec<(String, String, String)> = [
        ("--cgroup", "/nonexistent/cgroup", "no cgroup /nonexistent/cgroup: neither /nonexistent/cgroup nor"),
        ("--cgroup", "/tmp", "/tmp is not a cgroup v2 directory (cgroup v2 is mounted at "),
        (
            "--netns",
            "/run/netns/tcpstate-no-such-ns",
            "network namespace '/run/netns/tcpstate-no-such-ns' does not exist",
        ),
        ("--netns", "tcpstate-no-such-ns", "'tcpstate-no-such-ns' (/run/netns/tcpstate-no-such-ns) does not exist"),
        ("--netns", "/etc/hostname", "'/etc/hostname' is not a network namespace: give /run/netns/NAME"),
        ("--netns", "/proc/self/ns/uts", "'/proc/self/ns/uts' is not a network namespace"),
        ("--netns", "0", "no network namespace has inode 0"),
    ]
    .iter()
    .map(|(flag, value, needle)| (flag.to_string(), value.to_string(), needle.to_string()))
    .collect();
    if let Some(mount) = Cgroup::mount() {
        let missing = mount.join("tcpstate-no-such-cgroup").display().to_string();
        cases.push(("--cgroup".into(), missing.clone(), format!("no cgroup {missing}: neither {missing} nor")));
    }
    // A cgroup v1 controller's directory, where the machine mounts one.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let v1 = mountinfo.lines().find_map(|l| {
        let (mount, fs) = l.split_once(" - ")?;
        (fs.split_whitespace().next()? == "cgroup").then(|| mount.split_whitespace().nth(4).map(String::from))?
    });
    if let Some(v1) = v1 {
        let needle = format!("{v1} is not a cgroup v2 directory");
        cases.push(("--cgroup".into(), v1, needle));
    }
    for (flag, value, needle) in cases {
        let r = run(&mut tcpstate(&["-o", "json", &flag, &value]));
        assert_one_line(&r, 2, &needle);
    }
}

#[test]
fn not_root_is_told_to_use_sudo() {
    if !require_root() {
        return;
    }
    let r = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .stdout(Stdio::null()));
    assert_one_line(&r, 1, "needs root (or CAP_BPF and CAP_PERFMON): run tcpstate with sudo");
}

#[test]
fn missing_or_bad_btf_is_named() {
    if !require_root() {
        return;
    }
    let r = run(&mut tcpstate(&["--btf", "/nonexistent/vmlinux"]));
    assert_one_line(&r, 1, "kernel BTF not found at /nonexistent/vmlinux");
    let r = run(&mut tcpstate(&["--btf", "/etc/hostname"]));
    assert_one_line(&r, 1, "/etc/hostname is not a BTF file");
}

/// On this kernel fentry programs are refused and kprobes do not exist:
/// asking for them names the program and the kernel's reason.
#[test]
fn refused_probe_kinds_name_the_program_and_reason() {
    if !require_root() {
        return;
    }
    let kprobes = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    let r = run(&mut tcpstate(&["--tw-probe", "fentry"]));
    if r.code == Some(1) {
        assert_one_line(&r, 1, "the kernel refuses fentry/inet_twsk_hashdance_schedule: Operation not permitted");
    }
    if !kprobes {
        let r = run(&mut tcpstate(&["--tw-probe", "kprobe"]));
        assert_one_line(
            &r,
            1,
            "TIME_WAIT probe 'kprobe' cannot run on this kernel (try --tw-probe auto): this kernel has no kprobes",
        );
    }
}

#[test]
fn an_output_file_that_cannot_be_written_is_named_before_attaching() {
    if !require_root() {
        return;
    }
    let r = run(&mut tcpstate(&["-o", "json", "-w", "/nonexistent-dir/events.json"]));
    assert_one_line(&r, 1, "cannot write /nonexistent-dir/events.json: name a file in a directory that exists");
}

#[test]
#[cfg(feature = "metrics")]
fn a_metrics_address_that_is_taken_is_named_before_attaching() {
    if !require_root() {
        return;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let r = run(&mut tcpstate(&["-o", "json", "--metrics", &addr, "-v"]));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(!r.stderr.contains("attached"), "attached before naming the address: {}", r.stderr);
    let last = r.stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!("tcpstate: cannot listen on {addr} for --metrics: Address already in use (give --metrics a free address of this host)")
    );
}

#[test]
fn a_full_device_is_an_error() {
    if !require_root() {
        return;
    }
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let r = run(tcpstate(&["-o", "csv"]).stdout(full));
    assert_one_line(&r, 1, "writing the output: No space left on device");
}
