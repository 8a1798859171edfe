//! Connections stored densely in a vector, with an index by id.
//!
//! A hash map of whole records would, when it grows, briefly hold its old and
//! new tables at once: the peak RSS of a storm that leaves tens of thousands
//! of connections in TIME_WAIT. A vector grows in place (large blocks are
//! mapped and remapped, see app.rs) and the index is small.

use rustc_hash::FxHashMap as HashMap;

use super::{shrink_if_sparse, Conn, ConnId};

#[derive(Default)]
pub(super) struct Store {
    records: Vec<Conn>,
    /// Connection id -> position in `records`.
    index: HashMap<ConnId, u32>,
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
        Some(conn)
    }

    pub(super) fn shrink_if_sparse(&mut self) {
        shrink_if_sparse(&mut self.index);
        if self.records.capacity() > super::SPARSE_MIN && self.records.len() * 4 < self.records.capacity() {
            self.records.shrink_to(self.records.len() * 2);
        }
    }
}
