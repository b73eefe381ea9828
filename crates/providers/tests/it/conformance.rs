//! Conformance with the providers' published schemas (`fixtures/specs/`):
//! every request body the dialects build validates closed-world, so a field
//! the API does not know fails here rather than at the provider; recorded
//! responses and streamed chunks validate too, while the parser stays
//! tolerant of what real servers leave out or add.

use std::path::{Path, PathBuf};

use corpusgen_core::ProviderErrorKind;
use corpusgen_providers::{Auth, Dialect, HttpProvider};
use corpusgen_testkit::workspace_root;
use jsonschema::{Draft, Registry, Validator};
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::support::{self, AZURE_TEST_KEY, OPENAI_TEST_KEY, RequestOptions, StreamShape};

const OPENAI_SPEC: &str = "openai-chat-completions.schema.json";
const AZURE_SPEC: &str = "azure-openai-2024-10-21-chat-completions.schema.json";

/// A validator for one `#/components/schemas/{root}` of a spec file. With
/// `closed`, the top level admits no property the schema does not evaluate:
/// `unevaluatedProperties` sees through the `$ref` and its `allOf`s, so a
/// misspelled field fails.
fn validator(spec_file: &str, root: &str, closed: bool) -> Validator {
    let path = workspace_root().join("fixtures/specs").join(spec_file);
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // Any URI names the resource; `.invalid` and `offline()` make sure none
    // is ever fetched.
    let uri = format!("https://corpusgen.invalid/specs/{spec_file}");
    let registry = Registry::new()
        .draft(Draft::Draft202012)
        .add(&uri, spec)
        .unwrap()
        .prepare()
        .unwrap();
    let mut wrapper = json!({"$ref": format!("{uri}#/components/schemas/{root}")});
    if closed {
        wrapper["unevaluatedProperties"] = json!(false);
    }
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .with_registry(&registry)
        .offline()
        .build(&wrapper)
        .unwrap_or_else(|err| panic!("cannot build a validator for {root}: {err}"))
}

fn openai_request_validator() -> Validator {
    validator(OPENAI_SPEC, "CreateChatCompletionRequest", true)
}

fn azure_request_validator() -> Validator {
    validator(AZURE_SPEC, "createChatCompletionRequest", true)
}

/// The schema's complaints about `instance`, one line each; empty if valid.
fn errors(validator: &Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|err| format!("{} at {}", err, err.instance_path()))
        .collect()
}

fn openai_provider(stream: bool) -> HttpProvider {
    let dialect = Dialect::openai(
        "openai",
        "https://api.openai.com/v1",
        SecretString::from(OPENAI_TEST_KEY),
        "OPENAI_API_KEY",
    );
    HttpProvider::new(support::with_stream(dialect, stream), 1).unwrap()
}

fn azure_provider(stream: bool) -> HttpProvider {
    let dialect = Dialect::azure(
        "azure",
        "https://example.openai.azure.com",
        "gpt-4o",
        corpusgen_providers::AZURE_DEFAULT_API_VERSION,
        Auth::ApiKey(SecretString::from(AZURE_TEST_KEY)),
        "AZURE_OPENAI_API_KEY",
    );
    HttpProvider::new(support::with_stream(dialect, stream), 1).unwrap()
}

/// Every body `make_provider` builds for the request matrix, streamed and
/// not, validates; returns how many bodies were checked.
fn check_every_body(validator: &Validator, make_provider: fn(bool) -> HttpProvider) -> usize {
    let mut checked = 0;
    for stream in [false, true] {
        let provider = make_provider(stream);
        for options in support::request_matrix() {
            let body = provider.body(&support::chat_request(options));
            let complaints = errors(validator, &body);
            assert!(
                complaints.is_empty(),
                "{options:?} stream={stream}: {body}\n{complaints:#?}"
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn every_openai_request_body_validates_closed_world() {
    let validator = openai_request_validator();
    assert_eq!(check_every_body(&validator, openai_provider), 16);
}

#[test]
fn every_azure_request_body_validates_closed_world() {
    let validator = azure_request_validator();
    assert_eq!(check_every_body(&validator, azure_provider), 16);
}

#[test]
fn the_matrix_covers_every_option_that_changes_the_body() {
    // Guards the two tests above: each option shows in some body.
    let provider = openai_provider(true);
    let bodies: Vec<Value> = support::request_matrix()
        .into_iter()
        .map(|options| provider.body(&support::chat_request(options)))
        .collect();
    for field in ["seed", "max_completion_tokens", "stream", "stream_options"] {
        assert!(
            bodies.iter().any(|body| body.get(field).is_some()),
            "{field}"
        );
    }
    assert!(
        bodies
            .iter()
            .any(|body| body["messages"][0]["role"] == "system")
    );
}

/// One row per body the schemas must refuse: which validator, what to change
/// in a valid body, and the property the complaint names.
fn check_refused(validator: &Validator, mut body: Value, change: fn(&mut Value), names: &str) {
    assert!(errors(validator, &body).is_empty(), "the body starts valid");
    change(&mut body);
    let complaints = errors(validator, &body);
    assert!(
        complaints.iter().any(|complaint| complaint.contains(names)),
        "{body} is refused for `{names}`: {complaints:#?}"
    );
}

#[test]
fn a_misspelled_or_unknown_field_fails_validation() {
    let chat = support::chat_request(RequestOptions::default());
    let openai = openai_request_validator();
    let azure = azure_request_validator();
    let openai_body = openai_provider(false).body(&chat);
    let azure_body = azure_provider(false).body(&chat);
    let misspell = |body: &mut Value| {
        let temperature = body.as_object_mut().unwrap().remove("temperature").unwrap();
        body["temprature"] = temperature;
    };
    check_refused(&openai, openai_body.clone(), misspell, "temprature");
    check_refused(&azure, azure_body.clone(), misspell, "temprature");
    // Azure's schema has no `model`: the deployment in the URL names it.
    check_refused(
        &azure,
        azure_body.clone(),
        |body| body["model"] = json!("gpt-4o"),
        "model",
    );
    // Nor `stream_options`, at 2024-10-21: why the Azure dialect leaves it out.
    check_refused(
        &azure,
        azure_body,
        |body| {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        },
        "stream_options",
    );
    // A wrong type fails too, not only an unknown name.
    check_refused(
        &openai,
        openai_body,
        |body| body["temperature"] = json!("hot"),
        "hot",
    );
}

/// Every `*.json` under `folder`, at any depth.
fn json_files(folder: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(json_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "json") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// What a fixture file holds for the schemas: a bare response body, or a
/// recorded exchange (`--record`) with its request body and, for a success,
/// its response body or the chunks of its streamed body.
enum FixtureBodies {
    Response(Value),
    Exchange {
        request: Value,
        response: Option<Value>,
        chunks: Vec<Value>,
    },
}

fn fixture_bodies(file: &Path) -> FixtureBodies {
    let value: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    if value["format"] != "corpusgen-exchange-1" {
        return FixtureBodies::Response(value);
    }
    let success = (200..300).contains(&value["response"]["status"].as_u64().unwrap());
    let body = &value["response"]["body"];
    let chunks = match body.as_str() {
        Some(events) if success => events
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .filter(|data| *data != "[DONE]")
            .map(|data| serde_json::from_str(data).unwrap())
            .collect(),
        _ => Vec::new(),
    };
    FixtureBodies::Exchange {
        request: value["request"]["body"].clone(),
        response: (success && body.is_object()).then(|| body.clone()),
        chunks,
    }
}

/// What llama.cpp's `llama-server` leaves out of a response that the OpenAI
/// schema requires: `choices[].logprobs` (when none were asked for) and
/// `choices[].message.refusal`. The parser does not need either.
const LLAMA_SERVER_OMITS: &[&str] = &[
    "\"logprobs\" is a required property",
    "\"refusal\" is a required property",
];

/// Checks every fixture under `folder` against the OpenAI schemas: response
/// bodies and streamed chunks open-world (servers add fields), recorded
/// request bodies closed-world. A complaint that starts with one of
/// `tolerated` is let through. Returns how many responses were checked.
fn check_fixtures(folder: &Path, tolerated: &[&str]) -> usize {
    let response = validator(OPENAI_SPEC, "CreateChatCompletionResponse", false);
    let chunk = validator(OPENAI_SPEC, "CreateChatCompletionStreamResponse", false);
    let request = openai_request_validator();
    let mut responses = 0;
    for file in json_files(folder) {
        let (request_body, response_body, chunks) = match fixture_bodies(&file) {
            FixtureBodies::Response(body) => (None, Some(body), Vec::new()),
            FixtureBodies::Exchange {
                request,
                response,
                chunks,
            } => (Some(request), response, chunks),
        };
        let mut complaints = Vec::new();
        if let Some(body) = &request_body {
            complaints.extend(errors(&request, body));
        }
        if let Some(body) = &response_body {
            complaints.extend(errors(&response, body));
            responses += 1;
        }
        for body in &chunks {
            complaints.extend(errors(&chunk, body));
        }
        responses += usize::from(!chunks.is_empty());
        complaints.retain(|complaint| !tolerated.iter().any(|known| complaint.starts_with(known)));
        assert!(complaints.is_empty(), "{}: {complaints:#?}", file.display());
    }
    responses
}

#[test]
fn every_openai_fixture_validates_as_a_response() {
    let responses = check_fixtures(&workspace_root().join("fixtures/openai"), &[]);
    assert!(responses >= 10, "{responses}");
}

#[test]
fn every_recorded_local_exchange_validates() {
    for folder in ["dpo-smollm2", "dpo-smollm2-format"] {
        let responses = check_fixtures(
            &workspace_root().join("fixtures/local").join(folder),
            LLAMA_SERVER_OMITS,
        );
        assert!(responses >= 6, "{folder}: {responses}");
    }
}

#[test]
fn the_test_completion_validates_as_a_response_of_both_apis() {
    let body = corpusgen_testkit::completion("DPO is ...", support::RESPONSE_ID);
    for (spec, root) in [
        (OPENAI_SPEC, "CreateChatCompletionResponse"),
        (AZURE_SPEC, "createChatCompletionResponse"),
    ] {
        let complaints = errors(&validator(spec, root, false), &body);
        assert!(complaints.is_empty(), "{root}: {complaints:#?}");
    }
}

#[test]
fn every_streamed_test_chunk_validates_as_a_stream_response() {
    let openai = validator(OPENAI_SPEC, "CreateChatCompletionStreamResponse", false);
    let azure = validator(AZURE_SPEC, "createChatCompletionStreamResponse", false);
    let chunks = support::stream_chunks(&support::multibyte_text(), StreamShape::OPENAI);
    assert!(chunks.last().unwrap()["usage"].is_object(), "a usage chunk");
    for chunk in &chunks {
        let complaints = errors(&openai, chunk);
        assert!(complaints.is_empty(), "{chunk}: {complaints:#?}");
        let complaints = errors(&azure, chunk);
        assert!(complaints.is_empty(), "azure: {chunk}: {complaints:#?}");
    }
}

/// One row per body a real server sends that the schema may refuse: the
/// parser reads the text all the same.
async fn check_tolerated(body: Value, schema_valid: bool) {
    let validator = validator(OPENAI_SPEC, "CreateChatCompletionResponse", false);
    assert_eq!(
        errors(&validator, &body).is_empty(),
        schema_valid,
        "{body} is schema-valid: {schema_valid}"
    );
    let exchange = support::exchange(
        |uri| Dialect::local("local", &format!("{uri}/v1"), None),
        "/v1/chat/completions",
        &support::chat_request(RequestOptions::default()),
        ResponseTemplate::new(200).set_body_json(body.clone()),
    )
    .await;
    let response = exchange
        .result
        .unwrap_or_else(|err| panic!("{body}: {err}"));
    assert_eq!(response.text, "DPO is ...", "{body}");
}

/// The test completion with `change` applied.
fn completion_with(change: impl FnOnce(&mut Value)) -> Value {
    let mut body = corpusgen_testkit::completion("DPO is ...", support::RESPONSE_ID);
    change(&mut body);
    body
}

#[tokio::test]
async fn the_parser_accepts_bodies_without_required_or_optional_fields_and_with_extra_ones() {
    let remove = |body: &mut Value, pointer: &str, field: &str| {
        body.pointer_mut(pointer)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(field)
            .unwrap();
    };
    // The schema marks `refusal` and `logprobs` required: servers omit them.
    check_tolerated(
        completion_with(|body| remove(body, "/choices/0/message", "refusal")),
        false,
    )
    .await;
    check_tolerated(
        completion_with(|body| remove(body, "/choices/0", "logprobs")),
        false,
    )
    .await;
    check_tolerated(
        completion_with(|body| {
            body.as_object_mut().unwrap().remove("system_fingerprint");
        }),
        true,
    )
    .await;
    check_tolerated(completion_with(|body| remove(body, "", "usage")), true).await;
    // llama.cpp's `timings`, vLLM's `prompt_logprobs`: the schema is open there.
    check_tolerated(
        completion_with(|body| {
            body["timings"] = json!({"prompt_n": 20, "predicted_per_second": 50.0});
            body["prompt_logprobs"] = Value::Null;
        }),
        true,
    )
    .await;
}

#[tokio::test]
async fn a_body_that_is_not_a_completion_is_still_malformed() {
    let exchange = support::exchange(
        |uri| Dialect::local("local", &format!("{uri}/v1"), None),
        "/v1/chat/completions",
        &support::chat_request(RequestOptions::default()),
        ResponseTemplate::new(200).set_body_json(json!({"choices": "response text"})),
    )
    .await;
    let err = exchange.result.unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Malformed);
    assert!(!err.message.contains("response text"), "{err}");
}

/// The body of a `--per-request` call. The jsonschema crate (0.61) reports
/// a closed-world failure for a full body with this `response_format`, while
/// Python's jsonschema 4.26 finds the same body valid against the same file;
/// so the body is checked closed-world without `response_format`, and
/// `response_format` on its own against `ResponseFormatJsonSchema`.
#[test]
fn a_per_request_body_asks_for_strict_json_and_validates_for_both_apis() {
    let mut request = support::chat_request(RequestOptions {
        system: true,
        max_tokens: Some(4000),
        seed: Some(1),
    });
    request.explanations = 3;
    // Azure's 2024-10-21 document lists `type` as required inside
    // `json_schema` without defining it, which OpenAI's format (and Azure's
    // service) do not have; that one complaint is expected, no other.
    let azure_quirk = vec!["\"type\" is a required property at /json_schema".to_string()];
    for (mut body, closed, format, expected) in [
        (
            openai_provider(false).body(&request),
            openai_request_validator(),
            validator(OPENAI_SPEC, "ResponseFormatJsonSchema", false),
            Vec::new(),
        ),
        (
            azure_provider(false).body(&request),
            azure_request_validator(),
            validator(AZURE_SPEC, "ResponseFormatJsonSchema", false),
            azure_quirk,
        ),
    ] {
        let response_format = body
            .as_object_mut()
            .unwrap()
            .remove("response_format")
            .unwrap();
        assert_eq!(errors(&closed, &body), Vec::<String>::new());
        assert_eq!(errors(&format, &response_format), expected);
    }
    insta::assert_json_snapshot!(
        "per_request_response_format",
        openai_provider(false).body(&request)["response_format"]
    );
    // One explanation per call sends no response_format at all.
    request.explanations = 1;
    assert!(
        openai_provider(false)
            .body(&request)
            .get("response_format")
            .is_none()
    );
}
