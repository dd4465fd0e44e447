//! The SIEVE eviction policy over slot indices, independent of where slots live.
//!
//! Entries form a queue from the oldest (tail) to the newest (head). New entries join at
//! the head. To evict, the hand walks from its position toward the head, clearing visited
//! bits as it passes; the first unvisited entry is the victim and the hand stays just newer
//! than it. Past the head the hand wraps to the tail. Hits only set a bit: no reordering.
//!
//! The queue's links and ends are reached through [`SieveQueue`], so the memory backend keeps
//! them in a `Vec` ([`SieveList`]) and the shared backend in its mapped region.

/// "No slot": the end of a list or an unset hand.
pub const NIL: u32 = u32::MAX;

/// The two neighbours of a slot in the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// The neighbour toward the head (inserted later), or [`NIL`].
    pub newer: u32,
    /// The neighbour toward the tail (inserted earlier), or [`NIL`].
    pub older: u32,
}

impl Link {
    /// A slot outside any queue.
    pub const DETACHED: Link = Link {
        newer: NIL,
        older: NIL,
    };
}

/// The queue's ends and the hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ends {
    /// Newest entry, or [`NIL`] when empty.
    pub head: u32,
    /// Oldest entry, or [`NIL`] when empty.
    pub tail: u32,
    /// Next entry the hand examines; [`NIL`] means "start at the tail".
    pub hand: u32,
}

impl Ends {
    /// An empty queue.
    pub const EMPTY: Ends = Ends {
        head: NIL,
        tail: NIL,
        hand: NIL,
    };
}

/// Storage for a SIEVE queue. Implementors provide the four accessors; the policy is
/// supplied by the provided methods.
pub trait SieveQueue {
    /// The links of slot `i`.
    fn link(&self, i: u32) -> Link;
    /// Stores the links of slot `i`.
    fn set_link(&mut self, i: u32, link: Link);
    /// The ends and the hand.
    fn ends(&self) -> Ends;
    /// Stores the ends and the hand.
    fn set_ends(&mut self, ends: Ends);

    /// Puts detached slot `i` at the head (the newest end).
    fn push_newest(&mut self, i: u32) {
        let mut ends = self.ends();
        self.set_link(
            i,
            Link {
                newer: NIL,
                older: ends.head,
            },
        );
        if ends.head == NIL {
            ends.tail = i;
        } else {
            let mut old_head = self.link(ends.head);
            old_head.newer = i;
            self.set_link(ends.head, old_head);
        }
        ends.head = i;
        self.set_ends(ends);
    }

    /// Takes slot `i` out of the queue. A hand resting on it moves one step newer.
    fn unlink(&mut self, i: u32) {
        let link = self.link(i);
        let mut ends = self.ends();
        if ends.hand == i {
            ends.hand = link.newer;
        }
        if link.newer == NIL {
            ends.head = link.older;
        } else {
            let mut n = self.link(link.newer);
            n.older = link.older;
            self.set_link(link.newer, n);
        }
        if link.older == NIL {
            ends.tail = link.newer;
        } else {
            let mut o = self.link(link.older);
            o.newer = link.newer;
            self.set_link(link.older, o);
        }
        self.set_ends(ends);
        self.set_link(i, Link::DETACHED);
    }

    /// Moves queued slot `from` to detached slot `to`: `to` takes its place (neighbours,
    /// ends and hand), `from` is left detached.
    fn relabel(&mut self, from: u32, to: u32) {
        let link = self.link(from);
        self.set_link(to, link);
        if link.newer != NIL {
            let mut n = self.link(link.newer);
            n.older = to;
            self.set_link(link.newer, n);
        }
        if link.older != NIL {
            let mut o = self.link(link.older);
            o.newer = to;
            self.set_link(link.older, o);
        }
        let mut ends = self.ends();
        for end in [&mut ends.head, &mut ends.tail, &mut ends.hand] {
            if *end == from {
                *end = to;
            }
        }
        self.set_ends(ends);
        self.set_link(from, Link::DETACHED);
    }

    /// Runs the hand and returns the victim, still linked; `None` when the queue is empty.
    ///
    /// `second_chance(i)` must report whether slot `i` was visited and clear the bit (it may
    /// also refuse a second chance, e.g. to an expired entry). Concurrent hits can set bits
    /// again behind the hand, so after two full turns the slot under the hand is taken
    /// regardless: eviction always ends.
    fn select_victim(&mut self, mut second_chance: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut ends = self.ends();
        if ends.tail == NIL {
            return None;
        }
        let mut at = if ends.hand == NIL {
            ends.tail
        } else {
            ends.hand
        };
        // Without racing hits, one pass from the tail clears every bit, so a third wrap
        // only happens when hits keep re-setting bits: then the slot under the hand goes.
        let mut wraps = 0;
        while wraps < 3 && second_chance(at) {
            let newer = self.link(at).newer;
            at = if newer == NIL {
                wraps += 1;
                ends.tail
            } else {
                newer
            };
        }
        ends.hand = self.link(at).newer;
        self.set_ends(ends);
        Some(at)
    }
}

/// A SIEVE queue kept in ordinary memory: links by slot index.
#[derive(Debug, Clone)]
pub struct SieveList {
    links: Vec<Link>,
    ends: Ends,
}

impl Default for SieveList {
    fn default() -> Self {
        Self::new()
    }
}

impl SieveList {
    /// An empty queue with no slots.
    pub fn new() -> Self {
        Self {
            links: Vec::new(),
            ends: Ends::EMPTY,
        }
    }

    /// Makes room for slot indices below `slots`.
    pub fn grow_to(&mut self, slots: usize) {
        if self.links.len() < slots {
            self.links.resize(slots, Link::DETACHED);
        }
    }

    /// Slot indices from the oldest to the newest (for tests and debugging).
    pub fn oldest_to_newest(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let mut at = self.ends.tail;
        while at != NIL {
            out.push(at);
            at = self.links[at as usize].newer;
        }
        out
    }
}

impl SieveQueue for SieveList {
    #[inline]
    fn link(&self, i: u32) -> Link {
        self.links[i as usize]
    }
    #[inline]
    fn set_link(&mut self, i: u32, link: Link) {
        self.links[i as usize] = link;
    }
    #[inline]
    fn ends(&self) -> Ends {
        self.ends
    }
    #[inline]
    fn set_ends(&mut self, ends: Ends) {
        self.ends = ends;
    }
}

/// Test helpers shared by every store's tests: the textbook SIEVE model and a tiny
/// deterministic generator (tests need no extra crates).
#[cfg(test)]
pub(crate) mod reference {
    /// The textbook SIEVE on a `Vec` ordered oldest first: slow and obviously right.
    pub(crate) struct ReferenceSieve {
        capacity: usize,
        /// Keys with their visited bits, oldest first.
        pub(crate) queue: Vec<(u64, bool)>,
        hand: Option<usize>,
    }

    impl ReferenceSieve {
        pub(crate) fn new(capacity: usize) -> Self {
            Self {
                capacity,
                queue: Vec::new(),
                hand: None,
            }
        }

        /// Returns true on a hit; a miss inserts `key`, evicting first when full.
        pub(crate) fn access(&mut self, key: u64) -> bool {
            if let Some(entry) = self.queue.iter_mut().find(|(k, _)| *k == key) {
                entry.1 = true;
                return true;
            }
            if self.queue.len() == self.capacity {
                let mut at = self.hand.unwrap_or(0);
                while self.queue[at].1 {
                    self.queue[at].1 = false;
                    at = (at + 1) % self.queue.len();
                }
                self.queue.remove(at);
                self.hand = (at < self.queue.len()).then_some(at);
            }
            self.queue.push((key, false));
            false
        }
    }

    /// xorshift64: a small deterministic generator.
    pub(crate) fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }
}

#[cfg(test)]
mod tests {
    use super::reference::{xorshift, ReferenceSieve};
    use super::*;
    use std::collections::HashMap;

    /// The crate's policy driven the way a store drives it.
    struct PolicySieve {
        capacity: usize,
        list: SieveList,
        visited: Vec<bool>,
        key_of: Vec<u64>,
        slot_of: HashMap<u64, u32>,
        free: Vec<u32>,
    }

    impl PolicySieve {
        fn new(capacity: usize) -> Self {
            let mut list = SieveList::new();
            list.grow_to(capacity);
            Self {
                capacity,
                list,
                visited: vec![false; capacity],
                key_of: vec![0; capacity],
                slot_of: HashMap::new(),
                free: (0..capacity as u32).rev().collect(),
            }
        }

        fn access(&mut self, key: u64) -> bool {
            if let Some(&slot) = self.slot_of.get(&key) {
                self.visited[slot as usize] = true;
                return true;
            }
            if self.slot_of.len() == self.capacity {
                let visited = &mut self.visited;
                let victim = self
                    .list
                    .select_victim(|i| std::mem::replace(&mut visited[i as usize], false))
                    .expect("full queue has a victim");
                self.list.unlink(victim);
                self.slot_of.remove(&self.key_of[victim as usize]);
                self.free.push(victim);
            }
            let slot = self.free.pop().expect("a free slot");
            self.key_of[slot as usize] = key;
            self.visited[slot as usize] = false;
            self.slot_of.insert(key, slot);
            self.list.push_newest(slot);
            false
        }
    }

    #[test]
    fn matches_reference_on_random_traces() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for trace in 0..400 {
            let capacity = 1 + (trace % 9) as usize;
            let universe = 1 + (xorshift(&mut seed) % 24);
            let mut reference = ReferenceSieve::new(capacity);
            let mut policy = PolicySieve::new(capacity);
            for step in 0..300 {
                // Skewed keys so that hits and evictions both happen often.
                let r = xorshift(&mut seed);
                let key = (r % universe).min(xorshift(&mut seed) % universe);
                assert_eq!(
                    reference.access(key),
                    policy.access(key),
                    "trace {trace} step {step} key {key} capacity {capacity}"
                );
            }
            let expected: Vec<u64> = reference.queue.iter().map(|(k, _)| *k).collect();
            let got: Vec<u64> = policy
                .list
                .oldest_to_newest()
                .iter()
                .map(|&s| policy.key_of[s as usize])
                .collect();
            assert_eq!(expected, got, "queue order after trace {trace}");
        }
    }

    #[test]
    fn hit_entry_survives_a_scan() {
        let mut policy = PolicySieve::new(4);
        assert!(!policy.access(1));
        assert!(policy.access(1));
        for k in 100..140 {
            policy.access(k);
            assert!(
                policy.slot_of.contains_key(&1),
                "hot key evicted by scan at {k}"
            );
            policy.access(1);
        }
    }

    #[test]
    fn unlink_keeps_list_consistent_and_moves_hand() {
        let mut list = SieveList::new();
        list.grow_to(4);
        for i in 0..4 {
            list.push_newest(i);
        }
        assert_eq!(list.oldest_to_newest(), vec![0, 1, 2, 3]);
        let victim = list.select_victim(|i| i == 0).unwrap();
        assert_eq!(victim, 1);
        assert_eq!(list.ends().hand, 2);
        list.unlink(2);
        assert_eq!(list.ends().hand, 3);
        assert_eq!(list.oldest_to_newest(), vec![0, 1, 3]);
        list.unlink(3);
        list.unlink(0);
        list.unlink(1);
        assert_eq!(
            list.ends(),
            Ends {
                head: NIL,
                tail: NIL,
                hand: NIL
            }
        );
    }

    #[test]
    fn eviction_ends_even_if_every_bit_keeps_coming_back() {
        let mut list = SieveList::new();
        list.grow_to(3);
        for i in 0..3 {
            list.push_newest(i);
        }
        // A second chance every time models hits racing the hand forever.
        assert!(list.select_victim(|_| true).is_some());
    }

    #[test]
    fn empty_queue_has_no_victim() {
        let mut list = SieveList::new();
        assert_eq!(list.select_victim(|_| false), None);
    }
}
