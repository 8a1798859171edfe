//! Debian's ClickHouse takes tcpstate's JSON as it is: the shipped schema
//! (deploy/clickhouse/schema.sql), the two documented ways of getting the
//! lines there — a pipe into clickhouse-client stopped with Ctrl-C, and
//! files handed over by `-w FILE --rotate-secs` loaded by
//! deploy/clickhouse/load.sh — and the shipped queries, against traffic
//! whose every transition is known.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, has_tracing_link, json_events, require_root, transition, wait_for, Netns, Nginx, Tracer, BIN};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A private clickhouse-server on free loopback ports, with the shipped
/// schema loaded; stopped and removed on drop.
struct ClickHouse {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl ClickHouse {
    fn start() -> ClickHouse {
        let dir = std::env::temp_dir().join(format!("tcpstate-clickhouse-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("data")).unwrap();
        let port = free_port();
        let config = format!(
            "<?xml version=\"1.0\"?>\n<yandex>\n\
             <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog></logger>\n\
             <listen_host>127.0.0.1</listen_host><tcp_port>{port}</tcp_port><http_port>{http}</http_port>\n\
             <path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path><users_config>{d}/users.xml</users_config>\n\
             <default_profile>default</default_profile><default_database>default</default_database>\n\
             <mark_cache_size>5368709120</mark_cache_size>\n</yandex>\n",
            d = dir.display(),
            http = free_port(),
        );
        let users = "<?xml version=\"1.0\"?>\n<yandex>\n<profiles><default/></profiles>\n\
                     <users><default><password></password><networks><ip>127.0.0.1</ip></networks>\
                     <profile>default</profile><quota>default</quota></default></users>\n\
                     <quotas><default/></quotas>\n</yandex>\n";
        fs::write(dir.join("config.xml"), config).unwrap();
        fs::write(dir.join("users.xml"), users).unwrap();
        let child = Command::new("/usr/sbin/clickhouse-server")
            .arg(format!("--config-file={}", dir.join("config.xml").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .expect("running clickhouse-server (install it: make deps)");
        let mut ch = ClickHouse { child, dir, port };
        wait_for(Duration::from_secs(60), "clickhouse-server to answer", || {
            if let Ok(Some(status)) = ch.child.try_wait() {
                panic!("clickhouse-server exited ({status}): {}", ch.log());
            }
            ch.client().args(["--query", "SELECT 1"]).stderr(Stdio::null()).output().is_ok_and(|o| o.status.success())
        });
        let schema = fs::File::open(deploy("schema.sql")).unwrap();
        let out = ch.client().arg("--multiquery").stdin(schema).output().unwrap();
        assert!(out.status.success(), "loading schema.sql: {}", String::from_utf8_lossy(&out.stderr));
        ch
    }

    /// clickhouse-client for this server.
    fn client(&self) -> Command {
        let mut c = Command::new("clickhouse-client");
        c.args(["--host", "127.0.0.1", "--port", &self.port.to_string()]);
        c
    }

    /// Rows of a query, tab separated.
    fn query(&self, sql: &str) -> Vec<String> {
        let out = self.client().args(["--query", sql]).output().unwrap();
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
    }

    /// A shipped query (deploy/clickhouse/queries/NAME.sql).
    fn shipped(&self, name: &str) -> Vec<String> {
        self.query(&fs::read_to_string(deploy(&format!("queries/{name}.sql"))).unwrap())
    }

    fn log(&self) -> String {
        ["stderr.log", "error.log"].iter().map(|f| fs::read_to_string(self.dir.join(f)).unwrap_or_default()).collect()
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn deploy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/clickhouse").join(name)
}

/// The README's pipe, run the way a terminal runs it: a process group of
/// its own, which Ctrl-C signals as a whole.
struct Pipeline {
    shell: Child,
    tcpstate: u32,
    stderr: PathBuf,
}

impl Pipeline {
    fn start(ch: &ClickHouse, args: &str, table: &str, stderr: PathBuf) -> Pipeline {
        let script = format!(
            "\"$TCPSTATE\" {args} 2>\"$ERR\" | setsid -w clickhouse-client --port {} \
             --query 'INSERT INTO {table} FORMAT JSONEachRow'",
            ch.port
        );
        let shell = std::os::unix::process::CommandExt::process_group(
            Command::new("bash").args(["-c", &script]).env("TCPSTATE", BIN).env("ERR", &stderr),
            0,
        )
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
        let group = shell.id();
        let mut tcpstate = None;
        wait_for(Duration::from_secs(20), "the pipeline's tcpstate to attach", || {
            tcpstate = tcpstate.or_else(|| in_group(group, "tcpstate"));
            tcpstate.is_some_and(has_tracing_link)
        });
        Pipeline { shell, tcpstate: tcpstate.unwrap(), stderr }
    }

    /// Ctrl-C: SIGINT to the whole process group. Returns tcpstate's stderr.
    fn interrupt(mut self) -> String {
        kill(Pid::from_raw(-(self.shell.id() as i32)), Signal::SIGINT).unwrap();
        let status = self.shell.wait().unwrap();
        let stderr = fs::read_to_string(&self.stderr).unwrap();
        assert!(status.success(), "the pipeline failed ({status}): {stderr}");
        assert!(!Path::new(&format!("/proc/{}", self.tcpstate)).exists(), "tcpstate still runs");
        stderr
    }
}

/// The process named `comm` in process group `pgid`.
fn in_group(pgid: u32, comm: &str) -> Option<u32> {
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid pgrp …: comm may hold spaces, so split after ')'.
        let (head, rest) = stat.rsplit_once(')')?;
        let group: u32 = rest.split_whitespace().nth(2)?.parse().ok()?;
        (group == pgid && head.ends_with(&format!("({comm}"))).then_some(pid)
    })
}

/// The transitions of `n` curl requests to nginx (the client closes first)
/// and of `refused` connects after nginx stopped, with the listener's own.
fn expected(n: usize, refused: usize) -> BTreeMap<(String, String), usize> {
    let mut want = BTreeMap::new();
    let mut add =
        |side: &str, t: &str, count: usize| *want.entry((side.to_string(), t.to_string())).or_default() += count;
    for t in common::SERVER_SEQ {
        add("server", t, n);
    }
    for t in common::full_client_seq() {
        add("client", t, n);
    }
    add("server", "CLOSE:LISTEN", 1);
    add("server", "LISTEN:CLOSE", 1);
    add("client", "CLOSE:SYN_SENT", refused);
    add("client", "SYN_SENT:CLOSE", refused);
    want
}

/// `tcpstate: 73 transitions (server 26, client 47); …` as numbers.
fn summary_counts(stderr: &str) -> (usize, usize, usize) {
    let line = stderr.lines().find(|l| l.contains(" transitions (server ")).unwrap_or_else(|| panic!("{stderr}"));
    let n: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(3)
        .map(|s| s.parse().unwrap())
        .collect();
    (n[0], n[1], n[2])
}

#[test]
fn json_lines_load_into_the_shipped_schema_and_the_queries_answer() {
    if !require_root() {
        return;
    }
    let ch = ClickHouse::start();
    let (n, refused) = (5, 3);
    let port = free_port();
    let p = port.to_string();
    let work = std::env::temp_dir().join(format!("tcpstate-clickhouse-files-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).unwrap();
    let conns_file = work.join("conns.json");

    // An observer that says when the traffic's last transition has happened.
    let observer = Tracer::start(&["127.0.0.1", &p, "-o", "json"]);
    let piped = Pipeline::start(
        &ch,
        &format!("127.0.0.1 {port} -o json --hostname=ci-a"),
        "tcpstate.transitions",
        work.join("piped.err"),
    );
    let filed = Tracer::start(&[
        "127.0.0.1",
        &p,
        "--connections",
        "-o",
        "json",
        "--hostname=ci-b",
        "-w",
        conns_file.to_str().unwrap(),
        "--rotate-secs",
        "1",
    ]);

    let ns = Netns::new("clickhouse");
    let nginx = Nginx::start_in(Some(&ns), &format!("127.0.0.1:{port}"));
    let url = nginx.url();
    for _ in 0..n {
        assert!(ns.cmd("curl").args(["-sS", "-o", "/dev/null", &url]).status().unwrap().success());
    }
    drop(nginx);
    // Past a rotation, so that the records come in more than one file.
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..refused {
        let code = ns.cmd("curl").args(["-sS", "-o", "/dev/null", &url]).stderr(Stdio::null()).status().unwrap();
        assert_eq!(code.code(), Some(7), "curl: connection refused");
    }
    // Deleting the namespace ends its TIME_WAITs at once.
    ns.delete();
    let total: usize = expected(n, refused).values().sum();
    wait_for(Duration::from_secs(20), "every transition", || json_events(&observer.stdout_now()).len() >= total);

    let stderr = piped.interrupt();
    let filed = filed.stop();
    let observed = observer.stop();
    assert_eq!((filed.code, observed.code), (Some(0), Some(0)), "{}{}", filed.stderr, observed.stderr);

    // Every transition arrived: per side, old and new as caused, as the
    // observer saw and as the piped tracer's own summary counts.
    let want = expected(n, refused);
    let mut seen = BTreeMap::new();
    for e in json_events(&observed.stdout) {
        *seen.entry((e["side"].as_str().unwrap().to_string(), transition(&e))).or_insert(0) += 1;
    }
    assert_eq!(seen, want, "the observer");
    let rows = ch.shipped("transitions_by_host");
    let mut loaded = BTreeMap::new();
    for row in &rows {
        let c: Vec<&str> = row.split('\t').collect();
        assert_eq!(c[0], "ci-a", "{rows:?}");
        loaded.insert((c[1].to_string(), format!("{}:{}", c[2], c[3])), c[4].parse::<usize>().unwrap());
    }
    assert_eq!(loaded, want, "ClickHouse");
    let server: usize = want.iter().filter(|((side, _), _)| side == "server").map(|(_, n)| n).sum();
    assert_eq!(summary_counts(&stderr), (total, server, total - server), "{stderr}");
    let distinct = ch
        .query("SELECT uniqExact(conn_id), countIf(skaddr IS NOT NULL), min(schema_version) FROM tcpstate.transitions");
    // A connection id per socket: n accepted, n + refused clients, the listener.
    assert_eq!(distinct, [format!("{}\t0\t2", 2 * n + refused + 1)]);

    // The handed-over files: more than one, each whole, none left once
    // loaded; the live name is all that remains.
    let handed: Vec<String> = fs::read_dir(&work)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|f| f.starts_with("conns.json."))
        .collect();
    assert!(handed.len() >= 2, "{handed:?}");
    let out = Command::new(deploy("load.sh"))
        .arg(&conns_file)
        .arg("tcpstate.connections")
        .args(["--port", &ch.port.to_string(), "--input_format_skip_unknown_fields=1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "load.sh: {}", String::from_utf8_lossy(&out.stderr));
    let left: Vec<_> = fs::read_dir(&work).unwrap().flatten().filter(|e| e.file_name() != "piped.err").collect();
    assert_eq!(left.len(), 1, "only the live file: {left:?}");
    assert_eq!(
        ch.query("SELECT side, end, count() FROM tcpstate.connections GROUP BY side, end ORDER BY side, end"),
        [
            format!("client\trefused\t{refused}"),
            format!("client\ttime_wait_netns_exit\t{n}"),
            format!("server\tpassive_close\t{n}"),
        ]
    );

    // The shipped queries, on what was caused.
    assert_eq!(ch.shipped("refused_by_peer"), [format!("ci-b\t127.0.0.1\t{port}\t{refused}")]);
    let failed = ch.shipped("failed_connects_by_peer");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].starts_with(&format!("ci-a\t127.0.0.1\t{port}\t{refused}\t")), "{failed:?}");
    let time_wait = ch.shipped("time_wait_by_remote_port");
    assert_eq!(time_wait.len(), 1, "{time_wait:?}");
    assert!(time_wait[0].starts_with(&format!("{port}\t{n}\t")), "{time_wait:?}");
    fs::remove_dir_all(&work).unwrap();
}
