//! The fault matrix: one row per way a provider can fail, run through the
//! real binary against wiremock. Each row asserts the exit code, how many
//! requests the mock received, and for Retry-After that the wait was honoured.
//! Waits here are real but short; the retry arithmetic itself is tested on a
//! paused clock in corpusgen-core.

use std::fs;
use std::time::{Duration, Instant, SystemTime};

use corpusgen_testkit::{Sequence, completion, error_body};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{FAKE_KEY, Run, corpusgen, seed_args};

fn ok() -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(completion("A fine explanation of DPO.", "chatcmpl-ok"))
}

fn status(code: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(code).set_body_json(error_body(message, "some_code"))
}

fn with_text(text: &str, finish_reason: &str) -> ResponseTemplate {
    let mut body = completion(text, "chatcmpl-odd");
    body["choices"][0]["finish_reason"] = json!(finish_reason);
    ResponseTemplate::new(200).set_body_json(body)
}

/// What one row of the matrix expects.
struct Expect {
    code: i32,
    requests: u64,
    /// The run must take at least this long (a honoured wait).
    at_least: Duration,
    /// Words the stderr must contain.
    says: &'static str,
}

/// Serves `answers` in order for a one-response job, and checks the outcome.
async fn check(
    name: &str,
    answers: Vec<ResponseTemplate>,
    extra: &[&str],
    expect: Expect,
) -> (Run, Value) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Sequence::new(answers))
        .expect(expect.requests)
        .named(name)
        .mount(&server)
        .await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let mut args = seed_args(&[
        "--base-url",
        &base_url,
        "--count",
        "1",
        "--concurrency",
        "1",
        "--out",
        "out.txt",
    ]);
    args.extend_from_slice(extra);
    let started = Instant::now();
    let run = corpusgen(folder.path(), &args, &[("OPENAI_API_KEY", FAKE_KEY)]).await;
    let elapsed = started.elapsed();
    assert_eq!(run.code, expect.code, "{name}: {run:?}");
    assert!(
        elapsed >= expect.at_least,
        "{name}: took {elapsed:?}, the wait was {:?}",
        expect.at_least
    );
    assert!(
        run.stderr.contains(expect.says),
        "{name}: stderr lacks `{}`:\n{}",
        expect.says,
        run.stderr
    );
    let received = server.received_requests().await.unwrap().len() as u64;
    assert_eq!(received, expect.requests, "{name}: requests received");
    for file in ["out.jsonl", "out.manifest.json", "out.txt"] {
        if let Ok(text) = fs::read_to_string(folder.path().join(file)) {
            assert!(
                !text.contains(FAKE_KEY),
                "{name}: the key leaked into {file}"
            );
        }
    }
    let manifest = fs::read_to_string(folder.path().join("out.manifest.json"))
        .map(|text| serde_json::from_str(&text).unwrap())
        .unwrap_or(Value::Null);
    (run, manifest)
}

fn recovers(requests: u64) -> Expect {
    Expect {
        code: 0,
        requests,
        at_least: Duration::ZERO,
        says: "",
    }
}

fn refused(says: &'static str) -> Expect {
    Expect {
        code: 3,
        requests: 1,
        at_least: Duration::ZERO,
        says,
    }
}

#[tokio::test]
async fn rate_limits_wait_as_long_as_the_provider_asks() {
    let seconds = ResponseTemplate::new(429)
        .insert_header("retry-after", "1")
        .set_body_json(error_body("Rate limit reached", "rate_limit_exceeded"));
    let (_, manifest) = check(
        "429 Retry-After: 1",
        vec![seconds, ok()],
        &[],
        Expect {
            at_least: Duration::from_secs(1),
            ..recovers(2)
        },
    )
    .await;
    assert_eq!(manifest["totals"]["retries"], 1);
    assert!(
        manifest["totals"]["retry_wait_ms"].as_u64().unwrap() >= 1000,
        "{manifest}"
    );

    let millis = ResponseTemplate::new(429)
        .insert_header("retry-after-ms", "300")
        .set_body_json(error_body("Rate limit reached", "rate_limit_exceeded"));
    check(
        "429 retry-after-ms: 300",
        vec![millis, ok()],
        &[],
        Expect {
            at_least: Duration::from_millis(300),
            ..recovers(2)
        },
    )
    .await;

    // An HTTP date has whole seconds: two seconds ahead waits more than one.
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
    let dated = ResponseTemplate::new(429)
        .insert_header("retry-after", date.as_str())
        .set_body_json(error_body("Rate limit reached", "rate_limit_exceeded"));
    check(
        "429 Retry-After: HTTP date",
        vec![dated, ok()],
        &[],
        Expect {
            at_least: Duration::from_secs(1),
            ..recovers(2)
        },
    )
    .await;
}

#[tokio::test]
async fn an_exhausted_quota_is_final() {
    let quota = ResponseTemplate::new(429).set_body_json(error_body(
        "You exceeded your current quota",
        "insufficient_quota",
    ));
    check(
        "429 insufficient_quota",
        vec![quota],
        &[],
        refused("out of quota"),
    )
    .await;
}

#[tokio::test]
async fn transient_statuses_are_retried() {
    for code in [408, 409, 500, 502, 503, 504] {
        check(
            &format!("HTTP {code}"),
            vec![status(code, "try again"), ok()],
            &[],
            recovers(2),
        )
        .await;
    }
}

#[tokio::test]
async fn bodies_that_are_not_completions_are_retried() {
    let invalid =
        ResponseTemplate::new(200).set_body_string("{\"id\": \"chatcmpl-x\", \"choices\": [");
    check("invalid JSON", vec![invalid, ok()], &[], recovers(2)).await;
    let no_choices = ResponseTemplate::new(200)
        .set_body_json(json!({"id": "chatcmpl-x", "object": "chat.completion", "choices": []}));
    check(
        "JSON without choices",
        vec![no_choices, ok()],
        &[],
        recovers(2),
    )
    .await;
}

#[tokio::test]
async fn responses_that_must_not_count_are_journaled_and_resampled() {
    for (name, answer, reason) in [
        (
            "finish_reason length",
            with_text("A cut-off explan", "length"),
            "truncated",
        ),
        (
            "finish_reason content_filter",
            with_text("", "content_filter"),
            "content_filter",
        ),
        ("empty content", with_text("", "stop"), "empty"),
        (
            "text with the separator",
            with_text("one ^^^^ two", "stop"),
            "contains_separator",
        ),
    ] {
        let (_, manifest) = check(name, vec![answer, ok()], &[], recovers(2)).await;
        assert_eq!(
            manifest["totals"]["rejected"][reason], 1,
            "{name}: {manifest}"
        );
        assert_eq!(manifest["totals"]["responses_used"], 1, "{name}");
        assert_eq!(manifest["totals"]["responses_received"], 2, "{name}");
    }
}

#[tokio::test]
async fn permanent_client_errors_stop_the_job_at_once() {
    check(
        "HTTP 400",
        vec![status(400, "Invalid value for temperature")],
        &[],
        refused("Invalid value for temperature"),
    )
    .await;
    check(
        "HTTP 401",
        vec![status(401, "Incorrect API key provided")],
        &[],
        refused("check OPENAI_API_KEY"),
    )
    .await;
    check(
        "HTTP 403",
        vec![status(403, "Project does not have access")],
        &[],
        refused("check OPENAI_API_KEY"),
    )
    .await;
    check(
        "HTTP 404",
        vec![status(404, "The model does not exist")],
        &[],
        refused("check --model and --base-url"),
    )
    .await;
}

#[tokio::test]
async fn retries_end_at_max_retries_with_exit_4() {
    let answers = (0..3).map(|_| status(503, "overloaded")).collect();
    check(
        "HTTP 503 x3",
        answers,
        &["--max-retries", "2"],
        Expect {
            code: 4,
            requests: 3,
            at_least: Duration::from_millis(375 + 750),
            says: "gave up after 3 attempts",
        },
    )
    .await;
}

#[tokio::test]
async fn a_slow_provider_times_out_and_is_retried() {
    let slow = ok().set_delay(Duration::from_secs(3));
    check(
        "timeout",
        vec![slow.clone(), slow],
        &["--timeout", "0.3", "--max-retries", "1"],
        Expect {
            code: 4,
            requests: 2,
            at_least: Duration::from_millis(600),
            says: "did not answer in time",
        },
    )
    .await;
}

#[tokio::test]
async fn connection_resets_are_retried() {
    // A server that accepts every connection and closes it at once.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let server = tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(socket);
        }
    });
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("http://127.0.0.1:{port}/v1");
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--count",
            "1",
            "--max-retries",
            "2",
            "--out",
            "out.txt",
        ]),
        &[("OPENAI_API_KEY", FAKE_KEY)],
    )
    .await;
    server.abort();
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stderr.contains("gave up after 3 attempts"),
        "{}",
        run.stderr
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
}
