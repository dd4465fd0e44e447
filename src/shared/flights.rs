//! Single-flight between processes: a board of flight slots in the lock file.
//!
//! A process whose thread leads a miss in its own process (`crate::py::flight`) *claims*
//! the key's slot before calling the function: [`Board::claim`] finds a slot already led for
//! the key (then it waits) or takes a free one with one compare-and-swap of its `LEAD` word,
//! `pid << 32 | tag` (the tag is 31 bits of the key's hash, with the low bit set so that a
//! lead is never 0). The leader stores the value, then *lands* ([`Board::land`]): it writes
//! the outcome, frees `LEAD`, bumps the `WAKE` counter and, if anyone waits, wakes them
//! (a futex on `WAKE`, see [`crate::sync::park_at`]). Waiters then look the key up in the cache;
//! the board carries no values.
//!
//! Everything a slot says is a hint: a tag may belong to another key (the waiter finds
//! nothing and goes round), a landing may be missed (waiters wake at least every poll), a
//! slot may be taken over. What keeps the protocol safe is that a value only ever comes
//! from the cache, and what keeps it live is that waiting always ends: the leader lands, or
//! a waiter finds it dead ([`Liveness`]) and takes the slot over ([`Board::take_over`]), or
//! the wait would close a cycle of leaders waiting on each other ([`Board::closes_cycle`]),
//! and the waiter computes alone.
//!
//! Slot words (one cache line per slot): `LEAD`, `WAKE` (landings so far; a futex word:
//! its low 32 bits), `OUTCOME` (`landing << 8 | code` of the last landing), `WAITERS`,
//! `BLOCKED_ON` (the slot, plus one, that this slot's leader waits on; 0 for none), `STAMP`
//! (the leader's process start time, so a reused pid is not taken for the leader).

use crate::sync::{unpark_all, AtomicU64, Ordering};

/// Slots on the board.
pub const SLOTS: usize = 64;
/// Words per slot (a cache line).
pub const SLOT_WORDS: usize = 8;
/// Words of the whole board.
pub const BOARD_WORDS: usize = SLOTS * SLOT_WORDS;
/// Slots a key may use: its home slot and the next ones. All led by other keys: the board
/// is full for it, and the call computes without waiting for anyone.
pub const PROBES: usize = 4;

mod word {
    pub const LEAD: usize = 0;
    pub const WAKE: usize = 1;
    pub const OUTCOME: usize = 2;
    pub const WAITERS: usize = 3;
    pub const BLOCKED_ON: usize = 4;
    pub const STAMP: usize = 5;
}

/// How a flight ended, for the processes that waited on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The value is in the cache.
    Stored = 1,
    /// The value was computed but not stored (too large, cleared, not serializable): each
    /// waiter computes on its own, at once, rather than lead one after another.
    Alone = 2,
    /// No value (the function raised, or the leader was interrupted): one waiter leads
    /// the next try.
    Retry = 3,
}

impl Outcome {
    fn from_code(code: u64) -> Option<Self> {
        match code {
            1 => Some(Self::Stored),
            2 => Some(Self::Alone),
            3 => Some(Self::Retry),
            _ => None,
        }
    }
}

/// Who a process is, as the board records its leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Me {
    /// The process id.
    pub pid: u32,
    /// When the process started (any number that differs between two processes that had
    /// the same pid; 0 where unknown).
    pub stamp: u64,
}

/// Whether the process that leads a flight still runs.
pub trait Liveness {
    /// The start stamp of live process `pid` (see [`Me::stamp`]), `None` if there is no
    /// such process or it has exited (a zombie); `Some(0)` if alive but its stamp is unknown.
    fn stamp_of(&self, pid: u32) -> Option<u64>;
}

/// A flight this process leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// Its slot.
    pub slot: u32,
    /// The slot's `LEAD` word while we lead.
    pub lead: u64,
}

/// A flight this process waits on, as it was when the wait began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watch {
    /// Its slot.
    pub slot: u32,
    /// The slot's `LEAD` word then.
    pub lead: u64,
    /// The slot's landings then.
    pub landings: u32,
}

impl Watch {
    /// The leading process.
    pub fn leader(&self) -> u32 {
        (self.lead >> 32) as u32
    }
}

/// What [`Board::claim`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This process now leads the key's flight.
    Lead(Ticket),
    /// Another process (or this one, on another path) leads it.
    Wait(Watch),
    /// Every slot the key may use is led for other keys.
    Full,
}

/// What became of a watched flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Still led as when the wait began.
    Running,
    /// It landed with this outcome.
    Landed(Outcome),
    /// It landed or was taken over, and what it ended with is no longer known: look again.
    Moved,
}

/// The board over the lock file's flight words.
#[derive(Clone, Copy)]
pub struct Board<'a> {
    words: &'a [AtomicU64],
}

/// The tag a key's lead carries (never 0; low bit set).
fn tag(hash: u64) -> u32 {
    (hash as u32) | 1
}

/// The slots a key may use, in order.
fn probes(hash: u64) -> impl Iterator<Item = usize> {
    let home = (hash >> 32) as usize % SLOTS;
    (0..PROBES).map(move |i| (home + i) % SLOTS)
}

impl<'a> Board<'a> {
    /// The board over `words` ([`BOARD_WORDS`] of them), `None` for another length.
    pub fn new(words: &'a [AtomicU64]) -> Option<Self> {
        (words.len() == BOARD_WORDS).then_some(Self { words })
    }

    fn word(&self, slot: usize, which: usize) -> &'a AtomicU64 {
        &self.words[slot * SLOT_WORDS + which]
    }

    /// Leads the flight of the key hashing to `hash`, or finds who does.
    pub fn claim(&self, hash: u64, me: Me) -> Claim {
        let tag = tag(hash);
        let watch = |slot: usize, lead: u64| {
            Claim::Wait(Watch {
                slot: slot as u32,
                lead,
                landings: self.word(slot, word::WAKE).load(Ordering::Acquire) as u32,
            })
        };
        for slot in probes(hash) {
            let lead = self.word(slot, word::LEAD).load(Ordering::Acquire);
            if lead != 0 && lead as u32 == tag {
                return watch(slot, lead);
            }
        }
        let mine = u64::from(me.pid) << 32 | u64::from(tag);
        for slot in probes(hash) {
            match self.word(slot, word::LEAD).compare_exchange(
                0,
                mine,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.word(slot, word::STAMP)
                        .store(me.stamp, Ordering::Release);
                    self.word(slot, word::BLOCKED_ON)
                        .store(0, Ordering::Release);
                    return Claim::Lead(Ticket {
                        slot: slot as u32,
                        lead: mine,
                    });
                }
                // Another process claimed it for the same key first.
                Err(lead) if lead as u32 == tag => return watch(slot, lead),
                Err(_) => {}
            }
        }
        Claim::Full
    }

    /// Ends a flight this process leads: waiters learn `outcome`. Nothing if the flight was
    /// taken over meanwhile, or if `me` is not the process that claimed it (a forked child
    /// finishing its parent's call).
    pub fn land(&self, ticket: Ticket, outcome: Outcome, me: Me) {
        let slot = ticket.slot as usize;
        if (ticket.lead >> 32) as u32 != me.pid {
            return;
        }
        let lead = self.word(slot, word::LEAD);
        if lead.load(Ordering::Acquire) != ticket.lead {
            return;
        }
        let wake = self.word(slot, word::WAKE);
        let landing = (wake.load(Ordering::Acquire) as u32).wrapping_add(1);
        self.word(slot, word::OUTCOME)
            .store(u64::from(landing) << 8 | outcome as u64, Ordering::Release);
        if lead
            .compare_exchange(ticket.lead, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        wake.fetch_add(1, Ordering::AcqRel);
        if self.word(slot, word::WAITERS).load(Ordering::Acquire) != 0 {
            unpark_all(wake);
        }
    }

    /// What became of a watched flight.
    pub fn seen(&self, watch: Watch) -> Seen {
        let slot = watch.slot as usize;
        let landings = self.word(slot, word::WAKE).load(Ordering::Acquire) as u32;
        let lead = self.word(slot, word::LEAD).load(Ordering::Acquire);
        if landings == watch.landings && lead == watch.lead {
            return Seen::Running;
        }
        // The outcome is ours if exactly one landing happened since, and it wrote it.
        let next = watch.landings.wrapping_add(1);
        let outcome = self.word(slot, word::OUTCOME).load(Ordering::Acquire);
        if landings == next && (outcome >> 8) as u32 == next {
            if let Some(outcome) = Outcome::from_code(outcome & 0xff) {
                return Seen::Landed(outcome);
            }
        }
        Seen::Moved
    }

    /// Where the watched slot's landing counter is, to park on it once the board is no
    /// longer borrowed ([`crate::sync::park_at`] with [`Watch::landings`]).
    pub fn wake_address(&self, watch: Watch) -> usize {
        let wake = self.word(watch.slot as usize, word::WAKE);
        #[cfg(not(any(loom, shuttle)))]
        return wake.as_ptr() as usize;
        // The models' atomics have no address to park on (their parking only yields).
        #[cfg(any(loom, shuttle))]
        return std::ptr::from_ref(wake) as usize;
    }

    /// Counts a waiter in or out (the leader wakes waiters only if there are some).
    pub fn waiting(&self, watch: Watch, entering: bool) {
        let waiters = self.word(watch.slot as usize, word::WAITERS);
        if entering {
            waiters.fetch_add(1, Ordering::AcqRel);
        } else {
            // Never below 0: a count left by a killed waiter only costs wake-ups.
            let _ = waiters.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// The watched flight's leader is dead: lead it instead. `None` if the slot changed
    /// meanwhile (another waiter took it over, or it landed).
    pub fn take_over(&self, watch: Watch, me: Me) -> Option<Ticket> {
        let slot = watch.slot as usize;
        let mine = u64::from(me.pid) << 32 | (watch.lead & 0xffff_ffff);
        self.word(slot, word::LEAD)
            .compare_exchange(watch.lead, mine, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        self.word(slot, word::STAMP)
            .store(me.stamp, Ordering::Release);
        self.word(slot, word::BLOCKED_ON)
            .store(0, Ordering::Release);
        Some(Ticket {
            slot: watch.slot,
            lead: mine,
        })
    }

    /// Whether the watched flight's leader is gone: no process has its pid, or the one that
    /// has it started at another time than the leader.
    pub fn leader_is_dead(&self, watch: Watch, liveness: &impl Liveness) -> bool {
        let stamp = self
            .word(watch.slot as usize, word::STAMP)
            .load(Ordering::Acquire);
        if self
            .word(watch.slot as usize, word::LEAD)
            .load(Ordering::Acquire)
            != watch.lead
        {
            return false;
        }
        match liveness.stamp_of(watch.leader()) {
            None => true,
            Some(now) => now != 0 && stamp != 0 && now != stamp,
        }
    }

    /// Records that the flights `held` (this thread's leads) now wait on slot `on` (or on
    /// nothing), for [`Board::closes_cycle`] in other processes.
    pub fn block(&self, held: &[Ticket], on: Option<u32>) {
        let value = on.map_or(0, |slot| u64::from(slot) + 1);
        for ticket in held {
            let slot = ticket.slot as usize;
            if self.word(slot, word::LEAD).load(Ordering::Acquire) == ticket.lead {
                self.word(slot, word::BLOCKED_ON)
                    .store(value, Ordering::Release);
            }
        }
    }

    /// Whether waiting on `watch` would close a cycle: its leader waits (through a chain of
    /// leaders waiting on each other) on a flight this thread leads (`held`).
    pub fn closes_cycle(&self, watch: Watch, held: &[Ticket]) -> bool {
        let mut slot = watch.slot as usize;
        for _ in 0..SLOTS {
            let lead = self.word(slot, word::LEAD).load(Ordering::Acquire);
            if held
                .iter()
                .any(|t| t.slot as usize == slot && t.lead == lead)
            {
                return true;
            }
            match self.word(slot, word::BLOCKED_ON).load(Ordering::Acquire) {
                0 => return false,
                next => slot = (next - 1) as usize % SLOTS,
            }
        }
        // A chain longer than the board can only be a cycle (of others): do not wait.
        true
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    fn board_words() -> Vec<AtomicU64> {
        (0..BOARD_WORDS).map(|_| AtomicU64::new(0)).collect()
    }

    const A: Me = Me { pid: 100, stamp: 7 };
    const B: Me = Me { pid: 200, stamp: 9 };
    const KEY: u64 = 0x1234_5678_9abc_def0;

    struct Dead;
    impl Liveness for Dead {
        fn stamp_of(&self, _pid: u32) -> Option<u64> {
            None
        }
    }
    struct Alive(u64);
    impl Liveness for Alive {
        fn stamp_of(&self, _pid: u32) -> Option<u64> {
            Some(self.0)
        }
    }

    #[test]
    fn one_process_leads_and_the_others_see_it_land() {
        let words = board_words();
        let board = Board::new(&words).unwrap();
        let Claim::Lead(ticket) = board.claim(KEY, A) else {
            panic!("a free board is claimed")
        };
        let Claim::Wait(watch) = board.claim(KEY, B) else {
            panic!("a led key is waited on")
        };
        assert_eq!(watch.leader(), A.pid);
        assert_eq!(board.seen(watch), Seen::Running);
        board.land(ticket, Outcome::Alone, A);
        assert_eq!(board.seen(watch), Seen::Landed(Outcome::Alone));
        // The slot is free again, and a second landing makes the first unknown.
        let Claim::Lead(again) = board.claim(KEY, B) else {
            panic!("a landed key is claimed again")
        };
        board.land(again, Outcome::Stored, B);
        assert_eq!(board.seen(watch), Seen::Moved);
    }

    #[test]
    fn a_key_whose_slots_are_all_led_for_other_keys_finds_the_board_full() {
        let words = board_words();
        let board = Board::new(&words).unwrap();
        // Same home slot, other tags.
        for i in 0..PROBES as u64 {
            assert!(matches!(board.claim(KEY + 2 * (i + 1), A), Claim::Lead(_)));
        }
        assert_eq!(board.claim(KEY, B), Claim::Full);
    }

    #[test]
    fn only_the_claiming_process_lands_its_flight() {
        let words = board_words();
        let board = Board::new(&words).unwrap();
        let Claim::Lead(ticket) = board.claim(KEY, A) else {
            panic!()
        };
        let Claim::Wait(watch) = board.claim(KEY, B) else {
            panic!()
        };
        // A forked child of A (another pid) finishing the parent's call lands nothing.
        board.land(ticket, Outcome::Stored, Me { pid: 101, stamp: 8 });
        assert_eq!(board.seen(watch), Seen::Running);
        board.land(ticket, Outcome::Stored, A);
        assert_eq!(board.seen(watch), Seen::Landed(Outcome::Stored));
    }

    #[test]
    fn a_dead_leader_is_taken_over_once() {
        let words = board_words();
        let board = Board::new(&words).unwrap();
        let Claim::Lead(old) = board.claim(KEY, A) else {
            panic!()
        };
        let Claim::Wait(watch) = board.claim(KEY, B) else {
            panic!()
        };
        assert!(!board.leader_is_dead(watch, &Alive(A.stamp)));
        assert!(
            board.leader_is_dead(watch, &Alive(A.stamp + 1)),
            "pid reused"
        );
        assert!(board.leader_is_dead(watch, &Dead));
        let ticket = board.take_over(watch, B).expect("taken over");
        assert_eq!(board.take_over(watch, Me { pid: 300, stamp: 1 }), None);
        // The old leader, stopped and resumed, lands nothing; its waiters move on.
        board.land(old, Outcome::Stored, A);
        assert_eq!(board.seen(watch), Seen::Moved);
        let Claim::Wait(next) = board.claim(KEY, Me { pid: 300, stamp: 1 }) else {
            panic!("the taker leads now")
        };
        board.land(ticket, Outcome::Stored, B);
        assert_eq!(board.seen(next), Seen::Landed(Outcome::Stored));
    }

    #[test]
    fn leaders_waiting_on_each_other_close_a_cycle() {
        let words = board_words();
        let board = Board::new(&words).unwrap();
        let (k1, k2) = (KEY, KEY ^ (5 << 32) ^ 2);
        let Claim::Lead(a1) = board.claim(k1, A) else {
            panic!()
        };
        let Claim::Lead(b2) = board.claim(k2, B) else {
            panic!()
        };
        let Claim::Wait(a_on_k2) = board.claim(k2, A) else {
            panic!()
        };
        assert!(
            !board.closes_cycle(a_on_k2, &[a1]),
            "B waits on nothing yet"
        );
        board.block(&[a1], Some(a_on_k2.slot));
        let Claim::Wait(b_on_k1) = board.claim(k1, B) else {
            panic!()
        };
        assert!(board.closes_cycle(b_on_k1, &[b2]));
        board.block(&[a1], None);
        assert!(!board.closes_cycle(b_on_k1, &[b2]));
    }
}
