//! The app API's per-key rate limit: a plain GCRA over key ids, knowing nothing of keys or
//! HTTP, so the state can hold it and the API can ask it.

/// What a key's rate limit says of one request: the `RateLimit-*` headers' values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateInfo {
    /// Requests per minute.
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the full allowance is back.
    pub reset_secs: u64,
}

/// The per-key limit on the app API (`PORTEIRO_API_RATE_LIMIT` a minute, all at once if need
/// be): counted after the key is authenticated, so nobody can spend another app's allowance
/// with its public key id.
pub struct ApiLimiter {
    per_minute: std::num::NonZeroU32,
    keys: governor::RateLimiter<
        i32,
        governor::state::keyed::DefaultKeyedStateStore<i32>,
        governor::clock::DefaultClock,
        governor::middleware::StateInformationMiddleware,
    >,
}

impl ApiLimiter {
    pub fn new(per_minute: std::num::NonZeroU32) -> Self {
        let keys = governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute))
            .with_middleware::<governor::middleware::StateInformationMiddleware>();
        ApiLimiter { per_minute, keys }
    }

    /// Counts one request of `key`: its allowance left, or (over it) how many seconds to wait.
    pub fn take(&self, key: i32) -> Result<RateInfo, (RateInfo, u64)> {
        use governor::clock::{Clock, DefaultClock};
        let limit = self.per_minute.get();
        // Each request's share of the minute comes back after this long.
        let refill = 60.0 / f64::from(limit);
        let secs = |requests: u32| (f64::from(requests) * refill).ceil() as u64;
        match self.keys.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Ok(RateInfo {
                    limit,
                    remaining,
                    reset_secs: secs(limit - remaining.min(limit)),
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let retry = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
                Err((
                    RateInfo {
                        limit,
                        remaining: 0,
                        reset_secs: secs(limit),
                    },
                    retry,
                ))
            }
        }
    }
}
