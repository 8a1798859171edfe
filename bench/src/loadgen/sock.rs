//! The few socket calls std does not offer: binding a client to a chosen
//! source address before connect, a listen backlog of our choosing, and
//! SO_LINGER 0 for resets. Everything else goes through std's TcpStream.

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use anyhow::{Context, Result};

/// A bound, listening socket on `ip:port` with room for `backlog` pending
/// connections; accept() gives up after `timeout`.
pub fn listen(ip: Ipv4Addr, port: u16, backlog: u32, timeout: Duration) -> Result<TcpListener> {
    let fd = tcp_socket()?;
    set_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1).context("SO_REUSEADDR")?;
    bind(fd.as_raw_fd(), ip, port).with_context(|| format!("binding {ip}:{port}"))?;
    let backlog = i32::try_from(backlog.max(128)).unwrap_or(i32::MAX);
    // SAFETY: fd is a valid socket we own.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).context("listen")?;
    set_timeout(fd.as_raw_fd(), libc::SO_RCVTIMEO, timeout).context("SO_RCVTIMEO on the listener")?;
    Ok(TcpListener::from(fd))
}

/// A connection from `src` (port chosen at connect time) to `dst:port`,
/// every blocking call bounded by `timeout`.
pub fn connect_from(src: Ipv4Addr, dst: Ipv4Addr, port: u16, timeout: Duration) -> Result<TcpStream> {
    let fd = tcp_socket()?;
    let raw = fd.as_raw_fd();
    // Pick the port at connect(), per 4-tuple, not at bind() per address:
    // TIME_WAIT sockets then block far fewer ports.
    set_int(raw, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1).context("IP_BIND_ADDRESS_NO_PORT")?;
    bind(raw, src, 0).with_context(|| format!("binding source {src}"))?;
    set_timeout(raw, libc::SO_SNDTIMEO, timeout).context("SO_SNDTIMEO")?;
    set_timeout(raw, libc::SO_RCVTIMEO, timeout).context("SO_RCVTIMEO")?;
    let addr = sockaddr(dst, port);
    // SAFETY: addr is a valid sockaddr_in of the size given.
    let ret = unsafe {
        libc::connect(raw, (&addr as *const libc::sockaddr_in).cast(), size_of::<libc::sockaddr_in>() as u32)
    };
    cvt(ret).with_context(|| format!("connecting {src} -> {dst}:{port}"))?;
    Ok(TcpStream::from(fd))
}

/// Makes close() abort the connection with a RST instead of a FIN.
pub fn set_linger_zero(s: &TcpStream) -> Result<()> {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    set_opt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, &linger).context("SO_LINGER 0")
}

/// Bounds reads on an accepted socket.
pub fn set_read_timeout(s: &TcpStream, timeout: Duration) -> Result<()> {
    set_timeout(s.as_raw_fd(), libc::SO_RCVTIMEO, timeout).context("SO_RCVTIMEO")
}

fn tcp_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    cvt(fd).context("socket(AF_INET, SOCK_STREAM)")?;
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(ip.octets()) },
        sin_zero: [0; 8],
    }
}

fn bind(fd: RawFd, ip: Ipv4Addr, port: u16) -> io::Result<()> {
    let addr = sockaddr(ip, port);
    // SAFETY: addr is a valid sockaddr_in of the size given.
    cvt(unsafe { libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), size_of::<libc::sockaddr_in>() as u32) })
}

fn set_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    set_opt(fd, level, name, &value)
}

fn set_timeout(fd: RawFd, name: i32, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_usec: timeout.subsec_micros().into(),
    };
    set_opt(fd, libc::SOL_SOCKET, name, &tv)
}

fn set_opt<T>(fd: RawFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: value points to a live T of the size given.
    cvt(unsafe { libc::setsockopt(fd, level, name, (value as *const T).cast(), size_of::<T>() as u32) })
}

fn cvt(ret: i32) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_is_network_order() {
        let a = sockaddr(Ipv4Addr::new(127, 0, 0, 2), 0x1234);
        assert_eq!(a.sin_port.to_ne_bytes(), [0x12, 0x34]);
        assert_eq!(a.sin_addr.s_addr.to_ne_bytes(), [127, 0, 0, 2]);
    }
}
