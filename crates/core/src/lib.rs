//! corpusgen-core: the job spec, the length policy, the job loop, the journal
//! and the output formats of corpusgen.
//!
//! Architecture invariant: this crate does no network I/O and knows no wire
//! format. It reads and writes only the files it is handed paths for (the
//! journal, the corpus, the manifest and a `--match-length` file).

pub mod batch;
pub mod cost;
pub mod dedup;
pub mod journal;
pub mod manifest;
pub mod output;
pub mod policy;
pub mod provider;
pub mod rate;
pub mod retry;
pub mod run;
pub mod spec;
pub mod stats;
pub mod text;
pub mod tokens;
pub mod variants;

pub use journal::{JournalRecord, RejectReason, ResponseRecord};
pub use output::OutputPaths;
pub use policy::{Assembler, Selection, select};
pub use provider::{
    ChatMessage, ChatProvider, ChatRequest, ChatResponse, ProviderError, ProviderErrorKind,
    RateLimitHint, Role, Usage,
};
pub use rate::RateLimits;
pub use retry::RetryPolicy;
pub use run::{Event, RunError, RunOptions, RunReport, run_job, run_job_until};
pub use spec::{JobSpec, LengthPolicy, Sampling, SpecError, Target};
pub use text::{char_len, join, split, splits_cleanly};

/// The version recorded in every journal and manifest.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
