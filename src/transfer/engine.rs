//! Requests in flight, adapted to the link: the [`Limiter`] every push and pull takes a
//! permit from before each request that moves chunk data.
//!
//! A transfer starts at [`START`] requests in flight (or the cap, if lower) and, every
//! [`WINDOW`], compares the bytes completed with the previous window's: while one more step
//! of concurrency (×1.5) still raised throughput by at least [`GAIN`], it keeps growing, up to
//! the cap (`-j`); once a step stops paying it holds, and probes again after [`HOLD`]. A
//! throttling answer from the store (HTTP 429, S3 `SlowDown`) halves the limit at once and
//! holds it. High-latency links (every request waits tens of milliseconds for its first byte)
//! so get many requests in flight without `-j`, and a loopback or throttled store is not
//! flooded. The bytes in flight stay bounded by each transfer's own byte budget, whatever the
//! limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// Requests in flight when a transfer starts (0.1.0's fixed default).
pub const START: usize = 16;
/// Fewest requests in flight after backing off.
pub const MIN: usize = 2;
/// How often throughput is measured and the limit reconsidered.
pub const WINDOW: Duration = Duration::from_millis(250);
/// The least relative throughput gain for which a step of concurrency counts as paying.
pub const GAIN: f64 = 0.05;
/// How long a limit is held after growth stopped paying or the store throttled.
pub const HOLD: Duration = Duration::from_secs(3);

/// An adaptive bound on requests in flight; shared by all files of one transfer.
pub struct Limiter {
    sem: Semaphore,
    cap: usize,
    /// Throttling answers seen by the remote so far (shared with it), if known.
    throttles: Option<Arc<AtomicU64>>,
    ctl: Mutex<Control>,
}

#[derive(Debug)]
struct Control {
    limit: usize,
    /// Permits to retire as they are released (the limit was lowered below what is out).
    retire: usize,
    window_start: Instant,
    window_bytes: u64,
    /// Throughput of the last window, bytes per second.
    last_rate: f64,
    growing: bool,
    hold_until: Option<Instant>,
    throttles_seen: u64,
}

/// A request slot; returned (or retired, if the limit was lowered) when dropped.
pub struct Permit<'a> {
    permit: Option<SemaphorePermit<'a>>,
    limiter: &'a Limiter,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let permit = self.permit.take().expect("held until dropped");
        let mut ctl = self.limiter.ctl.lock().expect("limiter lock");
        if ctl.retire > 0 {
            ctl.retire -= 1;
            permit.forget();
        }
    }
}

impl Limiter {
    /// At most `cap` requests in flight (at least one); `throttles` is the remote's counter
    /// of throttling answers ([`crate::remote::Remote::throttles`]).
    pub fn new(cap: usize, throttles: Option<Arc<AtomicU64>>) -> Limiter {
        let cap = cap.max(1);
        let limit = START.min(cap);
        let seen = throttles.as_ref().map_or(0, |t| t.load(Ordering::Relaxed));
        Limiter {
            sem: Semaphore::new(limit),
            cap,
            throttles,
            ctl: Mutex::new(Control {
                limit,
                retire: 0,
                window_start: Instant::now(),
                window_bytes: 0,
                last_rate: 0.0,
                growing: true,
                hold_until: None,
                throttles_seen: seen,
            }),
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.ctl.lock().expect("limiter lock").limit
    }

    /// Waits for a request slot.
    pub async fn acquire(&self) -> Permit<'_> {
        let permit = self.sem.acquire().await.expect("never closed");
        Permit {
            permit: Some(permit),
            limiter: self,
        }
    }

    /// Records `bytes` moved by a finished request, and at each window's end reconsiders
    /// the limit.
    pub fn record(&self, bytes: u64) {
        self.record_at(bytes, Instant::now());
    }

    fn record_at(&self, bytes: u64, now: Instant) {
        let mut ctl = self.ctl.lock().expect("limiter lock");
        ctl.window_bytes += bytes;
        let elapsed = now.saturating_duration_since(ctl.window_start);
        if elapsed < WINDOW {
            return;
        }
        let rate = ctl.window_bytes as f64 / elapsed.as_secs_f64();
        ctl.window_start = now;
        ctl.window_bytes = 0;
        let throttles = self
            .throttles
            .as_ref()
            .map_or(0, |t| t.load(Ordering::Relaxed));
        let target = if throttles > ctl.throttles_seen {
            ctl.throttles_seen = throttles;
            ctl.growing = false;
            ctl.hold_until = Some(now + HOLD);
            (ctl.limit / 2).max(MIN.min(self.cap))
        } else if ctl.growing {
            if ctl.last_rate > 0.0 && rate < ctl.last_rate * (1.0 + GAIN) {
                ctl.growing = false;
                ctl.hold_until = Some(now + HOLD);
                ctl.limit
            } else {
                grow(ctl.limit, self.cap)
            }
        } else if ctl.hold_until.is_some_and(|t| now >= t) {
            ctl.growing = true;
            ctl.hold_until = None;
            grow(ctl.limit, self.cap)
        } else {
            ctl.limit
        };
        ctl.last_rate = rate;
        if target != ctl.limit {
            tracing::debug!(
                "requests in flight: {} -> {target} (last {WINDOW:?}: {:.1} MB/s)",
                ctl.limit,
                rate / 1e6
            );
        }
        self.set_limit(&mut ctl, target);
    }

    fn set_limit(&self, ctl: &mut Control, target: usize) {
        if target > ctl.limit {
            let mut add = target - ctl.limit;
            let unretired = add.min(ctl.retire);
            ctl.retire -= unretired;
            add -= unretired;
            self.sem.add_permits(add);
        } else if target < ctl.limit {
            let cut = ctl.limit - target;
            // Free permits are taken away now; the rest as requests finish.
            let now = self.sem.forget_permits(cut);
            ctl.retire += cut - now;
        }
        ctl.limit = target;
    }
}

/// One step up: ×1.5, at least +1, at most `cap`.
fn grow(limit: usize, cap: usize) -> usize {
    (limit + (limit / 2).max(1)).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds one window of `rate` bytes per second ending at `*t`.
    fn window(l: &Limiter, t: &mut Instant, rate: f64) {
        *t += WINDOW;
        l.record_at((rate * WINDOW.as_secs_f64()) as u64, *t);
    }

    #[test]
    fn grows_while_throughput_grows_then_holds_and_probes() {
        let l = Limiter::new(64, None);
        let mut t = l.ctl.lock().unwrap().window_start;
        assert_eq!(l.limit(), 16);
        window(&l, &mut t, 100.0);
        assert_eq!(l.limit(), 24);
        window(&l, &mut t, 150.0);
        assert_eq!(l.limit(), 36);
        window(&l, &mut t, 200.0);
        assert_eq!(l.limit(), 54);
        window(&l, &mut t, 202.0); // +1%: the step did not pay
        assert_eq!(l.limit(), 54);
        window(&l, &mut t, 202.0);
        assert_eq!(l.limit(), 54, "held");
        for _ in 0..(HOLD.as_millis() / WINDOW.as_millis()) {
            window(&l, &mut t, 202.0);
        }
        assert_eq!(l.limit(), 64, "probed again after the hold, capped by -j");
    }

    #[test]
    fn throttling_halves_the_limit_and_permits_follow() {
        let throttles = Arc::new(AtomicU64::new(0));
        let l = Limiter::new(8, Some(throttles.clone()));
        let mut t = l.ctl.lock().unwrap().window_start;
        assert_eq!(l.limit(), 8);
        assert_eq!(l.sem.available_permits(), 8);
        let held: Vec<_> = (0..6)
            .map(|_| futures::executor::block_on(l.acquire()))
            .collect();
        throttles.fetch_add(1, Ordering::Relaxed);
        window(&l, &mut t, 100.0);
        assert_eq!(l.limit(), 4);
        // Two free permits were taken at once, two more retire as requests finish.
        assert_eq!(l.sem.available_permits(), 0);
        drop(held);
        assert_eq!(l.sem.available_permits(), 4);
        assert_eq!(l.ctl.lock().unwrap().retire, 0);
    }

    #[test]
    fn a_cap_below_the_start_is_the_limit() {
        let l = Limiter::new(3, None);
        assert_eq!(l.limit(), 3);
        let mut t = l.ctl.lock().unwrap().window_start;
        window(&l, &mut t, 1e9);
        assert_eq!(l.limit(), 3);
    }
}
