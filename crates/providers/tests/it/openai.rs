//! The `openai` provider against wiremock: what it sends, how it reads
//! answers and how it classifies failures.

use corpusgen_core::{ChatProvider, ChatRequest, ProviderErrorKind};
use corpusgen_providers::{Dialect, HttpProvider};
use corpusgen_testkit::error_body;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{
    self, OPENAI_TEST_KEY as TEST_KEY, RequestOptions, StreamShape, completion_answer,
    stream_answer, with_stream,
};

fn dialect(server_uri: &str) -> Dialect {
    Dialect::openai(
        "openai",
        &format!("{server_uri}/v1"),
        SecretString::from(TEST_KEY),
        "OPENAI_API_KEY",
    )
}

fn provider(server: &MockServer) -> HttpProvider {
    HttpProvider::new(dialect(&server.uri()), 4).unwrap()
}

fn request(system: bool, max_tokens: Option<u32>, seed: Option<i64>) -> ChatRequest {
    support::chat_request(RequestOptions {
        system,
        max_tokens,
        seed,
    })
}

/// Sends one request to a mock that answers `answer`, and returns the
/// provider's result with the one request the mock received.
async fn exchange(
    chat: ChatRequest,
    answer: ResponseTemplate,
) -> (
    Result<corpusgen_core::ChatResponse, corpusgen_core::ProviderError>,
    wiremock::Request,
) {
    let exchange = support::exchange(dialect, "/v1/chat/completions", &chat, answer).await;
    (exchange.result, exchange.received)
}

fn ok() -> ResponseTemplate {
    completion_answer("DPO is ...")
}

#[tokio::test]
async fn a_streamed_request_asks_for_usage_and_sends_the_same_headers() {
    let exchange = support::exchange(
        |uri| with_stream(dialect(uri), true),
        "/v1/chat/completions",
        &request(true, Some(800), Some(42)),
        stream_answer("DPO is ...", StreamShape::OPENAI),
    )
    .await;
    assert_eq!(exchange.result.as_ref().unwrap().text, "DPO is ...");
    assert_eq!(exchange.received.method.as_str(), "POST");
    assert_eq!(exchange.received.url.query(), None);
    exchange.assert_credentials(Some(&format!("Bearer {TEST_KEY}")), None);
    assert_eq!(
        exchange.header("content-type").as_deref(),
        Some("application/json")
    );
    insta::assert_json_snapshot!("body_streamed", exchange.body());
}

#[tokio::test]
async fn sends_bearer_auth_json_and_the_body_without_nulls() {
    let (result, received) = exchange(request(true, None, None), ok()).await;
    assert_eq!(result.unwrap().text, "DPO is ...");
    assert_eq!(received.method.as_str(), "POST");
    assert_eq!(received.url.path(), "/v1/chat/completions");
    assert_eq!(received.url.query(), None);
    let header = |name: &str| {
        received
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(header("authorization"), Some(format!("Bearer {TEST_KEY}")));
    assert_eq!(header("api-key"), None);
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert!(header("user-agent").unwrap().starts_with("corpusgen/"));
    let body: Value = serde_json::from_slice(&received.body).unwrap();
    insta::assert_json_snapshot!("body_with_system", body);
}

#[tokio::test]
async fn request_bodies_for_each_option() {
    for (name, chat) in [
        ("body_without_system", request(false, None, None)),
        (
            "body_with_max_tokens_and_seed",
            request(true, Some(800), Some(42)),
        ),
    ] {
        let (result, received) = exchange(chat, ok()).await;
        result.unwrap();
        let body: Value = serde_json::from_slice(&received.body).unwrap();
        assert!(
            !received.body.windows(4).any(|window| window == b"null"),
            "{name}: no field is sent as null"
        );
        insta::assert_json_snapshot!(name, body);
    }
}

#[tokio::test]
async fn reads_usage_finish_reason_id_and_model() {
    let (result, _) = exchange(request(true, None, None), ok()).await;
    let response = result.unwrap();
    assert_eq!(response.finish_reason.as_deref(), Some("stop"));
    assert_eq!(response.response_id.as_deref(), Some(support::RESPONSE_ID));
    assert_eq!(response.model.as_deref(), Some("gpt-4.1-2025-04-14"));
    assert_eq!(response.usage.map(|usage| usage.total_tokens), Some(340));
}

#[tokio::test]
async fn tolerates_bodies_without_optional_fields_and_with_extra_ones() {
    let body = json!({
        "id": "x", "object": "chat.completion", "created": 1, "model": "local",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "timings": {"predicted_per_second": 50.0}
    });
    let (result, _) = exchange(
        request(false, None, None),
        ResponseTemplate::new(200).set_body_json(body),
    )
    .await;
    let response = result.unwrap();
    assert_eq!((response.text.as_str(), response.usage), ("hi", None));
}

/// One row per failure: status and body in, kind and message out.
async fn check_failure(status: u16, body: Value, kind: ProviderErrorKind, message_has: &[&str]) {
    let (result, _) = exchange(
        request(true, None, None),
        ResponseTemplate::new(status).set_body_json(body),
    )
    .await;
    let err = result.unwrap_err();
    assert_eq!(err.kind, kind, "HTTP {status}: {err}");
    for part in message_has {
        assert!(
            err.message.contains(part),
            "HTTP {status}: `{}` lacks `{part}`",
            err.message
        );
    }
    assert!(
        !err.message.contains(TEST_KEY),
        "the key leaked into: {}",
        err.message
    );
}

#[tokio::test]
async fn a_401_is_an_auth_refusal_that_names_the_env_var_and_never_the_key() {
    let echoed = format!("Incorrect API key provided: {TEST_KEY}.");
    check_failure(
        401,
        error_body(&echoed, "invalid_api_key"),
        ProviderErrorKind::Auth,
        &["openai", "HTTP 401", "OPENAI_API_KEY", "[redacted]"],
    )
    .await;
    assert!(ProviderErrorKind::Auth.is_refusal() && !ProviderErrorKind::Auth.is_retryable());
}

#[tokio::test]
async fn a_400_is_a_bad_request_with_the_providers_message() {
    check_failure(
        400,
        error_body("Invalid value for 'temperature'", "invalid_value"),
        ProviderErrorKind::BadRequest,
        &["HTTP 400", "Invalid value for 'temperature'"],
    )
    .await;
    assert!(
        ProviderErrorKind::BadRequest.is_refusal() && !ProviderErrorKind::BadRequest.is_retryable()
    );
}

#[tokio::test]
async fn a_500_is_a_retryable_server_error() {
    check_failure(
        500,
        error_body("The server had an error", "server_error"),
        ProviderErrorKind::Server,
        &["HTTP 500", "The server had an error"],
    )
    .await;
    assert!(ProviderErrorKind::Server.is_retryable() && !ProviderErrorKind::Server.is_refusal());
}

#[tokio::test]
async fn a_body_without_choices_is_malformed() {
    let (result, _) = exchange(
        request(true, None, None),
        ResponseTemplate::new(200).set_body_json(json!({"id": "x", "choices": []})),
    )
    .await;
    assert_eq!(result.unwrap_err().kind, ProviderErrorKind::Malformed);
}

#[tokio::test]
async fn no_server_is_a_connect_error() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dialect = Dialect::openai(
        "openai",
        &format!("http://127.0.0.1:{port}/v1"),
        SecretString::from(TEST_KEY),
        "OPENAI_API_KEY",
    );
    let provider = HttpProvider::new(dialect, 1).unwrap();
    let err = provider
        .complete(&request(true, None, None))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Connect, "{err}");
}

#[tokio::test]
async fn the_request_matches_a_header_matcher_for_the_mock_server() {
    // The same request through wiremock's own header matcher, so that a
    // changed header name fails here, not only in the snapshot above.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header(
            "authorization",
            format!("Bearer {TEST_KEY}").as_str(),
        ))
        .respond_with(ok())
        .expect(1)
        .mount(&server)
        .await;
    provider(&server)
        .complete(&request(true, None, None))
        .await
        .unwrap();
}
