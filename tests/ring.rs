//! The kernel side's records as they come off the ring, read through the
//! library before any decoding: no stale bytes anywhere, the connection id
//! on every record, and when a timewait socket's timer was armed.

mod common;

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::mem::{offset_of, size_of};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use tcpstate::skel::types::event;
use tcpstate::trace::{self, preflight, Config, TwProbe};

const SRC_SET_STATE: u8 = 0;
const SRC_TW_ARM: u8 = 2;
const SRC_TW_CANCEL: u8 = 3;
const TCP_FIN_WAIT2: u8 = 5;
const TCP_TIME_WAIT: u8 = 6;
const TCP_CLOSE: u8 = 7;
const TCP_CLOSE_WAIT: u8 = 8;
const TCP_LAST_ACK: u8 = 9;
/// One jiffy at HZ=100, the coarsest tick: tw_armed_ns comes from jiffies.
const JIFFY_NS: i64 = 10_000_000;

/// A record, decoded field by field, and its bytes as they were in the ring.
struct Record {
    ev: event,
    bytes: Vec<u8>,
}

/// Traces `server`'s connections with the probes this kernel accepts and a
/// ring of `ring_kb`, while `scenario` runs on its own thread; returns every
/// record once the scenario is over and `done` holds of what was read, and
/// what the scenario returned.
fn trace_while<T: Send + 'static>(
    server: SocketAddr,
    ring_kb: u32,
    scenario: impl FnOnce() -> T + Send + 'static,
    done: impl Fn(&[Record]) -> bool,
) -> (Vec<Record>, T) {
    let cfg = Config {
        server: Some(server),
        ringbuf_kb: ring_kb,
        tw_probe: TwProbe::Auto,
        btf: PathBuf::from(preflight::KERNEL_BTF),
        ..Config::default()
    };
    let mut slots = trace::slots();
    let (tracer, _links, _) = trace::Tracer::start(&cfg, &mut slots).expect("loading the tracer");
    let records = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&records);
    let ring = tracer
        .ring_buffer(move |bytes| {
            let mut ev = event::default();
            plain::copy_from_bytes(&mut ev, bytes).expect("a whole record");
            sink.borrow_mut().push(Record { ev, bytes: bytes.to_vec() });
            0
        })
        .unwrap();
    let worker = thread::spawn(scenario);
    let start = Instant::now();
    loop {
        // Records come without wake-ups until a quarter of the ring is
        // queued: wait for one, and drain on a tick anyway, as tcpstate does.
        ring.poll(Duration::from_millis(1)).unwrap();
        ring.consume().unwrap();
        if worker.is_finished() && done(&records.borrow()) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "timed out; {} records", records.borrow().len());
    }
    let result = worker.join().unwrap();
    drop(ring);
    (records.take(), result)
}

/// One connection the client closes first (the client keeps TIME_WAIT).
fn client_close(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"x").unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap(), 1);
}

/// A server that answers one byte per connection and closes once the
/// client has.
fn echo_server(listener: TcpListener, n: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for _ in 0..n {
            let (mut c, _) = listener.accept().unwrap();
            let mut buf = [0u8; 16];
            c.read_exact(&mut buf[..1]).unwrap();
            c.write_all(b"y").unwrap();
            while c.read(&mut buf).unwrap() > 0 {}
        }
    })
}

fn comm_bytes(r: &Record) -> &[u8] {
    &r.bytes[offset_of!(event, comm)..offset_of!(event, comm) + 16]
}

#[test]
fn records_carry_no_stale_bytes_when_the_ring_wraps() {
    if !require_root() {
        return;
    }
    const N: usize = 150;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (records, ()) = trace_while(
        addr,
        4,
        move || {
            let server = echo_server(listener, N);
            (0..N).for_each(|_| {
                client_close(addr);
                thread::sleep(Duration::from_millis(1));
            });
            server.join().unwrap();
        },
        |_| true,
    );
    // A 4 KiB ring holds about 36 records: it wrapped many times over, and
    // records with a comm and without share its bytes.
    let slots = 4096 / (size_of::<event>() + 8);
    assert!(records.len() > 10 * slots, "{} records", records.len());
    let with_comm = records.iter().filter(|r| r.ev.pid != 0).count();
    assert!(with_comm > N && with_comm < records.len(), "{with_comm} of {}", records.len());
    for r in &records {
        assert_eq!(r.bytes.len(), size_of::<event>());
        let comm = comm_bytes(r);
        let end = if r.ev.pid == 0 { 0 } else { comm.iter().position(|&b| b == 0).unwrap_or(16) };
        assert!(comm[end..].iter().all(|&b| b == 0), "comm {comm:?} of pid {}", r.ev.pid);
        assert_eq!((r.ev.flags, r.ev.reset_cause), (0, 0), "{:?}", r.bytes);
        assert_ne!(r.ev.cookie, 0, "every record has its connection id");
        if r.ev.source == SRC_SET_STATE {
            assert_eq!((r.ev.tw_substate, r.ev.tw_armed_ns), (0, 0));
        } else {
            assert_eq!(r.ev.pid, 0);
        }
    }
}

/// The records of the connection whose client has local port `port`.
fn client_records(records: &[Record], port: u16) -> Vec<&Record> {
    records.iter().filter(|r| r.ev.side == 2 && r.ev.sport == port).collect()
}

fn find<'a>(records: &[&'a Record], what: impl Fn(&event) -> bool) -> &'a Record {
    records.iter().find(|r| what(&r.ev)).unwrap_or_else(|| panic!("no such record"))
}

#[test]
fn time_wait_carries_the_connection_id_and_when_its_timer_was_armed() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("armed");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (records, client_ports) = trace_while(
        addr,
        1024,
        move || {
            let ports = ns.run_in(move || {
                let server = echo_server(TcpListener::bind(addr).unwrap(), 3);
                let ports: Vec<u16> = (0..3)
                    .map(|_| {
                        let mut s = TcpStream::connect(addr).unwrap();
                        let port = s.local_addr().unwrap().port();
                        s.write_all(b"x").unwrap();
                        s.read_exact(&mut [0u8; 1]).unwrap();
                        thread::sleep(Duration::from_millis(20));
                        port
                    })
                    .collect();
                server.join().unwrap();
                ports
            });
            // Some time in TIME_WAIT, then the namespace's exit ends it.
            thread::sleep(Duration::from_millis(300));
            ns.delete();
            ports
        },
        |records| records.iter().filter(|r| r.ev.source == SRC_TW_CANCEL && r.ev.side == 2).count() >= 3,
    );
    for &cport in &client_ports {
        let conn = client_records(&records, cport);
        let handoff =
            find(&conn, |e| e.source == SRC_SET_STATE && e.oldstate == TCP_FIN_WAIT2 && e.newstate == TCP_CLOSE);
        let birth = find(&conn, |e| e.source == SRC_TW_ARM);
        let death = find(&conn, |e| e.source == SRC_TW_CANCEL);
        // One connection id throughout, the timewait socket's included.
        assert!(conn.iter().all(|r| r.ev.cookie == handoff.ev.cookie && r.ev.cookie != 0), "port {cport}");
        assert_eq!((birth.ev.tw_substate, death.ev.tw_substate), (TCP_TIME_WAIT, TCP_TIME_WAIT));
        assert_eq!(birth.ev.tw_armed_ns, birth.ev.ts_ns, "armed as it was reported");
        // At the death, read back from the timer's expiry: the hand-off.
        let off = death.ev.tw_armed_ns as i64 - handoff.ev.ts_ns as i64;
        eprintln!("port {cport}: tw_armed_ns {off} ns from the hand-off");
        assert!(off.abs() <= JIFFY_NS, "armed {off} ns from the hand-off (port {cport})");
        assert!(death.ev.ts_ns - death.ev.tw_armed_ns > 250_000_000);
    }
}

/// A FIN_WAIT2 parked in a timewait socket that the peer's FIN turns into
/// TIME_WAIT: the re-arm usually lands in the same timer-wheel bucket and
/// fires no timer tracepoint, yet the timewait socket's last record says
/// when it was armed for TIME_WAIT: when the server closed, not when it was
/// parked.
#[test]
fn a_parked_fin_wait2_turned_time_wait_says_when() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("parked");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (records, ()) = trace_while(
        addr,
        1024,
        move || {
            ns.run_in(move || {
                let listener = TcpListener::bind(addr).unwrap();
                set_rcvbuf(&listener, 4096);
                let mut client = TcpStream::connect(addr).unwrap();
                let (mut server, _) = listener.accept().unwrap();
                // Data the server does not read yet: the client's FIN waits.
                client.set_nonblocking(true).unwrap();
                let chunk = [7u8; 4096];
                loop {
                    match client.write(&chunk) {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                client.shutdown(Shutdown::Write).unwrap();
                thread::sleep(Duration::from_millis(400));
                drop(client); // orphaned in FIN_WAIT1
                let mut buf = vec![0u8; 65536];
                while server.read(&mut buf).unwrap() > 0 {} // acked: parked in FIN_WAIT2
                thread::sleep(Duration::from_millis(300));
                drop(server); // its FIN: TIME_WAIT
                thread::sleep(Duration::from_millis(300));
            });
            ns.delete();
        },
        |records| death_after_close(records).is_some(),
    );
    let client: Vec<&Record> = records.iter().filter(|r| r.ev.side == 2).collect();
    let parked = find(&client, |e| e.source == SRC_SET_STATE && e.oldstate == TCP_FIN_WAIT2 && e.newstate == TCP_CLOSE);
    let fin = records.iter().find(|r| is_servers_close(&r.ev)).expect("the server's close");
    // When the re-arm lands in another bucket it shows as a cancel (with the
    // FIN_WAIT2 arming's time) and a start; the death is the last cancel.
    let death = death_after_close(&records).unwrap();
    assert_eq!(death.ev.tw_substate, TCP_TIME_WAIT);
    assert_eq!(death.ev.cookie, parked.ev.cookie);
    let off = death.ev.tw_armed_ns as i64 - fin.ev.ts_ns as i64;
    let starts = client.iter().filter(|r| r.ev.source == SRC_TW_ARM).count();
    let how = if starts > 1 { "cancel and start" } else { "in place, no timer event" };
    eprintln!("re-armed {how}; tw_armed_ns {off} ns from the server's FIN");
    assert!(off.abs() <= JIFFY_NS, "armed {off} ns from the server's FIN");
    assert!(death.ev.tw_armed_ns > parked.ev.ts_ns + 250_000_000, "not when it was parked");
}

fn is_servers_close(e: &event) -> bool {
    e.side == 1 && e.oldstate == TCP_CLOSE_WAIT && e.newstate == TCP_LAST_ACK
}

/// The cancel of the namespace's exit, 300 ms after the server's close
/// (not one of a re-arm, which the server's FIN causes at once).
fn death_after_close(records: &[Record]) -> Option<&Record> {
    let fin = records.iter().find(|r| is_servers_close(&r.ev))?;
    records.iter().find(|r| r.ev.source == SRC_TW_CANCEL && r.ev.side == 2 && r.ev.ts_ns > fin.ev.ts_ns + 200_000_000)
}

fn set_rcvbuf(listener: &TcpListener, bytes: libc::c_int) {
    // SAFETY: a valid socket and an int option that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}
