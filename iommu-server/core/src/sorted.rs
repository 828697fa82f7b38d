//! A small ordered map kept as a vector sorted by key: the server's and
//! the engine's tables of clients. It iterates in key order, as the
//! `BTreeMap` it replaces did, and besides lookups by key it tells where
//! a key sits ([`SortedMap::position`], [`SortedMap::find`]), so that a
//! caller that found a client once reaches it again by that index
//! ([`SortedMap::at_mut`]) rather than by another search.
//!
//! It owns only that order. An index is a hint, never trusted: every
//! access by index checks the key found there, and answers `None` (the
//! caller then searches) when the map changed since. It never panics.

use alloc::vec::Vec;

/// An ordered map on a sorted vector (see the module documentation).
#[derive(Debug)]
pub struct SortedMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> SortedMap<K, V> {
    /// An empty map.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

/// The iterators' types are named (no `impl Trait`): an opaque iterator
/// could have drop glue, which would keep the map borrowed to the end of
/// the caller's scope.
type Iter<'a, K, V, T> = core::iter::Map<core::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> T>;
type IterMut<'a, K, V, T> =
    core::iter::Map<core::slice::IterMut<'a, (K, V)>, fn(&'a mut (K, V)) -> T>;

impl<K: Ord + Copy, V> SortedMap<K, V> {
    /// Where `k` sits, if present.
    #[inline]
    pub fn position(&self, k: &K) -> Option<usize> {
        self.entries.binary_search_by(|(e, _)| e.cmp(k)).ok()
    }

    /// The value of `k`, found at index `at` (from [`SortedMap::position`]
    /// or [`SortedMap::find`]), mutably; `None` if `k` is not there (the
    /// map changed since).
    #[inline]
    pub fn at_mut(&mut self, at: usize, k: &K) -> Option<&mut V> {
        match self.entries.get_mut(at) {
            Some((e, v)) if e == k => Some(v),
            _ => None,
        }
    }

    /// Where `k` sits and its value.
    #[inline]
    pub fn find(&self, k: &K) -> Option<(usize, &V)> {
        let at = self.position(k)?;
        self.entries.get(at).map(|(_, v)| (at, v))
    }

    /// The value of `k`.
    #[inline]
    pub fn get(&self, k: &K) -> Option<&V> {
        self.find(k).map(|(_, v)| v)
    }

    /// The value of `k`, mutably.
    #[inline]
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let at = self.position(k)?;
        self.entries.get_mut(at).map(|(_, v)| v)
    }

    /// Whether `k` is present.
    pub fn contains_key(&self, k: &K) -> bool {
        self.position(k).is_some()
    }

    /// Sets the value of `k`, returning the one it replaces.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.entries.binary_search_by(|(e, _)| e.cmp(&k)) {
            Ok(at) => self
                .entries
                .get_mut(at)
                .map(|(_, old)| core::mem::replace(old, v)),
            Err(at) => {
                self.entries.insert(at, (k, v));
                None
            }
        }
    }

    /// Removes `k`, returning its value.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        let at = self.position(k)?;
        Some(self.entries.remove(at).1)
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every (key, value), by key.
    pub fn iter(&self) -> Iter<'_, K, V, (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Every (key, value), by key, the values mutably.
    pub fn iter_mut(&mut self) -> IterMut<'_, K, V, (&K, &mut V)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    /// Every key, in order.
    pub fn keys(&self) -> Iter<'_, K, V, &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Every value, by key.
    pub fn values(&self) -> Iter<'_, K, V, &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Every value, by key, mutably.
    pub fn values_mut(&mut self) -> IterMut<'_, K, V, &mut V> {
        self.entries.iter_mut().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::SortedMap;
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    proptest! {
        /// Held to a `BTreeMap` through any sequence of inserts and
        /// removes: the same answers, the same order, and an index from
        /// `position` reaches its key until the map changes.
        #[test]
        fn behaves_as_btreemap(ops in proptest::collection::vec((any::<bool>(), 0u8..16, any::<u16>()), 0..64)) {
            let mut m = SortedMap::new();
            let mut b = BTreeMap::new();
            for (ins, k, v) in ops {
                if ins {
                    prop_assert_eq!(m.insert(k, v), b.insert(k, v));
                } else {
                    prop_assert_eq!(m.remove(&k), b.remove(&k));
                }
                prop_assert_eq!(m.len(), b.len());
                prop_assert_eq!(m.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
                    b.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
                for k in 0u8..16 {
                    prop_assert_eq!(m.get(&k), b.get(&k));
                    prop_assert_eq!(m.find(&k).map(|(_, v)| v), b.get(&k));
                    prop_assert_eq!(m.find(&k).map(|(at, _)| at), m.position(&k));
                    prop_assert_eq!(m.contains_key(&k), b.contains_key(&k));
                    match m.position(&k) {
                        Some(at) => prop_assert_eq!(m.at_mut(at, &k).copied(), b.get(&k).copied()),
                        None => prop_assert!(!b.contains_key(&k)),
                    }
                    for at in 0..m.len() + 1 {
                        let hit = m.at_mut(at, &k).copied();
                        prop_assert!(hit.is_none() || hit == b.get(&k).copied());
                    }
                }
            }
        }
    }
}
