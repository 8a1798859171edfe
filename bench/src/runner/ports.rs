//! Server ports for the runs.

use std::fs;

/// A different server port for every run, so that a late event of one run
/// (its namespace dying while the next tracer starts) is never counted by
/// the next; ports in use on the host are skipped, since tracers see every
/// namespace.
pub struct Ports {
    next: u16,
}

const PORT_LOW: u16 = 20_000;
const PORT_SPAN: u16 = 10_000;

impl Default for Ports {
    fn default() -> Self {
        Self::new()
    }
}

impl Ports {
    /// Starts somewhere different each bench, so two benches (or a rerun)
    /// do not walk the same ports.
    pub fn new() -> Ports {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ std::process::id())
            .unwrap_or(0);
        Ports { next: (seed % u32::from(PORT_SPAN)) as u16 }
    }

    /// A port not in use on the host.
    pub fn take(&mut self) -> u16 {
        let busy = host_ports();
        for _ in 0..PORT_SPAN {
            let port = PORT_LOW + self.next;
            self.next = (self.next + 1) % PORT_SPAN;
            if !busy.contains(&port) {
                return port;
            }
        }
        PORT_LOW
    }
}

/// Local and remote ports of the host namespace's TCP sockets.
fn host_ports() -> Vec<u16> {
    let mut ports = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let mut f = line.split_whitespace().skip(1);
            for addr in [f.next(), f.next()].into_iter().flatten() {
                if let Some(p) = addr.rsplit(':').next().and_then(|h| u16::from_str_radix(h, 16).ok()) {
                    ports.push(p);
                }
            }
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_differ_run_to_run_and_stay_in_range() {
        let mut p = Ports::new();
        let a = p.take();
        let b = p.take();
        assert_ne!(a, b);
        assert!((PORT_LOW..PORT_LOW + PORT_SPAN).contains(&a));
    }
}
