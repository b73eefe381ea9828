//! `generate --batch` and `corpusgen batch status|cancel` against a stateful
//! model of the Files and Batches APIs, OpenAI's and Azure's: the states a
//! batch goes through, what the request files hold, crash safety, and
//! resubmission of only what is missing.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use corpusgen_testkit::batch::{BatchPlan, BatchServer, Flavor, answer_by_seed, text_for_seed};
use corpusgen_testkit::{completion, workspace_root};
use jsonschema::{Draft, Registry, Validator};
use serde_json::{Value, json};

use crate::support::{FAKE_KEY, Run, corpusgen};

const AZURE_DEPLOYMENT: &str = "gpt-4o-global-batch";

/// The job: the seed's topic with a seed, so that slot i's answer is
/// `text_for_seed(100 + i)` in every batch, polled every few milliseconds.
fn args(flavor: Flavor, base_url: &str, rest: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "generate",
        "--topic",
        "DPO (Direct Preference Optimization)",
        "--base-url",
        base_url,
        "--seed",
        "100",
        "--batch",
        "--batch-poll-ms",
        "5",
        "--out",
        "out.txt",
    ]
    .map(str::to_owned)
    .to_vec();
    if flavor == Flavor::Azure {
        args.extend(["--provider", "azure", "--model", AZURE_DEPLOYMENT].map(str::to_owned));
    }
    args.extend(rest.iter().map(|arg| arg.to_string()));
    args
}

fn env(flavor: Flavor) -> [(&'static str, &'static str); 1] {
    match flavor {
        Flavor::OpenAi => [("OPENAI_API_KEY", FAKE_KEY)],
        Flavor::Azure => [("AZURE_OPENAI_API_KEY", FAKE_KEY)],
    }
}

async fn generate(server: &BatchServer, flavor: Flavor, folder: &Path, rest: &[&str]) -> Run {
    let args = args(flavor, &server.base_url(), rest);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    corpusgen(folder, &args, &env(flavor)).await
}

fn expected_corpus(slots: std::ops::Range<u64>) -> String {
    slots
        .map(|slot| text_for_seed(100 + slot))
        .collect::<Vec<_>>()
        .join("^^^^")
}

fn corpus(folder: &Path) -> String {
    std::fs::read_to_string(folder.join("out.txt")).unwrap()
}

fn manifest(folder: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(folder.join("out.manifest.json")).unwrap())
        .unwrap()
}

/// The `{slot}-{resample}` ends of a request file's custom ids.
fn requested(server: &BatchServer, upload: usize) -> Vec<String> {
    server
        .request_lines(upload)
        .iter()
        .map(|line| {
            let custom_id = line["custom_id"].as_str().unwrap();
            let mut parts = custom_id.rsplitn(3, '-');
            let resample = parts.next().unwrap();
            let slot = parts.next().unwrap();
            format!("{slot}-{resample}")
        })
        .collect()
}

fn job_id(folder: &Path) -> String {
    let journal = std::fs::read_to_string(folder.join("out.jsonl")).unwrap();
    let header: Value = serde_json::from_str(journal.lines().next().unwrap()).unwrap();
    header["job_id"].as_str().unwrap().to_string()
}

async fn happy_path(flavor: Flavor) {
    let server = BatchServer::start(flavor, vec![BatchPlan::completed()], answer_by_seed).await;
    let folder = tempfile::tempdir().unwrap();
    let run = generate(&server, flavor, folder.path(), &["--count", "5"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(corpus(folder.path()), expected_corpus(0..5));
    assert_eq!(server.creates(), 1);
    assert_eq!(requested(&server, 0), ["0-0", "1-0", "2-0", "3-0", "4-0"]);
    for status in ["validating", "in_progress", "finalizing", "completed"] {
        assert!(
            run.stderr.contains(&format!("batch_0: {status}")),
            "{status}: {}",
            run.stderr
        );
    }
    assert!(
        !run.stderr.contains('\u{1b}'),
        "no control chars off a terminal"
    );
    let manifest = manifest(folder.path());
    let batch = &manifest["batch"];
    assert_eq!(batch["batches"][0]["batch_id"], "batch_0");
    assert_eq!(batch["batches"][0]["status"], "completed");
    assert_eq!(
        batch["requests"],
        json!({"submitted": 5, "completed": 5, "failed": 0, "unanswered": 0})
    );
    assert_eq!(batch["batch_discount"], 0.5);
    // The fixture's usage, 340 tokens a response, is what batch prices apply to.
    assert_eq!(manifest["totals"]["total_tokens"], 5 * 340);
    // 40 prompt and 300 completion tokens a response at gpt-4.1's 2 and 8 USD
    // per million, at half the price (an Azure deployment has no price).
    let cost = manifest["totals"]["cost_usd"].as_f64();
    if flavor == Flavor::OpenAi {
        let expected = 5.0 * (40.0 * 2.0 + 300.0 * 8.0) / 1e6 * 0.5;
        assert!(
            cost.is_some_and(|cost| (cost - expected).abs() < 1e-12),
            "{cost:?}"
        );
    }

    let lines = server.request_lines(0);
    let validate = request_validator(flavor);
    for line in &lines {
        assert_eq!(line["method"], "POST");
        match flavor {
            Flavor::OpenAi => {
                assert_eq!(line["url"], "/v1/chat/completions");
                let complaints = errors(&validate, &line["body"]);
                assert!(complaints.is_empty(), "{line}\n{complaints:#?}");
            }
            Flavor::Azure => {
                assert_eq!(line["url"], "/chat/completions");
                // Azure's request schema has no `model`: the deployment is in
                // the URL online, and in `model` in a batch line.
                assert_eq!(line["body"]["model"], AZURE_DEPLOYMENT);
                let mut body = line["body"].clone();
                body.as_object_mut().unwrap().remove("model");
                let complaints = errors(&validate, &body);
                assert!(complaints.is_empty(), "{line}\n{complaints:#?}");
            }
        }
    }
    let request_file = server.uploads()[0].replace(&job_id(folder.path()), "[job_id]");
    insta::assert_snapshot!(
        match flavor {
            Flavor::OpenAi => "openai_request_file",
            Flavor::Azure => "azure_request_file",
        },
        request_file
    );
}

#[tokio::test]
async fn openai_batch_goes_validating_in_progress_finalizing_completed() {
    happy_path(Flavor::OpenAi).await;
}

#[tokio::test]
async fn azure_global_batch_goes_validating_in_progress_finalizing_completed() {
    happy_path(Flavor::Azure).await;
}

#[tokio::test]
async fn a_failed_batch_stops_with_its_reason_and_exit_3() {
    for flavor in [Flavor::OpenAi, Flavor::Azure] {
        let plans = vec![BatchPlan::through(&["validating", "failed"])];
        let server = BatchServer::start(flavor, plans, answer_by_seed).await;
        let folder = tempfile::tempdir().unwrap();
        let run = generate(&server, flavor, folder.path(), &["--count", "3"]).await;
        assert_eq!(run.code, 3, "{flavor:?}: {run:?}");
        assert!(
            run.stderr
                .contains("rejected it while validating (line 1: invalid_request: the model is not a batch deployment)"),
            "{}",
            run.stderr
        );
        assert_eq!(server.creates(), 1);
        assert!(!folder.path().join("out.txt").exists());
    }
}

#[tokio::test]
async fn an_expired_batch_keeps_its_results_and_resubmits_only_the_missing() {
    for flavor in [Flavor::OpenAi, Flavor::Azure] {
        let plans = vec![
            BatchPlan::through(&["validating", "in_progress", "expired"]).answering(4),
            BatchPlan::completed(),
        ];
        let server = BatchServer::start(flavor, plans, answer_by_seed).await;
        let folder = tempfile::tempdir().unwrap();
        let run = generate(&server, flavor, folder.path(), &["--count", "6"]).await;
        assert_eq!(run.code, 0, "{flavor:?}: {run:?}");
        assert_eq!(corpus(folder.path()), expected_corpus(0..6));
        assert_eq!(server.creates(), 2);
        assert_eq!(requested(&server, 1), ["4-0", "5-0"], "{flavor:?}");
        assert!(run.stderr.contains("batch_0: expired"), "{}", run.stderr);
        assert!(
            run.stderr
                .contains("batch_0: 4 responses accepted, 0 rejected, 2 requests to ask again"),
            "{}",
            run.stderr
        );
        let batch = &manifest(folder.path())["batch"];
        assert_eq!(
            batch["requests"],
            json!({"submitted": 8, "completed": 6, "failed": 0, "unanswered": 2})
        );
    }
}

#[tokio::test]
async fn failed_lines_and_rejected_answers_are_asked_again_alone() {
    /// Slot 1's first sample holds the separator; its resample does not.
    fn answer(line: &Value) -> Value {
        if line["body"]["seed"] == 101 {
            return completion("a reply with ^^^^ inside", "chatcmpl-bad");
        }
        answer_by_seed(line)
    }
    let plans = vec![BatchPlan::completed().failing_lines(&[3])];
    let server = BatchServer::start(Flavor::OpenAi, plans, answer).await;
    let folder = tempfile::tempdir().unwrap();
    let run = generate(&server, Flavor::OpenAi, folder.path(), &["--count", "4"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(requested(&server, 1), ["1-1", "3-0"]);
    let corpus = corpus(folder.path());
    let parts: Vec<&str> = corpus.split("^^^^").collect();
    assert_eq!(parts.len(), 4);
    assert_eq!(parts[0], text_for_seed(100));
    assert_eq!(parts[1], text_for_seed(101 + 1_000_003));
    assert_eq!(parts[3], text_for_seed(103));
    let manifest = manifest(folder.path());
    assert_eq!(manifest["totals"]["rejected"]["contains_separator"], 1);
    assert_eq!(manifest["batch"]["requests"]["failed"], 1);
}

#[tokio::test]
async fn a_char_target_sizes_the_first_batch_and_asks_only_for_the_shortfall() {
    let server = BatchServer::start(Flavor::OpenAi, Vec::new(), answer_by_seed).await;
    let folder = tempfile::tempdir().unwrap();
    // ceil(2000 / 1000) x 1.2 = 3 requests: 300 + 337 + 374 = 1011 chars.
    // The shortfall, 989 chars at their mean of 337, is 3 requests, x 1.2 = 4.
    let run = generate(
        &server,
        Flavor::OpenAi,
        folder.path(),
        &["--target-chars", "2000", "--expect-chars", "1000"],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(requested(&server, 0), ["0-0", "1-0", "2-0"]);
    assert_eq!(requested(&server, 1), ["3-0", "4-0", "5-0", "6-0"]);
    // at-least: 300, 637, 1011, 1422, 1870, 2355; slot 6 is kept unused.
    assert_eq!(corpus(folder.path()), expected_corpus(0..6));
    assert!(
        run.stdout
            .contains("6 responses, 2375 chars (target 2000 chars), 1 more kept unused"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn a_job_beyond_the_per_batch_limits_is_split() {
    let server = BatchServer::start(Flavor::OpenAi, Vec::new(), answer_by_seed).await;
    let folder = tempfile::tempdir().unwrap();
    let run = generate(
        &server,
        Flavor::OpenAi,
        folder.path(),
        &["--count", "7", "--batch-max-requests", "3"],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(server.creates(), 3);
    let split: Vec<Vec<String>> = (0..3).map(|upload| requested(&server, upload)).collect();
    assert_eq!(
        split,
        [
            vec!["0-0", "1-0", "2-0"],
            vec!["3-0", "4-0", "5-0"],
            vec!["6-0"]
        ]
    );
    assert_eq!(corpus(folder.path()), expected_corpus(0..7));
    assert_eq!(
        manifest(folder.path())["batch"]["batches"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // The byte limit: each request line is a little over 400 bytes, so a
    // limit of 1000 bytes holds two lines a file.
    let server = BatchServer::start(Flavor::OpenAi, Vec::new(), answer_by_seed).await;
    let folder = tempfile::tempdir().unwrap();
    let run = generate(
        &server,
        Flavor::OpenAi,
        folder.path(),
        &["--count", "5", "--batch-max-bytes", "1000"],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let uploads = server.uploads();
    assert_eq!(uploads.len(), 3);
    assert!(uploads.iter().all(|file| file.len() <= 1000));
    assert_eq!(requested(&server, 2), ["4-0"]);
    assert_eq!(corpus(folder.path()), expected_corpus(0..5));
}

fn spawn(flavor: Flavor, folder: &Path, args: &[String]) -> tokio::process::Child {
    let [(name, value)] = env(flavor);
    tokio::process::Command::new(env!("CARGO_BIN_EXE_corpusgen"))
        .args(args)
        .current_dir(folder)
        .env_clear()
        .env(name, value)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the journal holds a created batch: the binary is polling.
async fn wait_for_batch_id(folder: &Path) {
    for _ in 0..2000 {
        let journal = std::fs::read_to_string(folder.join("out.jsonl")).unwrap_or_default();
        if journal.contains("\"batch_id\"") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no batch was ever journaled");
}

fn long_running() -> BatchPlan {
    let mut statuses = vec!["validating"];
    statuses.extend(std::iter::repeat_n("in_progress", 30));
    statuses.extend(["finalizing", "completed"]);
    BatchPlan::through(&statuses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_polling_then_a_rerun_attaches_without_a_second_batch() {
    for flavor in [Flavor::OpenAi, Flavor::Azure] {
        let server = BatchServer::start(flavor, vec![long_running()], answer_by_seed).await;
        let folder = tempfile::tempdir().unwrap();
        let args = args(flavor, &server.base_url(), &["--count", "4"]);
        let mut child = spawn(flavor, folder.path(), &args);
        wait_for_batch_id(folder.path()).await;
        child.start_kill().unwrap();
        assert!(!child.wait().await.unwrap().success());
        assert!(!folder.path().join("out.txt").exists());

        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = corpusgen(folder.path(), &args, &env(flavor)).await;
        assert_eq!(run.code, 0, "{flavor:?}: {run:?}");
        assert!(
            run.stderr.contains("batch batch_0: attaching"),
            "{}",
            run.stderr
        );
        assert_eq!(server.creates(), 1, "{flavor:?}: no second batch");
        assert_eq!(server.uploads().len(), 1, "{flavor:?}: no second upload");
        assert_eq!(corpus(folder.path()), expected_corpus(0..4));

        // A third run finds everything in the journal and asks for nothing.
        let run = corpusgen(folder.path(), &args, &env(flavor)).await;
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(server.creates(), 1);
        assert_eq!(corpus(folder.path()), expected_corpus(0..4));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_while_polling_exits_130_and_leaves_the_batch_running() {
    let server = BatchServer::start(Flavor::OpenAi, vec![long_running()], answer_by_seed).await;
    let folder = tempfile::tempdir().unwrap();
    let args = args(Flavor::OpenAi, &server.base_url(), &["--count", "3"]);
    let child = spawn(Flavor::OpenAi, folder.path(), &args);
    wait_for_batch_id(folder.path()).await;
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("batch batch_0 is in_progress and keeps running at the provider"),
        "{stderr}"
    );
    assert!(stderr.contains("run the same command again"), "{stderr}");
    assert_eq!(server.cancels(), 0);

    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = corpusgen(folder.path(), &args, &env(Flavor::OpenAi)).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(server.creates(), 1);
    assert_eq!(corpus(folder.path()), expected_corpus(0..3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_status_and_cancel_by_output_path_then_the_job_resubmits_the_rest() {
    for flavor in [Flavor::OpenAi, Flavor::Azure] {
        // The first batch stays in progress until it is cancelled.
        let plans = vec![
            BatchPlan::through(&["validating", "in_progress"]).answering(2),
            BatchPlan::completed(),
        ];
        let server = BatchServer::start(flavor, plans, answer_by_seed).await;
        let folder = tempfile::tempdir().unwrap();
        let args = args(flavor, &server.base_url(), &["--count", "5"]);
        let child = spawn(flavor, folder.path(), &args);
        wait_for_batch_id(folder.path()).await;

        let status = corpusgen(folder.path(), &["batch", "status", "out.txt"], &env(flavor)).await;
        assert_eq!(status.code, 0, "{status:?}");
        assert!(
            status
                .stdout
                .contains("batch_0: in_progress, 0 of 5 requests completed"),
            "{}",
            status.stdout
        );
        let cancel = corpusgen(folder.path(), &["batch", "cancel", "out.txt"], &env(flavor)).await;
        assert_eq!(cancel.code, 0, "{cancel:?}");
        assert!(
            cancel.stdout.contains("batch_0: cancelling"),
            "{}",
            cancel.stdout
        );
        assert_eq!(server.cancels(), 1);

        // The job sees the batch cancelled with two answers, keeps them and
        // asks a second batch for the other three.
        let output = child.wait_with_output().await.unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(0), "{flavor:?}: {stderr}");
        assert!(stderr.contains("batch_0: cancelled"), "{stderr}");
        assert_eq!(server.creates(), 2);
        assert_eq!(requested(&server, 1), ["2-0", "3-0", "4-0"]);
        assert_eq!(corpus(folder.path()), expected_corpus(0..5));

        let status = corpusgen(folder.path(), &["batch", "status", "out.txt"], &env(flavor)).await;
        assert_eq!(status.code, 0, "{status:?}");
        assert!(
            status
                .stdout
                .contains("batch_0: cancelled, results in the journal"),
            "{}",
            status.stdout
        );
    }
}

#[tokio::test]
async fn batch_refuses_local_and_replay_profiles_in_one_sentence() {
    let folder = tempfile::tempdir().unwrap();
    let fixtures = workspace_root().join("fixtures/openai/dpo-chatgpt");
    for provider in [
        vec!["--provider", "local"],
        vec![
            "--provider",
            "replay",
            "--fixtures",
            fixtures.to_str().unwrap(),
        ],
    ] {
        let mut args = vec!["generate", "--topic", "DPO", "--count", "2", "--batch"];
        args.extend(provider.iter().copied());
        args.extend(["--out", "out.txt"]);
        let run = corpusgen(folder.path(), &args, &[]).await;
        assert_eq!(run.code, 2, "{run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        assert!(
            run.stderr
                .contains("--batch needs an openai or azure profile"),
            "{}",
            run.stderr
        );
    }
    let run = corpusgen(folder.path(), &["batch", "status", "nothing.txt"], &[]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("there is no journal"), "{}", run.stderr);

    // A journal whose first line is not a job header: no advice to --fresh,
    // which `batch` does not take.
    std::fs::write(folder.path().join("damaged.jsonl"), "not json\n").unwrap();
    let run = corpusgen(folder.path(), &["batch", "status", "damaged.txt"], &[]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: the journal damaged.jsonl is damaged at line 1"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("--fresh"), "{}", run.stderr);
}

/// A closed-world validator for one `#/components/schemas/{root}` of the
/// official request schemas in `fixtures/specs/`, as the providers' tests
/// build it.
fn request_validator(flavor: Flavor) -> Validator {
    let (spec_file, root) = match flavor {
        Flavor::OpenAi => (
            "openai-chat-completions.schema.json",
            "CreateChatCompletionRequest",
        ),
        Flavor::Azure => (
            "azure-openai-2024-10-21-chat-completions.schema.json",
            "createChatCompletionRequest",
        ),
    };
    let path = workspace_root().join("fixtures/specs").join(spec_file);
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let uri = format!("https://corpusgen.invalid/specs/{spec_file}");
    let registry = Registry::new()
        .draft(Draft::Draft202012)
        .add(&uri, spec)
        .unwrap()
        .prepare()
        .unwrap();
    let wrapper = json!({
        "$ref": format!("{uri}#/components/schemas/{root}"),
        "unevaluatedProperties": false
    });
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .with_registry(&registry)
        .offline()
        .build(&wrapper)
        .unwrap()
}

fn errors(validator: &Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|err| format!("{} at {}", err, err.instance_path()))
        .collect()
}

#[tokio::test]
async fn a_batch_completed_but_not_collected_is_downloaded_once_more_without_duplicates() {
    let server = BatchServer::start(Flavor::OpenAi, Vec::new(), answer_by_seed).await;
    let folder = tempfile::tempdir().unwrap();
    let run = generate(&server, Flavor::OpenAi, folder.path(), &["--count", "5"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    // A crash after the results were journaled but before the batch was
    // marked collected: cut the journal back to that point.
    let journal_path = folder.path().join("out.jsonl");
    let journal = std::fs::read_to_string(&journal_path).unwrap();
    let kept: Vec<&str> = journal
        .lines()
        .filter(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            record["type"] != "assembled" && record["collected"] != true
        })
        .collect();
    std::fs::write(&journal_path, kept.join("\n") + "\n").unwrap();
    std::fs::remove_file(folder.path().join("out.txt")).unwrap();

    let run = generate(&server, Flavor::OpenAi, folder.path(), &["--count", "5"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("batch batch_0: attaching"),
        "{}",
        run.stderr
    );
    assert_eq!(server.creates(), 1);
    assert_eq!(corpus(folder.path()), expected_corpus(0..5));
    let journal = std::fs::read_to_string(&journal_path).unwrap();
    let responses = journal
        .lines()
        .filter(|line| line.contains("\"type\":\"response\""))
        .count();
    assert_eq!(responses, 5, "no result journaled twice");
}

#[tokio::test]
async fn hipaa_refuses_an_unattested_batch_profile_before_any_upload() {
    let server = BatchServer::start(Flavor::Azure, Vec::new(), answer_by_seed).await;
    let folder = tempfile::tempdir().unwrap();
    let run = generate(
        &server,
        Flavor::Azure,
        folder.path(),
        &["--count", "2", "--hipaa"],
    )
    .await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(server.uploads().is_empty());
    assert_eq!(server.creates(), 0);
}

#[tokio::test]
async fn per_request_replies_fill_their_slots_in_order() {
    /// Two explanations a reply, made from the request's seed.
    fn answer(line: &Value) -> Value {
        let seed = line["body"]["seed"].as_u64().unwrap();
        assert_eq!(
            line["body"]["response_format"]["json_schema"]["name"],
            "explanations"
        );
        let reply = json!({"explanations": [text_for_seed(seed), text_for_seed(seed + 1)]});
        completion(&reply.to_string(), &format!("chatcmpl-{seed}"))
    }
    let server = BatchServer::start(Flavor::OpenAi, Vec::new(), answer).await;
    let folder = tempfile::tempdir().unwrap();
    let run = generate(
        &server,
        Flavor::OpenAi,
        folder.path(),
        &["--count", "4", "--per-request", "2"],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(requested(&server, 0), ["0-0", "2-0"]);
    assert_eq!(
        corpus(folder.path()),
        [100, 101, 102, 103].map(text_for_seed).join("^^^^")
    );
}

#[tokio::test]
async fn a_crash_between_creating_a_batch_and_journaling_its_id_finds_the_batch_again() {
    for flavor in [Flavor::OpenAi, Flavor::Azure] {
        let server = BatchServer::start(flavor, Vec::new(), answer_by_seed).await;
        let folder = tempfile::tempdir().unwrap();
        let run = generate(&server, flavor, folder.path(), &["--count", "3"]).await;
        assert_eq!(run.code, 0, "{run:?}");
        // Keep the journal up to the upload of the request file: the batch
        // exists at the provider, but its id never reached the journal.
        let journal_path = folder.path().join("out.jsonl");
        let journal = std::fs::read_to_string(&journal_path).unwrap();
        let kept: Vec<&str> = journal
            .lines()
            .take_while(|line| !line.contains("\"batch_id\""))
            .collect();
        assert!(kept.last().unwrap().contains("\"type\":\"batch\""));
        std::fs::write(&journal_path, kept.join("\n") + "\n").unwrap();
        std::fs::remove_file(folder.path().join("out.txt")).unwrap();

        let run = generate(&server, flavor, folder.path(), &["--count", "3"]).await;
        assert_eq!(run.code, 0, "{flavor:?}: {run:?}");
        assert_eq!(server.creates(), 1, "{flavor:?}: no second batch");
        assert_eq!(server.uploads().len(), 1);
        assert_eq!(corpus(folder.path()), expected_corpus(0..3));
    }
}

#[tokio::test]
async fn batch_sizing_flags_need_batch() {
    let folder = tempfile::tempdir().unwrap();
    let run = corpusgen(
        folder.path(),
        &[
            "generate",
            "--topic",
            "DPO",
            "--count",
            "2",
            "--expect-chars",
            "900",
            "--out",
            "o.txt",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--batch"), "{}", run.stderr);
}

#[tokio::test]
async fn a_refused_line_stops_the_job_with_exit_3_after_journaling_the_rest() {
    let plans = vec![BatchPlan::completed().refusing_lines(&[1])];
    let server = BatchServer::start(Flavor::OpenAi, plans, answer_by_seed).await;
    let folder = tempfile::tempdir().unwrap();
    let run = generate(&server, Flavor::OpenAi, folder.path(), &["--count", "3"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr.contains(
            "request 1 failed: openai rejected the request (HTTP 400: this model does not exist)"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("every response received is kept"),
        "{}",
        run.stderr
    );
    let journal = std::fs::read_to_string(folder.path().join("out.jsonl")).unwrap();
    let accepted = journal
        .lines()
        .filter(|line| line.contains("\"status\":\"accepted\""))
        .count();
    assert_eq!(accepted, 2);
    assert!(!folder.path().join("out.txt").exists());
    assert_eq!(server.creates(), 1);
}

#[tokio::test]
async fn an_unreachable_batch_engine_is_retried_by_the_job_s_policy_then_given_up() {
    // A port nobody listens on: every upload attempt is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("http://127.0.0.1:{port}/v1");
    let run = corpusgen(
        folder.path(),
        &[
            "generate",
            "--topic",
            "DPO",
            "--base-url",
            &base_url,
            "--count",
            "2",
            "--batch",
            "--max-retries",
            "1",
            "--out",
            "out.txt",
        ],
        &[("OPENAI_API_KEY", FAKE_KEY)],
    )
    .await;
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stderr
            .contains("(gave up after 2 attempts; raise --max-retries to try longer)"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.matches("error:").count(), 1, "{}", run.stderr);
}
