//! Copy-on-write containers for the endpoint side of a snapshot: a new generation shares
//! everything a change did not touch with the previous one, so one Pod change costs in
//! proportion to the change, and a read is as cheap as a flat `Vec` or hash-map look-up plus one
//! pointer.
//!
//! - [`Slots`]: an index-stable vector of optional values in fixed-size chunks, each chunk
//!   behind an `Arc`. Writing to a slot copies one chunk (if another generation shares it) and
//!   the spine of chunk pointers; a read is two loads.
//! - [`ShardMap`]: a hash map split into a fixed number of shards by the top bits of the key's
//!   hash, each shard a `hashbrown::HashTable` behind an `Arc`. Writing copies one shard and the
//!   spine; a look-up hashes once, picks the shard and probes it, and may use a borrowed form of
//!   the key (`(&str, &str)` for `(Arc<str>, Arc<str>)`) as long as it hashes the same.
//!
//! Why not a persistent-collection crate (`imbl`, `rpds`): their trees and tries take 3–5
//! dependent loads per look-up, and a Check does up to four look-ups (two IPs, an endpoint, a
//! plan). Measured at 100,000 random keys on this machine: `imbl::HashMap` 84–145 ns and `rpds`
//! `HashTrieMap` 205–260 ns against 14–25 ns for a flat hash map; `imbl::Vector` 106–150 ns against
//! 10–20 ns for a `Vec`. Both would make the hot path slower, which issue #18 rules out; a
//! two-level copy-on-write layout costs one extra load and nothing else.

use std::{
    hash::{BuildHasher, Hash},
    sync::Arc,
};

/// Slots per chunk of a [`Slots`] (a power of two).
const CHUNK_SHIFT: u32 = 6;
const CHUNK: usize = 1 << CHUNK_SHIFT;

/// An index-stable vector of optional values, shared chunk by chunk between generations.
#[derive(Debug)]
pub struct Slots<T> {
    chunks: Vec<Arc<[Option<T>]>>,
    /// Slots in use or freed: one past the highest index ever set.
    len: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Clone for Slots<T> {
    /// Shares every chunk (one reference count per chunk).
    fn clone(&self) -> Self {
        Slots {
            chunks: self.chunks.clone(),
            len: self.len,
        }
    }
}

impl<T: Clone> Slots<T> {
    /// The value in slot `i`, if it holds one.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&T> {
        self.chunks
            .get(i >> CHUNK_SHIFT)?
            .get(i & (CHUNK - 1))?
            .as_ref()
    }

    /// One past the highest slot ever set (free slots included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no slot was ever set.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets slot `i` (growing the vector if needed), copying its chunk first if another
    /// generation shares it. Returns what the slot held.
    pub fn set(&mut self, i: usize, value: Option<T>) -> Option<T> {
        let c = i >> CHUNK_SHIFT;
        while self.chunks.len() <= c {
            self.chunks.push((0..CHUNK).map(|_| None).collect());
        }
        self.len = self.len.max(i + 1);
        let chunk = &mut self.chunks[c];
        if Arc::get_mut(chunk).is_none() {
            *chunk = chunk.iter().cloned().collect();
        }
        match Arc::get_mut(chunk) {
            Some(slots) => std::mem::replace(&mut slots[i & (CHUNK - 1)], value),
            // Unreachable: the chunk was just made unique.
            None => None,
        }
    }

    /// Appends a value; returns its slot.
    pub fn push(&mut self, value: T) -> usize {
        let i = self.len;
        self.set(i, Some(value));
        i
    }

    /// The values held, with their slots, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> + '_ {
        self.chunks
            .iter()
            .flat_map(|c| c.iter())
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (i, v)))
    }
}

impl<T: Clone> std::ops::Index<usize> for Slots<T> {
    type Output = T;

    #[expect(
        clippy::panic,
        reason = "indexing an empty slot is a caller bug, as for a slice"
    )]
    fn index(&self, i: usize) -> &T {
        match self.get(i) {
            Some(v) => v,
            None => panic!("slot {i} is empty"),
        }
    }
}

/// Shards of a [`ShardMap`] (a power of two): at 100,000 keys a write copies ~400 entries.
const SHARD_BITS: u32 = 8;

/// The hasher of every [`ShardMap`]: cluster state is trusted, request data only looks keys up.
pub type Hasher = foldhash::fast::RandomState;

/// Maps built from cluster state (trusted) and read per request: a fast hash rather than
/// SipHash. Request data only ever looks keys up.
pub type FastMap<K, V> = std::collections::HashMap<K, V, Hasher>;

/// A hash map shared shard by shard between generations.
pub struct ShardMap<K, V> {
    shards: Vec<Arc<hashbrown::HashTable<(K, V)>>>,
    hasher: Hasher,
    len: usize,
}

impl<K, V> std::fmt::Debug for ShardMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardMap").field("len", &self.len).finish()
    }
}

impl<K, V> Default for ShardMap<K, V> {
    fn default() -> Self {
        ShardMap {
            shards: (0..1 << SHARD_BITS)
                .map(|_| Arc::new(hashbrown::HashTable::new()))
                .collect(),
            hasher: Hasher::default(),
            len: 0,
        }
    }
}

impl<K, V> Clone for ShardMap<K, V> {
    /// Shares every shard (one reference count per shard).
    fn clone(&self) -> Self {
        ShardMap {
            shards: self.shards.clone(),
            hasher: self.hasher.clone(),
            len: self.len,
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> ShardMap<K, V> {
    /// The value of a key, looked up by any borrowed form `Q` that hashes as `K` does and that
    /// `eq` compares with it.
    #[inline]
    pub fn get_by<Q: Hash + ?Sized>(&self, q: &Q, eq: impl Fn(&K) -> bool) -> Option<&V> {
        let h = self.hasher.hash_one(q);
        self.shards
            .get(shard(h))?
            .find(h, |(k, _)| eq(k))
            .map(|(_, v)| v)
    }

    /// The value of a key.
    #[inline]
    pub fn get(&self, k: &K) -> Option<&V> {
        self.get_by(k, |x| x == k)
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The shard of `h`, made unique (copied if another generation shares it).
    fn shard_mut(&mut self, h: u64) -> Option<&mut hashbrown::HashTable<(K, V)>> {
        let s = self.shards.get_mut(shard(h))?;
        if Arc::get_mut(s).is_none() {
            *s = Arc::new(hashbrown::HashTable::clone(s));
        }
        Arc::get_mut(s)
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        let h = self.hasher.hash_one(&k);
        let hasher = self.hasher.clone();
        let table = self.shard_mut(h)?;
        match table.find_mut(h, |(x, _)| *x == k) {
            Some((_, old)) => Some(std::mem::replace(old, v)),
            None => {
                table.insert_unique(h, (k, v), |(k, _)| hasher.hash_one(k));
                self.len += 1;
                None
            }
        }
    }

    /// Removes a key; returns its value.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        let h = self.hasher.hash_one(k);
        let table = self.shard_mut(h)?;
        let ((_, v), _) = table.find_entry(h, |(x, _)| x == k).ok()?.remove();
        self.len -= 1;
        Some(v)
    }

    /// Entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(k, v)| (k, v)))
    }
}

fn shard(h: u64) -> usize {
    (h >> (64 - SHARD_BITS)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_share_untouched_chunks_and_copy_the_written_one() {
        let mut a: Slots<String> = Slots::default();
        for i in 0..200 {
            assert_eq!(a.push(format!("v{i}")), i);
        }
        let mut b = a.clone();
        assert_eq!(b.set(5, None).as_deref(), Some("v5"));
        b.set(300, Some("far".into()));
        // `a` is unchanged; `b` sees its writes.
        assert_eq!(a.get(5).map(String::as_str), Some("v5"));
        assert_eq!(a.get(300), None);
        assert_eq!(a.len(), 200);
        assert_eq!(b.get(5), None);
        assert_eq!(&b[300], "far");
        assert_eq!(b.len(), 301);
        // Only the written chunks were copied.
        assert!(Arc::ptr_eq(&a.chunks[1], &b.chunks[1]));
        assert!(!Arc::ptr_eq(&a.chunks[0], &b.chunks[0]));
        assert_eq!(b.iter().count(), 200);
        assert_eq!(a.iter().map(|(i, _)| i).max(), Some(199));
    }

    #[test]
    fn shard_map_is_a_map_and_shares_untouched_shards() {
        let mut a: ShardMap<(Arc<str>, Arc<str>), u32> = ShardMap::default();
        for i in 0..5_000u32 {
            a.insert((format!("ns{}", i % 7).into(), format!("p{i}").into()), i);
        }
        assert_eq!(a.len(), 5_000);
        let mut b = a.clone();
        let k: (Arc<str>, Arc<str>) = ("ns3".into(), "p10".into());
        assert_eq!(b.remove(&k), Some(10));
        assert_eq!(b.remove(&k), None);
        assert_eq!(b.insert(("ns1".into(), "p1".into()), 99), Some(1));
        assert_eq!(b.insert(("new".into(), "x".into()), 7), None);
        // A borrowed key hashes as the owned one.
        let get = |m: &ShardMap<(Arc<str>, Arc<str>), u32>, ns: &str, n: &str| {
            m.get_by(&(ns, n), |(a, b)| &**a == ns && &**b == n)
                .copied()
        };
        assert_eq!(get(&a, "ns3", "p10"), Some(10));
        assert_eq!(get(&b, "ns3", "p10"), None);
        assert_eq!(get(&a, "ns1", "p1"), Some(1));
        assert_eq!(get(&b, "ns1", "p1"), Some(99));
        assert_eq!(get(&b, "new", "x"), Some(7));
        assert_eq!((a.len(), b.len()), (5_000, 5_000));
        assert_eq!(b.iter().count(), 5_000);
        let shared = a
            .shards
            .iter()
            .zip(&b.shards)
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        assert!(shared >= (1 << SHARD_BITS) - 3, "{shared} shards shared");
    }
}
