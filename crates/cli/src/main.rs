//! The `corpusgen` binary. `main` is the error boundary: it maps every
//! failure to one message on stderr and an exit code.

mod args;
mod batch;
mod config;
mod env_vars;
mod exit;
mod generate;
mod jobs;
mod plan;
mod prices;
mod profiles;
mod progress;
mod signals;
mod stats;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command, CompletionShell};
use crate::config::Config;
use crate::exit::CliError;

/// The environment variables, read once at start-up and passed explicitly.
#[derive(Debug, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    pub fn from_process() -> Environment {
        Environment {
            vars: std::env::vars_os()
                .filter_map(|(name, value)| {
                    Some((name.into_string().ok()?, value.into_string().ok()?))
                })
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = Environment::from_process();
    let display = progress::Display::for_stderr(cli.quiet, cli.verbose);
    init_logging(&cli, &env, &display);
    match run(cli, &env, &display) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", err.message);
            if let Some(hint) = &err.hint {
                eprintln!("note: {hint}");
            }
            ExitCode::from(err.kind.code())
        }
    }
}

fn run(cli: Cli, env: &Environment, display: &progress::Display) -> Result<(), CliError> {
    match cli.command {
        Command::Generate(args) => {
            let config = Config::load(cli.config.as_deref(), env)?;
            if args.dry_run {
                print!("{}", generate::dry_run(&args, &config, env)?);
                return Ok(());
            }
            let runtime = generate::runtime()?;
            let report = runtime.block_on(generate::execute(&args, &config, env, display, None))?;
            generate::print_report(&report, cli.quiet);
            generate::budget_stop(&report).map_or(Ok(()), Err)
        }
        Command::Stats(args) => stats::run(&args),
        Command::Completions(args) => {
            let shell = match args.shell {
                CompletionShell::Bash => clap_complete::Shell::Bash,
                CompletionShell::Zsh => clap_complete::Shell::Zsh,
                CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "corpusgen",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Batch(args) => {
            let config = Config::load(cli.config.as_deref(), env)?;
            let runtime = generate::runtime()?;
            runtime.block_on(batch::manage(&args, &config, env))
        }
        Command::Run(args) => jobs::run(&args, cli.config.as_deref(), env, display),
        Command::Providers(args) => {
            let config = Config::load(cli.config.as_deref(), env)?;
            print_providers(&profiles::summaries(&config, env), args.json);
            Ok(())
        }
    }
}

/// `corpusgen providers`: a table for people, or JSON for scripts. Keys are
/// never printed, only whether their variable is set.
fn print_providers(summaries: &[profiles::ProfileSummary], json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(summaries).expect("summaries serialize")
        );
        return;
    }
    println!(
        "{:<20} {:<7} {:<44} {:<32} HIPAA",
        "PROFILE", "KIND", "ENDPOINT", "KEY"
    );
    for summary in summaries {
        let key = match (&summary.key_env, summary.key_set) {
            (Some(env), true) => format!("{env} (set)"),
            (Some(env), false) => format!("{env} (not set)"),
            (None, _) => "none needed".to_string(),
        };
        println!(
            "{:<20} {:<7} {:<44} {:<32} {}",
            summary.name,
            summary.kind,
            summary.endpoint.as_deref().unwrap_or("-"),
            key,
            summary.hipaa
        );
    }
}

/// Logs go to stderr; `-v` shows each request, `-vv` HTTP details.
fn init_logging(cli: &Cli, env: &Environment, display: &progress::Display) {
    let default_level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = env
        .get(env_vars::CORPUSGEN_LOG)
        .and_then(|value| tracing_subscriber::EnvFilter::try_new(value).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(display.log_writer())
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
