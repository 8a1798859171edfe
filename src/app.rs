//! The tracing run: load → attach → poll → print, until a signal, the
//! duration or the count ends it; then detach, drain and summarise.

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cli::{Format, TraceArgs};
use crate::event::Event;
use crate::lifecycle::{Lifecycle, CANCEL_HOLD_NS};
use crate::metrics::{self, Metrics};
use crate::output::{monotonic_ns, Clock, Printer};
use crate::owners;
use crate::plot::{self, PlotEvent, PlotOptions};
use crate::sockets::Sockets;
use crate::summary::Summary;
use crate::trace::TwProbe;
use crate::trace::{self, libbpf_log, preflight, Config, Tracer};

/// How often the ring is drained when nothing forces a wake-up: events are
/// queued without waking us (a wake-up per event costs an interrupt each).
const TICK: Duration = Duration::from_millis(10);
/// The shortest wait between drains, however fast events come.
const MIN_TICK: Duration = Duration::from_millis(1);

/// Paces the reader. The kernel side forces a wake-up once the ring is a
/// quarter full, and that costs an interrupt on the CPU the traced work runs
/// on (measured: 3-4 % of a loopback storm's throughput at 500 000 events a
/// second with a 1 MiB ring). So the reader waits TICK while events are few
/// and less as they come faster, aiming to drain the ring at an eighth full:
/// the kernel then rarely has to wake it.
struct Pacer {
    /// Events the ring holds.
    capacity: f64,
    last: Instant,
}

impl Pacer {
    fn new(ring_kb: u32) -> Pacer {
        let record = std::mem::size_of::<crate::skel::types::event>() + 8; // + ring header
        Pacer { capacity: f64::from(ring_kb) * 1024.0 / record as f64, last: Instant::now() }
    }

    /// How long to wait after a drain that found `drained` events.
    fn next(&mut self, drained: usize) -> Duration {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        wait_for(self.capacity / 8.0, drained as f64 / elapsed.max(1e-6))
    }
}

/// The time `target` events take to come at `rate` per second, within
/// MIN_TICK..=TICK.
fn wait_for(target: f64, rate: f64) -> Duration {
    if rate <= 0.0 {
        return TICK;
    }
    Duration::from_secs_f64((target / rate).min(TICK.as_secs_f64())).max(MIN_TICK)
}

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
            ringbuf_kb: self.ringbuf_kb,
            tw_probe: self.tw_probe,
            tw_free_fn: self.tw_free_fn.clone(),
            btf: self.btf.clone(),
        }
    }

    /// The exit summary is noise for drop-in users of the original output.
    fn wants_summary(&self) -> bool {
        !self.quiet && (self.verbose || self.output != Format::Seed)
    }
}

/// Runs the tracer. A closed output ends it quietly: see [`is_broken_pipe`].
pub fn run(args: &TraceArgs) -> Result<()> {
    return_large_frees_to_the_kernel();
    libbpf_log::init(args.verbose);
    preflight::refuse_setuid()?;
    let user = args.user.as_deref().map(preflight::lookup_user).transpose()?;
    preflight::check_privileges()?;
    preflight::check_btf(&args.btf)?;

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("installing the SIGINT/SIGTERM handler")?;

    let mut slots = trace::slots();
    let (tracer, links, probes) = Tracer::start(&args.config(), &mut slots)?;
    report_probes(args, &tracer, &probes);

    let clock = if args.wall_time { Clock::wall() } else { Clock::relative() };
    let mut printer = Printer::for_format(args.output, clock, !args.ipv4);
    printer.start().context("writing the output")?;
    printer.flush().context("writing the output")?;

    let mut flow = Flow::new(args);
    // After attaching, so that a listener created meanwhile is not missed;
    // what events tell wins over this snapshot.
    flow.sockets.seed(&owners::existing_listeners());
    let batch = RefCell::new(Batch::default());
    let ring = tracer.ring_buffer(|data| batch.borrow_mut().push(data))?;
    // Bound before dropping privileges: a low port needs them.
    let metrics = args.metrics.map(|addr| {
        let m = Metrics::new();
        metrics::serve(m.clone(), addr).map(|server| (m, server))
    });
    let metrics = metrics.transpose()?;
    flow.metrics = metrics.as_ref().map(|(m, _)| m.clone());
    if let Some(user) = &user {
        preflight::drop_privileges(user)?;
        if args.verbose {
            eprintln!("tcpstate: now running as {} (uid {}), without capabilities", user.name, user.uid);
        }
    }
    let deadline = args.duration.map(|d| Instant::now() + d);
    let mut summary = Summary::default();
    let mut done = false;
    let mut next_lost_read = Instant::now();
    let mut pacer = Pacer::new(args.ringbuf_kb);
    let mut wait = TICK;

    while !done && !stop.load(Ordering::SeqCst) && deadline.is_none_or(|d| Instant::now() < d) {
        // poll() returns on a forced wake-up or after `wait`; consume() then
        // takes what was queued without a wake-up.
        if let Err(e) = ring.poll(wait) {
            // A signal interrupting the wait is how SIGINT reaches us.
            if e.kind() != libbpf_rs::ErrorKind::Interrupted {
                return Err(e).context("polling the ring buffer");
            }
        }
        ring.consume().context("reading the ring buffer")?;
        wait = pacer.next(batch.borrow().events.len());
        done = flow.emit(&batch, &mut printer, &mut summary, args.count, false)?;
        if let Some(m) = &flow.metrics {
            if Instant::now() >= next_lost_read {
                next_lost_read = Instant::now() + Duration::from_secs(1);
                m.set_lost(&tracer.lost()?);
            }
        }
    }

    // Detach first so nothing new arrives, then take what is still queued.
    drop(links);
    if !done {
        ring.consume().context("draining the ring buffer")?;
        flow.emit(&batch, &mut printer, &mut summary, args.count, true)?;
    }
    summary.lost = tracer.lost()?;
    if args.wants_summary() {
        eprintln!("{summary}");
    }
    if let (Some(path), Some(plotted)) = (&args.plot, &flow.plotted) {
        if plotted.full && !args.quiet {
            eprintln!("tcpstate: warning: the picture shows the first {PLOT_MAX} transitions only");
        }
        plot::write_picture(&plotted.events, &PlotOptions::default(), path, None)
            .with_context(|| format!("drawing {}", path.display()))?;
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

/// How long an event waits before it is printed, so that output is in
/// timestamp order: ring order can lag timestamps across CPUs (about 1 ms),
/// and a timewait socket's death by cancel is only known CANCEL_HOLD_NS
/// after the cancel, which is when it happened.
const REORDER_NS: u64 = 2 * CANCEL_HOLD_NS;

/// What happens to decoded events before they are printed: the TIME_WAIT
/// lifecycle (unless --raw asks for what the probes saw), then reordering.
struct Flow {
    sockets: Sockets,
    lifecycle: Option<Lifecycle>,
    /// Events not yet printed, sorted by timestamp.
    pending: Vec<Event>,
    /// What --plot will draw: the transitions printed, up to PLOT_MAX.
    plotted: Option<Plotted>,
    /// --metrics: fed every printed transition.
    metrics: Option<Arc<Metrics>>,
}

/// The transitions kept for --plot.
#[derive(Default)]
struct Plotted {
    events: Vec<PlotEvent>,
    /// More came than PLOT_MAX.
    full: bool,
}

impl Plotted {
    /// Keeps a printed transition (not raw probe events).
    fn keep(&mut self, ev: &Event) {
        if ev.is_raw_tw() {
            return;
        }
        if self.events.len() < PLOT_MAX {
            self.events.push(PlotEvent::from(ev));
        } else {
            self.full = true;
        }
    }
}

/// --plot keeps this many transitions at most (about 60 MB), so that a
/// long run cannot grow without bound.
const PLOT_MAX: usize = 1_000_000;

impl Flow {
    fn new(args: &TraceArgs) -> Flow {
        Flow {
            sockets: Sockets::new(args.server().is_some(), args.pid),
            lifecycle: (!args.raw).then(|| Lifecycle::new(args.pid.is_some())),
            pending: Vec::new(),
            plotted: args.plot.is_some().then(Plotted::default),
            metrics: None,
        }
    }

    /// Prints the events older than the reordering window (all of them when
    /// `all`), in time order; true once `count` is reached.
    fn emit(
        &mut self,
        batch: &RefCell<Batch>,
        printer: &mut Printer,
        summary: &mut Summary,
        count: Option<u64>,
        all: bool,
    ) -> Result<bool> {
        let mut batch = batch.borrow_mut();
        if let Some(e) = batch.error.take() {
            return Err(e);
        }
        let now = monotonic_ns();
        if !batch.events.is_sorted_by_key(|ev| ev.ts_ns) {
            batch.events.sort_by_key(|ev| ev.ts_ns);
        }
        let (lifecycle, pending) = (&mut self.lifecycle, &mut self.pending);
        for ev in batch.events.drain(..) {
            self.sockets.track(ev, |ev| match lifecycle.as_mut() {
                Some(lc) => lc.push(ev, pending),
                None => pending.push(ev),
            });
        }
        summary.inferred = self.sockets.inferred;
        if let Some(lc) = lifecycle {
            lc.tick(now, pending);
        }
        // Stable and adaptive: cheap on the nearly sorted queue, and keeps
        // a socket's same-timestamp events in arrival order.
        if !self.pending.is_sorted_by_key(|ev| ev.ts_ns) {
            self.pending.sort_by_key(|ev| ev.ts_ns);
        }
        let ready = if all {
            self.pending.len()
        } else {
            let horizon = now.saturating_sub(REORDER_NS);
            self.pending.partition_point(|ev| ev.ts_ns <= horizon)
        };
        let mut done = false;
        for ev in self.pending.drain(..ready) {
            printer.event(&ev).context("writing the output")?;
            summary.count(&ev);
            if let Some(plotted) = &mut self.plotted {
                plotted.keep(&ev);
            }
            if let Some(m) = &self.metrics {
                m.observe(&ev);
            }
            if count.is_some_and(|n| summary.total() >= n) {
                done = true;
                break;
            }
        }
        printer.flush().context("writing the output")?;
        // A burst (thousands of timewait sockets dying with their namespace)
        // can leave these queues huge: give the memory back once it passed.
        shrink_after_burst(&mut batch.events);
        shrink_after_burst(&mut self.pending);
        if let Some(m) = &self.metrics {
            m.set_inferred(self.sockets.inferred);
            m.set_time_wait_alive(self.lifecycle.as_ref().map_or(0, |lc| lc.live()));
        }
        Ok(done)
    }
}

/// Queues keep capacity for this many events; beyond, an emptied queue
/// gives memory back.
const QUEUE_KEEP: usize = 4096;

fn shrink_after_burst(queue: &mut Vec<Event>) {
    if queue.capacity() > QUEUE_KEEP && queue.len() < QUEUE_KEEP / 2 {
        queue.shrink_to(QUEUE_KEEP);
    }
}

/// Large blocks get their own mapping, returned to the kernel when freed.
/// glibc otherwise raises this threshold after the first large free and
/// keeps later bursts' memory in the heap for good: RSS would only grow.
fn return_large_frees_to_the_kernel() {
    // SAFETY: mallopt only tunes the allocator; called before threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Says which TIME_WAIT probes run (-v), and warns when none could.
fn report_probes(args: &TraceArgs, tracer: &Tracer<'_>, described: &str) {
    let refused: Vec<String> =
        tracer.refused.iter().map(|(kind, why)| format!("{} refused: {why}", kind.name())).collect();
    if args.verbose {
        eprintln!("tcpstate: attached tp_btf/inet_sock_set_state{}", tracer.nested.describe());
        eprintln!("tcpstate: TIME_WAIT probes: {described}");
        for line in &refused {
            eprintln!("tcpstate:   {line}");
        }
    } else if tracer.tw_probe == TwProbe::Off && !refused.is_empty() && args.wants_summary() {
        eprintln!(
            "tcpstate: warning: no TIME_WAIT probe fits this kernel ({}); TIME_WAIT is not shown",
            refused.join("; ")
        );
    }
}

/// Writing to a closed pipe (`tcpstate | head -1`) is how readers say they
/// have seen enough: not an error.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_waits_less_as_events_come_faster() {
        // A 1 MiB ring holds about 9 400 events (104 bytes and a header);
        // an eighth is about 1 170.
        let target = Pacer::new(1024).capacity / 8.0;
        assert!((1150.0..1200.0).contains(&target), "{target}");
        assert_eq!(wait_for(target, 0.0), TICK);
        assert_eq!(wait_for(target, 1_000.0), TICK);
        let busy = wait_for(target, 500_000.0);
        assert!(busy > Duration::from_micros(2_300) && busy < Duration::from_micros(2_400), "{busy:?}");
        assert_eq!(wait_for(target, 1e9), MIN_TICK);
    }
}
