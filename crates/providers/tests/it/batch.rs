//! The batch engine client: where each call goes for each provider, how the
//! lines of a result file are read, and that keys never reach a message.

use corpusgen_core::ProviderErrorKind;
use corpusgen_core::batch::{BatchApi, BatchStatus};
use corpusgen_providers::{Auth, BatchClient, DEFAULT_TIMEOUT};
use corpusgen_testkit::{completion, error_body};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{AZURE_TEST_KEY, OPENAI_TEST_KEY};

fn openai(server: &MockServer) -> BatchClient {
    BatchClient::openai(
        "openai",
        &format!("{}/v1", server.uri()),
        SecretString::from(OPENAI_TEST_KEY),
        "OPENAI_API_KEY",
        DEFAULT_TIMEOUT,
    )
    .unwrap()
}

fn azure(server: &MockServer) -> BatchClient {
    BatchClient::azure(
        "azure",
        &server.uri(),
        "gpt-4o-batch",
        "2024-10-21",
        Auth::ApiKey(SecretString::from(AZURE_TEST_KEY)),
        "AZURE_OPENAI_API_KEY",
        DEFAULT_TIMEOUT,
    )
    .unwrap()
}

fn batch_object(status: &str) -> serde_json::Value {
    json!({
        "id": "batch_1", "object": "batch", "endpoint": "/chat/completions",
        "input_file_id": "file-in", "completion_window": "24h", "status": status,
        "output_file_id": "file-out", "error_file_id": null,
        "request_counts": {"total": 4, "completed": 3, "failed": 1}
    })
}

#[tokio::test]
async fn every_line_of_a_result_file_is_read_as_the_online_path_would() {
    let server = MockServer::start().await;
    let lines = [
        json!({"custom_id": "job-0-0", "response": {"status_code": 200, "body": completion("an answer", "chatcmpl-1")}, "error": null}),
        json!({"custom_id": "job-1-0", "response": {"status_code": 400, "body": error_body("bad", "invalid_request")}, "error": null}),
        json!({"custom_id": "job-2-0", "response": {"status_code": 500, "body": error_body("oops", "server_error")}, "error": null}),
        json!({"custom_id": "job-3-0", "response": null, "error": {"code": "batch_expired", "message": "not run in time"}}),
        json!({"custom_id": "job-4-0", "response": {"status_code": 400, "body": {"error": {"message": "filtered", "code": "content_filter"}}}, "error": null}),
    ];
    let file = lines.map(|line| line.to_string()).join("\n") + "\n";
    Mock::given(method("GET"))
        .and(path("/openai/files/file-out/content"))
        .and(query_param("api-version", "2024-10-21"))
        .and(header("api-key", AZURE_TEST_KEY))
        .respond_with(ResponseTemplate::new(200).set_body_string(file))
        .expect(1)
        .mount(&server)
        .await;
    let results = azure(&server).results("file-out").await.unwrap();
    let ids: Vec<&str> = results.iter().map(|line| line.custom_id.as_str()).collect();
    assert_eq!(ids, ["job-0-0", "job-1-0", "job-2-0", "job-3-0", "job-4-0"]);
    assert_eq!(results[0].result.as_ref().unwrap().text, "an answer");
    let kinds: Vec<ProviderErrorKind> = results[1..]
        .iter()
        .map(|line| line.result.as_ref().unwrap_err().kind)
        .collect();
    assert_eq!(
        kinds,
        [
            ProviderErrorKind::BadRequest,
            ProviderErrorKind::Server,
            ProviderErrorKind::Server,
            ProviderErrorKind::ContentFilter
        ]
    );
    assert!(
        results[3]
            .result
            .as_ref()
            .unwrap_err()
            .message
            .contains("batch_expired: not run in time")
    );
}

#[tokio::test]
async fn openai_calls_go_to_v1_files_and_batches_with_a_bearer_key() {
    let server = MockServer::start().await;
    let bearer = format!("Bearer {OPENAI_TEST_KEY}");
    Mock::given(method("POST"))
        .and(path("/v1/files"))
        .and(header("authorization", bearer.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "file-in"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/batches"))
        .and(wiremock::matchers::body_json(json!({
            "input_file_id": "file-in", "endpoint": "/v1/chat/completions", "completion_window": "24h"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(batch_object("validating")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/batches/batch_1/cancel"))
        .respond_with(ResponseTemplate::new(200).set_body_json(batch_object("cancelling")))
        .expect(1)
        .mount(&server)
        .await;
    let client = openai(&server);
    assert_eq!(client.upload(b"{}\n".to_vec()).await.unwrap(), "file-in");
    let created = client.create("file-in").await.unwrap();
    assert_eq!(created.status, BatchStatus::Validating);
    assert_eq!(created.counts.failed, 1);
    assert_eq!(created.output_file_id.as_deref(), Some("file-out"));
    let cancelled = client.cancel("batch_1").await.unwrap();
    assert_eq!(cancelled.status, BatchStatus::Cancelling);
}

#[tokio::test]
async fn a_key_echoed_by_the_batch_engine_is_scrubbed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/batches/batch_1"))
        .respond_with(ResponseTemplate::new(401).set_body_json(error_body(
            &format!("Incorrect API key provided: {OPENAI_TEST_KEY}"),
            "invalid_api_key",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let error = openai(&server).get("batch_1").await.unwrap_err();
    assert_eq!(error.kind, ProviderErrorKind::Auth);
    assert!(
        !error.message.contains(OPENAI_TEST_KEY),
        "{}",
        error.message
    );
    assert!(error.message.contains("[redacted]"), "{}", error.message);
}
