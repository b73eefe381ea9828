//! `corpusgen generate`: resolve the flags and environment into a job spec and
//! a provider, once, then run the job.

use std::time::Duration;

use corpusgen_core::spec::{DEFAULT_MAX_RESAMPLES, DEFAULT_SYSTEM_PROMPT};
use corpusgen_core::{
    Event, JobSpec, LengthPolicy, OutputPaths, RetryPolicy, RunOptions, RunReport, Sampling,
    Target, run_job_until,
};
use corpusgen_providers::{
    Dialect, HttpProvider, OPENAI_DEFAULT_BASE_URL, Provider, ReplayProvider,
};
use secrecy::SecretString;

use crate::Environment;
use crate::args::{GenerateArgs, LengthPolicyArg};
use crate::env_vars;
use crate::exit::{CliError, ExitKind};

/// The built-in provider profiles.
const PROVIDERS: &[&str] = &["openai", "replay"];

/// A job ready to run: the validated spec, the provider that serves it and
/// how requests are retried.
#[derive(Debug)]
pub struct Resolved {
    pub spec: JobSpec,
    pub provider: Provider,
    pub retry: RetryPolicy,
}

/// Resolves flags over environment over defaults into one validated job.
/// Everything that can be wrong with the input is found here, before any
/// request.
pub fn resolve(args: &GenerateArgs, env: &Environment) -> Result<Resolved, CliError> {
    let target = if let Some(chars) = args.target_chars {
        Target::Chars {
            chars,
            matched_from: None,
        }
    } else if let Some(count) = args.count {
        Target::Count { responses: count }
    } else {
        let path = args
            .match_length
            .as_ref()
            .expect("clap requires one of the target flags");
        Target::match_length(path).map_err(CliError::bad_input)?
    };
    let system_prompt = match (&args.system, args.no_system) {
        (_, true) => None,
        (Some(system), false) => Some(system.clone()),
        (None, false) => Some(DEFAULT_SYSTEM_PROMPT.to_string()),
    };
    let spec = JobSpec {
        topic: args.topic.clone(),
        prompt_template: args.prompt.clone(),
        system_prompt,
        provider: args.provider.clone(),
        model: args.model.clone(),
        sampling: Sampling {
            temperature: args.temperature,
            max_tokens: args.max_tokens,
            seed: args.seed,
        },
        target,
        length_policy: match args.length_policy {
            LengthPolicyArg::AtLeast => LengthPolicy::AtLeast,
            LengthPolicyArg::Closest => LengthPolicy::Closest,
        },
        separator: args.separator.clone(),
        concurrency: args.concurrency,
        max_resamples: DEFAULT_MAX_RESAMPLES,
        out: args.out.clone(),
    };
    spec.validate().map_err(CliError::bad_input)?;
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return Err(CliError::bad_input(format!(
            "--timeout {} is not a positive number of seconds",
            args.timeout
        )));
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let provider = match args.provider.as_str() {
        "openai" => {
            let key = env
                .get(env_vars::OPENAI_API_KEY)
                .filter(|key| !key.trim().is_empty())
                .ok_or_else(|| {
                    CliError::bad_input(format!(
                        "{} is not set; export your OpenAI API key in it, or choose another --provider",
                        env_vars::OPENAI_API_KEY
                    ))
                })?;
            let base_url = args
                .base_url
                .clone()
                .or_else(|| env.get(env_vars::OPENAI_BASE_URL))
                .unwrap_or_else(|| OPENAI_DEFAULT_BASE_URL.to_string());
            check_base_url(&base_url)?;
            let mut dialect = Dialect::openai(
                "openai",
                &base_url,
                SecretString::from(key),
                env_vars::OPENAI_API_KEY,
            );
            dialect.timeout = timeout;
            Provider::Http(
                HttpProvider::new(dialect, spec.concurrency)
                    .map_err(|err| CliError::new(ExitKind::Internal, err.to_string()))?,
            )
        }
        "replay" => {
            let folder = args.fixtures.as_ref().ok_or_else(|| {
                CliError::bad_input(
                    "the replay provider needs recorded responses; pass --fixtures DIR",
                )
            })?;
            Provider::Replay(
                ReplayProvider::from_folder("replay", folder).map_err(CliError::bad_input)?,
            )
        }
        other => {
            return Err(CliError::bad_input(format!(
                "unknown provider `{other}`; the providers are {}",
                PROVIDERS.join(", ")
            )));
        }
    };
    let retry = RetryPolicy {
        max_retries: args.max_retries,
        ..RetryPolicy::default()
    };
    Ok(Resolved {
        spec,
        provider,
        retry,
    })
}

/// Runs a resolved job, printing progress on stderr unless `quiet`. Ctrl-C
/// or SIGTERM stops it cleanly: what is in flight is journaled, then exit 130.
pub async fn run(resolved: Resolved, fresh: bool, quiet: bool) -> Result<RunReport, CliError> {
    let Resolved {
        spec,
        provider,
        retry,
    } = resolved;
    let target = spec.target.clone();
    let mut observer = |event: &Event| {
        if quiet {
            return;
        }
        match event {
            Event::Resumed { accepted, rejected } => eprintln!(
                "resuming: the journal already holds {accepted} accepted and {rejected} rejected responses"
            ),
            Event::Accepted {
                index,
                chars,
                completed_chars,
                completed,
            } => match &target {
                Target::Count { responses } => eprintln!(
                    "response {completed} of {responses} (request {index}): {chars} chars, {completed_chars} chars so far"
                ),
                Target::Chars {
                    chars: target_chars,
                    ..
                } => eprintln!(
                    "response {completed} (request {index}): {chars} chars, {completed_chars} of {target_chars} chars"
                ),
            },
            Event::Rejected { index, reason } => {
                eprintln!("request {index}: response rejected because {reason}; asking again");
            }
            Event::Failed { index, message } => {
                eprintln!("request {index} failed: {message}");
            }
        }
    };
    let options = RunOptions {
        fresh,
        private_files: false,
        retry,
    };
    run_job_until(
        &spec,
        &provider,
        options,
        &mut observer,
        crate::signals::stop_requested(quiet),
    )
    .await
    .map_err(|err| {
        let journal = OutputPaths::for_corpus(&spec.out).journal;
        CliError::from_run(err, &journal)
    })
}

fn check_base_url(url: &str) -> Result<(), CliError> {
    let is_http = url.starts_with("http://") || url.starts_with("https://");
    if !is_http || url.len() <= "https://".len() {
        return Err(CliError::bad_input(format!(
            "the base URL `{url}` is not an http(s) URL; pass --base-url like https://api.openai.com/v1"
        )));
    }
    Ok(())
}
