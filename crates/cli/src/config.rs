//! The config file: provider profiles and model aliases, in TOML.
//!
//! Its types deny unknown fields, so a typo is an error naming the file, line
//! and column instead of a setting silently ignored.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::Environment;
use crate::env_vars;
use crate::exit::CliError;

/// The config file's content.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Provider profiles by name; `--provider NAME` selects one.
    #[serde(default)]
    pub providers: BTreeMap<String, ProfileConfig>,
    /// Model aliases by name; `--model ALIAS` selects the alias's profile and
    /// model or deployment.
    #[serde(default)]
    pub models: BTreeMap<String, Spanned<ModelAlias>>,
    /// Values of `--diversify` axes: a built-in axis's own values, or a new
    /// axis, usable as a `{name}` placeholder.
    #[serde(default)]
    pub diversify: BTreeMap<String, Vec<String>>,
    /// Prices by model (or Azure deployment) name, over the built-in table.
    #[serde(default)]
    pub prices: BTreeMap<String, Spanned<PriceConfig>>,
}

/// One `[prices."MODEL"]` table: USD per million tokens.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

/// One `[providers.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    pub kind: ProviderKind,
    /// An Azure OpenAI resource, `https://NAME.openai.azure.com`.
    pub endpoint: Option<Spanned<String>>,
    /// The base URL of an OpenAI or OpenAI-compatible API, ending in `/v1`.
    pub base_url: Option<Spanned<String>>,
    pub api_version: Option<String>,
    /// The environment variable that holds this profile's key.
    pub api_key_env: Option<String>,
    /// The environment variable that holds an Entra ID bearer token (Azure).
    pub ad_token_env: Option<String>,
    /// The user's attestation that a BAA covers this deployment, which lets
    /// `--hipaa` jobs use it.
    #[serde(default)]
    pub hipaa_eligible: bool,
    /// The model asked when `--model` is not given.
    pub model: Option<String>,
}

/// The kinds of provider a profile can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Openai,
    Azure,
    Local,
}

/// One `[models.ALIAS]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelAlias {
    /// The profile that serves this alias.
    pub provider: String,
    /// The Azure deployment the alias stands for.
    pub deployment: Option<String>,
    /// The model name, for openai and local profiles.
    pub model: Option<String>,
}

/// A loaded config file, with its path and text for error positions.
#[derive(Debug, Default)]
pub struct Config {
    pub path: Option<PathBuf>,
    text: String,
    pub file: ConfigFile,
}

impl Config {
    /// Finds and reads the config file: `--config FILE`, else the file named
    /// by `CORPUSGEN_CONFIG`, else `./corpusgen.toml`, else the user's config
    /// folder. A file named explicitly must exist; the implicit ones may not.
    pub fn load(flag: Option<&Path>, env: &Environment) -> Result<Config, CliError> {
        let explicit = flag
            .map(Path::to_path_buf)
            .or_else(|| env.get(env_vars::CORPUSGEN_CONFIG).map(PathBuf::from));
        if let Some(path) = explicit {
            let text = std::fs::read_to_string(&path).map_err(|err| {
                CliError::bad_input(format!(
                    "cannot read the config file {}: {err}; check --config or {}",
                    path.display(),
                    env_vars::CORPUSGEN_CONFIG
                ))
            })?;
            return Config::parse(path, text);
        }
        for path in implicit_paths(env) {
            if let Ok(text) = std::fs::read_to_string(&path) {
                return Config::parse(path, text);
            }
        }
        Ok(Config::default())
    }

    /// Parses config text; errors name the file, line and column.
    pub fn parse(path: PathBuf, text: String) -> Result<Config, CliError> {
        match toml::from_str::<ConfigFile>(&text) {
            Ok(file) => {
                let config = Config {
                    path: Some(path),
                    text,
                    file,
                };
                config.check_aliases()?;
                Ok(config)
            }
            Err(err) => Err(CliError::bad_input(format!(
                "{}: {}",
                position(&path, &text, err.span()),
                one_line(err.message())
            ))),
        }
    }

    /// Every alias must name a profile that exists and say what it stands for.
    fn check_aliases(&self) -> Result<(), CliError> {
        for (alias, entry) in &self.file.models {
            let target = entry.get_ref();
            let kind = match self.file.providers.get(&target.provider) {
                Some(profile) => Some(profile.kind),
                None => match target.provider.as_str() {
                    "openai" => Some(ProviderKind::Openai),
                    "azure" => Some(ProviderKind::Azure),
                    "local" => Some(ProviderKind::Local),
                    _ => None,
                },
            };
            let problem = match (kind, &target.deployment, &target.model) {
                (None, _, _) => format!(
                    "the model alias `{alias}` names the provider `{}`, which is neither built in (openai, azure, local) nor a [providers.{}] table",
                    target.provider, target.provider
                ),
                (Some(ProviderKind::Azure), None, _) => format!(
                    "the model alias `{alias}` is served by an azure profile and needs `deployment = \"NAME\"`"
                ),
                (Some(ProviderKind::Openai | ProviderKind::Local), _, None) => format!(
                    "the model alias `{alias}` needs `model = \"NAME\"`, the model its profile asks for"
                ),
                _ => continue,
            };
            return Err(CliError::bad_input(format!(
                "{}: {problem}",
                self.at(entry.span())
            )));
        }
        Ok(())
    }

    /// `FILE:LINE:COL` of a span in this config, for errors found after parsing.
    pub fn at(&self, span: Range<usize>) -> String {
        match &self.path {
            Some(path) => position(path, &self.text, Some(span)),
            None => "the config".to_string(),
        }
    }
}

/// `./corpusgen.toml`, then `$XDG_CONFIG_HOME/corpusgen/config.toml` or
/// `~/.config/corpusgen/config.toml`.
fn implicit_paths(env: &Environment) -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("corpusgen.toml")];
    let config_home = env
        .get(env_vars::XDG_CONFIG_HOME)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env.get(env_vars::HOME)
                .map(|home| Path::new(&home).join(".config"))
        });
    if let Some(config_home) = config_home {
        paths.push(config_home.join("corpusgen").join("config.toml"));
    }
    paths
}

/// `FILE:LINE:COL`, both counted from 1, for the start of `span`.
pub fn position(path: &Path, text: &str, span: Option<Range<usize>>) -> String {
    let Some(span) = span else {
        return path.display().to_string();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("{}:{line}:{column}", path.display())
}

/// toml's messages may run over several lines; the error is one sentence.
pub fn one_line(message: &str) -> String {
    message
        .split('\n')
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
