//! The tracing run: set up, loop, tear down.
//!
//! One event's way: the kernel side queues a record in the ring buffer;
//! the ring callback decodes it ([`Batch`]); the [`Pipeline`] hands each
//! batch, in timestamp order, to the connection table, which turns the
//! probes' view into records (transitions, or raw probe events with --raw,
//! and connection records with --connections or --metrics);
//! records wait a short window so that they leave in timestamp order, then
//! go to every sink: the format on stdout/stderr, the exit summary, the
//! metrics and the picture.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cgroup::CgroupPaths;
use crate::cli::TraceArgs;
use crate::conn::{existing_listeners, ConnTable, Record, CANCEL_HOLD_NS};
use crate::output::{monotonic_ns, Clock, Format, Mode, OutputFile, Printer, Sink, Status, Summary};
use crate::trace::ring::{Batch, Pacer, TICK};
use crate::trace::{libbpf_log, preflight, Lost, Tracer, TwProbe};

/// Runs the tracer. A closed output ends it quietly: see [`is_broken_pipe`].
pub fn run(args: &TraceArgs) -> Result<()> {
    // Set up: checks that name the fix, then load and attach.
    return_large_frees_to_the_kernel();
    libbpf_log::init(args.verbose);
    preflight::refuse_setuid()?;
    let user = args.user.as_deref().map(preflight::lookup_user).transpose()?;
    preflight::check_privileges()?;
    preflight::check_btf(&args.btf)?;
    preflight::check_kernel()?;
    // Before attaching: a file that cannot be written is bad input.
    let file = args.write.as_deref().map(|path| OutputFile::open(path, args.rotation())).transpose()?;
    // So is an address that cannot be served; bound before dropping
    // privileges too, as a low port needs them.
    #[cfg(feature = "metrics")]
    let metrics_server = args
        .metrics
        .map(|addr| {
            crate::output::metrics::serve(crate::output::metrics::Metrics::by_port(&args.metrics_ports()), addr)
        })
        .transpose()?;
    let trace_config = args.trace_config();
    for lost in preflight::optional_tracepoints(trace_config.records) {
        eprintln!("tcpstate: {lost}");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("installing the SIGINT/SIGTERM handler")?;

    let mut slots = crate::trace::slots();
    let (tracer, links, probes) = Tracer::start(&trace_config, &mut slots)?;
    report_probes(args, &tracer, &probes);

    let (cgroups, containers) = cgroup_paths(args);
    let clock = if args.wall_time { Clock::wall() } else { Clock::relative() };
    let mode = args.mode();
    let mut printer =
        Printer::for_format((args.output, args.schema), mode, clock, (!args.ipv4, containers), args.run_fields(), file);
    printer.start().context("writing the output")?;
    #[cfg_attr(not(any(feature = "metrics", feature = "plot")), allow(unused_mut))]
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(printer), Box::new(Summary::new(args.wants_summary(), mode))];
    #[cfg(feature = "metrics")]
    if let Some(server) = &metrics_server {
        sinks.push(Box::new(crate::output::metrics::MetricsSink::new(server.metrics())));
    }
    #[cfg(feature = "plot")]
    if let Some(path) = &args.plot {
        sinks.push(Box::new(crate::plot::Recorder::new(path.clone(), args.quiet)));
    }
    let mut pipeline = Pipeline::new(ConnTable::new(args.conn_config()), cgroups, sinks, args.count, mode);
    // After attaching, so that a listener created meanwhile is not missed;
    // what events tell wins over this snapshot.
    pipeline.table.seed_listeners(&existing_listeners());
    let batch = RefCell::new(Batch::default());
    let ring = tracer.ring_buffer(|data| batch.borrow_mut().push(data))?;
    if let Some(user) = &user {
        preflight::drop_privileges(user)?;
        if args.verbose {
            eprintln!("tcpstate: now running as {} (uid {}), without capabilities", user.name, user.uid);
        }
    }

    // Loop: until a signal, the duration or the count ends it.
    let deadline = args.duration.map(|d| Instant::now() + d);
    let mut lost = Lost::default();
    let mut next_lost_read = Instant::now();
    let mut pacer = Pacer::new(args.ringbuf_kb);
    let mut wait = TICK;
    let mut done = false;
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
        pipeline.take(&mut batch.borrow_mut())?;
        // The kernel's counters cost a few reads of /proc: once a second.
        if Instant::now() >= next_lost_read {
            next_lost_read = Instant::now() + Duration::from_secs(1);
            lost = tracer.lost()?;
        }
        done = pipeline.emit(&lost, false)?;
    }

    // Tear down: detach first so nothing new arrives, then take what is
    // still queued, and give every sink its last word.
    drop(links);
    if !done {
        ring.consume().context("draining the ring buffer")?;
        pipeline.take(&mut batch.borrow_mut())?;
        pipeline.emit(&lost, true)?;
    }
    pipeline.finish(&tracer.lost()?)
}

/// How long a record waits before it is written, so that output is in
/// timestamp order: ring order can lag timestamps across CPUs (about 1 ms),
/// and a timewait socket's death by cancel is only known CANCEL_HOLD_NS
/// after the cancel, which is when it happened.
const REORDER_NS: u64 = 2 * CANCEL_HOLD_NS;

/// Decoded events → the connection table → records in time order → sinks.
pub struct Pipeline {
    pub table: ConnTable,
    /// Cgroup ids to paths and containers; none without a cgroup2 mount.
    cgroups: Option<CgroupPaths>,
    /// Records not yet written, sorted by timestamp (a deque: writing takes
    /// from the front without moving what stays).
    pending: VecDeque<Record>,
    sinks: Vec<Box<dyn Sink>>,
    /// Records printed so far, and how many to print at most (-c): the
    /// count is of what the format prints, whatever else the sinks get.
    written: u64,
    limit: Option<u64>,
    mode: Mode,
}

impl Pipeline {
    pub fn new(
        table: ConnTable,
        cgroups: Option<CgroupPaths>,
        sinks: Vec<Box<dyn Sink>>,
        limit: Option<u64>,
        mode: Mode,
    ) -> Pipeline {
        Pipeline { table, cgroups, pending: VecDeque::new(), sinks, written: 0, limit, mode }
    }

    /// Hands a batch of decoded events to the table, in timestamp order.
    pub fn take(&mut self, batch: &mut Batch) -> Result<()> {
        if let Some(e) = batch.error.take() {
            return Err(e);
        }
        if !batch.events.is_sorted_by_key(|ev| ev.ts_ns) {
            batch.events.sort_by_key(|ev| ev.ts_ns);
        }
        for ev in batch.events.drain(..) {
            self.table.push(ev, &mut self.pending);
        }
        // A burst (thousands of timewait sockets dying with their namespace)
        // can leave the queue huge: give the memory back once it passed.
        shrink_after_burst(&mut batch.events);
        Ok(())
    }

    /// Writes the records older than the reordering window (all of them
    /// when `all`), in time order, to every sink; true once the count is
    /// reached.
    pub fn emit(&mut self, lost: &Lost, all: bool) -> Result<bool> {
        let now = monotonic_ns();
        self.table.tick(now, &mut self.pending);
        if all {
            self.table.flush(&mut self.pending);
        }
        // Stable and adaptive: cheap on the nearly sorted queue, and keeps a
        // socket's same-timestamp records in arrival order.
        let queue = self.pending.make_contiguous();
        if !queue.is_sorted_by_key(Record::ts_ns) {
            queue.sort_by_key(Record::ts_ns);
        }
        let ready = if all {
            self.pending.len()
        } else {
            // Nothing newer than what the table still holds back.
            let held = self.table.held_since().map_or(u64::MAX, |ts| ts.saturating_sub(1));
            let horizon = now.saturating_sub(REORDER_NS).min(held);
            self.pending.partition_point(|r| r.ts_ns() <= horizon)
        };
        let mut done = false;
        for mut record in self.pending.drain(..ready) {
            if let Some(paths) = &mut self.cgroups {
                record.find_cgroup(paths);
            }
            for sink in &mut self.sinks {
                sink.record(&record)?;
            }
            self.written += u64::from(self.mode.prints(&record));
            if self.limit.is_some_and(|n| self.written >= n) {
                done = true;
                break;
            }
        }
        let status = status(&self.table, self.cgroups.as_ref(), lost);
        for sink in &mut self.sinks {
            sink.batch_done(&status)?;
        }
        if self.pending.capacity() > QUEUE_KEEP && self.pending.len() < QUEUE_KEEP / 2 {
            self.pending.shrink_to(QUEUE_KEEP);
        }
        Ok(done)
    }

    /// Tracing ended: every sink's last word.
    pub fn finish(&mut self, lost: &Lost) -> Result<()> {
        let status = status(&self.table, self.cgroups.as_ref(), lost);
        for sink in &mut self.sinks {
            sink.finish(&status)?;
        }
        Ok(())
    }
}

/// Cgroup ids to paths and containers, for the outputs that show them:
/// JSON and CSV, the table when the host runs containers (its CONTAINER
/// column: the second value), the picture. The original line shows none,
/// and its records are not looked up. Made before dropping privileges:
/// with them, an id is found by file handle.
fn cgroup_paths(args: &TraceArgs) -> (Option<CgroupPaths>, bool) {
    #[cfg(feature = "plot")]
    let plot = args.plot.is_some();
    #[cfg(not(feature = "plot"))]
    let plot = false;
    let every_record = matches!(args.output, Format::Json | Format::Csv) || plot;
    if !every_record && args.output != Format::Table {
        return (None, false);
    }
    let paths = match CgroupPaths::new() {
        Ok(paths) => paths,
        Err(e) => {
            if args.verbose {
                eprintln!("tcpstate: cgroup paths and containers not shown: {e:#}");
            }
            return (None, false);
        }
    };
    let containers = args.output == Format::Table && paths.containers_present();
    ((every_record || containers).then_some(paths), containers)
}

/// What the sinks may look at besides the records.
fn status<'a>(table: &'a ConnTable, cgroups: Option<&CgroupPaths>, lost: &'a Lost) -> Status<'a> {
    Status { table, lost, cgroups_unresolved: cgroups.map_or(0, CgroupPaths::unresolved) }
}

/// Queues keep capacity for this many entries; beyond, an emptied queue
/// gives memory back.
const QUEUE_KEEP: usize = 4096;

fn shrink_after_burst<T>(queue: &mut Vec<T>) {
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

/// Says which probes run (-v), and warns when no TIME_WAIT probe could.
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
