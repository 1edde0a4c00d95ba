//! A token bucket shared by every concurrent transfer of a process (`--limit-rate`).

use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::Mutex;

/// Limits the combined throughput of all callers to `bytes_per_sec`, allowing bursts of at
/// most one second's worth of bytes.
#[derive(Debug)]
pub struct RateLimiter {
    bytes_per_sec: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Tokens (bytes) available now; negative means callers owe time.
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// `bytes_per_sec` must be positive.
    pub fn new(bytes_per_sec: u64) -> RateLimiter {
        RateLimiter {
            bytes_per_sec: bytes_per_sec.max(1) as f64,
            state: Mutex::new(Bucket {
                tokens: 0.0,
                last: Instant::now(),
            }),
        }
    }

    /// Waits until `bytes` may be sent. Callers take tokens before their request, so the
    /// long-run rate never exceeds the limit; a request larger than the burst simply waits
    /// longer.
    pub async fn acquire(&self, bytes: u64) {
        let wait = {
            let mut b = self.state.lock().await;
            let now = Instant::now();
            let refill = now.duration_since(b.last).as_secs_f64() * self.bytes_per_sec;
            b.tokens = (b.tokens + refill).min(self.bytes_per_sec);
            b.last = now;
            b.tokens -= bytes as f64;
            if b.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-b.tokens / self.bytes_per_sec)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Parses a rate such as `50M` (MiB/s), `800K`, `1.5G`, `1000` (bytes/s).
pub fn parse_rate(s: &str) -> Option<u64> {
    crate::util::parse_size(s).filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn long_run_rate_is_bounded() {
        let rl = RateLimiter::new(1_000_000);
        let start = tokio::time::Instant::now();
        for _ in 0..50 {
            rl.acquire(100_000).await;
        }
        let secs = start.elapsed().as_secs_f64();
        // 5 MB at 1 MB/s: at least 5 s.
        assert!(secs >= 4.99, "{secs}");
        assert!(secs < 5.5, "{secs}");
    }

    #[test]
    fn parses_rates() {
        assert_eq!(parse_rate("50M"), Some(50 * 1024 * 1024));
        assert_eq!(parse_rate("0"), None);
        assert_eq!(parse_rate("x"), None);
    }
}
