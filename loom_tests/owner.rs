//! Lock owners for the models: "processes" numbered `1..=n` whose deaths are flags.
//!
//! A dying process sets its flag as its very last act, with release ordering, and
//! [`Process::is_alive`] reads it with acquire ordering. That is what the production owner
//! gets from the kernel: `kill(pid, 0)` reports ESRCH only after the process has exited,
//! and everything it stored before exiting is visible to whoever learns of the exit through
//! the syscall. Ids outside `1..=n` (damaged owner words) are dead, like an impossible pid.

use crate::Arc;
use warp_cache::shared::{LockOwner, Patience};
use warp_cache::sync::{AtomicBool, Ordering};

/// The process table: which ids have died. Clones share it.
#[derive(Clone)]
pub struct Processes {
    dead: Arc<Box<[AtomicBool]>>,
}

impl Processes {
    /// Processes `1..=n`, all alive.
    pub fn new(n: u64) -> Self {
        Self {
            dead: Arc::new((0..=n).map(|_| AtomicBool::new(false)).collect()),
        }
    }

    /// The lock owner of process `id`.
    pub fn owner(&self, id: u64) -> Process {
        assert!(id >= 1 && (id as usize) < self.dead.len());
        Process {
            id,
            table: self.clone(),
        }
    }

    /// Process `id` exits: call this after its last store.
    pub fn die(&self, id: u64) {
        self.dead[id as usize].store(true, Ordering::Release);
    }
}

/// One process's view of itself and of the others.
pub struct Process {
    id: u64,
    table: Processes,
}

impl LockOwner for Process {
    fn id(&self) -> u64 {
        self.id
    }

    fn is_alive(&self, owner: u64) -> bool {
        usize::try_from(owner)
            .ok()
            .filter(|&i| i >= 1)
            .and_then(|i| self.table.dead.get(i))
            .is_some_and(|dead| !dead.load(Ordering::Acquire))
    }

    /// Asks about the holder at every failed attempt. loom does not preempt a thread between
    /// its own spins (a spin yields until another thread moves), so with the default (ask
    /// every second attempt) it would rarely see a liveness answer change between attempts.
    fn patience(&self) -> Patience {
        Patience {
            spins: 1,
            attempts: 3,
            check_every: 1,
            budget_ns: 0,
        }
    }
}
