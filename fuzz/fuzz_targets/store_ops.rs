//! A sequence of cache operations run on the shared store (over a heap region), on a
//! one-shard memory store and on a many-shard memory store, checked against a reference
//! SIEVE model.
//!
//! - The shared store and the one-shard memory store are exact SIEVE: every hit, miss,
//!   value, eviction and size must equal the model's.
//! - A many-shard memory store evicts within a shard (or from another shard when its own is
//!   empty), so it is not exact SIEVE; it is checked against a shadow map of what it must
//!   hold: every insert keeps or replaces or adds exactly as SIEVE semantics say, at most one
//!   other entry goes (the one it reports, or an unreported one from another shard when full),
//!   and a lookup hits exactly the live keys of that map, with their values.
//!
//! Time is a fake clock (`now`) that only moves forward, so TTL expiry is deterministic.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use warp_cache::memory::{spread_hash, Get, Insert, Shard, Store};
use warp_cache::shared::{HeapRegion, InsertOutcome, LockOwner, Params, ValueBuf};
use warp_cache::sync::RwLock;

type MemStore = Store<u64, u64, RwLock<Shard<u64, u64>>>;

/// The fuzzer's only writer: alone, it never waits.
struct Owner;

impl LockOwner for Owner {
    fn id(&self) -> u64 {
        1
    }
    fn is_alive(&self, _owner: u64) -> bool {
        false
    }
}

#[derive(Debug)]
struct Config {
    capacity: u32,
    max_key: u32,
    max_value: u32,
    /// Distinct keys the ops draw from (small: keys must repeat to hit).
    key_space: u8,
    /// Memory-store hashes are `spread_hash(key % hash_classes)`: few classes, many collisions.
    hash_classes: u64,
    shards: usize,
}

impl<'a> Arbitrary<'a> for Config {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self {
            capacity: u.int_in_range(0..=8)?,
            max_key: u.int_in_range(0..=24)?,
            max_value: u.int_in_range(0..=40)?,
            key_space: u.int_in_range(1..=16)?,
            hash_classes: u.int_in_range(1..=64)?,
            shards: u.int_in_range(2..=8)?,
        })
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Get(u8),
    Insert {
        key: u8,
        value: u16,
        /// Value length in bytes for the shared store (may exceed its limit).
        len: u8,
        /// Lifetime from now; 0 for forever.
        ttl: u8,
    },
    Clear,
    /// Moves the clock forward, expiring entries.
    Advance(u8),
    /// Inserts this many keys never seen before: evictions.
    Evict(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    config: Config,
    ops: Vec<Op>,
}

/// One entry of the reference model.
#[derive(Clone, Debug)]
struct Entry<V> {
    key: u64,
    value: V,
    expires: u64,
    visited: bool,
}

/// What an insert did, in the model's words.
#[derive(Debug, PartialEq)]
enum Outcome<V> {
    /// A new entry; the evicted pair if room had to be made.
    Added(Option<(u64, V)>),
    /// An equal live key was there and kept its value.
    Kept,
    /// An equal expired key was there: its old value, replaced in place.
    Replaced(V),
    /// A zero-size cache.
    NotCached,
}

/// Textbook SIEVE: a queue from oldest to newest, a hand, visited bits.
struct Sieve<V> {
    capacity: usize,
    /// A new value for an expired key joins as the newest entry (the shared store) rather
    /// than keeping the old entry's place (the memory store).
    renew_as_newest: bool,
    /// Oldest first.
    queue: Vec<Entry<V>>,
    /// The key the hand rests on; `None` means "start at the oldest".
    hand: Option<u64>,
}

impl<V: Clone + PartialEq + std::fmt::Debug> Sieve<V> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            renew_as_newest: false,
            queue: Vec::new(),
            hand: None,
        }
    }

    fn position(&self, key: u64) -> Option<usize> {
        self.queue.iter().position(|e| e.key == key)
    }

    fn get(&mut self, key: u64, now: u64) -> Option<V> {
        let i = self.position(key)?;
        let entry = &mut self.queue[i];
        if entry.expires <= now {
            return None;
        }
        entry.visited = true;
        Some(entry.value.clone())
    }

    fn insert(&mut self, key: u64, value: V, now: u64, expires: u64) -> Outcome<V> {
        if self.capacity == 0 {
            return Outcome::NotCached;
        }
        if let Some(i) = self.position(key) {
            let entry = &mut self.queue[i];
            if entry.expires > now {
                return Outcome::Kept;
            }
            if self.renew_as_newest {
                // Out of the queue (a hand resting on it moves one newer), in again as new.
                let old = self.queue.remove(i);
                if self.hand == Some(key) {
                    self.hand = self.queue.get(i).map(|e| e.key);
                }
                self.queue.push(Entry {
                    key,
                    value,
                    expires,
                    visited: false,
                });
                return Outcome::Replaced(old.value);
            }
            // Same place in the queue, same visited bit: only value and deadline change.
            entry.expires = expires;
            return Outcome::Replaced(std::mem::replace(&mut entry.value, value));
        }
        let evicted = (self.queue.len() >= self.capacity).then(|| self.evict(now));
        self.queue.push(Entry {
            key,
            value,
            expires,
            visited: false,
        });
        Outcome::Added(evicted)
    }

    /// The hand walks toward the newest end, clearing bits; the first entry not both
    /// visited and live goes. The hand then rests on the entry newer than the victim.
    fn evict(&mut self, now: u64) -> (u64, V) {
        let mut at = self.hand.and_then(|key| self.position(key)).unwrap_or(0);
        loop {
            let entry = &mut self.queue[at];
            let second_chance = std::mem::take(&mut entry.visited) && entry.expires > now;
            if !second_chance {
                break;
            }
            at = (at + 1) % self.queue.len();
        }
        let victim = self.queue.remove(at);
        self.hand = self.queue.get(at).map(|e| e.key);
        (victim.key, victim.value)
    }

    fn clear(&mut self) {
        self.queue.clear();
        self.hand = None;
    }
}

/// Key bytes for the shared store, distinct for distinct keys: key 0 is empty, any other is
/// its significant bytes behind their count, padded to a length that varies with the key
/// and sometimes exceeds the limit.
fn key_bytes(key: u64, max_key: u32) -> Vec<u8> {
    if key == 0 {
        return Vec::new();
    }
    let significant = 8 - key.leading_zeros() as usize / 8;
    let mut bytes = vec![significant as u8];
    bytes.extend_from_slice(&key.to_le_bytes()[..significant]);
    let len = (key as usize).wrapping_mul(7) % (max_key as usize + 4);
    bytes.resize(bytes.len().max(len), 0xA5);
    bytes
}

fn value_bytes(value: u16, len: u8) -> Vec<u8> {
    let [lo, hi] = value.to_le_bytes();
    (0..len)
        .map(|n| lo ^ hi.rotate_left(n as u32) ^ n)
        .collect()
}

struct Harness {
    config: Config,
    now: u64,
    fresh_key: u64,
    shared: HeapRegion,
    shared_model: Sieve<Vec<u8>>,
    hits: u64,
    misses: u64,
    oversize: u64,
    one_shard: MemStore,
    one_shard_model: Sieve<u64>,
    many_shards: MemStore,
    /// What the many-shard store holds: key -> (value, expires).
    shadow: HashMap<u64, (u64, u64)>,
}

impl Harness {
    fn new(config: Config) -> Self {
        let params = Params {
            capacity: config.capacity,
            max_key_size: config.max_key,
            max_value_size: config.max_value,
            ttl_ns: None,
            max_bytes: None,
        };
        let capacity = config.capacity as usize;
        Self {
            shared: HeapRegion::new(params).expect("small parameters"),
            shared_model: Sieve {
                renew_as_newest: true,
                ..Sieve::new(capacity)
            },
            hits: 0,
            misses: 0,
            oversize: 0,
            one_shard: MemStore::new(capacity, 1),
            one_shard_model: Sieve::new(capacity),
            many_shards: MemStore::new(capacity, config.shards),
            shadow: HashMap::new(),
            now: 1,
            fresh_key: 1 << 32,
            config,
        }
    }

    fn hash(&self, key: u64) -> u64 {
        spread_hash(key % self.config.hash_classes)
    }

    fn get(&mut self, key: u64) {
        let now = self.now;

        let expected = self.shared_model.get(key, now);
        let key_b = key_bytes(key, self.config.max_key);
        let mut out = ValueBuf::new();
        let hit = self
            .shared
            .engine()
            .get(&key_b, now, &mut out)
            .expect("a heap region is never stale");
        assert_eq!(
            hit.then(|| out.bytes().to_vec()),
            expected,
            "shared get {key}"
        );
        if expected.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }

        let expected = self.one_shard_model.get(key, now);
        assert_eq!(
            mem_get(&self.one_shard, self.hash(key), key, now),
            expected,
            "one-shard get {key}"
        );

        let expected = self
            .shadow
            .get(&key)
            .filter(|(_, expires)| *expires > now)
            .map(|(value, _)| *value);
        assert_eq!(
            mem_get(&self.many_shards, self.hash(key), key, now),
            expected,
            "many-shard get {key}"
        );
    }

    fn insert(&mut self, key: u64, value: u16, len: u8, expires: u64) {
        let now = self.now;

        let (key_b, value_b) = (key_bytes(key, self.config.max_key), value_bytes(value, len));
        let oversize = key_b.len() > self.config.max_key as usize
            || value_b.len() > self.config.max_value as usize;
        let got = self
            .shared
            .engine()
            .insert(&key_b, &value_b, now, expires, &Owner)
            .expect("a heap region is never stale");
        let expected = if oversize {
            self.oversize += 1;
            InsertOutcome::Oversize
        } else {
            match self.shared_model.insert(key, value_b, now, expires) {
                Outcome::NotCached => InsertOutcome::NotCached,
                _ => InsertOutcome::Stored,
            }
        };
        assert_eq!(got, expected, "shared insert {key}");

        let value = u64::from(value);
        let expected = self.one_shard_model.insert(key, value, now, expires);
        let got = self
            .one_shard
            .insert(self.hash(key), key, value, &[], now, expires);
        let got = match got {
            Insert::Done(None) => Outcome::Added(None),
            Insert::Done(Some((k, v))) if k != key => Outcome::Added(Some((k, v))),
            // The key comes back with the unused new value, or with the displaced old one.
            Insert::Done(Some((_, v))) => match expected {
                Outcome::Kept => {
                    assert_eq!(v, value, "one-shard insert {key}: kept");
                    Outcome::Kept
                }
                _ => Outcome::Replaced(v),
            },
            Insert::NotCached(..) => Outcome::NotCached,
            Insert::Undecided(..) => unreachable!("u64 keys are always decidable"),
        };
        assert_eq!(got, expected, "one-shard insert {key}");

        let mut expected = self.shadow.clone();
        let got = self
            .many_shards
            .insert(self.hash(key), key, value, &[], now, expires);
        // Whether an eviction the store does not report (from another shard) may happen.
        let mut unreported = false;
        match (got, self.shadow.get(&key).copied()) {
            (Insert::Done(garbage), Some((_, old_expires))) if old_expires > now => {
                assert_eq!(garbage, Some((key, value)), "many-shard insert {key}: kept");
            }
            (Insert::Done(garbage), Some((old, _))) => {
                assert_eq!(
                    garbage,
                    Some((key, old)),
                    "many-shard insert {key}: displaced"
                );
                expected.insert(key, (value, expires));
            }
            (Insert::Done(None), None) => {
                unreported = self.shadow.len() == self.config.capacity as usize;
                expected.insert(key, (value, expires));
            }
            (Insert::Done(Some((k, v))), None) => {
                let evicted = expected.remove(&k).map(|(value, _)| value);
                assert_eq!(evicted, Some(v), "many-shard insert {key}: evicted {k}");
                expected.insert(key, (value, expires));
            }
            (Insert::NotCached(..), _) => assert_eq!(self.config.capacity, 0, "alone, inserts fit"),
            (Insert::Undecided(..), _) => unreachable!("u64 keys are always decidable"),
        }
        let mut held = HashMap::new();
        self.many_shards.for_each_unlocked(|&k, &v| {
            assert!(
                held.insert(k, v).is_none(),
                "many-shard store holds {k} twice"
            );
        });
        for (k, v) in &held {
            assert_eq!(
                expected.get(k).map(|e| e.0),
                Some(*v),
                "many-shard store holds {k}"
            );
        }
        assert!(
            held.contains_key(&key) || self.config.capacity == 0,
            "many-shard store lost {key}"
        );
        let lost = expected.len() - held.len();
        assert!(
            lost <= usize::from(unreported),
            "many-shard store lost {lost} entries"
        );
        expected.retain(|k, _| held.contains_key(k));
        self.shadow = expected;
    }

    fn clear(&mut self) {
        assert!(self.shared.engine().clear(&Owner).expect("never stale"));
        self.shared_model.clear();
        (self.hits, self.misses, self.oversize) = (0, 0, 0);
        self.one_shard.clear();
        self.one_shard_model.clear();
        self.many_shards.clear();
        self.shadow.clear();
    }

    fn check(&self) {
        let info = self.shared.engine().info().expect("never stale");
        assert_eq!(info.current_size, self.shared_model.queue.len() as u64);
        assert_eq!(
            (info.hits, info.misses, info.oversize_skips),
            (self.hits, self.misses, self.oversize)
        );
        self.shared.check_invariants();
        self.one_shard.check_invariants();
        assert_eq!(self.one_shard.len(), self.one_shard_model.queue.len());
        self.many_shards.check_invariants();
        assert_eq!(self.many_shards.len(), self.shadow.len());
    }

    fn run(&mut self, op: Op) {
        let key_space = u64::from(self.config.key_space);
        match op {
            Op::Get(key) => self.get(u64::from(key) % key_space),
            Op::Insert {
                key,
                value,
                len,
                ttl,
            } => {
                let expires = match ttl {
                    0 => u64::MAX,
                    ttl => self.now + u64::from(ttl),
                };
                self.insert(u64::from(key) % key_space, value, len, expires);
            }
            Op::Clear => self.clear(),
            Op::Advance(dt) => self.now += u64::from(dt),
            Op::Evict(count) => {
                for _ in 0..count % 8 {
                    self.fresh_key += 1;
                    let key = self.fresh_key;
                    self.insert(key, key as u16, 3, u64::MAX);
                }
            }
        }
        self.check();
    }
}

fn mem_get(store: &MemStore, hash: u64, key: u64, now: u64) -> Option<u64> {
    match store.get(hash, &key, &[], now) {
        Get::Hit(value) => Some(value),
        Get::Miss => None,
        Get::Undecided(_) => unreachable!("u64 keys are always decidable"),
    }
}

fuzz_target!(|input: Input| {
    let mut harness = Harness::new(input.config);
    for op in input.ops.into_iter().take(256) {
        harness.run(op);
    }
});
