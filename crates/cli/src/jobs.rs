//! `corpusgen run JOBS.toml`: several `generate` jobs from one TOML file.
//!
//! Every key of a job is a `generate` option (`_` for `-`), so a job is
//! turned into the argv of `generate` and parsed by the same clap definition:
//! a flag added to `generate` is a job key at once, with the same checks.
//! Everything that can be wrong with the file (unknown keys, duplicate names,
//! unknown placeholders, a `job:` reference to no job, a cycle, a value clap
//! rejects) is found before any job runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};
use corpusgen_core::{RunReport, Target};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Deserialize;
use toml::{Table, Value};

use crate::Environment;
use crate::args::{GenerateArgs, RunArgs};
use crate::config::{Config, one_line, position};
use crate::exit::{CliError, ExitKind};
use crate::progress::Display;

/// The keys a job may have beside the `generate` options.
const NAME_KEY: &str = "name";
const CONFIG_KEY: &str = "config";
/// `match_length = "job:NAME"`: the target is the length of job NAME's corpus.
const JOB_REFERENCE: &str = "job:";

/// One job of the file, after matrix expansion, ready to run.
#[derive(Debug)]
pub struct PlannedJob {
    /// The `[[job]]` name, with the matrix combination's slugs after `/`.
    pub label: String,
    /// The `generate` flags the job stands for. Flags that apply to every
    /// job (`--dry-run`, `--batch`) are appended before parsing.
    pub argv: Vec<String>,
    pub args: GenerateArgs,
    /// The job whose corpus length is this job's target.
    pub depends_on: Option<usize>,
    /// The config file the job names, relative to the job file resolved.
    pub config: Option<PathBuf>,
}

/// A job while it is planned: its argv is complete only at the end.
#[derive(Debug)]
struct Draft {
    label: String,
    argv: Vec<String>,
    depends_on: Option<usize>,
    config: Option<PathBuf>,
}

/// How one job ended, for the summary.
#[derive(Debug)]
pub enum Outcome {
    Done(Box<RunReport>),
    Failed(CliError),
    /// Not run: the job it depends on did not finish, or the run was stopped.
    Skipped,
}

/// The file's layout; the jobs' own keys are checked against clap.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFileToml {
    #[serde(default)]
    defaults: Table,
    #[serde(default)]
    matrix: BTreeMap<String, Vec<Value>>,
    #[serde(default, rename = "job")]
    jobs: Vec<Table>,
}

/// The `generate` argv parser, without a program name.
#[derive(Debug, Parser)]
#[command(name = "job", no_binary_name = true, disable_help_flag = true)]
struct JobArgs {
    #[command(flatten)]
    generate: GenerateArgs,
}

/// `corpusgen run`: plan every job, run them in dependency order, print the
/// summary, and fail with the worst job's exit code.
pub fn run(
    args: &RunArgs,
    config_flag: Option<&Path>,
    env: &Environment,
    display: &Display,
) -> Result<(), CliError> {
    let text = std::fs::read_to_string(&args.file).map_err(|err| {
        CliError::bad_input(format!(
            "cannot read the job file {}: {err}",
            args.file.display()
        ))
    })?;
    let mut every_job: Vec<String> = Vec::new();
    if args.batch {
        every_job.push("--batch".to_string());
    }
    if args.dry_run {
        // Resolving a dry run checks a --record folder without creating it.
        every_job.push("--dry-run".to_string());
    }
    let jobs = plan(&args.file, &text, &every_job)?;
    let mut configs: BTreeMap<Option<PathBuf>, Config> = BTreeMap::new();
    for job in &jobs {
        if !configs.contains_key(&job.config) {
            let config = Config::load(job.config.as_deref().or(config_flag), env)?;
            configs.insert(job.config.clone(), config);
        }
    }
    check_resolution(&args.file, &jobs, &configs, env)?;
    if args.dry_run {
        return print_plans(&args.file, &jobs, &configs, env);
    }
    let runtime = crate::generate::runtime()?;
    let outcomes = runtime.block_on(run_planned(&jobs, &configs, env, display, args.jobs.get()));
    print_summary(&jobs, &outcomes);
    let failed: Vec<String> = jobs
        .iter()
        .zip(&outcomes)
        .filter_map(|(job, outcome)| match outcome {
            Outcome::Done(report) if stopped_for_budget(report) => {
                Some(format!("{} (over budget)", job.label))
            }
            Outcome::Done(_) => None,
            Outcome::Failed(err) => Some(format!("{} ({})", job.label, err.kind.status())),
            Outcome::Skipped => Some(format!("{} (skipped)", job.label)),
        })
        .collect();
    match worst(&outcomes) {
        None => Ok(()),
        Some(kind) => Err(CliError::new(
            kind,
            format!(
                "{} of {} jobs did not finish: {}",
                failed.len(),
                jobs.len(),
                failed.join(", ")
            ),
        )),
    }
}

/// `corpusgen run --dry-run`: every job's plan, in dependency order, and
/// nothing sent. A job matching the length of a job whose corpus does not
/// exist yet is planned at that job's estimated length.
fn print_plans(
    file: &Path,
    jobs: &[PlannedJob],
    configs: &BTreeMap<Option<PathBuf>, Config>,
    env: &Environment,
) -> Result<(), CliError> {
    let dependencies: Vec<Option<usize>> = jobs.iter().map(|job| job.depends_on).collect();
    let order = topological_order(&dependencies).expect("plan() rejected cycles");
    let mut estimated_chars: Vec<Option<u64>> = vec![None; jobs.len()];
    for index in order {
        let job = &jobs[index];
        let mut note = None;
        let args = match job.depends_on {
            Some(dependency) if !jobs[dependency].args.out.exists() => {
                let estimate = estimated_chars[dependency].expect("dependencies are planned first");
                note = Some(format!(
                    " (its target, the length of job `{}`'s corpus, is not known yet: planned at about {estimate} chars)",
                    jobs[dependency].label
                ));
                job_args(job, Some(estimate))
            }
            _ => job_args(job, None),
        };
        let plan = crate::generate::dry_run(&args, &configs[&job.config], env)
            .map_err(|err| in_job(file, job, err))?;
        estimated_chars[index] = Some(plan.corpus_chars());
        println!("== job {}{}", job.label, note.unwrap_or_default());
        println!("{plan}");
    }
    Ok(())
}

/// A job's arguments, parsed again from its argv, with its `job:` target
/// replaced by `chars` when given.
fn job_args(job: &PlannedJob, chars: Option<u64>) -> GenerateArgs {
    let argv: Vec<String> = job
        .argv
        .iter()
        .map(|arg| match chars {
            Some(chars) if arg.starts_with("--match-length=") => format!("--target-chars={chars}"),
            _ => arg.clone(),
        })
        .collect();
    JobArgs::try_parse_from(&argv)
        .expect("the job's argv parsed when it was planned")
        .generate
}

/// Resolves every job as generate would (profile, key variable, fixtures,
/// HIPAA policy), so that a job that cannot start stops the whole file
/// before anything is sent. A `job:` target is not known yet: a stand-in
/// target takes its place for this check.
fn check_resolution(
    file: &Path,
    jobs: &[PlannedJob],
    configs: &BTreeMap<Option<PathBuf>, Config>,
    env: &Environment,
) -> Result<(), CliError> {
    for job in jobs {
        let args = job_args(job, job.depends_on.map(|_| 1));
        crate::generate::resolve_job(&args, &configs[&job.config], env)
            .map_err(|err| in_job(file, job, err))?;
    }
    Ok(())
}

/// An error of one job, said as the job file's.
fn in_job(file: &Path, job: &PlannedJob, err: CliError) -> CliError {
    CliError {
        message: format!("{}: job `{}`: {}", file.display(), job.label, err.message),
        ..err
    }
}

/// Runs the jobs, at most `parallel` at once, each only after the job it
/// depends on is done. A job whose dependency did not finish is skipped, as
/// is every job not yet started when Ctrl-C or SIGTERM arrives (the running
/// ones stop by themselves and say how to resume).
async fn run_planned(
    jobs: &[PlannedJob],
    configs: &BTreeMap<Option<PathBuf>, Config>,
    env: &Environment,
    display: &Display,
    parallel: usize,
) -> Vec<Outcome> {
    let dependencies: Vec<Option<usize>> = jobs.iter().map(|job| job.depends_on).collect();
    let order = topological_order(&dependencies).expect("plan() rejected cycles");
    let mut outcomes: Vec<Option<Outcome>> = jobs.iter().map(|_| None).collect();
    let mut started = vec![false; jobs.len()];
    let mut running = FuturesUnordered::new();
    let mut stop = std::pin::pin!(crate::signals::stop_requested(true));
    let mut stopping = false;
    loop {
        for &index in &order {
            if started[index] || running.len() >= parallel {
                continue;
            }
            let dependency_done = match jobs[index].depends_on {
                None => Some(true),
                Some(dependency) => match &outcomes[dependency] {
                    None => None,
                    Some(Outcome::Done(report)) => Some(!stopped_for_budget(report)),
                    Some(_) => Some(false),
                },
            };
            match dependency_done {
                None => continue,
                Some(false) => {
                    started[index] = true;
                    outcomes[index] = Some(Outcome::Skipped);
                }
                Some(true) if stopping => {
                    started[index] = true;
                    outcomes[index] = Some(Outcome::Skipped);
                }
                Some(true) => {
                    started[index] = true;
                    let job = &jobs[index];
                    let config = &configs[&job.config];
                    running.push(async move {
                        let result = crate::generate::execute(
                            &job.args,
                            config,
                            env,
                            display,
                            Some(&job.label),
                        )
                        .await;
                        (index, result)
                    });
                }
            }
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            Some((index, result)) = running.next() => {
                if let Err(err) = &result {
                    report_failure(display, &jobs[index].label, err);
                }
                outcomes[index] = Some(match result {
                    Ok(report) => Outcome::Done(Box::new(report)),
                    Err(err) => Outcome::Failed(err),
                });
            }
            () = &mut stop, if !stopping => stopping = true,
        }
    }
    outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or(Outcome::Skipped))
        .collect()
}

/// A failed job's error, as soon as it fails, even under `--quiet`.
fn report_failure(display: &Display, label: &str, err: &CliError) {
    let mut text = format!("error: job `{label}`: {}", err.message);
    if let Some(hint) = &err.hint {
        text.push_str(&format!("\nnote: {hint}"));
    }
    display.print_error(&text);
}

/// The exit kind of the run: the worst of its jobs', where interrupted (130)
/// beats bad input (2), which beats refused (3), gave up (4), an I/O
/// failure (1) and a stop at the budget (5, a partial corpus written on
/// purpose): the first thing to deal with comes first. Skipped jobs add
/// nothing, since the job they waited for failed already.
pub fn worst(outcomes: &[Outcome]) -> Option<ExitKind> {
    fn rank(kind: ExitKind) -> u8 {
        match kind {
            ExitKind::Interrupted => 5,
            ExitKind::BadInput => 4,
            ExitKind::Refused => 3,
            ExitKind::GaveUp => 2,
            ExitKind::Internal => 1,
            ExitKind::OverBudget => 0,
        }
    }
    let failures = outcomes.iter().filter_map(|outcome| match outcome {
        Outcome::Failed(err) => Some(err.kind),
        Outcome::Done(report) if stopped_for_budget(report) => Some(ExitKind::OverBudget),
        _ => None,
    });
    let worst = failures.max_by_key(|kind| rank(*kind));
    match worst {
        None if outcomes
            .iter()
            .any(|outcome| matches!(outcome, Outcome::Skipped)) =>
        {
            // Skipped with no failure: only a stop does that.
            Some(ExitKind::Interrupted)
        }
        other => other,
    }
}

/// Whether `--budget-usd` stopped the job before its target: its corpus is
/// partial, so a job matching its length must not run on it.
fn stopped_for_budget(report: &RunReport) -> bool {
    report.manifest.stopped.as_deref() == Some(corpusgen_core::run::STOPPED_FOR_BUDGET)
}

/// The table printed on stdout after the jobs have run.
pub fn summary_table(jobs: &[PlannedJob], outcomes: &[Outcome]) -> String {
    let header = [
        "JOB",
        "PROVIDER",
        "RESPONSES",
        "CHARS",
        "TARGET",
        "TOKENS",
        "COST",
        "STATUS",
    ]
    .map(str::to_string);
    let mut rows = vec![header.to_vec()];
    for (job, outcome) in jobs.iter().zip(outcomes) {
        let dash = || "-".to_string();
        let row = match outcome {
            Outcome::Done(report) => {
                let totals = &report.manifest.totals;
                vec![
                    job.label.clone(),
                    report.manifest.job.provider.clone(),
                    totals.responses_used.to_string(),
                    totals.corpus_chars.to_string(),
                    short_target(&report.manifest.job.target),
                    match totals.responses_with_usage {
                        0 => dash(),
                        _ => totals.total_tokens.to_string(),
                    },
                    crate::prices::job_cost(report).map_or_else(dash, |cost| format!("${cost:.4}")),
                    match stopped_for_budget(report) {
                        true => ExitKind::OverBudget.status().to_string(),
                        false => "done".to_string(),
                    },
                ]
            }
            Outcome::Failed(_) | Outcome::Skipped => vec![
                job.label.clone(),
                job.args.provider.clone().unwrap_or_else(dash),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                match outcome {
                    Outcome::Failed(err) => err.kind.status().to_string(),
                    _ => "skipped".to_string(),
                },
            ],
        };
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut table = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        table.push_str(cells.join("  ").trim_end());
        table.push('\n');
    }
    table
}

fn print_summary(jobs: &[PlannedJob], outcomes: &[Outcome]) {
    print!("{}", summary_table(jobs, outcomes));
}

/// A target without the path it was matched from, to keep the table narrow.
fn short_target(target: &Target) -> String {
    match target {
        Target::Chars { chars, .. } => format!("{chars} chars"),
        Target::Count { responses } => format!("{responses} responses"),
        Target::Tokens { tokens, .. } => format!("{tokens} tokens"),
    }
}

/// Parses a job file into its jobs, in file order for each matrix
/// combination, with every check that does not need to run anything.
/// `every_job` is appended to each job's argv.
pub fn plan(path: &Path, text: &str, every_job: &[String]) -> Result<Vec<PlannedJob>, CliError> {
    let file: JobFileToml = toml::from_str(text).map_err(|err| {
        CliError::bad_input(format!(
            "{}: {}",
            position(path, text, err.span()),
            one_line(err.message())
        ))
    })?;
    let file_name = path.display().to_string();
    let bad = |message: String| CliError::bad_input(format!("{file_name}: {message}"));
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let options = GenerateOptions::new();
    if file.jobs.is_empty() {
        return Err(bad(
            "there is no [[job]] table; add one with a name and generate's options".to_string(),
        ));
    }

    // Names and keys, before anything is expanded.
    let mut names: Vec<String> = Vec::new();
    for (position, job) in file.jobs.iter().enumerate() {
        let name = match job.get(NAME_KEY) {
            Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
            Some(_) => {
                return Err(bad(format!(
                    "job {} has a `name` that is not a non-empty string",
                    position + 1
                )));
            }
            None => {
                return Err(bad(format!(
                    "job {} has no `name`; every [[job]] needs a unique name",
                    position + 1
                )));
            }
        };
        if names.contains(&name) {
            return Err(bad(format!(
                "two jobs are named `{name}`; job names must be unique"
            )));
        }
        for key in job.keys() {
            options
                .check_key(key, &format!("job `{name}`"))
                .map_err(bad)?;
        }
        names.push(name);
    }
    for key in file.defaults.keys() {
        if key == NAME_KEY {
            return Err(bad(
                "[defaults] sets `name`; names belong to each [[job]]".to_string()
            ));
        }
        options.check_key(key, "[defaults]").map_err(bad)?;
    }
    for (key, values) in &file.matrix {
        if key == NAME_KEY || key == CONFIG_KEY || !options.is_option(key) {
            return Err(bad(format!(
                "[matrix] varies `{key}`, which is not a generate option; matrix keys are generate's options with _ for - (see corpusgen generate --help)"
            )));
        }
        if values.is_empty() {
            return Err(bad(format!(
                "[matrix] gives `{key}` no values; give a list such as {key} = [\"a\", \"b\"]"
            )));
        }
        if let Some(value) = values.iter().find(|value| scalar_text(value).is_none()) {
            return Err(bad(format!(
                "[matrix] `{key}` has a value of type {}, but matrix values are strings, numbers or booleans",
                value.type_str()
            )));
        }
    }

    // One copy of every job per combination of the matrix's values. A job
    // that sets a matrix key itself is not varied over that key, so a
    // hand-curated job is not copied once per model.
    let combinations = combinations(&file.matrix);
    let mut jobs = Vec::new();
    // For each planned job: the combination it was planned for and its
    // `job:` reference, if any.
    let mut references: Vec<(usize, Option<String>)> = Vec::new();
    // The planned job of each combination and [[job]].
    let mut slots: Vec<Vec<usize>> = Vec::new();
    let mut planned: BTreeMap<String, usize> = BTreeMap::new();
    let mut outs: BTreeMap<PathBuf, String> = BTreeMap::new();
    for (combination_index, combination) in combinations.iter().enumerate() {
        let mut slot = Vec::new();
        for (job, name) in file.jobs.iter().zip(&names) {
            let label = std::iter::once(name.clone())
                .chain(
                    combination
                        .iter()
                        .filter(|(key, _)| !job.contains_key(*key))
                        .filter_map(|(_, value)| scalar_text(value))
                        .map(|value| slug(&value)),
                )
                .collect::<Vec<_>>()
                .join("/");
            if let Some(index) = planned.get(&label) {
                slot.push(*index);
                continue;
            }
            planned.insert(label.clone(), jobs.len());
            slot.push(jobs.len());
            let mut merged = file.defaults.clone();
            for (key, value) in combination {
                merged.insert(key.clone(), value.clone());
            }
            for (key, value) in job {
                merged.insert(key.clone(), value.clone());
            }
            merged.remove(NAME_KEY);
            let context = TemplateContext::new(name, &merged, file.matrix.keys());
            let mut argv = Vec::new();
            let mut config = None;
            let mut reference = None;
            for (key, value) in &merged {
                let at = |message: String| bad(format!("job `{label}`, key `{key}`: {message}"));
                let Some(text) = value_text(value) else {
                    return Err(at(
                        "the value must be a string, number, boolean or list of them".to_string(),
                    ));
                };
                let text = match value {
                    Value::Boolean(_) => text,
                    _ => context.fill(key, &text).map_err(at)?,
                };
                if key == CONFIG_KEY {
                    config = Some(relative_to(&folder, &text));
                    continue;
                }
                if key == "match_length"
                    && let Some(target) = text.strip_prefix(JOB_REFERENCE)
                {
                    reference = Some(target.to_string());
                    continue;
                }
                let flag = format!("--{}", key.replace('_', "-"));
                match value {
                    Value::Boolean(true) => argv.push(flag),
                    Value::Boolean(false) => {}
                    _ if options.is_path(key) => {
                        argv.push(format!("{flag}={}", relative_to(&folder, &text).display()));
                    }
                    _ => argv.push(format!("{flag}={text}")),
                }
            }
            if let Some(out) = argv.iter().find_map(|arg| arg.strip_prefix("--out=")) {
                if let Some(other) = outs.insert(PathBuf::from(out), label.clone()) {
                    return Err(bad(format!(
                        "the jobs `{other}` and `{label}` both write {out}; give each its own `out`, for example with a {{topic_slug}} or {{model_slug}} placeholder"
                    )));
                }
            }
            jobs.push(Draft {
                label,
                argv,
                depends_on: None,
                config,
            });
            references.push((combination_index, reference));
        }
        slots.push(slot);
    }

    // `job:NAME` is the job of that name in the same combination.
    for (index, (combination_index, reference)) in references.iter().enumerate() {
        let Some(target) = reference else { continue };
        let Some(position) = names.iter().position(|name| name == target) else {
            return Err(bad(format!(
                "job `{}` has match_length = \"job:{target}\", but no job is named `{target}`",
                jobs[index].label
            )));
        };
        jobs[index].depends_on = Some(slots[*combination_index][position]);
    }
    let dependencies: Vec<Option<usize>> = jobs.iter().map(|job| job.depends_on).collect();
    if let Err(cycle) = topological_order(&dependencies) {
        let names: Vec<&str> = cycle
            .iter()
            .map(|index| jobs[*index].label.as_str())
            .collect();
        return Err(bad(format!(
            "the match_length = \"job:...\" references form a cycle ({}); one of these jobs needs a target of its own",
            names.join(" -> ")
        )));
    }
    for index in 0..jobs.len() {
        if let Some(dependency) = jobs[index].depends_on {
            let Some(out) = jobs[dependency]
                .argv
                .iter()
                .find_map(|arg| arg.strip_prefix("--out="))
                .map(str::to_string)
            else {
                return Err(bad(format!(
                    "job `{}` has no `out`, so job `{}` cannot match its length; give it an out",
                    jobs[dependency].label, jobs[index].label
                )));
            };
            jobs[index].argv.push(format!("--match-length={out}"));
        }
    }
    jobs.into_iter()
        .map(|mut job| {
            job.argv.extend(every_job.iter().cloned());
            let args = JobArgs::try_parse_from(&job.argv)
                .map_err(|err| bad(format!("job `{}`: {}", job.label, clap_sentence(&err))))?
                .generate;
            Ok(PlannedJob {
                label: job.label,
                argv: job.argv,
                args,
                depends_on: job.depends_on,
                config: job.config,
            })
        })
        .collect()
}

/// The jobs in an order where each comes after the job it depends on, file
/// order otherwise; or, if there is a cycle, the jobs on it, first repeated.
fn topological_order(dependencies: &[Option<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let mut order = Vec::new();
    let mut placed = vec![false; dependencies.len()];
    for start in 0..dependencies.len() {
        // The chain of dependencies from `start` down to a placed job.
        let mut chain = Vec::new();
        let mut current = Some(start);
        while let Some(index) = current {
            if placed[index] {
                break;
            }
            if let Some(at) = chain.iter().position(|seen| *seen == index) {
                let mut cycle: Vec<usize> = chain[at..].to_vec();
                cycle.push(index);
                return Err(cycle);
            }
            chain.push(index);
            current = dependencies[index];
        }
        for index in chain.into_iter().rev() {
            placed[index] = true;
            order.push(index);
        }
    }
    Ok(order)
}

/// What clap knows about `generate`'s options: which keys exist, which
/// take paths.
struct GenerateOptions {
    keys: BTreeSet<String>,
    paths: BTreeSet<String>,
}

impl GenerateOptions {
    fn new() -> GenerateOptions {
        let command = JobArgs::command();
        let mut keys = BTreeSet::new();
        let mut paths = BTreeSet::new();
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let key = long.replace('-', "_");
            let is_path = arg
                .get_value_names()
                .is_some_and(|names| names.iter().any(|name| *name == "FILE" || *name == "DIR"));
            if is_path {
                paths.insert(key.clone());
            }
            keys.insert(key);
        }
        paths.insert(CONFIG_KEY.to_string());
        GenerateOptions { keys, paths }
    }

    fn is_option(&self, key: &str) -> bool {
        self.keys.contains(key)
    }

    fn is_path(&self, key: &str) -> bool {
        self.paths.contains(key)
    }

    fn check_key(&self, key: &str, place: &str) -> Result<(), String> {
        if key == "dry_run" {
            // A job that only planned would run for real under `corpusgen run`.
            return Err(format!(
                "{place} sets `dry_run`, which plans a whole file, not one job; remove it and run `corpusgen run --dry-run FILE`"
            ));
        }
        if key == NAME_KEY || key == CONFIG_KEY || self.is_option(key) {
            return Ok(());
        }
        let hint = if key.contains('-') && self.is_option(&key.replace('-', "_")) {
            format!("; write it `{}`", key.replace('-', "_"))
        } else {
            String::new()
        };
        Err(format!(
            "{place} has the unknown key `{key}`{hint}; the keys are name, config and generate's options with _ for - (see corpusgen generate --help)"
        ))
    }
}

/// Every combination of the matrix's values, the first key (in name order)
/// varying slowest; one empty combination without a matrix.
fn combinations(matrix: &BTreeMap<String, Vec<Value>>) -> Vec<BTreeMap<String, Value>> {
    let mut combinations = vec![BTreeMap::new()];
    for (key, values) in matrix {
        combinations = combinations
            .into_iter()
            .flat_map(|combination| {
                values.iter().map(move |value| {
                    let mut next = combination.clone();
                    next.insert(key.clone(), value.clone());
                    next
                })
            })
            .collect();
    }
    combinations
}

/// The placeholders of one job's string values.
struct TemplateContext {
    values: BTreeMap<String, String>,
}

impl TemplateContext {
    /// The values of `topic`, `model` and the matrix keys are the job's
    /// merged ones: its own where it sets them.
    fn new<'a>(
        name: &str,
        merged: &Table,
        matrix_keys: impl Iterator<Item = &'a String>,
    ) -> TemplateContext {
        let mut values = BTreeMap::new();
        values.insert("name".to_string(), name.to_string());
        for key in ["topic", "model"]
            .into_iter()
            .chain(matrix_keys.map(String::as_str))
        {
            if let Some(text) = merged.get(key).and_then(scalar_text) {
                values.insert(key.to_string(), text);
            }
        }
        TemplateContext { values }
    }

    /// Fills `{KEY}` and `{KEY_slug}`. In `prompt` and `system`, which are
    /// templates of their own (`{topic}`, the `--diversify` axes), unknown
    /// placeholders are left for generate to fill or reject.
    fn fill(&self, key: &str, template: &str) -> Result<String, String> {
        let lenient = key == "prompt" || key == "system";
        let mut filled = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            filled.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                filled.push_str(&rest[open..]);
                rest = "";
                break;
            };
            let name = &after[..close];
            let is_placeholder = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            let value = match name.strip_suffix("_slug") {
                Some(base) if self.values.contains_key(base) => Some(slug(&self.values[base])),
                _ => self.values.get(name).cloned(),
            };
            match value {
                Some(value) if is_placeholder => filled.push_str(&value),
                None if is_placeholder && !lenient => {
                    let base = name.strip_suffix("_slug").unwrap_or(name);
                    return Err(if base == "topic" || base == "model" {
                        format!(
                            "{{{name}}} needs a `{base}`, which the job does not set; set it in the job, [defaults] or [matrix]"
                        )
                    } else {
                        format!(
                            "the unknown placeholder {{{name}}}; the placeholders are {}",
                            self.known()
                        )
                    });
                }
                _ => filled.push_str(&rest[open..open + close + 2]),
            }
            rest = &after[close + 1..];
        }
        filled.push_str(rest);
        Ok(filled)
    }

    fn known(&self) -> String {
        let mut names: Vec<String> = ["topic", "model", "name"]
            .iter()
            .map(|name| name.to_string())
            .chain(self.values.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
            .iter()
            .map(|name| format!("{{{name}}}, {{{name}_slug}}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A value for file names: lowercase, every run of other chars than letters
/// and digits one `_`, none at the ends. "gpt-4.1" gives "gpt_4_1", as in the
/// seed's `list_of_dpo_explanations_gpt_4_1_generated.txt`.
pub fn slug(text: &str) -> String {
    let mut slug = String::new();
    let mut gap = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if gap && !slug.is_empty() {
                slug.push('_');
            }
            gap = false;
            slug.extend(c.to_lowercase());
        } else {
            gap = true;
        }
    }
    slug
}

/// A relative path of the job file is relative to the job file's folder,
/// as in Cargo.toml.
fn relative_to(folder: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        folder.join(path)
    }
}

/// A string, number or boolean as a flag's value.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Integer(number) => Some(number.to_string()),
        Value::Float(number) => Some(number.to_string()),
        Value::Boolean(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// A scalar, or a list of scalars joined by commas (`diversify = ["audience",
/// "format"]`).
fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(scalar_text)
            .collect::<Option<Vec<_>>>()
            .map(|items| items.join(",")),
        other => scalar_text(other),
    }
}

/// clap's error as one sentence in the job file's words: keys, not flags.
fn clap_sentence(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let sentence = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let sentence = sentence.strip_prefix("error: ").unwrap_or(&sentence);
    flags_to_keys(sentence)
}

/// `--target-chars <N>` -> `target_chars`.
fn flags_to_keys(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("--") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(after.len());
        out.push_str(&after[..end].replace('-', "_"));
        rest = &after[end..];
        // The value name clap shows after the flag.
        if let Some(value) = rest.strip_prefix(" <")
            && let Some(close) = value.find('>')
        {
            rest = &value[close + 1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_text(text: &str) -> Result<Vec<PlannedJob>, String> {
        plan(Path::new("jobs/grid.toml"), text, &[]).map_err(|err| err.message)
    }

    #[test]
    fn slugs_follow_the_seeds_file_names() {
        for (text, expect) in [
            (
                "DPO (Direct Preference Optimization)",
                "dpo_direct_preference_optimization",
            ),
            ("gpt-4.1", "gpt_4_1"),
            ("  RLHF  ", "rlhf"),
            ("a--b__c", "a_b_c"),
            ("Réponse 2", "réponse_2"),
        ] {
            assert_eq!(slug(text), expect, "{text}");
        }
    }

    #[test]
    fn a_matrix_of_two_topics_and_two_models_gives_four_jobs() {
        let jobs = plan_text(
            r#"
[defaults]
count = 2
concurrency = 1

[matrix]
topic = ["DPO (Direct Preference Optimization)", "RLHF"]
model = ["gpt-4.1", "gpt-4o"]

[[job]]
name = "gen"
out = "../data/list_of_{topic_slug}_explanations_{model_slug}_generated.txt"
"#,
        )
        .unwrap();
        let planned: Vec<(String, String, String, String)> = jobs
            .iter()
            .map(|job| {
                (
                    job.label.clone(),
                    job.args.topic.clone(),
                    job.args.model.clone().unwrap(),
                    job.args.out.display().to_string(),
                )
            })
            .collect();
        let dpo = "DPO (Direct Preference Optimization)";
        assert_eq!(
            planned,
            [
                (
                    "gen/gpt_4_1/dpo_direct_preference_optimization",
                    dpo,
                    "gpt-4.1",
                    "jobs/../data/list_of_dpo_direct_preference_optimization_explanations_gpt_4_1_generated.txt"
                ),
                (
                    "gen/gpt_4_1/rlhf",
                    "RLHF",
                    "gpt-4.1",
                    "jobs/../data/list_of_rlhf_explanations_gpt_4_1_generated.txt"
                ),
                (
                    "gen/gpt_4o/dpo_direct_preference_optimization",
                    dpo,
                    "gpt-4o",
                    "jobs/../data/list_of_dpo_direct_preference_optimization_explanations_gpt_4o_generated.txt"
                ),
                (
                    "gen/gpt_4o/rlhf",
                    "RLHF",
                    "gpt-4o",
                    "jobs/../data/list_of_rlhf_explanations_gpt_4o_generated.txt"
                ),
            ]
            .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        );
        assert!(
            jobs.iter()
                .all(|job| job.args.count == Some(2) && job.args.concurrency == 1)
        );
    }

    #[test]
    fn templates_fill_names_matrix_keys_and_slugs_and_leave_prompt_placeholders() {
        let jobs = plan_text(
            r#"
[matrix]
temperature = [0.5]

[[job]]
name = "hot"
topic = "Direct Preference"
model = "gpt-4.1"
count = 1
prompt = "Explain {topic} for {audience} ({model})"
diversify = ["audience"]
out = "/tmp/{name}-{temperature}-{topic_slug}.txt"
"#,
        )
        .unwrap();
        let args = &jobs[0].args;
        assert_eq!(
            args.out,
            PathBuf::from("/tmp/hot-0.5-direct_preference.txt")
        );
        assert_eq!(
            args.prompt,
            "Explain Direct Preference for {audience} (gpt-4.1)"
        );
        assert_eq!(args.diversify, "audience");
        assert_eq!(args.temperature, 0.5);
    }

    #[test]
    fn job_references_depend_on_the_job_of_the_same_combination() {
        let jobs = plan_text(
            r#"
[matrix]
topic = ["A", "B"]

[[job]]
name = "matched"
match_length = "job:curated"
out = "matched_{topic_slug}.txt"

[[job]]
name = "curated"
count = 3
out = "curated_{topic_slug}.txt"
"#,
        )
        .unwrap();
        let labels: Vec<&str> = jobs.iter().map(|job| job.label.as_str()).collect();
        assert_eq!(labels, ["matched/a", "curated/a", "matched/b", "curated/b"]);
        assert_eq!(jobs[0].depends_on, Some(1));
        assert_eq!(jobs[2].depends_on, Some(3));
        assert_eq!(
            jobs[2].args.match_length,
            Some(PathBuf::from("jobs/curated_b.txt"))
        );
        let dependencies: Vec<Option<usize>> = jobs.iter().map(|job| job.depends_on).collect();
        assert_eq!(topological_order(&dependencies).unwrap(), [1, 0, 3, 2]);
    }

    #[test]
    fn a_job_that_sets_a_matrix_key_is_not_copied_over_it() {
        let jobs = plan_text(
            r#"
[defaults]
count = 1

[matrix]
topic = ["A", "B"]
model = ["x", "y"]

[[job]]
name = "curated"
model = "chatgpt"
out = "curated_{topic_slug}_{model_slug}.txt"

[[job]]
name = "gen"
match_length = "job:curated"
count = false
out = "gen_{topic_slug}_{model_slug}.txt"
"#,
        )
        .unwrap();
        let labels: Vec<&str> = jobs.iter().map(|job| job.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "curated/a",
                "gen/x/a",
                "curated/b",
                "gen/x/b",
                "gen/y/a",
                "gen/y/b"
            ]
        );
        let depends: Vec<Option<usize>> = jobs.iter().map(|job| job.depends_on).collect();
        assert_eq!(depends, [None, Some(0), None, Some(2), Some(0), Some(2)]);
        assert_eq!(
            jobs[0].args.out,
            PathBuf::from("jobs/curated_a_chatgpt.txt")
        );
        assert_eq!(
            jobs[5].args.match_length,
            Some(PathBuf::from("jobs/curated_b_chatgpt.txt"))
        );
    }

    #[test]
    fn the_order_puts_dependencies_first_and_finds_cycles() {
        assert_eq!(
            topological_order(&[Some(2), None, Some(1)]),
            Ok(vec![1, 2, 0])
        );
        assert_eq!(topological_order(&[None, None]), Ok(vec![0, 1]));
        assert_eq!(topological_order(&[Some(0)]), Err(vec![0, 0]));
        assert_eq!(
            topological_order(&[None, Some(2), Some(3), Some(1)]),
            Err(vec![1, 2, 3, 1])
        );
    }

    #[test]
    fn bad_files_are_one_sentence_each() {
        let job = |body: &str| format!("[[job]]\nname = \"a\"\ncount = 1\nout = \"a.txt\"\n{body}");
        for (text, says) in [
            (
                job("targte_chars = 3"),
                "job `a` has the unknown key `targte_chars`",
            ),
            (job("target-chars = 3"), "write it `target_chars`"),
            (
                job("dry_run = true"),
                "job `a` sets `dry_run`, which plans a whole file, not one job",
            ),
            (
                format!("{}\n{}", job(""), job("")),
                "two jobs are named `a`",
            ),
            (
                format!("[matrix]\nshade = [1]\n{}", job("")),
                "[matrix] varies `shade`, which is not a generate option",
            ),
            (job("topic = \"{topc}\""), "the unknown placeholder {topc}"),
            (
                job("topic = \"x\"\nfixtures = \"{model}\""),
                "{model} needs a `model`",
            ),
            (
                job("topic = \"x\"\ntemperature = \"hot\""),
                "invalid value 'hot' for 'temperature'",
            ),
            (
                job("match_length = \"job:nobody\""),
                "no job is named `nobody`",
            ),
            (
                "[[job]]\nname = \"a\"\ntopic = \"x\"\nout = \"a.txt\"\n".to_string(),
                "job `a`: the following required arguments were not provided",
            ),
            (
                "[[job]]\nname = \"a\"\nname2 = [[1]]\n".to_string(),
                "unknown key `name2`",
            ),
            (
                "[defaults]\ncount = 1\n".to_string(),
                "there is no [[job]] table",
            ),
            (
                "[defualts]\n".to_string(),
                "jobs/grid.toml:1:2: unknown field `defualts`",
            ),
        ] {
            let message = plan_text(&text)
                .err()
                .unwrap_or_else(|| panic!("{text} was accepted"));
            assert!(message.starts_with("jobs/grid.toml"), "{message}");
            assert!(message.contains(says), "{text}\n{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn a_cycle_is_named_from_job_to_job() {
        let message = plan_text(
            r#"
[[job]]
name = "a"
topic = "x"
match_length = "job:b"
out = "a.txt"

[[job]]
name = "b"
topic = "x"
match_length = "job:a"
out = "b.txt"
"#,
        )
        .err()
        .unwrap();
        assert!(message.contains("form a cycle (a -> b -> a)"), "{message}");
    }

    #[test]
    fn two_jobs_writing_one_file_are_refused() {
        let message = plan_text(
            "[matrix]\nmodel = [\"x\", \"y\"]\n[[job]]\nname = \"a\"\ntopic = \"t\"\ncount = 1\nout = \"same.txt\"\n",
        )
        .err()
        .unwrap();
        assert!(message.contains("both write jobs/same.txt"), "{message}");
    }

    #[test]
    fn the_worst_exit_code_wins_and_a_stop_counts_as_interrupted() {
        let failed = |kind| Outcome::Failed(CliError::new(kind, "x"));
        assert_eq!(worst(&[]), None);
        assert_eq!(
            worst(&[
                failed(ExitKind::GaveUp),
                failed(ExitKind::Refused),
                Outcome::Skipped
            ]),
            Some(ExitKind::Refused)
        );
        assert_eq!(
            worst(&[failed(ExitKind::Internal), failed(ExitKind::BadInput)]),
            Some(ExitKind::BadInput)
        );
        assert_eq!(
            worst(&[failed(ExitKind::BadInput), failed(ExitKind::Interrupted)]),
            Some(ExitKind::Interrupted)
        );
        assert_eq!(worst(&[Outcome::Skipped]), Some(ExitKind::Interrupted));
    }
}
