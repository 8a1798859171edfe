//! The two ways from a cgroup id to its path: ask the kernel for the
//! directory by its file handle, or walk the tree and read every
//! directory's inode number.
//!
//! On cgroup v2 a cgroup's id is its kernfs node's id, which is both the
//! directory's inode number and, as a `FILEID_KERNFS` file handle, what
//! open_by_handle_at(2) opens: one system call, however large the tree.
//! That needs CAP_DAC_READ_SEARCH, which `--user` gives up; the walk needs
//! nothing but read access to the tree.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap as HashMap;

/// include/linux/exportfs.h: a handle holding a kernfs node's 64-bit id.
const FILEID_KERNFS: i32 = 0xfe;

/// struct file_handle with its 8 bytes of f_handle.
#[repr(C)]
struct KernfsHandle {
    handle_bytes: u32,
    handle_type: i32,
    id: u64,
}

const _: () = assert!(std::mem::size_of::<KernfsHandle>() == 16, "no padding between header and id");

/// What the kernel said of an id's handle.
#[derive(Debug)]
pub(super) enum ByHandle {
    /// The cgroup's path relative to the mount (`/` for its root).
    Path(Box<str>),
    /// No such cgroup now (never, as ids are not reused), or none this
    /// mount shows.
    Gone,
    /// Handles do not work here (no CAP_DAC_READ_SEARCH, an old kernel):
    /// walk instead.
    Unavailable,
}

/// Opens cgroup `id` by its handle on the cgroup2 mount `mount` (whose
/// directory `mount_fd` is) and reads back its path.
pub(super) fn by_handle(mount_fd: BorrowedFd, mount: &Path, id: u64) -> ByHandle {
    let mut handle = KernfsHandle { handle_bytes: 8, handle_type: FILEID_KERNFS, id };
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: `handle` is a file_handle header followed by the
    // `handle_bytes` bytes it announces; the kernel only reads it.
    let fd = unsafe { libc::open_by_handle_at(mount_fd.as_raw_fd(), (&raw mut handle).cast(), flags) };
    if fd < 0 {
        return match io::Error::last_os_error().raw_os_error() {
            Some(libc::ESTALE | libc::ENOENT) => ByHandle::Gone,
            _ => ByHandle::Unavailable,
        };
    }
    // SAFETY: a descriptor the kernel just gave us and nobody else has.
    let dir = unsafe { OwnedFd::from_raw_fd(fd) };
    match fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())) {
        // A cgroup removed since it was opened still names its old place.
        Ok(link) => relative(mount, &PathBuf::from(link.to_string_lossy().trim_end_matches(" (deleted)")))
            .map_or(ByHandle::Gone, ByHandle::Path),
        Err(_) => ByHandle::Unavailable,
    }
}

/// What one walk of the tree found.
pub(super) struct Walk {
    /// Every directory's path relative to the mount, by id.
    pub(super) paths: HashMap<u64, Box<str>>,
    /// Whether it saw every directory (not cut short by its limits).
    pub(super) complete: bool,
}

/// The ids and paths of the directories below `mount`, breadth first (the
/// shallow ones are the likelier owners of sockets), at most `max_dirs`
/// of them and none deeper than `max_depth` below it. Directories removed
/// while it walks are left out.
pub(super) fn walk(mount: &Path, max_depth: usize, max_dirs: usize) -> Walk {
    let mut paths = HashMap::default();
    let mut complete = true;
    if let Ok(root) = fs::metadata(mount) {
        paths.insert(root.ino(), Box::from("/"));
    }
    let mut queue = VecDeque::from([(mount.to_path_buf(), String::new(), 0)]);
    'walk: while let Some((dir, rel, depth)) = queue.pop_front() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if paths.len() >= max_dirs {
                complete = false;
                break 'walk;
            }
            if depth >= max_depth {
                complete = false;
                break;
            }
            let path = format!("{rel}/{}", entry.file_name().to_string_lossy());
            paths.insert(entry.ino(), Box::from(path.as_str()));
            queue.push_back((entry.path(), path, depth + 1));
        }
    }
    Walk { paths, complete }
}

/// `path` relative to `mount`, written as /proc/PID/cgroup writes it.
fn relative(mount: &Path, path: &Path) -> Option<Box<str>> {
    let below = path.strip_prefix(mount).ok()?;
    Some(Box::from(format!("/{}", below.to_string_lossy()).as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_relative_to_the_mount() {
        let mount = Path::new("/sys/fs/cgroup/unified");
        let rel = |p: &str| relative(mount, Path::new(p)).map(String::from);
        assert_eq!(rel("/sys/fs/cgroup/unified").as_deref(), Some("/"));
        assert_eq!(rel("/sys/fs/cgroup/unified/a/b.scope").as_deref(), Some("/a/b.scope"));
        assert_eq!(rel("/sys/fs/cgroup/unifiedx"), None);
        assert_eq!(rel("/"), None);
    }
}
