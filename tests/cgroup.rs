//! `--cgroup PATH` on this machine's cgroup v2 mount: the errors that
//! name what is wrong.

use std::fs;
use std::path::{Path, PathBuf};

use tcpstate::cgroup;

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
