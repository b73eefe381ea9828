//! `corpusgen stats` on the seed's hand-curated corpus.

use std::fs;

use corpusgen_testkit::seed_explanations;

use crate::support::corpusgen;

#[tokio::test]
async fn the_seed_corpus_table_and_json() {
    let folder = tempfile::tempdir().unwrap();
    fs::write(
        folder.path().join("chatgpt.txt"),
        seed_explanations().join("^^^^"),
    )
    .unwrap();
    let table = corpusgen(folder.path(), &["stats", "chatgpt.txt"], &[]).await;
    assert_eq!(table.code, 0, "{table:?}");
    insta::assert_snapshot!("seed_table", table.stdout);

    // A reference of the first five beside the ten, as one JSON object.
    fs::write(
        folder.path().join("five.txt"),
        seed_explanations()[..5].join("^^^^"),
    )
    .unwrap();
    let json = corpusgen(
        folder.path(),
        &["stats", "chatgpt.txt", "--reference", "five.txt", "--json"],
        &[],
    )
    .await;
    assert_eq!(json.code, 0, "{json:?}");
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["corpus"]["count"], 10);
    assert_eq!(value["reference"]["count"], 5);
    let keys: Vec<&str> = value["corpus"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "chars",
            "compression_ratio",
            "compression_ratio_single_gzip",
            "count",
            "distinct_1",
            "distinct_2",
            "distinct_3",
            "homogenization_rougel",
            "ngram_diversity",
            "self_bleu4",
            "self_repetition",
            "words"
        ]
    );
    assert_eq!(
        (value["corpus"]["self_bleu4"].as_f64().unwrap() * 1000.0).round(),
        155.0
    );
}

#[tokio::test]
async fn a_missing_corpus_or_an_empty_separator_is_bad_input() {
    let folder = tempfile::tempdir().unwrap();
    let missing = corpusgen(folder.path(), &["stats", "nope.txt"], &[]).await;
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("cannot read the corpus nope.txt"),
        "{}",
        missing.stderr
    );
    fs::write(folder.path().join("c.txt"), "a^^^^b").unwrap();
    let empty = corpusgen(folder.path(), &["stats", "c.txt", "--separator", ""], &[]).await;
    assert_eq!(empty.code, 2);
    assert!(
        empty.stderr.contains("the separator is empty"),
        "{}",
        empty.stderr
    );
}
