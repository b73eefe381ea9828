//! The one interface between the job loop and a model: `ChatProvider`.
//!
//! Core knows nothing of URLs or wire formats; a provider turns a
//! `ChatRequest` into a `ChatResponse` or a classified `ProviderError`.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One chat completion to make: the messages and sampling of one request slot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatRequest {
    /// The request slot: the corpus is assembled in slot order.
    pub index: u64,
    /// How many rejected samples of this slot came before this one.
    pub resample: u32,
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub temperature: f64,
    pub max_tokens: Option<u32>,
    pub seed: Option<i64>,
    /// The variant's label (`audience=...; style=...`), for the journal.
    pub variant: Option<String>,
    /// How many explanations the reply holds: above 1, the reply is a JSON
    /// object `{"explanations": [...]}` and the provider asks for it with a
    /// strict `response_format`.
    pub explanations: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// What a provider answered for one request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChatResponse {
    pub text: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    pub response_id: Option<String>,
    /// The model the provider says answered, which may be more specific than the
    /// one requested (`gpt-4.1` answered by `gpt-4.1-2025-04-14`).
    pub model: Option<String>,
    /// HTTP attempts this response took, retries included.
    pub attempts: u32,
    /// What the provider's rate-limit headers said with this response.
    pub rate_limit: Option<RateLimitHint>,
}

/// The provider's `x-ratelimit-*` headers: how much of the window is left and
/// when it resets, so issuance can slow down before a 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RateLimitHint {
    pub remaining_requests: Option<u64>,
    pub remaining_tokens: Option<u64>,
    pub reset_requests: Option<Duration>,
    pub reset_tokens: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// A request that did not produce a response, classified so the job loop can
/// decide between retrying, stopping as refused and stopping as exhausted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub kind: ProviderErrorKind,
    /// One sentence for the user: the provider's own message where there is one,
    /// never a key.
    pub message: String,
    /// How long the provider asked us to wait before trying again.
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderErrorKind {
    /// 401/403: the key is missing, wrong or lacks access.
    Auth,
    /// 400 and other permanent 4xx: the request itself is wrong.
    BadRequest,
    /// 404: wrong model, deployment or URL.
    NotFound,
    /// 429 with `insufficient_quota`: no retry can help.
    QuotaExhausted,
    /// The job's policy forbids this request (HIPAA).
    Policy,
    /// 429: slow down and try again.
    RateLimited,
    /// 408 and 409: the provider asks for the same request again.
    Conflict,
    /// 5xx.
    Server,
    /// No answer within the timeout.
    Timeout,
    /// The connection failed or was reset.
    Connect,
    /// The body was not the JSON it should be.
    Malformed,
    /// The replay provider has no recorded response left.
    FixturesExhausted,
    /// The provider's content filter refused this prompt or answer (Azure's
    /// 400 with code `content_filter`). Not fatal: the job loop journals it as
    /// a rejected sample and asks again, within the resample bound.
    ContentFilter,
}

/// A model that answers chat requests.
///
/// Implementations classify every failure; they do not retry on their own
/// unless they document it, so the retry policy lives in one place.
pub trait ChatProvider: Send + Sync {
    /// The profile name, recorded in the journal.
    fn name(&self) -> &str;

    fn complete(
        &self,
        request: &ChatRequest,
    ) -> impl Future<Output = Result<ChatResponse, ProviderError>> + Send;
}

impl ProviderErrorKind {
    /// Every kind, for the snapshot that pins which are retried.
    pub const ALL: [ProviderErrorKind; 13] = [
        ProviderErrorKind::Auth,
        ProviderErrorKind::BadRequest,
        ProviderErrorKind::NotFound,
        ProviderErrorKind::QuotaExhausted,
        ProviderErrorKind::Policy,
        ProviderErrorKind::RateLimited,
        ProviderErrorKind::Conflict,
        ProviderErrorKind::Server,
        ProviderErrorKind::Timeout,
        ProviderErrorKind::Connect,
        ProviderErrorKind::Malformed,
        ProviderErrorKind::FixturesExhausted,
        ProviderErrorKind::ContentFilter,
    ];

    /// Whether the same request may succeed if sent again.
    pub fn is_retryable(self) -> bool {
        match self {
            ProviderErrorKind::RateLimited
            | ProviderErrorKind::Conflict
            | ProviderErrorKind::Server
            | ProviderErrorKind::Timeout
            | ProviderErrorKind::Connect
            | ProviderErrorKind::Malformed => true,
            ProviderErrorKind::Auth
            | ProviderErrorKind::BadRequest
            | ProviderErrorKind::NotFound
            | ProviderErrorKind::QuotaExhausted
            | ProviderErrorKind::Policy
            | ProviderErrorKind::FixturesExhausted
            | ProviderErrorKind::ContentFilter => false,
        }
    }

    /// Whether the provider refused the job for good (exit code 3), as opposed
    /// to failing in a way that more attempts might have fixed (exit code 4).
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            ProviderErrorKind::Auth
                | ProviderErrorKind::BadRequest
                | ProviderErrorKind::NotFound
                | ProviderErrorKind::QuotaExhausted
                | ProviderErrorKind::Policy
        )
    }
}

impl ProviderError {
    pub fn new(kind: ProviderErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
}
