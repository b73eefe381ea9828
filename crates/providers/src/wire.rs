//! The OpenAI Chat Completions wire format, shared by every HTTP provider and
//! by the replay provider's fixtures.

use std::time::{Duration, SystemTime};

use corpusgen_core::{ChatMessage, ChatResponse, ProviderError, ProviderErrorKind, Usage};
use serde::{Deserialize, Serialize};

/// A request body. Optional fields are left out rather than sent as null:
/// several OpenAI-compatible servers reject explicit nulls.
#[derive(Debug, Serialize)]
pub(crate) struct RequestBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    pub messages: &'a [ChatMessage],
    pub temperature: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
}

/// A response body, read tolerantly: real servers leave out fields the schema
/// marks required (`refusal`, `logprobs`, `system_fingerprint`) and add their own.
#[derive(Debug, Deserialize)]
struct ResponseBody {
    id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: Option<Message>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    message: Option<String>,
    code: Option<serde_json::Value>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Reads a successful response body. A body that is not a chat completion
/// with at least one choice is `Malformed`, which the retry policy may retry.
pub(crate) fn parse_response(provider: &str, body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let parsed: ResponseBody = serde_json::from_slice(body).map_err(|err| {
        ProviderError::new(
            ProviderErrorKind::Malformed,
            format!("{provider} answered with a body that is not a chat completion ({err})"),
        )
    })?;
    let Some(choice) = parsed.choices.into_iter().next() else {
        return Err(ProviderError::new(
            ProviderErrorKind::Malformed,
            format!("{provider} answered with a chat completion that has no choices"),
        ));
    };
    Ok(ChatResponse {
        text: choice
            .message
            .and_then(|message| message.content)
            .unwrap_or_default(),
        finish_reason: choice.finish_reason,
        usage: parsed.usage.map(|usage| Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.total_tokens,
        }),
        response_id: parsed.id,
        model: parsed.model,
        attempts: 1,
    })
}

/// What a failed HTTP exchange means, from its status, headers and body.
pub(crate) struct HttpFailure<'a> {
    pub provider: &'a str,
    pub key_env: Option<&'a str>,
    pub status: u16,
    pub retry_after_ms: Option<&'a str>,
    pub retry_after: Option<&'a str>,
    pub body: &'a [u8],
}

impl HttpFailure<'_> {
    pub(crate) fn classify(&self) -> ProviderError {
        let detail = serde_json::from_slice::<ErrorBody>(self.body).ok();
        let code = detail
            .as_ref()
            .and_then(|body| body.error.code.as_ref())
            .and_then(|code| code.as_str().map(str::to_owned));
        let error_type = detail.as_ref().and_then(|body| body.error.kind.clone());
        let message = detail
            .and_then(|body| body.error.message)
            .map(|message| message.trim().to_string())
            .filter(|message| !message.is_empty())
            .unwrap_or_else(|| short_body(self.body));
        let provider = self.provider;
        let status = self.status;
        let is_quota = code.as_deref() == Some("insufficient_quota")
            || error_type.as_deref() == Some("insufficient_quota");
        let (kind, text) = match status {
            401 | 403 => (
                ProviderErrorKind::Auth,
                match self.key_env {
                    Some(env) => format!(
                        "{provider} refused the credentials (HTTP {status}: {message}); check {env}"
                    ),
                    None => format!("{provider} refused the request (HTTP {status}: {message})"),
                },
            ),
            404 => (
                ProviderErrorKind::NotFound,
                format!(
                    "{provider} does not know this model or URL (HTTP 404: {message}); check --model and --base-url"
                ),
            ),
            429 if is_quota => (
                ProviderErrorKind::QuotaExhausted,
                format!(
                    "{provider} says the account is out of quota (HTTP 429: {message}); add credit or use another key"
                ),
            ),
            429 => (
                ProviderErrorKind::RateLimited,
                format!("{provider} is rate limiting (HTTP 429: {message})"),
            ),
            408 | 409 => (
                ProviderErrorKind::Conflict,
                format!("{provider} asked for the request again (HTTP {status}: {message})"),
            ),
            500..=599 => (
                ProviderErrorKind::Server,
                format!("{provider} had a server error (HTTP {status}: {message})"),
            ),
            _ => (
                ProviderErrorKind::BadRequest,
                format!("{provider} rejected the request (HTTP {status}: {message})"),
            ),
        };
        ProviderError {
            kind,
            message: text,
            retry_after: retry_after(self.retry_after_ms, self.retry_after, SystemTime::now()),
        }
    }
}

/// The wait a provider asks for: `retry-after-ms` (milliseconds, OpenAI's own)
/// first, then `Retry-After` as seconds or as an HTTP date.
pub(crate) fn retry_after(
    retry_after_ms: Option<&str>,
    retry_after: Option<&str>,
    now: SystemTime,
) -> Option<Duration> {
    if let Some(ms) = retry_after_ms.and_then(|value| value.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = retry_after?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A body that is not an error object, cut to a readable length.
fn short_body(body: &[u8]) -> String {
    const MAX_CHARS: usize = 200;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "no body".to_string();
    }
    let mut short: String = text.chars().take(MAX_CHARS).collect();
    if text.chars().count() > MAX_CHARS {
        short.push('…');
    }
    short
}
