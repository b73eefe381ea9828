//! Pacing: client-side request and token rate limits, the provider's own
//! rate-limit headers, one shared cooldown after a 429, and an in-flight limit
//! that halves on a 429 and grows back after successes (additive increase,
//! multiplicative decrease).
//!
//! Time comes from tokio's clock, so tests run it paused.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use crate::provider::{ProviderError, ProviderErrorKind, RateLimitHint};

/// The client-side limits of a job (`--rpm`, `--tpm`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub requests_per_minute: Option<NonZeroU32>,
    pub tokens_per_minute: Option<NonZeroU32>,
}

/// governor's view of tokio's clock: the time since the job started.
#[derive(Debug, Clone)]
struct TokioClock {
    start: Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// The pacing state of one job, shared by the issuer and every request.
#[derive(Debug)]
pub struct Pacing {
    clock: TokioClock,
    requests: Option<Limiter>,
    tokens: Option<(Limiter, NonZeroU32)>,
    state: Mutex<PacingState>,
    max_in_flight: usize,
}

#[derive(Debug)]
struct PacingState {
    /// No request goes out before this: after a 429, or when the provider's
    /// headers say the window is used up.
    paused_until: Option<Instant>,
    /// The in-flight limit, as a float so that it can grow by 1/limit.
    in_flight_limit: f64,
    /// The last 429 that halved the limit: a burst of 429s halves it once.
    last_decrease: Option<Instant>,
    cooldowns: u64,
}

/// Why the issuer must wait before the next request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wait {
    Until(Instant),
}

impl Pacing {
    pub fn new(limits: RateLimits, max_in_flight: usize) -> Pacing {
        let clock = TokioClock {
            start: Instant::now(),
        };
        // One request at a time, evenly spaced: a burst would break "N per
        // minute" over any window shorter than a minute.
        let requests = limits.requests_per_minute.map(|rpm| {
            let quota = Quota::with_period(Duration::from_secs(60) / rpm.get())
                .expect("a positive rate has a positive period")
                .allow_burst(NonZeroU32::MIN);
            RateLimiter::direct_with_clock(quota, clock.clone())
        });
        // Tokens come in large lumps per request, so the bucket holds a
        // minute's worth; a request larger than that is let through alone.
        let tokens = limits.tokens_per_minute.map(|tpm| {
            (
                RateLimiter::direct_with_clock(Quota::per_minute(tpm), clock.clone()),
                tpm,
            )
        });
        Pacing {
            clock,
            requests,
            tokens,
            state: Mutex::new(PacingState {
                paused_until: None,
                in_flight_limit: max_in_flight as f64,
                last_decrease: None,
                cooldowns: 0,
            }),
            max_in_flight,
        }
    }

    /// How many requests may be in flight now.
    pub fn in_flight_limit(&self) -> usize {
        (self.lock().in_flight_limit.floor() as usize).clamp(1, self.max_in_flight)
    }

    /// How many times a 429 or the provider's headers paused every request.
    pub fn cooldowns(&self) -> u64 {
        self.lock().cooldowns
    }

    /// Takes a permit for one request of about `tokens` tokens, or says when
    /// to ask again. A permit taken is spent: call only when about to send.
    pub fn permit(&self, tokens: u32) -> Result<(), Wait> {
        let now = Instant::now();
        if let Some(until) = self.lock().paused_until
            && until > now
        {
            return Err(Wait::Until(until));
        }
        if let Some(requests) = &self.requests
            && let Err(not_until) = requests.check()
        {
            return Err(Wait::Until(
                now + not_until.wait_time_from(self.clock.now()),
            ));
        }
        if let Some((limiter, per_minute)) = &self.tokens {
            let lump =
                NonZeroU32::new(tokens.clamp(1, per_minute.get())).unwrap_or(NonZeroU32::MIN);
            if let Ok(Err(not_until)) = limiter.check_n(lump) {
                return Err(Wait::Until(
                    now + not_until.wait_time_from(self.clock.now()),
                ));
            }
        }
        Ok(())
    }

    /// Waits out a shared pause, for a retry that is about to be sent.
    pub async fn wait_for_pause(&self) {
        let until = self.lock().paused_until;
        if let Some(until) = until
            && until > Instant::now()
        {
            tokio::time::sleep_until(until).await;
        }
    }

    /// A failed attempt: a 429 pauses every request until its Retry-After has
    /// passed, once for all of them, and halves the in-flight limit.
    pub fn on_failure(&self, error: &ProviderError) {
        if error.kind != ProviderErrorKind::RateLimited {
            return;
        }
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(wait) = error.retry_after {
            let until = now + wait;
            if state.paused_until.is_none_or(|paused| paused < until) {
                if state.paused_until.is_none_or(|paused| paused <= now) {
                    state.cooldowns += 1;
                }
                state.paused_until = Some(until);
            }
        }
        let recently = state.last_decrease.is_some_and(|last| {
            now.duration_since(last) < error.retry_after.unwrap_or(Duration::from_secs(1))
        });
        if !recently {
            state.in_flight_limit = (state.in_flight_limit / 2.0).max(1.0);
            state.last_decrease = Some(now);
        }
    }

    /// A success: the limit grows by one per limit's worth of successes, and
    /// the provider's rate-limit headers pause issuance before a 429 would.
    pub fn on_success(&self, hint: Option<&RateLimitHint>) {
        let now = Instant::now();
        let mut state = self.lock();
        state.in_flight_limit =
            (state.in_flight_limit + 1.0 / state.in_flight_limit).min(self.max_in_flight as f64);
        let Some(hint) = hint else { return };
        let exhausted = [
            (hint.remaining_requests, hint.reset_requests),
            (hint.remaining_tokens, hint.reset_tokens),
        ]
        .into_iter()
        .filter_map(|(remaining, reset)| (remaining == Some(0)).then_some(reset).flatten())
        .max();
        if let Some(reset) = exhausted {
            let until = now + reset;
            if state.paused_until.is_none_or(|paused| paused < until) {
                state.cooldowns += 1;
                state.paused_until = Some(until);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PacingState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
