//! Every environment variable corpusgen reads, in one place. A provider's key
//! is read only from its own variable, never from another provider's.

/// The OpenAI API key of the `openai` profile.
pub const OPENAI_API_KEY: &str = "OPENAI_API_KEY";

/// Overrides the built-in `openai` profile's base URL (`--base-url` beats it).
pub const OPENAI_BASE_URL: &str = "OPENAI_BASE_URL";

/// The Azure OpenAI resource of the built-in `azure` profile.
pub const AZURE_OPENAI_ENDPOINT: &str = "AZURE_OPENAI_ENDPOINT";

/// The Azure OpenAI key of the `azure` profile.
pub const AZURE_OPENAI_API_KEY: &str = "AZURE_OPENAI_API_KEY";

/// An Entra ID bearer token for Azure OpenAI, used when no key is set.
pub const AZURE_OPENAI_AD_TOKEN: &str = "AZURE_OPENAI_AD_TOKEN";

/// The Azure OpenAI API version.
pub const AZURE_OPENAI_API_VERSION: &str = "AZURE_OPENAI_API_VERSION";

/// The API version variable the official SDK also reads, after the one above.
pub const OPENAI_API_VERSION: &str = "OPENAI_API_VERSION";

/// The config file, when `--config` is not given.
pub const CORPUSGEN_CONFIG: &str = "CORPUSGEN_CONFIG";

/// The tracing filter, for debugging (`-v` and `-vv` set it otherwise).
pub const CORPUSGEN_LOG: &str = "CORPUSGEN_LOG";

/// Where the user's config folder is (`$XDG_CONFIG_HOME/corpusgen/config.toml`).
pub const XDG_CONFIG_HOME: &str = "XDG_CONFIG_HOME";

/// The fallback for the user's config folder (`~/.config/corpusgen/config.toml`).
pub const HOME: &str = "HOME";
