//! A guest's map from green-thread ids to record keys, which grows without
//! a pause.
//!
//! A hash map from id to key doubles by rehashing every entry at once: with
//! two million green threads spawned (`spawn_after` an hour away, say) one
//! spawn took 53 ms, and every other guest of the hub waited for it. Ids are
//! handed out in rising order, so they fall in runs: this map keeps a page
//! of [`PAGE`] keys for each run of ids with one alive, and hashes pages,
//! not ids. A rehash then moves a 64th of the entries (a millisecond at four
//! million green threads), and a dense run costs 4 bytes an id, not 16.
//!
//! ```text
//!   pages: FxHashMap<id / 64, Box<Page>>
//!   Page { keys: [u32; 64], used }     keys[id % 64] = record key, or EMPTY
//! ```
//!
//! The worst case is one live id per page (a page of 264 bytes for it);
//! the host charges each green thread far more than that.

use rustc_hash::FxHashMap;

use crate::abi::ThreadId;

/// Ids a page holds: a power of two.
pub(crate) const PAGE: usize = 64;

/// An empty slot.
const EMPTY: u32 = u32::MAX;

struct Page {
    keys: [u32; PAGE],
    /// Slots not [`EMPTY`].
    used: u32,
}

/// Green-thread id -> record key (keys below `u32::MAX`).
#[derive(Default)]
pub(crate) struct ThreadIds {
    pages: FxHashMap<u64, Box<Page>>,
}

fn split(id: ThreadId) -> (u64, usize) {
    (id / PAGE as u64, (id % PAGE as u64) as usize)
}

impl ThreadIds {
    /// Maps `id` to `key`; returns the key it had.
    ///
    /// # Panics
    /// If `key` is `u32::MAX` or more (a scheduler never holds that many
    /// green threads: `Config::max_green_threads` is a `u32`).
    pub fn insert(&mut self, id: ThreadId, key: usize) -> Option<usize> {
        let key = u32::try_from(key)
            .ok()
            .filter(|&k| k != EMPTY)
            .expect("record keys fit in a u32");
        let (page, slot) = split(id);
        let page = self.pages.entry(page).or_insert_with(|| {
            Box::new(Page {
                keys: [EMPTY; PAGE],
                used: 0,
            })
        });
        let old = std::mem::replace(&mut page.keys[slot], key);
        if old == EMPTY {
            page.used += 1;
            None
        } else {
            Some(old as usize)
        }
    }

    /// The key of `id`, if it is mapped.
    #[inline]
    pub fn get(&self, id: ThreadId) -> Option<usize> {
        let (page, slot) = split(id);
        let key = self.pages.get(&page)?.keys[slot];
        (key != EMPTY).then_some(key as usize)
    }

    /// Unmaps `id`; returns its key. A page whose last id goes is freed.
    pub fn remove(&mut self, id: ThreadId) -> Option<usize> {
        let (number, slot) = split(id);
        let page = self.pages.get_mut(&number)?;
        let key = std::mem::replace(&mut page.keys[slot], EMPTY);
        if key == EMPTY {
            return None;
        }
        page.used -= 1;
        if page.used == 0 {
            self.pages.remove(&number);
        }
        Some(key as usize)
    }

    /// Pages held (for tests of memory use).
    #[cfg(test)]
    fn pages(&self) -> usize {
        self.pages.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, usize),
        Remove(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Ids from a narrow range, so that inserts and removes meet.
        prop_oneof![
            (0u64..300, 0usize..1000).prop_map(|(i, k)| Op::Insert(i, k)),
            (0u64..300).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Behaves as a hash map, and holds a page only while an id in it
        /// is mapped.
        #[test]
        fn it_is_a_map_from_ids_to_keys(ops in prop::collection::vec(op(), 0..400)) {
            let mut ids = ThreadIds::default();
            let mut model = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(id, key) => {
                        prop_assert_eq!(ids.insert(id, key), model.insert(id, key));
                    }
                    Op::Remove(id) => prop_assert_eq!(ids.remove(id), model.remove(&id)),
                }
                for id in 0..300 {
                    prop_assert_eq!(ids.get(id), model.get(&id).copied());
                }
                let pages: std::collections::HashSet<_> =
                    model.keys().map(|id| id / PAGE as u64).collect();
                prop_assert_eq!(ids.pages(), pages.len());
            }
        }
    }

    #[test]
    fn a_dense_run_of_ids_takes_a_page_per_sixty_four() {
        let mut ids = ThreadIds::default();
        for id in 1..=6400u64 {
            ids.insert(id, id as usize);
        }
        assert_eq!(ids.pages(), 101);
        for id in 1..=6400u64 {
            assert_eq!(ids.remove(id), Some(id as usize));
        }
        assert_eq!(ids.pages(), 0);
        assert_eq!(ids.get(5), None);
    }
}
