//! The HTTP providers. They all speak the OpenAI Chat Completions format; how
//! they differ (URL, auth header, query string, which fields the body carries)
//! is data in `Dialect`, not code.

use std::time::Duration;

use corpusgen_core::{ChatProvider, ChatRequest, ChatResponse, ProviderError, ProviderErrorKind};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use crate::wire::{HttpFailure, RequestBody, parse_response};

/// OpenAI's public API, the default base URL of the `openai` provider.
pub const OPENAI_DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The per-request timeout unless `--timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How a credential is sent.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Bearer KEY` (OpenAI, local servers with a key).
    Bearer(SecretString),
    /// No credential at all: no `Authorization` header is sent.
    None,
}

/// Which field carries the completion-token limit: OpenAI has deprecated
/// `max_tokens` for `max_completion_tokens`; most local servers know only the old one.
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
    /// The full URL requests are posted to.
    pub url: String,
    pub auth: Auth,
    /// The env var the key came from, named in a 401/403 message.
    pub key_env: Option<String>,
    pub max_tokens_field: MaxTokensField,
    pub timeout: Duration,
}

/// A provider that posts Chat Completions requests over HTTP.
#[derive(Debug, Clone)]
pub struct HttpProvider {
    dialect: Dialect,
    client: reqwest::Client,
}

/// An HTTP provider that could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTP client for {name}: {source}")]
pub struct SetupError {
    name: String,
    #[source]
    source: reqwest::Error,
}

impl Dialect {
    /// The `openai` provider: `POST {base}/chat/completions` with a bearer key.
    pub fn openai(name: &str, base_url: &str, key: SecretString, key_env: &str) -> Dialect {
        Dialect {
            name: name.to_string(),
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            auth: Auth::Bearer(key),
            key_env: Some(key_env.to_string()),
            max_tokens_field: MaxTokensField::MaxCompletionTokens,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl HttpProvider {
    /// `max_in_flight` sizes the connection pool for the job's concurrency.
    pub fn new(dialect: Dialect, max_in_flight: usize) -> Result<HttpProvider, SetupError> {
        let client = reqwest::Client::builder()
            .timeout(dialect.timeout)
            .pool_max_idle_per_host(max_in_flight.max(1))
            .user_agent(concat!("corpusgen/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| SetupError {
                name: dialect.name.clone(),
                source,
            })?;
        Ok(HttpProvider { dialect, client })
    }

    pub fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    /// The JSON body for a request, exactly as it is sent.
    pub fn body(&self, request: &ChatRequest) -> serde_json::Value {
        let (max_tokens, max_completion_tokens) = match self.dialect.max_tokens_field {
            MaxTokensField::MaxTokens => (request.max_tokens, None),
            MaxTokensField::MaxCompletionTokens => (None, request.max_tokens),
        };
        serde_json::to_value(RequestBody {
            model: Some(&request.model),
            messages: &request.messages,
            temperature: request.temperature,
            max_tokens,
            max_completion_tokens,
            seed: request.seed,
        })
        .expect("request bodies always serialize")
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Auth::Bearer(key) = &self.dialect.auth
            && let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
        {
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        headers
    }

    /// Removes the key from a message, should a server ever echo it back.
    fn scrub(&self, mut error: ProviderError) -> ProviderError {
        if let Auth::Bearer(key) = &self.dialect.auth {
            let key = key.expose_secret();
            if !key.is_empty() && error.message.contains(key) {
                error.message = error.message.replace(key, "[redacted]");
            }
        }
        error
    }

    async fn send(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let name = &self.dialect.name;
        let body =
            serde_json::to_vec(&self.body(request)).expect("request bodies always serialize");
        let response = self
            .client
            .post(&self.dialect.url)
            .headers(self.headers())
            .body(body)
            .send()
            .await
            .map_err(|err| transport_error(name, &err))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after_ms = header("retry-after-ms");
        let retry_after = header("retry-after");
        let bytes = response
            .bytes()
            .await
            .map_err(|err| transport_error(name, &err))?;
        if (200..300).contains(&status) {
            parse_response(name, &bytes)
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

/// A failure before a complete HTTP response arrived.
fn transport_error(provider: &str, err: &reqwest::Error) -> ProviderError {
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
