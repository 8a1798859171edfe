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
    for field in ["side", "saddr", "sport", "daddr", "dport", "netns", "pid", "comm", "family"] {
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
        let addr: SocketAddr = addr.parse().unwrap();
        let port = addr.port();
        let dir = std::env::temp_dir().join(format!("tcpstate-nginx-{}-{port}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log stderr;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               server {{\n    listen {addr};\n    location / {{ return 200 \"tcpstate test\\n\"; }}\n  }}\n}}\n",
            d = dir.display()
        );
        fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut cmd = match netns {
            Some(ns) => ns.cmd("nginx"),
            None => Command::new("nginx"),
        };
        let child = cmd
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
            socket_states_of(Some(pid), port).iter().any(|s| s == "0A")
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

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e} (run `make deps`)"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}
