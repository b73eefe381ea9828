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
