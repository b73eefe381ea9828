//! The `local` provider against wiremock: an OpenAI-compatible server (Ollama,
//! llama.cpp, vLLM, LM Studio) with no key unless one is given.

use corpusgen_core::ProviderErrorKind;
use corpusgen_providers::{Dialect, HttpProvider, LOCAL_DEFAULT_BASE_URL, MaxTokensField};
use corpusgen_testkit::error_body;
use secrecy::SecretString;
use serde_json::json;
use wiremock::ResponseTemplate;

use crate::support::{
    self, Exchange, LOCAL_TEST_KEY, RequestOptions, StreamShape, completion_answer, stream_answer,
    with_stream,
};

const KEY_ENV: &str = "CORPUSGEN_LOCAL_API_KEY";

fn dialect(server_uri: &str, with_key: bool) -> Dialect {
    let key = with_key.then(|| (SecretString::from(LOCAL_TEST_KEY), KEY_ENV.to_string()));
    Dialect::local("local", &format!("{server_uri}/v1"), key)
}

async fn exchange(
    with_key: bool,
    stream: bool,
    options: RequestOptions,
    answer: ResponseTemplate,
) -> Exchange {
    support::exchange(
        |uri| with_stream(dialect(uri, with_key), stream),
        "/v1/chat/completions",
        &support::chat_request(options),
        answer,
    )
    .await
}

/// One row per (key, stream) pair: the request line, the headers (the
/// credential exactly as configured, or none at all) and the body snapshot.
async fn check_request(with_key: bool, stream: bool, snapshot: &str) {
    let text = "DPO is ...";
    let answer = if stream {
        stream_answer(text, StreamShape::OPENAI)
    } else {
        completion_answer(text)
    };
    let options = RequestOptions {
        system: true,
        max_tokens: Some(800),
        seed: Some(42),
    };
    let exchange = exchange(with_key, stream, options, answer).await;
    assert_eq!(exchange.result.as_ref().unwrap().text, text);
    assert_eq!(exchange.received.method.as_str(), "POST");
    assert_eq!(exchange.received.url.path(), "/v1/chat/completions");
    assert_eq!(exchange.received.url.query(), None);
    let bearer = format!("Bearer {LOCAL_TEST_KEY}");
    exchange.assert_credentials(with_key.then_some(bearer.as_str()), None);
    assert_eq!(
        exchange.header("content-type").as_deref(),
        Some("application/json")
    );
    insta::assert_json_snapshot!(snapshot, exchange.body());
}

#[tokio::test]
async fn without_a_key_no_credential_header_is_sent() {
    check_request(false, false, "local_body").await;
}

#[tokio::test]
async fn without_a_key_streamed() {
    check_request(false, true, "local_body_streamed").await;
}

#[tokio::test]
async fn with_a_key_it_is_a_bearer_token() {
    // The body does not depend on the key.
    check_request(true, false, "local_body").await;
}

#[tokio::test]
async fn with_a_key_streamed() {
    check_request(true, true, "local_body_streamed").await;
}

#[test]
fn the_default_base_url_is_ollamas_and_the_limit_is_max_tokens() {
    let dialect = Dialect::local("local", LOCAL_DEFAULT_BASE_URL, None);
    assert_eq!(dialect.url, "http://127.0.0.1:11434/v1/chat/completions");
    assert_eq!(dialect.max_tokens_field, MaxTokensField::MaxTokens);
    assert_eq!(dialect.key_env, None);
    HttpProvider::new(dialect, 1).unwrap();
}

#[tokio::test]
async fn a_llama_cpp_body_with_timings_and_without_usage_is_read() {
    let body = json!({
        "id": "chatcmpl-llama", "object": "chat.completion", "created": 1, "model": "qwen2.5-7b",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "DPO é β 🙂"}, "finish_reason": "stop"}],
        "timings": {"prompt_n": 20, "predicted_per_second": 50.0}
    });
    let answer = ResponseTemplate::new(200).set_body_json(body);
    let response = exchange(false, false, RequestOptions::default(), answer)
        .await
        .result
        .unwrap();
    assert_eq!(response.text, "DPO é β 🙂");
    assert_eq!(response.usage, None);
    assert_eq!(response.model.as_deref(), Some("qwen2.5-7b"));
}

#[tokio::test]
async fn a_server_that_ignores_stream_and_answers_json_is_read() {
    let exchange = exchange(
        false,
        true,
        RequestOptions::default(),
        completion_answer("DPO is ..."),
    )
    .await;
    assert_eq!(exchange.result.unwrap().text, "DPO is ...");
}

#[tokio::test]
async fn a_401_without_a_key_says_none_was_configured() {
    let answer = ResponseTemplate::new(401).set_body_json(error_body("unauthorized", "401"));
    let err = exchange(false, false, RequestOptions::default(), answer)
        .await
        .result
        .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Auth);
    assert!(err.message.contains("no key was configured"), "{err}");
}

#[tokio::test]
async fn a_401_with_a_key_names_its_env_var() {
    let answer = ResponseTemplate::new(401)
        .set_body_json(error_body(&format!("bad key {LOCAL_TEST_KEY}"), "401"));
    let err = exchange(true, false, RequestOptions::default(), answer)
        .await
        .result
        .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Auth);
    assert!(err.message.contains(KEY_ENV), "{err}");
    assert!(!err.message.contains(LOCAL_TEST_KEY), "{err}");
}

#[test]
fn a_key_that_cannot_be_a_header_fails_at_setup_and_names_its_env_var() {
    let key = Some((
        SecretString::from(format!("{LOCAL_TEST_KEY}\n")),
        KEY_ENV.to_string(),
    ));
    let err = HttpProvider::new(Dialect::local("local", LOCAL_DEFAULT_BASE_URL, key), 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(KEY_ENV) && err.contains("line breaks"),
        "{err}"
    );
    assert!(!err.contains(LOCAL_TEST_KEY), "{err}");
}
