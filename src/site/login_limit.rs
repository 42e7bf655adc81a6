//! Bounds on console logins, so that password guessing can neither exhaust the daemon's memory
//! and CPU (each Argon2id verification takes 19 MiB and tens of milliseconds) nor go on at speed:
//!
//! - at most [`MAX_CONCURRENT`] verifications run at once; a login that cannot start one within
//!   [`QUEUE_WAIT`] is answered 429;
//! - every failure counts against the user name and against the client address; after
//!   [`FREE_FAILURES`] in a row, each key is locked out for 2, 4, 8, ... seconds, at most
//!   [`MAX_LOCKOUT`] (OWASP's "exponential back-off" guidance); a success clears the user's and
//!   the address's count;
//! - a locked-out login is refused before any verification (429 with the seconds to wait).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::SiteError;

/// Verifications allowed at once (the machine's cores are the measure: 2 here).
pub const MAX_CONCURRENT: usize = 2;
/// How long a login waits for a verification slot before it is refused.
pub const QUEUE_WAIT: Duration = Duration::from_secs(3);
/// Failures in a row allowed before back-off begins.
pub const FREE_FAILURES: u32 = 5;
/// The longest lockout.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(900);
/// Keys kept at most (oldest unlocked ones are forgotten first).
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    until: Instant,
    last: Instant,
}

#[derive(Default)]
struct State {
    running: usize,
    failures: HashMap<String, Failures>,
}

/// The limiter of one daemon.
#[derive(Default)]
pub struct LoginLimiter {
    state: Mutex<State>,
    freed: Condvar,
}

/// A held verification slot; released on drop.
pub struct Permit<'a> {
    limiter: &'a LoginLimiter,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.limiter.lock().running -= 1;
        self.limiter.freed.notify_one();
    }
}

fn too_many(wait: Duration) -> SiteError {
    SiteError::TooManyRequests(format!("too many login attempts; try again in {} s", wait.as_secs().max(1)))
}

impl LoginLimiter {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admit a login for `keys` (the user name and the client address): refused (429) while a
    /// key is locked out, or when no verification slot frees within [`QUEUE_WAIT`].
    pub fn admit(&self, keys: &[String]) -> Result<Permit<'_>, SiteError> {
        let deadline = Instant::now() + QUEUE_WAIT;
        let mut st = self.lock();
        loop {
            // Checked again after every wait: failures recorded meanwhile lock a queued login out.
            let now = Instant::now();
            if let Some(until) = keys.iter().filter_map(|k| st.failures.get(k)).map(|f| f.until).filter(|u| *u > now).max() {
                return Err(too_many(until - now));
            }
            if st.running < MAX_CONCURRENT {
                break;
            }
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                return Err(too_many(Duration::from_secs(1)));
            }
            st = self.freed.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        st.running += 1;
        Ok(Permit { limiter: self })
    }

    /// Record the outcome of an admitted login.
    pub fn record(&self, keys: &[String], ok: bool) {
        let now = Instant::now();
        let mut st = self.lock();
        for k in keys {
            if ok {
                st.failures.remove(k);
                continue;
            }
            let f = st.failures.entry(k.clone()).or_insert(Failures { count: 0, until: now, last: now });
            f.count = f.count.saturating_add(1);
            f.last = now;
            if f.count > FREE_FAILURES {
                let exp = (f.count - FREE_FAILURES).min(20);
                f.until = now + Duration::from_secs(1u64 << exp).min(MAX_LOCKOUT);
            }
        }
        if st.failures.len() > MAX_KEYS {
            st.failures.retain(|_, f| f.until > now || now.duration_since(f.last) < MAX_LOCKOUT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_per_key_and_a_success_clears_them() {
        let l = LoginLimiter::default();
        let keys = vec!["user:admin".to_string(), "addr:192.0.2.1".to_string()];
        for _ in 0..FREE_FAILURES {
            drop(l.admit(&keys).expect("free attempts"));
            l.record(&keys, false);
        }
        drop(l.admit(&keys).expect("the last free attempt"));
        l.record(&keys, false);
        assert!(matches!(l.admit(&keys), Err(SiteError::TooManyRequests(_))), "locked out");
        // Another user from another address is not affected.
        let other = vec!["user:alice".to_string(), "addr:192.0.2.2".to_string()];
        drop(l.admit(&other).expect("others go on"));
        // Once the lockout passed, a success clears the count.
        std::thread::sleep(Duration::from_millis(2100));
        drop(l.admit(&keys).expect("after the back-off"));
        l.record(&keys, true);
        assert!(l.lock().failures.is_empty());
    }

    #[test]
    fn at_most_two_verifications_run_at_once() {
        let l = LoginLimiter::default();
        let a = l.admit(&[]).expect("one");
        let b = l.admit(&[]).expect("two");
        let t0 = Instant::now();
        assert!(matches!(l.admit(&[]), Err(SiteError::TooManyRequests(_))));
        assert!(t0.elapsed() >= QUEUE_WAIT);
        drop(a);
        let _c = l.admit(&[]).expect("a slot freed");
        drop(b);
    }
}
