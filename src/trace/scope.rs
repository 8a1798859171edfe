//! What `--cgroup` and `--netns` name, in the kernel side's terms: a cgroup
//! v2's id and depth, a network namespace's inode. Resolved while the
//! command line is parsed, so that a name that does not exist, or is not
//! what it should be, is a usage error (one line, exit 2) before anything
//! is loaded.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A cgroup v2 and everything below it (`--cgroup`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupScope {
    /// The cgroup, as given.
    pub path: PathBuf,
    /// The cgroup's id: its kernfs node id, which is its directory's inode
    /// number and what the kernel side reads from each socket.
    pub id: u64,
    /// Its depth below the root cgroup (the root is 0): where its id stands
    /// among the ancestors of the cgroups below it.
    pub level: u32,
}

/// A network namespace (`--netns`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetnsScope {
    /// What was given.
    pub spelling: String,
    /// Its inode number: what the kernel side reads as each socket's
    /// `net->ns.inum`, and what `netns` prints.
    pub inode: u32,
}

/// The inode of the initial cgroup namespace (PROC_CGROUP_INIT_INO,
/// include/linux/proc_ns.h).
const INIT_CGROUP_NS_INODE: u64 = 0xEFFF_FFFB;

/// `--cgroup PATH`: a directory of the cgroup2 hierarchy, or a path
/// relative to its mount as /proc/PID/cgroup writes it (`crate::cgroup`
/// finds the mount and the level).
pub fn cgroup(arg: &str) -> Result<CgroupScope, String> {
    let (id, level) = crate::cgroup::id_and_level(Path::new(arg)).map_err(|e| format!("{e:#}"))?;
    if !in_initial_cgroup_namespace() {
        return Err("--cgroup needs tcpstate in the initial cgroup namespace (its cgroups' depths are \
                    the kernel's): run it on the host, or in a container with the host's cgroup namespace"
            .into());
    }
    Ok(CgroupScope { path: arg.into(), id, level })
}

/// Why a path could not be used, in a few words.
fn why(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".into(),
        std::io::ErrorKind::PermissionDenied => "cannot be opened: permission denied".into(),
        _ => format!("cannot be opened: {e}"),
    }
}

/// Without cgroup namespaces (no /proc/self/ns/cgroup), there is only one.
fn in_initial_cgroup_namespace() -> bool {
    fs::metadata("/proc/self/ns/cgroup").map_or(true, |m| m.ino() == INIT_CGROUP_NS_INODE)
}

/// `--netns NS`: `/run/netns/NAME` (or just NAME, as `ip netns` names
/// them), `/proc/PID/ns/net`, or a namespace's inode number.
pub fn netns(arg: &str) -> Result<NetnsScope, String> {
    let fix = "give /run/netns/NAME (ip netns list), /proc/PID/ns/net or the namespace's inode number";
    if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit()) {
        let inode = arg.parse::<u32>().ok().filter(|&i| i != 0 && netns_in_use(i));
        return match inode {
            Some(inode) => Ok(NetnsScope { spelling: arg.into(), inode }),
            None => Err(format!("no network namespace has inode {arg} (none of /proc/*/ns/net, no nsfs mount): {fix}")),
        };
    }
    let (path, named) = match arg.contains('/') {
        true => (PathBuf::from(arg), format!("'{arg}'")),
        false => (Path::new("/run/netns").join(arg), format!("'{arg}' (/run/netns/{arg})")),
    };
    let file = fs::File::open(&path).map_err(|e| format!("network namespace {named} {}: {fix}", why(&e)))?;
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the file's
    // namespace; on a file that is not a namespace it fails with ENOTTY.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), libc::NS_GET_NSTYPE) };
    if kind != libc::CLONE_NEWNET {
        return Err(format!("'{arg}' is not a network namespace: {fix}"));
    }
    let inode = file.metadata().map_err(|e| format!("network namespace '{arg}' {}: {fix}", why(&e)))?.ino();
    let inode = u32::try_from(inode).map_err(|_| format!("'{arg}' has inode {inode}, not a namespace's: {fix}"))?;
    Ok(NetnsScope { spelling: arg.into(), inode })
}

/// Whether a network namespace with this inode is alive where tcpstate can
/// tell: a process's, or one bound to a file (`ip netns add`, container
/// runtimes). One held only by an open descriptor is not found.
fn netns_in_use(inode: u32) -> bool {
    let link = format!("net:[{inode}]");
    let of_process = fs::read_dir("/proc").into_iter().flatten().flatten().any(|entry| {
        let is_pid = entry.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        is_pid && fs::read_link(entry.path().join("ns/net")).is_ok_and(|l| l.as_os_str() == link.as_str())
    });
    of_process || nsfs_roots(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()).any(|r| r == link)
}

/// The namespaces bound to files (nsfs mounts), as mountinfo names them
/// (`net:[4026532177]`).
fn nsfs_roots(mountinfo: &str) -> impl Iterator<Item = &str> {
    crate::cgroup::mounts_of(mountinfo, "nsfs").map(|(root, _)| root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_namespaces_bound_to_files() {
        let mountinfo = "\
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 25 0:4 net:[4026532177] /run/netns/blue rw - nsfs nsfs rw
";
        assert_eq!(nsfs_roots(mountinfo).collect::<Vec<_>>(), ["net:[4026532177]"]);
    }

    #[test]
    fn the_own_namespace_resolves_in_every_spelling() {
        let own = fs::metadata("/proc/self/ns/net").unwrap().ino() as u32;
        assert_eq!(netns("/proc/self/ns/net").unwrap().inode, own);
        assert_eq!(netns(&own.to_string()).unwrap().inode, own);
    }

    #[test]
    fn what_is_not_a_network_namespace_is_refused() {
        for (arg, needle) in [
            ("/proc/self/ns/uts", "is not a network namespace"),
            ("/etc/hostname", "is not a network namespace"),
            ("/nonexistent/ns", "'/nonexistent/ns' does not exist"),
            ("tcpstate-no-such-netns", "(/run/netns/tcpstate-no-such-netns) does not exist"),
            ("0", "no network namespace has inode 0"),
            ("99999999999", "no network namespace has inode"),
        ] {
            let err = netns(arg).unwrap_err();
            assert!(err.contains(needle), "{arg}: {err}");
        }
    }

    #[test]
    fn the_root_cgroup_is_id_1_at_level_0_and_what_is_not_a_cgroup_is_refused() {
        let Ok(mount) = crate::cgroup::cgroup2_mount() else { return };
        let root = cgroup(mount.to_str().unwrap()).unwrap();
        assert_eq!((root.id, root.level), (1, 0));
        for (arg, needle) in [("/nonexistent/cgroup", "no cgroup /nonexistent/cgroup"), ("/tmp", "is not a cgroup v2")]
        {
            let err = cgroup(arg).unwrap_err();
            assert!(err.contains(needle), "{arg}: {err}");
        }
    }
}
