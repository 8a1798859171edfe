//! The server: one thread, one connection at a time. Accept, read the whole
//! request, write the response, wait for the client's FIN (or RST), close.
//! Waiting for the client's close first is what makes the client the active
//! closer (client TIME_WAIT, server CLOSE_WAIT → LAST_ACK) in every run.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::{sock, Config, REQUEST_LEN, RESPONSE_LEN};

/// Serves exactly `cfg.connections` connections, or fewer if the deadline
/// passes or a call fails; returns how many were served. Closes the
/// listener (LISTEN:CLOSE) on return.
pub fn serve(listener: TcpListener, cfg: &Config, deadline: Instant) -> Result<u64> {
    let response = [b's'; RESPONSE_LEN];
    for served in 0..cfg.connections {
        if Instant::now() > deadline {
            bail!("deadline passed after {served} connections");
        }
        let (conn, _) = listener.accept().with_context(|| format!("accept #{}", served + 1))?;
        handle(conn, &response, cfg).with_context(|| format!("connection #{}", served + 1))?;
    }
    Ok(cfg.connections)
}

fn handle(mut conn: TcpStream, response: &[u8], cfg: &Config) -> Result<()> {
    sock::set_read_timeout(&conn, cfg.io_timeout)?;
    let mut request = [0u8; REQUEST_LEN];
    conn.read_exact(&mut request).context("reading the request")?;
    conn.write_all(response).context("writing the response")?;
    // The client's FIN gives EOF; its RST gives ECONNRESET. Anything else
    // (data, a timeout) is a broken run.
    let mut rest = [0u8; 16];
    match conn.read(&mut rest) {
        Ok(0) => Ok(()),
        Err(e) if cfg.mode.resets() && e.kind() == ErrorKind::ConnectionReset => Ok(()),
        Ok(n) => bail!("{n} unexpected bytes after the request"),
        Err(e) => Err(e).context("waiting for the client to close"),
    }
}
