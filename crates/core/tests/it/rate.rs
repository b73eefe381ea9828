//! Pacing on tokio's paused clock: `--rpm`, one shared cooldown per 429, the
//! in-flight limit's decrease and recovery, and the provider's headers.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use corpusgen_core::rate::{Pacing, RateLimits, Wait};
use corpusgen_core::{
    ChatProvider, ChatRequest, ChatResponse, Event, ProviderError, ProviderErrorKind,
    RateLimitHint, RunOptions, Target, run_job,
};
use tokio::time::Instant;

use crate::support::{response, seed_spec, text};

fn paused<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(future)
}

/// Records when each call started and ended; slot 0's first call can be a 429.
struct Timed {
    start: Instant,
    latency: Duration,
    rate_limit_first: Option<Duration>,
    calls: Mutex<Vec<(u64, Duration, Duration)>>,
}

impl Timed {
    fn new(latency: Duration, rate_limit_first: Option<Duration>) -> Timed {
        Timed {
            start: Instant::now(),
            latency,
            rate_limit_first,
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Most calls open at one moment, among those that started at or after `from`.
    fn peak_open(&self, from: Duration, to: Duration) -> usize {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(_, started, _)| *started >= from && *started < to)
            .map(|(_, started, _)| {
                calls
                    .iter()
                    .filter(|(_, s, e)| s <= started && e > started)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}

impl ChatProvider for Timed {
    fn name(&self) -> &str {
        "timed"
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let started = self.start.elapsed();
        tokio::time::sleep(self.latency).await;
        self.calls
            .lock()
            .unwrap()
            .push((request.index, started, self.start.elapsed()));
        if let Some(wait) = self.rate_limit_first
            && request.index == 0
            && self
                .calls
                .lock()
                .unwrap()
                .iter()
                .filter(|(index, ..)| *index == 0)
                .count()
                == 1
        {
            return Err(ProviderError {
                kind: ProviderErrorKind::RateLimited,
                message: "slow down".into(),
                retry_after: Some(wait),
            });
        }
        Ok(response(text(100, request.index)))
    }
}

fn options(rate: RateLimits) -> RunOptions {
    RunOptions {
        rate,
        ..RunOptions::default()
    }
}

#[test]
fn rpm_60_issues_no_more_than_one_request_a_second() {
    let folder = tempfile::tempdir().unwrap();
    let mut spec = seed_spec(
        &folder.path().join("out.txt"),
        Target::Count { responses: 10 },
    );
    spec.concurrency = 8;
    let rate = RateLimits {
        requests_per_minute: NonZeroU32::new(60),
        tokens_per_minute: None,
    };
    let provider = paused(async {
        let provider = Timed::new(Duration::from_millis(10), None);
        run_job(&spec, &provider, options(rate), &mut |_: &Event| {})
            .await
            .unwrap();
        provider
    });
    let mut starts: Vec<Duration> = provider
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|(_, started, _)| *started)
        .collect();
    starts.sort();
    assert_eq!(starts.len(), 10);
    for pair in starts.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(999),
            "{starts:?}"
        );
    }
    assert!(*starts.last().unwrap() >= Duration::from_secs(9));
}

#[test]
fn one_429_pauses_every_request_once_and_halves_the_in_flight_limit() {
    let folder = tempfile::tempdir().unwrap();
    let mut spec = seed_spec(
        &folder.path().join("out.txt"),
        Target::Count { responses: 40 },
    );
    spec.concurrency = 8;
    let (provider, report) = paused(async {
        let provider = Timed::new(Duration::from_millis(100), Some(Duration::from_secs(2)));
        let report = run_job(&spec, &provider, RunOptions::default(), &mut |_: &Event| {})
            .await
            .unwrap();
        (provider, report)
    });
    let calls = provider.calls.lock().unwrap().clone();
    // The 429 came back at 100 ms: nothing may start until 2.1 s.
    let started_in_cooldown = calls
        .iter()
        .filter(|(_, started, _)| {
            *started > Duration::from_millis(100) && *started < Duration::from_millis(2100)
        })
        .count();
    assert_eq!(started_in_cooldown, 0, "{calls:?}");
    assert_eq!(report.manifest.totals.cooldowns, 1);
    assert_eq!(report.manifest.totals.retries, 1);
    // Right after the pause, half the concurrency is issued anew, beside the
    // retry of the request that was rate limited ...
    assert_eq!(
        provider.peak_open(Duration::from_millis(2100), Duration::from_millis(2150)),
        4 + 1,
        "{calls:?}"
    );
    // ... and with successes the limit grows back to the full concurrency.
    assert_eq!(
        provider.peak_open(Duration::from_millis(2100), Duration::from_secs(60)),
        8,
        "{calls:?}"
    );
}

#[test]
fn the_limit_halves_on_a_burst_of_429s_once_and_grows_back_by_one_per_round() {
    paused(async {
        let pacing = Pacing::new(RateLimits::default(), 16);
        let rate_limited = ProviderError {
            kind: ProviderErrorKind::RateLimited,
            message: String::new(),
            retry_after: Some(Duration::from_secs(1)),
        };
        for _ in 0..5 {
            pacing.on_failure(&rate_limited);
        }
        assert_eq!(pacing.in_flight_limit(), 8, "a burst halves once");
        assert_eq!(pacing.cooldowns(), 1);
        for _ in 0..8 {
            pacing.on_success(None);
        }
        assert_eq!(
            pacing.in_flight_limit(),
            8,
            "+1/limit per success: almost one more per round"
        );
        for _ in 0..200 {
            pacing.on_success(None);
        }
        assert_eq!(pacing.in_flight_limit(), 16);
        let server_error = ProviderError {
            kind: ProviderErrorKind::Server,
            message: String::new(),
            retry_after: None,
        };
        pacing.on_failure(&server_error);
        assert_eq!(pacing.in_flight_limit(), 16, "only a 429 lowers it");
    });
}

#[test]
fn rate_limit_headers_pause_issuance_before_a_429() {
    paused(async {
        let pacing = Pacing::new(RateLimits::default(), 4);
        assert_eq!(pacing.permit(100), Ok(()));
        let hint = RateLimitHint {
            remaining_requests: Some(0),
            reset_requests: Some(Duration::from_secs(3)),
            ..RateLimitHint::default()
        };
        pacing.on_success(Some(&hint));
        let now = Instant::now();
        assert_eq!(
            pacing.permit(100),
            Err(Wait::Until(now + Duration::from_secs(3)))
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(pacing.permit(100), Ok(()));
        let plenty = RateLimitHint {
            remaining_requests: Some(500),
            reset_requests: Some(Duration::from_secs(3)),
            ..RateLimitHint::default()
        };
        pacing.on_success(Some(&plenty));
        assert_eq!(pacing.permit(100), Ok(()));
    });
}

#[test]
fn tpm_spreads_requests_by_their_expected_tokens() {
    paused(async {
        let rate = RateLimits {
            requests_per_minute: None,
            tokens_per_minute: NonZeroU32::new(6000),
        };
        let pacing = Pacing::new(rate, 4);
        let mut sent = 0;
        let started = Instant::now();
        while sent < 12 {
            match pacing.permit(1000) {
                Ok(()) => sent += 1,
                Err(Wait::Until(when)) => tokio::time::sleep_until(when).await,
            }
        }
        // 6000 tokens a minute, 1000 a request: a full bucket of six, then one
        // every ten seconds.
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_secs(59) && elapsed <= Duration::from_secs(61),
            "{elapsed:?}"
        );
    });
}
