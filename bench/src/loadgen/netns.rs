//! A fresh network namespace per run: its TIME_WAIT sockets and ports die
//! with it, so one run never slows the next, and nothing of the storm is
//! visible outside loopback of a namespace nobody else uses.

use std::fs;
use std::io;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Moves this process into a new network namespace and brings its `lo` up
/// (the kernel then adds 127.0.0.0/8 by itself). Must run before any other
/// thread starts, so that every thread lives in the new namespace.
pub fn enter_fresh() -> Result<()> {
    // SAFETY: unshare(2) with a flag; affects only this (single) thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error()).context("unshare(CLONE_NEWNET) (needs root)");
    }
    loopback_up().context("bringing lo up in the new namespace")
}

fn loopback_up() -> Result<()> {
    // SAFETY: a plain datagram socket used only for the interface ioctls.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("socket for SIOCSIFFLAGS");
    }
    // SAFETY: fd is ours; closed once below.
    let result = unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let mut ret = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if ret == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            ret = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let err = io::Error::last_os_error();
        libc::close(fd);
        if ret == 0 {
            Ok(())
        } else {
            Err(err)
        }
    };
    result.context("SIOCSIFFLAGS lo IFF_UP")
}

/// The namespace's TIME_WAIT count, read once no TCP socket is left in use
/// (the last handshakes of a run may still be finishing in softirq when the
/// threads return). Waits at most `limit`.
pub fn settled_time_wait(limit: Duration) -> Result<u64> {
    let start = Instant::now();
    loop {
        let text = fs::read_to_string("/proc/net/sockstat").context("reading /proc/net/sockstat")?;
        let (inuse, tw) = parse_sockstat(&text)?;
        if inuse == 0 || start.elapsed() > limit {
            return Ok(tw);
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Client sockets that got no TIME_WAIT socket because the namespace had
/// tcp_max_tw_buckets of them already (`TCPTimeWaitOverflow`): they close
/// at once instead.
pub fn time_wait_overflow() -> Result<u64> {
    let text = fs::read_to_string("/proc/net/netstat").context("reading /proc/net/netstat")?;
    tcp_ext(&text, "TCPTimeWaitOverflow").context("no TcpExt TCPTimeWaitOverflow in /proc/net/netstat")
}

/// One TcpExt counter: netstat has a line of names, then a line of values.
fn tcp_ext(text: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines().filter_map(|l| l.strip_prefix("TcpExt:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// `inuse` and `tw` from sockstat's `TCP:` line.
fn parse_sockstat(text: &str) -> Result<(u64, u64)> {
    let Some(line) = text.lines().find_map(|l| l.strip_prefix("TCP:")) else {
        bail!("no TCP line in /proc/net/sockstat");
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let field = |name: &str| -> Result<u64> {
        let i = words.iter().position(|w| *w == name).with_context(|| format!("no '{name}' in sockstat"))?;
        words.get(i + 1).and_then(|v| v.parse().ok()).with_context(|| format!("bad '{name}' in sockstat"))
    };
    Ok((field("inuse")?, field("tw")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inuse_and_tw() {
        let text = "sockets: used 5\nTCP: inuse 3 orphan 0 tw 20000 alloc 4 mem 1\nUDP: inuse 0 mem 0\n";
        assert_eq!(parse_sockstat(text).unwrap(), (3, 20000));
        assert!(parse_sockstat("UDP: inuse 0\n").is_err());
    }

    #[test]
    fn reads_tcp_ext_counters_by_name() {
        let text = "TcpExt: SyncookiesSent TW TWRecycled\nTcpExt: 0 7 3\nIpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(tcp_ext(text, "TW"), Some(7));
        assert_eq!(tcp_ext(text, "TWRecycled"), Some(3));
        assert_eq!(tcp_ext(text, "TWKilled"), None);
    }
}
