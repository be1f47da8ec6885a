//! Per-user rate limits: a token bucket per user, refilled continuously.
//! Kept per API instance; with several instances each enforces its share.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::ApiError;

/// Buckets kept before full ones are forgotten.
const MAX_TRACKED: usize = 100_000;

pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<i64, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// Allows `per_minute` requests a minute per user, in bursts of as many.
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request from `user`'s bucket now, or refuses with 429.
    pub fn admit(&self, user: i64) -> Result<(), ApiError> {
        self.check(user, Instant::now()).map_err(|wait| ApiError::rate_limited(wait.as_secs_f64().ceil() as u64))
    }

    /// Takes one request from `user`'s bucket, or says how long to wait.
    pub fn check(&self, user: i64, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, b| b.tokens + now.duration_since(b.updated).as_secs_f64() * per_second < capacity);
        }
        let bucket = buckets.entry(user).or_insert(Bucket { tokens: capacity, updated: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * per_second).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refills_over_time() {
        let limiter = RateLimiter::new(3);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(7, start).is_ok());
        }
        let wait = limiter.check(7, start).unwrap_err();
        assert!(wait > Duration::from_secs(19) && wait <= Duration::from_secs(20), "{wait:?}");
        assert!(limiter.check(8, start).is_ok(), "users have their own buckets");
        assert!(limiter.check(7, start + Duration::from_secs(20)).is_ok());
        assert!(limiter.check(7, start + Duration::from_secs(20)).is_err());
    }
}
