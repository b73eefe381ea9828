//! Test helpers shared by the crates' tests and `cargo xtask generate`: an
//! OpenAI-compatible wiremock server that answers from a list of response
//! bodies, the repo's fixtures, and deterministic texts of a given length.

pub mod batch;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Answers the n-th request with the n-th response, and every request past
/// the last with a 404 error body saying the fixtures ran out.
#[derive(Debug)]
pub struct Sequence {
    responses: Vec<ResponseTemplate>,
    next: AtomicUsize,
}

impl Sequence {
    pub fn new(responses: Vec<ResponseTemplate>) -> Sequence {
        Sequence {
            responses,
            next: AtomicUsize::new(0),
        }
    }

    /// Each body answered with status 200.
    pub fn of_bodies(bodies: impl IntoIterator<Item = Value>) -> Sequence {
        Sequence::new(
            bodies
                .into_iter()
                .map(|body| ResponseTemplate::new(200).set_body_json(body))
                .collect(),
        )
    }
}

impl Respond for Sequence {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let position = self.next.fetch_add(1, Ordering::SeqCst);
        self.responses.get(position).cloned().unwrap_or_else(|| {
            ResponseTemplate::new(404).set_body_json(error_body(
                "the mock server has no recorded response left",
                "fixtures_exhausted",
            ))
        })
    }
}

/// Starts a mock OpenAI server whose `POST /v1/chat/completions` answers with
/// `bodies` in order. The base URL to pass is `{server.uri()}/v1`.
pub async fn openai_server(bodies: Vec<Value>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Sequence::of_bodies(bodies))
        .mount(&server)
        .await;
    server
}

/// A Chat Completions response body with one choice.
pub fn completion(text: &str, id: &str) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": 1_750_000_000,
        "model": "gpt-4.1-2025-04-14",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 40, "completion_tokens": 300, "total_tokens": 340}
    })
}

/// An OpenAI error body.
pub fn error_body(message: &str, code: &str) -> Value {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}})
}

/// A deterministic text of exactly `chars` chars, different for each `salt`,
/// with some non-ASCII chars so that byte and char lengths differ.
pub fn text_of_chars(chars: usize, salt: usize) -> String {
    const WORDS: &[&str] = &[
        "preference",
        "optimization",
        "reference",
        "policy",
        "réponse",
        "model",
        "pairs",
        "loss",
        "β",
        "likelihood",
        "human",
        "feedback",
        "stable",
        "direct",
        "reward",
    ];
    let mut text = String::new();
    let mut position = salt;
    while text.chars().count() < chars {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(WORDS[position % WORDS.len()]);
        position = position.wrapping_mul(31).wrapping_add(7);
    }
    let mut exact: String = text.chars().take(chars).collect();
    // A trailing space would be trimmed by some readers; keep the length exact.
    if exact.ends_with(' ') {
        exact.pop();
        exact.push('x');
    }
    exact
}

/// Completion bodies whose texts have exactly these lengths.
pub fn completions_of_lengths(lengths: &[usize]) -> Vec<Value> {
    lengths
        .iter()
        .enumerate()
        .map(|(position, chars)| {
            completion(
                &text_of_chars(*chars, position),
                &format!("chatcmpl-test-{position}"),
            )
        })
        .collect()
}

/// The workspace root, wherever the caller's crate is.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the testkit crate sits two folders below the workspace root")
        .to_path_buf()
}

/// The response bodies of a fixtures folder, in file-name order.
pub fn fixture_bodies(folder: &Path) -> Vec<Value> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap_or_else(|err| {
            panic!(
                "cannot read the fixtures folder {}: {err}",
                folder.display()
            )
        })
        .map(|entry| entry.expect("a readable folder entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
            serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()))
        })
        .collect()
}

/// The seed's ten hand-curated explanations, from the repo's fixtures.
pub fn seed_explanations() -> Vec<String> {
    fixture_bodies(&workspace_root().join("fixtures/openai/dpo-chatgpt"))
        .iter()
        .map(|body| {
            body["choices"][0]["message"]["content"]
                .as_str()
                .expect("every seed fixture has text content")
                .to_string()
        })
        .collect()
}
