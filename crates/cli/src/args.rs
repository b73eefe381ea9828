//! The command line, as clap reads it. Nothing here resolves or validates
//! beyond types; `generate::resolve` does that once.

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use corpusgen_core::spec::{DEFAULT_PROMPT_TEMPLATE, DEFAULT_SEPARATOR};

/// Build text corpora of many independent LLM answers to one prompt,
/// collected to a target length and saved with full provenance.
#[derive(Debug, Parser)]
#[command(
    name = "corpusgen",
    version,
    propagate_version = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More log lines on stderr: -v for each request, -vv for HTTP details.
    /// Prompt and response texts are never logged.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, display_order = 1000)]
    pub verbose: u8,

    /// Print nothing on stderr but errors; results still go to stdout.
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        display_order = 1001
    )]
    pub quiet: bool,

    /// The config file of provider profiles and model aliases [default:
    /// $CORPUSGEN_CONFIG, else ./corpusgen.toml, else ~/.config/corpusgen/config.toml].
    #[arg(long, value_name = "FILE", global = true, display_order = 1002)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate one corpus: sample the prompt until the target is met, then
    /// write FILE, FILE's journal (.jsonl) and its manifest (.manifest.json).
    Generate(Box<GenerateArgs>),
    /// Measure a corpus: counts, lengths and the diversity scores of Shaib et
    /// al. 2024 (the `diversity` package's definitions), optionally beside a
    /// reference corpus.
    Stats(StatsArgs),
    /// Print a shell completion script: `corpusgen completions bash >
    /// ~/.local/share/bash-completion/completions/corpusgen`.
    Completions(CompletionsArgs),
    /// List the provider profiles, built-in and configured: kind, endpoint,
    /// the variable for the key and whether it is set, HIPAA eligibility.
    Providers(ProvidersArgs),
    /// Inspect or cancel the batches of a `generate --batch` job, found by
    /// the job's output file.
    Batch(BatchArgs),
    /// Run the jobs of a job file: [defaults], [matrix] lists that expand
    /// into one copy of every [[job]] per combination, and match_length =
    /// "job:NAME" to match another job's corpus; then print a summary.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    #[command(subcommand)]
    pub action: BatchAction,
}

#[derive(Debug, Subcommand)]
pub enum BatchAction {
    /// Print each batch of the job with its status and request counts, as
    /// the provider reports them now.
    Status {
        /// The job's --out file; its journal holds the batch ids.
        #[arg(value_name = "OUT")]
        out: PathBuf,
    },
    /// Cancel the job's batches that are still running. Finished work is
    /// kept by the provider; running `generate` again collects it.
    Cancel {
        /// The job's --out file; its journal holds the batch ids.
        #[arg(value_name = "OUT")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job file (TOML). Its relative paths are relative to its folder.
    #[arg(value_name = "JOBS.toml")]
    pub file: PathBuf,

    /// How many jobs may run at once; a job still waits for the job whose
    /// length it matches.
    #[arg(long, value_name = "N", default_value = "1")]
    pub jobs: NonZeroUsize,

    /// Print every job's plan (as `generate --dry-run`) and send nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Run every job through the provider's batch engine (as `generate
    /// --batch`).
    #[arg(long)]
    pub batch: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The corpus file: responses joined by the separator.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// The string between responses.
    #[arg(long, value_name = "S", default_value = DEFAULT_SEPARATOR)]
    pub separator: String,

    /// Another corpus to measure beside it, such as a hand-curated one.
    #[arg(long, value_name = "FILE")]
    pub reference: Option<PathBuf>,

    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct ProvidersArgs {
    /// Print one JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .args(["target_chars", "match_length", "count", "target_tokens"])
))]
pub struct GenerateArgs {
    /// What the responses explain; fills {topic} in the prompt.
    #[arg(long, value_name = "TEXT")]
    pub topic: String,

    /// The user prompt, a template with the placeholder {topic}.
    #[arg(long, value_name = "TEMPLATE", default_value = DEFAULT_PROMPT_TEMPLATE)]
    pub prompt: String,

    /// The system prompt [default: the seed notebook's teacher prompt].
    #[arg(long, value_name = "TEXT", conflicts_with = "no_system")]
    pub system: Option<String>,

    /// Send no system prompt at all.
    #[arg(long)]
    pub no_system: bool,

    /// Which profile answers: openai (the public API), azure (Azure OpenAI),
    /// local (an OpenAI-compatible server, Ollama's address by default),
    /// replay (recorded fixtures, no network), or a profile of the config
    /// file [default: openai, or the profile of a --model alias].
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,

    /// The folder of recorded responses that the replay provider answers from.
    #[arg(long, value_name = "DIR")]
    pub fixtures: Option<PathBuf>,

    /// The model to ask, the Azure deployment, or a model alias of the config
    /// file [default: gpt-4.1].
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,

    /// The provider's base URL, or the Azure resource endpoint [default:
    /// $OPENAI_BASE_URL or https://api.openai.com/v1 for openai,
    /// $AZURE_OPENAI_ENDPOINT for azure, http://127.0.0.1:11434/v1 for local].
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,

    /// Receive each response as a stream of server-sent events.
    #[arg(long)]
    pub stream: bool,

    /// Run under the HIPAA policy: only a profile attested `hipaa_eligible =
    /// true` in the config file, or a local server on this machine, may serve
    /// the job; it is refused before any network I/O otherwise. Output files
    /// are created mode 0600 and no prompt or response text is ever logged.
    #[arg(long)]
    pub hipaa: bool,

    /// Sampling temperature, 0 to 2.
    #[arg(
        long,
        value_name = "T",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub temperature: f64,

    /// The most tokens one response may have.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_tokens: Option<u32>,

    /// A sampling seed; request i sends N + i, so a provider that honours seeds
    /// gives the same corpus again.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub seed: Option<i64>,

    /// Collect responses until their lengths add up to N chars.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub target_chars: Option<u64>,

    /// Take the target from the char length of FILE (another corpus), so two
    /// corpora come out comparable.
    #[arg(long, value_name = "FILE")]
    pub match_length: Option<PathBuf>,

    /// Collect exactly N responses.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub count: Option<u64>,

    /// at-least: stop at the first response after which the sum of response
    /// lengths reaches the target (the seed's rule). closest: keep whichever of
    /// the two prefixes around the target has the joined length nearest to it.
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = LengthPolicyArg::AtLeast)]
    pub length_policy: LengthPolicyArg,

    /// Vary the prompt along these axes, a comma list of audience, style,
    /// format or axes of the config file's [diversify] table; request i's
    /// variant comes from a balanced walk shuffled by --seed.
    #[arg(long, value_name = "none|AXES", default_value = "none")]
    pub diversify: String,

    /// Ask for K distinct explanations per call, as a JSON object with a strict
    /// response_format schema; each counts as one response, in order.
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub per_request: u32,

    /// Reject a response whose estimated Jaccard similarity (MinHash of word
    /// 5-grams) with an accepted one is at least THRESHOLD, and ask again.
    /// Which of two near-copies is kept follows arrival order when more than
    /// one request is in flight.
    #[arg(long, value_name = "THRESHOLD", num_args = 0..=1, require_equals = true, default_missing_value = "0.8")]
    pub dedup: Option<f64>,

    /// The string between responses in the corpus file.
    #[arg(long, value_name = "S", default_value = DEFAULT_SEPARATOR)]
    pub separator: String,

    /// How many requests may be in flight at once. The corpus is the same for
    /// every value.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 8,
        allow_negative_numbers = true
    )]
    pub concurrency: usize,

    /// At most N requests a minute, evenly spaced, enforced on this side.
    #[arg(long, value_name = "N")]
    pub rpm: Option<NonZeroU32>,

    /// At most N tokens a minute (prompt estimated at four chars a token,
    /// completion from the usage seen so far), enforced on this side.
    #[arg(long, value_name = "N")]
    pub tpm: Option<NonZeroU32>,

    /// Seconds one request may take before it counts as timed out.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 120.0,
        allow_negative_numbers = true
    )]
    pub timeout: f64,

    /// Retries per request. Connect errors, timeouts, malformed bodies, 408,
    /// 409, 429 and 5xx are retried 0.5 s apart at first, doubling to at most
    /// 8 s, with up to 25% jitter; a Retry-After of up to 60 s is honoured
    /// instead. 400, 401, 403, 404 and an exhausted quota stop the job at once.
    #[arg(
        long,
        value_name = "N",
        default_value_t = corpusgen_core::retry::DEFAULT_MAX_RETRIES,
        allow_negative_numbers = true
    )]
    pub max_retries: u32,

    /// Start over, discarding the journal of a different job at the same --out.
    #[arg(long)]
    pub fresh: bool,

    /// The corpus file to write. Its journal and manifest go beside it.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// Collect responses until their tokens add up to N, counted on this side
    /// with the model's tiktoken encoding (o200k_base for a model tiktoken
    /// does not know).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub target_tokens: Option<u64>,

    /// Stop issuing requests before the cost (reported usage times the
    /// model's price, plus an estimate for the requests in flight) would pass
    /// X USD. What was accepted is written, and the exit code is 5 if the
    /// target was not met.
    #[arg(
        long,
        value_name = "X",
        allow_negative_numbers = true,
        conflicts_with = "batch"
    )]
    pub budget_usd: Option<f64>,

    /// Resolve everything and print the plan (profile, endpoint, HIPAA check,
    /// target, estimated requests, tokens and cost); send nothing and write
    /// no file.
    #[arg(long)]
    pub dry_run: bool,
    /// Run the job through the provider's batch engine (the OpenAI Batch API,
    /// Azure OpenAI global batch: half the price, answers within 24 hours)
    /// with an openai or azure profile. Running the same command again after
    /// a crash or Ctrl-C attaches to the batches already submitted.
    #[arg(long)]
    pub batch: bool,

    /// With --batch and a char target: the chars one response is expected to
    /// have, which sizes the first batch, until the journal holds responses.
    #[arg(long, value_name = "N", requires = "batch", default_value_t = corpusgen_core::batch::DEFAULT_EXPECT_CHARS)]
    pub expect_chars: u64,

    /// With --batch and a char target: ask for this fraction more requests
    /// than the expected length needs, so rejections rarely need a follow-up.
    #[arg(long, value_name = "F", requires = "batch", default_value_t = corpusgen_core::batch::DEFAULT_MARGIN)]
    pub batch_margin: f64,

    /// The first wait between polls of a batch, in milliseconds (tests).
    #[arg(long, hide = true, default_value_t = 10_000)]
    pub batch_poll_ms: u64,

    /// The most requests one batch holds (tests; the providers' limit is the default).
    #[arg(long, hide = true, default_value_t = corpusgen_core::batch::MAX_BATCH_REQUESTS)]
    pub batch_max_requests: usize,

    /// The most bytes one request file holds (tests; the providers' limit is the default).
    #[arg(long, hide = true, default_value_t = corpusgen_core::batch::MAX_BATCH_BYTES)]
    pub batch_max_bytes: u64,
    /// Save every exchange with the provider (each HTTP attempt, retries
    /// included) as a fixture in DIR, which must be new or empty, for
    /// `--provider replay --fixtures DIR`. No credential or cookie is saved.
    /// Refused under --hipaa.
    #[arg(long, value_name = "DIR", conflicts_with = "batch")]
    pub record: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LengthPolicyArg {
    AtLeast,
    Closest,
}
