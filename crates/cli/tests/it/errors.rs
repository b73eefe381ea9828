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

/// Every bad invocation in one table: each must exit 2 with one sentence on
/// stderr. The snapshot pins the exact wording users see.
#[tokio::test]
async fn bad_invocations_each_exit_2_with_one_sentence() {
    let rows: &[&[&str]] = &[
        &["--temperature", "warm", "--count", "1"],
        &["--temperature", "2.5", "--count", "1"],
        &["--temperature", "-0.1", "--count", "1"],
        &["--target-chars", "0"],
        &["--target-chars", "-5"],
        &["--count", "0"],
        &["--count", "1", "--separator", ""],
        &["--count", "1", "--concurrency", "0"],
        &["--count", "1", "--max-tokens", "0"],
        &["--count", "1", "--timeout", "0"],
        &["--count", "1", "--max-retries", "-1"],
        &["--count", "1", "--seed", "lucky"],
        &["--count", "1", "--prompt", "Explain {topc}"],
        &["--count", "1", "--prompt", " "],
        &["--count", "1", "--topic", ""],
        &["--count", "1", "--model", ""],
        &["--count", "1", "--length-policy", "nearest"],
        &["--count", "1", "--provider", "anthropic"],
        &["--count", "1", "--provider", "replay"],
        &[
            "--count",
            "1",
            "--provider",
            "replay",
            "--fixtures",
            "no/such/dir",
        ],
        &["--count", "1", "--base-url", "api.openai.com"],
        &["--match-length", "no-such-file.txt"],
        &["--count", "1", "--target-chars", "5"],
        &[],
        &["--count", "1", "--system", "x", "--no-system"],
        &["--count", "1", "--out", "out.jsonl"],
        &["--count", "1", "--out", ""],
    ];
    let mut table = String::new();
    for row in rows {
        // A dead local port first, so that a row that wrongly passes can
        // reach nothing; a row's own --base-url overrides it.
        let mut args = seed_args(&["--base-url", "http://127.0.0.1:9/v1"]);
        args.extend_from_slice(row);
        if !args.contains(&"--out") {
            args.extend(["--out", "out.txt"]);
        }
        let folder = tempfile::tempdir().unwrap();
        let run = corpusgen(folder.path(), &args, KEY).await;
        assert_eq!(run.code, 2, "{row:?}: {run:?}");
        assert!(
            !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
            "{run:?}"
        );
        assert!(
            !folder.path().join("out.jsonl").exists(),
            "{row:?}: nothing may be written"
        );
        // clap adds usage lines after its sentence; the sentence is the first line.
        let sentence = run.stderr.lines().next().unwrap_or_default();
        table.push_str(&format!("{}\n  -> {sentence}\n", row.join(" ")));
    }
    insta::assert_snapshot!(table);
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
