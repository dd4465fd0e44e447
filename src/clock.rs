//! Time for TTLs: a system-wide monotonic clock in nanoseconds.
//!
//! `CLOCK_MONOTONIC` is shared by every process on the machine, so deadlines written by one
//! process mean the same to another (the shared backend relies on this).

/// Nanoseconds on the system's monotonic clock.
#[cfg(unix)]
pub fn monotonic_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC exists on every unix we
    // build for, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Nanoseconds since the first call in this process (Windows has only the memory backend).
#[cfg(not(unix))]
pub fn monotonic_nanos() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static BASE: OnceLock<Instant> = OnceLock::new();
    // Start at 1 so that "0" is never a valid reading.
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

/// The time to compare deadlines with: the clock with a TTL; without one every deadline is
/// "never", so the clock is not read at all (it would cost every hit a clock read).
#[inline]
pub fn now_for(ttl_nanos: Option<u64>) -> u64 {
    if ttl_nanos.is_some() {
        monotonic_nanos()
    } else {
        0
    }
}

/// The deadline `ttl_nanos` after `now`, or `u64::MAX` (never) without a TTL.
pub fn deadline(now: u64, ttl_nanos: Option<u64>) -> u64 {
    ttl_nanos.map_or(u64::MAX, |ttl| now.saturating_add(ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_moves_forward() {
        let a = monotonic_nanos();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = monotonic_nanos();
        assert!(b >= a + 1_000_000, "{a} then {b}");
    }

    #[test]
    fn deadline_saturates_and_never_means_max() {
        assert_eq!(deadline(5, None), u64::MAX);
        assert_eq!(deadline(5, Some(10)), 15);
        assert_eq!(deadline(u64::MAX - 1, Some(10)), u64::MAX);
    }
}
