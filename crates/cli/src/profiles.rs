//! Provider profiles: the built-in ones and those of the config file, how a
//! job picks one, and the HIPAA policy that decides whether it may.

use std::path::PathBuf;

use corpusgen_providers::{
    AZURE_DEFAULT_API_VERSION, LOCAL_DEFAULT_BASE_URL, OPENAI_DEFAULT_BASE_URL,
};
use secrecy::SecretString;

use crate::Environment;
use crate::config::{Config, ProfileConfig, ProviderKind};
use crate::env_vars;
use crate::exit::{CliError, ExitKind};

/// The model asked unless `--model`, an alias or the profile says otherwise.
pub const DEFAULT_MODEL: &str = "gpt-4.1";

/// The profiles that work without a config file.
pub const BUILT_IN: &[&str] = &["openai", "azure", "local", "replay"];

/// What kind of provider a profile is, with replay beside the HTTP kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Openai,
    Azure,
    Local,
    Replay,
}

/// Where a setting's value came from, for the HIPAA policy and for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(&'static str),
    File,
    Default,
    Unset,
}

/// A profile resolved for one job: everything needed to build its provider.
#[derive(Debug)]
pub struct Profile {
    pub name: String,
    pub kind: Kind,
    /// The base URL (openai, local) or the resource endpoint (azure).
    pub endpoint: Option<String>,
    pub endpoint_source: Source,
    pub credential: Credential,
    pub api_version: String,
    /// The model asked, or the Azure deployment.
    pub model: String,
    pub hipaa_eligible: bool,
    pub fixtures: Option<PathBuf>,
}

/// The credential a profile sends, read from its own environment variable.
#[derive(Debug)]
pub enum Credential {
    /// No credential configured or needed.
    None,
    /// A key: bearer for openai and local, `api-key` for azure.
    Key { secret: SecretString, env: String },
    /// An Entra ID bearer token (azure).
    AdToken { secret: SecretString, env: String },
    /// The profile needs a key and its variable is not set.
    Missing { env: String },
}

/// One row of `corpusgen providers`.
#[derive(Debug, serde::Serialize)]
pub struct ProfileSummary {
    pub name: String,
    pub kind: &'static str,
    pub built_in: bool,
    pub endpoint: Option<String>,
    pub key_env: Option<String>,
    pub key_set: bool,
    pub hipaa_eligible: bool,
    /// Why `--hipaa` would accept or refuse it.
    pub hipaa: String,
}

/// The flags that pick and shape a profile.
#[derive(Debug, Default)]
pub struct ProfileFlags<'a> {
    pub provider: Option<&'a str>,
    pub model: Option<&'a str>,
    pub base_url: Option<&'a str>,
    pub fixtures: Option<&'a PathBuf>,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Openai => "openai",
            Kind::Azure => "azure",
            Kind::Local => "local",
            Kind::Replay => "replay",
        }
    }
}

impl From<ProviderKind> for Kind {
    fn from(kind: ProviderKind) -> Kind {
        match kind {
            ProviderKind::Openai => Kind::Openai,
            ProviderKind::Azure => Kind::Azure,
            ProviderKind::Local => Kind::Local,
        }
    }
}

/// Resolves the job's profile: flags over environment over config file over
/// defaults, in this one place.
pub fn resolve(
    flags: &ProfileFlags,
    config: &Config,
    env: &Environment,
) -> Result<Profile, CliError> {
    // `--model ALIAS` picks the alias's profile unless `--provider` names one.
    let alias = flags.model.and_then(|model| config.file.models.get(model));
    let name = match (flags.provider, alias) {
        (Some(name), _) => name.to_string(),
        (None, Some(alias)) => alias.get_ref().provider.clone(),
        (None, None) => "openai".to_string(),
    };
    let configured = config.file.providers.get(&name);
    if let (Some(alias), None) = (alias, configured)
        && !BUILT_IN.contains(&name.as_str())
    {
        return Err(CliError::bad_input(format!(
            "{}: the model alias `{}` names the provider `{name}`, which is neither built in ({}) nor a [providers.{name}] table",
            config.at(alias.span()),
            flags.model.unwrap_or_default(),
            BUILT_IN.join(", ")
        )));
    }
    let kind = match (configured, name.as_str()) {
        (Some(profile), _) => Kind::from(profile.kind),
        (None, "openai") => Kind::Openai,
        (None, "azure") => Kind::Azure,
        (None, "local") => Kind::Local,
        (None, "replay") => Kind::Replay,
        (None, other) => {
            let mut known: Vec<&str> = BUILT_IN.to_vec();
            known.extend(config.file.providers.keys().map(String::as_str));
            return Err(CliError::bad_input(format!(
                "unknown provider `{other}`; the providers are {}, or add a [providers.{other}] table to the config file",
                known.join(", ")
            )));
        }
    };
    let model = match alias.map(|alias| alias.get_ref()) {
        Some(alias) if alias.provider == name => alias
            .deployment
            .clone()
            .or_else(|| alias.model.clone())
            .unwrap_or_else(|| flags.model.unwrap_or_default().to_string()),
        _ => flags
            .model
            .map(str::to_owned)
            .or_else(|| configured.and_then(|profile| profile.model.clone()))
            .unwrap_or_else(|| DEFAULT_MODEL.to_string()),
    };
    let (endpoint, endpoint_source) = endpoint(kind, &name, flags, configured, env)?;
    let credential = credential(kind, configured, env);
    let api_version = configured
        .and_then(|profile| profile.api_version.clone())
        .or_else(|| env.get(env_vars::AZURE_OPENAI_API_VERSION))
        .or_else(|| env.get(env_vars::OPENAI_API_VERSION))
        .unwrap_or_else(|| AZURE_DEFAULT_API_VERSION.to_string());
    let fixtures = match kind {
        Kind::Replay => Some(flags.fixtures.cloned().ok_or_else(|| {
            CliError::bad_input("the replay provider needs recorded responses; pass --fixtures DIR")
        })?),
        _ => None,
    };
    Ok(Profile {
        name,
        kind,
        endpoint,
        endpoint_source,
        credential,
        api_version,
        model,
        hipaa_eligible: configured.is_some_and(|profile| profile.hipaa_eligible),
        fixtures,
    })
}

/// The URL a profile talks to. The environment variables belong to the
/// built-in profiles of their provider; a configured profile is not moved by
/// them, so two Azure profiles cannot be swapped by an ambient variable.
fn endpoint(
    kind: Kind,
    name: &str,
    flags: &ProfileFlags,
    configured: Option<&ProfileConfig>,
    env: &Environment,
) -> Result<(Option<String>, Source), CliError> {
    if kind == Kind::Replay {
        return Ok((None, Source::Unset));
    }
    if let Some(url) = flags.base_url {
        return Ok((Some(url.to_string()), Source::Flag));
    }
    let env_var = match (kind, name) {
        (Kind::Openai, "openai") => Some(env_vars::OPENAI_BASE_URL),
        (Kind::Azure, "azure") => Some(env_vars::AZURE_OPENAI_ENDPOINT),
        _ => None,
    };
    if let Some(var) = env_var
        && let Some(url) = env.get(var).filter(|url| !url.trim().is_empty())
    {
        return Ok((Some(url), Source::Env(var)));
    }
    let from_file = configured.and_then(|profile| match kind {
        Kind::Azure => profile.endpoint.as_ref().or(profile.base_url.as_ref()),
        _ => profile.base_url.as_ref().or(profile.endpoint.as_ref()),
    });
    if let Some(url) = from_file {
        return Ok((Some(url.get_ref().clone()), Source::File));
    }
    match kind {
        Kind::Openai => Ok((Some(OPENAI_DEFAULT_BASE_URL.to_string()), Source::Default)),
        Kind::Local => Ok((Some(LOCAL_DEFAULT_BASE_URL.to_string()), Source::Default)),
        Kind::Azure => Err(CliError::bad_input(format!(
            "the azure profile `{name}` has no endpoint; set {} or `endpoint = \"https://RESOURCE.openai.azure.com\"` under [providers.{name}], or pass --base-url",
            env_vars::AZURE_OPENAI_ENDPOINT
        ))),
        Kind::Replay => Ok((None, Source::Unset)),
    }
}

/// The credential of a profile, from the variable it names or its kind's
/// default variable; local servers need none unless their profile names one.
fn credential(kind: Kind, configured: Option<&ProfileConfig>, env: &Environment) -> Credential {
    let named = configured.and_then(|profile| profile.api_key_env.clone());
    let key_env = match kind {
        Kind::Openai => Some(named.unwrap_or_else(|| env_vars::OPENAI_API_KEY.to_string())),
        Kind::Azure => Some(named.unwrap_or_else(|| env_vars::AZURE_OPENAI_API_KEY.to_string())),
        Kind::Local => named,
        Kind::Replay => None,
    };
    let Some(key_env) = key_env else {
        return Credential::None;
    };
    let read = |var: &str| env.get(var).filter(|value| !value.trim().is_empty());
    if let Some(key) = read(&key_env) {
        return Credential::Key {
            secret: SecretString::from(key),
            env: key_env,
        };
    }
    if kind == Kind::Azure {
        let token_env = configured
            .and_then(|profile| profile.ad_token_env.clone())
            .unwrap_or_else(|| env_vars::AZURE_OPENAI_AD_TOKEN.to_string());
        if let Some(token) = read(&token_env) {
            return Credential::AdToken {
                secret: SecretString::from(token),
                env: token_env,
            };
        }
    }
    Credential::Missing { env: key_env }
}

fn credential_env(credential: &Credential) -> Option<&str> {
    match credential {
        Credential::None => None,
        Credential::Key { env, .. }
        | Credential::AdToken { env, .. }
        | Credential::Missing { env } => Some(env),
    }
}

/// Whether `url` names this machine: `localhost`, 127.0.0.0/8 or `[::1]`.
pub fn is_loopback(url: &str) -> bool {
    let Some(rest) = url.split_once("://").map(|(_, rest)| rest) else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

impl Profile {
    /// The HIPAA policy, checked before any network I/O: a `--hipaa` job may
    /// only reach a profile attested `hipaa_eligible = true` at the endpoint
    /// the config file attests, or a local server on this machine. Replay
    /// sends nothing anywhere and is allowed.
    pub fn check_hipaa(&self) -> Result<(), CliError> {
        let refuse = |reason: String| {
            CliError::new(
                ExitKind::Refused,
                format!("--hipaa refuses the profile `{}`: {reason}", self.name),
            )
        };
        let endpoint = self.endpoint.as_deref().unwrap_or_default();
        match self.kind {
            Kind::Replay => Ok(()),
            Kind::Local if is_loopback(endpoint) => Ok(()),
            _ if !self.hipaa_eligible => Err(refuse(format!(
                "it is not marked HIPAA-eligible; if a BAA covers it, set `hipaa_eligible = true` under [providers.{}] in the config file{}",
                self.name,
                if self.kind == Kind::Local {
                    " (a local server off this machine needs the same)"
                } else {
                    ""
                }
            ))),
            _ if !matches!(self.endpoint_source, Source::File) => Err(refuse(format!(
                "its endpoint {endpoint} comes from {}, not from the config file that attests the BAA; put it under [providers.{}]",
                match self.endpoint_source {
                    Source::Flag => "--base-url".to_string(),
                    Source::Env(var) => var.to_string(),
                    _ => "a default".to_string(),
                },
                self.name
            ))),
            _ if !endpoint.starts_with("https://") && !is_loopback(endpoint) => {
                Err(refuse(format!(
                    "its endpoint {endpoint} is not https; a HIPAA job sends nothing unencrypted off this machine"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The key's variable, for messages, if the profile has one.
    pub fn key_env(&self) -> Option<&str> {
        credential_env(&self.credential)
    }
}

/// Every profile, built-in and configured, for `corpusgen providers`.
pub fn summaries(config: &Config, env: &Environment) -> Vec<ProfileSummary> {
    let mut names: Vec<String> = BUILT_IN.iter().map(|name| name.to_string()).collect();
    for name in config.file.providers.keys() {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
        .into_iter()
        .map(|name| {
            let flags = ProfileFlags {
                provider: Some(&name),
                fixtures: Some(&PathBuf::new()),
                ..ProfileFlags::default()
            };
            let built_in =
                BUILT_IN.contains(&name.as_str()) && !config.file.providers.contains_key(&name);
            match resolve(&flags, config, env) {
                Ok(profile) => ProfileSummary {
                    kind: profile.kind.name(),
                    built_in,
                    endpoint: profile.endpoint.clone(),
                    key_env: profile.key_env().map(str::to_owned),
                    key_set: matches!(
                        profile.credential,
                        Credential::Key { .. } | Credential::AdToken { .. }
                    ),
                    hipaa_eligible: profile.hipaa_eligible,
                    hipaa: match profile.check_hipaa() {
                        Ok(()) => "allowed".to_string(),
                        Err(err) => err.message.replace(
                            &format!("--hipaa refuses the profile `{name}`: "),
                            "refused: ",
                        ),
                    },
                    name,
                },
                Err(err) => {
                    let configured = config.file.providers.get(&name);
                    let kind = match configured {
                        Some(profile) => Kind::from(profile.kind),
                        None if name == "azure" => Kind::Azure,
                        None => Kind::Openai,
                    };
                    let credential = credential(kind, configured, env);
                    ProfileSummary {
                        kind: kind.name(),
                        built_in,
                        endpoint: None,
                        key_env: credential_env(&credential).map(str::to_owned),
                        key_set: matches!(
                            credential,
                            Credential::Key { .. } | Credential::AdToken { .. }
                        ),
                        hipaa_eligible: configured.is_some_and(|profile| profile.hipaa_eligible),
                        hipaa: format!("not usable: {}", err.message),
                        name,
                    }
                }
            }
        })
        .collect()
}
