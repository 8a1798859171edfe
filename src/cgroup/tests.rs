//! [`CgroupPaths`] walking a directory tree shaped like a cgroup tree: the
//! walk reads only names and inode numbers, so any filesystem will do and
//! no root is needed. tests/cgroup.rs does the same on cgroup v2, handles
//! included.

use std::fs;
use std::os::unix::fs::MetadataExt;

use super::*;

const ID: &str = "9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d";

/// A directory tree under the temporary directory, removed on drop.
struct Tree(PathBuf);

impl Tree {
    fn new(tag: &str, dirs: &[&str]) -> Tree {
        let root = std::env::temp_dir().join(format!("tcpstate-cgroup-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let tree = Tree(root);
        for dir in dirs {
            tree.mkdir(dir);
        }
        tree
    }

    fn mkdir(&self, dir: &str) -> u64 {
        fs::create_dir_all(self.path(dir)).unwrap();
        self.id(dir)
    }

    fn id(&self, dir: &str) -> u64 {
        fs::metadata(self.path(dir)).unwrap().ino()
    }

    fn path(&self, dir: &str) -> PathBuf {
        self.0.join(dir.trim_start_matches('/'))
    }

    fn paths(&self, options: Options) -> CgroupPaths {
        CgroupPaths::at(self.0.clone(), options).unwrap()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// An id no directory has.
const NOWHERE: u64 = u64::MAX - 7;

fn path_of(paths: &mut CgroupPaths, id: u64) -> Option<String> {
    paths.resolve(id).map(|c| c.path.to_string())
}

#[test]
fn ids_resolve_to_paths_and_containers() {
    let docker = format!("/system.slice/docker-{ID}.scope/init.scope");
    let tree = Tree::new("resolve", &["/system.slice/nginx.service", &docker]);
    let mut paths = tree.paths(Options::default());
    assert!(!paths.uses_handles(), "no handles off cgroup v2");

    assert_eq!(path_of(&mut paths, tree.id("/")).as_deref(), Some("/"));
    let nginx = paths.resolve(tree.id("/system.slice/nginx.service")).unwrap();
    assert_eq!((&*nginx.path, &nginx.container), ("/system.slice/nginx.service", &None));
    let init = paths.resolve(tree.id(&docker)).unwrap();
    assert_eq!(&*init.path, docker);
    assert_eq!(init.container, container_of(&docker));
    assert_eq!(init.container.as_ref().map(|c| c.runtime), Some(Runtime::Docker));
    assert_eq!((paths.len(), paths.unresolved(), paths.walks), (3, 0, 1), "one walk found them all");

    assert!(Arc::ptr_eq(&paths.resolve(init.id).unwrap(), &init), "the cache answers again");
    assert_eq!((paths.resolve(0), paths.unresolved()), (None, 0), "0 is the kernel's unknown, not a miss");
    assert_eq!((paths.resolve(NOWHERE), paths.unresolved()), (None, 1));
}

#[test]
fn new_cgroups_are_found_by_the_next_walk_when_it_is_due() {
    let tree = Tree::new("rescan", &["/a"]);
    let hour = Duration::from_secs(3600);
    let mut paths = tree.paths(Options { rescan_interval: hour, ..Options::default() });
    assert_eq!(path_of(&mut paths, tree.id("/a")).as_deref(), Some("/a"));

    let b = tree.mkdir("/a/b");
    assert_eq!(path_of(&mut paths, b), None, "no walk due yet");
    assert_eq!(path_of(&mut paths, b), None);
    assert_eq!((paths.walks, paths.unresolved()), (1, 2));

    paths.options.rescan_interval = Duration::ZERO;
    assert_eq!(path_of(&mut paths, b).as_deref(), Some("/a/b"));
    assert_eq!(paths.walks, 2);
}

#[test]
fn an_id_missing_from_a_later_walk_is_gone_for_good() {
    let tree = Tree::new("gone", &["/a"]);
    let mut paths = tree.paths(Options { rescan_interval: Duration::ZERO, ..Options::default() });
    assert_eq!(path_of(&mut paths, NOWHERE), None);
    assert_eq!(paths.missing.get(NOWHERE), Some(&Miss::Gone), "the walk after the first ask settles it");
    assert_eq!(path_of(&mut paths, NOWHERE), None);
    assert_eq!((paths.walks, paths.unresolved()), (1, 2), "no walk for an id known to be gone");

    // A cgroup removed after it was resolved keeps its path.
    let a = tree.id("/a");
    assert_eq!(path_of(&mut paths, a).as_deref(), Some("/a"));
    fs::remove_dir(tree.path("/a")).unwrap();
    assert_eq!(path_of(&mut paths, a).as_deref(), Some("/a"));
}

#[test]
fn a_walk_cut_short_settles_nothing() {
    let tree = Tree::new("limits", &["/a/b/c", "/d", "/e"]);
    let deep = tree.id("/a/b/c");
    let mut paths = tree.paths(Options { max_depth: 2, rescan_interval: Duration::ZERO, ..Options::default() });
    assert_eq!(path_of(&mut paths, tree.id("/a/b")).as_deref(), Some("/a/b"));
    assert_eq!(path_of(&mut paths, deep), None, "below max_depth");
    assert_eq!(paths.missing.get(deep), Some(&Miss::Since(1)), "still open: that walk did not see everything");

    let mut paths = tree.paths(Options { max_dirs: 3, rescan_interval: Duration::ZERO, ..Options::default() });
    assert_eq!(path_of(&mut paths, deep), None);
    assert!(!paths.walked_all);
    assert_eq!(paths.walked.len(), 3, "the root and two more");
}

#[test]
fn the_cache_is_bounded() {
    let tree = Tree::new("bounded", &["/a", "/b", "/c"]);
    let mut paths = tree.paths(Options { capacity: 2, ..Options::default() });
    for dir in ["/a", "/b", "/c"] {
        assert_eq!(path_of(&mut paths, tree.id(dir)).as_deref(), Some(dir));
    }
    assert_eq!(paths.len(), 2);
    assert_eq!(path_of(&mut paths, tree.id("/a")).as_deref(), Some("/a"), "forgotten, found again");
}

#[test]
fn escapes_are_undone() {
    let systemd = |s| unescape(s, "\\x", 2, 16);
    assert_eq!(systemd("my\\x2dbox"), "my-box");
    assert_eq!(systemd("a\\x5cb\\x2"), "a\\b\\x2");
    assert_eq!(systemd("\\xzz \\x+1 é"), "\\xzz \\x+1 é");
    let mountinfo = |s| unescape(s, "\\", 3, 8);
    assert_eq!(mountinfo("/a\\040b\\011c\\134d"), "/a b\tc\\d");
    assert_eq!(mountinfo("/a\\9 \\400"), "/a\\9 \\400");
    assert_eq!(mountinfo("\\"), "\\");
}
