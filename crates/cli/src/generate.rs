//! `corpusgen generate`: resolve the flags and environment into a job spec and
//! a provider, once, then run the job.

use std::sync::Arc;
use std::time::Duration;

use corpusgen_core::cost::Pricing;
use corpusgen_core::run::STOPPED_FOR_BUDGET;
use corpusgen_core::spec::{DEFAULT_MAX_RESAMPLES, DEFAULT_PROMPT_TEMPLATE, DEFAULT_SYSTEM_PROMPT};
use corpusgen_core::tokens::Encoding;
use corpusgen_core::variants::{Axis, built_in_axis, diversified_prompt};
use corpusgen_core::{
    Event, JobSpec, LengthPolicy, OutputPaths, RateLimits, RetryPolicy, RunOptions, RunReport,
    Sampling, Target, run_job_until,
};
use corpusgen_providers::{
    Auth, Dialect, HttpProvider, Provider, RecordError, Recorder, ReplayProvider, SetupError,
};

use crate::Environment;
use crate::args::{GenerateArgs, LengthPolicyArg};
use crate::config::Config;
use crate::env_vars;
use crate::exit::{CliError, ExitKind};
use crate::profiles::{self, Credential, Kind, Profile, ProfileFlags};
use crate::progress::{Display, JobProgress};

pub use crate::plan::{Plan, plan};

/// A job ready to run: the validated spec, the provider that serves it and
/// how requests are retried.
#[derive(Debug)]
pub struct Resolved {
    pub spec: JobSpec,
    pub provider: Provider,
    pub retry: RetryPolicy,
    pub rate: RateLimits,
    /// The kind of the profile that serves the job.
    pub kind: Kind,
    /// The model's price; `None` when it is unknown.
    pub pricing: Option<Pricing>,
    /// `--budget-usd`.
    pub budget_usd: Option<f64>,
    /// Where `--record` saves the exchanges, checked for write failures when
    /// the job is done.
    pub recorder: Option<Arc<Recorder>>,
}

/// Resolves flags over environment over config file over defaults into one
/// validated job. Everything that can be wrong with the input is found here,
/// and the HIPAA policy is applied here, before any request.
pub fn resolve(
    args: &GenerateArgs,
    config: &Config,
    env: &Environment,
) -> Result<Resolved, CliError> {
    if args.hipaa && args.record.is_some() {
        return Err(CliError::new(
            ExitKind::Refused,
            "--hipaa refuses --record: fixtures would hold prompt and response text outside the job's protected outputs; record a job without protected data and without --hipaa",
        ));
    }
    let profile = resolve_profile(args, config, env)?;
    resolve_for(args, config, &profile)
}

/// The profile that serves a job: `--provider`, `--model`, `--base-url` and
/// `--fixtures` over the environment and the config file.
pub fn resolve_profile(
    args: &GenerateArgs,
    config: &Config,
    env: &Environment,
) -> Result<Profile, CliError> {
    profiles::resolve(
        &ProfileFlags {
            provider: args.provider.as_deref(),
            model: args.model.as_deref(),
            base_url: args.base_url.as_deref(),
            fixtures: args.fixtures.as_ref(),
        },
        config,
        env,
    )
}

/// `resolve` for a profile already resolved from the same flags.
pub fn resolve_for(
    args: &GenerateArgs,
    config: &Config,
    profile: &Profile,
) -> Result<Resolved, CliError> {
    if args.record.is_some() && profile.kind == Kind::Replay {
        return Err(CliError::bad_input(
            "--record cannot record the replay provider, whose fixtures folder already is a recording; copy that folder instead",
        ));
    }
    let target = if let Some(chars) = args.target_chars {
        Target::Chars {
            chars,
            matched_from: None,
        }
    } else if let Some(count) = args.count {
        Target::Count { responses: count }
    } else if let Some(tokens) = args.target_tokens {
        Target::Tokens {
            tokens,
            encoding: Encoding::for_model(&profile.model)
                .encoding
                .name()
                .to_string(),
        }
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
    let diversify = diversify_axes(&args.diversify, config)?;
    let prompt_template = if !diversify.is_empty() && args.prompt == DEFAULT_PROMPT_TEMPLATE {
        diversified_prompt(&diversify)
    } else {
        args.prompt.clone()
    };
    let spec = JobSpec {
        topic: args.topic.clone(),
        prompt_template,
        system_prompt,
        provider: profile.name.clone(),
        model: profile.model.clone(),
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
        hipaa: args.hipaa,
        endpoint: profile.endpoint.clone(),
        diversify,
        dedup: args.dedup,
        per_request: args.per_request,
    };
    spec.validate().map_err(CliError::bad_input)?;
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return Err(CliError::bad_input(format!(
            "--timeout {} is not a positive number of seconds",
            args.timeout
        )));
    }
    let pricing = crate::prices::pricing(profile.kind, &profile.model, config)?;
    if let Some(budget) = args.budget_usd {
        if !(budget.is_finite() && budget > 0.0) {
            return Err(CliError::bad_input(format!(
                "--budget-usd {budget} is not a positive amount of USD"
            )));
        }
        if pricing.is_none() {
            return Err(CliError::bad_input(format!(
                "--budget-usd needs the price of `{model}`, which corpusgen does not know; add [prices.\"{model}\"] with input_per_mtok and output_per_mtok (USD per million tokens) to the config file",
                model = profile.model
            )));
        }
    }
    if args.hipaa {
        profile.check_hipaa()?;
    }
    // The folder is only checked here; `run` creates it before the first
    // request, so a dry run or a job file's checks write nothing.
    let recorder = match &args.record {
        Some(folder) => Some(Arc::new(Recorder::new(folder).map_err(record_error)?)),
        None => None,
    };
    let provider = build_provider(profile, args, spec.concurrency, recorder.clone())?;
    let retry = RetryPolicy {
        max_retries: args.max_retries,
        ..RetryPolicy::default()
    };
    Ok(Resolved {
        spec,
        provider,
        retry,
        rate: RateLimits {
            requests_per_minute: args.rpm,
            tokens_per_minute: args.tpm,
        },
        kind: profile.kind,
        pricing,
        budget_usd: args.budget_usd,
        recorder,
    })
}

/// The axes of `--diversify`: `none`, or a comma list of names, each with the
/// config file's values if it has some, else the built-in ones.
fn diversify_axes(value: &str, config: &Config) -> Result<Vec<Axis>, CliError> {
    if value.trim() == "none" {
        return Ok(Vec::new());
    }
    let mut axes: Vec<Axis> = Vec::new();
    for name in value.split(',').map(str::trim) {
        if name.is_empty() || axes.iter().any(|axis| axis.name == name) {
            return Err(CliError::bad_input(format!(
                "--diversify {value} names an axis twice or an empty one; pass a comma list such as audience,style,format"
            )));
        }
        let axis = match config.file.diversify.get(name) {
            Some(values) => Axis {
                name: name.to_string(),
                values: values.clone(),
            },
            None => built_in_axis(name).ok_or_else(|| {
                CliError::bad_input(format!(
                    "unknown --diversify axis `{name}`; the built-in axes are audience, style and format, or define it in the config file's [diversify] table"
                ))
            })?,
        };
        axes.push(axis);
    }
    Ok(axes)
}

/// A `--record` folder that cannot take a recording: one in use is the
/// user's to change, one that cannot be created is an I/O failure.
fn record_error(err: RecordError) -> CliError {
    match err {
        RecordError::NotEmpty(_) => CliError::bad_input(err),
        RecordError::Create { .. } => CliError::new(ExitKind::Internal, err),
    }
}

/// The error for a profile whose key variable `env` is not set.
fn missing_key(kind: Kind, env: &str) -> CliError {
    CliError::bad_input(match kind {
        Kind::Azure => format!(
            "{env} is not set; export the Azure OpenAI key in it (or an Entra ID token in {}), or choose another --provider",
            env_vars::AZURE_OPENAI_AD_TOKEN
        ),
        _ => format!(
            "{env} is not set; export your {} API key in it, or choose another --provider",
            if kind == Kind::Openai {
                "OpenAI"
            } else {
                "server's"
            }
        ),
    })
}

/// The provider of a resolved profile. Nothing here touches the network.
fn build_provider(
    profile: &Profile,
    args: &GenerateArgs,
    concurrency: usize,
    recorder: Option<Arc<Recorder>>,
) -> Result<Provider, CliError> {
    if profile.kind == Kind::Replay {
        let folder = profile
            .fixtures
            .as_ref()
            .expect("a replay profile has fixtures");
        return Ok(Provider::Replay(
            ReplayProvider::from_folder(&profile.name, folder).map_err(CliError::bad_input)?,
        ));
    }
    let endpoint = profile
        .endpoint
        .as_deref()
        .expect("HTTP profiles have an endpoint");
    check_base_url(endpoint)?;
    let mut dialect = match (&profile.kind, &profile.credential) {
        (_, Credential::Missing { env }) => return Err(missing_key(profile.kind, env)),
        (Kind::Openai, Credential::Key { secret, env }) => {
            Dialect::openai(&profile.name, endpoint, secret.clone(), env)
        }
        (Kind::Azure, Credential::Key { secret, env }) => Dialect::azure(
            &profile.name,
            endpoint,
            &profile.model,
            &profile.api_version,
            Auth::ApiKey(secret.clone()),
            env,
        ),
        (Kind::Azure, Credential::AdToken { secret, env }) => Dialect::azure(
            &profile.name,
            endpoint,
            &profile.model,
            &profile.api_version,
            Auth::Bearer(secret.clone()),
            env,
        ),
        (Kind::Local, Credential::Key { secret, env }) => {
            Dialect::local(&profile.name, endpoint, Some((secret.clone(), env.clone())))
        }
        (Kind::Local, _) => Dialect::local(&profile.name, endpoint, None),
        (kind, _) => unreachable!("a {kind:?} profile always has a credential or a missing one"),
    };
    dialect.stream = args.stream;
    dialect.timeout = Duration::from_secs_f64(args.timeout);
    HttpProvider::new(dialect, concurrency)
        .map(|provider| match recorder {
            Some(recorder) => provider.with_recorder(recorder),
            None => provider,
        })
        .map(Provider::Http)
        .map_err(|err| match err {
            SetupError::InvalidCredential { .. } => CliError::bad_input(err),
            SetupError::Client { .. } => CliError::new(ExitKind::Internal, err),
        })
}

/// `resolve`, or with `--batch` the batch path's resolution with its own
/// checks: everything a job is checked for before anything is sent.
pub fn resolve_job(
    args: &GenerateArgs,
    config: &Config,
    env: &Environment,
) -> Result<Resolved, CliError> {
    match args.batch {
        true => crate::batch::resolve(args, config, env).map(|(_, resolved)| resolved),
        false => resolve(args, config, env),
    }
}

/// The `--dry-run` plan of one job from its flags, through the same
/// resolution as a real run.
pub fn dry_run(args: &GenerateArgs, config: &Config, env: &Environment) -> Result<Plan, CliError> {
    let resolved = resolve_job(args, config, env)?;
    let plan = plan(&resolved);
    Ok(match args.batch {
        true => {
            let count = matches!(resolved.spec.target, Target::Count { .. });
            plan.through_batch(args.batch_margin, count)
        }
        false => plan,
    })
}

/// One `generate` job from its flags: resolve, then run. The same path serves
/// every job of a job file; `label` names the job on its progress bar (the
/// corpus file's name when `None`).
pub async fn execute(
    args: &GenerateArgs,
    config: &Config,
    env: &Environment,
    display: &Display,
    label: Option<&str>,
) -> Result<RunReport, CliError> {
    let label = label.map(str::to_string).unwrap_or_else(|| {
        args.out
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| args.out.display().to_string())
    });
    if args.batch {
        return crate::batch::execute(args, config, env, display, &label).await;
    }
    let resolved = resolve(args, config, env)?;
    let progress = display.job(&label, &resolved.spec.target, resolved.pricing);
    run(resolved, args.fresh, progress, display.is_quiet()).await
}

/// The single-threaded runtime every job runs on: the job loop's concurrency
/// is in-flight requests, not threads.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            CliError::new(
                ExitKind::Internal,
                format!("cannot start the async runtime: {err}"),
            )
        })
}

/// The lines `generate` prints on stdout when a job is done: where its files
/// are (unless `quiet`) and what the corpus holds.
pub fn print_report(report: &RunReport, quiet: bool) {
    let totals = &report.manifest.totals;
    if !quiet {
        println!("corpus:   {}", report.paths.corpus.display());
        println!("journal:  {}", report.paths.journal.display());
        println!("manifest: {}", report.paths.manifest.display());
    }
    println!(
        "{} responses, {} chars (target {}){}",
        totals.responses_used,
        totals.corpus_chars,
        totals.target,
        match totals.responses_unused {
            0 => String::new(),
            unused => format!(", {unused} more kept unused in the journal"),
        }
    );
    if let Some(cost) = crate::prices::job_cost(report) {
        println!("cost: {cost:.4} USD");
    }
}

/// The error a job that `--budget-usd` stopped before its target ends with
/// (exit 5), after its partial corpus and manifest were written; `None` for
/// a job that met its target.
pub fn budget_stop(report: &RunReport) -> Option<CliError> {
    let manifest = &report.manifest;
    (manifest.stopped.as_deref() == Some(STOPPED_FOR_BUDGET)).then(|| {
        let cost = match manifest.totals.cost_usd {
            Some(cost) => format!("{cost:.4} USD"),
            None => "an unknown amount (some responses reported no usage)".to_string(),
        };
        let mut err = CliError::new(
            ExitKind::OverBudget,
            format!(
                "stopped before the target ({}) because another request could pass --budget-usd; the {} responses received cost {cost}",
                manifest.totals.target, manifest.totals.responses_received
            ),
        );
        err.hint = Some(format!(
            "{} holds the {} responses accepted so far and its manifest says stopped: budget; raise --budget-usd and run the same command again to resume",
            report.paths.corpus.display(),
            manifest.totals.responses_used
        ));
        err
    })
}

/// Runs a resolved job, showing its progress on stderr. Ctrl-C or SIGTERM
/// stops it cleanly: what is in flight is journaled, then exit 130.
pub async fn run(
    resolved: Resolved,
    fresh: bool,
    mut progress: JobProgress,
    quiet: bool,
) -> Result<RunReport, CliError> {
    let Resolved {
        spec,
        provider,
        retry,
        rate,
        pricing,
        budget_usd,
        recorder,
        ..
    } = resolved;
    if let Some(recorder) = &recorder {
        recorder.open().map_err(record_error)?;
    }
    let mut observer = |event: &Event| progress.observe(event);
    let options = RunOptions {
        fresh,
        private_files: spec.hipaa,
        retry,
        rate,
        pricing,
        budget_usd,
    };
    let result = run_job_until(
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
    });
    progress.finish(match &result {
        Ok(_) => "done",
        Err(err) => err.kind.status(),
    });
    let report = result?;
    if let Some(failure) = recorder.and_then(|recorder| recorder.failure()) {
        return Err(CliError::new(
            ExitKind::Internal,
            format!("the corpus is complete but the recording is not: {failure}"),
        ));
    }
    Ok(report)
}

pub(crate) fn check_base_url(url: &str) -> Result<(), CliError> {
    let is_http = url.starts_with("http://") || url.starts_with("https://");
    if !is_http || url.len() <= "https://".len() {
        return Err(CliError::bad_input(format!(
            "the base URL `{url}` is not an http(s) URL; pass --base-url like https://api.openai.com/v1"
        )));
    }
    Ok(())
}
