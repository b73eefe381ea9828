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
