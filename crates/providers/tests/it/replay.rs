//! The replay provider over the repo's fixtures.

use corpusgen_core::{ChatProvider, ChatRequest, ProviderErrorKind};
use corpusgen_providers::{ReplayError, ReplayProvider};
use corpusgen_testkit::{seed_explanations, workspace_root};

fn any_request(index: u64) -> ChatRequest {
    ChatRequest {
        index,
        resample: 0,
        model: "gpt-4.1".into(),
        messages: Vec::new(),
        temperature: 1.0,
        max_tokens: None,
        seed: None,
        variant: None,
        explanations: 1,
    }
}

#[tokio::test]
async fn answers_the_seed_fixtures_in_file_order_then_runs_out() {
    let folder = workspace_root().join("fixtures/openai/dpo-chatgpt");
    let replay = ReplayProvider::from_folder("replay", &folder).unwrap();
    assert_eq!(replay.len(), 10);
    let mut texts = Vec::new();
    for index in 0..10 {
        texts.push(replay.complete(&any_request(index)).await.unwrap().text);
    }
    assert_eq!(texts, seed_explanations());
    let err = replay.complete(&any_request(10)).await.unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::FixturesExhausted);
    assert!(err.message.contains("10 recorded responses"), "{err}");
    assert!(!err.kind.is_retryable() && !err.kind.is_refusal());
}

#[test]
fn a_missing_or_empty_folder_says_what_to_pass() {
    let missing =
        ReplayProvider::from_folder("replay", std::path::Path::new("/no/such/folder")).unwrap_err();
    assert!(matches!(missing, ReplayError::Folder { .. }));
    assert!(missing.to_string().contains("--fixtures DIR"), "{missing}");
    let empty = tempfile_dir();
    let err = ReplayProvider::from_folder("replay", empty.path()).unwrap_err();
    assert!(
        err.to_string().contains("holds no .json responses"),
        "{err}"
    );
}

#[test]
fn a_fixture_that_is_not_a_completion_names_its_file() {
    let folder = tempfile_dir();
    std::fs::write(folder.path().join("01.json"), "{\"hello\": 1}").unwrap();
    let err = ReplayProvider::from_folder("replay", folder.path()).unwrap_err();
    assert!(err.to_string().contains("01.json"), "{err}");
}

fn tempfile_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Every kind of answer, recorded through the HTTP provider and replayed,
/// gives what the HTTP provider gave: the same response, or the same error
/// with the same kind, message and wait.
#[tokio::test]
async fn every_recorded_answer_replays_as_the_http_provider_read_it() {
    use std::sync::Arc;

    use corpusgen_providers::{Dialect, HttpProvider, Recorder};
    use corpusgen_testkit::{Sequence, error_body};
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use crate::support::{self, StreamShape};

    for stream in [false, true] {
        let answers = vec![
            ResponseTemplate::new(429)
                .set_body_json(error_body("slow down", "rate_limit_exceeded"))
                .insert_header("retry-after-ms", "250"),
            ResponseTemplate::new(429).set_body_json(error_body("no credit", "insufficient_quota")),
            ResponseTemplate::new(503).set_body_string("upstream unavailable"),
            ResponseTemplate::new(404)
                .set_body_json(error_body("no such model", "model_not_found")),
            ResponseTemplate::new(200).set_body_string("not json at all"),
            support::completion_answer("A whole answer, even when a stream was asked for.")
                .insert_header("x-ratelimit-remaining-requests", "41"),
            support::stream_answer(&support::multibyte_text(), StreamShape::OPENAI)
                .insert_header("x-ratelimit-remaining-tokens", "9000"),
        ];
        let count = answers.len();
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(Sequence::new(answers))
            .expect(count as u64)
            .mount(&server)
            .await;
        let folder = tempfile_dir();
        let recorder = Arc::new(Recorder::create(&folder.path().join("recorded")).unwrap());
        let dialect = support::with_stream(
            Dialect::local("local", &format!("{}/v1", server.uri()), None),
            stream,
        );
        let live = HttpProvider::new(dialect, 1)
            .unwrap()
            .with_recorder(recorder.clone());
        let mut live_results = Vec::new();
        for index in 0..count as u64 {
            live_results.push(live.complete(&any_request(index)).await);
        }
        assert_eq!(recorder.failure(), None);
        let replay = ReplayProvider::from_folder("local", recorder.folder()).unwrap();
        assert_eq!(replay.len(), count);
        let mut replayed = Vec::new();
        for index in 0..count as u64 {
            replayed.push(replay.complete(&any_request(index)).await);
        }
        assert_eq!(replayed, live_results, "stream={stream}");
        // The rows cover what they are meant to: an error of each sort, a
        // whole answer and, when asked for, a streamed one.
        let kinds: Vec<_> = live_results
            .iter()
            .map(|result| result.as_ref().err().map(|err| err.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                Some(ProviderErrorKind::RateLimited),
                Some(ProviderErrorKind::QuotaExhausted),
                Some(ProviderErrorKind::Server),
                Some(ProviderErrorKind::NotFound),
                Some(ProviderErrorKind::Malformed),
                None,
                // A stream body read as one JSON body does not parse.
                if stream {
                    None
                } else {
                    Some(ProviderErrorKind::Malformed)
                },
            ]
        );
        assert_eq!(
            live_results[0].as_ref().unwrap_err().retry_after,
            Some(std::time::Duration::from_millis(250))
        );
        if stream {
            assert_eq!(
                live_results[6].as_ref().unwrap().text,
                support::multibyte_text()
            );
        }
    }
}

#[tokio::test]
async fn exchanges_are_served_by_request_and_a_broken_one_names_its_file() {
    let folder = tempfile_dir();
    let exchange = |index: u64, text: &str| {
        serde_json::json!({
            "format": "corpusgen-exchange-1",
            "request": {"index": index, "resample": 0, "body": {"messages": []}},
            "response": {"status": 200, "headers": {"content-type": "application/json"},
                         "body": corpusgen_testkit::completion(text, "chatcmpl-x")}
        })
        .to_string()
    };
    // By name `10000-` would sort before `9999-`; by number it comes after.
    std::fs::write(
        folder.path().join("9999-request-0.json"),
        exchange(0, "first"),
    )
    .unwrap();
    std::fs::write(
        folder.path().join("10000-request-1.json"),
        exchange(1, "second"),
    )
    .unwrap();
    let replay = ReplayProvider::from_folder("replay", folder.path()).unwrap();
    assert_eq!(replay.len(), 2);
    // Exchanges are served by request slot, whatever order the slots are
    // asked in; a slot with no exchange left is told so.
    let mut texts = Vec::new();
    for index in [1, 0] {
        texts.push(replay.complete(&any_request(index)).await.unwrap().text);
    }
    assert_eq!(texts, ["second", "first"]);
    let err = replay.complete(&any_request(0)).await.unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::FixturesExhausted);
    assert!(
        err.message
            .contains("no exchange left for request 0 (resample 0)"),
        "{err}"
    );

    std::fs::write(
        folder.path().join("10001-request-2.json"),
        r#"{"format": "corpusgen-exchange-1", "request": {}}"#,
    )
    .unwrap();
    let err = ReplayProvider::from_folder("replay", folder.path()).unwrap_err();
    assert!(
        err.to_string().contains("10001-request-2.json")
            && err.to_string().contains("record it again"),
        "{err}"
    );
}
