//! The HTTP providers. They all speak the OpenAI Chat Completions format; how
//! they differ (URL, auth header, query string, which fields the body carries,
//! whether the answer is streamed) is data in `Dialect`, not code.

use std::sync::Arc;
use std::time::Duration;

use corpusgen_core::{
    ChatProvider, ChatRequest, ChatResponse, ProviderError, ProviderErrorKind, RateLimitHint,
};
use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use crate::record::{Received, Recorder};
use crate::stream::read_event_stream;
use crate::wire::{HttpFailure, RequestBody, StreamOptions, explanations_format, parse_response};

/// OpenAI's public API, the default base URL of the `openai` provider.
pub const OPENAI_DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Ollama's OpenAI-compatible API on its default port, the default base URL of
/// the `local` provider. llama.cpp's `llama-server` (port 8080), vLLM (8000) and
/// LM Studio (1234) serve the same API under `/v1` on their own ports.
pub const LOCAL_DEFAULT_BASE_URL: &str = "http://127.0.0.1:11434/v1";

/// The newest generally available Azure OpenAI data-plane API version, whose
/// published request schema `fixtures/specs/` holds.
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

/// The per-request timeout unless `--timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How a credential is sent. Every variant that carries a secret sends it in a
/// header marked sensitive, so no HTTP-level debug output can show it.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Bearer TOKEN`: OpenAI keys, local servers with a key, and
    /// Microsoft Entra ID tokens for Azure.
    Bearer(SecretString),
    /// `api-key: KEY`: an Azure OpenAI resource key.
    ApiKey(SecretString),
    /// No credential at all: neither `Authorization` nor `api-key` is sent.
    None,
}

/// Which field carries the completion-token limit: OpenAI has deprecated
/// `max_tokens` for `max_completion_tokens`; most local servers, and Azure's
/// 2024-10-21 request schema for non-reasoning models, know the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxTokensField {
    MaxTokens,
    MaxCompletionTokens,
}

/// Everything that makes one OpenAI-compatible endpoint differ from another.
#[derive(Debug, Clone)]
pub struct Dialect {
    /// The profile name, used in messages and the journal.
    pub name: String,
    /// The full URL requests are posted to, query string included.
    pub url: String,
    pub auth: Auth,
    /// The env var the credential came from, named in a 401/403 message.
    pub key_env: Option<String>,
    /// Whether the body names the model. Azure leaves it out: the deployment in
    /// the URL names the model, and its request schema has no `model` field.
    pub model_in_body: bool,
    pub max_tokens_field: MaxTokensField,
    /// Whether to ask for the answer as Server-Sent Events (`"stream": true`)
    /// and assemble it from the streamed chunks.
    pub stream: bool,
    /// Whether a streamed request also asks for token usage in a final chunk
    /// (`"stream_options": {"include_usage": true}`). Azure's 2024-10-21 request
    /// schema has no `stream_options`, so the Azure dialect leaves it off; turn
    /// it on for a preview API version that knows it.
    pub stream_include_usage: bool,
    pub timeout: Duration,
}

/// A provider that posts Chat Completions requests over HTTP.
#[derive(Debug, Clone)]
pub struct HttpProvider {
    dialect: Dialect,
    /// Built once from the dialect, so a key that cannot be a header value
    /// fails at setup instead of silently sending no credential.
    headers: HeaderMap,
    client: reqwest::Client,
    /// Saves every exchange as a fixture (`--record DIR`).
    recorder: Option<Arc<Recorder>>,
}

/// An HTTP provider that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// reqwest could not build a client (no TLS backend, for one).
    #[error("cannot set up the HTTP client for {name}: {source}")]
    Client {
        name: String,
        #[source]
        source: reqwest::Error,
    },
    /// The credential holds a char an HTTP header cannot carry (a line break,
    /// a control char); the message names where it came from, never the key.
    #[error(
        "the credential for {name}{from} cannot be sent in an HTTP header; remove line breaks and control characters from it",
        from = key_env.as_deref().map(|env| format!(" in {env}")).unwrap_or_default()
    )]
    InvalidCredential {
        name: String,
        key_env: Option<String>,
    },
}

impl Dialect {
    /// The `openai` provider: `POST {base}/chat/completions` with a bearer key.
    pub fn openai(name: &str, base_url: &str, key: SecretString, key_env: &str) -> Dialect {
        Dialect {
            name: name.to_string(),
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            auth: Auth::Bearer(key),
            key_env: Some(key_env.to_string()),
            model_in_body: true,
            max_tokens_field: MaxTokensField::MaxCompletionTokens,
            stream: false,
            stream_include_usage: true,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The `azure` provider:
    /// `POST {endpoint}/openai/deployments/{deployment}/chat/completions?api-version={api_version}`,
    /// with `auth` either `Auth::ApiKey` (a resource key, sent as `api-key`) or
    /// `Auth::Bearer` (a Microsoft Entra ID token). `key_env` is the env var the
    /// credential came from. The body has no `model`: the deployment names it.
    pub fn azure(
        name: &str,
        endpoint: &str,
        deployment: &str,
        api_version: &str,
        auth: Auth,
        key_env: &str,
    ) -> Dialect {
        Dialect {
            name: name.to_string(),
            url: format!(
                "{}/openai/deployments/{deployment}/chat/completions?api-version={api_version}",
                endpoint.trim_end_matches('/')
            ),
            auth,
            key_env: Some(key_env.to_string()),
            model_in_body: false,
            max_tokens_field: MaxTokensField::MaxTokens,
            stream: false,
            stream_include_usage: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The `local` provider: any OpenAI-compatible server (Ollama, llama.cpp's
    /// `llama-server`, vLLM, LM Studio) at `POST {base}/chat/completions`.
    /// `key` is the server's key and the env var it came from; without one no
    /// `Authorization` header is sent at all.
    pub fn local(name: &str, base_url: &str, key: Option<(SecretString, String)>) -> Dialect {
        let (auth, key_env) = match key {
            Some((key, key_env)) => (Auth::Bearer(key), Some(key_env)),
            None => (Auth::None, None),
        };
        Dialect {
            name: name.to_string(),
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            auth,
            key_env,
            model_in_body: true,
            max_tokens_field: MaxTokensField::MaxTokens,
            stream: false,
            stream_include_usage: true,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl Auth {
    /// The secret this credential carries, if any.
    fn secret(&self) -> Option<&SecretString> {
        match self {
            Auth::Bearer(secret) | Auth::ApiKey(secret) => Some(secret),
            Auth::None => None,
        }
    }
}

impl HttpProvider {
    /// `max_in_flight` sizes the connection pool for the job's concurrency.
    pub fn new(dialect: Dialect, max_in_flight: usize) -> Result<HttpProvider, SetupError> {
        let headers = headers(&dialect)?;
        let client = reqwest::Client::builder()
            .timeout(dialect.timeout)
            .pool_max_idle_per_host(max_in_flight.max(1))
            .user_agent(concat!("corpusgen/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| SetupError::Client {
                name: dialect.name.clone(),
                source,
            })?;
        Ok(HttpProvider {
            dialect,
            headers,
            client,
            recorder: None,
        })
    }

    /// Records every exchange from now on, each HTTP attempt one file.
    pub fn with_recorder(mut self, recorder: Arc<Recorder>) -> HttpProvider {
        self.recorder = Some(recorder);
        self
    }

    /// The dialect this provider was built with.
    pub fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    /// The JSON body for a request, exactly as it is sent, stream fields included.
    pub fn body(&self, request: &ChatRequest) -> serde_json::Value {
        let (max_tokens, max_completion_tokens) = match self.dialect.max_tokens_field {
            MaxTokensField::MaxTokens => (request.max_tokens, None),
            MaxTokensField::MaxCompletionTokens => (None, request.max_tokens),
        };
        let stream = self.dialect.stream;
        serde_json::to_value(RequestBody {
            model: self.dialect.model_in_body.then_some(request.model.as_str()),
            messages: &request.messages,
            temperature: request.temperature,
            max_tokens,
            max_completion_tokens,
            seed: request.seed,
            // Left out rather than `false` when off, so a non-streamed body is
            // the same as before streaming existed.
            stream: stream.then_some(true),
            stream_options: (stream && self.dialect.stream_include_usage).then_some(
                StreamOptions {
                    include_usage: true,
                },
            ),
            response_format: (request.explanations > 1).then(explanations_format),
        })
        .expect("request bodies always serialize")
    }

    /// Removes the credential from a message, should a server ever echo it back.
    fn scrub(&self, mut error: ProviderError) -> ProviderError {
        if let Some(secret) = self.dialect.auth.secret() {
            let secret = secret.expose_secret();
            if !secret.is_empty() && error.message.contains(secret) {
                error.message = error.message.replace(secret, "[redacted]");
            }
        }
        error
    }

    async fn send(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let name = &self.dialect.name;
        let request_body = self.body(request);
        let body = serde_json::to_vec(&request_body).expect("request bodies always serialize");
        // Numbered before sending, so that recorded names sort in issue order.
        let recording = self
            .recorder
            .as_ref()
            .map(|recorder| (recorder, recorder.next_number()));
        let response = self
            .client
            .post(&self.dialect.url)
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await
            .map_err(|err| transport_error(name, &err))?;
        let status = response.status().as_u16();
        let header = |name: &str| header_text(&response, name);
        let retry_after_ms = header("retry-after-ms");
        let retry_after = header("retry-after");
        let content_type = header("content-type").unwrap_or_default();
        let rate_limit = rate_limit_hint(&header);
        // Kept only when recording, before reading the body consumes them.
        let recorded_headers = recording.map(|_| response.headers().clone());
        let record = |body: &[u8]| {
            if let (Some((recorder, number)), Some(headers)) = (recording, &recorded_headers) {
                let received = Received {
                    status,
                    headers,
                    body,
                };
                let secret = self.dialect.auth.secret().map(ExposeSecret::expose_secret);
                recorder.save(number, request, &request_body, received, secret);
            }
        };
        // An error status is read whole and classified the same way whether or
        // not the request asked for a stream: servers answer errors as JSON.
        if reads_as_event_stream(status, self.dialect.stream, &content_type) {
            // The body as it came, as far as it came, for the recording.
            let mut streamed = Vec::new();
            let bytes = response.bytes_stream().inspect(|piece| {
                if let (Some(_), Ok(piece)) = (recording, piece) {
                    streamed.extend_from_slice(piece);
                }
            });
            let result = read_event_stream(name, bytes, |err| transport_error(name, &err)).await;
            record(&streamed);
            return result.map(|response| ChatResponse {
                rate_limit,
                ..response
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|err| transport_error(name, &err))?;
        record(&bytes);
        if (200..300).contains(&status) {
            parse_response(name, &bytes).map(|response| ChatResponse {
                rate_limit,
                ..response
            })
        } else {
            Err(HttpFailure {
                provider: name,
                key_env: self.dialect.key_env.as_deref(),
                status,
                retry_after_ms: retry_after_ms.as_deref(),
                retry_after: retry_after.as_deref(),
                body: &bytes,
            }
            .classify())
        }
    }
}

impl ChatProvider for HttpProvider {
    fn name(&self) -> &str {
        &self.dialect.name
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        self.send(request).await.map_err(|err| self.scrub(err))
    }
}

/// The headers every request of a dialect carries, the credential marked
/// sensitive so that no debug output of the request can show it.
pub(crate) fn headers(dialect: &Dialect) -> Result<HeaderMap, SetupError> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let (header_name, header_text) = match &dialect.auth {
        Auth::Bearer(token) => (AUTHORIZATION, format!("Bearer {}", token.expose_secret())),
        Auth::ApiKey(key) => (
            HeaderName::from_static("api-key"),
            key.expose_secret().to_string(),
        ),
        Auth::None => return Ok(headers),
    };
    let mut value =
        HeaderValue::from_str(&header_text).map_err(|_| SetupError::InvalidCredential {
            name: dialect.name.clone(),
            key_env: dialect.key_env.clone(),
        })?;
    value.set_sensitive(true);
    headers.insert(header_name, value);
    Ok(headers)
}

/// Whether a response body is read as Server-Sent Events: a success to a
/// request that asked for a stream. A server that ignores `stream` answers
/// with a plain completion, which is as good an answer; anything else is read
/// as events.
pub(crate) fn reads_as_event_stream(
    status: u16,
    asked_for_stream: bool,
    content_type: &str,
) -> bool {
    (200..300).contains(&status)
        && asked_for_stream
        && !content_type.starts_with("application/json")
}

/// A failure before a complete HTTP response arrived.
pub(crate) fn transport_error(provider: &str, err: &reqwest::Error) -> ProviderError {
    // reqwest's messages name the URL but never headers, so they carry no key.
    let detail = std::error::Error::source(err)
        .map(|source| source.to_string())
        .unwrap_or_else(|| err.to_string());
    if err.is_timeout() {
        ProviderError::new(
            ProviderErrorKind::Timeout,
            format!(
                "{provider} did not answer in time ({detail}); raise --timeout if responses are long"
            ),
        )
    } else if err.is_connect() {
        ProviderError::new(
            ProviderErrorKind::Connect,
            format!("cannot connect to {provider} ({detail}); check the base URL and the network"),
        )
    } else {
        ProviderError::new(
            ProviderErrorKind::Connect,
            format!("the connection to {provider} failed ({detail})"),
        )
    }
}

/// The `x-ratelimit-*` headers OpenAI and Azure send with every response.
pub(crate) fn rate_limit_hint(header: &dyn Fn(&str) -> Option<String>) -> Option<RateLimitHint> {
    let count = |name: &str| header(name).and_then(|value| value.trim().parse::<u64>().ok());
    let reset = |name: &str| header(name).and_then(|value| parse_reset(&value));
    let hint = RateLimitHint {
        remaining_requests: count("x-ratelimit-remaining-requests"),
        remaining_tokens: count("x-ratelimit-remaining-tokens"),
        reset_requests: reset("x-ratelimit-reset-requests"),
        reset_tokens: reset("x-ratelimit-reset-tokens"),
    };
    (hint != RateLimitHint::default()).then_some(hint)
}

/// A reset time as OpenAI writes it: `20ms`, `1s`, `6m0s`, `1h2m3.5s`, or a
/// plain number of seconds.
pub(crate) fn parse_reset(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let mut total = 0.0;
    let mut number = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let amount: f64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += amount * unit;
    }
    (number.is_empty() && total.is_finite()).then(|| Duration::from_secs_f64(total))
}

/// A response header as text, if it is there and is text.
pub(crate) fn header_text(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_times_in_openai_notation() {
        for (text, millis) in [
            ("20ms", 20),
            ("1s", 1000),
            ("6m0s", 360_000),
            ("1h2m3.5s", 3_723_500),
            ("0.5", 500),
        ] {
            assert_eq!(
                parse_reset(text),
                Some(Duration::from_millis(millis)),
                "{text}"
            );
        }
        assert_eq!(parse_reset("soon"), None);
        assert_eq!(parse_reset("5x"), None);
    }
}
