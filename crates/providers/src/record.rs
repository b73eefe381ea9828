//! Recording fixtures (`corpusgen generate --record DIR`): every HTTP exchange
//! with the provider, retries included, saved as one JSON file that the
//! replay provider serves again.
//!
//! An exchange file holds the request slot, the request body as sent, the
//! response status, the response headers of an allow-list (never a
//! credential or a cookie) and the response body: JSON as JSON, anything else
//! (a streamed `text/event-stream` body, a broken body) as its text. Files are
//! numbered when the request is sent, so their names sort in issue order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use corpusgen_core::ChatRequest;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};

/// The value of `format` in every exchange file, which tells an exchange from
/// a bare response body.
pub const EXCHANGE_FORMAT: &str = "corpusgen-exchange-1";

/// The response headers an exchange keeps. An allow-list, so that a header a
/// provider adds tomorrow (a session cookie, an account id) is left out
/// rather than recorded.
const KEPT_HEADERS: &[&str] = &[
    "content-type",
    "x-request-id",
    "apim-request-id",
    "openai-model",
    "openai-processing-ms",
    "openai-version",
    "retry-after",
    "retry-after-ms",
];

/// Response headers kept by prefix: OpenAI's and Azure's rate-limit counters.
const KEPT_HEADER_PREFIXES: &[&str] = &["x-ratelimit-"];

/// One recorded exchange, as it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    pub format: String,
    pub request: RecordedRequest,
    pub response: RecordedResponse,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// The request slot and resample of the job loop: replay serves the
    /// exchanges of slot `index`, resample `resample` to that request.
    pub index: u64,
    pub resample: u32,
    /// The body exactly as it was posted. It never holds a credential: those
    /// travel in headers only.
    pub body: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedResponse {
    pub status: u16,
    /// Lowercase names; only the allow-listed ones.
    pub headers: BTreeMap<String, String>,
    /// JSON as JSON; any other body as its text.
    pub body: serde_json::Value,
}

/// One HTTP response as it was received, to be recorded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received<'a> {
    pub status: u16,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Writes exchanges into a folder. Shared by every request in flight.
#[derive(Debug)]
pub struct Recorder {
    folder: PathBuf,
    next: AtomicU64,
    /// The first exchange that could not be written: the job goes on, since
    /// the response itself is good, and the caller reports it at the end.
    failure: Mutex<Option<String>>,
}

/// A recording folder that cannot be used, with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot create the recording folder {folder}: {source}")]
    Create {
        folder: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the recording folder {0} is not empty; pass --record an empty or new folder, so that two recordings never mix"
    )]
    NotEmpty(PathBuf),
}

impl Recorder {
    /// Whether `folder` can take a recording, without creating anything: it
    /// must be missing or empty, since exchanges of two runs in one folder
    /// would replay as one.
    pub fn check(folder: &Path) -> Result<(), RecordError> {
        match std::fs::read_dir(folder) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RecordError::Create {
                folder: folder.to_path_buf(),
                source,
            }),
            Ok(entries) => match entries.into_iter().next() {
                Some(_) => Err(RecordError::NotEmpty(folder.to_path_buf())),
                None => Ok(()),
            },
        }
    }

    /// A recorder for `folder`, checked but not created yet: `open` creates
    /// it just before the first request, so that checking a job (a dry run,
    /// or a job file's checks before any job runs) leaves no folder behind.
    pub fn new(folder: &Path) -> Result<Recorder, RecordError> {
        Recorder::check(folder)?;
        Ok(Recorder {
            folder: folder.to_path_buf(),
            next: AtomicU64::new(1),
            failure: Mutex::new(None),
        })
    }

    /// Creates the folder, and checks again that it is empty.
    pub fn open(&self) -> Result<(), RecordError> {
        std::fs::create_dir_all(&self.folder).map_err(|source| RecordError::Create {
            folder: self.folder.clone(),
            source,
        })?;
        Recorder::check(&self.folder)
    }

    /// `new` then `open`: a recorder whose folder exists.
    pub fn create(folder: &Path) -> Result<Recorder, RecordError> {
        let recorder = Recorder::new(folder)?;
        recorder.open()?;
        Ok(recorder)
    }

    /// The folder exchanges are written to.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Why an exchange could not be written, if one could not.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Takes the next number, when a request is sent.
    pub(crate) fn next_number(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Saves one exchange as `NNNN-request-I[-resample-R].json`. `secret` is
    /// the credential of the request, replaced by `[redacted]` should the
    /// server have echoed it in a kept header or the body.
    pub(crate) fn save(
        &self,
        number: u64,
        request: &ChatRequest,
        request_body: &serde_json::Value,
        received: Received<'_>,
        secret: Option<&str>,
    ) {
        let scrub = |text: &str| match secret {
            Some(secret) if !secret.is_empty() => text.replace(secret, "[redacted]"),
            _ => text.to_string(),
        };
        let mut kept = BTreeMap::new();
        for (name, value) in received.headers {
            let name = name.as_str();
            let allowed = KEPT_HEADERS.contains(&name)
                || KEPT_HEADER_PREFIXES
                    .iter()
                    .any(|prefix| name.starts_with(prefix));
            if allowed && let Ok(value) = value.to_str() {
                kept.insert(name.to_string(), scrub(value));
            }
        }
        let body_text = scrub(&String::from_utf8_lossy(received.body));
        let body = serde_json::from_str(&body_text).unwrap_or(serde_json::Value::String(body_text));
        let exchange = Exchange {
            format: EXCHANGE_FORMAT.to_string(),
            request: RecordedRequest {
                index: request.index,
                resample: request.resample,
                body: request_body.clone(),
            },
            response: RecordedResponse {
                status: received.status,
                headers: kept,
                body,
            },
        };
        let name = match request.resample {
            0 => format!("{number:04}-request-{}.json", request.index),
            resample => format!(
                "{number:04}-request-{}-resample-{resample}.json",
                request.index
            ),
        };
        if let Err(err) = self.write(&name, &exchange) {
            let mut failure = self
                .failure
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            failure.get_or_insert_with(|| {
                format!(
                    "cannot write the exchange {}: {err}",
                    self.folder.join(&name).display()
                )
            });
        }
    }

    /// Writes beside the final name, then renames: a replay never reads half
    /// an exchange, and a `.partial` file is not a `.json` one.
    fn write(&self, name: &str, exchange: &Exchange) -> std::io::Result<()> {
        let path = self.folder.join(name);
        let partial = self.folder.join(format!("{name}.partial"));
        let mut text =
            serde_json::to_string_pretty(exchange).expect("an exchange always serializes");
        text.push('\n');
        std::fs::write(&partial, text)?;
        std::fs::rename(&partial, &path)
    }
}

/// Reads an exchange file's JSON, or `None` if it is some other JSON (a bare
/// response body).
pub(crate) fn as_exchange(value: &serde_json::Value) -> Option<Result<Exchange, String>> {
    if value.get("format").and_then(serde_json::Value::as_str) != Some(EXCHANGE_FORMAT) {
        return None;
    }
    Some(serde_json::from_value(value.clone()).map_err(|err| {
        format!(
            "it says it is a recorded exchange but does not have its fields ({err}); record it again"
        )
    }))
}
