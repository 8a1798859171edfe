//! A map by cgroup id that holds a fixed number of entries at most and
//! forgets the oldest first.
//!
//! First in, first out rather than least recently used: an entry forgotten
//! too early costs one more lookup (a system call, or a hash lookup in the
//! last walk), which is less than keeping a recency order on every hit.

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

pub(super) struct Bounded<V> {
    map: HashMap<u64, V>,
    /// Keys, oldest first.
    order: VecDeque<u64>,
    capacity: usize,
}

impl<V> Bounded<V> {
    pub(super) fn new(capacity: usize) -> Self {
        Bounded { map: HashMap::default(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    pub(super) fn get(&self, key: u64) -> Option<&V> {
        self.map.get(&key)
    }

    /// Inserts or replaces; a new key past the capacity forgets the oldest.
    pub(super) fn insert(&mut self, key: u64, value: V) {
        if self.map.insert(key, value).is_some() {
            return;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.map.remove(&oldest);
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_goes_first() {
        let mut b = Bounded::new(2);
        b.insert(1, "a");
        b.insert(2, "b");
        b.insert(1, "A");
        assert_eq!((b.len(), b.get(1)), (2, Some(&"A")), "a replaced key keeps its place");
        b.insert(3, "c");
        assert_eq!((b.len(), b.get(1), b.get(2), b.get(3)), (2, None, Some(&"b"), Some(&"c")));
    }
}
