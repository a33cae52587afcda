//! Token buckets on `/api` (governor's GCRA): one per source address, checked before the key is,
//! so that guessing keys is slow too, and one per key. Over either is `429 rate_limited` with
//! `Retry-After`. Failed authentications are counted in the metrics and audited in aggregate: one
//! record per source address per interval, so a flood of bad keys cannot flood the log.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::json;

use super::error::ApiError;
use crate::audit::{Entry, Outcome};
use crate::controller::Shared;

/// Requests a second, and how many may come at once before that rate applies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    fn quota(self) -> Quota {
        let at_least_one = |n: u32| NonZeroU32::new(n.max(1)).expect("at least one");
        Quota::per_second(at_least_one(self.per_second)).allow_burst(at_least_one(self.burst))
    }
}

/// How often failed authentications are written to the audit log, one record per source.
pub const FAILURE_INTERVAL: Duration = Duration::from_secs(60);

pub struct RateLimits {
    per_key: DefaultKeyedRateLimiter<String>,
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    /// Failed authentications since the last flush, by source address.
    failures: Mutex<BTreeMap<IpAddr, u64>>,
}

impl RateLimits {
    pub fn new(per_key: Rate, per_address: Rate) -> Self {
        RateLimits {
            per_key: RateLimiter::keyed(per_key.quota()),
            per_address: RateLimiter::keyed(per_address.quota()),
            clock: DefaultClock::default(),
            failures: Mutex::default(),
        }
    }

    /// One more request from `address`, or 429.
    pub fn address(&self, address: IpAddr) -> Result<(), ApiError> {
        let refused = self.per_address.check_key(&address).err();
        refused.map_or(Ok(()), |wait| {
            Err(self.too_many(&format!("from {address}"), wait.wait_time_from(self.clock.now())))
        })
    }

    /// One more request with the key named `name`, or 429.
    pub fn key(&self, name: &str) -> Result<(), ApiError> {
        let refused = self.per_key.check_key(&name.to_string()).err();
        refused.map_or(Ok(()), |wait| {
            Err(self.too_many(&format!("with the key {name}"), wait.wait_time_from(self.clock.now())))
        })
    }

    fn too_many(&self, whose: &str, wait: Duration) -> ApiError {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u32;
        let why = format!("too many requests {whose}; try again in {seconds} s");
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", why).retry_after(seconds)
    }

    /// Notes a failed authentication from `address` (written out by [`RateLimits::flush`]).
    pub fn failed(&self, address: IpAddr) {
        *self.failures.lock().unwrap().entry(address).or_default() += 1;
    }

    /// Writes one `api.auth.failed` record per source address with failures since the last
    /// flush, and forgets buckets that have refilled (memory does not grow with addresses seen).
    pub async fn flush(&self, shared: &Shared) {
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        for (address, count) in failures {
            let params = json!({ "source": address.to_string(), "failures": count, "interval_seconds": FAILURE_INTERVAL.as_secs() });
            let entry =
                Entry::new("anonymous", "api.auth.failed", &format!("source//{address}"), Outcome::Refused);
            let _ = shared.append(entry.params(params)).await;
        }
        self.per_key.retain_recent();
        self.per_address.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_over_the_rate_is_refused_with_a_time_to_retry_and_others_are_not() {
        let limits = RateLimits::new(Rate { per_second: 1, burst: 3 }, Rate { per_second: 100, burst: 100 });
        for _ in 0..3 {
            assert!(limits.key("alice").is_ok());
        }
        let refused = limits.key("alice").unwrap_err();
        assert_eq!(
            (refused.status.as_u16(), refused.code, refused.retry_after),
            (429, "rate_limited", Some(1))
        );
        assert!(limits.key("bob").is_ok(), "another key has its own bucket");
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        let tight = RateLimits::new(Rate { per_second: 100, burst: 100 }, Rate { per_second: 1, burst: 1 });
        assert!(tight.address(address).is_ok());
        assert_eq!(tight.address(address).unwrap_err().code, "rate_limited");
        assert!(tight.address("192.0.2.2".parse().unwrap()).is_ok());
    }
}
