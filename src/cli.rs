//! Command line: the original tool's positional `SERVER_IP SERVER_PORT`, plus
//! libbpf-tools style filters and output choices.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::output::{Format, Mode, Rotation, RunFields, Schema};
use crate::trace::abi::MAX_PORTS;
use crate::trace::{CgroupScope, NetnsScope, TwProbe};

const EXAMPLES: &str = "\
Examples:
  tcpstate 127.0.0.1 80            drop-in for the original: ts:<ns>:<side>:<OLD>:<NEW> on stderr
  tcpstate -o table                every TCP socket on the machine, as a table
  tcpstate --server [::1]:8080 -o json | jq .
  tcpstate -L 443 -o csv -d 60     one minute of local port 443, as CSV
  tcpstate --cgroup /sys/fs/cgroup/system.slice/nginx.service -o json
  tcpstate --netns /run/netns/blue -o table
  tcpstate -o json | jq -c 'select(.prev_state_ms > 100)'
  tcpstate --connections -o json | jq -c 'select(.end == \"refused\")'
  tcpstate 127.0.0.1 80 --plot timeline.svg
  tcpstate plot trace.log -o timeline.svg --png timeline.png
  tcpstate --metrics 127.0.0.1:9187 -o json > /dev/null &   then: curl 127.0.0.1:9187/metrics";

#[derive(Parser, Debug)]
#[command(
    name = "tcpstate",
    version,
    about = "Trace every TCP state transition, labelled server or client, TIME_WAIT included",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub trace: TraceArgs,
}

impl Cli {
    /// The command line once the checks clap's attributes cannot state
    /// passed: a failed one is a usage error like clap's own.
    pub fn checked(self) -> Result<Cli, clap::Error> {
        if self.trace.connections && self.trace.output == Format::Original {
            return Err(Cli::command().error(
                ErrorKind::ArgumentConflict,
                "--connections needs -o table, json or csv (the original line has no room for a record)",
            ));
        }
        if self.trace.schema == Schema::Otel && (self.trace.output != Format::Json || self.trace.connections) {
            return Err(Cli::command().error(
                ErrorKind::ArgumentConflict,
                "--schema otel names the keys of transition lines: use it with -o json and without --connections",
            ));
        }
        #[cfg(feature = "metrics")]
        if self.trace.metrics_by_port && self.trace.metrics_ports().is_empty() {
            return Err(Cli::command().error(
                ErrorKind::MissingRequiredArgument,
                "--metrics-by-port labels the ports given: name them with SERVER_IP SERVER_PORT, --server, -L or -D",
            ));
        }
        Ok(self)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Draw a trace (original lines or JSON lines) as a timeline picture
    #[cfg(feature = "plot")]
    Plot(crate::plot::PlotArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), as `make install` installs it
    #[command(hide = true)]
    Man,
}

#[derive(Args, Debug, Default)]
pub struct TraceArgs {
    /// Server address: sockets bound to it (or the wildcard) and SERVER_PORT are `server`,
    /// sockets talking to it are `client`. Without it every TCP socket is traced.
    #[arg(value_name = "SERVER_IP", value_parser = parse_ip, requires = "server_port")]
    pub server_ip: Option<IpAddr>,

    /// Server port (with SERVER_IP)
    #[arg(value_name = "SERVER_PORT", value_parser = parse_port)]
    pub server_port: Option<u16>,

    /// Server as one value: IP:PORT or [IPv6]:PORT
    #[arg(long, value_name = "ADDR", value_parser = parse_server, conflicts_with = "server_ip")]
    pub server: Option<SocketAddr>,

    /// IPv4 sockets only
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    pub ipv4: bool,

    /// IPv6 sockets only
    #[arg(short = '6', long = "ipv6")]
    pub ipv6: bool,

    /// Local ports to trace (comma separated)
    #[arg(short = 'L', long = "lport", value_name = "PORTS", value_parser = parse_port_list)]
    pub lport: Option<PortList>,

    /// Remote ports to trace (comma separated)
    #[arg(short = 'D', long = "rport", value_name = "PORTS", value_parser = parse_port_list)]
    pub rport: Option<PortList>,

    /// Only sockets owned by this process
    #[arg(short = 'p', long, value_name = "PID", value_parser = parse_pid, allow_negative_numbers = true)]
    pub pid: Option<u32>,

    /// Only sockets of this cgroup v2 or below it (a directory of the cgroup2 mount, e.g. a
    /// container's), decided in the kernel from each socket's own cgroup
    #[arg(long, value_name = "PATH", value_parser = crate::trace::scope::cgroup)]
    pub cgroup: Option<CgroupScope>,

    /// Only sockets of this network namespace: /run/netns/NAME (or NAME), /proc/PID/ns/net,
    /// or its inode number
    #[arg(long, value_name = "NS", value_parser = crate::trace::scope::netns)]
    pub netns: Option<NetnsScope>,

    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Original)]
    pub output: Format,

    /// Write the output to FILE (appending) instead of stdout/stderr
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,

    /// With -w: every SECS, hand the file over as FILE.<UTC time>Z and start a new FILE
    /// (also at exit), so that a loader can take finished files while tracing goes on
    #[arg(long = "rotate-secs", value_name = "SECS", requires = "write", value_parser = parse_duration,
          allow_negative_numbers = true)]
    pub rotate_secs: Option<Duration>,

    /// With -w: hand the file over once it holds MB megabytes (as --rotate-secs)
    #[arg(long = "rotate-mb", value_name = "MB", requires = "write", value_parser = parse_count,
          allow_negative_numbers = true)]
    pub rotate_mb: Option<u64>,

    /// JSON's key names: tcpstate's own, or otel (OpenTelemetry semantic conventions and a
    /// Community ID per connection, for an OpenTelemetry Collector and IDS logs)
    #[arg(long, value_enum, default_value_t = Schema::Tcpstate, value_name = "NAMES")]
    pub schema: Schema,

    /// One record per connection when it ends (its states and the time in each, bytes, RTT,
    /// how it ended) instead of a line per transition; those still open are printed at exit
    #[arg(long, conflicts_with = "raw")]
    pub connections: bool,

    /// Wall-clock time instead of time since the first event (table, and CSV of transitions)
    #[arg(short = 'T', long = "wall-time")]
    pub wall_time: bool,

    /// Stop after this many seconds
    #[arg(short = 'd', long, value_name = "SECS", value_parser = parse_duration, allow_negative_numbers = true)]
    pub duration: Option<Duration>,

    /// Stop after this many transitions (connection records with --connections)
    #[arg(short = 'c', long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub count: Option<u64>,

    /// Ring buffer size in KiB (a power of two, at least 4)
    #[arg(long = "ringbuf-kb", value_name = "KB", default_value_t = 1024, value_parser = parse_ringbuf_kb)]
    pub ringbuf_kb: u32,

    /// TIME_WAIT probes: auto picks the first of fentry, kprobe, timer this kernel accepts
    #[arg(long = "tw-probe", value_enum, default_value_t = TwProbe::Auto, value_name = "KIND")]
    pub tw_probe: TwProbe,

    /// Free function the fentry/kprobe kinds watch (default: the first of
    /// inet_twsk_free, inet_twsk_put this kernel has); for kernel engineers
    #[arg(long = "tw-free-fn", value_name = "FUNC", hide = true)]
    pub tw_free_fn: Option<String>,

    /// Show what the kernel probes see (the full socket's hand-off to its
    /// timewait socket, timer re-arms) instead of one coherent sequence
    #[arg(long)]
    pub raw: bool,

    /// Show each socket's kernel address (`skaddr`) in JSON and CSV (--raw shows them too).
    /// Off by default: the address tells whoever reads the output the kernel's memory layout,
    /// and `conn_id` joins the events of a connection without it
    #[arg(long)]
    pub skaddr: bool,

    /// Name the host in JSON and CSV (`host`, for a fleet's store): --hostname=NAME, or
    /// --hostname alone for this machine's hostname
    #[arg(long, value_name = "NAME", num_args = 0..=1, require_equals = true, default_missing_value = "",
          value_parser = parse_hostname)]
    pub hostname: Option<String>,

    /// Kernel BTF file, for kernels that do not expose /sys/kernel/btf/vmlinux
    #[arg(long, value_name = "PATH", default_value = crate::trace::preflight::KERNEL_BTF)]
    pub btf: PathBuf,

    /// Serve Prometheus metrics on this address while tracing (e.g. 127.0.0.1:9187)
    #[cfg(feature = "metrics")]
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub metrics: Option<SocketAddr>,

    /// Label the transition and connection metrics with the server's port, for the ports given
    /// (SERVER_PORT, -L, -D)
    #[cfg(feature = "metrics")]
    #[arg(long = "metrics-by-port", requires = "metrics")]
    pub metrics_by_port: bool,

    /// Drop to this user, with no capabilities left, once the programs are attached
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// When tracing ends, draw everything traced as a timeline picture (SVG)
    #[cfg(feature = "plot")]
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,

    /// Connections followed at once; past it the quietest are evicted (and counted)
    #[arg(long = "conn-table-size", value_name = "N", default_value_t = crate::conn::DEFAULT_CAPACITY, value_parser = parse_table_size, hide = true)]
    pub conn_table_size: usize,

    /// Print libbpf's messages, the probes chosen and the exit summary
    #[arg(short = 'v', long, conflicts_with = "quiet")]
    pub verbose: bool,

    /// No summary and no warnings; errors only
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// Up to [`MAX_PORTS`] ports, the kernel side's fixed filter size.
pub type PortList = Vec<u16>;

impl TraceArgs {
    /// The configured server, from either spelling.
    pub fn server(&self) -> Option<SocketAddr> {
        self.server.or_else(|| Some(SocketAddr::new(self.server_ip?, self.server_port?)))
    }

    /// What the kernel side is asked to trace.
    pub fn trace_config(&self) -> crate::trace::Config {
        crate::trace::Config {
            server: self.server(),
            family: if self.ipv4 {
                Some(4)
            } else if self.ipv6 {
                Some(6)
            } else {
                None
            },
            lports: self.lport.clone().unwrap_or_default(),
            rports: self.rport.clone().unwrap_or_default(),
            cgroup: self.cgroup.clone(),
            netns: self.netns.as_ref().map(|ns| ns.inode),
            ringbuf_kb: self.ringbuf_kb,
            tw_probe: self.tw_probe,
            tw_free_fn: self.tw_free_fn.clone(),
            btf: self.btf.clone(),
            records: self.wants_records(),
        }
    }

    /// What the connection table is asked to do.
    pub fn conn_config(&self) -> crate::conn::Config {
        crate::conn::Config {
            server_configured: self.server().is_some(),
            pid: self.pid,
            raw: self.raw,
            capacity: self.conn_table_size,
            records: self.wants_records(),
        }
    }

    /// Connection records are made: printed (`--connections`) or counted
    /// in the metrics.
    fn wants_records(&self) -> bool {
        self.connections || self.wants_metrics()
    }

    /// When `-w`'s file is handed over.
    pub fn rotation(&self) -> Rotation {
        Rotation { every: self.rotate_secs, max_bytes: self.rotate_mb.map(|mb| mb.saturating_mul(1 << 20)) }
    }

    /// What every JSON and CSV record of this run carries.
    pub fn run_fields(&self) -> RunFields {
        RunFields {
            wall_offset_ns: crate::output::wall_offset_ns(),
            host: self.hostname.as_deref().map(|h| match h {
                "" => this_hostname().into(),
                name => name.into(),
            }),
            skaddr: self.skaddr || self.raw,
        }
    }

    /// What the format prints.
    pub fn mode(&self) -> Mode {
        if self.connections {
            Mode::Connections
        } else {
            Mode::Transitions
        }
    }

    /// The ports whose metrics get a `port` label (`--metrics-by-port`):
    /// the server's and those of -L and -D, at most 1 + 2 x [`MAX_PORTS`],
    /// so the label's values are bounded.
    #[cfg(feature = "metrics")]
    pub fn metrics_ports(&self) -> Vec<u16> {
        if !self.metrics_by_port {
            return Vec::new();
        }
        let listed = self.lport.iter().chain(&self.rport).flatten().copied();
        let mut ports: Vec<u16> = self.server().map(|s| s.port()).into_iter().chain(listed).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// `--metrics` was given (never, in a build without metrics).
    fn wants_metrics(&self) -> bool {
        #[cfg(feature = "metrics")]
        return self.metrics.is_some();
        #[cfg(not(feature = "metrics"))]
        return false;
    }

    /// The exit summary is noise for drop-in users of the original output.
    pub fn wants_summary(&self) -> bool {
        !self.quiet && (self.verbose || self.output != Format::Original)
    }
}

/// The kernel's name for this machine (uname's nodename): in a Kubernetes
/// pod with hostNetwork, the node's.
fn this_hostname() -> String {
    nix::sys::utsname::uname().map(|u| u.nodename().to_string_lossy().into_owned()).unwrap_or_default()
}

/// A host name as stores group by it: printable, no spaces, not absurdly long.
fn parse_hostname(s: &str) -> Result<String, String> {
    if s.len() > 255 || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("'{s}' is not a host name: use up to 255 characters without spaces or control characters"));
    }
    Ok(s.to_string())
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| format!("'{s}' is not an IPv4 or IPv6 address (e.g. 127.0.0.1 or ::1)"))
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("'{s}' is not a port: use a number from 1 to 65535")),
    }
}

fn parse_server(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr =
        s.parse().map_err(|_| format!("'{s}' is not IP:PORT: write e.g. 127.0.0.1:80 or [::1]:80"))?;
    if addr.port() == 0 {
        return Err(format!("'{s}' has port 0: use a port from 1 to 65535"));
    }
    Ok(addr)
}

#[cfg(feature = "metrics")]
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| format!("'{s}' is not an address to listen on: write e.g. 127.0.0.1:9187 or [::1]:9187"))
}

fn parse_port_list(s: &str) -> Result<PortList, String> {
    let ports = s.split(',').map(|p| parse_port(p.trim())).collect::<Result<Vec<_>, _>>()?;
    if ports.len() > MAX_PORTS {
        return Err(format!("at most {MAX_PORTS} ports, got {}", ports.len()));
    }
    Ok(ports)
}

fn parse_pid(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("'{s}' is not a process id: use a positive number")),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() && secs < 1e9 => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!("'{s}' is not a duration: give seconds greater than 0, e.g. 10 or 0.5")),
    }
}

fn parse_count(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{s}' is not a count: use a whole number greater than 0")),
    }
}

fn parse_table_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{s}' is not a table size: use a whole number greater than 0")),
    }
}

fn parse_ringbuf_kb(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(kb) if kb >= 4 && kb.is_power_of_two() && kb <= 1 << 20 => Ok(kb),
        _ => Err(format!("'{s}' is not a ring buffer size: use a power of two from 4 to 1048576 (KiB)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tcpstate").chain(args.iter().copied())).and_then(Cli::checked)
    }

    #[test]
    fn positional_server_is_the_original_interface() {
        let cli = parse(&["127.0.0.1", "80"]).unwrap();
        assert_eq!(cli.trace.server(), Some("127.0.0.1:80".parse().unwrap()));
        assert_eq!(cli.trace.output, Format::Original);
        assert!(cli.command.is_none());
    }

    #[test]
    fn server_flag_takes_ipv6_in_brackets() {
        let cli = parse(&["--server", "[::1]:8080"]).unwrap();
        assert_eq!(cli.trace.server(), Some("[::1]:8080".parse().unwrap()));
    }

    #[test]
    fn no_server_means_every_socket() {
        let cli = parse(&["-o", "table"]).unwrap();
        assert_eq!(cli.trace.server(), None);
        assert_eq!(cli.trace.output, Format::Table);
    }

    #[test]
    fn ip_without_port_is_refused() {
        assert!(parse(&["127.0.0.1"]).is_err());
    }

    #[test]
    fn bad_values_are_refused_with_the_fix() {
        for (args, needle) in [
            (&["300.1.1.1", "80"][..], "not an IPv4 or IPv6 address"),
            (&["127.0.0.1", "0"], "from 1 to 65535"),
            (&["127.0.0.1", "65536"], "from 1 to 65535"),
            (&["--server", "127.0.0.1"], "IP:PORT"),
            (&["-L", "80,x"], "'x' is not a port"),
            (&["-d", "0"], "greater than 0"),
            (&["-d", "abc"], "not a duration"),
            (&["-c", "0"], "greater than 0"),
            (&["-p", "-3"], "not a process id"),
            (&["-c", "-3"], "greater than 0"),
            (&["--ringbuf-kb", "1000"], "power of two"),
            (&["-o", "xml"], "xml"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn netns_and_cgroup_reach_the_kernel_side_resolved() {
        use std::os::unix::fs::MetadataExt;
        let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino() as u32;
        let cli = parse(&["--netns", "/proc/self/ns/net", "-4", "-L", "80"]).unwrap();
        let cfg = cli.trace.trace_config();
        assert_eq!((cfg.netns, cfg.family, cfg.cgroup), (Some(own), Some(4), None));
        let err = parse(&["--netns", "/etc/hostname"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert!(err.to_string().contains("is not a network namespace"), "{err}");
        assert!(parse(&["--cgroup", "/nonexistent"]).unwrap_err().to_string().contains("no cgroup /nonexistent"));
    }

    #[test]
    fn both_server_spellings_conflict() {
        assert!(parse(&["127.0.0.1", "80", "--server", "127.0.0.1:80"]).is_err());
    }

    #[test]
    fn port_lists_split_on_commas() {
        let cli = parse(&["-L", "80, 443", "-D", "8080"]).unwrap();
        assert_eq!(cli.trace.lport, Some(vec![80, 443]));
        assert_eq!(cli.trace.rport, Some(vec![8080]));
        let too_many = (1..=17).map(|p| p.to_string()).collect::<Vec<_>>().join(",");
        assert!(parse(&["-L", &too_many]).is_err());
    }

    #[test]
    fn families_are_exclusive() {
        assert!(parse(&["-4", "-6"]).is_err());
        assert!(parse(&["-6"]).unwrap().trace.ipv6);
    }

    #[test]
    fn durations_take_fractions() {
        let cli = parse(&["-d", "0.5", "-c", "3"]).unwrap();
        assert_eq!(cli.trace.duration, Some(Duration::from_millis(500)));
        assert_eq!(cli.trace.count, Some(3));
    }

    #[test]
    fn the_original_format_keeps_its_old_name() {
        assert_eq!(parse(&["-o", "original"]).unwrap().trace.output, Format::Original);
        assert_eq!(parse(&["-o", "seed"]).unwrap().trace.output, Format::Original);
    }

    #[test]
    fn connections_need_a_format_with_room_for_them() {
        for format in ["table", "json", "csv"] {
            let cli = parse(&["--connections", "-o", format]).unwrap();
            assert_eq!(cli.trace.mode(), Mode::Connections);
            assert!(cli.trace.conn_config().records);
        }
        let err = parse(&["--connections"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().starts_with(
                "error: --connections needs -o table, json or csv (the original line has no room for a record)\n"
            ),
            "{err}"
        );
        assert!(parse(&["--connections", "-o", "original"]).is_err());
        assert!(parse(&["--connections", "-o", "json", "--raw"])
            .unwrap_err()
            .to_string()
            .contains("cannot be used with"));
    }

    #[test]
    fn records_are_made_only_for_a_reader() {
        let cli = parse(&["-o", "json"]).unwrap();
        assert_eq!(cli.trace.mode(), Mode::Transitions);
        assert!(!cli.trace.conn_config().records);
        #[cfg(feature = "metrics")]
        assert!(parse(&["--metrics", "127.0.0.1:9187"]).unwrap().trace.conn_config().records);
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn metrics_by_port_labels_the_ports_given_and_no_other() {
        let ports = |args: &[&str]| parse(args).map(|cli| cli.trace.metrics_ports()).map_err(|e| e.kind());
        let by_port = ["--metrics", "127.0.0.1:9187", "--metrics-by-port"];
        assert_eq!(ports(&[&["127.0.0.1", "8080"][..], &by_port].concat()), Ok(vec![8080]));
        assert_eq!(ports(&[&["-L", "443,80", "-D", "80,5432"][..], &by_port].concat()), Ok(vec![80, 443, 5432]));
        assert_eq!(ports(&[&["--server", "[::1]:8443", "-L", "8443"][..], &by_port].concat()), Ok(vec![8443]));
        assert_eq!(ports(&["127.0.0.1", "8080", "--metrics", "127.0.0.1:9187"]), Ok(vec![]));
        assert_eq!(ports(&by_port), Err(ErrorKind::MissingRequiredArgument));
        assert_eq!(ports(&["127.0.0.1", "8080", "--metrics-by-port"]), Err(ErrorKind::MissingRequiredArgument));
    }

    #[cfg(feature = "plot")]
    #[test]
    fn plot_is_a_subcommand() {
        let cli = parse(&["plot", "trace.log"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Plot(_))));
    }
}
