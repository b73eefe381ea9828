//! `--help` output, pinned by snapshots so a changed flag is a reviewed change.

use crate::support::corpusgen;

#[tokio::test]
async fn top_level_help() {
    let folder = tempfile::tempdir().unwrap();
    let run = corpusgen(folder.path(), &["--help"], &[]).await;
    assert_eq!(run.code, 0);
    insta::assert_snapshot!(run.stdout);
}

#[tokio::test]
async fn generate_help() {
    let folder = tempfile::tempdir().unwrap();
    let run = corpusgen(folder.path(), &["generate", "--help"], &[]).await;
    assert_eq!(run.code, 0);
    insta::assert_snapshot!(run.stdout);
}

#[tokio::test]
async fn completions_for_each_shell_know_the_flags() {
    let folder = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let run = corpusgen(folder.path(), &["completions", shell], &[]).await;
        assert_eq!(run.code, 0, "{shell}: {run:?}");
        for word in [
            "corpusgen",
            "target-chars",
            "match-length",
            "hipaa",
            "diversify",
        ] {
            assert!(run.stdout.contains(word), "{shell} completion lacks {word}");
        }
    }
    let bad = corpusgen(folder.path(), &["completions", "powershell7"], &[]).await;
    assert_eq!(bad.code, 2);
}
