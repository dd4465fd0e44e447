//! shuttle model of single-flight across processes (`warp_cache::shared::flights`): several
//! "processes" miss one key at once; one claims it and computes, the others wait on its
//! slot and read the value from the "cache" once it lands. The leader may die mid-flight
//! (its death flag is set after its last store, as the kernel reports an exit): a waiter
//! must take the flight over and finish it. Properties: everyone alive ends with the
//! value; the function runs once, or twice when the first leader died; nobody waits
//! forever (shuttle fails a schedule that exceeds its step bound).

use crate::owner::Processes;
use crate::Arc;
use shuttle::rand::{thread_rng, Rng};
use shuttle::thread;
use warp_cache::shared::flights::{Board, Claim, Liveness, Me, Outcome, Seen, BOARD_WORDS};
use warp_cache::shared::LockOwner;
use warp_cache::sync::{AtomicU64, Ordering};

const PROCESSES: u64 = 4;
const KEY: u64 = 0x5eed_0000_0000_0042;
const VALUE: u64 = 42;

/// The processes' liveness, as the board asks for it.
struct Table(crate::owner::Process);

impl Liveness for Table {
    fn stamp_of(&self, pid: u32) -> Option<u64> {
        self.0.is_alive(u64::from(pid)).then_some(0)
    }
}

/// What the processes share: the board, the cache (0 = no entry) and a count of
/// computations.
struct World {
    board: Box<[AtomicU64]>,
    cache: AtomicU64,
    computed: AtomicU64,
}

/// How a process deviates from the protocol (teeth: the model must catch each).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bug {
    None,
    /// The leader lands before it stores the value.
    LandsBeforeStoring,
    /// Waiters never ask whether the leader lives.
    TrustsTheLeader,
}

/// One process's call: the value it ends with, or `None` if it died.
fn call(world: &World, processes: &Processes, id: u64, may_die: bool, bug: Bug) -> Option<u64> {
    let board = Board::new(&world.board).expect("board words");
    let me = Me {
        pid: id as u32,
        stamp: 0,
    };
    let liveness = Table(processes.owner(id));
    let compute = |ticket| {
        world.computed.fetch_add(1, Ordering::AcqRel);
        if may_die && thread_rng().gen_bool(0.5) {
            processes.die(id);
            return None;
        }
        if bug == Bug::LandsBeforeStoring {
            board.land(ticket, Outcome::Stored, me);
            world.cache.store(VALUE, Ordering::Release);
        } else {
            world.cache.store(VALUE, Ordering::Release);
            board.land(ticket, Outcome::Stored, me);
        }
        Some(VALUE)
    };
    loop {
        match world.cache.load(Ordering::Acquire) {
            0 => {}
            value => return Some(value),
        }
        let watch = match board.claim(KEY, me) {
            Claim::Full => unreachable!("one key cannot fill the board"),
            Claim::Lead(ticket) => {
                // The second look after a claim.
                if world.cache.load(Ordering::Acquire) == VALUE {
                    board.land(ticket, Outcome::Stored, me);
                    return Some(VALUE);
                }
                return compute(ticket);
            }
            Claim::Wait(watch) => watch,
        };
        // Until it lands or moves on: then look again.
        while board.seen(watch) == Seen::Running {
            if bug != Bug::TrustsTheLeader && board.leader_is_dead(watch, &liveness) {
                if let Some(ticket) = board.take_over(watch, me) {
                    return compute(ticket);
                }
                break;
            }
            thread::yield_now();
        }
    }
}

fn stampede(bug: Bug) {
    crate::check(move || {
        let world = Arc::new(World {
            board: (0..BOARD_WORDS).map(|_| AtomicU64::new(0)).collect(),
            cache: AtomicU64::new(0),
            computed: AtomicU64::new(0),
        });
        let processes = Processes::new(PROCESSES);
        // Process 1 may die if it leads.
        let handles: Vec<_> = (1..=PROCESSES)
            .map(|id| {
                let (world, processes) = (world.clone(), processes.clone());
                thread::spawn(move || call(&world, &processes, id, id == 1, bug))
            })
            .collect();
        let results: Vec<Option<u64>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let died = results.iter().filter(|r| r.is_none()).count() as u64;
        assert!(
            results.iter().flatten().all(|&v| v == VALUE),
            "a process ended with a wrong value"
        );
        let computed = world.computed.load(Ordering::Acquire);
        assert!(
            computed <= 1 + died,
            "computed {computed} times with {died} leader deaths"
        );
    });
}

#[test]
fn processes_missing_one_key_compute_it_once_even_if_the_leader_dies() {
    stampede(Bug::None);
}

/// Teeth: landing before storing sends the waiters round again to find no value, and one
/// of them computes it a second time.
#[test]
#[should_panic(expected = "leader deaths")]
fn landing_before_storing_is_caught() {
    stampede(Bug::LandsBeforeStoring);
}

/// Teeth: waiters that never check the leader wait forever for a dead one.
#[test]
#[should_panic(expected = "exceeded max_steps")]
fn waiting_on_a_dead_leader_is_caught() {
    stampede(Bug::TrustsTheLeader);
}
