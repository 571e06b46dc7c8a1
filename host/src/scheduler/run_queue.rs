//! A guest's run queue: a FIFO of record keys, in blocks, so that it grows
//! without a pause.
//!
//! A `VecDeque` grows by copying all it holds into one larger buffer: with
//! two million green threads one growth took 12 ms of the hub (the copy and
//! the page faults of the fresh buffer), and every other guest waited for
//! it. This queue is a deque of fixed blocks of [`BLOCK`] keys: growing adds
//! a block, and the deque of blocks that may double holds a pointer per
//! block, a 1024th of the keys.
//!
//! ```text
//!   blocks: [ block 0 ][ block 1 ] ... [ block n ]
//!              ▲ head                     ▲ head + len (in blocks of BLOCK)
//! ```
//!
//! One emptied block is kept for the next growth, so a queue that fills and
//! drains around a block boundary does not allocate each time.

use std::collections::VecDeque;

/// Keys a block holds.
const BLOCK: usize = 1024;

type Block = Box<[u32; BLOCK]>;

/// A FIFO of record keys (below `u32::MAX`) that may also be pushed at the
/// front.
#[derive(Default)]
pub(crate) struct RunQueue {
    blocks: VecDeque<Block>,
    /// Index in the first block of the first key.
    head: usize,
    len: usize,
    spare: Option<Block>,
}

impl RunQueue {
    fn new_block(&mut self) -> Block {
        self.spare.take().unwrap_or_else(|| Box::new([0; BLOCK]))
    }

    fn key(key: usize) -> u32 {
        u32::try_from(key).expect("record keys fit in a u32")
    }

    /// Queues `key` last.
    ///
    /// # Panics
    /// If `key` does not fit in a `u32` (see `ThreadIds::insert`).
    pub fn push_back(&mut self, key: usize) {
        let at = self.head + self.len;
        if at == self.blocks.len() * BLOCK {
            let block = self.new_block();
            self.blocks.push_back(block);
        }
        self.blocks[at / BLOCK][at % BLOCK] = Self::key(key);
        self.len += 1;
    }

    /// Queues `key` first.
    ///
    /// # Panics
    /// As [`RunQueue::push_back`].
    pub fn push_front(&mut self, key: usize) {
        if self.head == 0 {
            let block = self.new_block();
            self.blocks.push_front(block);
            self.head = BLOCK;
        }
        self.head -= 1;
        self.blocks[0][self.head] = Self::key(key);
        self.len += 1;
    }

    /// Takes the first key.
    pub fn pop_front(&mut self) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let key = self.blocks[0][self.head];
        self.head += 1;
        self.len -= 1;
        if self.head == BLOCK || self.len == 0 {
            // Empty now: a block ends, or the queue does (start the next
            // key at a block's start again).
            if self.head == BLOCK || self.blocks.len() == 1 {
                if let Some(block) = self.blocks.pop_front() {
                    self.spare = Some(block);
                }
            }
            self.head = 0;
        }
        Some(key as usize)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The keys, first to last.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (self.head..self.head + self.len).map(|at| self.blocks[at / BLOCK][at % BLOCK] as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Back(usize),
        Front(usize),
        Pop,
        /// Pops this many at once (to cross block boundaries).
        Drain(usize),
        /// Pushes this many at the back.
        Fill(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..100_000).prop_map(Op::Back),
            (0usize..100_000).prop_map(Op::Front),
            Just(Op::Pop),
            (0usize..3000).prop_map(Op::Drain),
            (0usize..3000).prop_map(Op::Fill),
        ]
    }

    proptest! {
        /// Behaves as a `VecDeque`, and holds no more than two blocks past
        /// what its keys need.
        #[test]
        fn it_is_a_fifo_that_can_be_pushed_at_the_front(ops in prop::collection::vec(op(), 0..200)) {
            let mut queue = RunQueue::default();
            let mut model = VecDeque::new();
            for op in ops {
                match op {
                    Op::Back(k) => { queue.push_back(k); model.push_back(k); }
                    Op::Front(k) => { queue.push_front(k); model.push_front(k); }
                    Op::Pop => prop_assert_eq!(queue.pop_front(), model.pop_front()),
                    Op::Drain(n) => for _ in 0..n {
                        prop_assert_eq!(queue.pop_front(), model.pop_front());
                    },
                    Op::Fill(n) => for k in 0..n { queue.push_back(k); model.push_back(k); },
                }
                prop_assert_eq!(queue.len(), model.len());
                prop_assert_eq!(queue.is_empty(), model.is_empty());
                prop_assert!(queue.iter().eq(model.iter().copied()));
                prop_assert!(queue.blocks.len() <= model.len().div_ceil(BLOCK) + 2);
            }
        }
    }
}
