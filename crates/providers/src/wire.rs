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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// A strict JSON schema for several explanations in one reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<serde_json::Value>,
}

/// `response_format` for a reply of several explanations: a JSON object
/// `{"explanations": [...]}`, strict, so the model cannot add other fields.
pub(crate) fn explanations_format() -> serde_json::Value {
    serde_json::json!({
        "type": "json_schema",
        "json_schema": {
            "name": "explanations",
            "strict": true,
            "schema": {
                "type": "object",
                "properties": {
                    "explanations": {"type": "array", "items": {"type": "string"}}
                },
                "required": ["explanations"],
                "additionalProperties": false
            }
        }
    })
}

/// `stream_options`: asks for a final chunk with the usage of the whole request.
#[derive(Debug, Serialize)]
pub(crate) struct StreamOptions {
    pub include_usage: bool,
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

/// One streamed chunk (`object: "chat.completion.chunk"`), read as tolerantly
/// as a whole response. A server may also send an error object mid-stream.
#[derive(Debug, Deserialize)]
struct StreamChunk {
    id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    choices: Vec<StreamChoice>,
    usage: Option<WireUsage>,
    error: Option<ErrorDetail>,
}

#[derive(Debug, Deserialize)]
struct StreamChoice {
    index: Option<u64>,
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    content: Option<String>,
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
    /// Azure's details: `code` and `content_filter_result`. The service sends
    /// `innererror`; its published schema spells it `inner_error`. Kept as
    /// plain JSON, so that an odd shape there cannot hide the main `code`.
    #[serde(alias = "inner_error")]
    innererror: Option<serde_json::Value>,
}

/// Azure's error code for a prompt its content filter blocked, and the inner
/// code that comes with it.
const CONTENT_FILTER_CODE: &str = "content_filter";
const CONTENT_FILTER_INNER_CODE: &str = "ResponsibleAIPolicyViolation";

/// Reads a successful response body. A body that is not a chat completion
/// with at least one choice is `Malformed`, which the retry policy may retry.
pub(crate) fn parse_response(provider: &str, body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let parsed: ResponseBody = serde_json::from_slice(body).map_err(|err| {
        ProviderError::new(
            ProviderErrorKind::Malformed,
            format!(
                "{provider} answered with a body that is not a chat completion ({})",
                json_error_summary(&err)
            ),
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
        usage: parsed.usage.map(Usage::from),
        response_id: parsed.id,
        model: parsed.model,
        attempts: 1,
        rate_limit: None,
    })
}

/// A streamed completion put together chunk by chunk, so that the result is
/// the `ChatResponse` the same answer would have given unstreamed.
#[derive(Debug, Default)]
pub(crate) struct StreamAssembly {
    text: String,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    response_id: Option<String>,
    model: Option<String>,
    saw_choice: bool,
}

impl StreamAssembly {
    /// Adds the `data` of one event that is not `[DONE]`.
    pub(crate) fn accept(&mut self, provider: &str, data: &str) -> Result<(), ProviderError> {
        let chunk: StreamChunk = serde_json::from_str(data).map_err(|err| {
            ProviderError::new(
                ProviderErrorKind::Malformed,
                format!(
                    "{provider} streamed an event that is not a chat completion chunk ({}); turn streaming off if this server does not stream the OpenAI format",
                    json_error_summary(&err)
                ),
            )
        })?;
        if let Some(error) = chunk.error {
            return Err(stream_error(provider, error));
        }
        // Azure's first chunk carries only prompt filter results, with an empty
        // id and model: keep the first values that say something.
        if self.response_id.is_none() {
            self.response_id = chunk.id.filter(|id| !id.is_empty());
        }
        if self.model.is_none() {
            self.model = chunk.model.filter(|model| !model.is_empty());
        }
        // With `include_usage` the usage arrives in a last chunk with no
        // choices; some servers send it with the finish reason instead. The
        // last one seen covers both.
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        // Only the first choice is read, as for a whole response; a request
        // never asks for more than one.
        for choice in chunk
            .choices
            .into_iter()
            .filter(|choice| choice.index.unwrap_or(0) == 0)
        {
            self.saw_choice = true;
            if let Some(content) = choice.delta.and_then(|delta| delta.content) {
                self.text.push_str(&content);
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        Ok(())
    }

    /// The response once the stream is over. `saw_done` says whether it ended
    /// with `data: [DONE]`: a stream cut off before both `[DONE]` and a finish
    /// reason is torn, and its text may be incomplete.
    pub(crate) fn finish(
        self,
        provider: &str,
        saw_done: bool,
    ) -> Result<ChatResponse, ProviderError> {
        if !saw_done && self.finish_reason.is_none() {
            return Err(ProviderError::new(
                ProviderErrorKind::Malformed,
                format!(
                    "{provider}'s stream ended before the answer was complete (no finish reason and no [DONE]); check the connection to the server, or turn streaming off"
                ),
            ));
        }
        if !self.saw_choice {
            return Err(ProviderError::new(
                ProviderErrorKind::Malformed,
                format!("{provider} streamed a chat completion that has no choices"),
            ));
        }
        Ok(ChatResponse {
            text: self.text,
            finish_reason: self.finish_reason,
            usage: self.usage,
            response_id: self.response_id,
            model: self.model,
            attempts: 1,
            rate_limit: None,
        })
    }
}

impl From<WireUsage> for Usage {
    fn from(usage: WireUsage) -> Usage {
        Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.total_tokens,
        }
    }
}

/// An error object sent in place of a chunk once the stream had started.
fn stream_error(provider: &str, error: ErrorDetail) -> ProviderError {
    if is_content_filter(&error) {
        return content_filter_error(provider, "in the stream", &error);
    }
    let message = error
        .message
        .map(|message| message.trim().to_string())
        .filter(|message| !message.is_empty())
        .unwrap_or_else(|| "no message".to_string());
    ProviderError::new(
        ProviderErrorKind::Server,
        format!("{provider} reported an error in the middle of the stream ({message})"),
    )
}

/// Whether an error object is Azure's content filter blocking the prompt.
fn is_content_filter(error: &ErrorDetail) -> bool {
    let code_is = |code: Option<&serde_json::Value>, expected: &str| {
        code.and_then(serde_json::Value::as_str) == Some(expected)
    };
    code_is(error.code.as_ref(), CONTENT_FILTER_CODE)
        || code_is(
            error
                .innererror
                .as_ref()
                .and_then(|inner| inner.get("code")),
            CONTENT_FILTER_INNER_CODE,
        )
}

/// The content filter's refusal. It never quotes the provider's message: that
/// text is free to echo the prompt, which must stay out of logs under
/// `--hipaa`. The flagged category names are safe to show.
fn content_filter_error(provider: &str, context: &str, error: &ErrorDetail) -> ProviderError {
    // Category (`hate`, `violence`, ...) to `{"filtered": bool, ...}`. The
    // service sends `content_filter_result`; the schema says `..._results`.
    let mut flagged: Vec<&str> = error
        .innererror
        .as_ref()
        .and_then(|inner| {
            inner
                .get("content_filter_result")
                .or_else(|| inner.get("content_filter_results"))
        })
        .and_then(serde_json::Value::as_object)
        .map(|categories| {
            categories
                .iter()
                .filter(|(_, result)| {
                    result.get("filtered") == Some(&serde_json::Value::Bool(true))
                })
                .map(|(category, _)| category.as_str())
                .collect()
        })
        .unwrap_or_default();
    flagged.sort_unstable();
    let flagged = if flagged.is_empty() {
        String::new()
    } else {
        format!(", flagged: {}", flagged.join(", "))
    };
    ProviderError::new(
        ProviderErrorKind::ContentFilter,
        format!(
            "{provider}'s content filter blocked the request ({context}{flagged}); rephrase the prompt or the system prompt, or use a deployment whose content filter allows it"
        ),
    )
}

/// What a JSON error says without quoting the input: serde's messages can
/// quote a string from the body, and a body may hold prompt or response text.
fn json_error_summary(err: &serde_json::Error) -> String {
    let what = match err.classify() {
        serde_json::error::Category::Io => "cannot read it",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "unexpected JSON structure",
        serde_json::error::Category::Eof => "JSON cut off",
    };
    format!("{what} at line {}, column {}", err.line(), err.column())
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
        if self.status == 400
            && let Some(body) = &detail
            && is_content_filter(&body.error)
        {
            return content_filter_error(self.provider, "HTTP 400 content_filter", &body.error);
        }
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
                    None => format!(
                        "{provider} refused the request (HTTP {status}: {message}); no key was configured, so configure the server's key"
                    ),
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
