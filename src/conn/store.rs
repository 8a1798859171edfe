//! Connections stored densely in a vector, with an index by id.
//!
//! A hash map of whole records would, when it grows, briefly hold its old and
//! new tables at once: the peak RSS of a storm that leaves tens of thousands
//! of connections in TIME_WAIT. A vector grows in place (large blocks are
//! mapped and remapped, see app.rs) and the index is small.

use rustc_hash::FxHashMap as HashMap;

use super::{shrink_if_sparse, Conn, ConnId};

/// How much of the vector's tail, once used and now empty, the store keeps
/// before it gives it back (about 1 400 connections).
const RELEASE_BYTES: usize = 256 << 10;

#[derive(Default)]
pub(super) struct Store {
    records: Vec<Conn>,
    /// Connection id -> position in `records`.
    index: HashMap<ConnId, u32>,
    /// The most connections held since the tail was last given back: the
    /// vector's memory up to there is resident.
    high_water: usize,
}

impl Store {
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    pub(super) fn get(&self, id: ConnId) -> Option<&Conn> {
        self.index.get(&id).map(|&i| &self.records[i as usize])
    }

    pub(super) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.index.get(&id).map(|&i| &mut self.records[i as usize])
    }

    /// Where connection `id` is, until the store next changes: the hot path
    /// looks a connection up once per event.
    pub(super) fn slot(&self, id: ConnId) -> Option<usize> {
        self.index.get(&id).map(|&i| i as usize)
    }

    pub(super) fn at(&mut self, slot: usize) -> &mut Conn {
        &mut self.records[slot]
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Conn> {
        self.records.iter()
    }

    /// Adds a connection whose id is not in the store; returns its slot.
    pub(super) fn insert(&mut self, conn: Conn) -> usize {
        debug_assert!(!self.index.contains_key(&conn.id));
        let i = self.records.len();
        self.index.insert(conn.id, i as u32);
        self.records.push(conn);
        self.high_water = self.high_water.max(self.records.len());
        i
    }

    /// Removes a connection; the last record takes its place.
    pub(super) fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let i = self.index.remove(&id)? as usize;
        let conn = self.records.swap_remove(i);
        if let Some(moved) = self.records.get(i) {
            if let Some(slot) = self.index.get_mut(&moved.id) {
                *slot = i as u32;
            }
        }
        self.release_tail();
        Some(conn)
    }

    /// Gives back the emptied tail of the vector once it is worth a
    /// system call. When a namespace goes, its tens of thousands of
    /// timewait connections end at once and their records queue for the
    /// outputs: without this the queue's memory came on top of the
    /// connections' for the peak RSS. A large vector is a mapping of its
    /// own (see app.rs), which shrinks in place.
    fn release_tail(&mut self) {
        let len = self.records.len();
        if (self.high_water - len) * std::mem::size_of::<Conn>() >= RELEASE_BYTES {
            self.records.shrink_to(len);
            self.high_water = len;
        }
    }

    /// The index, when sparse; the vector gives its tail back as
    /// connections end ([`Store::remove`]).
    pub(super) fn shrink_if_sparse(&mut self) {
        shrink_if_sparse(&mut self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::tests::state;
    use crate::model::TcpState;

    fn store_of(ids: std::ops::Range<u64>) -> Store {
        let mut store = Store::default();
        for id in ids {
            let ev = state(id, id, TcpState::CLOSE, TcpState::SYN_SENT);
            store.insert(Conn::new(id, &ev, TcpState::SYN_SENT));
        }
        store
    }

    /// When most connections end at once (a namespace's timewait sockets),
    /// the vector's emptied tail is given back as they go, not after; every
    /// connection left is still found by its id.
    #[test]
    fn an_emptied_tail_is_given_back_as_connections_end() {
        let per_release = RELEASE_BYTES / std::mem::size_of::<Conn>();
        let mut store = store_of(1..20_001);
        assert!(store.records.capacity() >= 20_000);
        // From the middle, as timewait deaths come: the last moves in.
        for id in (1..20_001).step_by(2).chain((2..16_001).step_by(2)) {
            assert_eq!(store.remove(id).map(|c| c.id), Some(id));
            // What was used and is empty now (resident) stays under a release.
            assert!(store.high_water - store.len() <= per_release);
            // Once given back, the vector is no larger than what was used.
            if store.high_water < 20_000 {
                assert_eq!(store.records.capacity(), store.high_water);
            }
        }
        assert_eq!(store.len(), 2_000);
        for id in (16_002..20_001).step_by(2) {
            assert_eq!(store.get(id).map(|c| c.id), Some(id));
        }
        // Growth after a release works as before.
        for id in 30_000..31_000 {
            let ev = state(id, id, TcpState::CLOSE, TcpState::SYN_SENT);
            store.insert(Conn::new(id, &ev, TcpState::SYN_SENT));
        }
        assert_eq!((store.len(), store.get(30_999).map(|c| c.id)), (3_000, Some(30_999)));
    }

    /// A store that only grows keeps its vector: nothing to give back.
    #[test]
    fn a_growing_store_gives_nothing_back() {
        let store = store_of(1..10_001);
        assert_eq!(store.high_water, 10_000);
        assert!(store.records.capacity() >= 10_000);
    }
}
