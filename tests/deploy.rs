//! The files under deploy/ that users copy as they are, each checked by
//! what will read it where that runs here: systemd-analyze verify for the
//! unit, systemd-sysusers and systemd-tmpfiles for their snippets, logrotate
//! for its rule; the unit's command line run under the unit's capability
//! bounding set, no_new_privs and memlock limit, traced by strace against
//! its system call filter, socket families and W^X; and the YAML (the
//! Collector's configuration, the Kubernetes manifests) and the Containerfile
//! read for what their consumers act on.
//!
//! Not run here: the unit's mount sandbox (ProtectSystem=, ReadOnlyPaths=,
//! PrivateDevices=) and IP filter need systemd as PID 1; the Collector and
//! a cluster are not on a test machine.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde::Deserialize;
use serde_json::Value;

/// Where `make install` puts the binary, and so where the unit runs it.
const INSTALLED_BIN: &str = "/usr/local/bin/tcpstate";

/// Where deploy/clickhouse/README's install puts load.sh.
const INSTALLED_LOAD: &str = "/usr/local/lib/tcpstate/load.sh";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn deploy(file: &str) -> String {
    let path = deploy_dir().join(file);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A directory of the test's own, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("tcpstate-deploy-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The output of a command that must succeed.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (run `make deps`)"));
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed: {said}");
    said
}

// ---- The systemd unit -----------------------------------------------------

/// The unit's values of `key`, in order, across sections.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// The one value of `key`.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    match unit_values(unit, key)[..] {
        [v] => v,
        ref vs => panic!("tcpstate.service: {key}= {} times", vs.len()),
    }
}

fn unit() -> String {
    deploy("systemd/tcpstate.service")
}

/// The capabilities the unit bounds tcpstate to, without `CAP_`.
fn unit_capabilities() -> BTreeSet<String> {
    unit_value(&unit(), "CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| c.strip_prefix("CAP_").unwrap_or_else(|| panic!("{c}: not a CAP_ name")).to_string())
        .collect()
}

/// The file the unit appends tcpstate's stdout to.
fn unit_log_file() -> String {
    let unit = unit();
    unit_value(&unit, "StandardOutput").strip_prefix("append:").expect("StandardOutput=append:FILE").to_string()
}

/// systemd-analyze verify loads units as systemd would (drop-ins in a
/// `NAME.d/` beside a unit included) and checks that ExecStart's program
/// exists: the copies it reads run the binary this test was built with, and
/// the repository's load.sh, in place of the installed ones. Anything it says
/// fails the test (an unknown key is only a warning to it). --man=no:
/// Documentation= names the man page `make install` installs, not here.
fn assert_verifies(tag: &str, units: &[(&str, String)]) {
    let dir = Scratch::new(tag);
    let load = deploy_dir().join("clickhouse/load.sh");
    let mut verify = Command::new("systemd-analyze");
    verify.args(["verify", "--man=no"]);
    for (name, text) in units {
        let path = dir.path(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let text = text.replace(INSTALLED_BIN, BIN).replace(INSTALLED_LOAD, load.to_str().unwrap());
        fs::write(&path, text).unwrap();
        if !name.contains(".d/") {
            verify.arg(&path);
        }
    }
    let out = verify.output().expect("systemd-analyze not found: run `make deps`");
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let unit = unit();
    assert_eq!(unit.matches(INSTALLED_BIN).count(), 1, "ExecStart runs {INSTALLED_BIN}, and nothing else names it");
    assert_verifies("verify", &[("tcpstate.service", unit)]);
}

/// The ClickHouse variant: the drop-in that sends tcpstate's own keys into
/// handed-over files, and the timer and service that load them.
#[test]
fn the_clickhouse_units_pass_systemd_analyze_verify() {
    let dropin = deploy("clickhouse/systemd/tcpstate.service.d/clickhouse.conf");
    let exec: Vec<&str> = unit_values(&dropin, "ExecStart").into_iter().filter(|v| !v.is_empty()).collect();
    assert_eq!(exec.len(), 1, "{dropin}");
    for flag in ["-o json", "-w /var/spool/tcpstate/events.json", "--rotate-secs", "--user tcpstate"] {
        assert!(exec[0].contains(flag), "{flag} in {}", exec[0]);
    }
    assert!(!exec[0].contains("--schema"), "the ClickHouse schema is tcpstate's own keys: {}", exec[0]);
    let load = deploy("clickhouse/systemd/tcpstate-load.service");
    assert!(unit_value(&load, "ExecStart").starts_with(&format!("{INSTALLED_LOAD} /var/spool/tcpstate/events.json ")));
    assert_eq!(unit_value(&load, "User"), "tcpstate", "it deletes what tcpstate handed over");
    let tmpfiles = deploy("clickhouse/systemd/tcpstate-spool.tmpfiles");
    assert!(tmpfiles.lines().any(|l| l == "d /var/spool/tcpstate 0750 tcpstate tcpstate -"), "{tmpfiles}");
    assert_verifies(
        "verify-clickhouse",
        &[
            ("tcpstate.service", unit()),
            ("tcpstate.service.d/clickhouse.conf", dropin),
            ("tcpstate-load.service", load),
            ("tcpstate-load.timer", deploy("clickhouse/systemd/tcpstate-load.timer")),
        ],
    );
}

/// systemd-sysusers makes the account the unit's --user names: a system
/// user (below 1000) that cannot log in.
#[test]
fn sysusers_makes_the_units_user() {
    if !require_root() {
        return;
    }
    let unit = unit();
    let exec: Vec<&str> = unit_value(&unit, "ExecStart").split_whitespace().collect();
    let user = exec[exec.iter().position(|a| *a == "--user").expect("ExecStart has --user") + 1];
    let root = Scratch::new("sysusers");
    fs::create_dir_all(root.path("etc")).unwrap();
    run_ok(
        Command::new("systemd-sysusers")
            .arg(format!("--root={}", root.0.display()))
            .arg(deploy_dir().join("systemd/tcpstate.sysusers")),
    );
    let passwd = fs::read_to_string(root.path("etc/passwd")).unwrap();
    let entry: Vec<&str> =
        passwd.lines().find(|l| l.starts_with(&format!("{user}:"))).expect(user).split(':').collect();
    let uid: u32 = entry[2].parse().unwrap();
    assert!(uid > 0 && uid < 1000, "{user} is a system user: {passwd}");
    assert_eq!(entry[6], "/usr/sbin/nologin", "{passwd}");
    let shadow = fs::read_to_string(root.path("etc/shadow")).unwrap();
    assert!(shadow.lines().any(|l| l.starts_with(&format!("{user}:!"))), "no password: {shadow}");
}

/// systemd-tmpfiles makes the directory the unit's log goes to, as the
/// unit's comments and the collector's need it: root's, group adm, setgid.
#[test]
fn tmpfiles_makes_the_log_directory() {
    if !require_root() {
        return;
    }
    let root = Scratch::new("tmpfiles");
    fs::create_dir_all(root.path("etc")).unwrap();
    // Names resolve in the root's own files: this machine's, as on an install.
    for f in ["passwd", "group"] {
        fs::copy(Path::new("/etc").join(f), root.path(&format!("etc/{f}"))).unwrap();
    }
    run_ok(
        Command::new("systemd-tmpfiles")
            .arg(format!("--root={}", root.0.display()))
            .arg("--create")
            .arg(deploy_dir().join("systemd/tcpstate.tmpfiles")),
    );
    let log_dir = Path::new(&unit_log_file()).parent().unwrap().to_path_buf();
    let made = root.0.join(log_dir.strip_prefix("/").unwrap());
    let meta = fs::metadata(&made).unwrap_or_else(|e| panic!("{}: {e}", log_dir.display()));
    use std::os::unix::fs::MetadataExt;
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o7777, 0o2750, "{}", log_dir.display());
    assert_eq!(meta.uid(), 0);
    let adm = nix::unistd::Group::from_name("adm").unwrap().expect("group adm").gid.as_raw();
    assert_eq!(meta.gid(), adm);
}

/// logrotate's copytruncate with a writer that, like the unit's stdout,
/// holds the file open in append mode: the old lines are in the rotated
/// copy, the next line starts the emptied file (no hole of zeros).
#[test]
fn logrotate_keeps_an_appending_writer_at_the_start() {
    let rule = deploy("logrotate/tcpstate");
    let log_file = unit_log_file();
    assert!(rule.contains(&format!("{log_file} {{")), "the rule rotates the unit's {log_file}");
    let dir = Scratch::new("logrotate");
    let log = dir.path("events.json");
    let conf = dir.path("tcpstate.logrotate");
    fs::write(&conf, rule.replace(&log_file, log.to_str().unwrap())).unwrap();
    let mut writer = OpenOptions::new().create(true).append(true).open(&log).unwrap();
    writer.write_all(b"{\"before\":1}\n{\"before\":2}\n").unwrap();
    run_ok(
        Command::new("logrotate").arg("--force").arg("--state").arg(dir.path("state")).arg(&conf).stdin(Stdio::null()),
    );
    writer.write_all(b"{\"after\":1}\n").unwrap();
    assert_eq!(fs::read_to_string(dir.path("events.json.1")).unwrap(), "{\"before\":1}\n{\"before\":2}\n");
    assert_eq!(fs::read(&log).unwrap(), b"{\"after\":1}\n");
}

/// Every system call name in each of systemd's groups (`@name`), as
/// systemd-analyze lists them, groups inside groups left as `@name`.
fn syscall_groups() -> BTreeMap<String, Vec<String>> {
    let listing = run_ok(Command::new("systemd-analyze").arg("syscall-filter"));
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in listing.lines() {
        if line.starts_with('@') {
            current = Some(line.trim().to_string());
            groups.entry(line.trim().to_string()).or_default();
        } else if line.trim().is_empty() || !line.starts_with(' ') {
            current = None;
        } else if let Some(group) = &current {
            let item = line.trim();
            if !item.starts_with('#') {
                groups.get_mut(group).unwrap().push(item.to_string());
            }
        }
    }
    groups
}

/// The system calls a SystemCallFilter= allow list lets through.
fn allowed_syscalls(filter: &str) -> BTreeSet<String> {
    let groups = syscall_groups();
    let mut allowed = BTreeSet::new();
    let mut todo: Vec<String> = filter.split_whitespace().map(String::from).collect();
    while let Some(item) = todo.pop() {
        if item.starts_with('@') {
            todo.extend(groups.get(&item).unwrap_or_else(|| panic!("no system call group {item}")).iter().cloned());
        } else {
            allowed.insert(item);
        }
    }
    allowed
}

/// The pid of the process running `exe`, once `child` (or a process it
/// execs) does.
fn pid_of(exe: &Path, child: &mut std::process::Child) -> u32 {
    let mut found = None;
    wait_for(Duration::from_secs(20), "tcpstate to start", || {
        exited_early(child);
        found = fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            (fs::read_link(format!("/proc/{pid}/exe")).ok()? == exe).then_some(pid)
        });
        found.is_some()
    });
    found.unwrap()
}

/// A process the test started, and the tcpstate it runs (through strace
/// and setpriv), killed when the test ends however it ends: a failed
/// assertion must not leave a tracer attached or a listener behind.
struct Started {
    child: std::process::Child,
    tcpstate: Option<u32>,
}

impl Started {
    fn new(child: std::process::Child) -> Started {
        Started { child, tcpstate: None }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(pid) = self.tcpstate.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails with what `child` said if it has ended.
fn exited_early(child: &mut std::process::Child) {
    if let Ok(Some(status)) = child.try_wait() {
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        panic!("tcpstate exited ({status}): {err}");
    }
}

fn status_field(pid: u32, key: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_default().trim().to_string()
}

/// `args` with the value after `flag` replaced.
fn with_value(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    let at = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("ExecStart has no {flag}"));
    args[at + 1] = value.to_string();
    args
}

/// The keys the Collector's configuration reads from each line: the
/// timestamp's and the host's (`attributes.KEY` or `attributes["KEY"]`).
fn collector_keys() -> (String, String) {
    let config = collector();
    let attribute = |field: &Value| {
        let field = field.as_str().expect("a field");
        let key = field.strip_prefix("attributes.").or_else(|| field.strip_prefix("attributes[\""));
        key.expect("an attribute").trim_end_matches("\"]").to_string()
    };
    let ops = config["receivers"]["filelog"]["operators"].as_array().unwrap();
    let parser = ops.iter().find(|o| o["type"] == "json_parser").unwrap();
    let host = ops.iter().find(|o| o["type"] == "move" && o["to"] == "resource[\"host.name\"]").unwrap();
    (attribute(&parser["timestamp"]["parse_from"]), attribute(&host["from"]))
}

/// What the unit starts, run as the unit runs it (its capability bounding
/// set, no_new_privs, memlock limit, stdout appended to a file) under
/// strace, with two servers that listened before it: nginx (root) and a
/// busybox nc (nobody). It must attach with the TIME_WAIT probes on, name
/// both listeners' owners, drop every privilege, serve metrics, write the
/// lines the Collector reads, stop cleanly on SIGTERM, and make no system
/// call, socket or executable mapping the unit's filters refuse. Only
/// --user (nobody: this machine has no `tcpstate`) and the metrics port
/// (a free one) differ from the unit's.
#[test]
fn the_units_command_line_runs_within_its_capabilities_and_filters() {
    if !require_root() {
        return;
    }
    let unit = unit();
    let exec: Vec<String> = unit_value(&unit, "ExecStart").split_whitespace().map(String::from).collect();
    assert_eq!(exec[0], INSTALLED_BIN);
    assert_eq!(unit_value(&unit, "NoNewPrivileges"), "yes");
    let memlock = match unit_value(&unit, "LimitMEMLOCK") {
        "infinity" => "unlimited".to_string(),
        bytes => bytes.to_string(),
    };
    let memlock = format!("--memlock={memlock}:{memlock}");
    // systemd sets the limit as PID 1; a test without CAP_SYS_RESOURCE
    // cannot raise it, and runs with its own (kernels from 5.11 charge BPF
    // maps to the memory cgroup, not to this limit).
    let raise = Command::new("prlimit").args([&memlock, "--", "true"]).status().is_ok_and(|s| s.success());
    if !raise {
        eprintln!("note: LimitMEMLOCK= not applied (this test may not raise RLIMIT_MEMLOCK)");
    }
    let bounding: Vec<String> = unit_capabilities().iter().map(|c| format!("+{}", c.to_lowercase())).collect();

    let nginx = Nginx::start("127.0.0.1");
    let nc_port = free_port();
    let _nc = Started::new(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "busybox", "nc", "-l", "-p"])
            .arg(nc_port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("setpriv, busybox: run `make deps`"),
    );
    wait_for(Duration::from_secs(10), "nc to listen", || listening(nc_port));

    let dir = Scratch::new("unit-run");
    let events = dir.path("events.json");
    let trace = dir.path("strace.log");
    let metrics = format!("127.0.0.1:{}", free_port());
    let args = with_value(with_value(exec[1..].to_vec(), "--user", "nobody"), "--metrics", &metrics);
    let stdout = OpenOptions::new().create(true).append(true).open(&events).unwrap();
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg("--")
        .args(if raise { vec!["prlimit", &memlock, "--"] } else { vec![] })
        .args(["setpriv", "--no-new-privs", "--inh-caps=-all"])
        .arg(format!("--bounding-set=-all,{}", bounding.join(",")))
        .args(["--", BIN])
        .args(&args)
        .arg("-v")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped());
    let mut run = Started::new(cmd.spawn().expect("strace not found: run `make deps`"));
    let pid = pid_of(&fs::canonicalize(BIN).unwrap(), &mut run.child);
    run.tcpstate = Some(pid);
    wait_for(Duration::from_secs(30), "tcpstate to attach and become nobody", || {
        exited_early(&mut run.child);
        has_tracing_link(pid) && status_field(pid, "Uid:").starts_with("65534")
    });
    assert_eq!(status_field(pid, "Uid:"), "65534\t65534\t65534\t65534");
    assert_eq!(status_field(pid, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(pid, "CapPrm:"), "0000000000000000");
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");

    // A connection the client closes first (its TIME_WAIT needs the
    // probes), and one to the listener nobody owns.
    http_get(nginx.addr);
    drop(TcpStream::connect(("127.0.0.1", nc_port)).unwrap());
    let scrape = Command::new("curl").args(["-sS", "--max-time", "10", &format!("http://{metrics}/metrics")]).output();
    let scrape = String::from_utf8_lossy(&scrape.expect("curl: run `make deps`").stdout).to_string();
    assert!(scrape.contains("tcpstate_build_info"), "metrics: {scrape}");
    let (time_key, host_key) = collector_keys();
    let mut lines = Vec::new();
    wait_for(Duration::from_secs(10), "the client's TIME_WAIT and the accept by nc", || {
        // Whole lines only: the last may be half written.
        let text = fs::read_to_string(&events).unwrap();
        lines = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let port = |e: &Value, key: &str, p: u16| e[key] == p;
        lines
            .iter()
            .any(|e| port(e, "network.peer.port", nginx.addr.port()) && e["network.connection.state"] == "time_wait")
            && lines.iter().any(|e| port(e, "network.local.port", nc_port) && e["tcpstate.side"] == "server")
    });
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = run.child.wait().unwrap();
    run.tcpstate = None;
    let mut stderr = String::new();
    run.child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "tcpstate (through strace) ended with {status}: {stderr}");
    assert!(!stderr.contains("TIME_WAIT probes: off"), "{stderr}");
    assert!(stderr.contains("now running as nobody (uid 65534), without capabilities"), "{stderr}");

    // What the Collector reads: every line has its timestamp and host.
    let hostname = nix::sys::utsname::uname().unwrap().nodename().to_string_lossy().to_string();
    for e in json_events(&fs::read_to_string(&events).unwrap()) {
        assert!(e[&time_key].as_u64().is_some_and(|ns| ns > 1_600_000_000_000_000_000), "{time_key} in {e}");
        assert_eq!(e[&host_key], hostname.as_str(), "{e}");
    }
    // The owners of the listeners that predate tcpstate (CAP_SYS_PTRACE
    // for nginx's root master, CAP_DAC_READ_SEARCH for nobody's nc).
    for (port, owner) in [(nginx.addr.port(), "nginx"), (nc_port, "busybox")] {
        let accept = lines
            .iter()
            .find(|e| e["network.local.port"] == port && e["tcpstate.side"] == "server")
            .unwrap_or_else(|| panic!("no server event on {port}"));
        assert_eq!(accept["process.executable.name"], owner, "the listener's owner: {accept}");
        assert!(accept["process.pid"].as_u64().is_some(), "{accept}");
    }

    // The unit's seccomp filters, against what tcpstate did from its
    // exec on (setpriv's calls before it are not the unit's).
    let trace = fs::read_to_string(&trace).unwrap();
    let start = trace.find(&format!("execve(\"{BIN}\"")).expect("strace saw tcpstate's exec");
    let calls: Vec<(&str, &str)> = trace[start..]
        .lines()
        .filter_map(|l| {
            let call = l.split_once(' ')?.1.trim_start();
            let name = call.split('(').next()?;
            (!name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
                .then_some((name, call))
        })
        .collect();
    let allowed = allowed_syscalls(unit_value(&unit, "SystemCallFilter"));
    let refused: BTreeSet<&str> = calls.iter().map(|c| c.0).filter(|n| !allowed.contains(*n)).collect();
    assert!(refused.is_empty(), "system calls SystemCallFilter= refuses: {refused:?}");
    let families: BTreeSet<&str> = unit_value(&unit, "RestrictAddressFamilies").split_whitespace().collect();
    for (name, call) in &calls {
        if *name == "socket" {
            let family = call.trim_start_matches("socket(").split(',').next().unwrap();
            assert!(families.contains(family), "RestrictAddressFamilies= refuses {call}");
        }
        let wx = (*name == "mmap" && call.contains("PROT_WRITE") && call.contains("PROT_EXEC"))
            || (name.ends_with("mprotect") && call.contains("PROT_EXEC"));
        assert!(!wx, "MemoryDenyWriteExecute= refuses {call}");
    }
}

// ---- YAML ----------------------------------------------------------------

/// Every document of a YAML file, as JSON values.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

fn collector() -> Value {
    match &yaml_docs(&deploy_dir().join("otel/collector.yaml"))[..] {
        [config] => config.clone(),
        docs => panic!("collector.yaml: {} documents", docs.len()),
    }
}

/// Each YAML file under deploy/ parses, every document of it.
#[test]
fn every_yaml_file_under_deploy_parses() {
    let mut todo = vec![deploy_dir()];
    let mut files = 0;
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                let docs = yaml_docs(&path);
                assert!(!docs.is_empty() && docs.iter().all(|d| d.is_object()), "{}", path.display());
                files += 1;
            }
        }
    }
    assert!(files >= 4, "{files} YAML files");
}

/// The Collector tails the unit's log, parses each line with integers
/// kept whole and the timestamp from epoch nanoseconds, moves the host to
/// the resource, and wires receiver, processors and exporter into one logs
/// pipeline, every component named there defined (or it refuses to start).
#[test]
fn the_collector_reads_the_units_lines() {
    let config = collector();
    let filelog = &config["receivers"]["filelog"];
    assert!(filelog["include"].as_array().unwrap().iter().any(|f| *f == unit_log_file().as_str()), "{filelog}");
    assert_eq!(filelog["start_at"], "end");
    let ops = filelog["operators"].as_array().unwrap();
    let parser = &ops[0];
    assert_eq!(parser["type"], "json_parser", "the line is parsed first");
    assert_eq!(parser["parse_ints"], true);
    assert_eq!(
        parser["timestamp"],
        serde_json::json!({"parse_from": "attributes.time_unix_nano", "layout_type": "epoch", "layout": "ns"})
    );
    assert!(ops.iter().all(|o| o.get("severity").is_none() && o["type"] != "severity_parser"), "no severity");
    assert!(ops.iter().any(|o| o["type"] == "move"
        && o["from"] == "attributes[\"host.name\"]"
        && o["to"] == "resource[\"host.name\"]"));
    let storage = filelog["storage"].as_str().unwrap();
    assert!(config["extensions"].get(storage).is_some());

    let service = &config["service"];
    let names = |v: &Value| v.as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert!(names(&service["extensions"]).contains(&storage.to_string()));
    for ext in names(&service["extensions"]) {
        assert!(config["extensions"].get(&ext).is_some(), "extension {ext} undefined");
    }
    let pipeline = &service["pipelines"]["logs"];
    assert_eq!(names(&pipeline["receivers"]), ["filelog"]);
    let processors = names(&pipeline["processors"]);
    assert!(processors.contains(&"batch".to_string()), "{processors:?}");
    let exporters = names(&pipeline["exporters"]);
    assert!(exporters.iter().any(|e| matches!(e.split('/').next(), Some("otlp" | "otlphttp"))), "{exporters:?}");
    for (section, used) in
        [("receivers", names(&pipeline["receivers"])), ("processors", processors), ("exporters", exporters)]
    {
        for name in used {
            assert!(config[section].get(&name).is_some(), "{section}: {name} is in the pipeline but undefined");
        }
    }
}

/// The DaemonSet: the node's network and processes, not privileged, the
/// unit's capabilities plus SYS_RESOURCE (a container has no
/// LimitMEMLOCK=), read-only host mounts of BTF and tracefs only, the
/// metrics port announced to Prometheus, the node's name as the host.
#[test]
fn the_daemonset_asks_for_the_minimum() {
    let docs = yaml_docs(&deploy_dir().join("kubernetes/daemonset.yaml"));
    let of_kind = |kind: &str| {
        let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "one {kind}");
        found[0]
    };
    let ns = of_kind("Namespace");
    let namespace = ns["metadata"]["name"].as_str().unwrap();
    assert_eq!(namespace, "tcpstate");
    let sa = of_kind("ServiceAccount");
    assert_eq!(sa["metadata"]["namespace"], namespace);
    let ds = of_kind("DaemonSet");
    assert_eq!(ds["apiVersion"], "apps/v1");
    assert_eq!(ds["metadata"]["namespace"], namespace);
    let labels = ds["spec"]["template"]["metadata"]["labels"].as_object().unwrap();
    for (k, v) in ds["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(labels.get(k), Some(v), "the selector matches the pods");
    }

    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(pod["hostPID"], true, "listener owners are read from the node's /proc");
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsUser"], 0);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let added: BTreeSet<String> =
        sc["capabilities"]["add"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    let mut want = unit_capabilities();
    want.insert("SYS_RESOURCE".into());
    assert_eq!(added, want, "the unit's capabilities, and SYS_RESOURCE for memlock");

    let volumes: BTreeMap<&str, &str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["hostPath"]["path"].as_str().expect("only host paths")))
        .collect();
    let mounts: BTreeMap<&str, &str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["readOnly"], true, "{m}");
            (m["mountPath"].as_str().unwrap(), volumes[m["name"].as_str().unwrap()])
        })
        .collect();
    let want: BTreeMap<&str, &str> =
        [("/sys/kernel/btf", "/sys/kernel/btf"), ("/sys/kernel/tracing", "/sys/kernel/tracing")].into();
    assert_eq!(mounts, want, "each host path where it is on the node, nothing else");
    assert_eq!(volumes.len(), mounts.len());

    let ports = c["ports"].as_array().unwrap();
    let metrics = ports.iter().find(|p| p["name"] == "metrics").expect("a port named metrics");
    assert_eq!(metrics["containerPort"], 9187);
    let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9187");

    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.contains(&"--hostname=$(NODE_NAME)"), "{args:?}");
    assert!(args.iter().any(|a| a.starts_with("--metrics=") && a.ends_with(":9187")), "{args:?}");
    let env: BTreeMap<&str, &str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap()))
        .collect();
    assert_eq!(env.get("NODE_NAME"), Some(&"spec.nodeName"));
    for arg in &args {
        for var in arg.split("$(").skip(1) {
            let var = var.split(')').next().unwrap();
            assert!(env.contains_key(var), "{arg} uses $({var}), which is not in env");
        }
    }
    let user = args.iter().find_map(|a| a.strip_prefix("--user=")).expect("--user");
    let image = deploy("kubernetes/Containerfile");
    assert!(image.lines().any(|l| l.contains("useradd --system") && l.ends_with(&format!(" {user}"))), "{user}");
    for kind in ["requests", "limits"] {
        assert!(c["resources"][kind]["memory"].is_string(), "memory {kind}");
    }
    assert!(c["resources"]["requests"]["cpu"].is_string());
}

// ---- Containerfile ---------------------------------------------------------

/// The Debian package that ships `lib`, as ldd names it.
fn package_of(lib: &str) -> String {
    let real = fs::canonicalize(lib).unwrap().to_string_lossy().to_string();
    let other = lib.strip_prefix("/usr").map_or_else(|| format!("/usr{lib}"), String::from);
    for path in [lib.to_string(), other, real] {
        let out = Command::new("dpkg").args(["-S", &path]).output().unwrap();
        if out.status.success() {
            let found = String::from_utf8_lossy(&out.stdout).to_string();
            return found.split(':').next().unwrap().to_string();
        }
    }
    panic!("no package ships {lib}")
}

/// The packages of each `apt-get install` in `stage`.
fn installed(stage: &str) -> BTreeSet<String> {
    let joined = stage.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|l| l.split_once("apt-get install"))
        .flat_map(|(_, rest)| {
            rest.split("&&").next().unwrap().split_whitespace().filter(|w| !w.starts_with('-')).map(String::from)
        })
        .collect()
}

/// Two stages: a Debian bookworm Rust builder with the build packages,
/// then bookworm-slim with exactly the packages of the shared libraries
/// the binary links that slim lacks, the binary copied from the builder,
/// run as root (it drops to the account the stage makes).
#[test]
fn the_containerfile_builds_on_bookworm_and_runs_slim() {
    let file = deploy("kubernetes/Containerfile");
    let mut stages: Vec<(String, String)> = Vec::new(); // (FROM line, body)
    for line in file.lines().filter(|l| !l.trim_start().starts_with('#')) {
        if let Some(from) = line.strip_prefix("FROM ") {
            stages.push((from.to_string(), String::new()));
        } else if let Some((_, body)) = stages.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    assert_eq!(stages.len(), 2, "{stages:?}");
    let (build_from, build) = &stages[0];
    let (run_from, run) = &stages[1];
    assert!(build_from.contains("rust:") && build_from.contains("bookworm") && build_from.ends_with(" AS build"));
    assert_eq!(run_from, "docker.io/library/debian:bookworm-slim");

    let build_pkgs = installed(build);
    for pkg in ["clang", "libelf-dev", "zlib1g-dev", "pkg-config"] {
        assert!(build_pkgs.contains(pkg), "the builder installs {pkg}: {build_pkgs:?}");
    }
    assert!(build.contains("cargo build --release --locked"));

    // What the binary links, by package; libc6 and libgcc-s1 are in slim.
    let ldd = run_ok(Command::new("ldd").arg(BIN));
    let linked: BTreeSet<String> = ldd
        .lines()
        .filter_map(|l| l.split("=> ").nth(1)?.split_whitespace().next())
        .map(package_of)
        .filter(|p| p != "libc6" && p != "libgcc-s1")
        .collect();
    assert_eq!(installed(run), linked, "the runtime stage installs the linked libraries' packages:\n{ldd}");

    assert!(run.contains("COPY --from=build "), "{run}");
    assert!(run.contains("ENTRYPOINT [\"/usr/local/bin/tcpstate\"]"), "{run}");
    assert!(run.contains("USER 0\n"), "root, said so: {run}");
    assert!(run.contains("useradd --system") && run.contains("\"--user\", \"tcpstate\""), "{run}");
}
