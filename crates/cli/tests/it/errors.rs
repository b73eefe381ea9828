//! Bad input: exit code 2 and one sentence that says what to fix.

use crate::support::{FAKE_KEY, corpusgen, seed_args};

/// Runs a bad invocation and checks its exit code and that stderr says `says`.
async fn check(args: &[&str], env: &[(&str, &str)], code: i32, says: &str) {
    let folder = tempfile::tempdir().unwrap();
    let run = corpusgen(folder.path(), args, env).await;
    assert_eq!(run.code, code, "{args:?}: {run:?}");
    assert!(
        run.stderr.contains(says),
        "{args:?}: stderr lacks `{says}`:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
        "{run:?}"
    );
    assert!(
        !folder.path().join("out.jsonl").exists(),
        "{args:?}: nothing may be written"
    );
}

const KEY: &[(&str, &str)] = &[("OPENAI_API_KEY", FAKE_KEY)];

#[tokio::test]
async fn a_missing_openai_key_names_the_variable() {
    check(
        &seed_args(&["--count", "1", "--out", "out.txt"]),
        &[],
        2,
        "OPENAI_API_KEY is not set",
    )
    .await;
    check(
        &seed_args(&["--count", "1", "--out", "out.txt"]),
        &[("OPENAI_API_KEY", "  ")],
        2,
        "OPENAI_API_KEY is not set",
    )
    .await;
}

#[tokio::test]
async fn bad_flag_values() {
    for (args, says) in [
        (
            &["--temperature", "warm", "--count", "1"][..],
            "invalid value 'warm' for '--temperature",
        ),
        (
            &["--temperature", "2.5", "--count", "1"],
            "temperature 2.5 is outside 0..2",
        ),
        (&["--target-chars", "0"], "the target is 0 chars"),
        (&["--target-chars", "-5"], "--target-chars"),
        (&["--count", "0"], "the target is 0 responses"),
        (
            &["--count", "1", "--separator", ""],
            "the separator is empty",
        ),
        (&["--count", "1", "--concurrency", "0"], "--concurrency 0"),
        (&["--count", "1", "--max-tokens", "0"], "--max-tokens 0"),
        (&["--count", "1", "--timeout", "0"], "--timeout 0"),
        (
            &["--count", "1", "--prompt", "Explain {topc}"],
            "unknown placeholder {topc}",
        ),
        (
            &["--count", "1", "--length-policy", "nearest"],
            "invalid value 'nearest' for '--length-policy",
        ),
        (
            &["--count", "1", "--provider", "anthropic"],
            "unknown provider `anthropic`",
        ),
        (
            &["--count", "1", "--provider", "replay"],
            "pass --fixtures DIR",
        ),
        (
            &[
                "--count",
                "1",
                "--provider",
                "replay",
                "--fixtures",
                "no/such/dir",
            ],
            "cannot read the fixtures folder",
        ),
        (
            &["--count", "1", "--base-url", "api.openai.com"],
            "is not an http(s) URL",
        ),
        (
            &["--match-length", "no-such-file.txt"],
            "cannot read the --match-length file no-such-file.txt",
        ),
        (
            &["--count", "1", "--target-chars", "5"],
            "cannot be used with",
        ),
        (&[], "the following required arguments were not provided"),
        (
            &["--count", "1", "--system", "x", "--no-system"],
            "cannot be used with",
        ),
    ] {
        let mut args = seed_args(args);
        if !args.contains(&"--out") {
            args.extend(["--out", "out.txt"]);
        }
        check(&args, KEY, 2, says).await;
    }
}

#[tokio::test]
async fn an_output_that_its_journal_would_overwrite_is_refused() {
    check(
        &seed_args(&["--count", "1", "--out", "out.jsonl"]),
        KEY,
        2,
        "give --out another extension",
    )
    .await;
}

#[tokio::test]
async fn an_output_folder_that_cannot_be_created_is_refused() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("file"), "").unwrap();
    let run = corpusgen(
        folder.path(),
        &seed_args(&["--count", "1", "--out", "file/out.txt"]),
        KEY,
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("cannot create the output folder"),
        "{}",
        run.stderr
    );
}
