//! Cgroups in user space: the path and container of the cgroup id the
//! kernel reports for a socket (its cgroup v2 kernfs id; 0 for unknown),
//! and the id and level of the cgroup `--cgroup PATH` names.
//!
//! [`CgroupPaths`] answers ids from a bounded cache. What it has not seen
//! it asks the kernel for by file handle, or, where that is not allowed
//! (after `--user`), finds in a bounded, rate-limited walk of the tree.
//! Cgroup ids are never reused (the kernel adds a generation to the inode
//! number), so an id the tree did not hold in a walk begun after the id
//! was first asked for is gone for good: such misses are remembered, and
//! only the newer ones are looked for again.

mod bounded;
mod container;
mod find;
mod mount;

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
use rustc_hash::FxHashMap as HashMap;

use bounded::Bounded;
pub use container::{container_of, short_id, Container, Runtime, SHORT_ID};
use find::ByHandle;
pub(crate) use mount::mounts_of;
pub use mount::{cgroup2_mount, id_and_level};

/// A cgroup, as [`CgroupPaths::resolve`] found it.
#[derive(Debug, PartialEq, Eq)]
pub struct Cgroup {
    pub id: u64,
    /// Relative to the cgroup2 mount (`/` for its root), as the 0:: line
    /// of /proc/PID/cgroup writes it: `/system.slice/nginx.service`.
    pub path: Box<str>,
    pub container: Option<Container>,
}

/// How much [`CgroupPaths`] keeps and how hard it looks.
#[derive(Clone, Debug)]
pub struct Options {
    /// Cgroups remembered, and ids remembered as not found.
    pub capacity: usize,
    /// A walk looks no deeper below the root than this (Kubernetes pods'
    /// containers are 4 down, kind's 6, nested containers' deeper).
    pub max_depth: usize,
    /// A walk stops after this many directories. A walk cut short (here
    /// or by `max_depth`) settles no miss: what it did not reach is
    /// looked for again by the next one.
    pub max_dirs: usize,
    /// The least time between two walks.
    pub rescan_interval: Duration,
    /// Ask the kernel by file handle while it allows it.
    pub handles: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            capacity: 4096,
            max_depth: 32,
            max_dirs: 16384,
            rescan_interval: Duration::from_secs(1),
            handles: true,
        }
    }
}

/// Cgroup ids to their paths and containers, cached and bounded.
pub struct CgroupPaths {
    mount: PathBuf,
    options: Options,
    /// The mount's directory, for open_by_handle_at, while handles work.
    handles: Option<OwnedFd>,
    found: Bounded<Arc<Cgroup>>,
    missing: Bounded<Miss>,
    /// What the last walk found.
    walked: HashMap<u64, Box<str>>,
    walked_all: bool,
    walks: u64,
    last_walk: Option<Instant>,
    unresolved: u64,
}

/// An id not found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Miss {
    /// Not there any more (or not where this mount shows).
    Gone,
    /// First asked for when this many walks had been done: a later one
    /// that sees the whole tree settles it.
    Since(u64),
}

impl CgroupPaths {
    /// Paths below the cgroup2 mount that [`cgroup2_mount`] finds.
    pub fn new() -> Result<Self> {
        CgroupPaths::at(cgroup2_mount()?, Options::default())
    }

    /// Paths below `mount`. Handles are only asked on a cgroup2
    /// filesystem; any other directory tree is walked (as tests do).
    pub fn at(mount: PathBuf, options: Options) -> Result<Self> {
        let dir = File::open(&mount).with_context(|| format!("opening the cgroup tree {}", mount.display()))?;
        let cgroup2 = statfs(&mount).is_ok_and(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC);
        Ok(CgroupPaths {
            handles: (options.handles && cgroup2).then(|| OwnedFd::from(dir)),
            found: Bounded::new(options.capacity),
            missing: Bounded::new(options.capacity),
            walked: HashMap::default(),
            walked_all: false,
            walks: 0,
            last_walk: None,
            unresolved: 0,
            mount,
            options,
        })
    }

    /// The directory the paths are relative to.
    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// The cgroup with id `id`, or None if it cannot be found (gone, or
    /// not found yet: a walk is due at most every `rescan_interval`) or
    /// `id` is 0, the kernel's "unknown" (which is not counted as
    /// unresolved: there was nothing to look up).
    pub fn resolve(&mut self, id: u64) -> Option<Arc<Cgroup>> {
        if id == 0 {
            return None;
        }
        if let Some(known) = self.found.get(id) {
            return Some(known.clone());
        }
        let Some(path) = self.find(id) else {
            self.unresolved += 1;
            return None;
        };
        let container = container_of(&path);
        let cgroup = Arc::new(Cgroup { id, path, container });
        self.found.insert(id, cgroup.clone());
        Some(cgroup)
    }

    /// Whether any cgroup a walk of the tree reaches is a container's: the
    /// table then makes room for a CONTAINER column.
    pub fn containers_present(&self) -> bool {
        let walk = find::walk(&self.mount, self.options.max_depth, self.options.max_dirs);
        walk.paths.values().any(|path| container_of(path).is_some())
    }

    /// Whether ids are still asked of the kernel by handle (not walked for).
    pub fn uses_handles(&self) -> bool {
        self.handles.is_some()
    }

    /// Lookups of a nonzero id that found no cgroup.
    pub fn unresolved(&self) -> u64 {
        self.unresolved
    }

    /// Cgroups remembered.
    pub fn len(&self) -> usize {
        self.found.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The path of an id not in the cache.
    fn find(&mut self, id: u64) -> Option<Box<str>> {
        if self.missing.get(id) == Some(&Miss::Gone) {
            return None;
        }
        if let Some(dir) = &self.handles {
            match find::by_handle(dir.as_fd(), &self.mount, id) {
                ByHandle::Path(path) => return Some(path),
                ByHandle::Gone => {
                    self.missing.insert(id, Miss::Gone);
                    return None;
                }
                // From now on, walk.
                ByHandle::Unavailable => self.handles = None,
            }
        }
        self.walked_path(id)
    }

    /// The path of `id` in the last walk, or in a new one if one is due.
    fn walked_path(&mut self, id: u64) -> Option<Box<str>> {
        if let Some(path) = self.walked.get(&id) {
            return Some(path.clone());
        }
        let since = match self.missing.get(id) {
            Some(&Miss::Since(walks)) => walks,
            _ => self.walks,
        };
        if self.last_walk.is_none_or(|at| at.elapsed() >= self.options.rescan_interval) {
            self.walk();
            if let Some(path) = self.walked.get(&id) {
                return Some(path.clone());
            }
        }
        let settled = self.walks > since && self.walked_all;
        self.missing.insert(id, if settled { Miss::Gone } else { Miss::Since(since) });
        None
    }

    fn walk(&mut self) {
        let walk = find::walk(&self.mount, self.options.max_depth, self.options.max_dirs);
        self.walked = walk.paths;
        self.walked_all = walk.complete;
        self.walks += 1;
        self.last_walk = Some(Instant::now());
    }
}

/// `text` with every `introducer` followed by `digits` digits in `radix`
/// replaced by the byte they spell: systemd's `\x2d` in unit names,
/// mountinfo's `\040`. Anything else stays as it is.
fn unescape(text: &str, introducer: &str, digits: usize, radix: u32) -> String {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some(&first) = rest.first() {
        let spelled = rest
            .strip_prefix(introducer.as_bytes())
            .and_then(|after| after.get(..digits))
            .filter(|code| code.iter().all(|&c| char::from(c).is_digit(radix)))
            .and_then(|code| u8::from_str_radix(std::str::from_utf8(code).ok()?, radix).ok());
        match spelled {
            Some(byte) => {
                out.push(byte);
                rest = &rest[introducer.len() + digits..];
            }
            None => {
                out.push(first);
                rest = &rest[1..];
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
