//! corpusgen-providers: the `ChatProvider` implementations: OpenAI, Azure
//! OpenAI and local OpenAI-compatible servers over HTTP (`HttpProvider`, one
//! `Dialect` each, streamed or not), recorded fixtures (`ReplayProvider`),
//! and the recording of fixtures from live exchanges (`Recorder`).
//!
//! Architecture invariant: this is the only crate that knows the OpenAI wire
//! format and speaks HTTP. It reads no flags, environment variables or config
//! files: the command line resolves those and hands in a `Dialect`.

pub mod batch;
pub mod http;
pub mod record;
pub mod replay;
mod stream;
mod wire;

use corpusgen_core::{ChatProvider, ChatRequest, ChatResponse, ProviderError};

pub use batch::BatchClient;
pub use http::{
    AZURE_DEFAULT_API_VERSION, Auth, DEFAULT_TIMEOUT, Dialect, HttpProvider,
    LOCAL_DEFAULT_BASE_URL, MaxTokensField, OPENAI_DEFAULT_BASE_URL, SetupError,
};
pub use record::{RecordError, Recorder};
pub use replay::{ReplayError, ReplayProvider};

/// Every provider kind, closed: the job loop is generic over `ChatProvider`,
/// and this enum is the one implementation the command line hands it.
#[derive(Debug)]
pub enum Provider {
    Http(HttpProvider),
    Replay(ReplayProvider),
}

impl ChatProvider for Provider {
    fn name(&self) -> &str {
        match self {
            Provider::Http(provider) => provider.name(),
            Provider::Replay(provider) => provider.name(),
        }
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        match self {
            Provider::Http(provider) => provider.complete(request).await,
            Provider::Replay(provider) => provider.complete(request).await,
        }
    }
}
