//! `generate --record DIR`: a corpus recorded from a mock server, 429 and
//! stream included, replays byte for byte with no network; no fixture holds a
//! credential; `--hipaa`, replay and a used folder are refused before any
//! request. And the repo's recordings of a real local server replay.

use std::fs;
use std::path::{Path, PathBuf};

use corpusgen_testkit::{Sequence, completion, error_body, text_of_chars, workspace_root};
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::support::{FAKE_KEY, Run, corpusgen, openai_mock, seed_args};

const LENGTHS: [usize; 3] = [1000, 900, 800];

/// The `*.json` files of a folder in name order, parsed.
fn fixtures(folder: &Path) -> Vec<(PathBuf, Value)> {
    let mut paths: Vec<PathBuf> = fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
            (path, value)
        })
        .collect()
}

/// A streamed answer of `text` in pieces of about 50 chars, then a usage
/// chunk and `[DONE]`.
fn streamed(text: &str, id: &str) -> ResponseTemplate {
    let chunk = |delta: Value, finish_reason: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": 1_750_000_000,
               "model": "gpt-4.1-2025-04-14",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})
    };
    let chars: Vec<char> = text.chars().collect();
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for piece in chars.chunks(50) {
        let piece: String = piece.iter().collect();
        events.push(chunk(json!({"content": piece}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    events.push(
        json!({"id": id, "object": "chat.completion.chunk", "created": 1_750_000_000,
        "model": "gpt-4.1-2025-04-14", "choices": [],
        "usage": {"prompt_tokens": 40, "completion_tokens": 300, "total_tokens": 340}}),
    );
    let mut body: String = events
        .iter()
        .map(|event| format!("data: {event}\n\n"))
        .collect();
    body.push_str("data: [DONE]\n\n");
    ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
}

/// A 429 with headers a recording must keep and headers it must drop; its
/// message echoes the key, as a careless server might.
fn rate_limited() -> ResponseTemplate {
    ResponseTemplate::new(429)
        .set_body_json(error_body(
            &format!("Rate limit reached for key {FAKE_KEY}"),
            "rate_limit_exceeded",
        ))
        .insert_header("retry-after-ms", "20")
        .insert_header("x-request-id", "req-429")
        .insert_header("x-ratelimit-remaining-requests", "0")
        .insert_header("set-cookie", "__cf_bm=secret-cookie; path=/")
        .insert_header("openai-organization", "org-private")
}

async fn replay(folder: &Path, fixtures: &Path, stream: bool, out: &str) -> Run {
    let fixtures = fixtures.to_str().unwrap();
    let mut args = seed_args(&[
        "--provider",
        "replay",
        "--fixtures",
        fixtures,
        "--target-chars",
        "2500",
        "--seed",
        "5",
        "--out",
        out,
    ]);
    if stream {
        args.push("--stream");
    }
    corpusgen(folder, &args, &[]).await
}

#[tokio::test]
async fn a_recorded_corpus_replays_byte_for_byte_offline_and_holds_no_key() {
    for stream in [false, true] {
        let mut answers = vec![rate_limited()];
        for (position, chars) in LENGTHS.iter().enumerate() {
            let text = text_of_chars(*chars, position);
            let id = format!("chatcmpl-rec-{position}");
            answers.push(if stream {
                streamed(&text, &id)
            } else {
                ResponseTemplate::new(200).set_body_json(completion(&text, &id))
            });
        }
        // A 429, then three answers: 1000 + 900 + 800 reaches 2500.
        let server = openai_mock(Sequence::new(answers), 4).await;
        let folder = tempfile::tempdir().unwrap();
        let base_url = format!("{}/v1", server.uri());
        let mut args = seed_args(&[
            "--base-url",
            &base_url,
            "--target-chars",
            "2500",
            "--seed",
            "5",
            "--concurrency",
            "1",
            "--record",
            "recorded",
            "--out",
            "live.txt",
        ]);
        if stream {
            args.push("--stream");
        }
        let run = corpusgen(folder.path(), &args, &[("OPENAI_API_KEY", FAKE_KEY)]).await;
        assert_eq!(run.code, 0, "stream={stream}: {run:?}");
        server.verify().await;
        drop(server);

        let recorded = folder.path().join("recorded");
        let files = fixtures(&recorded);
        let names: Vec<String> = files
            .iter()
            .map(|(path, _)| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "0001-request-0.json",
                "0002-request-0.json",
                "0003-request-1.json",
                "0004-request-2.json"
            ],
            "stream={stream}"
        );
        let statuses: Vec<u64> = files
            .iter()
            .map(|(_, exchange)| exchange["response"]["status"].as_u64().unwrap())
            .collect();
        assert_eq!(statuses, [429, 200, 200, 200]);
        let (_, first) = &files[0];
        assert_eq!(
            first["response"]["headers"],
            json!({"content-type": "application/json", "retry-after-ms": "20",
                   "x-ratelimit-remaining-requests": "0", "x-request-id": "req-429"})
        );
        assert!(
            first["response"]["body"]["error"]["message"]
                .as_str()
                .unwrap()
                .ends_with("for key [redacted]"),
            "{first}"
        );
        for (path, exchange) in &files {
            let text = fs::read_to_string(path).unwrap();
            for secret in [
                FAKE_KEY,
                "Bearer",
                "authorization",
                "api-key",
                "cookie",
                "org-private",
            ] {
                assert!(
                    !text.to_lowercase().contains(&secret.to_lowercase()),
                    "{} holds {secret}: {text}",
                    path.display()
                );
            }
            assert_eq!(
                exchange["request"]["body"]["seed"],
                json!(5 + exchange["request"]["index"].as_i64().unwrap())
            );
            assert_eq!(
                exchange["request"]["body"].get("stream") == Some(&json!(true)),
                stream
            );
            if stream && exchange["response"]["status"] == 200 {
                assert!(
                    exchange["response"]["body"]
                        .as_str()
                        .unwrap()
                        .ends_with("data: [DONE]\n\n")
                );
            }
        }

        // Offline: the mock is gone and no key is set.
        let replayed = replay(folder.path(), &recorded, stream, "replayed.txt").await;
        assert_eq!(replayed.code, 0, "stream={stream}: {replayed:?}");
        let live = fs::read(folder.path().join("live.txt")).unwrap();
        assert_eq!(fs::read(folder.path().join("replayed.txt")).unwrap(), live);
        let manifest: Value = serde_json::from_str(
            &fs::read_to_string(folder.path().join("replayed.manifest.json")).unwrap(),
        )
        .unwrap();
        // The recorded 429 was served as a rate limit and retried.
        assert_eq!(manifest["totals"]["retries"], json!(1), "{manifest}");
        assert_eq!(manifest["totals"]["responses_used"], json!(3));
    }
}

#[tokio::test]
async fn record_under_hipaa_is_refused_before_any_request() {
    let server = openai_mock(Sequence::new(Vec::new()), 0).await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    // A local server on loopback is allowed under --hipaa; recording is not.
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--provider",
            "local",
            "--base-url",
            &base_url,
            "--count",
            "1",
            "--hipaa",
            "--record",
            "recorded",
            "--out",
            "out.txt",
        ]),
        &[],
    )
    .await;
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(
        run.stderr,
        "error: --hipaa refuses --record: fixtures would hold prompt and response text outside the job's protected outputs; record a job without protected data and without --hipaa\n"
    );
    assert!(!folder.path().join("recorded").exists());
    assert!(!folder.path().join("out.txt").exists());
}

#[tokio::test]
async fn a_dry_run_with_record_checks_the_folder_and_creates_nothing() {
    let server = openai_mock(Sequence::new(Vec::new()), 0).await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let args = |dir: &'static str| {
        vec![
            "generate".to_string(),
            "--topic".to_string(),
            "DPO".to_string(),
            "--provider".to_string(),
            "local".to_string(),
            "--base-url".to_string(),
            base_url.clone(),
            "--count".to_string(),
            "1".to_string(),
            "--record".to_string(),
            dir.to_string(),
            "--dry-run".to_string(),
            "--out".to_string(),
            "out.txt".to_string(),
        ]
    };
    let fresh: Vec<String> = args("recorded");
    let fresh: Vec<&str> = fresh.iter().map(String::as_str).collect();
    let run = corpusgen(folder.path(), &fresh, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(fs::read_dir(folder.path()).unwrap().count(), 0);

    fs::create_dir(folder.path().join("used")).unwrap();
    fs::write(folder.path().join("used/0001-request-0.json"), "{}").unwrap();
    // A job that cannot start (no key) leaves no recording folder behind.
    let no_key = corpusgen(
        folder.path(),
        &seed_args(&["--count", "1", "--record", "never", "--out", "out.txt"]),
        &[],
    )
    .await;
    assert_eq!(no_key.code, 2, "{no_key:?}");
    assert!(no_key.stderr.contains("OPENAI_API_KEY is not set"));
    assert!(!folder.path().join("never").exists());

    let used: Vec<String> = args("used");
    let used: Vec<&str> = used.iter().map(String::as_str).collect();
    let run = corpusgen(folder.path(), &used, &[]).await;
    assert_eq!(run.code, 2, "{run:?}");
}

#[tokio::test]
async fn recording_a_replay_or_into_a_used_folder_is_refused() {
    let server = openai_mock(Sequence::new(Vec::new()), 0).await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let seed_fixtures = workspace_root().join("fixtures/openai/dpo-chatgpt");
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--provider",
            "replay",
            "--fixtures",
            seed_fixtures.to_str().unwrap(),
            "--count",
            "1",
            "--record",
            "recorded",
            "--out",
            "out.txt",
        ]),
        &[],
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: --record cannot record the replay provider"),
        "{}",
        run.stderr
    );
    assert!(!folder.path().join("recorded").exists());

    fs::create_dir(folder.path().join("recorded")).unwrap();
    fs::write(folder.path().join("recorded/0001-request-0.json"), "{}").unwrap();
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--count",
            "1",
            "--record",
            "recorded",
            "--out",
            "out.txt",
        ]),
        &[("OPENAI_API_KEY", FAKE_KEY)],
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("is not empty; pass --record an empty or new folder"),
        "{}",
        run.stderr
    );
    assert_eq!(
        fs::read_to_string(folder.path().join("recorded/0001-request-0.json")).unwrap(),
        "{}"
    );
}

/// The texts a replay of a recorded folder must accept, in slot order: the
/// last answer recorded for each slot, when it is one that counts (a whole
/// answer that stopped by itself, not empty, without the separator).
fn accepted_texts(folder: &Path) -> Vec<String> {
    let mut by_slot: std::collections::BTreeMap<u64, Value> = Default::default();
    for (_, exchange) in fixtures(folder) {
        assert_eq!(exchange["format"], "corpusgen-exchange-1");
        by_slot.insert(
            exchange["request"]["index"].as_u64().unwrap(),
            exchange["response"].clone(),
        );
    }
    let slots: Vec<u64> = by_slot.keys().copied().collect();
    assert_eq!(slots, (0..slots.len() as u64).collect::<Vec<_>>());
    by_slot
        .values()
        .filter(|response| response["status"] == 200)
        .map(|response| &response["body"]["choices"][0])
        .filter(|choice| choice["finish_reason"] == "stop")
        .map(|choice| choice["message"]["content"].as_str().unwrap().to_string())
        .filter(|text| !text.trim().is_empty() && !text.contains("^^^^"))
        .collect()
}

#[tokio::test]
async fn the_committed_local_recordings_replay_the_seed_target_offline() {
    for (name, extra) in [
        ("dpo-smollm2", vec![]),
        ("dpo-smollm2-format", vec!["--diversify", "format"]),
    ] {
        let fixtures = workspace_root().join("fixtures/local").join(name);
        let fixtures_arg = fixtures.to_str().unwrap();
        let folder = tempfile::tempdir().unwrap();
        let mut args = seed_args(&[
            "--provider",
            "replay",
            "--fixtures",
            fixtures_arg,
            "--seed",
            "1",
            "--max-tokens",
            "700",
            "--target-chars",
            "9164",
            "--out",
            "replayed.txt",
        ]);
        args.extend_from_slice(&extra);
        let run = corpusgen(folder.path(), &args, &[]).await;
        assert_eq!(run.code, 0, "{name}: {run:?}");

        // The seed's rule, worked out here from the recorded bodies.
        let mut expected = Vec::new();
        let mut sum = 0;
        for text in accepted_texts(&fixtures) {
            if sum >= 9164 {
                break;
            }
            sum += text.chars().count();
            expected.push(text);
        }
        assert!(sum >= 9164, "{name}: the recording holds only {sum} chars");
        let corpus = fs::read_to_string(folder.path().join("replayed.txt")).unwrap();
        assert_eq!(corpus, expected.join("^^^^"), "{name}");
        assert!(
            run.stdout.contains(&format!(
                "{} responses, {} chars (target 9164 chars)",
                expected.len(),
                corpus.chars().count()
            )),
            "{name}: {}",
            run.stdout
        );
    }
}
