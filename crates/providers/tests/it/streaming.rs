//! Streamed answers through every HTTP dialect: the text put together from the
//! chunks is the unstreamed text, usage comes from the final chunk, and a torn
//! stream or an error status is classified as it should be.

use corpusgen_core::{ChatResponse, ProviderError, ProviderErrorKind};
use corpusgen_providers::{Auth, Dialect};
use corpusgen_testkit::{error_body, seed_explanations};
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::support::{
    self, AZURE_TEST_KEY, OPENAI_TEST_KEY, RequestOptions, StreamShape, completion_answer,
    sse_answer, sse_body, stream_answer, stream_chunks, with_stream,
};

/// Every HTTP dialect, built for a mock server, with the path it posts to.
#[derive(Debug, Clone, Copy)]
enum Kind {
    OpenAi,
    Azure,
    Local,
}

const KINDS: [Kind; 3] = [Kind::OpenAi, Kind::Azure, Kind::Local];

impl Kind {
    fn dialect(self, server_uri: &str) -> Dialect {
        match self {
            Kind::OpenAi => Dialect::openai(
                "openai",
                &format!("{server_uri}/v1"),
                SecretString::from(OPENAI_TEST_KEY),
                "OPENAI_API_KEY",
            ),
            Kind::Azure => Dialect::azure(
                "azure",
                server_uri,
                "gpt-4o",
                corpusgen_providers::AZURE_DEFAULT_API_VERSION,
                Auth::ApiKey(SecretString::from(AZURE_TEST_KEY)),
                "AZURE_OPENAI_API_KEY",
            ),
            Kind::Local => Dialect::local("local", &format!("{server_uri}/v1"), None),
        }
    }

    fn path(self) -> &'static str {
        match self {
            Kind::OpenAi | Kind::Local => "/v1/chat/completions",
            Kind::Azure => "/openai/deployments/gpt-4o/chat/completions",
        }
    }
}

async fn complete(
    kind: Kind,
    stream: bool,
    answer: ResponseTemplate,
) -> Result<ChatResponse, ProviderError> {
    let exchange = support::exchange(
        |uri| with_stream(kind.dialect(uri), stream),
        kind.path(),
        &support::chat_request(RequestOptions::default()),
        answer,
    )
    .await;
    let sent_stream = exchange.body().get("stream").cloned();
    assert_eq!(sent_stream, stream.then_some(json!(true)), "{kind:?}");
    exchange.result
}

/// The same completion of `text` streamed and unstreamed gives the same
/// response: text, finish reason, usage, id and model.
async fn check_same_as_unstreamed(kind: Kind, text: &str) {
    let unstreamed = complete(kind, false, completion_answer(text))
        .await
        .unwrap();
    let streamed = complete(kind, true, stream_answer(text, StreamShape::OPENAI))
        .await
        .unwrap();
    assert_eq!(streamed.text, text, "{kind:?}");
    assert_eq!(streamed, unstreamed, "{kind:?}");
    assert_eq!(streamed.attempts, 1);
}

#[tokio::test]
async fn streamed_text_equals_unstreamed_text_with_multibyte_chars() {
    for kind in KINDS {
        check_same_as_unstreamed(kind, &support::multibyte_text()).await;
    }
}

#[tokio::test]
async fn streamed_text_equals_unstreamed_text_for_every_seed_explanation() {
    for text in seed_explanations() {
        check_same_as_unstreamed(Kind::OpenAi, &text).await;
    }
}

#[test]
fn the_test_stream_cuts_the_text_into_many_pieces_around_multibyte_chars() {
    // Guards the tests above: a text sent in one piece would prove nothing.
    let text = support::multibyte_text();
    let pieces = support::pieces_of(&text);
    assert!(pieces.len() > 30, "{} pieces", pieces.len());
    assert_eq!(pieces.concat(), text);
    let multibyte = |char: Option<char>| char.is_some_and(|char| char.len_utf8() > 1);
    let cuts_next_to_multibyte = pieces
        .windows(2)
        .filter(|pair| multibyte(pair[0].chars().last()) || multibyte(pair[1].chars().next()))
        .count();
    assert!(cuts_next_to_multibyte >= 5, "{pieces:?}");
    assert!(
        pieces
            .iter()
            .any(|piece| piece.chars().count() == 1 && multibyte(piece.chars().next())),
        "a piece is one multi-byte char alone: {pieces:?}"
    );
}

#[tokio::test]
async fn usage_comes_from_the_final_chunk() {
    let response = complete(
        Kind::OpenAi,
        true,
        stream_answer("DPO", StreamShape::OPENAI),
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::to_value(response.usage).unwrap(),
        support::test_usage()
    );
}

#[tokio::test]
async fn no_usage_when_the_server_sends_none() {
    let shape = StreamShape {
        usage_chunk: false,
        ..StreamShape::OPENAI
    };
    for kind in KINDS {
        let response = complete(kind, true, stream_answer("DPO é", shape))
            .await
            .unwrap();
        assert_eq!(
            (response.text.as_str(), response.usage),
            ("DPO é", None),
            "{kind:?}"
        );
        assert_eq!(response.finish_reason.as_deref(), Some("stop"));
    }
}

#[tokio::test]
async fn a_finish_reason_without_done_is_a_complete_answer() {
    let shape = StreamShape {
        done: false,
        usage_chunk: false,
        ..StreamShape::OPENAI
    };
    let response = complete(Kind::Local, true, stream_answer("DPO", shape))
        .await
        .unwrap();
    assert_eq!(response.text, "DPO");
}

#[tokio::test]
async fn the_finish_reason_length_is_kept() {
    let shape = StreamShape {
        finish_reason: Some("length"),
        ..StreamShape::OPENAI
    };
    let response = complete(Kind::OpenAi, true, stream_answer("DPO", shape))
        .await
        .unwrap();
    assert_eq!(response.finish_reason.as_deref(), Some("length"));
}

/// One row per broken stream: the SSE body in, a retryable `Malformed` out.
async fn check_malformed(body: String, message_has: &str) {
    for kind in KINDS {
        let err = complete(kind, true, sse_answer(body.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Malformed, "{kind:?}: {err}");
        assert!(err.kind.is_retryable());
        assert!(err.message.contains(message_has), "{kind:?}: {err}");
    }
}

#[tokio::test]
async fn a_stream_without_done_and_without_a_finish_reason_is_torn() {
    let shape = StreamShape {
        usage_chunk: false,
        done: false,
        finish_reason: None,
    };
    let body = sse_body(&stream_chunks(&support::multibyte_text(), shape), false);
    check_malformed(body, "stream ended before the answer was complete").await;
}

#[tokio::test]
async fn a_stream_cut_inside_an_event_is_torn() {
    let body = sse_body(
        &stream_chunks(&support::multibyte_text(), StreamShape::OPENAI),
        true,
    );
    let cut = body.find("finish_reason\":\"stop").unwrap();
    check_malformed(
        body[..cut].to_string(),
        "stream ended before the answer was complete",
    )
    .await;
}

#[tokio::test]
async fn a_chunk_that_is_not_json_is_malformed_and_not_quoted() {
    let mut chunks: Vec<String> = stream_chunks("DPO", StreamShape::OPENAI)
        .iter()
        .map(Value::to_string)
        .collect();
    chunks.insert(
        2,
        "{\"choices\": [{\"delta\": {\"content\": \"secret text".into(),
    );
    let body: String = chunks
        .iter()
        .map(|chunk| format!("data: {chunk}\n\n"))
        .collect();
    check_malformed(body.clone(), "not a chat completion chunk").await;
    let err = complete(Kind::OpenAi, true, sse_answer(body))
        .await
        .unwrap_err();
    assert!(!err.message.contains("secret text"), "{err}");
}

#[tokio::test]
async fn a_chunk_of_the_wrong_shape_is_malformed_and_not_quoted() {
    let body = format!(
        "data: {}\n\ndata: [DONE]\n\n",
        json!({"id": "x", "choices": "response text"})
    );
    check_malformed(body.clone(), "not a chat completion chunk").await;
    let err = complete(Kind::OpenAi, true, sse_answer(body))
        .await
        .unwrap_err();
    assert!(!err.message.contains("response text"), "{err}");
}

#[tokio::test]
async fn a_stream_with_no_choices_at_all_is_malformed() {
    check_malformed("data: [DONE]\n\n".to_string(), "no choices").await;
}

#[tokio::test]
async fn an_error_event_mid_stream_is_a_retryable_server_error() {
    let mut body = sse_body(&stream_chunks("DPO", StreamShape::OPENAI)[..2], false);
    body.push_str(&format!(
        "data: {}\n\n",
        json!({"error": {"message": "The server had an error while processing your request", "type": "server_error"}})
    ));
    let err = complete(Kind::OpenAi, true, sse_answer(body))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Server, "{err}");
    assert!(err.message.contains("The server had an error"), "{err}");
}

/// An error status is classified the same with and without streaming: the
/// same kind, the same message, the same wait.
async fn check_error_status_as_unstreamed(status: u16, body: Value, kind: ProviderErrorKind) {
    for dialect_kind in KINDS {
        let answer = || {
            ResponseTemplate::new(status)
                .set_body_json(body.clone())
                .insert_header("retry-after", "7")
        };
        let unstreamed = complete(dialect_kind, false, answer()).await.unwrap_err();
        let streamed = complete(dialect_kind, true, answer()).await.unwrap_err();
        assert_eq!(streamed, unstreamed, "{dialect_kind:?} HTTP {status}");
        assert_eq!(streamed.kind, kind, "{dialect_kind:?} HTTP {status}");
    }
}

#[tokio::test]
async fn error_statuses_are_classified_as_without_streaming() {
    let content_filter = json!({"error": {"message": "filtered", "code": "content_filter"}});
    let rows = [
        (
            400,
            error_body("Invalid value", "invalid_value"),
            ProviderErrorKind::BadRequest,
        ),
        (400, content_filter, ProviderErrorKind::ContentFilter),
        (
            401,
            error_body("Incorrect API key", "invalid_api_key"),
            ProviderErrorKind::Auth,
        ),
        (
            404,
            error_body("no such model", "model_not_found"),
            ProviderErrorKind::NotFound,
        ),
        (
            429,
            error_body("slow down", "rate_limit_exceeded"),
            ProviderErrorKind::RateLimited,
        ),
        (
            429,
            error_body("no credit", "insufficient_quota"),
            ProviderErrorKind::QuotaExhausted,
        ),
        (
            500,
            error_body("oops", "server_error"),
            ProviderErrorKind::Server,
        ),
        (503, json!("not json at all"), ProviderErrorKind::Server),
    ];
    for (status, body, kind) in rows {
        check_error_status_as_unstreamed(status, body, kind).await;
    }
}
