//! The `azure` provider against wiremock: the deployment URL and api-version,
//! `api-key` or Entra ID bearer auth, no `model` in the body, and Azure's
//! content filter.

use corpusgen_core::ProviderErrorKind;
use corpusgen_providers::{AZURE_DEFAULT_API_VERSION, Auth, Dialect, MaxTokensField};
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::support::{
    self, AZURE_TEST_KEY, AZURE_TEST_TOKEN, Exchange, RequestOptions, StreamShape,
    completion_answer, stream_answer, with_stream,
};

const DEPLOYMENT: &str = "gpt-4o-hipaa";
const DEPLOYMENT_PATH: &str = "/openai/deployments/gpt-4o-hipaa/chat/completions";
const KEY_ENV: &str = "AZURE_OPENAI_API_KEY";
const TOKEN_ENV: &str = "AZURE_OPENAI_AD_TOKEN";

/// The two ways to authenticate to Azure OpenAI.
#[derive(Debug, Clone, Copy)]
enum Credential {
    ApiKey,
    EntraToken,
}

fn dialect(server_uri: &str, credential: Credential) -> Dialect {
    let (auth, key_env) = match credential {
        Credential::ApiKey => (Auth::ApiKey(SecretString::from(AZURE_TEST_KEY)), KEY_ENV),
        Credential::EntraToken => (
            Auth::Bearer(SecretString::from(AZURE_TEST_TOKEN)),
            TOKEN_ENV,
        ),
    };
    // A trailing slash, as the Azure portal copies the endpoint.
    Dialect::azure(
        "azure",
        &format!("{server_uri}/"),
        DEPLOYMENT,
        AZURE_DEFAULT_API_VERSION,
        auth,
        key_env,
    )
}

async fn exchange(
    credential: Credential,
    stream: bool,
    options: RequestOptions,
    answer: ResponseTemplate,
) -> Exchange {
    support::exchange(
        |uri| with_stream(dialect(uri, credential), stream),
        DEPLOYMENT_PATH,
        &support::chat_request(options),
        answer,
    )
    .await
}

fn assert_credentials(exchange: &Exchange, credential: Credential) {
    match credential {
        Credential::ApiKey => exchange.assert_credentials(None, Some(AZURE_TEST_KEY)),
        Credential::EntraToken => {
            exchange.assert_credentials(Some(&format!("Bearer {AZURE_TEST_TOKEN}")), None);
        }
    }
}

/// One row per (credential, stream) pair: the request line, the headers and
/// the body snapshot.
async fn check_request(credential: Credential, stream: bool, snapshot: &str) {
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
    let exchange = exchange(credential, stream, options, answer).await;
    assert_eq!(exchange.result.as_ref().unwrap().text, text);
    assert_eq!(exchange.received.method.as_str(), "POST");
    assert_eq!(exchange.received.url.path(), DEPLOYMENT_PATH);
    assert_eq!(
        exchange.received.url.query(),
        Some("api-version=2024-10-21")
    );
    assert_credentials(&exchange, credential);
    assert_eq!(
        exchange.header("content-type").as_deref(),
        Some("application/json")
    );
    let body = exchange.body();
    assert_eq!(body.get("model"), None, "the deployment names the model");
    insta::assert_json_snapshot!(snapshot, body);
}

#[tokio::test]
async fn api_key_request() {
    check_request(Credential::ApiKey, false, "azure_body").await;
}

#[tokio::test]
async fn api_key_streamed_request() {
    check_request(Credential::ApiKey, true, "azure_body_streamed").await;
}

#[tokio::test]
async fn entra_token_request() {
    // The same body as with a key: only the credential header differs.
    check_request(Credential::EntraToken, false, "azure_body").await;
}

#[tokio::test]
async fn entra_token_streamed_request() {
    check_request(Credential::EntraToken, true, "azure_body_streamed").await;
}

#[test]
fn the_dialect_sends_max_tokens_and_no_stream_options() {
    let dialect = dialect("https://example.openai.azure.com", Credential::ApiKey);
    assert_eq!(dialect.max_tokens_field, MaxTokensField::MaxTokens);
    assert!(!dialect.model_in_body && !dialect.stream_include_usage);
    assert_eq!(
        dialect.url,
        "https://example.openai.azure.com/openai/deployments/gpt-4o-hipaa/chat/completions?api-version=2024-10-21"
    );
}

/// Azure's answer to a prompt its content filter blocks, as the service sends it.
fn content_filter_body(message: &str) -> Value {
    json!({"error": {
        "message": message,
        "type": null, "param": "prompt", "code": "content_filter", "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {
                "hate": {"filtered": false, "severity": "safe"},
                "jailbreak": {"filtered": false, "detected": false},
                "self_harm": {"filtered": false, "severity": "safe"},
                "sexual": {"filtered": false, "severity": "safe"},
                "violence": {"filtered": true, "severity": "medium"}
            }
        }
    }})
}

/// One row per failure: status and body in, kind and message parts out, for
/// both credentials; the message never holds a credential or `never_has`.
/// `{env}` in `message_has` stands for the credential's env var, `{secret}`
/// in the body's message for the credential itself.
async fn check_failure(
    status: u16,
    body: Value,
    kind: ProviderErrorKind,
    message_has: &[&str],
    never_has: &[&str],
) {
    for credential in [Credential::ApiKey, Credential::EntraToken] {
        let secret = match credential {
            Credential::ApiKey => AZURE_TEST_KEY,
            Credential::EntraToken => AZURE_TEST_TOKEN,
        };
        let body: Value =
            serde_json::from_str(&body.to_string().replace("{secret}", secret)).unwrap();
        let answer = ResponseTemplate::new(status).set_body_json(body);
        let exchange = exchange(credential, false, RequestOptions::default(), answer).await;
        let err = exchange.result.unwrap_err();
        assert_eq!(err.kind, kind, "HTTP {status}: {err}");
        let env = match credential {
            Credential::ApiKey => KEY_ENV,
            Credential::EntraToken => TOKEN_ENV,
        };
        for part in message_has {
            let part = part.replace("{env}", env);
            assert!(err.message.contains(&part), "`{err}` lacks `{part}`");
        }
        for part in never_has.iter().chain(&[AZURE_TEST_KEY, AZURE_TEST_TOKEN]) {
            assert!(!err.message.contains(part), "`{err}` holds `{part}`");
        }
    }
}

#[tokio::test]
async fn a_content_filter_400_is_content_filter_without_the_prompt() {
    // A message that quotes the prompt, as a server is free to do.
    let message = "The prompt 'Explain DPO (Direct Preference Optimization)' was filtered";
    check_failure(
        400,
        content_filter_body(message),
        ProviderErrorKind::ContentFilter,
        &["azure", "content filter", "HTTP 400", "flagged: violence"],
        &["Explain DPO", "was filtered"],
    )
    .await;
    let kind = ProviderErrorKind::ContentFilter;
    assert!(!kind.is_retryable() && !kind.is_refusal());
}

#[tokio::test]
async fn the_inner_code_alone_is_enough_for_content_filter() {
    let body = json!({"error": {
        "message": "blocked", "code": "invalid_request_error",
        "innererror": {"code": "ResponsibleAIPolicyViolation"}
    }});
    check_failure(
        400,
        body,
        ProviderErrorKind::ContentFilter,
        &["content filter"],
        &[],
    )
    .await;
}

#[tokio::test]
async fn the_schemas_spelling_of_the_inner_error_is_read_too() {
    // The published schema says `inner_error` and `content_filter_results`
    // where the service sends `innererror` and `content_filter_result`.
    let body = json!({"error": {
        "message": "blocked", "code": "invalid_request_error",
        "inner_error": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_results": {"self_harm": {"filtered": true, "severity": "high"}}
        }
    }});
    check_failure(
        400,
        body,
        ProviderErrorKind::ContentFilter,
        &["flagged: self_harm"],
        &[],
    )
    .await;
}

#[tokio::test]
async fn a_400_that_is_not_the_content_filter_stays_a_bad_request() {
    let body =
        json!({"error": {"message": "Invalid value for 'temperature'", "code": "invalid_value"}});
    check_failure(
        400,
        body,
        ProviderErrorKind::BadRequest,
        &["HTTP 400", "Invalid value for 'temperature'"],
        &[],
    )
    .await;
}

#[tokio::test]
async fn a_401_names_the_env_var_of_the_credential_and_never_the_credential() {
    // Azure's own message, with the credential echoed to prove the scrubbing.
    let message = "Access denied due to invalid subscription key or token {secret}";
    let body = json!({"error": {"code": "401", "message": message}});
    check_failure(
        401,
        body,
        ProviderErrorKind::Auth,
        &["azure", "HTTP 401", "check {env}", "[redacted]"],
        &[],
    )
    .await;
}

#[tokio::test]
async fn a_403_names_the_env_var_too() {
    let body =
        json!({"error": {"code": "PermissionDenied", "message": "Principal does not have access"}});
    check_failure(
        403,
        body,
        ProviderErrorKind::Auth,
        &["HTTP 403", "check {env}"],
        &[],
    )
    .await;
}

#[tokio::test]
async fn finish_reason_content_filter_on_a_200_is_a_normal_response() {
    // Azure cut the answer short; core decides what to do with it.
    let mut body = corpusgen_testkit::completion("DPO is", "chatcmpl-azure");
    body["choices"][0]["finish_reason"] = json!("content_filter");
    body["prompt_filter_results"] = json!([{"prompt_index": 0, "content_filter_results": {}}]);
    let answer = ResponseTemplate::new(200).set_body_json(body);
    let exchange = exchange(Credential::ApiKey, false, RequestOptions::default(), answer).await;
    let response = exchange.result.unwrap();
    assert_eq!(response.text, "DPO is");
    assert_eq!(response.finish_reason.as_deref(), Some("content_filter"));
}

#[tokio::test]
async fn a_streamed_answer_skips_azures_prompt_filter_chunk() {
    // Azure streams the prompt filter results first, in a chunk with no
    // choices and an empty id and model, and no usage at 2024-10-21.
    let prompt_filter_chunk = json!({
        "id": "", "object": "", "created": 0, "model": "", "choices": [],
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]
    });
    let shape = StreamShape {
        usage_chunk: false,
        ..StreamShape::OPENAI
    };
    let mut chunks = vec![prompt_filter_chunk];
    chunks.extend(support::stream_chunks(&support::multibyte_text(), shape));
    let answer = support::sse_answer(support::sse_body(&chunks, true));
    let exchange = exchange(Credential::ApiKey, true, RequestOptions::default(), answer).await;
    let response = exchange.result.unwrap();
    assert_eq!(response.text, support::multibyte_text());
    assert_eq!(response.response_id.as_deref(), Some(support::RESPONSE_ID));
    assert_eq!(response.model.as_deref(), Some(support::RESPONSE_MODEL));
    assert_eq!(response.usage, None);
}
