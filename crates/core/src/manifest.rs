//! `FILE.manifest.json`: the resolved job, its totals and its timings, so a
//! corpus can be traced back to exactly how it was made.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::batch::BatchSummary;
use crate::cost::ManifestPrices;
use crate::journal::RejectReason;
use crate::spec::JobSpec;
use crate::stats::CorpusStats;

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub corpusgen_version: String,
    pub job_id: String,
    pub job: JobSpec,
    /// The user prompt as sent, placeholders filled in.
    pub user_prompt: String,
    pub outputs: ManifestOutputs,
    pub totals: Totals,
    /// The model names the provider reported, with how many responses each gave.
    pub response_models: BTreeMap<String, u64>,
    pub timings: Timings,
    /// The corpus's diversity scores (`corpusgen stats`), for corpora of up to
    /// `MANIFEST_STATS_MAX_RESPONSES` responses; the pairwise scores grow with
    /// the square of the count, so larger corpora leave this null and say so.
    pub stats: Option<CorpusStats>,
    pub stats_note: Option<String>,
    /// How often each value of each `--diversify` axis is in the corpus.
    pub variants: BTreeMap<String, BTreeMap<String, u64>>,
    /// The price `totals.cost_usd` is computed at; null when the model's
    /// price is unknown.
    pub prices: Option<ManifestPrices>,
    /// Why the job stopped before its target: `budget` when `--budget-usd`
    /// would have been passed. Null when the target was met.
    pub stopped: Option<String>,
    /// What the provider's batch engine did for a `--batch` job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchSummary>,
}

/// The most responses whose scores are computed when the manifest is written
/// (about two seconds for the pairwise scores of 300 explanations).
pub const MANIFEST_STATS_MAX_RESPONSES: u64 = 300;

#[derive(Debug, Clone, Serialize)]
pub struct ManifestOutputs {
    pub corpus: PathBuf,
    pub journal: PathBuf,
    pub manifest: PathBuf,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Responses that form the corpus.
    pub responses_used: u64,
    /// Accepted responses beyond the corpus: paid for, kept in the journal.
    pub responses_unused: u64,
    /// Every response received, accepted or rejected.
    pub responses_received: u64,
    pub rejected: BTreeMap<RejectReason, u64>,
    /// The corpus file's length, separators counted.
    pub corpus_chars: u64,
    /// The sum of the used responses' lengths, separators not counted.
    pub response_chars: u64,
    pub target: String,
    /// Responses whose provider reported token usage; the token sums below
    /// cover only those.
    pub responses_with_usage: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// HTTP attempts over all responses received, retries included.
    pub attempts: u64,
    /// Attempts that were retries, over every request, failed ones included.
    pub retries: u64,
    /// Time spent waiting between attempts (backoff and Retry-After).
    pub retry_wait_ms: u64,
    /// Times every request was paused: after a 429, or when the provider's
    /// rate-limit headers said its window was used up.
    pub cooldowns: u64,
    /// Responses that came from the journal of an earlier run of this job.
    pub resumed_responses: u64,
    /// The USD cost of every response received (rejected and unused ones
    /// too: they were paid for), from the reported usage and `prices`; null
    /// when the price or some usage is unknown.
    pub cost_usd: Option<f64>,
    /// The tiktoken encoding of a `--target-tokens` job, null otherwise.
    pub token_encoding: Option<String>,
    /// The used responses' tokens in that encoding, counted on this side.
    pub response_tokens: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    pub started: String,
    pub finished: String,
    pub wall_ms: u64,
}
