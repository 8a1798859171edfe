//! The bench's own cgroups v2: `storm`, which every storm runs in, and an
//! empty sibling `elsewhere`, under one parent made for this bench run and
//! removed with it.
//!
//! A socket belongs to the cgroup of the process that creates it (an
//! accepted one to its listener's), and loadgen makes every socket of a
//! storm, client and server threads alike, in one process. So a loadgen
//! that is in `storm` before it runs a line of its own (it is moved there
//! between fork and exec) makes only sockets of `storm`: the `--cgroup`
//! rows then know exactly what they should see. Every row's storm runs
//! there, so that all rows see the same conditions.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Where the bench's cgroups are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroups {
    /// `tcpstate-bench.PID` below the cgroup2 mount: holds no process.
    pub parent: PathBuf,
    /// Every storm's loadgen runs here.
    pub storm: PathBuf,
    /// A sibling of `storm` that holds nothing.
    pub elsewhere: PathBuf,
}

/// The bench's cgroups, removed when dropped (also after an error, or a
/// Ctrl-C that [`super::signals`] turned into one).
pub struct Guard(pub Cgroups);

/// How long a removal waits for the kernel to let go of a cgroup whose
/// last process was just reaped (rmdir answers EBUSY meanwhile).
const RMDIR_PATIENCE: Duration = Duration::from_secs(2);

impl Cgroups {
    /// Makes the parent and its two children below the cgroup2 mount. A
    /// parent of the same name left by an earlier bench of this pid that
    /// was killed is removed first, if it is empty (rmdir refuses a cgroup
    /// with processes or children).
    pub fn create() -> Result<Guard> {
        let mount = cgroup2_mount()?;
        let parent = mount.join(format!("tcpstate-bench.{}", std::process::id()));
        if parent.exists() {
            remove(&parent);
        }
        fs::create_dir(&parent).with_context(|| format!("creating the cgroup {}", parent.display()))?;
        let guard = Guard(Cgroups { storm: parent.join("storm"), elsewhere: parent.join("elsewhere"), parent });
        for dir in [&guard.0.storm, &guard.0.elsewhere] {
            fs::create_dir(dir).with_context(|| format!("creating the cgroup {}", dir.display()))?;
        }
        Ok(guard)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        remove(&self.0.parent);
    }
}

/// Removes a cgroup and the cgroups directly below it (a cgroup's files
/// go with its directory). Only says so when one stays behind.
fn remove(parent: &Path) {
    let children: Vec<PathBuf> = fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    for dir in children.iter().map(PathBuf::as_path).chain([parent]) {
        if let Err(e) = rmdir_patiently(dir) {
            eprintln!("bench: could not remove the cgroup {} ({e}): rmdir it once it is empty", dir.display());
        }
    }
}

fn rmdir_patiently(dir: &Path) -> io::Result<()> {
    let end = Instant::now() + RMDIR_PATIENCE;
    loop {
        match fs::remove_dir(dir) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < end => {
                thread::sleep(Duration::from_millis(10))
            }
            other => return other,
        }
    }
}

/// Makes `cmd`'s process join `cgroup` before it runs anything of its own:
/// between fork and exec it writes "0" (itself) to the cgroup's
/// cgroup.procs, opened here. If it cannot, the spawn fails with why.
pub fn spawn_in(cmd: &mut Command, cgroup: &Path) -> Result<()> {
    let procs = cgroup.join("cgroup.procs");
    let file: File = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&procs)
        .with_context(|| format!("opening {}", procs.display()))?;
    // SAFETY: the closure runs in the forked child before exec and only
    // calls write(2), which is async-signal-safe, on a descriptor the
    // closure owns (O_CLOEXEC: the program started does not inherit it).
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(file.as_raw_fd(), b"0".as_ptr().cast(), 1) == 1 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
    Ok(())
}

/// Where cgroup v2 is mounted (fstype `cgroup2` in /proc/self/mountinfo):
/// /sys/fs/cgroup on a pure v2 host, /sys/fs/cgroup/unified on a hybrid
/// one. The mount of the whole hierarchy where there are several.
pub fn cgroup2_mount() -> Result<PathBuf> {
    let table = fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    match cgroup2_mount_in(&table) {
        Some(point) => Ok(point),
        None => bail!("no cgroup v2 filesystem is mounted (none in /proc/self/mountinfo)"),
    }
}

/// The cgroup2 mount point of a mountinfo table (proc(5): `ID PARENT
/// MAJ:MIN ROOT POINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER_OPTIONS`),
/// preferring one whose root is the hierarchy's (`/`) to a bind mount of a
/// subtree.
fn cgroup2_mount_in(table: &str) -> Option<PathBuf> {
    let mounts: Vec<(&str, &str)> = table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            (dash >= 5 && fields.get(dash + 1) == Some(&"cgroup2")).then(|| (fields[3], fields[4]))
        })
        .collect();
    let (_, point) = mounts.iter().find(|(root, _)| *root == "/").or(mounts.first())?;
    Some(PathBuf::from(unescape(point)))
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_of_a_hybrid_or_pure_host() {
        let hybrid = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
42 30 0:39 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
";
        assert_eq!(cgroup2_mount_in(hybrid), Some("/sys/fs/cgroup/unified".into()));
        let pure = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup2_mount_in(pure), Some("/sys/fs/cgroup".into()));
        assert_eq!(cgroup2_mount_in("42 30 0:39 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"), None);
    }

    #[test]
    fn prefers_the_whole_hierarchy_to_a_bind_mounted_subtree_and_unescapes() {
        let table = "\
50 40 0:38 /kubepods /host/cg rw - cgroup2 cgroup2 rw
51 40 0:38 / /mnt/cgroup\\040v2 rw - cgroup2 cgroup2 rw
";
        assert_eq!(cgroup2_mount_in(table), Some("/mnt/cgroup v2".into()));
        assert_eq!(cgroup2_mount_in(&table[..table.find('\n').unwrap()]), Some("/host/cg".into()));
        assert_eq!(unescape("a\\134b\\011c\\9"), "a\\b\tc\\9");
    }

    /// Makes real cgroups where this runs as root on a cgroup v2 host, and
    /// checks that a spawned process lands in `storm` and everything goes
    /// with the guard; says why it checked nothing otherwise.
    #[test]
    fn a_spawned_process_runs_in_storm_and_the_cgroups_go_with_the_guard() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || cgroup2_mount().is_err() {
            eprintln!("skipped: needs root and a cgroup v2 mount");
            return;
        }
        let guard = Cgroups::create().unwrap();
        let cgroups = guard.0.clone();
        assert!(cgroups.storm.is_dir() && cgroups.elsewhere.is_dir());
        let mut cmd = Command::new("cat");
        cmd.arg("/proc/self/cgroup");
        spawn_in(&mut cmd, &cgroups.storm).unwrap();
        let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
        let mount = cgroup2_mount().unwrap();
        let want = format!("0::/{}", cgroups.storm.strip_prefix(&mount).unwrap().display());
        assert!(out.lines().any(|l| l == want), "{out}");
        assert_eq!(fs::read_to_string(cgroups.elsewhere.join("cgroup.procs")).unwrap(), "");
        drop(guard);
        assert!(!cgroups.parent.exists());
    }
}
