//! The batch engines: the OpenAI Batch API and Azure OpenAI global batch,
//! over the Files and Batches endpoints. Like the online providers, the two
//! differ only in data: where the endpoints are, what the request lines name
//! as their URL, and whether the line's body names the model.

use std::time::Duration;

use corpusgen_core::batch::{BatchApi, BatchInfo, BatchResult, BatchStatus, RequestCounts};
use corpusgen_core::{ChatRequest, ProviderError, ProviderErrorKind};
use reqwest::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::http::{Auth, Dialect, HttpProvider, SetupError, header_text, headers, transport_error};
use crate::wire::{HttpFailure, parse_response};

/// Uploads and downloads of request and result files may take far longer
/// than one chat request: a request file may hold 200 MB.
const FILE_TIMEOUT: Duration = Duration::from_secs(600);

/// A provider's batch engine, built from the same credentials as its online
/// dialect.
#[derive(Debug, Clone)]
pub struct BatchClient {
    /// The online provider, whose bodies the request lines carry.
    chat: HttpProvider,
    /// `{base}/files`, `{base}/batches` and so on, before the query string.
    base: String,
    /// `?api-version=V` for Azure, empty for OpenAI.
    query: String,
    /// The `url` of every request line and the `endpoint` of the batch.
    line_url: &'static str,
    /// Azure's request lines name the global-batch deployment as `model`.
    deployment_in_line: Option<String>,
    client: reqwest::Client,
}

/// One line of a request file, its fields in the order of the providers' docs.
#[derive(Debug, Serialize)]
struct RequestLine<'a> {
    custom_id: &'a str,
    method: &'static str,
    url: &'static str,
    body: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct FileObject {
    id: String,
}

#[derive(Debug, Deserialize)]
struct BatchObject {
    id: String,
    status: BatchStatus,
    #[serde(default)]
    request_counts: Option<RequestCounts>,
    input_file_id: Option<String>,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    errors: Option<BatchErrors>,
}

#[derive(Debug, Deserialize)]
struct BatchList {
    #[serde(default)]
    data: Vec<BatchObject>,
}

#[derive(Debug, Deserialize)]
struct BatchErrors {
    #[serde(default)]
    data: Vec<BatchError>,
}

#[derive(Debug, Deserialize)]
struct BatchError {
    code: Option<String>,
    message: Option<String>,
    line: Option<u64>,
}

/// One line of an output or error file.
#[derive(Debug, Deserialize)]
struct OutputLine {
    custom_id: String,
    response: Option<OutputResponse>,
    error: Option<BatchError>,
}

#[derive(Debug, Deserialize)]
struct OutputResponse {
    status_code: u16,
    #[serde(default)]
    body: serde_json::Value,
}

impl BatchClient {
    /// OpenAI's Batch API under `base_url` (`https://api.openai.com/v1`):
    /// request lines post to `/v1/chat/completions` with the model in the body.
    pub fn openai(
        name: &str,
        base_url: &str,
        key: SecretString,
        key_env: &str,
        timeout: Duration,
    ) -> Result<BatchClient, SetupError> {
        let mut dialect = Dialect::openai(name, base_url, key, key_env);
        dialect.timeout = timeout;
        BatchClient::new(
            dialect,
            base_url.trim_end_matches('/').to_string(),
            String::new(),
            "/v1/chat/completions",
            None,
        )
    }

    /// Azure OpenAI global batch: `{endpoint}/openai/files` and
    /// `{endpoint}/openai/batches` with `?api-version=V`; request lines post
    /// to `/chat/completions` and name the global-batch deployment as `model`.
    pub fn azure(
        name: &str,
        endpoint: &str,
        deployment: &str,
        api_version: &str,
        auth: Auth,
        key_env: &str,
        timeout: Duration,
    ) -> Result<BatchClient, SetupError> {
        let mut dialect = Dialect::azure(name, endpoint, deployment, api_version, auth, key_env);
        dialect.timeout = timeout;
        BatchClient::new(
            dialect,
            format!("{}/openai", endpoint.trim_end_matches('/')),
            format!("?api-version={api_version}"),
            "/chat/completions",
            Some(deployment.to_string()),
        )
    }

    fn new(
        mut dialect: Dialect,
        base: String,
        query: String,
        line_url: &'static str,
        deployment_in_line: Option<String>,
    ) -> Result<BatchClient, SetupError> {
        // The batch engine answers whole bodies: a request line never streams.
        dialect.stream = false;
        let client = reqwest::Client::builder()
            .user_agent(concat!("corpusgen/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| SetupError::Client {
                name: dialect.name.clone(),
                source,
            })?;
        Ok(BatchClient {
            chat: HttpProvider::new(dialect, 1)?,
            base,
            query,
            line_url,
            deployment_in_line,
            client,
        })
    }

    fn dialect(&self) -> &Dialect {
        self.chat.dialect()
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}{}", self.base, self.query)
    }

    /// `url` with one more query parameter.
    fn url_with(&self, path: &str, parameter: &str) -> String {
        let separator = if self.query.is_empty() { '?' } else { '&' };
        format!("{}{separator}{parameter}", self.url(path))
    }

    /// Sends a request with the dialect's credential and returns the body of
    /// a 2xx answer; any other status is classified as online.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        timeout: Duration,
        json: bool,
    ) -> Result<Vec<u8>, ProviderError> {
        let name = &self.dialect().name;
        let mut headers = headers(self.dialect())
            .map_err(|err| ProviderError::new(ProviderErrorKind::Auth, err.to_string()))?;
        if !json {
            headers.remove(CONTENT_TYPE);
        }
        let response = request
            .headers(headers)
            .timeout(timeout)
            .send()
            .await
            .map_err(|err| transport_error(name, &err))?;
        let status = response.status().as_u16();
        let retry_after_ms = header_text(&response, "retry-after-ms");
        let retry_after = header_text(&response, "retry-after");
        let bytes = response
            .bytes()
            .await
            .map_err(|err| transport_error(name, &err))?;
        if (200..300).contains(&status) {
            return Ok(bytes.to_vec());
        }
        Err(HttpFailure {
            provider: name,
            key_env: self.dialect().key_env.as_deref(),
            status,
            retry_after_ms: retry_after_ms.as_deref(),
            retry_after: retry_after.as_deref(),
            body: &bytes,
        }
        .classify())
    }

    /// Removes the credential from a message, should a server echo it back.
    fn scrub(&self, mut error: ProviderError) -> ProviderError {
        let secret = match &self.dialect().auth {
            Auth::Bearer(secret) | Auth::ApiKey(secret) => secret.expose_secret(),
            Auth::None => return error,
        };
        if !secret.is_empty() && error.message.contains(secret) {
            error.message = error.message.replace(secret, "[redacted]");
        }
        error
    }

    async fn batch(&self, request: reqwest::RequestBuilder) -> Result<BatchInfo, ProviderError> {
        let bytes = self.send(request, self.dialect().timeout, true).await?;
        parse_batch(&self.dialect().name, &bytes)
    }
}

impl BatchApi for BatchClient {
    fn name(&self) -> &str {
        &self.dialect().name
    }

    fn request_line(&self, custom_id: &str, request: &ChatRequest) -> String {
        let mut body = self.chat.body(request);
        if let Some(deployment) = &self.deployment_in_line {
            body["model"] = serde_json::Value::String(deployment.clone());
        }
        serde_json::to_string(&RequestLine {
            custom_id,
            method: "POST",
            url: self.line_url,
            body,
        })
        .expect("request lines always serialize")
    }

    async fn upload(&self, jsonl: Vec<u8>) -> Result<String, ProviderError> {
        let name = &self.dialect().name;
        let part = reqwest::multipart::Part::bytes(jsonl)
            .file_name("corpusgen-requests.jsonl")
            .mime_str("application/jsonl")
            .expect("the request file's media type is valid");
        let form = reqwest::multipart::Form::new()
            .text("purpose", "batch")
            .part("file", part);
        let request = self.client.post(self.url("files")).multipart(form);
        let bytes = self
            .send(request, FILE_TIMEOUT, false)
            .await
            .map_err(|err| self.scrub(err))?;
        serde_json::from_slice::<FileObject>(&bytes)
            .map(|file| file.id)
            .map_err(|_| malformed(name, "the uploaded file"))
    }

    async fn create(&self, input_file_id: &str) -> Result<BatchInfo, ProviderError> {
        let body = serde_json::json!({
            "input_file_id": input_file_id,
            "endpoint": self.line_url,
            "completion_window": "24h",
        });
        let request = self.client.post(self.url("batches")).body(body.to_string());
        self.batch(request).await.map_err(|err| self.scrub(err))
    }

    async fn get(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        let request = self.client.get(self.url(&format!("batches/{batch_id}")));
        self.batch(request).await.map_err(|err| self.scrub(err))
    }

    async fn find(&self, input_file_id: &str) -> Result<Option<BatchInfo>, ProviderError> {
        let name = &self.dialect().name;
        // The newest batches come first; a batch lost by a crash is recent.
        let request = self.client.get(self.url_with("batches", "limit=100"));
        let bytes = self
            .send(request, self.dialect().timeout, true)
            .await
            .map_err(|err| self.scrub(err))?;
        let list: BatchList =
            serde_json::from_slice(&bytes).map_err(|_| malformed(name, "a list of batches"))?;
        Ok(list
            .data
            .into_iter()
            .find(|batch| batch.input_file_id.as_deref() == Some(input_file_id))
            .map(batch_info))
    }

    async fn results(&self, file_id: &str) -> Result<Vec<BatchResult>, ProviderError> {
        let name = &self.dialect().name;
        let request = self
            .client
            .get(self.url(&format!("files/{file_id}/content")));
        let bytes = self
            .send(request, FILE_TIMEOUT, false)
            .await
            .map_err(|err| self.scrub(err))?;
        let text = String::from_utf8_lossy(&bytes);
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let line: OutputLine = serde_json::from_str(line)
                    .map_err(|_| malformed(name, "a line of a batch result file"))?;
                Ok(BatchResult {
                    custom_id: line.custom_id,
                    result: line_result(name, line.response, line.error),
                })
            })
            .collect()
    }

    async fn cancel(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        let request = self
            .client
            .post(self.url(&format!("batches/{batch_id}/cancel")));
        self.batch(request).await.map_err(|err| self.scrub(err))
    }
}

/// A result line as the online path would have seen the same answer: a 2xx
/// body is a chat completion, any other status is classified by the same
/// rules, and a line with only an error is a server-side failure that the
/// next round asks again.
fn line_result(
    name: &str,
    response: Option<OutputResponse>,
    error: Option<BatchError>,
) -> Result<corpusgen_core::ChatResponse, ProviderError> {
    match (response, error) {
        (Some(response), _) if (200..300).contains(&response.status_code) => {
            let body = serde_json::to_vec(&response.body).expect("JSON values serialize");
            parse_response(name, &body)
        }
        (Some(response), _) => {
            let body = serde_json::to_vec(&response.body).expect("JSON values serialize");
            Err(HttpFailure {
                provider: name,
                key_env: None,
                status: response.status_code,
                retry_after_ms: None,
                retry_after: None,
                body: &body,
            }
            .classify())
        }
        (None, error) => Err(ProviderError::new(
            ProviderErrorKind::Server,
            format!(
                "{name}'s batch engine did not answer the request ({})",
                error
                    .map(|error| describe(&error))
                    .unwrap_or_else(|| "no reason given".into())
            ),
        )),
    }
}

fn parse_batch(name: &str, bytes: &[u8]) -> Result<BatchInfo, ProviderError> {
    let batch: BatchObject =
        serde_json::from_slice(bytes).map_err(|_| malformed(name, "a batch"))?;
    Ok(batch_info(batch))
}

fn batch_info(batch: BatchObject) -> BatchInfo {
    BatchInfo {
        id: batch.id,
        status: batch.status,
        counts: batch.request_counts.unwrap_or_default(),
        output_file_id: batch.output_file_id.filter(|id| !id.is_empty()),
        error_file_id: batch.error_file_id.filter(|id| !id.is_empty()),
        errors: batch
            .errors
            .map(|errors| errors.data.iter().map(describe).collect())
            .unwrap_or_default(),
    }
}

fn describe(error: &BatchError) -> String {
    let mut text = error.message.clone().unwrap_or_else(|| "no message".into());
    if let Some(code) = &error.code {
        text = format!("{code}: {text}");
    }
    if let Some(line) = error.line {
        text = format!("line {line}: {text}");
    }
    text
}

fn malformed(name: &str, what: &str) -> ProviderError {
    ProviderError::new(
        ProviderErrorKind::Malformed,
        format!("{name} answered with a body that is not {what}"),
    )
}
