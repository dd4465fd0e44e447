//! Single-flight for threads: concurrent misses for one key run the function once.
//!
//! A miss joins the key's *flight* (the one computation under way for it) or, if there is
//! none, leads a new one. The leader calls the function, stores the value, then *lands* the
//! flight: it leaves the table and every follower wakes with the value, or with the
//! exception (not cached). A leader that stops for a reason that is not an `Exception`
//! (`KeyboardInterrupt`, `SystemExit`, a Rust panic) lands it as *retry*: the followers
//! go round again and one of them leads.
//!
//! **No deadlock.** One process-wide wait-for graph holds an edge `waiter -> owner` for each
//! thread blocked on a flight. A thread adds its edge only after checking, under the graph's
//! mutex, that following edges from the flight's owner never reaches itself; otherwise it
//! computes the value itself without waiting (recursion on one key, mutual recursion across
//! threads). Since every check-and-add is serialized by that mutex, a cycle of blocked
//! threads would need an edge added while the rest of the cycle was present, which the
//! check forbids. A thread has at most one edge, so the graph is a set of chains.
//!
//! **No lock held while waiting or running Python code.** The table's mutex guards only
//! pointer pushes and quick key comparisons (builtin scalars: no foreign code); keys that
//! need a foreign `__eq__` are compared after releasing it, like the store does (see
//! docs/architecture.md, "Foreign equality"). A follower blocks on its flight's condition
//! variable detached from the interpreter (the GIL released; on free-threaded builds it
//! does not stop the world from stopping), waking every [`SIGNAL_CHECK`] to let the main
//! thread's signal handlers run (Ctrl-C).
//!
//! **fork.** A forked child has only the forking thread: every other thread's flight would
//! never land there, and the mutexes a vanished thread held stay locked. The flight tables
//! and the wait-for graph are therefore per process image ([`ForkLocal`]): the child's first
//! miss starts empty ones and leaks the parent's untouched. A flight this thread led when it
//! forked lands in the child without touching the parent's table or waiters; a thread that
//! forks while waiting (from a signal handler) stops waiting and goes round again.
//!
//! Python objects held by flights (keys, values, exceptions) are only dropped by attached
//! threads and never under one of these mutexes: dropping may run a finalizer.

use super::object::{ErrSet, PyObj, PyResult};
use crate::fork::{self, ForkLocal};
use crate::py::ffi;
use crate::sync::{AtomicU64, Condvar, Mutex, MutexGuard, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

/// How often a blocked follower reattaches to run pending signal handlers.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Rounds of "compare foreign keys outside the lock, look again" before a call stops
/// looking for an equal flight and computes on its own.
const MATCH_ROUNDS: usize = 8;

/// A flight key's equality, split like the store's: decided under the table lock when no
/// foreign code can run, else outside it.
pub trait FlightKey {
    /// Equality decided without running foreign code, else `None`.
    fn quick_eq(&self, other: &Self) -> Option<bool>;
    /// Equality that may run Python code (and raise); called with no lock held.
    fn foreign_eq(&self, other: &Self) -> PyResult<bool>;
}

impl FlightKey for Vec<u8> {
    fn quick_eq(&self, other: &Self) -> Option<bool> {
        Some(self == other)
    }

    fn foreign_eq(&self, other: &Self) -> PyResult<bool> {
        Ok(self == other)
    }
}

/// What a flight ended with.
enum State {
    Running,
    Value(PyObj),
    /// An `Exception` instance, raised again in every follower.
    Error(PyObj),
    /// Ended without a result to share: followers go round again.
    Retry,
}

/// One computation under way.
struct Flight<K> {
    key: K,
    hash: u64,
    /// The fork generation of the table it is in.
    generation: u64,
    /// The leading thread ([`thread_id`]); changed once if the lead is handed to another
    /// thread ([`Lead::adopt`]: a background refresh).
    owner: AtomicU64,
    state: Mutex<Landing>,
    landed: Condvar,
}

/// A flight's outcome and how many threads are blocked waiting for it.
struct Landing {
    state: State,
    /// Only a landing with waiters notifies: with std's futex condvar a notify is always a
    /// system call, which would otherwise be paid by every miss.
    waiters: u32,
}

/// The flights under way in one cache.
type Running<K> = Mutex<Vec<Arc<Flight<K>>>>;

/// The flights of one cache, per process image.
pub struct Flights<K> {
    running: ForkLocal<Running<K>>,
}

impl<K> Default for Flights<K> {
    fn default() -> Self {
        Flights {
            running: ForkLocal::new(),
        }
    }
}

/// What a missing call does next ([`Flights::take_turn`]).
pub enum Turn<'a, K> {
    /// No equal flight: compute, then report through [`Lead`].
    Lead(Lead<'a, K>),
    /// An equal flight landed with this value.
    Value(PyObj),
    /// Compute without a flight: waiting could deadlock (this thread is, directly or
    /// through a chain of waits, what the flight waits for), or equality stayed unsettled.
    Alone,
}

/// The right and duty to land a flight. Dropped without [`Lead::succeed`] or
/// [`Lead::fail`] (a panic, an early return), it lands the flight as retry.
pub struct Lead<'a, K> {
    flights: &'a Flights<K>,
    flight: Option<Arc<Flight<K>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic under these locks leaves consistent data (single pushes and removals).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A process-unique number for the calling thread.
fn thread_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ID.with(|id| *id)
}

/// The wait-for graph: `(waiter, owner)` for every thread blocked on a flight (of this
/// process image).
static WAITS: ForkLocal<Mutex<Vec<(u64, u64)>>> = ForkLocal::new();

/// Records that `me` waits for `owner`, unless `owner` is `me` or (through a chain of
/// waits) waits for `me`: then false, and nothing is recorded.
fn start_waiting(me: u64, owner: u64) -> bool {
    let mut waits = lock(WAITS.get().0);
    let mut at = owner;
    // The graph is acyclic (this check keeps it so), so the walk ends; the bound is a guard.
    for _ in 0..=waits.len() {
        if at == me {
            return false;
        }
        match waits.iter().find(|(waiter, _)| *waiter == at) {
            Some(&(_, next)) => at = next,
            None => {
                waits.push((me, owner));
                return true;
            }
        }
    }
    false
}

/// Removes `me`'s edge once it stopped waiting.
fn stop_waiting(me: u64) {
    let mut waits = lock(WAITS.get().0);
    if let Some(i) = waits.iter().position(|(waiter, _)| *waiter == me) {
        waits.swap_remove(i);
    }
}

/// Runs `f` detached from the interpreter (the GIL released), reattaching afterwards even
/// if `f` panics. `f` must not touch Python objects.
pub(super) fn detached<R>(f: impl FnOnce() -> R) -> R {
    struct Reattach(*mut ffi::PyThreadState);
    impl Drop for Reattach {
        fn drop(&mut self) {
            // SAFETY: the state saved by the matching PyEval_SaveThread, on this thread.
            unsafe { ffi::PyEval_RestoreThread(self.0) };
        }
    }
    // SAFETY: callers are Python-facing code, so this thread is attached.
    let _reattach = Reattach(unsafe { ffi::PyEval_SaveThread() });
    f()
}

impl<K: FlightKey> Flights<K> {
    /// Joins `key`'s flight (waiting for it to land) or leads a new one.
    ///
    /// An error is an exception set on this thread: the shared one of a failed flight, one
    /// raised by a foreign `__eq__`, or one raised by a signal handler while waiting.
    pub fn take_turn(&self, key: K, hash: u64) -> PyResult<Turn<'_, K>> {
        self.turn(key, hash, true)
    }

    /// Leads a new flight for `key` if none is under way, without waiting for one: `None`
    /// when an equal flight exists (or equality stayed unsettled). The claim is atomic: of
    /// threads trying at once, exactly one leads.
    pub fn try_lead(&self, key: K, hash: u64) -> PyResult<Option<Lead<'_, K>>> {
        Ok(match self.turn(key, hash, false)? {
            Turn::Lead(lead) => Some(lead),
            Turn::Value(_) | Turn::Alone => None,
        })
    }

    /// [`Flights::take_turn`]; when not `wait`, an equal flight gives `Turn::Alone` at once.
    fn turn(&self, key: K, hash: u64, wait: bool) -> PyResult<Turn<'_, K>> {
        let me = thread_id();
        // Flights found unequal through a foreign `__eq__`; holding them keeps their
        // addresses from being reused by new flights.
        let mut unequal: Vec<Arc<Flight<K>>> = Vec::new();
        let mut rounds = 0;
        loop {
            // Fetched each round: a thread that forks while waiting (from a signal handler)
            // goes round again on its child's own table.
            let (running_now, generation) = self.running.get();
            let mut undecided = Vec::new();
            let mut found = None;
            {
                let mut running = lock(running_now);
                for flight in running.iter().filter(|f| f.hash == hash) {
                    if unequal.iter().any(|u| Arc::ptr_eq(u, flight)) {
                        continue;
                    }
                    match flight.key.quick_eq(&key) {
                        Some(true) => {
                            found = Some(flight.clone());
                            break;
                        }
                        Some(false) => {}
                        None => undecided.push(flight.clone()),
                    }
                }
                if found.is_none() && undecided.is_empty() {
                    let flight = Arc::new(Flight {
                        key,
                        hash,
                        generation,
                        owner: AtomicU64::new(me),
                        state: Mutex::new(Landing {
                            state: State::Running,
                            waiters: 0,
                        }),
                        landed: Condvar::new(),
                    });
                    running.push(flight.clone());
                    drop(running);
                    return Ok(Turn::Lead(Lead {
                        flights: self,
                        flight: Some(flight),
                    }));
                }
            }
            let flight = match found {
                Some(flight) => flight,
                None => {
                    let mut equal = None;
                    for flight in undecided {
                        if flight.key.foreign_eq(&key)? {
                            equal = Some(flight);
                            break;
                        }
                        unequal.push(flight);
                    }
                    match equal {
                        Some(flight) => flight,
                        None => {
                            rounds += 1;
                            if rounds == MATCH_ROUNDS {
                                return Ok(Turn::Alone);
                            }
                            continue;
                        }
                    }
                }
            };
            if !wait || !start_waiting(me, flight.owner.load(Ordering::Relaxed)) {
                return Ok(Turn::Alone);
            }
            let landing = flight.wait();
            stop_waiting(me);
            match landing? {
                State::Value(value) => return Ok(Turn::Value(value)),
                State::Error(exc) => {
                    raise_shared(&exc);
                    return Err(ErrSet);
                }
                // The flight left the table before landing, or this thread is now in a
                // forked child: look again.
                State::Retry | State::Running => {}
            }
        }
    }
}

impl<K> Flight<K> {
    /// Blocks, detached, until the flight lands; returns a copy of how it ended (never
    /// `Running`), or `Retry` in a child forked meanwhile. Err if a signal handler raised
    /// meanwhile.
    fn wait(&self) -> PyResult<State> {
        loop {
            let landed = detached(|| {
                let mut landing = lock(&self.state);
                landing.waiters += 1;
                let (mut landing, _) = self
                    .landed
                    .wait_timeout_while(landing, SIGNAL_CHECK, |l| {
                        matches!(l.state, State::Running)
                    })
                    .unwrap_or_else(PoisonError::into_inner);
                landing.waiters -= 1;
                !matches!(landing.state, State::Running)
            });
            if landed {
                break;
            }
            // SAFETY: attached again; runs pending handlers (main thread only), which may raise.
            if unsafe { ffi::PyErr_CheckSignals() } < 0 {
                return Err(ErrSet);
            }
            if fork::generation() != self.generation {
                // A handler forked: this flight's leader is not in this process.
                return Ok(State::Retry);
            }
        }
        // Cloning only increfs: no Python code runs under the lock.
        Ok(match &lock(&self.state).state {
            State::Value(v) => State::Value(v.clone()),
            State::Error(e) => State::Error(e.clone()),
            State::Retry | State::Running => State::Retry,
        })
    }
}

impl<K> Lead<'_, K> {
    /// Makes the calling thread the flight's owner: the lead was handed to it (a background
    /// refresh), so a wait on this flight now waits for this thread.
    pub fn adopt(&self) {
        if let Some(flight) = &self.flight {
            flight.owner.store(thread_id(), Ordering::Relaxed);
        }
    }

    /// Lands the flight with `value`; call after storing it, so that a call arriving after
    /// the flight left the table finds the value in the cache.
    pub fn succeed(mut self, value: &PyObj) {
        self.land(State::Value(value.clone()));
    }

    /// Lands the flight with the exception set on this thread, which stays set. Only an
    /// `Exception` is shared; anything else (`KeyboardInterrupt`, `SystemExit`, ...)
    /// belongs to this thread, and the followers retry.
    pub fn fail(mut self) {
        let exc = take_exception();
        // SAFETY: `exc` is a valid exception instance; PyExc_Exception is initialised.
        let shared =
            unsafe { ffi::PyErr_GivenExceptionMatches(exc.as_ptr(), ffi::PyExc_Exception) };
        let outcome = if shared != 0 {
            State::Error(exc.clone())
        } else {
            State::Retry
        };
        self.land(outcome);
        restore_exception(exc);
    }

    fn land(&mut self, outcome: State) {
        let Some(flight) = self.flight.take() else {
            return;
        };
        let (running, generation) = self.flights.running.get();
        if generation != flight.generation {
            // This thread forked while leading: the table and the waiters are the parent's
            // (left untouched, see `ForkLocal`); the child's callers never joined.
            return;
        }
        {
            let mut running = lock(running);
            if let Some(i) = running.iter().position(|f| Arc::ptr_eq(f, &flight)) {
                // Not the last reference (`flight` is one): nothing is dropped under the lock.
                running.swap_remove(i);
            }
        }
        let waiters = {
            let mut landing = lock(&flight.state);
            // Replaces `Running`, which holds no object.
            landing.state = outcome;
            landing.waiters
        };
        if waiters > 0 {
            flight.landed.notify_all();
        }
        // Dropped here, unlocked and attached: it may be the last reference to its objects.
        drop(flight);
    }
}

impl<'a, K> Lead<'a, K> {
    /// `lead` as two words (passed in registers through `cached_miss`); `[0, 0]` for none.
    pub fn into_words(lead: Option<Self>) -> [usize; 2] {
        let Some(mut lead) = lead else {
            return [0, 0];
        };
        let flight = lead.flight.take().map_or(std::ptr::null(), Arc::into_raw);
        [lead.flights as *const Flights<K> as usize, flight as usize]
    }

    /// The lead [`Lead::into_words`] made `words` of.
    ///
    /// # Safety
    /// `words` came from `into_words` of a lead of these flights, living for `'a`, and are
    /// used once.
    pub unsafe fn from_words([flights, flight]: [usize; 2]) -> Option<Self> {
        // SAFETY: as the caller promises: the flights' address, or 0 for none.
        let flights = unsafe { (flights as *const Flights<K>).as_ref() }?;
        let flight = (flight != 0).then(|| {
            // SAFETY: the reference `into_words` gave up, taken back once.
            unsafe { Arc::from_raw(flight as *const Flight<K>) }
        });
        Some(Lead { flights, flight })
    }
}

impl<K> Drop for Lead<'_, K> {
    fn drop(&mut self) {
        self.land(State::Retry);
    }
}

/// Takes the exception set on this thread (normalised, with its traceback attached).
fn take_exception() -> PyObj {
    #[cfg(Py_3_12)]
    // SAFETY: an exception is set (the caller saw an error), so the result is non-NULL.
    unsafe {
        PyObj::from_owned(ffi::PyErr_GetRaisedException()).expect("an exception is set")
    }
    #[cfg(not(Py_3_12))]
    // SAFETY: an exception is set; Fetch hands over three owned references (tb may be NULL)
    // and Normalize turns the value into an instance of the type.
    unsafe {
        let (mut tp, mut value, mut tb) = (
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        ffi::PyErr_Fetch(&mut tp, &mut value, &mut tb);
        ffi::PyErr_NormalizeException(&mut tp, &mut value, &mut tb);
        if !tb.is_null() {
            ffi::PyException_SetTraceback(value, tb);
            ffi::Py_DECREF(tb);
        }
        ffi::Py_XDECREF(tp);
        PyObj::from_owned(value).expect("an exception is set")
    }
}

/// Sets `exc` (an exception instance) as this thread's exception.
fn restore_exception(exc: PyObj) {
    #[cfg(Py_3_12)]
    // SAFETY: SetRaisedException steals the reference `into_ptr` hands over.
    unsafe {
        ffi::PyErr_SetRaisedException(exc.into_ptr())
    };
    #[cfg(not(Py_3_12))]
    // SAFETY: Restore steals three references: the type (new), the instance, its traceback
    // (new or NULL).
    unsafe {
        let value = exc.into_ptr();
        let tp = ffi::Py_TYPE(value) as *mut ffi::PyObject;
        ffi::Py_INCREF(tp);
        ffi::PyErr_Restore(tp, value, ffi::PyException_GetTraceback(value));
    }
}

/// Raises a failed flight's exception in a follower.
///
/// With the GIL every follower raises the leader's very instance, as
/// `concurrent.futures` does. Free-threaded 3.13 rewrites an exception's `__traceback__`
/// without a lock as it propagates, so threads must not raise one instance at once: each
/// follower raises its own `copy.copy` of it (same type, args and attributes), or the
/// instance itself if it cannot be copied.
fn raise_shared(exc: &PyObj) {
    #[cfg(Py_GIL_DISABLED)]
    if let Some(copy) = copy_exception(exc) {
        restore_exception(copy);
        return;
    }
    restore_exception(exc.clone());
}

/// `copy.copy(exc)`, or None (and no exception set) if that fails.
#[cfg(Py_GIL_DISABLED)]
fn copy_exception(exc: &PyObj) -> Option<PyObj> {
    // SAFETY: attached; every result is checked; a failure's exception is cleared.
    unsafe {
        let copied = PyObj::from_owned(ffi::PyImport_ImportModule(c"copy".as_ptr()))
            .and_then(|module| {
                PyObj::from_owned(ffi::PyObject_GetAttrString(
                    module.as_ptr(),
                    c"copy".as_ptr(),
                ))
            })
            .and_then(|copy| super::cached::call_owned(copy.as_ptr(), &[exc.as_ptr()], &[]));
        match copied {
            Ok(c) if ffi::PyExceptionInstance_Check(c.as_ptr()) != 0 => Some(c),
            Ok(_) => None,
            Err(ErrSet) => {
                ffi::PyErr_Clear();
                None
            }
        }
    }
}
