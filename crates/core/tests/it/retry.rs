//! The retry policy on tokio's paused clock: which failures are retried, how
//! long each wait is, and how a request ends.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use corpusgen_core::rate::{Pacing, RateLimits};
use corpusgen_core::retry::{complete_with_retries, retryable_kinds};
use corpusgen_core::{
    ChatProvider, ChatRequest, ChatResponse, ProviderError, ProviderErrorKind, RetryPolicy,
};

use crate::support::{chars, response, seed_spec};

/// Answers each call with the next scripted result.
struct Scripted {
    results: Mutex<VecDeque<Result<ChatResponse, ProviderError>>>,
    calls_at: Mutex<Vec<tokio::time::Instant>>,
}

impl Scripted {
    fn new(results: Vec<Result<ChatResponse, ProviderError>>) -> Self {
        Scripted {
            results: Mutex::new(results.into()),
            calls_at: Mutex::new(Vec::new()),
        }
    }

    /// The waits between consecutive calls.
    fn gaps(&self) -> Vec<Duration> {
        let calls = self.calls_at.lock().unwrap();
        calls.windows(2).map(|pair| pair[1] - pair[0]).collect()
    }
}

impl ChatProvider for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn complete(&self, _request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        self.calls_at
            .lock()
            .unwrap()
            .push(tokio::time::Instant::now());
        self.results
            .lock()
            .unwrap()
            .pop_front()
            .expect("the script has an answer for every call")
    }
}

fn fail(
    kind: ProviderErrorKind,
    retry_after: Option<Duration>,
) -> Result<ChatResponse, ProviderError> {
    Err(ProviderError {
        kind,
        message: format!("{kind:?}"),
        retry_after,
    })
}

fn ok() -> Result<ChatResponse, ProviderError> {
    Ok(response("fine".into()))
}

fn request() -> ChatRequest {
    seed_spec(std::path::Path::new("unused.txt"), chars(1)).request(0, 0)
}

/// Runs the script on a paused clock and returns what the request came to,
/// with the waits between calls.
fn check(
    script: Vec<Result<ChatResponse, ProviderError>>,
    policy: RetryPolicy,
) -> (corpusgen_core::retry::Attempted, Vec<Duration>) {
    let provider = Scripted::new(script);
    let attempted = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(async {
            let pacing = Pacing::new(RateLimits::default(), 1);
            complete_with_retries(&provider, &request(), policy, &pacing).await
        });
    assert!(
        provider.results.lock().unwrap().is_empty(),
        "every scripted answer was used"
    );
    (attempted, provider.gaps())
}

#[test]
fn the_retryable_set_is_pinned() {
    insta::assert_debug_snapshot!(retryable_kinds());
}

#[test]
fn server_errors_back_off_exponentially_with_at_most_a_quarter_of_jitter() {
    use ProviderErrorKind::Server;
    let (attempted, gaps) = check(
        vec![
            fail(Server, None),
            fail(Server, None),
            fail(Server, None),
            ok(),
        ],
        RetryPolicy::default(),
    );
    assert_eq!(attempted.attempts, 4);
    assert_eq!(attempted.result.unwrap().attempts, 4);
    for (gap, full) in gaps.iter().zip([500, 1000, 2000]) {
        let full = Duration::from_millis(full);
        assert!(
            *gap <= full && *gap >= full.mul_f64(0.75),
            "{gap:?} against {full:?}"
        );
    }
    // tokio's timer rounds each sleep up to its next millisecond tick.
    let slept: Duration = gaps.iter().sum();
    assert!(slept >= attempted.waited && slept - attempted.waited < Duration::from_millis(5));
}

#[test]
fn the_backoff_doubles_up_to_its_cap() {
    let script = (0..6)
        .map(|_| fail(ProviderErrorKind::Timeout, None))
        .chain([ok()])
        .collect();
    let (_, gaps) = check(script, RetryPolicy::default());
    let last = *gaps.last().unwrap();
    assert!(
        last <= Duration::from_secs(8) && last >= Duration::from_secs(6),
        "{gaps:?}"
    );
}

#[test]
fn retry_after_is_honoured_to_the_millisecond() {
    for asked in [
        Duration::from_secs(1),
        Duration::from_millis(1500),
        Duration::ZERO,
    ] {
        let (attempted, gaps) = check(
            vec![fail(ProviderErrorKind::RateLimited, Some(asked)), ok()],
            RetryPolicy::default(),
        );
        assert!(attempted.result.is_ok());
        assert_eq!(gaps, [asked]);
    }
}

#[test]
fn a_retry_after_beyond_the_cap_fails_at_once_saying_so() {
    let (attempted, gaps) = check(
        vec![fail(
            ProviderErrorKind::RateLimited,
            Some(Duration::from_secs(3600)),
        )],
        RetryPolicy::default(),
    );
    let err = attempted.result.unwrap_err();
    assert_eq!((attempted.attempts, gaps.len()), (1, 0));
    assert!(
        err.message.contains("asked to wait 3600 s"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("longer than the 60 s"),
        "{}",
        err.message
    );
}

#[test]
fn permanent_failures_are_not_retried() {
    use ProviderErrorKind::*;
    for kind in [
        Auth,
        BadRequest,
        NotFound,
        QuotaExhausted,
        Policy,
        FixturesExhausted,
        ContentFilter,
    ] {
        let (attempted, _) = check(vec![fail(kind, None)], RetryPolicy::default());
        assert_eq!(attempted.attempts, 1, "{kind:?}");
        assert_eq!(attempted.result.unwrap_err().message, format!("{kind:?}"));
    }
}

#[test]
fn retries_end_at_the_bound_with_the_last_real_error() {
    let policy = RetryPolicy {
        max_retries: 2,
        ..RetryPolicy::default()
    };
    let (attempted, gaps) = check(
        vec![
            fail(ProviderErrorKind::Server, None),
            fail(ProviderErrorKind::Connect, None),
            fail(ProviderErrorKind::Timeout, None),
        ],
        policy,
    );
    let err = attempted.result.unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Timeout);
    assert_eq!((attempted.attempts, gaps.len()), (3, 2));
    assert!(
        err.message.contains("gave up after 3 attempts"),
        "{}",
        err.message
    );
    assert!(err.message.contains("--max-retries"), "{}", err.message);
}

#[test]
fn max_retries_zero_sends_once() {
    let policy = RetryPolicy {
        max_retries: 0,
        ..RetryPolicy::default()
    };
    let (attempted, _) = check(vec![fail(ProviderErrorKind::Server, None)], policy);
    assert_eq!(attempted.attempts, 1);
}
