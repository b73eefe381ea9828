//! Helpers shared by the HTTP tests: requests, mock exchanges, header checks
//! and streamed (Server-Sent Events) answers built from a completion.

use corpusgen_core::{ChatMessage, ChatProvider, ChatRequest, ChatResponse, ProviderError, Role};
use corpusgen_providers::{Dialect, HttpProvider};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// Recognisable credentials, so a test can prove they never leak. None looks
/// like a real key of its provider.
pub const OPENAI_TEST_KEY: &str = "sk-test-corpusgen-0123456789";
pub const AZURE_TEST_KEY: &str = "azure-test-key-corpusgen-0123456789";
pub const AZURE_TEST_TOKEN: &str = "entra-test-token-corpusgen-0123456789";
pub const LOCAL_TEST_KEY: &str = "local-test-key-corpusgen-0123456789";

/// The response id and model of every answer built here.
pub const RESPONSE_ID: &str = "chatcmpl-test-1";
pub const RESPONSE_MODEL: &str = "gpt-4.1-2025-04-14";

/// The options a request body can vary in.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestOptions {
    pub system: bool,
    pub max_tokens: Option<u32>,
    pub seed: Option<i64>,
}

pub fn chat_request(options: RequestOptions) -> ChatRequest {
    let mut messages = Vec::new();
    if options.system {
        messages.push(ChatMessage {
            role: Role::System,
            content: "You are a teacher.".into(),
        });
    }
    messages.push(ChatMessage {
        role: Role::User,
        content: "Explain DPO (Direct Preference Optimization)".into(),
    });
    ChatRequest {
        index: 0,
        resample: 0,
        model: "gpt-4.1".into(),
        messages,
        temperature: 1.0,
        max_tokens: options.max_tokens,
        seed: options.seed,
        variant: None,
        explanations: 1,
    }
}

/// Every combination of system prompt, seed and token limit.
pub fn request_matrix() -> Vec<RequestOptions> {
    let mut matrix = Vec::new();
    for system in [false, true] {
        for seed in [None, Some(42)] {
            for max_tokens in [None, Some(800)] {
                matrix.push(RequestOptions {
                    system,
                    max_tokens,
                    seed,
                });
            }
        }
    }
    matrix
}

pub fn with_stream(mut dialect: Dialect, stream: bool) -> Dialect {
    dialect.stream = stream;
    dialect
}

/// What one exchange with a mock server produced.
#[derive(Debug)]
pub struct Exchange {
    pub result: Result<ChatResponse, ProviderError>,
    /// The one request the server received.
    pub received: Request,
}

impl Exchange {
    pub fn header(&self, name: &str) -> Option<String> {
        self.received
            .headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_string())
    }

    pub fn body(&self) -> Value {
        serde_json::from_slice(&self.received.body).unwrap()
    }

    /// The credential headers, exactly: `authorization` and `api-key` each
    /// present with the given value, or absent.
    pub fn assert_credentials(&self, authorization: Option<&str>, api_key: Option<&str>) {
        assert_eq!(self.header("authorization").as_deref(), authorization);
        assert_eq!(self.header("api-key").as_deref(), api_key);
    }
}

/// Sends `chat` through the dialect `make_dialect` builds for the server's
/// base URI, to a mock that answers `answer` on `POST {mock_path}` exactly once.
pub async fn exchange(
    make_dialect: impl FnOnce(&str) -> Dialect,
    mock_path: &str,
    chat: &ChatRequest,
    answer: ResponseTemplate,
) -> Exchange {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(mock_path))
        .respond_with(answer)
        .expect(1)
        .mount(&server)
        .await;
    let provider = HttpProvider::new(make_dialect(&server.uri()), 1).unwrap();
    let result = provider.complete(chat).await;
    let mut received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1, "exactly one request is sent");
    Exchange {
        result,
        received: received.remove(0),
    }
}

/// A whole (unstreamed) completion of `text`, with usage.
pub fn completion_answer(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(corpusgen_testkit::completion(text, RESPONSE_ID))
}

/// How a streamed answer is built.
#[derive(Debug, Clone, Copy)]
pub struct StreamShape {
    /// A last chunk with no choices and the usage, as `include_usage` asks.
    pub usage_chunk: bool,
    /// `data: [DONE]` at the end.
    pub done: bool,
    pub finish_reason: Option<&'static str>,
}

impl StreamShape {
    pub const OPENAI: StreamShape = StreamShape {
        usage_chunk: true,
        done: true,
        finish_reason: Some("stop"),
    };
}

/// The usage of `corpusgen_testkit::completion`, so that a streamed answer
/// and the unstreamed one are the same response.
pub fn test_usage() -> Value {
    json!({"prompt_tokens": 40, "completion_tokens": 300, "total_tokens": 340})
}

/// `text` cut into pieces whose lengths in chars cycle through a pattern, so
/// that cuts fall before, between and after multi-byte chars.
pub fn pieces_of(text: &str) -> Vec<String> {
    const PIECE_CHARS: &[usize] = &[1, 3, 2, 7, 1, 1, 5, 13, 4, 2];
    let chars: Vec<char> = text.chars().collect();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut pattern = PIECE_CHARS.iter().cycle();
    while start < chars.len() {
        let end = (start + pattern.next().unwrap()).min(chars.len());
        pieces.push(chars[start..end].iter().collect());
        start = end;
    }
    pieces
}

/// The chunks OpenAI streams for a completion of `text`: a first chunk with
/// the role, one chunk per piece, the finish reason in a chunk of its own,
/// then (with `include_usage`) the usage in a chunk with no choices.
pub fn stream_chunks(text: &str, shape: StreamShape) -> Vec<Value> {
    let usage_null = if shape.usage_chunk {
        json!({"usage": null})
    } else {
        json!({})
    };
    let chunk = |choices: Value| {
        let mut chunk = json!({
            "id": RESPONSE_ID, "object": "chat.completion.chunk", "created": 1_750_000_000,
            "model": RESPONSE_MODEL, "system_fingerprint": "fp_test", "choices": choices
        });
        chunk
            .as_object_mut()
            .unwrap()
            .extend(usage_null.as_object().unwrap().clone());
        chunk
    };
    let mut chunks = vec![chunk(json!([{
        "index": 0, "delta": {"role": "assistant", "content": "", "refusal": null},
        "logprobs": null, "finish_reason": null
    }]))];
    for piece in pieces_of(text) {
        chunks.push(chunk(json!([{
            "index": 0, "delta": {"content": piece}, "logprobs": null, "finish_reason": null
        }])));
    }
    if let Some(finish_reason) = shape.finish_reason {
        chunks.push(chunk(json!([{
            "index": 0, "delta": {}, "logprobs": null, "finish_reason": finish_reason
        }])));
    }
    if shape.usage_chunk {
        let mut last = chunk(json!([]));
        last["usage"] = test_usage();
        chunks.push(last);
    }
    chunks
}

/// The Server-Sent Events body of `chunks`.
pub fn sse_body(chunks: &[Value], done: bool) -> String {
    let mut body = String::new();
    for chunk in chunks {
        body.push_str(&format!("data: {chunk}\n\n"));
    }
    if done {
        body.push_str("data: [DONE]\n\n");
    }
    body
}

pub fn stream_answer(text: &str, shape: StreamShape) -> ResponseTemplate {
    sse_answer(sse_body(&stream_chunks(text, shape), shape.done))
}

pub fn sse_answer(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
}

/// A text with chars of two, three and four UTF-8 bytes.
pub fn multibyte_text() -> String {
    "DPO optimise la politique π directement: β contrôle l'écart à la référence 🙂. \
     Ça évite le modèle de récompense — simple, stable, «efficace» 🚀!\n\nÉtape 2: ∑ log σ(β·Δ)."
        .to_string()
}
