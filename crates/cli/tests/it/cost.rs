//! Cost and tokens: `--dry-run`, `--budget-usd`, `--target-tokens` and the
//! manifest's cost, against a mock OpenAI server that reports usage.

use std::fs;
use std::path::Path;

use corpusgen_core::tokens::{Encoding, TokenCounter};
use corpusgen_testkit::{Sequence, completions_of_lengths, text_of_chars};
use serde_json::Value;

use crate::support::{FAKE_KEY, corpusgen, openai_mock, seed_args, workspace_fixtures};

/// What one mocked call costs at gpt-4.1's built-in price: the testkit's
/// bodies report 40 prompt and 300 completion tokens, at 2 and 8 USD per
/// million.
const GPT41_CALL_USD: f64 = (40.0 * 2.0 + 300.0 * 8.0) / 1e6;

fn key() -> [(&'static str, &'static str); 1] {
    [("OPENAI_API_KEY", FAKE_KEY)]
}

fn manifest(folder: &Path, name: &str) -> Value {
    let text = fs::read_to_string(folder.join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() < 1e-9
}

#[tokio::test]
async fn a_dry_run_sends_nothing_writes_nothing_and_prints_the_plan() {
    let server = openai_mock(Sequence::of_bodies(Vec::new()), 0).await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--target-chars",
            "9164",
            "--budget-usd",
            "0.05",
            "--dry-run",
            "--out",
            "data/gpt41.txt",
        ]),
        &key(),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(fs::read_dir(folder.path()).unwrap().count(), 0);
    insta::with_settings!({filters => vec![(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:[port]")]}, {
        insta::assert_snapshot!("dry_run_plan", run.stdout);
    });
}

#[tokio::test]
async fn a_batch_dry_run_sizes_the_first_batch_and_prices_it_at_the_discount() {
    let server = openai_mock(Sequence::of_bodies(Vec::new()), 0).await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let plan_of = |extra: &'static [&'static str]| {
        let mut args = vec!["--base-url", &base_url, "--target-chars", "9164"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--dry-run", "--out", "data/gpt41.txt"]);
        seed_args(&args)
    };
    let online = corpusgen(folder.path(), &plan_of(&[]), &key()).await;
    let batch = corpusgen(
        folder.path(),
        &plan_of(&["--batch", "--batch-margin", "0.5"]),
        &key(),
    )
    .await;
    assert_eq!((online.code, batch.code), (0, 0), "{online:?} {batch:?}");
    assert_eq!(fs::read_dir(folder.path()).unwrap().count(), 0);
    let line = |stdout: &str, key: &str| -> String {
        stdout
            .lines()
            .find(|line| line.starts_with(key))
            .unwrap_or_else(|| panic!("no `{key}` line in {stdout}"))
            .to_string()
    };
    // 6 requests online; the first batch asks for 50% more, rounded up.
    assert!(line(&online.stdout, "requests:").contains("about 6 for 6"));
    assert!(line(&batch.stdout, "requests:").contains("about 9 in the first batch"));
    let usd = |line: String| -> f64 {
        line.split_whitespace()
            .find_map(|word| word.parse::<f64>().ok())
            .unwrap()
    };
    let online_cost = usd(line(&online.stdout, "cost:"));
    let batch_cost = usd(line(&batch.stdout, "cost:"));
    // 9 requests at half the price of 6: 0.75 of the online estimate.
    assert!(
        (batch_cost / online_cost - 0.75).abs() < 0.01,
        "{online_cost} {batch_cost}"
    );
    assert!(line(&batch.stdout, "cost:").contains("batch price"));
    // A count asks for exactly its responses, whatever the margin.
    let count = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--count",
            "3",
            "--batch",
            "--dry-run",
            "--out",
            "data/gpt41.txt",
        ]),
        &key(),
    )
    .await;
    assert_eq!(
        line(&count.stdout, "requests:"),
        "requests:    3 in the first batch for 3 responses; rejected ones go in a follow-up batch"
    );

    let fixtures = workspace_fixtures();
    let replay = corpusgen(
        folder.path(),
        &seed_args(&[
            "--provider",
            "replay",
            "--fixtures",
            &fixtures,
            "--count",
            "2",
            "--batch",
            "--dry-run",
            "--out",
            "x.txt",
        ]),
        &[],
    )
    .await;
    assert_eq!(replay.code, 2, "{replay:?}");
    assert!(
        replay
            .stderr
            .contains("--batch needs an openai or azure profile")
    );
}

#[tokio::test]
async fn a_dry_run_counts_the_journal_of_the_same_job() {
    // A first real run of three responses of 1000 chars...
    let server = openai_mock(
        Sequence::of_bodies(completions_of_lengths(&[1000, 1000, 1000])),
        3,
    )
    .await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let first = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--count",
            "3",
            "--out",
            "corpus.txt",
        ]),
        &key(),
    )
    .await;
    assert_eq!(first.code, 0, "{first:?}");
    // ...then a larger target's plan expects 1000 chars and 300 completion
    // tokens a response, and only the requests still missing.
    let plan = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--target-chars",
            "9164",
            "--dry-run",
            "--out",
            "corpus.txt",
        ]),
        &key(),
    )
    .await;
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stdout.contains(
            "per answer:  about 1000 chars, 300 tokens (the mean of the journal's 3 accepted responses)"
        ),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("requests:    about 7 for 7 responses"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("completion:  about 2100 tokens"),
        "{}",
        plan.stdout
    );

    // Another job on the same --out: its journal is not this job's.
    let other = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--temperature",
            "0.5",
            "--target-chars",
            "9164",
            "--dry-run",
            "--out",
            "corpus.txt",
        ]),
        &key(),
    )
    .await;
    assert_eq!(other.code, 0, "{other:?}");
    assert!(
        other.stdout.contains("belongs to another job")
            && other.stdout.contains("about 6 for 6 responses"),
        "{}",
        other.stdout
    );
}

#[tokio::test]
async fn a_dry_run_under_hipaa_still_refuses_a_profile_that_is_not_eligible() {
    let server = openai_mock(Sequence::of_bodies(Vec::new()), 0).await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--target-chars",
            "9164",
            "--hipaa",
            "--dry-run",
            "--out",
            "out.txt",
        ]),
        &key(),
    )
    .await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("--hipaa refuses"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[tokio::test]
async fn the_budget_stops_requests_and_the_manifest_says_so() {
    let server = openai_mock(Sequence::of_bodies(completions_of_lengths(&[1000; 10])), 4).await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let budget = 0.01;
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--target-chars",
            "9164",
            "--concurrency",
            "4",
            "--budget-usd",
            "0.01",
            "--out",
            "corpus.txt",
        ]),
        &key(),
    )
    .await;
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains("--budget-usd"), "{}", run.stderr);
    let manifest = manifest(folder.path(), "corpus.manifest.json");
    assert_eq!(manifest["stopped"], "budget");
    let cost = manifest["totals"]["cost_usd"].as_f64().unwrap();
    // Four calls fit, a fifth would pass the budget.
    assert!(close(cost, 4.0 * GPT41_CALL_USD), "{cost}");
    assert!(cost <= budget && cost + GPT41_CALL_USD > budget, "{cost}");
    assert_eq!(manifest["totals"]["responses_used"], 4);
    let corpus = fs::read_to_string(folder.path().join("corpus.txt")).unwrap();
    assert_eq!(corpus.split("^^^^").count(), 4);
    let journaled = fs::read_to_string(folder.path().join("corpus.jsonl"))
        .unwrap()
        .lines()
        .filter(|line| line.contains(r#""type":"response""#))
        .count();
    assert_eq!(journaled, 4);
}

#[tokio::test]
async fn a_job_stopped_for_budget_resumes_with_a_larger_one() {
    let server = openai_mock(Sequence::of_bodies(completions_of_lengths(&[1000; 10])), 5).await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let args = |budget: &'static str| {
        vec![
            "--base-url",
            &base_url,
            "--target-chars",
            "5000",
            "--concurrency",
            "1",
            "--budget-usd",
            budget,
            "--out",
            "corpus.txt",
        ]
    };
    // Three calls of 0.00248 USD fit in 0.009, a fourth would not.
    let stopped = corpusgen(folder.path(), &seed_args(&args("0.009")), &key()).await;
    assert_eq!(stopped.code, 5, "{stopped:?}");
    assert_eq!(
        manifest(folder.path(), "corpus.manifest.json")["totals"]["responses_used"],
        3
    );
    // The budget covers the whole job: the three calls already paid count.
    let resumed = corpusgen(folder.path(), &seed_args(&args("0.02")), &key()).await;
    assert_eq!(resumed.code, 0, "{resumed:?}");
    let manifest = manifest(folder.path(), "corpus.manifest.json");
    assert!(manifest["stopped"].is_null());
    assert_eq!(manifest["totals"]["responses_used"], 5);
    let cost = manifest["totals"]["cost_usd"].as_f64().unwrap();
    assert!(close(cost, 5.0 * GPT41_CALL_USD), "{cost}");
}

#[tokio::test]
async fn a_budget_without_a_price_is_refused_naming_the_prices_table() {
    let server = openai_mock(Sequence::of_bodies(Vec::new()), 0).await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--model",
            "mystery-model",
            "--count",
            "2",
            "--budget-usd",
            "1",
            "--out",
            "corpus.txt",
        ]),
        &key(),
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(r#"[prices."mystery-model"]"#),
        "{}",
        run.stderr
    );
}

/// The number of responses a token target keeps, recomputed from the texts
/// the mock sends: at-least stops at the first prefix reaching the target;
/// closest keeps whichever prefix around it has the joined tokens nearest.
/// Also the responses asked for: closest needs the one past the target to
/// decide.
fn expected_responses(
    counts: &[u64],
    target: u64,
    separator: u64,
    closest: bool,
) -> (usize, usize) {
    let mut sum = 0;
    for (position, count) in counts.iter().enumerate() {
        let previous = sum;
        sum += count;
        let joined = sum + separator * position as u64;
        if !closest && sum >= target {
            return (position + 1, position + 1);
        }
        if closest && joined >= target {
            if position == 0 {
                return (1, 1);
            }
            let shorter = previous + separator * (position as u64 - 1);
            let kept = if target - shorter < joined - target {
                position
            } else {
                position + 1
            };
            return (kept, position + 1);
        }
    }
    panic!("the texts do not reach the target")
}

async fn check_token_target(policy: &str) {
    let lengths = [1200, 700, 1500, 900, 1100, 1300, 800, 1000];
    let counter = TokenCounter::new(Encoding::O200kBase);
    let counts: Vec<u64> = lengths
        .iter()
        .enumerate()
        .map(|(salt, chars)| counter.count(&text_of_chars(*chars, salt)))
        .collect();
    let target = counts[..3].iter().sum::<u64>() + counts[3] / 2;
    let (expected, requested) =
        expected_responses(&counts, target, counter.count("^^^^"), policy == "closest");
    // The target lies half way into the fourth response: at-least keeps it,
    // closest drops it.
    assert_eq!(expected, if policy == "closest" { 3 } else { 4 });

    let server = openai_mock(
        Sequence::of_bodies(completions_of_lengths(&lengths)),
        requested as u64,
    )
    .await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let target_arg = target.to_string();
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--target-tokens",
            &target_arg,
            "--length-policy",
            policy,
            "--concurrency",
            "1",
            "--out",
            "corpus.txt",
        ]),
        &key(),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let corpus = fs::read_to_string(folder.path().join("corpus.txt")).unwrap();
    let kept: Vec<u64> = corpus
        .split("^^^^")
        .map(|response| counter.count(response))
        .collect();
    assert_eq!(kept, counts[..expected], "{policy}");
    let manifest = manifest(folder.path(), "corpus.manifest.json");
    assert_eq!(manifest["totals"]["token_encoding"], "o200k_base");
    assert_eq!(
        manifest["totals"]["response_tokens"],
        kept.iter().sum::<u64>()
    );
    assert_eq!(
        manifest["totals"]["target"],
        format!("{target} tokens (o200k_base)")
    );
}

#[tokio::test]
async fn target_tokens_at_least_stops_at_the_first_prefix_reaching_it() {
    check_token_target("at-least").await;
}

#[tokio::test]
async fn target_tokens_closest_keeps_the_nearest_prefix() {
    check_token_target("closest").await;
}

#[tokio::test]
async fn cost_is_usage_times_the_price_and_the_config_file_overrides_it() {
    for (config, expected_call, source) in [
        (None, GPT41_CALL_USD, "built-in table of 2026-12-03"),
        (
            Some("[prices.\"gpt-4.1\"]\ninput_per_mtok = 1.0\noutput_per_mtok = 4.0\n"),
            (40.0 * 1.0 + 300.0 * 4.0) / 1e6,
            "config file",
        ),
    ] {
        let server = openai_mock(
            Sequence::of_bodies(completions_of_lengths(&[1000, 1000, 1000])),
            3,
        )
        .await;
        let folder = tempfile::tempdir().unwrap();
        let base_url = format!("{}/v1", server.uri());
        let mut args = vec![
            "--base-url",
            &base_url,
            "--count",
            "3",
            "--out",
            "corpus.txt",
        ];
        if let Some(config) = config {
            fs::write(folder.path().join("prices.toml"), config).unwrap();
            args.extend(["--config", "prices.toml"]);
        }
        let run = corpusgen(folder.path(), &seed_args(&args), &key()).await;
        assert_eq!(run.code, 0, "{run:?}");
        let manifest = manifest(folder.path(), "corpus.manifest.json");
        let cost = manifest["totals"]["cost_usd"].as_f64().unwrap();
        assert!(close(cost, 3.0 * expected_call), "{cost} with {source}");
        assert_eq!(manifest["prices"]["source"], source);
        assert_eq!(manifest["prices"]["model"], "gpt-4.1");
        assert!(
            run.stdout
                .contains(&format!("cost: {:.4} USD", 3.0 * expected_call)),
            "{}",
            run.stdout
        );
    }
}

#[tokio::test]
async fn a_model_without_a_price_has_a_null_cost() {
    let server = openai_mock(Sequence::of_bodies(completions_of_lengths(&[1000])), 1).await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--model",
            "mystery-model",
            "--count",
            "1",
            "--out",
            "corpus.txt",
        ]),
        &key(),
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let manifest = manifest(folder.path(), "corpus.manifest.json");
    assert!(manifest["totals"]["cost_usd"].is_null());
    assert!(manifest["prices"].is_null());
    assert!(!run.stdout.contains("cost:"), "{}", run.stdout);
}
