//! Typed keys: which guest of the hub, and which green thread of that guest,
//! so that one can never be passed for the other.
//!
//! A [`GuestKey`] is the guest's place among the hub's guests (its public
//! `GuestId` carries the same number); a [`ThreadKey`] is a green thread's
//! place among its guest's live records, reused once it ends, unlike its
//! [`ThreadId`](crate::abi::ThreadId) (a spawn number, never reused), which
//! is what guests see.

use std::fmt;
use std::ops::{Index, IndexMut};

use slab::Slab;

/// A guest's key in its hub.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct GuestKey(pub(crate) usize);

/// A live green thread's key within its guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ThreadKey(pub(crate) usize);

impl fmt::Display for GuestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "guest {}", self.0)
    }
}

/// A guest's records, wherever they are kept by guest key.
impl<T> Index<GuestKey> for Vec<T> {
    type Output = T;
    fn index(&self, key: GuestKey) -> &T {
        &self[key.0]
    }
}

impl<T> IndexMut<GuestKey> for Vec<T> {
    fn index_mut(&mut self, key: GuestKey) -> &mut T {
        &mut self[key.0]
    }
}

/// A guest's green threads, kept by thread key.
impl<T> Index<ThreadKey> for Slab<T> {
    type Output = T;
    fn index(&self, key: ThreadKey) -> &T {
        &self[key.0]
    }
}

impl<T> IndexMut<ThreadKey> for Slab<T> {
    fn index_mut(&mut self, key: ThreadKey) -> &mut T {
        &mut self[key.0]
    }
}
