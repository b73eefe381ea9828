//! Whole runs of `corpusgen generate` against a mock OpenAI server and the
//! replay provider: the seed's numbers, byte for byte.

use std::fs;

use corpusgen_testkit::{
    Sequence, completions_of_lengths, error_body, fixture_bodies, seed_explanations, workspace_root,
};
use wiremock::ResponseTemplate;

use crate::support::{FAKE_KEY, corpusgen, openai_mock, seed_args};

const SEED_GPT41_LENGTHS: [usize; 6] = [1710, 1419, 1899, 1839, 1663, 1484];

fn key() -> [(&'static str, &'static str); 1] {
    [("OPENAI_API_KEY", FAKE_KEY)]
}

#[tokio::test]
async fn the_seed_gpt41_run_gives_six_responses_and_10034_chars_over_http() {
    // More answers than needed: the run must stop after six by itself.
    let mut lengths = SEED_GPT41_LENGTHS.to_vec();
    lengths.extend([1500, 1500]);
    let server = openai_mock(Sequence::of_bodies(completions_of_lengths(&lengths)), 6).await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--target-chars",
            "9164",
            "--concurrency",
            "1",
            "--out",
            "data/gpt41.txt",
        ]),
        &key(),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("6 responses, 10034 chars (target 9164 chars)"),
        "{}",
        run.stdout
    );
    let corpus = fs::read_to_string(folder.path().join("data/gpt41.txt")).unwrap();
    assert_eq!(corpus.chars().count(), 10034);
    let lengths: Vec<usize> = corpus
        .split("^^^^")
        .map(|response| response.chars().count())
        .collect();
    assert_eq!(lengths, SEED_GPT41_LENGTHS);
    assert!(folder.path().join("data/gpt41.jsonl").exists());
    assert!(folder.path().join("data/gpt41.manifest.json").exists());
}

#[tokio::test]
async fn match_length_of_the_hand_curated_corpus_runs_the_same_job() {
    let server = openai_mock(
        Sequence::of_bodies(completions_of_lengths(&SEED_GPT41_LENGTHS)),
        6,
    )
    .await;
    let folder = tempfile::tempdir().unwrap();
    fs::write(
        folder.path().join("chatgpt.txt"),
        seed_explanations().join("^^^^"),
    )
    .unwrap();
    let base_url = format!("{}/v1", server.uri());
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--match-length",
            "chatgpt.txt",
            "--concurrency",
            "1",
            "--out",
            "gpt41.txt",
        ]),
        &key(),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("6 responses, 10034 chars (target 9164 chars (the length of chatgpt.txt))"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn the_hand_curated_fixtures_over_http_rebuild_the_seed_corpus_byte_for_byte() {
    let bodies = fixture_bodies(&workspace_root().join("fixtures/openai/dpo-chatgpt"));
    let server = openai_mock(Sequence::of_bodies(bodies), 10).await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--count",
            "10",
            "--concurrency",
            "1",
            "--out",
            "chatgpt.txt",
        ]),
        &key(),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let corpus = fs::read_to_string(folder.path().join("chatgpt.txt")).unwrap();
    assert_eq!(corpus, seed_explanations().join("^^^^"));
    assert_eq!(corpus.chars().count(), 9164);
}

#[tokio::test]
async fn the_replay_provider_rebuilds_the_seed_corpus_with_no_network() {
    let folder = tempfile::tempdir().unwrap();
    let fixtures = workspace_root().join("fixtures/openai/dpo-chatgpt");
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--provider",
            "replay",
            "--fixtures",
            fixtures.to_str().unwrap(),
            "--count",
            "10",
            "--out",
            "chatgpt.txt",
        ]),
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        fs::read_to_string(folder.path().join("chatgpt.txt")).unwrap(),
        seed_explanations().join("^^^^")
    );
}

#[tokio::test]
async fn fixtures_that_run_out_exit_4_and_keep_every_response() {
    let folder = tempfile::tempdir().unwrap();
    let fixtures = workspace_root().join("fixtures/openai/dpo-chatgpt");
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--provider",
            "replay",
            "--fixtures",
            fixtures.to_str().unwrap(),
            "--target-chars",
            "20000",
            "--out",
            "big.txt",
        ]),
        &[],
    )
    .await;
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stderr.contains("ran out before the target was met"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("run the same command again to resume"),
        "{}",
        run.stderr
    );
    assert!(!folder.path().join("big.txt").exists());
    let journal = fs::read_to_string(folder.path().join("big.jsonl")).unwrap();
    assert_eq!(
        journal
            .lines()
            .filter(|line| line.contains("\"status\":\"accepted\""))
            .count(),
        10
    );
}

#[tokio::test]
async fn a_401_exits_3_naming_the_variable_and_sends_once() {
    let answers = Sequence::new(vec![ResponseTemplate::new(401).set_body_json(error_body(
        &format!("Incorrect API key provided: {FAKE_KEY}"),
        "invalid_api_key",
    ))]);
    let server = openai_mock(answers, 1).await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--count",
            "3",
            "--concurrency",
            "1",
            "--out",
            "out.txt",
        ]),
        &key(),
    )
    .await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr.contains("check OPENAI_API_KEY"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn openai_base_url_comes_from_the_environment_when_no_flag_is_given() {
    let server = openai_mock(Sequence::of_bodies(completions_of_lengths(&[50])), 1).await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let run = corpusgen(
        folder.path(),
        &seed_args(&["--count", "1", "--out", "out.txt"]),
        &[("OPENAI_API_KEY", FAKE_KEY), ("OPENAI_BASE_URL", &base_url)],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
}

#[tokio::test]
async fn diversified_prompts_carry_their_variant_text() {
    let server = openai_mock(
        Sequence::of_bodies(completions_of_lengths(&[80, 80, 80, 80])),
        4,
    )
    .await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--diversify",
            "audience,format",
            "--seed",
            "3",
            "--count",
            "4",
            "--concurrency",
            "1",
            "--out",
            "out.txt",
        ]),
        &key(),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let journal = fs::read_to_string(folder.path().join("out.jsonl")).unwrap();
    let variants: Vec<String> = journal
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|record| record["variant"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(variants.len(), 4);
    for (request, variant) in server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .zip(&variants)
    {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let user = body["messages"][1]["content"].as_str().unwrap();
        let system = body["messages"][0]["content"].as_str().unwrap();
        assert!(
            user.starts_with("Explain DPO (Direct Preference Optimization) for "),
            "{user}"
        );
        for part in variant.split("; ") {
            let value = part.split_once('=').unwrap().1;
            assert!(user.contains(value), "{user} lacks {value}");
        }
        assert!(
            !system.contains("paragraph form"),
            "the format axis replaces it: {system}"
        );
        assert!(system.contains("written as"), "{system}");
    }
}

#[tokio::test]
async fn per_request_asks_for_several_explanations_in_one_call() {
    let texts = [
        "First explanation of DPO.",
        "Second, quite different.",
        "Third, with an analogy.",
    ];
    let reply = serde_json::json!({ "explanations": texts }).to_string();
    let server = openai_mock(
        Sequence::of_bodies([corpusgen_testkit::completion(&reply, "chatcmpl-k")]),
        1,
    )
    .await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--per-request",
            "3",
            "--count",
            "3",
            "--out",
            "out.txt",
        ]),
        &key(),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        fs::read_to_string(folder.path().join("out.txt")).unwrap(),
        texts.join("^^^^")
    );
    let body: serde_json::Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(body["response_format"]["json_schema"]["strict"], true);
    assert!(
        body["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("Give 3 different explanations")
    );
}
