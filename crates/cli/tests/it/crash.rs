//! Crash safety with the real binary: SIGKILL at several points of a run,
//! then a re-run, loses and duplicates nothing; SIGINT stops cleanly with
//! exit 130 and the job resumes.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use corpusgen_testkit::{completion, text_of_chars};
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{FAKE_KEY, corpusgen, seed_args};

const RESPONSES: u64 = 8;
const FIRST_SEED: u64 = 100;

/// Answers each request with a text made from the seed it carries, after a
/// delay, so that slot i's answer is the same in every run, whatever the order
/// requests arrive in.
struct AnswerBySeed;

fn text_for_seed(seed: u64) -> String {
    text_of_chars(200 + (seed as usize * 37) % 300, seed as usize)
}

impl Respond for AnswerBySeed {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let seed = body["seed"].as_u64().expect("the job sends a seed");
        ResponseTemplate::new(200)
            .set_body_json(completion(
                &text_for_seed(seed),
                &format!("chatcmpl-{seed}"),
            ))
            .set_delay(Duration::from_millis(250))
    }
}

async fn slow_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(AnswerBySeed)
        .mount(&server)
        .await;
    server
}

fn args(base_url: &str) -> Vec<String> {
    seed_args(&[
        "--base-url",
        base_url,
        "--count",
        "8",
        "--concurrency",
        "2",
        "--seed",
        "100",
        "--out",
        "out.txt",
    ])
    .into_iter()
    .map(str::to_owned)
    .collect()
}

fn expected_corpus() -> String {
    (FIRST_SEED..FIRST_SEED + RESPONSES)
        .map(text_for_seed)
        .collect::<Vec<_>>()
        .join("^^^^")
}

fn spawn(folder: &Path, args: &[String]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_corpusgen"))
        .args(args)
        .current_dir(folder)
        .env_clear()
        .env("OPENAI_API_KEY", FAKE_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn accepted_indices(journal: &Path) -> Vec<u64> {
    let Ok(text) = std::fs::read_to_string(journal) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record["status"] == "accepted")
        .map(|record| record["index"].as_u64().unwrap())
        .collect()
}

/// Waits until `ready` holds, polling every few milliseconds, for at most 20 s.
async fn wait_until(mut ready: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the condition never held");
}

/// When to kill the first run.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    BeforeTheFirstResponse,
    MidRun,
    AtTheFinalWrite,
}

async fn kill_then_resume(point: KillPoint) {
    let server = slow_server().await;
    let folder = tempfile::tempdir().unwrap();
    let journal = folder.path().join("out.jsonl");
    let args = args(&format!("{}/v1", server.uri()));

    let mut child = spawn(folder.path(), &args);
    match point {
        KillPoint::BeforeTheFirstResponse => {
            let started = || server.received_requests();
            loop {
                if !started().await.unwrap_or_default().is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        KillPoint::MidRun => wait_until(|| accepted_indices(&journal).len() >= 3).await,
        KillPoint::AtTheFinalWrite => {
            wait_until(|| accepted_indices(&journal).len() as u64 >= RESPONSES).await;
        }
    }
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    // At the final write the kill races the writes it aims at: it may land
    // before, during or just after them, and every case must resume alike.
    if !matches!(point, KillPoint::AtTheFinalWrite) {
        assert!(!status.success(), "{point:?}: the first run was killed");
    }
    let journaled_at_kill = accepted_indices(&journal).len() as u64;
    let paid_at_kill = server.received_requests().await.unwrap().len() as u64;

    let run = corpusgen(
        folder.path(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[("OPENAI_API_KEY", FAKE_KEY)],
    )
    .await;
    assert_eq!(run.code, 0, "{point:?}: {run:?}");
    assert_eq!(
        std::fs::read_to_string(folder.path().join("out.txt")).unwrap(),
        expected_corpus(),
        "{point:?}"
    );

    let mut indices = accepted_indices(&journal);
    indices.sort_unstable();
    assert_eq!(
        indices,
        (0..RESPONSES).collect::<Vec<_>>(),
        "{point:?}: every slot journaled once"
    );
    let paid = server.received_requests().await.unwrap().len() as u64;
    // Paid for: what was needed, plus what was in flight (at most the
    // concurrency, 2) when the process died.
    let in_flight_at_kill = paid_at_kill - journaled_at_kill.min(paid_at_kill);
    assert!(
        in_flight_at_kill <= 2,
        "{point:?}: {in_flight_at_kill} in flight"
    );
    assert!(
        paid <= RESPONSES + in_flight_at_kill,
        "{point:?}: {paid} requests paid"
    );
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(folder.path().join("out.manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["totals"]["resumed_responses"], journaled_at_kill,
        "{point:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_before_the_first_response_loses_nothing() {
    kill_then_resume(KillPoint::BeforeTheFirstResponse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_nothing() {
    kill_then_resume(KillPoint::MidRun).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_the_final_write_loses_nothing() {
    kill_then_resume(KillPoint::AtTheFinalWrite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_journals_what_is_in_flight_exits_130_and_resumes() {
    let server = slow_server().await;
    let folder = tempfile::tempdir().unwrap();
    let journal = folder.path().join("out.jsonl");
    let args = args(&format!("{}/v1", server.uri()));

    let child = spawn(folder.path(), &args);
    wait_until(|| accepted_indices(&journal).len() >= 2).await;
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("run the same command again to resume"),
        "{stderr}"
    );
    assert!(!stderr.contains(FAKE_KEY));
    let paid_before = server.received_requests().await.unwrap().len();
    assert_eq!(
        accepted_indices(&journal).len(),
        paid_before,
        "what was in flight finished and was journaled"
    );
    assert!(!folder.path().join("out.txt").exists());

    let run = corpusgen(
        folder.path(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[("OPENAI_API_KEY", FAKE_KEY)],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        std::fs::read_to_string(folder.path().join("out.txt")).unwrap(),
        expected_corpus()
    );
    assert_eq!(
        server.received_requests().await.unwrap().len() as u64,
        RESPONSES,
        "no request paid twice"
    );
}
