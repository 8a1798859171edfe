//! Cgroup ids and paths on this machine's cgroup v2 mount: made cgroups
//! resolve to the paths /proc/PID/cgroup shows for a process moved into
//! them, by handle and by walk; `--cgroup PATH`'s id and level; its errors.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tcpstate::cgroup::{self, CgroupPaths, Options, Runtime};

const ID: &str = "9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d";

/// Cgroups made for one test under the cgroup2 mount, and a process in one
/// of them; the process is killed and the cgroups removed (deepest first)
/// on drop, whether the test passed or not.
struct Made {
    mount: PathBuf,
    /// Relative to the mount, parents first.
    dirs: Vec<String>,
    sleeper: Option<Child>,
}

impl Made {
    fn new() -> Made {
        Made { mount: cgroup::cgroup2_mount().unwrap(), dirs: Vec::new(), sleeper: None }
    }

    /// Makes `rel` (relative to the mount) and returns its id.
    fn mkdir(&mut self, rel: &str) -> u64 {
        let dir = self.abs(rel);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        self.dirs.push(rel.to_string());
        fs::metadata(&dir).unwrap().ino()
    }

    fn abs(&self, rel: &str) -> PathBuf {
        self.mount.join(rel.trim_start_matches('/'))
    }

    /// Starts a process in cgroup `rel` and returns the cgroup path its
    /// /proc/PID/cgroup shows.
    fn enter(&mut self, rel: &str) -> String {
        let child = Command::new("sleep").arg("60").stdin(Stdio::null()).spawn().unwrap();
        let pid = child.id();
        self.sleeper = Some(child);
        fs::write(self.abs(rel).join("cgroup.procs"), pid.to_string()).unwrap();
        let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        cgroups.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup v2 line").to_string()
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        if let Some(mut child) = self.sleeper.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for rel in self.dirs.iter().rev() {
            let _ = fs::remove_dir(self.abs(rel));
        }
    }
}

/// The cgroup v2 mount, if there is one; CI machines must have one,
/// elsewhere the test says why it did nothing.
fn cgroup2_mount() -> Option<PathBuf> {
    let mount = cgroup::cgroup2_mount();
    if let Err(e) = &mount {
        assert!(std::env::var_os("CI").is_none(), "CI machines have cgroup v2: {e:#}");
        eprintln!("skipped: {e:#}");
    }
    mount.ok()
}

#[test]
fn made_cgroups_resolve_to_their_paths() {
    if !common::require_root() {
        return;
    }
    let mut made = Made::new();
    let top = format!("/tcpstate-test-{}", std::process::id());
    let inner = format!("{top}/inner");
    let docker = format!("{top}/docker-{ID}.scope");
    let gone = format!("{top}/gone");
    let top_id = made.mkdir(&top);
    let inner_id = made.mkdir(&inner);
    let docker_id = made.mkdir(&docker);
    let gone_id = made.mkdir(&gone);
    fs::remove_dir(made.abs(&gone)).unwrap();

    let shown = made.enter(&inner);
    assert!(shown.ends_with(&inner), "the process is in {shown}");
    let level = Path::new(&shown).components().count() as u32 - 1;

    // --cgroup PATH: the directory itself, or relative to the mount.
    assert_eq!(cgroup::id_and_level(&made.abs(&inner)).unwrap(), (inner_id, level));
    assert_eq!(cgroup::id_and_level(Path::new(&inner)).unwrap(), (inner_id, level));
    assert_eq!(cgroup::id_and_level(Path::new(inner.trim_start_matches('/'))).unwrap(), (inner_id, level));
    assert_eq!(cgroup::id_and_level(Path::new(&top)).unwrap(), (top_id, level - 1));
    assert_eq!(cgroup::id_and_level(Path::new("/")).unwrap().1, level - 2, "/ is the cgroup root");

    for handles in [true, false] {
        let mut paths = CgroupPaths::at(made.mount.clone(), Options { handles, ..Options::default() }).unwrap();
        let resolved = paths.resolve(inner_id).unwrap();
        assert_eq!((&*resolved.path, &resolved.container), (shown.as_str(), &None), "handles {handles}");
        assert_eq!(&*paths.resolve(top_id).unwrap().path, top);
        let container = paths.resolve(docker_id).unwrap().container.clone().unwrap();
        assert_eq!((container.runtime, container.id.as_str()), (Runtime::Docker, ID));
        assert_eq!((paths.len(), paths.unresolved()), (3, 0));

        assert!(paths.resolve(gone_id).is_none(), "a removed cgroup");
        assert!(paths.resolve(u64::MAX - 7).is_none(), "an id no cgroup ever had");
        assert_eq!((paths.len(), paths.unresolved()), (3, 2));
        assert_eq!(paths.uses_handles(), handles, "root may open cgroups by handle");
    }
}

#[test]
fn cgroup_paths_that_are_none_say_so() {
    let Some(mount) = cgroup2_mount() else { return };
    let missing = format!("/tcpstate-no-such-cgroup-{}", std::process::id());
    let err = cgroup::id_and_level(Path::new(&missing)).unwrap_err().to_string();
    assert!(err.starts_with(&format!("no cgroup {missing}: neither {missing} nor ")), "{err}");

    // An existing directory elsewhere is no cgroup, and not below the mount either.
    let elsewhere = std::env::temp_dir().join(format!("tcpstate-not-a-cgroup-{}", std::process::id()));
    fs::create_dir_all(&elsewhere).unwrap();
    let err = cgroup::id_and_level(&elsewhere).unwrap_err().to_string();
    let _ = fs::remove_dir(&elsewhere);
    let want =
        format!("{} is not a cgroup v2 directory (cgroup v2 is mounted at {}", elsewhere.display(), mount.display());
    assert!(err.starts_with(&want), "{err}");

    let err = cgroup::id_and_level(&mount.join("cgroup.procs")).unwrap_err().to_string();
    assert!(err.contains("is not a cgroup v2 directory"), "a cgroup's file is no cgroup: {err}");
}

/// Without root (CAP_DAC_READ_SEARCH) the kernel refuses handles: the
/// tree is walked instead, as after `--user`.
#[test]
fn the_root_cgroup_resolves_with_or_without_root() {
    let Some(mount) = cgroup2_mount() else { return };
    let mut paths = CgroupPaths::at(mount, Options::default()).unwrap();
    let root = fs::metadata(paths.mount()).unwrap().ino();
    assert_eq!(paths.resolve(root).map(|c| c.path.to_string()).as_deref(), Some("/"));
    assert_eq!(paths.uses_handles(), nix::unistd::geteuid().is_root());
}
