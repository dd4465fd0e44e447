//! Which process image a mapping belongs to: its fork generation and its credentials.
//!
//! Mappings are made with `MADV_DONTFORK`, so a forked child does not inherit them (a worker
//! that drops privileges after fork must not be able to write into root's cache). The child
//! must then never touch, or unmap, the addresses: a `pthread_atfork` child handler bumps a
//! process-wide fork generation, and every operation compares it with the one recorded at
//! mapping time (one relaxed load on the hit path). Credentials are re-read with system calls
//! on the write paths only, and only by processes that could change them (see
//! `docs/shared-backend.md`).

use super::flights::{Liveness, Me};
use crate::sync::{yield_now, AtomicU64, AtomicU8, Ordering};

/// Forks of this process image so far (bumped in each child).
static FORKS: AtomicU64 = AtomicU64::new(0);
/// Whether the child handler is installed: [`UNTRIED`], [`INSTALLING`], [`WATCHING`] (then
/// mappings may be `MADV_DONTFORK`) or [`FAILED`].
static HANDLER: AtomicU8 = AtomicU8::new(UNTRIED);
const UNTRIED: u8 = 0;
const INSTALLING: u8 = 1;
const WATCHING: u8 = 2;
const FAILED: u8 = 3;

extern "C" fn forked() {
    // Only an atomic add: safe in the child of a multi-threaded parent.
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// Installs the fork handler once; false if it could not be (mappings are then inherited,
/// as without this module). Threads arriving while another installs it wait for the
/// outcome, so no mapping is made inheritable by mistake.
pub(crate) fn watch_forks() -> bool {
    loop {
        match HANDLER.compare_exchange(UNTRIED, INSTALLING, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                // SAFETY: registers a handler that only adds to an atomic; it is a static
                // function, valid for the whole process.
                let status = unsafe { libc::pthread_atfork(None, None, Some(forked)) };
                let outcome = if status == 0 { WATCHING } else { FAILED };
                HANDLER.store(outcome, Ordering::Release);
                return outcome == WATCHING;
            }
            Err(INSTALLING) => yield_now(),
            Err(outcome) => return outcome == WATCHING,
        }
    }
}

/// This process image's fork generation: 0 in the process that installed the handler,
/// bumped in each forked child (see [`watch_forks`]). One relaxed load.
#[inline(always)]
pub(crate) fn forks() -> u64 {
    FORKS.load(Ordering::Relaxed)
}

/// The real, effective (and on Linux saved) user and group ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Credentials {
    users: [libc::uid_t; 3],
    groups: [libc::gid_t; 3],
}

impl Credentials {
    /// This process's credentials now (two system calls on Linux, four elsewhere).
    pub(crate) fn current() -> Self {
        let (mut users, mut groups) = ([0; 3], [0; 3]);
        #[cfg(target_os = "linux")]
        // SAFETY: each pointer is to a distinct, writable id of the right type.
        unsafe {
            let [ru, eu, su] = &mut users;
            let [rg, eg, sg] = &mut groups;
            libc::getresuid(ru, eu, su);
            libc::getresgid(rg, eg, sg);
        }
        #[cfg(not(target_os = "linux"))]
        // SAFETY: these calls have no preconditions and cannot fail.
        unsafe {
            users[..2].copy_from_slice(&[libc::getuid(), libc::geteuid()]);
            groups[..2].copy_from_slice(&[libc::getgid(), libc::getegid()]);
        }
        Self { users, groups }
    }

    /// True when these credentials can never change in this process image: every user id
    /// equal, every group id equal, and neither `CAP_SETUID` nor `CAP_SETGID` permitted
    /// (the permitted set cannot grow without `exec`). Linux only; elsewhere false.
    fn frozen(&self) -> bool {
        let same = |ids: &[u32; 3]| ids.iter().all(|&id| id == ids[0]);
        cfg!(target_os = "linux")
            && same(&self.users)
            && same(&self.groups)
            && permitted_capabilities().is_some_and(|caps| caps & SET_IDS == 0)
    }
}

/// `CAP_SETGID` (6) and `CAP_SETUID` (7).
const SET_IDS: u64 = 1 << 6 | 1 << 7;

/// The permitted capability set, from `/proc/self/status` (`None` if unreadable).
fn permitted_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("CapPrm:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

/// The process image (fork generation and credentials) that made a mapping.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Incarnation {
    forks: u64,
    credentials: Credentials,
    /// The credentials cannot change (see [`Credentials::frozen`]): no need to re-read them.
    frozen: bool,
}

impl Incarnation {
    /// This process image now.
    pub(crate) fn current() -> Self {
        let credentials = Credentials::current();
        Self {
            forks: FORKS.load(Ordering::Relaxed),
            credentials,
            frozen: credentials.frozen(),
        }
    }

    /// True in the process image that made it, false in a forked child: then the mapping is
    /// gone (`MADV_DONTFORK`) and its addresses must not be touched or unmapped.
    #[inline(always)]
    pub(crate) fn same_fork(&self) -> bool {
        self.forks == FORKS.load(Ordering::Relaxed)
    }

    /// Same fork and the same user and group ids (system calls, unless the credentials are
    /// frozen: for the write paths, not for every lookup).
    pub(crate) fn is_current(&self) -> bool {
        self.same_fork() && (self.frozen || self.credentials == Credentials::current())
    }
}

/// This process as the flight board records leaders: its pid and start time.
pub fn flight_me() -> Me {
    let pid = std::process::id();
    Me {
        pid,
        stamp: ProcessLiveness.stamp_of(pid).unwrap_or(0),
    }
}

/// Liveness of flight leaders by their pid and start time (Linux: `/proc/<pid>/stat`; a
/// zombie is dead. Elsewhere: `kill(pid, 0)`, stamps unknown).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessLiveness;

impl Liveness for ProcessLiveness {
    fn stamp_of(&self, pid: u32) -> Option<u64> {
        let signed = libc::pid_t::try_from(pid).ok().filter(|&p| p > 0)?;
        #[cfg(target_os = "linux")]
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // Fields after the command name (which may hold spaces and parentheses):
            // state is the 3rd field, starttime the 22nd.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if matches!(fields.first(), Some(&"Z") | Some(&"X") | None) {
                return None;
            }
            return Some(fields.get(19).and_then(|s| s.parse().ok()).unwrap_or(0));
        }
        // SAFETY: signal 0 sends nothing; kill only checks that process `signed` (> 0)
        // exists.
        let status = unsafe { libc::kill(signed, 0) };
        let alive =
            status == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
        alive.then_some(0)
    }
}

/// The processes this one descends from, nearest first (Linux: from `/proc`; elsewhere
/// only the parent). A process never waits on a flight an ancestor leads: the ancestor may
/// be waiting for it (a pool started while computing).
pub fn ancestors() -> Vec<u32> {
    let mut chain = Vec::new();
    // SAFETY: getppid has no preconditions and cannot fail.
    let mut pid = unsafe { libc::getppid() } as u32;
    while pid > 1 && chain.len() < 64 {
        chain.push(pid);
        if !cfg!(target_os = "linux") {
            break;
        }
        let Some(parent) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let rest = stat.rsplit_once(')')?.1.to_owned();
                rest.split_whitespace().nth(1)?.parse::<u32>().ok()
            })
        else {
            break;
        };
        pid = parent;
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::{watch_forks, Credentials, Incarnation};

    /// Runs `child` in a forked child and returns its answer.
    fn in_child(child: impl FnOnce() -> bool) -> bool {
        let mut fds = [0; 2];
        // SAFETY: a pipe, then a fork whose child runs `child`, writes 8 bytes and exits.
        unsafe {
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            let pid = libc::fork();
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let ok = u64::from(child());
                libc::write(fds[1], (&ok as *const u64).cast(), 8);
                libc::_exit(0);
            }
            let mut ok = 0u64;
            assert_eq!(libc::read(fds[0], (&mut ok as *mut u64).cast(), 8), 8);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            libc::close(fds[0]);
            libc::close(fds[1]);
            ok == 1
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn only_a_process_that_cannot_change_its_ids_has_frozen_credentials() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to drop privileges");
            return;
        }
        assert!(!Credentials::current().frozen(), "root may setuid");
        let dropped = in_child(|| {
            // SAFETY: plain system calls in a single-threaded child.
            let ok = unsafe {
                libc::setgroups(0, std::ptr::null()) == 0
                    && libc::setgid(65534) == 0
                    && libc::setuid(65534) == 0
            };
            ok && Credentials::current().frozen()
        });
        assert!(dropped, "nobody with no capabilities cannot change ids");
        let half = in_child(|| {
            // SAFETY: plain system calls in a single-threaded child.
            let ok = unsafe { libc::setresuid(65534, 65534, 0) == 0 };
            ok && !Credentials::current().frozen()
        });
        assert!(half, "a saved uid of root can be taken back");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_flight_leader_is_alive_while_it_runs_and_dead_once_exited_or_a_zombie() {
        use super::super::flights::Liveness;
        use super::{ancestors, flight_me, ProcessLiveness};
        let me = flight_me();
        assert_ne!(me.stamp, 0, "a start time from /proc");
        assert_eq!(ProcessLiveness.stamp_of(me.pid), Some(me.stamp));
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() } as u32;
        assert_eq!(ancestors().first().copied(), Some(parent));
        // SAFETY: a child that exits at once; reaped below.
        let child = unsafe { libc::fork() };
        assert!(child >= 0);
        if child == 0 {
            // SAFETY: exiting the child without running the parent's handlers.
            unsafe { libc::_exit(0) };
        }
        let pid = child as u32;
        // A zombie until reaped: dead already.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while ProcessLiveness.stamp_of(pid).is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "a zombie counted as alive"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
        assert_eq!(ProcessLiveness.stamp_of(pid), None);
        assert_eq!(ProcessLiveness.stamp_of(0), None);
    }

    #[test]
    fn a_forked_child_is_another_incarnation() {
        assert!(watch_forks());
        let parent = Incarnation::current();
        assert!(parent.same_fork() && parent.is_current());
        let child_saw = in_child(|| !parent.same_fork() && Incarnation::current().same_fork());
        assert!(child_saw, "the child saw a new fork generation");
        assert!(parent.same_fork(), "the parent is still the same image");
    }
}
