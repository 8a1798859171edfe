//! What `--cgroup` and `--netns` name, in the kernel side's terms: a cgroup
//! v2's id and depth, a network namespace's inode. Resolved while the
//! command line is parsed, so that a name that does not exist, or is not
//! what it should be, is a usage error (one line, exit 2) before anything
//! is loaded.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};

/// A cgroup v2 and everything below it (`--cgroup`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupScope {
    /// The directory, as given.
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

/// `--cgroup PATH`: a directory of the cgroup2 hierarchy.
pub fn cgroup(arg: &str) -> Result<CgroupScope, String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts = cgroup2_mounts(&mountinfo);
    let Some(first) = mounts.first() else {
        return Err("this system has no cgroup v2 (cgroup2) mount: mount one \
                    (mount -t cgroup2 none /sys/fs/cgroup) or trace without --cgroup"
            .into());
    };
    let below = format!("give a cgroup directory below {}", first.point.display());
    let dir = fs::canonicalize(arg).map_err(|e| format!("cgroup '{arg}' {}: {below}", why(&e)))?;
    let meta = fs::metadata(&dir).map_err(|e| format!("cgroup '{arg}' {}: {below}", why(&e)))?;
    if !meta.is_dir() || !statfs(&dir).is_ok_and(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC) {
        return Err(format!("'{arg}' is not a directory of a cgroup v2 (cgroup2) filesystem: {below}"));
    }
    if !in_initial_cgroup_namespace() {
        return Err("--cgroup needs tcpstate in the initial cgroup namespace (its cgroups' depths are \
                    the kernel's): run it on the host, or in a container with the host's cgroup namespace"
            .into());
    }
    let mount = mounts
        .iter()
        .filter(|m| dir.starts_with(&m.point))
        .max_by_key(|m| m.point.components().count())
        .ok_or_else(|| format!("'{arg}' is on no cgroup2 mount listed in /proc/self/mountinfo: {below}"))?;
    let below_mount = dir.strip_prefix(&mount.point).expect("filtered on the prefix");
    let level = depth(&mount.root) + depth(below_mount);
    Ok(CgroupScope { path: arg.into(), id: meta.ino(), level })
}

/// A cgroup2 mount: where it is, and which cgroup is its root (mountinfo's
/// 4th field, `/` unless a subtree was mounted or bound there).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cgroup2Mount {
    point: PathBuf,
    root: PathBuf,
}

/// The cgroup2 mounts in a mountinfo text, in its order.
fn cgroup2_mounts(mountinfo: &str) -> Vec<Cgroup2Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            if fs.split_whitespace().next()? != "cgroup2" {
                return None;
            }
            let fields: Vec<&str> = mount.split_whitespace().collect();
            Some(Cgroup2Mount { root: unescape(fields.get(3)?).into(), point: unescape(fields.get(4)?).into() })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Why a path could not be used, in a few words.
fn why(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".into(),
        std::io::ErrorKind::PermissionDenied => "cannot be opened: permission denied".into(),
        _ => format!("cannot be opened: {e}"),
    }
}

/// How many directories deep a path is.
fn depth(path: &Path) -> u32 {
    path.components().filter(|c| matches!(c, Component::Normal(_))).count() as u32
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
    mountinfo.lines().filter_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        (fs.split_whitespace().next()? == "nsfs").then(|| mount.split_whitespace().nth(3)).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
77 41 0:38 /a/b /srv/with\\040space rw,relatime - cgroup2 cgroup2 rw
90 25 0:4 net:[4026532177] /run/netns/blue rw - nsfs nsfs rw
";

    #[test]
    fn finds_the_cgroup2_mounts_and_their_roots() {
        let mounts = cgroup2_mounts(HYBRID);
        assert_eq!(
            mounts,
            [
                Cgroup2Mount { point: "/sys/fs/cgroup/unified".into(), root: "/".into() },
                Cgroup2Mount { point: "/srv/with space".into(), root: "/a/b".into() },
            ]
        );
        assert_eq!(depth(&mounts[1].root) + depth(Path::new("c")), 3);
        assert_eq!(depth(Path::new("/")), 0);
    }

    #[test]
    fn finds_namespaces_bound_to_files() {
        assert_eq!(nsfs_roots(HYBRID).collect::<Vec<_>>(), ["net:[4026532177]"]);
    }

    #[test]
    fn unescapes_mountinfo_octals() {
        assert_eq!(unescape("a\\040b\\011c\\134d"), "a b\tc\\d");
        assert_eq!(unescape("trailing\\"), "trailing\\");
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
    fn what_is_not_a_cgroup2_directory_is_refused() {
        if cgroup2_mounts(&fs::read_to_string("/proc/self/mountinfo").unwrap()).is_empty() {
            return;
        }
        for (arg, needle) in [("/nonexistent/cgroup", "does not exist"), ("/tmp", "is not a directory of a cgroup v2")]
        {
            let err = cgroup(arg).unwrap_err();
            assert!(err.contains(needle), "{arg}: {err}");
        }
    }

    #[test]
    fn the_root_cgroup_is_id_1_at_level_0() {
        let Some(mount) = cgroup2_mounts(&fs::read_to_string("/proc/self/mountinfo").unwrap()).into_iter().next()
        else {
            return;
        };
        let root = cgroup(mount.point.to_str().unwrap()).unwrap();
        assert_eq!((root.id, root.level), (1, depth(&mount.root)));
    }
}
