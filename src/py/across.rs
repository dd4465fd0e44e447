//! Single-flight between processes for the shared backend (`crate::shared::flights`).
//!
//! Only a thread that leads its key's flight in this process comes here, so a process has
//! at most one call per key on the board. Before computing it claims the key on the board;
//! if another process leads it, it waits (detached from the interpreter, parked on the
//! slot's futex, waking every [`POLL`] to run signal handlers and to check that the leader
//! lives) and then reads the value from the cache. The leads this thread holds are kept in a
//! thread-local list, landed by [`land`] when the call that claimed them finishes.
//!
//! A call never waits on: a flight of its own process (another path to the same key), one
//! an ancestor process leads (the ancestor may be waiting for this process: a pool started
//! by the function), one whose leader waits (through a chain of leaders) on a flight this
//! thread leads (a cycle), or, while this thread leads flights of other functions, for more
//! than [`NESTED_WAIT`] (a cycle through other boards, which this one cannot see). It then
//! computes on its own: at worst the function runs once more, never a hang.

use super::cached::{raise, step_tuple, Exc};
use super::flight::detached;
use super::object::{ErrSet, PyObj, PyResult};
use crate::clock;
use crate::codec::key_hash;
use crate::py::ffi;
use crate::shared::flights::{Claim, Me, Outcome, Seen, Ticket, Watch};
use crate::shared::{ancestors, flight_me, forks, ProcessLiveness};
use crate::sync::{park_at, AtomicU64, Ordering};
use std::cell::RefCell;
use std::time::{Duration, Instant};

use super::shared_backend::Store;

/// How long a waiter sleeps between checks of the leader and of pending signals.
const POLL: Duration = Duration::from_millis(50);
/// Claims and waits before a call gives up on the board and computes on its own (each
/// round ends with a landing or a takeover, so this is only reached under churn).
const ROUNDS: usize = 16;
/// The longest a thread that leads flights of other functions waits on one.
pub const NESTED_WAIT: Duration = Duration::from_millis(500);

/// A miss this thread computes, for the store at `store`.
pub struct Computing {
    store: usize,
    hash: u64,
    /// The flight it leads on the board, if any.
    pub ticket: Option<Ticket>,
    /// The store's clears when it began (its value is not stored after a clear).
    pub clears: Option<u64>,
}

thread_local! {
    static COMPUTING: RefCell<Vec<Computing>> = const { RefCell::new(Vec::new()) };
}

/// This process's identity on boards, computed again after a fork.
pub fn me() -> Me {
    static FORKS: AtomicU64 = AtomicU64::new(u64::MAX);
    static PID: AtomicU64 = AtomicU64::new(0);
    static STAMP: AtomicU64 = AtomicU64::new(0);
    let now = forks();
    if FORKS.load(Ordering::Acquire) == now {
        return Me {
            pid: PID.load(Ordering::Relaxed) as u32,
            stamp: STAMP.load(Ordering::Relaxed),
        };
    }
    let me = flight_me();
    PID.store(u64::from(me.pid), Ordering::Relaxed);
    STAMP.store(me.stamp, Ordering::Relaxed);
    FORKS.store(now, Ordering::Release);
    me
}

/// What one wait ended with.
pub enum Waited {
    /// The value, from the cache.
    Value(PyObj),
    /// Claim again.
    Again,
    /// Compute without the board.
    Alone,
    /// The leader died: this process leads now.
    Lead(Ticket),
}

/// Where a claim leaves a call.
pub enum Step {
    /// Compute without the board.
    Alone,
    /// Compute, then land this flight.
    Lead(Ticket),
    /// Another process leads the key: wait on this.
    Wait(Watch),
    /// The value, from the cache.
    Value(PyObj),
}

/// Before this thread computes the key hashing to `hash` (it leads the key's flight in its
/// process): notes the store's clears and, with `across`, claims the key on the board or
/// waits for the process that leads it. `lookup` reads the key uncounted. Returns the value
/// another process computed, or `None`: compute, then [`done`].
pub fn lead(
    store: &Store,
    hash: u64,
    across: bool,
    lookup: &dyn Fn() -> PyResult<Option<PyObj>>,
) -> PyResult<Option<PyObj>> {
    let me = me();
    let ticket = 'claimed: {
        if !across {
            break 'claimed None;
        }
        for _ in 0..ROUNDS {
            match claim(store, hash, me, lookup)? {
                Step::Alone => break 'claimed None,
                Step::Value(value) => return Ok(Some(value)),
                Step::Lead(ticket) => break 'claimed Some(ticket),
                Step::Wait(watch) => match wait(store, watch, me, lookup)? {
                    Waited::Value(value) => return Ok(Some(value)),
                    Waited::Again => {}
                    Waited::Alone => break 'claimed None,
                    Waited::Lead(ticket) => break 'claimed Some(ticket),
                },
            }
        }
        None
    };
    // Read as the computation begins (after any wait): a clear from now on wins.
    let clears = store.clears();
    let store = store as *const Store as usize;
    COMPUTING.with(|computing| {
        computing.borrow_mut().push(Computing {
            store,
            hash,
            ticket,
            clears,
        })
    });
    Ok(None)
}

/// One claim of the key hashing to `hash`. A lead looks the key up once more (a flight may
/// have landed between the call's lookup and its claim: the function would run twice).
pub fn claim(
    store: &Store,
    hash: u64,
    me: Me,
    lookup: &dyn Fn() -> PyResult<Option<PyObj>>,
) -> PyResult<Step> {
    Ok(match store.with_board(|board| board.claim(hash, me)) {
        None | Some(Claim::Full) => Step::Alone,
        Some(Claim::Wait(watch)) if may_wait_on(watch, me) => Step::Wait(watch),
        Some(Claim::Wait(_)) => Step::Alone,
        Some(Claim::Lead(ticket)) => match lookup() {
            Ok(None) => Step::Lead(ticket),
            Ok(Some(value)) => {
                store.with_board(|board| board.land(ticket, Outcome::Stored, me));
                Step::Value(value)
            }
            Err(err) => {
                store.with_board(|board| board.land(ticket, Outcome::Retry, me));
                return Err(err);
            }
        },
    })
}

/// Not a flight of this process or of an ancestor.
fn may_wait_on(watch: Watch, me: Me) -> bool {
    let leader = watch.leader();
    leader != me.pid && !ancestors().contains(&leader)
}

/// The miss this thread computes for the key hashing to `hash()` on `store`, once done
/// ([`lead`] noted it), so the caller can store its value and [`land`] its flight.
pub fn done(store: &Store, hash: impl FnOnce() -> u64) -> Option<Computing> {
    let address = store as *const Store as usize;
    COMPUTING.with(|computing| {
        let mut computing = computing.borrow_mut();
        if computing.is_empty() {
            return None;
        }
        let hash = hash();
        let at = computing
            .iter()
            .rposition(|c| c.store == address && c.hash == hash)?;
        Some(computing.remove(at))
    })
}

/// Ends a flight this process leads: its waiters learn `outcome`.
pub fn land(store: &Store, ticket: Ticket, outcome: Outcome) {
    let me = me();
    store.with_board(|board| board.land(ticket, outcome, me));
}

/// The flights this thread leads on `store`'s board, and whether it leads any elsewhere.
fn held(store: &Store) -> (Vec<Ticket>, bool) {
    let address = store as *const Store as usize;
    COMPUTING.with(|computing| {
        let computing = computing.borrow();
        let here: Vec<Ticket> = computing
            .iter()
            .filter(|c| c.store == address)
            .filter_map(|c| c.ticket)
            .collect();
        let elsewhere = computing
            .iter()
            .any(|c| c.store != address && c.ticket.is_some());
        (here, elsewhere)
    })
}

/// Waits for the flight `watch` (led by another process) to end.
fn wait(
    store: &Store,
    watch: Watch,
    me: Me,
    lookup: &dyn Fn() -> PyResult<Option<PyObj>>,
) -> PyResult<Waited> {
    let (held, nested) = held(store);
    let entered = store.with_board(|board| {
        board.waiting(watch, true);
        board.block(&held, Some(watch.slot));
    });
    if entered.is_none() {
        return Ok(Waited::Alone);
    }
    let began = Instant::now();
    let result = wait_loop(store, watch, me, &held, nested, began, lookup);
    store.with_board(|board| {
        board.block(&held, None);
        board.waiting(watch, false);
    });
    result
}

fn wait_loop(
    store: &Store,
    watch: Watch,
    me: Me,
    held: &[Ticket],
    nested: bool,
    began: Instant,
    lookup: &dyn Fn() -> PyResult<Option<PyObj>>,
) -> PyResult<Waited> {
    loop {
        let Some(address) = store.with_board(|board| board.wake_address(watch)) else {
            return Ok(Waited::Alone);
        };
        detached(|| park_at(address, watch.landings, POLL));
        // SAFETY: attached again; runs the main thread's pending signal handlers.
        if unsafe { ffi::PyErr_CheckSignals() } != 0 {
            return Err(ErrSet);
        }
        let bound = nested.then_some(NESTED_WAIT);
        if let Some(waited) = poll(store, watch, me, held, bound, began.elapsed(), lookup)? {
            return Ok(waited);
        }
    }
}

/// Checks a watched flight once: `None` while it runs (and waiting on it may go on: its
/// leader lives, no cycle closes, the wait so far, `waited`, is within `bound`).
pub fn poll(
    store: &Store,
    watch: Watch,
    me: Me,
    held: &[Ticket],
    bound: Option<Duration>,
    waited: Duration,
    lookup: &dyn Fn() -> PyResult<Option<PyObj>>,
) -> PyResult<Option<Waited>> {
    let Some(seen) = store.with_board(|board| board.seen(watch)) else {
        return Ok(Some(Waited::Alone));
    };
    let outcome = match seen {
        Seen::Running => {
            let step = store.with_board(|board| {
                if board.leader_is_dead(watch, &ProcessLiveness) {
                    Some(
                        board
                            .take_over(watch, me)
                            .map_or(Waited::Again, Waited::Lead),
                    )
                } else if board.closes_cycle(watch, held)
                    || bound.is_some_and(|bound| waited >= bound)
                {
                    Some(Waited::Alone)
                } else {
                    None
                }
            });
            return Ok(step.unwrap_or(Some(Waited::Alone)));
        }
        Seen::Landed(outcome) => Some(outcome),
        Seen::Moved => None,
    };
    Ok(Some(match lookup()? {
        Some(value) => Waited::Value(value),
        None if outcome == Some(Outcome::Alone) => Waited::Alone,
        None => Waited::Again,
    }))
}

/// One step of an async call's flight (`_across(key, token, nested)`, see
/// `Backend::across_step`): a first claim when `token` is `None`, else one check of the
/// flight it waits on.
pub fn step(
    store: &Store,
    key: &[u8],
    token: *mut ffi::PyObject,
    nested: bool,
    lookup: &dyn Fn() -> PyResult<Option<PyObj>>,
) -> PyResult<PyObj> {
    let (me, hash) = (me(), key_hash(key));
    let step = match Token::read(token)? {
        None => claim(store, hash, me, lookup)?,
        Some(Token { watch, began }) => {
            let waited = Duration::from_nanos(clock::monotonic_nanos().saturating_sub(began));
            let bound = nested.then_some(NESTED_WAIT);
            match poll(store, watch, me, &[], bound, waited, lookup)? {
                None => return step_tuple(2, Some(Token::object(watch, began)?)),
                Some(Waited::Value(value)) => Step::Value(value),
                Some(Waited::Again) => claim(store, hash, me, lookup)?,
                Some(Waited::Alone) => Step::Alone,
                Some(Waited::Lead(ticket)) => Step::Lead(ticket),
            }
        }
    };
    match step {
        Step::Alone => step_tuple(0, None),
        Step::Lead(ticket) => step_tuple(1, Some(Token::of_lead(ticket)?)),
        Step::Wait(watch) => step_tuple(2, Some(Token::object(watch, clock::monotonic_nanos())?)),
        Step::Value(value) => step_tuple(3, Some(value)),
    }
}

/// Lands the flight an async call led (`_across_land(key, token, outcome)`; outcome 1:
/// stored, 2: computed but not stored, else no value).
pub fn land_token(store: &Store, token: *mut ffi::PyObject, outcome: u64) -> PyResult<()> {
    let outcome = match outcome {
        1 => Outcome::Stored,
        2 => Outcome::Alone,
        _ => Outcome::Retry,
    };
    if let Some(Token { watch, .. }) = Token::read(token)? {
        let ticket = Ticket {
            slot: watch.slot,
            lead: watch.lead,
        };
        let me = me();
        store.with_board(|board| board.land(ticket, outcome, me));
    }
    Ok(())
}

/// An async call's place on a board between its steps, as a Python tuple
/// `(slot, lead, landings, began)`: what it waits on (or, for a lead, what it leads) and
/// since when (monotonic ns).
struct Token {
    watch: Watch,
    began: u64,
}

impl Token {
    fn object(watch: Watch, began: u64) -> PyResult<PyObj> {
        let words = [
            u64::from(watch.slot),
            watch.lead,
            u64::from(watch.landings),
            began,
        ];
        // SAFETY: new ints packed into a new tuple (which takes its own references); we
        // are attached.
        unsafe {
            let ints = words
                .iter()
                .map(|&w| PyObj::from_owned(ffi::PyLong_FromUnsignedLongLong(w)))
                .collect::<PyResult<Vec<_>>>()?;
            PyObj::from_owned(ffi::PyTuple_Pack(
                4,
                ints[0].as_ptr(),
                ints[1].as_ptr(),
                ints[2].as_ptr(),
                ints[3].as_ptr(),
            ))
        }
    }

    fn of_lead(ticket: Ticket) -> PyResult<PyObj> {
        let watch = Watch {
            slot: ticket.slot,
            lead: ticket.lead,
            landings: 0,
        };
        Self::object(watch, 0)
    }

    /// The token in `obj`; `None` for `None`. Anything else is a `TypeError`.
    fn read(obj: *mut ffi::PyObject) -> PyResult<Option<Self>> {
        // SAFETY: `obj` is a valid object (a method argument); tuple items are borrowed
        // from it, and each int conversion reports failure through the exception state.
        unsafe {
            if obj == ffi::Py_None() {
                return Ok(None);
            }
            if ffi::PyTuple_Check(obj) == 0 || ffi::PyTuple_Size(obj) != 4 {
                return Err(raise(Exc::Type, c"_across: a token is a 4-tuple"));
            }
            let mut words = [0u64; 4];
            for (i, word) in words.iter_mut().enumerate() {
                *word =
                    ffi::PyLong_AsUnsignedLongLong(ffi::PyTuple_GetItem(obj, i as ffi::Py_ssize_t));
                if !ffi::PyErr_Occurred().is_null() {
                    return Err(ErrSet);
                }
            }
            let [slot, lead, landings, began] = words;
            let slot = u32::try_from(slot)
                .ok()
                .filter(|&s| (s as usize) < crate::shared::flights::SLOTS)
                .ok_or_else(|| raise(Exc::Type, c"_across: not a board slot"))?;
            Ok(Some(Self {
                watch: Watch {
                    slot,
                    lead,
                    landings: landings as u32,
                },
                began,
            }))
        }
    }
}
