//! The clock of a broker's session lease (docs/cluster.md, "Roles"): when
//! the lease was last confirmed, measured from the send time of the
//! keep-alive that confirmed it. etcd counts the lease's life from when it
//! received that keep-alive, which is later, so a lease confirmed less than
//! half its TTL ago is alive for at least another half: long enough for a
//! write acknowledged now to be read by whoever takes the broker's streams
//! over after the lease expires.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often [`LeaseClock::wait_fresh`] looks again.
const POLL: Duration = Duration::from_millis(20);

/// The confirmation times of one lease.
#[derive(Debug)]
pub struct LeaseClock {
    ttl: Duration,
    confirmed: Mutex<Instant>,
    lost: AtomicBool,
}

impl LeaseClock {
    /// A clock for a lease of `ttl` granted by a request sent at `granted`.
    pub fn new(ttl: Duration, granted: Instant) -> Self {
        LeaseClock { ttl, confirmed: Mutex::new(granted), lost: AtomicBool::new(false) }
    }

    /// Notes a keep-alive sent at `sent` that etcd answered with the lease alive.
    pub fn confirm(&self, sent: Instant) {
        let mut at = self.confirmed.lock().unwrap_or_else(|e| e.into_inner());
        *at = (*at).max(sent);
    }

    /// Notes that etcd no longer knows the lease.
    pub fn lose(&self) {
        self.lost.store(true, Ordering::Release);
    }

    fn age(&self) -> Duration {
        self.confirmed.lock().unwrap_or_else(|e| e.into_inner()).elapsed()
    }

    /// Whether the lease is gone: etcd said so, or it was last confirmed
    /// more than a TTL ago (it has expired by now, whatever etcd answers).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire) || self.age() >= self.ttl
    }

    /// Whether the lease was confirmed less than half its TTL ago.
    pub fn is_fresh(&self) -> bool {
        !self.lost.load(Ordering::Acquire) && self.age() < self.ttl / 2
    }

    /// Waits until the lease is fresh (`Ok`) or lost (`Err`).
    pub async fn wait_fresh(&self) -> Result<(), ()> {
        loop {
            if self.is_lost() {
                return Err(());
            }
            if self.is_fresh() {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fresh_for_half_the_ttl_then_stale_then_lost() {
        let ttl = Duration::from_millis(400);
        let clock = LeaseClock::new(ttl, Instant::now());
        assert!(clock.is_fresh() && !clock.is_lost());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!clock.is_fresh() && !clock.is_lost(), "stale, not yet lost");
        clock.confirm(Instant::now());
        assert!(clock.is_fresh(), "a confirmation makes it fresh again");
        tokio::time::sleep(Duration::from_millis(420)).await;
        assert!(clock.is_lost(), "unconfirmed for a whole TTL");
        assert_eq!(clock.wait_fresh().await, Err(()));
        let clock = LeaseClock::new(ttl, Instant::now());
        clock.lose();
        assert!(!clock.is_fresh() && clock.is_lost());
    }
}
