//! Shared test fixtures: a real nginx on a free loopback port, the real
//! tcpstate binary, and readers for what it prints.
#![allow(dead_code)]

pub mod guest;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tcpstate");

/// The server sequence of an accepted socket when the client closes first.
pub const SERVER_SEQ: [&str; 5] =
    ["LISTEN:SYN_RECV", "SYN_RECV:ESTABLISHED", "ESTABLISHED:CLOSE_WAIT", "CLOSE_WAIT:LAST_ACK", "LAST_ACK:CLOSE"];

/// The client sequence up to the hand-off to a timewait socket, which the
/// TIME_WAIT probes (on this kernel: timer tracepoints) report as entering
/// TIME_WAIT.
pub const CLIENT_SEQ: [&str; 5] =
    ["CLOSE:SYN_SENT", "SYN_SENT:ESTABLISHED", "ESTABLISHED:FIN_WAIT1", "FIN_WAIT1:FIN_WAIT2", "FIN_WAIT2:TIME_WAIT"];

/// The client sequence of one connection, TIME_WAIT entered and left once.
pub fn full_client_seq() -> Vec<&'static str> {
    let mut seq = CLIENT_SEQ.to_vec();
    seq.push("TIME_WAIT:CLOSE");
    seq
}

/// Connections that begin with connect(), from JSON output.
pub fn client_connections(stdout: &str) -> Vec<Vec<serde_json::Value>> {
    connections(&json_events(stdout)).into_iter().filter(|c| transition(&c[0]) == "CLOSE:SYN_SENT").collect()
}

/// Connections accepted from a listener, from JSON output.
pub fn server_connections(stdout: &str) -> Vec<Vec<serde_json::Value>> {
    connections(&json_events(stdout)).into_iter().filter(|c| transition(&c[0]) == "LISTEN:SYN_RECV").collect()
}

/// `TIME_WAIT:CLOSE` carries the hand-off's side, tuple and owner, the
/// timewait socket's own address, and the time spent in TIME_WAIT.
pub fn assert_time_wait_fields(conn: &[serde_json::Value]) {
    let (handoff, death) = (&conn[conn.len() - 2], &conn[conn.len() - 1]);
    for field in ["side", "saddr", "sport", "daddr", "dport", "netns", "cgroup_id", "pid", "comm", "family"] {
        assert_eq!(death[field], handoff[field], "{field} of TIME_WAIT:CLOSE");
    }
    assert_ne!(death["skaddr"], handoff["skaddr"], "TIME_WAIT:CLOSE is the timewait socket's");
    assert!(death["prev_state_ms"].as_f64().unwrap() > 0.0);
}

/// Root-only tests run everywhere root is; in CI a missing root is a
/// failure, elsewhere the test says why it did nothing.
pub fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "CI must run the kernel tests as root");
    eprintln!("skipped: needs root (run `make test` as root)");
    false
}

/// A free TCP port on loopback (the kernel picks it; we release it at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A private nginx listening on `addr`, stopped on drop.
pub struct Nginx {
    pub addr: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    /// `host` is "127.0.0.1" or "[::1]"; a free port is picked.
    pub fn start(host: &str) -> Nginx {
        Nginx::start_on(&format!("{host}:{}", free_port()))
    }

    /// Listens on `addr` ("127.0.0.1:8080", "[::1]:8080"); returns once it does.
    pub fn start_on(addr: &str) -> Nginx {
        Nginx::start_in(None, addr)
    }

    /// Like [`Nginx::start_on`], inside a network namespace when given.
    pub fn start_in(netns: Option<&Netns>, addr: &str) -> Nginx {
        Nginx::start_with(nginx_command(netns), addr)
    }

    /// Like [`Nginx::start_in`], its processes in `cgroup` from the start:
    /// its listener, and every socket accepted from it, belong there.
    pub fn start_in_cgroup(netns: Option<&Netns>, cgroup: &Cgroup, addr: &str) -> Nginx {
        Nginx::start_with(cgroup.run(&nginx_command(netns)), addr)
    }

    /// `nginx` (the command that runs it) with the test page, on `addr`.
    fn start_with(nginx: Command, addr: &str) -> Nginx {
        let addr: SocketAddr = addr.parse().unwrap();
        let dir = std::env::temp_dir().join(format!("tcpstate-nginx-{}-{}", std::process::id(), addr.port()));
        Nginx::launch(nginx, addr, dir, "", "location / { return 200 \"tcpstate test\\n\"; }")
    }

    /// Writes a configuration with `http` lines and a `server` block body
    /// for `addr` into `dir`, starts it with `nginx` (the command that runs
    /// nginx, in a namespace or a cgroup), and returns once it listens.
    fn launch(mut nginx: Command, addr: SocketAddr, dir: PathBuf, http: &str, server: &str) -> Nginx {
        fs::create_dir_all(&dir).unwrap();
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log stderr;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  {http}\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               server {{\n    listen {addr};\n    {server}\n  }}\n}}\n",
            d = dir.display()
        );
        fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = nginx
            .args(["-e", "stderr", "-p"])
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx not found: run `make deps`");
        let nginx = Nginx { addr, child, dir };
        let pid = nginx.child.id();
        wait_for(Duration::from_secs(10), "nginx to listen", || {
            socket_states_of(Some(pid), addr.port()).iter().any(|s| s == "0A")
        });
        nginx
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for Nginx {
    /// SIGTERM: the master stops its workers too (SIGKILL would orphan them,
    /// keeping a test's network namespace alive).
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Kernel state numbers (hex, as /proc/net/tcp prints them) of the sockets
/// whose local or remote port is `port`. Reading /proc makes no connection
/// the tracer would see.
pub fn socket_states(port: u16) -> Vec<String> {
    socket_states_of(None, port)
}

/// [`socket_states`] in the network namespace of process `pid`.
pub fn socket_states_of(pid: Option<u32>, port: u16) -> Vec<String> {
    let want = format!(":{port:04X}");
    let dir = pid.map_or("/proc/net".to_string(), |p| format!("/proc/{p}/net"));
    let mut states = Vec::new();
    for f in ["tcp", "tcp6"] {
        for l in fs::read_to_string(format!("{dir}/{f}")).unwrap_or_default().lines().skip(1) {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.len() > 3 && (cols[1].ends_with(&want) || cols[2].ends_with(&want)) {
                states.push(cols[3].to_string());
            }
        }
    }
    states
}

/// Whether a socket listens on `port`.
pub fn listening(port: u16) -> bool {
    socket_states(port).iter().any(|s| s == "0A")
}

/// Whether a connection on `port` is still open: anything but a listener
/// or a timewait socket.
pub fn has_connection(port: u16) -> bool {
    socket_states(port).iter().any(|s| s != "0A" && s != "06")
}

pub fn wait_for(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// One curl request; returns curl's exit code.
pub fn curl(url: &str) -> i32 {
    Command::new("curl")
        .args(["-sS", "-g", "-o", "/dev/null", "--max-time", "10", url])
        .status()
        .expect("curl not found: run `make deps`")
        .code()
        .unwrap_or(-1)
}

/// A plain HTTP/1.1 request on a fresh connection that the client closes
/// first, as curl does; returns the client's local port.
pub fn http_get(addr: SocketAddr) -> u16 {
    let s = TcpStream::connect(addr).unwrap();
    let local = s.local_addr().unwrap().port();
    http_exchange(s);
    local
}

/// One request and its answer on a connected stream, which is then closed.
pub fn http_exchange(mut s: TcpStream) {
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = [0u8; 512];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("tcpstate test\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "nginx closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
}

/// The tcpstate binary running in the background, stopped by SIGINT.
pub struct Tracer {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<thread::JoinHandle<()>>,
}

/// What a stopped tracer printed and how it ended.
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub code: Option<i32>,
}

impl Tracer {
    /// Starts tcpstate and returns once its programs are attached.
    pub fn start(args: &[&str]) -> Tracer {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        let pid = child.id();
        let mut tracer = Tracer { child, stdout, stderr, readers };
        wait_for(Duration::from_secs(20), "tcpstate to attach", || {
            if let Ok(Some(status)) = tracer.child.try_wait() {
                panic!("tcpstate exited early ({status}): {}", tracer.stderr.lock().unwrap());
            }
            has_tracing_link(pid)
        });
        tracer
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed on stdout so far.
    pub fn stdout_now(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// SIGINT, then everything it printed.
    pub fn stop(self) -> Output {
        self.signal(nix::sys::signal::Signal::SIGINT)
    }

    pub fn signal(self, sig: nix::sys::signal::Signal) -> Output {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).unwrap();
        self.finish()
    }

    /// Waits for it to exit on its own (-d, -c).
    pub fn finish(mut self) -> Output {
        let status = self.child.wait().unwrap();
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        Output {
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
            code: status.code(),
        }
    }
}

/// A test that fails half-way must not leave its tracer running (attached,
/// and slowing down everything else on the machine).
impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            into.lock().unwrap().push_str(&line);
            line.clear();
        }
    })
}

/// Any bpf_link file descriptor, the iterator's included: what a stopped
/// tracer must leave none of.
pub fn has_bpf_link(pid: u32) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy() == "anon_inode:bpf_link"))
}

/// A program is attached to a kernel event: a bpf_link other than an
/// iterator's (tcpstate briefly holds one to find the main program's
/// recursion guard, before it traces anything). The state program is
/// attached first, so from then on what the test does is seen.
pub fn has_tracing_link(pid: u32) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy() == "anon_inode:bpf_link")
            && fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy()))
                .is_ok_and(|info| info.lines().any(|l| l.starts_with("link_type:") && !l.ends_with("iter")))
    })
}

/// The `ts:` lines of the original format, as (side, "OLD:NEW").
pub fn seed_lines(stderr: &str) -> Vec<(String, String)> {
    stderr
        .lines()
        .filter_map(|l| {
            let mut parts = l.strip_prefix("ts:")?.splitn(3, ':');
            let ts = parts.next()?;
            assert!(ts.parse::<u64>().is_ok(), "bad timestamp in {l}");
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

/// JSON lines, parsed.
pub fn json_events(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}"))).collect()
}

/// "OLD:NEW" of a JSON event.
pub fn transition(ev: &serde_json::Value) -> String {
    format!("{}:{}", ev["old"].as_str().unwrap(), ev["new"].as_str().unwrap())
}

/// JSON events grouped per socket lifetime, each in arrival order. The
/// kernel reuses a freed socket's address, so a lifetime ends at `-> CLOSE`
/// or at the hand-off to a timewait socket (`-> TIME_WAIT`), whose own
/// `TIME_WAIT:CLOSE` then starts a group of its own.
pub fn by_socket(events: &[serde_json::Value]) -> Vec<Vec<serde_json::Value>> {
    let mut groups: Vec<Vec<serde_json::Value>> = Vec::new();
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    for ev in events {
        let key = ev["skaddr"].as_str().unwrap().to_string();
        let idx = *open.entry(key.clone()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[idx].push(ev.clone());
        if ev["new"] == "CLOSE" || ev["new"] == "TIME_WAIT" {
            open.remove(&key);
        }
    }
    groups
}

/// Whole connections: each socket lifetime from [`by_socket`], with the
/// transitions of its timewait socket appended (same namespace and tuple
/// as the full socket's hand-off).
pub fn connections(events: &[serde_json::Value]) -> Vec<Vec<serde_json::Value>> {
    let tuple = |e: &serde_json::Value| {
        (e["netns"].clone(), e["saddr"].clone(), e["sport"].clone(), e["daddr"].clone(), e["dport"].clone())
    };
    let mut conns: Vec<Vec<serde_json::Value>> = Vec::new();
    for group in by_socket(events) {
        let first = &group[0];
        let from_tw = first["old"] == "TIME_WAIT" || first["old"] == "FIN_WAIT2";
        if from_tw {
            // tw_reuse can give two connections the same tuple: the timewait
            // socket belongs to the latest hand-off before its own events.
            let ts = |e: &serde_json::Value| e["ts_ns"].as_u64().unwrap();
            if let Some(c) = conns
                .iter_mut()
                .filter(|c| {
                    let last = c.last().unwrap();
                    last["new"] == first["old"] && tuple(last) == tuple(first) && ts(last) <= ts(first)
                })
                .max_by_key(|c| ts(c.last().unwrap()))
            {
                c.extend(group);
                continue;
            }
        }
        conns.push(group);
    }
    conns
}

pub fn transitions(events: &[serde_json::Value]) -> Vec<String> {
    events.iter().map(transition).collect()
}

/// Path of a file under tests/data.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// A network namespace of the test's own, with `lo` up; deleted on drop.
/// Its processes' sockets are visible to the tracer like any others.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("tcpstate-{tag}-{}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        run(ns.cmd("ip").args(["link", "set", "lo", "up"]));
        ns
    }

    /// A command that runs inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `f` on a thread that has entered the namespace, so that the
    /// sockets it makes live there.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        thread::spawn(move || {
            let ns = fs::File::open(&path).unwrap();
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    /// Deletes the namespace now; the kernel then destroys it, and its
    /// timewait sockets with it, once its last process is gone.
    pub fn delete(self) {}
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A cgroup v2 of the test's own below the root of the cgroup2 mount
/// (wherever /proc/self/mountinfo says it is), removed with every cgroup
/// below it on drop, even when the test fails; processes still in them are
/// moved to the root cgroup first.
pub struct Cgroup {
    pub path: PathBuf,
    /// Made by [`Cgroup::new`]: its drop removes the tree. A child goes
    /// with its parent.
    top: bool,
}

impl Cgroup {
    /// The cgroup2 mount point, if the system has one.
    pub fn mount() -> Option<PathBuf> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
        mountinfo.lines().find_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            (fs.split_whitespace().next()? == "cgroup2").then(|| mount.split_whitespace().nth(4).map(PathBuf::from))?
        })
    }

    /// A new cgroup below the root, `tcpstate-{tag}-{pid}`.
    pub fn new(tag: &str) -> Cgroup {
        let path = Cgroup::mount().expect("no cgroup2 mount").join(format!("tcpstate-{tag}-{}", std::process::id()));
        remove_cgroups(&path); // a killed run's
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Cgroup { path, top: true }
    }

    /// A cgroup below this one, removed with it.
    pub fn child(&self, name: &str) -> Cgroup {
        let path = self.path.join(name);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Cgroup { path, top: false }
    }

    /// Its id, as the kernel reports it: its directory's inode number.
    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&self.path).unwrap().ino()
    }

    /// `cmd` (its program and arguments), run by a shell that first moves
    /// itself into this cgroup, so that every socket it makes belongs here.
    pub fn run(&self, cmd: &Command) -> Command {
        let mut sh = Command::new("sh");
        sh.args(["-c", "echo $$ > \"$0\" && exec \"$@\""]).arg(self.path.join("cgroup.procs"));
        sh.arg(cmd.get_program()).args(cmd.get_args());
        sh
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if self.top {
            remove_cgroups(&self.path);
        }
    }
}

/// Removes a cgroup and those below it, deepest first. A process that
/// just exited leaves its cgroup a moment later: each removal is retried
/// for up to 2 s.
fn remove_cgroups(path: &Path) {
    let Ok(entries) = fs::read_dir(path) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroups(&entry.path());
        }
    }
    let root = Cgroup::mount().map(|m| m.join("cgroup.procs"));
    for pid in fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default().lines() {
        let _ = root.as_ref().map(|root| fs::write(root, pid));
    }
    for _ in 0..100 {
        if fs::remove_dir(path).is_ok() || !path.exists() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    eprintln!("warning: could not remove cgroup {}", path.display());
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e} (run `make deps`)"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

// Connection records (`--connections`, issue 13): their reader and checks,
// and the peers their tests need (an nginx serving a file, HTTP exchanges
// that count their bytes, a routed pair of namespaces).

/// A JSON connection record's keys, in the spec's order (spec/records.md).
pub const RECORD_KEYS: [&str; 37] = [
    "schema_version",
    "host",
    "conn_id",
    "side",
    "side_by",
    "start_ns",
    "end_ns",
    "start_unix_ns",
    "end_unix_ns",
    "duration_ns",
    "family",
    "saddr",
    "sport",
    "daddr",
    "dport",
    "netns",
    "cgroup_id",
    "cgroup",
    "container_id",
    "container_runtime",
    "pod_uid",
    "pid",
    "comm",
    "states",
    "time_wait_ns",
    "bytes_sent",
    "bytes_acked",
    "bytes_received",
    "bytes_retrans",
    "segs_in",
    "segs_out",
    "retransmits",
    "srtt_us",
    "min_rtt_us",
    "error",
    "end",
    "open",
];

/// The counters read together from `tcp_sock`: all null or all numbers.
pub const RECORD_COUNTERS: [&str; 7] =
    ["bytes_sent", "bytes_acked", "bytes_received", "bytes_retrans", "segs_in", "segs_out", "retransmits"];

/// Every end cause the spec names.
pub const END_CAUSES: [&str; 13] = [
    "active_close",
    "passive_close",
    "reset_sent",
    "reset_received",
    "refused",
    "timed_out",
    "unreachable",
    "aborted",
    "time_wait_expired",
    "time_wait_reused",
    "time_wait_netns_exit",
    "time_wait_killed",
    "open",
];

/// CLOCK_MONOTONIC now, the clock of `ts_ns`, `start_ns` and `end_ns`.
pub fn mono_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// CLOCK_REALTIME now, the clock of `start_unix_ns` and `end_unix_ns`.
pub fn wall_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// The connection records of JSON output, each checked against the spec:
/// its keys in order, durations that add up, a wall clock that is the
/// monotonic one shifted by the offset of today, `open` and `time_wait_ns`
/// that agree with `end` and `states`, counters all there or all null.
pub fn records(stdout: &str) -> Vec<serde_json::Value> {
    let offset = wall_ns() as i128 - mono_ns() as i128;
    stdout
        .lines()
        .map(|line| {
            let r: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"));
            check_record(line, &r, offset);
            r
        })
        .collect()
}

fn check_record(line: &str, r: &serde_json::Value, offset: i128) {
    let obj = r.as_object().unwrap_or_else(|| panic!("not an object: {line}"));
    assert_eq!(obj.len(), RECORD_KEYS.len(), "keys of {line}");
    let at: Vec<usize> = RECORD_KEYS
        .iter()
        .map(|k| line.find(&format!("\"{k}\":")).unwrap_or_else(|| panic!("no {k:?} in {line}")))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "keys out of the spec's order: {line}");
    assert_eq!(r["schema_version"], 2, "{line}");
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} is not a number in {line}"));
    assert_eq!(n("duration_ns"), n("end_ns") - n("start_ns"), "{line}");
    assert_eq!(n("end_unix_ns") - n("start_unix_ns"), n("duration_ns"), "{line}");
    // NTP may slew the wall clock a little while a test runs.
    let skew = n("start_unix_ns") as i128 - n("start_ns") as i128 - offset;
    assert!(skew.abs() < 100_000_000, "wall clock off by {skew} ns: {line}");
    assert!(r["side"] == "client" || r["side"] == "server", "{line}");
    assert!(["server", "origin", "ports"].contains(&r["side_by"].as_str().unwrap()), "{line}");
    assert!(r["family"] == 4 || r["family"] == 6, "{line}");
    let end = r["end"].as_str().unwrap_or_else(|| panic!("no end in {line}"));
    assert!(END_CAUSES.contains(&end), "unknown end {end:?}");
    assert_eq!(r["open"], end == "open", "{line}");
    let spans = r["states"].as_array().unwrap_or_else(|| panic!("no states in {line}"));
    assert!(!spans.is_empty(), "a record with no state (a listener's own life?): {line}");
    for s in spans {
        assert_eq!(s.as_object().map(|o| o.len()), Some(3), "span {s} in {line}");
        assert!(s["state"].is_string() && s["inferred"].is_boolean(), "span {s} in {line}");
        assert!(s["ns"].is_null() || s["ns"].is_u64(), "span {s} in {line}");
        assert_ne!(s["state"], "CLOSE", "the final CLOSE is not a span: {line}");
    }
    let tw: Vec<&serde_json::Value> = spans.iter().filter(|s| s["state"] == "TIME_WAIT").collect();
    match tw[..] {
        [] => assert!(r["time_wait_ns"].is_null(), "{line}"),
        [one] => assert_eq!(r["time_wait_ns"], one["ns"], "{line}"),
        _ => panic!("TIME_WAIT twice: {line}"),
    }
    let known: Option<Vec<u64>> = spans.iter().map(|s| s["ns"].as_u64()).collect();
    if let (false, Some(known)) = (r["open"] == true, known) {
        assert_eq!(known.iter().sum::<u64>(), n("duration_ns"), "spans add up to the duration: {line}");
    }
    let present = RECORD_COUNTERS.iter().filter(|k| r[**k].is_u64()).count();
    assert!(present == 0 || present == RECORD_COUNTERS.len(), "counters half there: {line}");
    if present == 0 {
        assert!(r["srtt_us"].is_null() && r["min_rtt_us"].is_null() && r["error"].is_null(), "{line}");
    }
    assert!(r["error"].is_null() || r["error"].as_str().is_some_and(|e| e.starts_with('E')), "{line}");
}

/// The names of a record's states, in order.
pub fn record_states(r: &serde_json::Value) -> Vec<String> {
    r["states"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap().to_string()).collect()
}

/// A counter of a record, which must be there.
pub fn counter(r: &serde_json::Value, name: &str) -> u64 {
    r[name].as_u64().unwrap_or_else(|| panic!("no {name} in {r}"))
}

/// When TIME_WAIT began (the hand-off to the timewait socket).
pub fn time_wait_start(r: &serde_json::Value) -> u64 {
    counter(r, "end_ns") - counter(r, "time_wait_ns")
}

/// How much later a tracer attached second stamps a kernel event than the
/// one attached first: the programs on one tracepoint run in attach order,
/// so never earlier, and later by the first one's run time (a few µs), or
/// by an interrupt that lands in between.
pub const LAG_NS: i128 = 1_000_000;

/// A record (from a tracer with `--connections`, attached first) tells
/// what the transition stream (from a tracer attached second, one
/// connection's events from [`connections`]) shows: the same id, side,
/// tuple and owner, the states entered in order, each entered when the
/// stream saw it (within [`LAG_NS`]), and each span as long as the
/// stream's `prev_state_ms` for leaving it.
pub fn assert_record_tells_stream(r: &serde_json::Value, events: &[serde_json::Value]) {
    let last = events.last().unwrap();
    for e in events {
        assert_eq!(e["conn_id"], r["conn_id"], "one id: {e} vs {r}");
    }
    for k in ["side", "family", "saddr", "sport", "daddr", "dport", "netns", "cgroup_id", "pid", "comm"] {
        assert_eq!(r[k], last[k], "{k} of {r} vs the stream's {last}");
    }
    let entered = if last["new"] == "CLOSE" { &events[..events.len() - 1] } else { events };
    let want: Vec<&str> = entered.iter().map(|e| e["new"].as_str().unwrap()).collect();
    assert_eq!(record_states(r), want, "{r}");
    let spans = r["states"].as_array().unwrap();
    let ts = |e: &serde_json::Value| e["ts_ns"].as_u64().unwrap() as i128;
    let mut at = counter(r, "start_ns") as i128;
    for (i, e) in events.iter().enumerate() {
        let lag = ts(e) - at;
        assert!((0..=LAG_NS).contains(&lag), "{} seen {lag} ns after the record's time: {r}", transition(e));
        if i > 0 {
            let ms = e["prev_state_ms"].as_f64().unwrap_or_else(|| panic!("no prev_state_ms in {e}"));
            let ns = spans[i - 1]["ns"].as_u64().unwrap_or_else(|| panic!("span {i} unknown: {r}"));
            let diff = ns as i128 - (ms * 1e6).round() as i128;
            assert!(diff.abs() <= LAG_NS, "{} span {ns} ns, stream {ms} ms: {r}", transition(e));
        }
        if let Some(span) = spans.get(i) {
            assert_eq!(span["inferred"], e["inferred"], "{r} vs {e}");
            at += span["ns"].as_u64().unwrap_or_else(|| panic!("span {i} unknown: {r}")) as i128;
        }
    }
    if last["new"] == "CLOSE" {
        assert_eq!(at, counter(r, "end_ns") as i128, "the record ends when its last span does: {r}");
    }
}

/// Waits until the tracer has printed `n` records.
pub fn wait_for_records(tracer: &Tracer, n: usize, limit: Duration) {
    wait_for(limit, &format!("{n} connection records"), || records(&tracer.stdout_now()).len() >= n);
}

/// Waits until the tracer's transition stream has `n` transitions `what`.
pub fn wait_for_in_stream(tracer: &Tracer, what: &str, n: usize, limit: Duration) {
    wait_for(limit, &format!("{n} {what}"), || {
        json_events(&tracer.stdout_now()).iter().filter(|e| transition(e) == what).count() >= n
    });
}

/// The inode number of a network namespace: what tcpstate prints as `netns`.
pub fn netns_inode(ns: &Netns) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(format!("/run/netns/{}", ns.name)).unwrap().ino()
}

/// Whether a [`Nginx::serve`] keeps connections open between requests.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Keepalive {
    /// nginx's default (75 s): the client closes first.
    On,
    /// `keepalive_timeout 0`: nginx closes each connection once it has
    /// answered (a client that waits for the end of the answer sees nginx
    /// close first; curl, which stops at Content-Length, races it).
    Off,
}

impl Nginx {
    /// A private nginx on `addr` (in `netns` when given) serving
    /// `/body`, a file of `body_len` bytes.
    pub fn serve(netns: Option<&Netns>, addr: &str, body_len: usize, keepalive: Keepalive) -> Nginx {
        let addr: SocketAddr = addr.parse().unwrap();
        let dir = std::env::temp_dir().join(format!("tcpstate-nginx-site-{}-{}", std::process::id(), addr.port()));
        fs::create_dir_all(dir.join("www")).unwrap();
        fs::write(dir.join("www/body"), vec![b'x'; body_len]).unwrap();
        let keepalive = if keepalive == Keepalive::Off { "keepalive_timeout 0;" } else { "" };
        let root = format!("root {}/www;", dir.display());
        Nginx::launch(nginx_command(netns), addr, dir, keepalive, &root)
    }
}

/// The command that runs nginx, in `netns` when given.
fn nginx_command(netns: Option<&Netns>) -> Command {
    netns.map_or_else(|| Command::new("nginx"), |ns| ns.cmd("nginx"))
}

/// The bytes one HTTP exchange moved, as the application wrote and read them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub sent: u64,
    pub received: u64,
}

/// `GET path` on a connected stream: reads the whole answer, and with
/// `to_eof` also the server's FIN (so the server closes first); then
/// closes the stream.
pub fn get_counted(mut stream: TcpStream, path: &str, to_eof: bool) -> Exchange {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    while to_eof || !answer_complete(&got) {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            assert!(to_eof, "the server closed before answering: {}", String::from_utf8_lossy(&got));
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(answer_complete(&got), "{}", String::from_utf8_lossy(&got));
    Exchange { sent: request.len() as u64, received: got.len() as u64 }
}

/// A whole HTTP answer: its head and Content-Length bytes of body.
fn answer_complete(got: &[u8]) -> bool {
    let Some(head) = got.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let text = String::from_utf8_lossy(&got[..head]);
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap_or_else(|| panic!("no Content-Length in {text}"))
        .trim()
        .parse()
        .unwrap();
    got.len() >= head + 4 + len
}

/// A TCP connection to an IPv4 `server` from 127.0.0.1:`local_port`, as
/// the tests that reuse a tuple need.
pub fn connect_from(server: SocketAddr, local_port: u16) -> TcpStream {
    use nix::sys::socket::{bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
    let SocketAddr::V4(v4) = server else { panic!("IPv4 server expected") };
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::empty(), None).unwrap();
    setsockopt(&fd, sockopt::ReuseAddr, &true).unwrap();
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, local_port)).unwrap();
    connect(fd.as_raw_fd(), &SockaddrIn::from(v4)).unwrap();
    // SAFETY: a connected TCP socket we own.
    unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) }
}

/// A client namespace whose traffic leaves through a router namespace (a
/// veth pair between them). The router forwards, silently drops what is
/// sent to [`Routed::BLACKHOLE`] and answers what is sent to
/// [`Routed::UNREACHABLE`] with ICMP host unreachable (no rate limit). The
/// client's connect gives up after one SYN retransmission
/// (`tcp_syn_retries=1`). Both are deleted on drop, the veth pair with them.
pub struct Routed {
    pub client: Netns,
    pub router: Netns,
}

impl Routed {
    pub const BLACKHOLE: &'static str = "10.200.9.9";
    pub const UNREACHABLE: &'static str = "10.200.8.8";

    pub fn new(tag: &str) -> Routed {
        let routed = Routed { client: Netns::new(&format!("{tag}-c")), router: Netns::new(&format!("{tag}-r")) };
        let (c, r) = (routed.client.name.as_str(), routed.router.name.as_str());
        for args in [
            &["-n", c, "link", "add", "c0", "type", "veth", "peer", "name", "r0", "netns", r][..],
            &["-n", c, "addr", "add", "10.200.0.1/24", "dev", "c0"],
            &["-n", r, "addr", "add", "10.200.0.2/24", "dev", "r0"],
            &["-n", c, "link", "set", "c0", "up"],
            &["-n", r, "link", "set", "r0", "up"],
            &["-n", c, "route", "add", "default", "via", "10.200.0.2"],
            &["-n", r, "route", "add", "blackhole", Routed::BLACKHOLE],
            &["-n", r, "route", "add", "unreachable", Routed::UNREACHABLE],
        ] {
            run(Command::new("ip").args(args));
        }
        run(routed.router.cmd("sysctl").args(["-qw", "net.ipv4.ip_forward=1", "net.ipv4.icmp_ratelimit=0"]));
        run(routed.client.cmd("sysctl").args(["-qw", "net.ipv4.tcp_syn_retries=1"]));
        routed
    }
}
