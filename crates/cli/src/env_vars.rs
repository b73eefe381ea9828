//! Every environment variable corpusgen reads, in one place.

/// The OpenAI API key of the `openai` provider.
pub const OPENAI_API_KEY: &str = "OPENAI_API_KEY";

/// Overrides the `openai` provider's base URL (`--base-url` beats it).
pub const OPENAI_BASE_URL: &str = "OPENAI_BASE_URL";

/// The tracing filter, for debugging (`-v` and `-vv` set it otherwise).
pub const CORPUSGEN_LOG: &str = "CORPUSGEN_LOG";
