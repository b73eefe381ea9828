//! `generate --batch` and `corpusgen batch status|cancel OUT`: a job through
//! the provider's batch engine, and the batches of a job found again by its
//! output path.

use std::time::Duration;

use corpusgen_core::batch::{
    BatchApi, BatchEvent, BatchOptions, MAX_POLL_INTERVAL, read_batches, run_batch_job,
};
use corpusgen_core::journal::JournalError;
use corpusgen_core::{OutputPaths, RunOptions, RunReport};
use corpusgen_providers::{Auth, BatchClient, SetupError};

use crate::Environment;
use crate::args::{BatchAction, BatchArgs, GenerateArgs};
use crate::config::Config;
use crate::exit::{CliError, ExitKind};
use crate::generate::{self, Resolved};
use crate::profiles::{self, Credential, Kind, Profile, ProfileFlags};
use crate::progress::Display;

/// A `--batch` job resolved once: its profile, checked for a batch engine and
/// sizing flags that make sense, then the same resolution as an online job
/// (spec, key, HIPAA policy). Shared with `--dry-run`.
pub fn resolve(
    args: &GenerateArgs,
    config: &Config,
    env: &Environment,
) -> Result<(Profile, Resolved), CliError> {
    let profile = generate::resolve_profile(args, config, env)?;
    if !matches!(profile.kind, Kind::Openai | Kind::Azure) {
        return Err(CliError::bad_input(format!(
            "--batch needs an openai or azure profile, and `{}` is a {} profile; run the job without --batch",
            profile.name,
            profile.kind.name()
        )));
    }
    if !(args.batch_margin.is_finite() && (0.0..=10.0).contains(&args.batch_margin)) {
        return Err(CliError::bad_input(format!(
            "--batch-margin {} is not a fraction between 0 and 10; pass something like 0.2",
            args.batch_margin
        )));
    }
    if args.expect_chars == 0 {
        return Err(CliError::bad_input(
            "--expect-chars 0 cannot size a batch; pass the chars one response is expected to have",
        ));
    }
    let resolved = generate::resolve_for(args, config, &profile)?;
    Ok((profile, resolved))
}

/// Runs one `generate --batch` job, printing each batch's progress on stderr
/// unless `quiet`. Ctrl-C or SIGTERM while it waits leaves the batches running
/// at the provider and exits 130; the same command attaches to them again.
pub async fn execute(
    args: &GenerateArgs,
    config: &Config,
    env: &Environment,
    display: &Display,
    label: &str,
) -> Result<RunReport, CliError> {
    let (profile, resolved) = resolve(args, config, env)?;
    let client = client(&profile, Duration::from_secs_f64(args.timeout))?;
    let spec = resolved.spec;
    let poll_interval = Duration::from_millis(args.batch_poll_ms.max(1));
    let options = BatchOptions {
        run: RunOptions {
            fresh: args.fresh,
            private_files: spec.hipaa,
            retry: resolved.retry,
            rate: resolved.rate,
            // A batch is sized before it is sent, so --budget-usd (which stops
            // issuing as usage comes in) conflicts with --batch in clap.
            pricing: resolved.pricing,
            budget_usd: None,
        },
        expect_chars: args.expect_chars,
        margin: args.batch_margin,
        max_requests: args.batch_max_requests.max(1),
        max_bytes: args.batch_max_bytes.max(1),
        poll_interval,
        max_poll_interval: (poll_interval * 30)
            .min(MAX_POLL_INTERVAL)
            .max(poll_interval),
    };
    // A batch changes state every few minutes at most: each change is one
    // line (not a bar), above the bars of online jobs running beside it, with
    // the job's label so that the lines of `run --jobs N` can be told apart.
    let mut observer =
        |event: &BatchEvent| display.println(&format!("{label}: {}", describe(event)));
    run_batch_job(
        &spec,
        &client,
        options,
        &mut observer,
        crate::signals::stop_requested(display.is_quiet()),
    )
    .await
    .map_err(|err| {
        let journal = OutputPaths::for_corpus(&spec.out).journal;
        CliError::from_run(err, &journal)
    })
}

/// `corpusgen batch status|cancel OUT`: the journal beside OUT names the
/// batches and the profile; the profile is resolved again from the config
/// file and the environment, at the endpoint the job used.
pub async fn manage(args: &BatchArgs, config: &Config, env: &Environment) -> Result<(), CliError> {
    let (out, cancel) = match &args.action {
        BatchAction::Status { out } => (out, false),
        BatchAction::Cancel { out } => (out, true),
    };
    let journal = OutputPaths::for_corpus(out).journal;
    if !journal.exists() {
        return Err(CliError::bad_input(format!(
            "there is no journal {} beside {}; pass the --out of a job that ran with --batch",
            journal.display(),
            out.display()
        )));
    }
    let (header, batches) = read_batches(&journal).map_err(|err| match err {
        // The journal's own message suggests --fresh, which would start the
        // job over: no advice for a command that only reads batch ids.
        JournalError::Corrupt { path, line, reason } => CliError::bad_input(format!(
            "the journal {} is damaged at line {line} ({reason}); `corpusgen batch` needs the journal a `generate --batch` job wrote",
            path.display()
        )),
        other => CliError::bad_input(other),
    })?;
    if batches.is_empty() {
        return Err(CliError::bad_input(format!(
            "the journal {} holds no batch; the job did not run with --batch",
            journal.display()
        )));
    }
    let field = |name: &str| header.spec[name].as_str().map(str::to_owned);
    let provider = field("provider");
    let model = field("model");
    let endpoint = field("endpoint");
    let profile = profiles::resolve(
        &ProfileFlags {
            provider: provider.as_deref(),
            model: model.as_deref(),
            base_url: endpoint.as_deref(),
            fixtures: None,
        },
        config,
        env,
    )?;
    let client = client(&profile, corpusgen_providers::DEFAULT_TIMEOUT)?;
    let mut touched = 0;
    for batch in &batches {
        let Some(batch_id) = &batch.batch_id else {
            println!(
                "{}: uploaded, no batch created yet ({} requests)",
                batch.input_file_id,
                batch.requests.len()
            );
            continue;
        };
        if batch.collected {
            println!(
                "{batch_id}: {}, results in the journal ({} of {} requests completed, {} failed)",
                batch
                    .status
                    .map(|status| status.as_str())
                    .unwrap_or("unknown"),
                batch.counts.completed,
                batch.requests.len(),
                batch.counts.failed
            );
            continue;
        }
        let info = if cancel {
            let known_terminal = batch.status.is_some_and(|status| status.is_terminal());
            if known_terminal {
                client.get(batch_id).await
            } else {
                touched += 1;
                client.cancel(batch_id).await
            }
        } else {
            client.get(batch_id).await
        }
        .map_err(|error| {
            let kind = if error.kind.is_refusal() {
                ExitKind::Refused
            } else {
                ExitKind::GaveUp
            };
            CliError::new(kind, format!("batch {batch_id}: {error}"))
        })?;
        println!(
            "{batch_id}: {}, {} of {} requests completed, {} failed{}",
            info.status,
            info.counts.completed,
            info.counts.total.max(batch.requests.len() as u64),
            info.counts.failed,
            if info.status.is_terminal() {
                "; run the same generate command to collect the results"
            } else {
                ""
            }
        );
    }
    if cancel && touched == 0 {
        println!("no batch of {} was running", out.display());
    }
    Ok(())
}

/// One progress line: plain text, one line per change, safe in a log file.
fn describe(event: &BatchEvent) -> String {
    match event {
        BatchEvent::Resumed { accepted, rejected } => format!(
            "resuming: the journal already holds {accepted} accepted and {rejected} rejected responses"
        ),
        BatchEvent::Submitted { batch_id, requests } => {
            format!("batch {batch_id}: submitted with {requests} requests")
        }
        BatchEvent::Attached {
            input_file_id,
            batch_id: Some(batch_id),
            status,
        } => format!(
            "batch {batch_id}: attaching to the batch an earlier run submitted from {input_file_id}{}",
            status
                .map(|status| format!(" (last seen {status})"))
                .unwrap_or_default()
        ),
        BatchEvent::Attached {
            input_file_id,
            batch_id: None,
            ..
        } => format!(
            "request file {input_file_id}: uploaded by an earlier run; looking for its batch before creating one"
        ),
        BatchEvent::Progress {
            batch_id,
            status,
            counts,
        } => format!(
            "batch {batch_id}: {status}, {} of {} requests completed, {} failed",
            counts.completed, counts.total, counts.failed
        ),
        BatchEvent::Collected {
            batch_id,
            accepted,
            rejected,
            missing,
        } => format!(
            "batch {batch_id}: {accepted} responses accepted, {rejected} rejected, {missing} requests to ask again"
        ),
    }
}

/// The batch engine of an openai or azure profile.
fn client(profile: &Profile, timeout: Duration) -> Result<BatchClient, CliError> {
    let endpoint = profile
        .endpoint
        .as_deref()
        .expect("HTTP profiles have an endpoint");
    generate::check_base_url(endpoint)?;
    let built = match (&profile.kind, &profile.credential) {
        // Reached from `batch status|cancel`, which take no --provider: the
        // message names the profile of the journal instead.
        (_, Credential::Missing { env }) => {
            return Err(CliError::bad_input(format!(
                "{env} is not set; export the key of the `{}` profile in it",
                profile.name
            )));
        }
        (Kind::Openai, Credential::Key { secret, env }) => {
            BatchClient::openai(&profile.name, endpoint, secret.clone(), env, timeout)
        }
        (Kind::Azure, Credential::Key { secret, env }) => BatchClient::azure(
            &profile.name,
            endpoint,
            &profile.model,
            &profile.api_version,
            Auth::ApiKey(secret.clone()),
            env,
            timeout,
        ),
        (Kind::Azure, Credential::AdToken { secret, env }) => BatchClient::azure(
            &profile.name,
            endpoint,
            &profile.model,
            &profile.api_version,
            Auth::Bearer(secret.clone()),
            env,
            timeout,
        ),
        (kind, _) => {
            return Err(CliError::bad_input(format!(
                "the `{}` profile ({}) has no batch engine; batches need an openai or azure profile",
                profile.name,
                kind.name()
            )));
        }
    };
    built.map_err(|err| match err {
        SetupError::InvalidCredential { .. } => CliError::bad_input(err),
        SetupError::Client { .. } => CliError::new(ExitKind::Internal, err),
    })
}
