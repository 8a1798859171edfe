//! Where cgroup v2 is mounted, and a cgroup directory's id and level, for
//! `--cgroup PATH`.
//!
//! Hosts differ: a pure cgroup v2 host mounts it at /sys/fs/cgroup, a
//! hybrid one at /sys/fs/cgroup/unified beside the v1 controllers, and
//! anyone may mount it elsewhere, so the mount table is asked, never a
//! fixed path.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};

use super::unescape;

/// One cgroup2 mount of /proc/self/mountinfo.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    /// Where it is mounted.
    point: PathBuf,
    /// Which cgroup of the hierarchy is its root (`/` but for bind mounts
    /// of a subtree).
    root: PathBuf,
}

/// Where cgroup v2 is mounted: the mount of the whole hierarchy where
/// there are several.
pub fn cgroup2_mount() -> Result<PathBuf> {
    let mounts = mounts()?;
    Ok(preferred(&mounts).point.clone())
}

/// The id (the directory's inode number, which on cgroup v2 is the
/// cgroup's kernfs id: what the kernel reports for a socket) and level
/// (depth below the hierarchy's root, which is level 0) of the cgroup at
/// `path`.
///
/// `path` is a cgroup directory if it is one (`/sys/fs/cgroup/unified/foo`),
/// otherwise taken relative to where cgroup v2 is mounted (`/foo`, as
/// `/proc/PID/cgroup` writes it, or `foo`): an existing directory outside
/// cgroup v2 never wins, so `/` is the root cgroup.
pub fn id_and_level(path: &Path) -> Result<(u64, u32)> {
    let mounts = mounts()?;
    let mount = &preferred(&mounts).point;
    let dir = locate(path, mount)?;
    let on = mounts
        .iter()
        .filter(|m| dir.starts_with(&m.point))
        .max_by_key(|m| m.point.components().count())
        .with_context(|| format!("{} is on no cgroup2 mount of /proc/self/mountinfo", dir.display()))?;
    let below = dir.strip_prefix(&on.point).map_or(0, depth);
    let level = u32::try_from(depth(&on.root) + below).context("cgroup level")?;
    let id = fs::metadata(&dir).with_context(|| format!("cgroup {}", dir.display()))?.ino();
    Ok((id, level))
}

/// The cgroup directory `path` names (see [`id_and_level`]), canonical.
fn locate(path: &Path, mount: &Path) -> Result<PathBuf> {
    let inside = mount.join(path.strip_prefix("/").unwrap_or(path));
    for candidate in [path, &inside] {
        if is_cgroup2_dir(candidate) {
            return fs::canonicalize(candidate).with_context(|| format!("cgroup {}", candidate.display()));
        }
    }
    let exists = path.exists();
    let (path, mount) = (path.display(), mount.display());
    if exists {
        bail!(
            "{path} is not a cgroup v2 directory (cgroup v2 is mounted at {mount}): give a directory below {mount}, \
             or a path relative to it as the 0:: line of /proc/PID/cgroup shows it"
        );
    }
    bail!(
        "no cgroup {path}: neither {path} nor {} exists (a process's cgroup is the 0:: line of /proc/PID/cgroup)",
        inside.display()
    )
}

/// A directory on a cgroup2 filesystem (its files, cgroup.procs and the
/// like, are not cgroups).
fn is_cgroup2_dir(path: &Path) -> bool {
    path.is_dir() && statfs(path).is_ok_and(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC)
}

/// How many directories down `path` is.
fn depth(path: &Path) -> usize {
    path.components().filter(|c| matches!(c, Component::Normal(_))).count()
}

/// This process's cgroup2 mounts; an error if there is none.
fn mounts() -> Result<Vec<Mount>> {
    let table = fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mounts = parse_mountinfo(&table);
    if mounts.is_empty() {
        bail!(
            "no cgroup v2 filesystem is mounted (/proc/self/mountinfo lists none): \
             mount one, e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`"
        );
    }
    Ok(mounts)
}

/// The mount of the whole hierarchy if there is one, else the first.
/// `mounts` is not empty.
fn preferred(mounts: &[Mount]) -> &Mount {
    mounts.iter().find(|m| m.root == Path::new("/")).unwrap_or(&mounts[0])
}

/// The cgroup2 mounts of a mountinfo table.
fn parse_mountinfo(table: &str) -> Vec<Mount> {
    mounts_of(table, "cgroup2")
        .map(|(root, point)| Mount { point: unescape_field(point).into(), root: unescape_field(root).into() })
        .collect()
}

/// The mounts of filesystem type `fstype` in a mountinfo table (proc(5):
/// `ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE
/// SUPER_OPTIONS`): each one's ROOT and POINT, as the table writes them
/// (`\040`-style escapes kept).
pub(crate) fn mounts_of<'a>(table: &'a str, fstype: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
    table.lines().filter_map(move |line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let dash = fields.iter().position(|f| *f == "-")?;
        (fields.get(dash + 1) == Some(&fstype) && dash >= 5).then(|| (fields[3], fields[4]))
    })
}

/// A mountinfo field with its `\040`-style escapes (space, tab, newline,
/// backslash) undone.
fn unescape_field(field: &str) -> String {
    unescape(field, "\\", 3, 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hybrid host's table: v1 controllers, the v2 hierarchy at
    /// /sys/fs/cgroup/unified, and a bind mount of one of its subtrees at
    /// a path with a space.
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 - cgroup cgroup rw,name=systemd
77 23 0:38 /system.slice /run/my\\040cgroups rw,relatime shared:12 - cgroup2 cgroup2 rw
41 31 0:38 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn the_whole_hierarchy_is_preferred() {
        let mounts = parse_mountinfo(HYBRID);
        assert_eq!(
            mounts,
            [
                Mount { point: "/run/my cgroups".into(), root: "/system.slice".into() },
                Mount { point: "/sys/fs/cgroup/unified".into(), root: "/".into() },
            ]
        );
        assert_eq!(preferred(&mounts).point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(preferred(&mounts[..1]).point, Path::new("/run/my cgroups"));
        assert!(parse_mountinfo("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\ngarbage\n").is_empty());
    }

    #[test]
    fn depth_counts_directories() {
        assert_eq!(depth(Path::new("/")), 0);
        assert_eq!(depth(Path::new("")), 0);
        assert_eq!(depth(Path::new("/system.slice/nginx.service")), 2);
    }
}
