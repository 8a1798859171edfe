//! `tcpstate plot`: read a trace, warn about broken lines, write the picture.
//!
//! Output choice: `-o FILE` is always SVG (`-` for stdout); `--png FILE`
//! adds a PNG of the same picture. A `.png` name given to `-o` is refused
//! with that hint rather than silently writing SVG text into a `.png`.

use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{fonts_available, read_trace, render_labelled_svg, render_png, PlotOptions, Trace};

/// Warnings printed before the rest are only counted.
const MAX_WARNINGS_SHOWN: usize = 20;

#[derive(Args, Debug, Clone, PartialEq, Eq)]
#[command(after_help = "\
Input: the tracer's default lines (ts:<ns>:<side>:<OLD>:<NEW>, other text is skipped) or its \
JSON lines (tcpstate -o json), told apart automatically. Only JSON lines carry addresses: with \
them each connection gets a server and a client lane, and --port/--conn work; the original \
lines give one server and one client lane per connection, told apart by state continuity. \
Listening sockets get their own 'listener' lane. JSON connection records (tcpstate \
--connections -o json) among the transitions label each lane with how its connection ended \
and the bytes it moved; records alone have no transitions to draw. When JSON lines name \
containers (container_id), each container's connections are drawn together under a heading, \
those in no container last; a connection between two containers goes under its server's.

Examples:
  tcpstate 127.0.0.1 80 2> trace.log; tcpstate plot trace.log
  tcpstate -o json > trace.jsonl; tcpstate plot trace.jsonl --port 80 --png timeline.png")]
pub struct PlotArgs {
    /// Trace to draw; `-` reads standard input
    #[arg(value_name = "FILE", default_value = "-")]
    pub input: PathBuf,

    /// SVG file to write; `-` writes to standard output
    #[arg(short = 'o', long, value_name = "FILE", default_value = "timeline.svg")]
    pub output: PathBuf,

    /// Also write the picture as PNG to this file
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,

    /// Stop at the first broken event line instead of warning and skipping it
    #[arg(long)]
    pub strict: bool,

    /// Draw at most N connections (and N listeners); the rest are counted in a note
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = parse_max_conns)]
    pub max_conns: usize,

    /// Only connections with this port at either end
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    // Help given as an attribute: rustdoc would read `[v6]` as a link.
    #[arg(
        long,
        value_name = "SPEC",
        help = "Only this connection: SADDR:SPORT-DADDR:DPORT (either order, [v6]:port), \
                or ADDR:PORT for every connection with that endpoint"
    )]
    pub conn: Option<String>,

    /// Only connections with an end in this container: its id as `docker ps` shows it, any
    /// shorter prefix, or the whole id
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,

    /// Picture width in pixels
    #[arg(long, value_name = "PX", default_value_t = 1200, value_parser = clap::value_parser!(u32).range(480..=20000))]
    pub width: u32,

    /// Title written at the top
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
}

impl PlotArgs {
    pub fn options(&self) -> PlotOptions {
        PlotOptions {
            max_conns: self.max_conns,
            port: self.port,
            conn: self.conn.clone(),
            container: self.container.clone(),
            width: self.width,
            title: self.title.clone(),
        }
    }
}

fn parse_max_conns(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{s}' is not a count: use a whole number greater than 0")),
    }
}

/// The subcommand: reads the input, prints warnings to stderr, writes the
/// file(s).
pub fn run(args: &PlotArgs) -> Result<()> {
    check_svg_path(&args.output)?;
    let input = read_input(&args.input)?;
    let (trace, warnings) = read_trace(&input, args.strict)?;
    print_warnings(&warnings);
    write_picture(&trace, &args.options(), &args.output, args.png.as_deref())
}

/// Draws `trace` into an SVG file (`-` for stdout) and, if asked, a PNG
/// file. This is what the tracer's `--plot FILE` calls with what it kept.
pub fn write_picture(trace: &Trace, opts: &PlotOptions, svg_path: &Path, png_path: Option<&Path>) -> Result<()> {
    check_svg_path(svg_path)?;
    let svg = render_labelled_svg(&trace.events, &trace.ends, opts)?;
    if svg_path == Path::new("-") {
        io::stdout().write_all(svg.as_bytes()).context("cannot write the SVG to standard output")?;
    } else {
        fs::write(svg_path, &svg).with_context(|| format!("cannot write {}", svg_path.display()))?;
    }
    if let Some(png_path) = png_path {
        if !fonts_available() {
            eprintln!(
                "tcpstate: warning: no fonts found, the PNG will have no text: install one (Debian: apt-get install fonts-dejavu-core)"
            );
        }
        let png = render_png(&svg)?;
        fs::write(png_path, png).with_context(|| format!("cannot write {}", png_path.display()))?;
    }
    Ok(())
}

fn check_svg_path(path: &Path) -> Result<()> {
    let is_png = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if is_png {
        bail!("-o writes SVG, not PNG: write e.g. `-o timeline.svg --png {}` to get a PNG as well", path.display());
    }
    Ok(())
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path != Path::new("-") {
        return fs::read(path).with_context(|| {
            format!(
                "cannot read the trace {}: give a file written by tcpstate, or - for standard input",
                path.display()
            )
        });
    }
    let stdin = io::stdin();
    // Waiting for a trace typed by hand is never what was meant.
    if stdin.is_terminal() {
        bail!("no trace given: run `tcpstate plot FILE`, or pipe a trace in (`... | tcpstate plot -`)");
    }
    let mut bytes = Vec::new();
    stdin.lock().read_to_end(&mut bytes).context("cannot read the trace from standard input")?;
    Ok(bytes)
}

fn print_warnings(warnings: &[String]) {
    for w in warnings.iter().take(MAX_WARNINGS_SHOWN) {
        eprintln!("tcpstate: warning: skipped {w}");
    }
    if warnings.len() > MAX_WARNINGS_SHOWN {
        eprintln!(
            "tcpstate: warning: {} more broken lines skipped (--strict stops at the first)",
            warnings.len() - MAX_WARNINGS_SHOWN
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        plot: PlotArgs,
    }

    fn parse(args: &[&str]) -> Result<PlotArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("plot").chain(args.iter().copied())).map(|c| c.plot)
    }

    #[test]
    fn defaults_read_stdin_and_write_timeline_svg() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.input, PathBuf::from("-"));
        assert_eq!(a.output, PathBuf::from("timeline.svg"));
        assert_eq!(a.options(), PlotOptions::default());
    }

    #[test]
    fn flags_map_to_options() {
        let a =
            parse(&["t.log", "-o", "x.svg", "--png", "x.png", "--strict", "--max-conns", "3", "--port", "80"]).unwrap();
        assert!(a.strict);
        assert_eq!(a.png, Some(PathBuf::from("x.png")));
        assert_eq!(a.options().max_conns, 3);
        assert_eq!(a.options().port, Some(80));
        for bad in [&["--max-conns", "0"][..], &["--port", "0"], &["--width", "10"]] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn png_name_for_the_svg_is_refused_with_the_fix() {
        let err = check_svg_path(Path::new("out.PNG")).unwrap_err().to_string();
        assert!(err.contains("--png"), "{err}");
        assert!(check_svg_path(Path::new("-")).is_ok());
    }
}
