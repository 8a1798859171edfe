//! The rows of the comparison: which tracer runs during the storm, how it
//! is started, and how many transitions it should report.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::cgroups::Cgroups;
use crate::floor::Empty;
use crate::loadgen::{Report, SERVER_IP};

/// One row: a tracer (or none) measured under the same storm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// Short name for --rows and results.json.
    pub id: &'static str,
    pub label: &'static str,
    pub kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// No tracer: the baseline every ratio divides by.
    Baseline,
    /// bench/floor.bpf.c: count only, with the empty programs asked for
    /// at tcpstate's other attachment points.
    Floor(Empty),
    /// A bpftrace printf one-liner.
    Bpftrace,
    /// tcpstate, always following the storm's server (`127.0.0.1 PORT`).
    Tcpstate(Tcpstate),
}

/// tcpstate's options in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tcpstate {
    /// `-o FORMAT`; None: the original line, on stderr.
    pub format: Option<&'static str>,
    /// `--tw-probe off`: no TIME_WAIT probes.
    pub tw_off: bool,
    /// `--connections`: one record per connection instead of transitions.
    pub connections: bool,
    /// `--cgroup`, naming one of the bench's cgroups.
    pub cgroup: Option<CgroupScope>,
}

/// Which of the bench's cgroups (see [`super::cgroups`]) a `--cgroup` row
/// names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupScope {
    /// The storm's own: every transition of the storm is in it.
    Storm,
    /// An empty sibling of the storm's: none of the storm's transitions is.
    Elsewhere,
}

/// `tcpstate -o json`, the row the others are variations of.
const JSON: Tcpstate = Tcpstate { format: Some("json"), tw_off: false, connections: false, cgroup: None };

/// Every row, in table order.
pub const ALL: &[Row] = &[
    Row { id: "none", label: "none (no tracer)", kind: Kind::Baseline },
    Row { id: "floor", label: "floor (count-only tp_btf)", kind: Kind::Floor(Empty { backup: false, timers: false }) },
    Row {
        id: "floor-backup",
        label: "floor + empty 2nd program",
        kind: Kind::Floor(Empty { backup: true, timers: false }),
    },
    Row {
        id: "floor-timers",
        label: "floor + empty 2nd + timer progs",
        kind: Kind::Floor(Empty { backup: true, timers: true }),
    },
    Row { id: "bpftrace", label: "bpftrace printf", kind: Kind::Bpftrace },
    Row { id: "original", label: "tcpstate (original line)", kind: Kind::Tcpstate(Tcpstate { format: None, ..JSON }) },
    Row { id: "table", label: "tcpstate -o table", kind: Kind::Tcpstate(Tcpstate { format: Some("table"), ..JSON }) },
    Row { id: "json", label: "tcpstate -o json", kind: Kind::Tcpstate(JSON) },
    Row { id: "csv", label: "tcpstate -o csv", kind: Kind::Tcpstate(Tcpstate { format: Some("csv"), ..JSON }) },
    Row {
        id: "tw-off",
        label: "tcpstate -o json --tw-probe off",
        kind: Kind::Tcpstate(Tcpstate { tw_off: true, ..JSON }),
    },
    Row {
        id: "connections",
        label: "tcpstate -o json --connections",
        kind: Kind::Tcpstate(Tcpstate { connections: true, ..JSON }),
    },
    Row {
        id: "cgroup-other",
        label: "tcpstate -o json --cgroup other",
        kind: Kind::Tcpstate(Tcpstate { cgroup: Some(CgroupScope::Elsewhere), ..JSON }),
    },
    Row {
        id: "cgroup-own",
        label: "tcpstate -o json --cgroup own",
        kind: Kind::Tcpstate(Tcpstate { cgroup: Some(CgroupScope::Storm), ..JSON }),
    },
];

/// Rows by id, from a comma-separated list ("all" for every row). The
/// baseline is always included: every ratio needs it.
pub fn select(list: &str) -> Result<Vec<Row>> {
    if list.trim() == "all" {
        return Ok(ALL.to_vec());
    }
    let mut rows = vec![ALL[0]];
    for id in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        // "seed": the original line's row's old name.
        let id = if id == "seed" { "original" } else { id };
        let Some(row) = ALL.iter().find(|r| r.id == id) else {
            let ids: Vec<&str> = ALL.iter().map(|r| r.id).collect();
            bail!("unknown row '{id}': use 'all' or some of {}", ids.join(","));
        };
        if !rows.contains(row) {
            rows.push(*row);
        }
    }
    Ok(rows)
}

/// Programs the rows run.
#[derive(Clone, Debug)]
pub struct Tools {
    pub tcpstate: PathBuf,
    pub loadgen: PathBuf,
    pub floor: PathBuf,
    /// None when bpftrace is not installed: its row is then skipped.
    pub bpftrace: Option<PathBuf>,
}

/// Where a run's tracer writes. Event output goes to /dev/null except
/// where it is the only place the count can be read from (bpftrace's
/// stdout, the original line's stderr): there it goes to a file in tmpfs.
#[derive(Clone, Debug)]
pub struct Files {
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Row {
    /// Why this row cannot run here, if it cannot. `cgroups`: the bench's
    /// cgroups, None where it could not make them.
    pub fn unavailable(&self, tools: &Tools, cgroups: Option<&Cgroups>) -> Option<String> {
        match self.kind {
            Kind::Bpftrace if tools.bpftrace.is_none() => Some("bpftrace is not installed".into()),
            Kind::Tcpstate(Tcpstate { cgroup: Some(_), .. }) if cgroups.is_none() => {
                Some("the bench could not make its cgroups (see the start of its stderr)".into())
            }
            _ => None,
        }
    }

    /// The tracer's command for a storm on `port`; None for the baseline.
    pub fn command(
        &self,
        tools: &Tools,
        port: u16,
        files: &Files,
        cgroups: Option<&Cgroups>,
    ) -> Result<Option<Command>> {
        let (mut cmd, stdout_to_file) = match self.kind {
            Kind::Baseline => return Ok(None),
            Kind::Floor(empty) => {
                let mut c = Command::new(&tools.floor);
                c.args(["--port", &port.to_string()]);
                if empty.backup {
                    c.arg("--backup");
                }
                if empty.timers {
                    c.arg("--timers");
                }
                (c, true)
            }
            Kind::Bpftrace => {
                let bin = tools.bpftrace.as_ref().context("bpftrace is not installed")?;
                let mut c = Command::new(bin);
                c.args(["-e", &bpftrace_program(port)]);
                (c, true)
            }
            Kind::Tcpstate(t) => {
                let mut c = Command::new(&tools.tcpstate);
                // The positional server: only the bench's sockets count.
                c.args([SERVER_IP.to_string(), port.to_string()]);
                if let Some(f) = t.format {
                    c.args(["-o", f]);
                }
                if t.tw_off {
                    c.args(["--tw-probe", "off"]);
                }
                if t.connections {
                    c.arg("--connections");
                }
                if let Some(scope) = t.cgroup {
                    let cgroups = cgroups.context("the bench has no cgroups for a --cgroup row")?;
                    c.arg("--cgroup").arg(match scope {
                        CgroupScope::Storm => &cgroups.storm,
                        CgroupScope::Elsewhere => &cgroups.elsewhere,
                    });
                }
                // -v: the exit summary and the TIME_WAIT probes in use.
                c.arg("-v");
                (c, false)
            }
        };
        let stdout = if stdout_to_file {
            create(&files.stdout)?
        } else {
            File::create("/dev/null").context("opening /dev/null")?
        };
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(create(&files.stderr)?);
        Ok(Some(cmd))
    }

    /// Transitions the tracer should report for this storm: the storm's
    /// ([`storm_transitions`]), but none for a row whose `--cgroup` the
    /// storm is not in.
    pub fn expected(&self, report: &Report, follows_time_wait: bool) -> Option<u64> {
        match self.kind {
            Kind::Tcpstate(Tcpstate { cgroup: Some(CgroupScope::Elsewhere), .. }) => Some(0),
            _ => storm_transitions(report, follows_time_wait),
        }
    }

    /// Connection records a `--connections` row should print: one per
    /// client and one per server socket of every connection (the listener
    /// is not a connection). None for other rows, and for a storm that did
    /// not complete (its count is then not exact).
    pub fn expected_records(&self, report: &Report) -> Option<u64> {
        match self.kind {
            Kind::Tcpstate(Tcpstate { connections: true, .. }) if report.completed == report.connections => {
                Some(2 * report.connections)
            }
            _ => None,
        }
    }
}

/// Transitions of the storm a tracer watching its port sees, the ones
/// loadgen counted. One that follows TIME_WAIT shows FIN_WAIT2:TIME_WAIT
/// instead of FIN_WAIT2:CLOSE, plus one TIME_WAIT:CLOSE per TIME_WAIT
/// socket created: when a new connect() reuses it, or when the storm's
/// namespace is destroyed.
pub fn storm_transitions(report: &Report, follows_time_wait: bool) -> Option<u64> {
    let base = report.expected_transitions?;
    Some(if follows_time_wait { base + report.time_wait_created } else { base })
}

/// The bpftrace row's program: one line per transition of the bench's
/// port, as a typical ad-hoc trace would print it.
pub fn bpftrace_program(port: u16) -> String {
    format!(
        "tracepoint:sock:inet_sock_set_state /args->protocol == 6 && (args->sport == {port} || args->dport == {port})/ \
         {{ printf(\"{}%d %d %d %d\\n\", args->sport, args->dport, args->oldstate, args->newstate); }}",
        super::parse::BPFTRACE_PREFIX
    )
}

fn create(path: &Path) -> Result<File> {
    File::create(path).with_context(|| format!("creating {}", path.display()))
}

/// An executable named `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_keeps_the_baseline_and_rejects_unknown_rows() {
        let rows = select("json,floor").unwrap();
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), ["none", "json", "floor"]);
        assert_eq!(select("all").unwrap().len(), ALL.len());
        assert!(select("json,xml").unwrap_err().to_string().contains("unknown row 'xml'"));
    }

    #[test]
    fn time_wait_adds_one_per_socket_left_in_time_wait() {
        let report: Report = serde_json::from_str(
            r#"{"mode":"client-close","connections":3,"concurrency":1,"port":1,"completed":3,"elapsed_s":1,
               "conn_per_s":3,"expected_transitions":32,"per_connection":10,"listener":2,"by_pair":[],
               "time_wait_created":3,"time_wait_at_exit":2,"time_wait_overflow":0,"error":null}"#,
        )
        .unwrap();
        let json = ALL.iter().find(|r| r.id == "json").unwrap();
        assert_eq!(json.expected(&report, false), Some(32));
        assert_eq!(json.expected(&report, true), Some(35));
    }

    fn report(connections: u64, completed: u64) -> Report {
        serde_json::from_str(&format!(
            r#"{{"mode":"client-close","connections":{connections},"concurrency":1,"port":1,"completed":{completed},
               "elapsed_s":1,"conn_per_s":3,"expected_transitions":null,"per_connection":10,"listener":2,
               "by_pair":[],"time_wait_created":0,"time_wait_at_exit":0,"time_wait_overflow":0,"error":null}}"#
        ))
        .unwrap()
    }

    #[test]
    fn the_connections_row_expects_two_records_per_connection() {
        let row = |id: &str| *ALL.iter().find(|r| r.id == id).unwrap();
        assert_eq!(row("connections").expected_records(&report(20_000, 20_000)), Some(40_000));
        assert_eq!(row("connections").expected_records(&report(20_000, 19_999)), None);
        assert_eq!(row("json").expected_records(&report(20_000, 20_000)), None);
    }

    #[test]
    fn floor_rows_ask_for_their_empty_programs() {
        let tools =
            Tools { tcpstate: "tcpstate".into(), loadgen: "loadgen".into(), floor: "floor".into(), bpftrace: None };
        let dir = std::env::temp_dir();
        let files = Files {
            stdout: dir.join(format!("floor-rows-test-{}.out", std::process::id())),
            stderr: dir.join(format!("floor-rows-test-{}.err", std::process::id())),
        };
        let args = |id: &str| -> Vec<String> {
            let row = ALL.iter().find(|r| r.id == id).unwrap();
            let cmd = row.command(&tools, 20123, &files, None).unwrap().unwrap();
            cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
        };
        assert_eq!(args("floor"), ["--port", "20123"]);
        assert_eq!(args("floor-backup"), ["--port", "20123", "--backup"]);
        assert_eq!(args("floor-timers"), ["--port", "20123", "--backup", "--timers"]);
        assert_eq!(args("connections"), ["127.0.0.1", "20123", "-o", "json", "--connections", "-v"]);
        assert_eq!(args("json"), ["127.0.0.1", "20123", "-o", "json", "-v"]);
        let _ = std::fs::remove_file(&files.stdout);
        let _ = std::fs::remove_file(&files.stderr);
    }

    fn cgroups() -> Cgroups {
        let parent = PathBuf::from("/sys/fs/cgroup/unified/tcpstate-bench.7");
        Cgroups { storm: parent.join("storm"), elsewhere: parent.join("elsewhere"), parent }
    }

    #[test]
    fn cgroup_rows_name_the_storms_cgroup_or_its_empty_sibling() {
        let tools = Tools { tcpstate: "tcpstate".into(), loadgen: "l".into(), floor: "f".into(), bpftrace: None };
        let dir = std::env::temp_dir();
        let files = Files {
            stdout: dir.join(format!("cgroup-rows-test-{}.out", std::process::id())),
            stderr: dir.join(format!("cgroup-rows-test-{}.err", std::process::id())),
        };
        let (cgroups, row) = (cgroups(), |id: &str| *ALL.iter().find(|r| r.id == id).unwrap());
        let args = |id: &str| -> Vec<String> {
            let cmd = row(id).command(&tools, 20123, &files, Some(&cgroups)).unwrap().unwrap();
            cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
        };
        let with = |cgroup: &str| -> Vec<String> {
            ["127.0.0.1", "20123", "-o", "json", "--cgroup", cgroup, "-v"].map(String::from).to_vec()
        };
        assert_eq!(args("cgroup-own"), with("/sys/fs/cgroup/unified/tcpstate-bench.7/storm"));
        assert_eq!(args("cgroup-other"), with("/sys/fs/cgroup/unified/tcpstate-bench.7/elsewhere"));
        // Without the bench's cgroups the rows are skipped, and cannot start.
        assert_eq!(row("cgroup-own").unavailable(&tools, Some(&cgroups)), None);
        assert!(row("cgroup-own").unavailable(&tools, None).unwrap().contains("could not make its cgroups"));
        assert_eq!(row("json").unavailable(&tools, None), None);
        assert!(row("cgroup-other").command(&tools, 20123, &files, None).is_err());
        let _ = std::fs::remove_file(&files.stdout);
        let _ = std::fs::remove_file(&files.stderr);
    }

    #[test]
    fn a_cgroup_the_storm_is_not_in_expects_nothing_and_its_own_everything() {
        let mut storm = report(20_000, 20_000);
        storm.expected_transitions = Some(200_002);
        storm.time_wait_created = 20_000;
        let row = |id: &str| *ALL.iter().find(|r| r.id == id).unwrap();
        assert_eq!(row("cgroup-other").expected(&storm, true), Some(0));
        assert_eq!(row("cgroup-other").expected(&storm, false), Some(0));
        assert_eq!(row("cgroup-own").expected(&storm, true), Some(220_002));
        assert_eq!(row("cgroup-own").expected(&storm, true), row("json").expected(&storm, true));
        assert_eq!(storm_transitions(&storm, true), Some(220_002));
        assert_eq!(row("cgroup-own").expected_records(&storm), None);
        // Both are -o json with one option more.
        for id in ["cgroup-other", "cgroup-own"] {
            let Kind::Tcpstate(t) = row(id).kind else { panic!("{id} is not a tcpstate row") };
            assert_eq!(Tcpstate { cgroup: None, ..t }, JSON, "{id}");
        }
        assert_eq!(select("cgroup-other,cgroup-own").unwrap().len(), 3);
    }

    #[test]
    fn the_bpftrace_program_filters_on_the_port() {
        let p = bpftrace_program(20123);
        assert!(p.contains("args->sport == 20123 || args->dport == 20123"));
        assert!(p.contains("printf(\"tcp %d"));
    }
}
