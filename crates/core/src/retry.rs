//! The retry policy, in one place: which failures are tried again, how long
//! to wait between attempts, and when to give up.
//!
//! The anchors are the official OpenAI SDK's numbers: retry connection
//! errors, timeouts, 408, 409, 429 and 5xx, `min(0.5 * 2^n, 8)` seconds
//! apart with jitter, honouring `retry-after-ms` and `Retry-After`.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::provider::{ChatProvider, ChatRequest, ChatResponse, ProviderError, ProviderErrorKind};
use crate::rate::Pacing;

/// Retries per request unless `--max-retries` says otherwise.
pub const DEFAULT_MAX_RETRIES: u32 = 6;
/// The wait before the first retry; it doubles after each one.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait the doubling reaches.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// The longest `Retry-After` honoured. A provider asking for more fails the
/// request at once with a message saying so, rather than holding the job for
/// minutes without a word.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How one request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub max_retry_after: Duration,
}

/// A request's outcome after every attempt it was allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempted {
    pub result: Result<ChatResponse, ProviderError>,
    /// HTTP attempts made, the first included.
    pub attempts: u32,
    /// Time spent waiting between attempts.
    pub waited: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: DEFAULT_MAX_RETRIES,
            initial_backoff: INITIAL_BACKOFF,
            max_backoff: MAX_BACKOFF,
            max_retry_after: MAX_RETRY_AFTER,
        }
    }
}

impl RetryPolicy {
    /// One line for `--help` and the docs, so the numbers shown are the ones used.
    pub fn describe(&self) -> String {
        format!(
            "connect errors, timeouts, malformed bodies, 408, 409, 429 and 5xx are retried up to {} times, {} s apart at first, doubling to at most {} s, with up to 25% jitter; a Retry-After up to {} s is honoured instead",
            self.max_retries,
            self.initial_backoff.as_secs_f64(),
            self.max_backoff.as_secs_f64(),
            self.max_retry_after.as_secs()
        )
    }

    /// The wait before the next attempt: the provider's `Retry-After` when it
    /// sent one, else the exponential backoff with jitter (`None` when the
    /// provider asks for longer than this policy waits).
    pub(crate) fn wait(
        &self,
        error: &ProviderError,
        backoff: Duration,
        jitter: f64,
    ) -> Option<Duration> {
        match error.retry_after {
            Some(asked) if asked > self.max_retry_after => None,
            Some(asked) => Some(asked),
            // The SDK's jitter: shorten each wait by up to a quarter, so that
            // many clients that failed together do not retry together.
            None => Some(backoff.mul_f64(1.0 - 0.25 * jitter)),
        }
    }
}

/// Sends a request until it succeeds, fails for good, or runs out of retries.
/// Every attempt first waits out a pause shared by all requests (after a 429)
/// and reports its outcome to `pacing`.
pub async fn complete_with_retries<P: ChatProvider>(
    provider: &P,
    request: &ChatRequest,
    policy: RetryPolicy,
    pacing: &Pacing,
) -> Attempted {
    let (result, attempts, waited) = call_with_retries(policy, || async {
        pacing.wait_for_pause().await;
        let result = provider.complete(request).await;
        match &result {
            Ok(response) => pacing.on_success(response.rate_limit.as_ref()),
            Err(error) => pacing.on_failure(error),
        }
        result
    })
    .await;
    Attempted {
        result: result.map(|mut response| {
            response.attempts = attempts;
            response
        }),
        attempts,
        waited,
    }
}

/// Any call to a provider (a chat request, a batch engine's file or batch
/// call) under `policy`: retried while its failure is retryable, waiting as
/// `RetryPolicy::wait` says. A final failure's message says why corpusgen
/// stopped trying. Returns the result, the attempts made and the time waited.
pub async fn call_with_retries<T, F, Fut>(
    policy: RetryPolicy,
    mut call: F,
) -> (Result<T, ProviderError>, u32, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let mut attempts = 0u32;
    let mut waited = Duration::ZERO;
    let mut refused_wait = None;
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.initial_backoff)
        .with_max_delay(policy.max_backoff)
        .with_factor(2.0)
        .with_max_times(policy.max_retries as usize);
    let result = (|| {
        attempts += 1;
        call()
    })
    .retry(backoff)
    .when(|error: &ProviderError| error.kind.is_retryable())
    .adjust(|error: &ProviderError, backoff: Option<Duration>| {
        let wait = policy.wait(error, backoff?, fastrand::f64());
        if wait.is_none() {
            refused_wait = error.retry_after;
        }
        wait
    })
    .notify(|_: &ProviderError, wait: Duration| waited += wait)
    .await;
    let result = result.map_err(|mut error| {
        if let Some(asked) = refused_wait {
            error.message = format!(
                "{}; it asked to wait {} s before trying again, longer than the {} s corpusgen waits",
                error.message,
                asked.as_secs(),
                policy.max_retry_after.as_secs()
            );
        } else if error.kind.is_retryable() && policy.max_retries > 0 {
            error.message = format!(
                "{} (gave up after {attempts} attempts; raise --max-retries to try longer)",
                error.message
            );
        }
        error
    });
    (result, attempts, waited)
}

/// The failures that are retried, for the snapshot that pins the set.
pub fn retryable_kinds() -> Vec<(ProviderErrorKind, bool)> {
    ProviderErrorKind::ALL
        .into_iter()
        .map(|kind| (kind, kind.is_retryable()))
        .collect()
}
