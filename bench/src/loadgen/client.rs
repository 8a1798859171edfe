//! The clients: connect → request → read response → close, from
//! 127.0.0.1..=127.0.0.8 round-robin. In `concurrent` mode a batch of C
//! connections is established before any of them is used, so C sockets
//! (and their server ends) are open at once.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::{sock, Config, Mode, REQUEST_LEN, RESPONSE_LEN, SERVER_IP, SOURCE_ADDRS};

/// Runs every connection; returns how many completed.
pub fn run(cfg: &Config, deadline: Instant) -> Result<u64> {
    let batch = match cfg.mode {
        Mode::Concurrent => u64::from(cfg.concurrency.max(1)),
        _ => 1,
    };
    let request = [b'q'; REQUEST_LEN];
    let mut done = 0u64;
    while done < cfg.connections {
        if Instant::now() > deadline {
            bail!("deadline passed after {done} connections");
        }
        let n = batch.min(cfg.connections - done);
        let mut open = Vec::with_capacity(n as usize);
        for i in 0..n {
            let conn = sock::connect_from(source(done + i), SERVER_IP, cfg.port, cfg.io_timeout)
                .with_context(|| format!("connection #{}", done + i + 1))?;
            open.push(conn);
        }
        for conn in &mut open {
            conn.write_all(&request).context("writing the request")?;
        }
        for conn in open {
            finish(conn, cfg.mode).with_context(|| format!("connection #{}", done + 1))?;
            done += 1;
        }
    }
    Ok(done)
}

/// Source address of the i-th connection.
fn source(i: u64) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 1 + (i % u64::from(SOURCE_ADDRS)) as u8)
}

/// Reads the whole response (so close() finds no unread data, which would
/// send a RST), then closes: FIN, or RST in reset mode.
fn finish(mut conn: TcpStream, mode: Mode) -> Result<()> {
    let mut response = [0u8; RESPONSE_LEN];
    conn.read_exact(&mut response).context("reading the response")?;
    if mode.resets() {
        sock::set_linger_zero(&conn)?;
    }
    drop(conn);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_cycle_through_eight_loopback_addresses() {
        assert_eq!(source(0), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source(7), Ipv4Addr::new(127, 0, 0, 8));
        assert_eq!(source(8), Ipv4Addr::new(127, 0, 0, 1));
        assert!((0..100).all(|i| source(i).is_loopback()));
    }
}
