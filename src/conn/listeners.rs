//! Who owns each listening socket, so that a connection accepted from it is
//! attributed from its first transition (which runs in softirq, where no
//! process can be named).
//!
//! The kernel side names a listener's owner when listen() runs; a server
//! started earlier (the usual case) is found in /proc at start.

use std::collections::{BTreeMap, HashMap};
use std::fs;

use rustc_hash::FxHashMap;

use crate::model::{Comm, Owner, TcpState};
use crate::trace::ProbeEvent;

/// Listening sockets remembered at most; beyond, the map starts afresh.
pub const MAX_LISTENERS: usize = 4_096;

/// Listener owners by namespace and port.
#[derive(Default)]
pub(super) struct Owners {
    by_port: FxHashMap<(u32, u16), Owner>,
}

impl Owners {
    /// Listeners that predate us. Events win: a listen() seen later
    /// replaces what is given here.
    pub(super) fn seed(&mut self, listeners: &[Listener]) {
        for l in listeners.iter().take(MAX_LISTENERS) {
            let owner = Owner { pid: l.pid, comm: (!l.comm.is_empty()).then(|| Comm::from(l.comm.as_str())) };
            self.by_port.entry((l.netns, l.port)).or_insert(owner);
        }
    }

    /// The owner of the listener on `port` in `netns`, if known.
    pub(super) fn get(&self, netns: u32, port: u16) -> Option<Owner> {
        self.by_port.get(&(netns, port)).copied()
    }

    /// Learns from a listener's own transitions: listen() names its owner,
    /// its close forgets it.
    pub(super) fn learn(&mut self, ev: &ProbeEvent, old: TcpState, new: TcpState, owner: Option<Owner>) {
        let key = (ev.netns, ev.tuple.sport);
        if new == TcpState::LISTEN {
            if let Some(owner) = owner {
                if self.by_port.len() >= MAX_LISTENERS && !self.by_port.contains_key(&key) {
                    self.by_port.clear();
                }
                self.by_port.insert(key, owner);
            }
        } else if old == TcpState::LISTEN && new == TcpState::CLOSE {
            self.by_port.remove(&key);
        }
    }
}

/// A listening socket and the process that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub netns: u32,
    pub port: u16,
    pub pid: u32,
    pub comm: String,
}

/// Every TCP listener visible in /proc, in every network namespace that
/// has a process. A socket held by several processes (a server's master
/// and its workers) belongs to the lowest pid: the one that called listen().
pub fn existing_listeners() -> Vec<Listener> {
    let mut holders: HashMap<u64, u32> = HashMap::new(); // socket inode -> pid
    let mut netns_pid: BTreeMap<u32, u32> = BTreeMap::new(); // netns inode -> a pid in it
    for pid in pids() {
        if let Some(ns) = ns_inode(pid) {
            netns_pid.entry(ns).or_insert(pid);
        }
        for inode in socket_inodes(pid) {
            let holder = holders.entry(inode).or_insert(pid);
            *holder = (*holder).min(pid);
        }
    }
    let mut found = Vec::new();
    for (netns, pid) in netns_pid {
        for table in ["tcp", "tcp6"] {
            let text = fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
            for (port, inode) in listening_sockets(&text) {
                let Some(&owner) = holders.get(&inode) else { continue };
                let comm = fs::read_to_string(format!("/proc/{owner}/comm")).unwrap_or_default();
                found.push(Listener { netns, port, pid: owner, comm: comm.trim_end().to_string() });
            }
        }
    }
    found
}

fn pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

fn ns_inode(pid: u32) -> Option<u32> {
    let link = fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    bracketed(link.to_str()?, "net:[")?.parse().ok()
}

fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    fds.flatten()
        .filter_map(|fd| {
            let link = fs::read_link(fd.path()).ok()?;
            bracketed(link.to_str()?, "socket:[")?.parse().ok()
        })
        .collect()
}

/// "socket:[1234]" -> "1234"
fn bracketed<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.strip_prefix(prefix)?.strip_suffix(']')
}

/// (local port, inode) of each LISTEN row of a /proc/net/tcp{,6} table.
fn listening_sockets(table: &str) -> Vec<(u16, u64)> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.get(3) != Some(&"0A") {
                return None;
            }
            let port = u16::from_str_radix(cols.get(1)?.rsplit(':').next()?, 16).ok()?;
            let inode = cols.get(9)?.parse().ok()?;
            Some((port, inode))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_rows_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 43210 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 43211 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(listening_sockets(table), [(8080, 43210)]);
    }

    #[test]
    fn finds_our_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let me = std::process::id();
        let found = existing_listeners();
        assert!(found.iter().any(|x| x.port == port && x.pid == me), "port {port} pid {me} not in {found:?}");
    }
}
