//! The tracing run: load → attach → poll → print, until a signal, the
//! duration or the count ends it; then detach, drain and summarise.

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cli::{Format, TraceArgs};
use crate::event::Event;
use crate::output::{Clock, Printer};
use crate::summary::Summary;
use crate::tracer::{Config, Tracer};
use crate::{libbpf_log, preflight};

/// How often the ring is drained when nothing forces a wake-up: events are
/// queued without waking us (a wake-up per event costs an interrupt each).
const TICK: Duration = Duration::from_millis(10);

impl TraceArgs {
    fn config(&self) -> Config {
        Config {
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
            pid: self.pid,
            ringbuf_kb: self.ringbuf_kb,
        }
    }

    /// The exit summary is noise for drop-in users of the original output.
    fn wants_summary(&self) -> bool {
        !self.quiet && (self.verbose || self.output != Format::Seed)
    }
}

/// Runs the tracer. A closed output ends it quietly: see [`is_broken_pipe`].
pub fn run(args: &TraceArgs) -> Result<()> {
    preflight::check_privileges()?;
    preflight::check_btf(Path::new(preflight::KERNEL_BTF))?;
    libbpf_log::init(args.verbose);

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the SIGINT/SIGTERM handler")?;

    let mut storage = MaybeUninit::uninit();
    let tracer = Tracer::load(&args.config(), &mut storage)?;
    let links = tracer.attach()?;
    if args.verbose {
        eprintln!("tcpstate: attached tp_btf/inet_sock_set_state");
    }

    let clock = if args.wall_time { Clock::wall() } else { Clock::relative() };
    let mut printer = Printer::for_format(args.output, clock, !args.ipv4);
    printer.start()?;
    printer.flush()?;

    let batch = RefCell::new(Batch::default());
    let ring = tracer.ring_buffer(|data| batch.borrow_mut().push(data))?;
    let deadline = args.duration.map(|d| Instant::now() + d);
    let mut summary = Summary::default();
    let mut done = false;

    while !done && !stop.load(Ordering::SeqCst) && deadline.is_none_or(|d| Instant::now() < d) {
        // poll() returns on a forced wake-up or after TICK; consume() then
        // takes what was queued without a wake-up.
        if let Err(e) = ring.poll(TICK) {
            // A signal interrupting the wait is how SIGINT reaches us.
            if e.kind() != libbpf_rs::ErrorKind::Interrupted {
                return Err(e).context("polling the ring buffer");
            }
        }
        ring.consume().context("reading the ring buffer")?;
        done = emit(&batch, &mut printer, &mut summary, args.count)?;
    }

    // Detach first so nothing new arrives, then take what is still queued.
    drop(links);
    if !done {
        ring.consume().context("draining the ring buffer")?;
        emit(&batch, &mut printer, &mut summary, args.count)?;
    }
    summary.lost = tracer.lost()?;
    if args.wants_summary() {
        eprintln!("{summary}");
    }
    Ok(())
}

/// Records decoded by the ring callback, waiting to be printed.
#[derive(Default)]
struct Batch {
    events: Vec<Event>,
    error: Option<anyhow::Error>,
}

impl Batch {
    /// The ring callback: decode and queue; a negative return stops the
    /// ring from handing us more.
    fn push(&mut self, data: &[u8]) -> i32 {
        match Event::decode(data) {
            Ok(ev) => {
                self.events.push(ev);
                0
            }
            Err(e) => {
                self.error.get_or_insert(e);
                -1
            }
        }
    }
}

/// Prints the queued events in time order; true once `count` is reached.
fn emit(batch: &RefCell<Batch>, printer: &mut Printer, summary: &mut Summary, count: Option<u64>) -> Result<bool> {
    let mut batch = batch.borrow_mut();
    if let Some(e) = batch.error.take() {
        return Err(e);
    }
    // Per socket the ring is already in order; across CPUs it can lag the
    // timestamps a little, which a sort of the batch mends.
    batch.events.sort_by_key(|ev| ev.ts_ns);
    let mut done = false;
    for ev in batch.events.drain(..) {
        if done {
            continue;
        }
        printer.event(&ev)?;
        summary.count(&ev);
        done = count.is_some_and(|n| summary.total() >= n);
    }
    printer.flush()?;
    Ok(done)
}

/// Writing to a closed pipe (`tcpstate | head -1`) is how readers say they
/// have seen enough: not an error.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}
