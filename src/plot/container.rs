//! A socket's container as the picture needs it: small and `Copy`, like
//! the rest of a [`super::PlotEvent`], which grouping copies freely.
//!
//! The picture names a container by the first 12 characters of its id, as
//! `docker ps` and the table's CONTAINER column do, so that is all a tag
//! keeps of the id, with a hash of the whole id that keeps apart containers
//! whose ids share those characters (nspawn and LXC names such as
//! `build-runner-1` and `build-runner-2`) and lets `--container` take a
//! whole id.

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::cgroup::{short_id, Container, Runtime, SHORT_ID};

/// A container, told apart by its whole id, shown by its first
/// [`SHORT_ID`] characters (fewer for letters beyond ASCII: it keeps at most
/// that many bytes; control characters, which SVG cannot hold, left out)
/// and the runtime, when the trace names one this build knows.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContainerTag {
    short: [u8; SHORT_ID],
    short_len: u8,
    whole: u64,
    runtime: Option<Runtime>,
}

impl ContainerTag {
    /// `None` for an empty id: no container.
    pub fn new(id: &str, runtime: Option<Runtime>) -> Option<ContainerTag> {
        if id.is_empty() {
            return None;
        }
        let shown: String = id.chars().filter(|c| !c.is_control()).take(SHORT_ID).collect();
        let cut = short_id(&shown).len();
        let mut short = [0; SHORT_ID];
        short[..cut].copy_from_slice(&shown.as_bytes()[..cut]);
        Some(ContainerTag { short, short_len: cut as u8, whole: whole_hash(id), runtime })
    }

    /// The tag of a container as the tracer found it.
    pub fn of(c: &Container) -> Option<ContainerTag> {
        ContainerTag::new(&c.id, Some(c.runtime))
    }

    /// The id's first [`SHORT_ID`] characters: the id itself if no longer.
    pub fn short_id(&self) -> &str {
        std::str::from_utf8(&self.short[..usize::from(self.short_len)]).unwrap_or_default()
    }

    pub fn runtime(&self) -> Option<Runtime> {
        self.runtime
    }

    /// `id` names this container: it starts its id and is no longer than
    /// [`SHORT_ID`] (`docker ps`' form, or any shorter prefix), or it is
    /// the whole id.
    pub fn matches(&self, id: &str) -> bool {
        if id.len() <= SHORT_ID {
            self.short_id().starts_with(id)
        } else {
            whole_hash(id) == self.whole
        }
    }
}

/// `containers` without repeats, in order of first appearance.
pub fn first_seen(containers: impl IntoIterator<Item = ContainerTag>) -> Vec<ContainerTag> {
    let mut seen = Vec::new();
    for c in containers {
        if !seen.contains(&c) {
            seen.push(c);
        }
    }
    seen
}

fn whole_hash(id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// `0123456789ab (docker)`: the short id and, when known, the runtime.
impl fmt::Display for ContainerTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_id())?;
        match self.runtime {
            Some(r) => write!(f, " ({})", r.as_str()),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for ContainerTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContainerTag({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_tag_shows_the_short_id_and_knows_the_whole_one() {
        let tag = ContainerTag::new(ID, Some(Runtime::Docker)).unwrap();
        assert_eq!(tag.short_id(), "0123456789ab");
        assert_eq!(tag.to_string(), "0123456789ab (docker)");
        for id in ["0", "0123", "0123456789ab", ID] {
            assert!(tag.matches(id), "{id}");
        }
        // Longer than the short id, but not the whole id.
        for id in ["1", "0123456789abc", &ID[..63], "0123456789ab "] {
            assert!(!tag.matches(id), "{id}");
        }
        assert_eq!(ContainerTag::new("", None), None);
        assert_eq!(ContainerTag::new("web", None).unwrap().to_string(), "web");
    }

    #[test]
    fn names_that_share_the_short_id_are_told_apart() {
        let one = ContainerTag::new("build-runner-1", Some(Runtime::Lxc)).unwrap();
        let two = ContainerTag::new("build-runner-2", Some(Runtime::Lxc)).unwrap();
        assert_eq!(one.short_id(), two.short_id());
        assert_ne!(one, two);
        assert!(one.matches("build-runner-1") && !one.matches("build-runner-2"));
        assert!(one.matches("build") && two.matches("build"));
    }

    #[test]
    fn the_short_id_is_cut_at_a_character_boundary() {
        let tag = ContainerTag::new("ünïcödé-ñämé", None).unwrap();
        assert_eq!(tag.short_id(), "ünïcödé-");
        assert!(tag.matches("ünïcödé-ñämé") && tag.matches("ünï"));
        let tag = ContainerTag::new("a\0b\nc", None).unwrap();
        assert_eq!(tag.short_id(), "abc");
        assert!(tag.matches("ab"));
    }
}
