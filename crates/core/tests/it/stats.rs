//! The corpus diversity metrics: the seed's ten explanations against the
//! values of the `diversity` 0.3.1 package (and NLTK, sacreBLEU), tiny
//! tokenizer and ROUGE-L cases, and the metrics' invariants.

use std::fs;
use std::path::{Path, PathBuf};

use corpusgen_core::stats::{
    CharStats, CorpusStats, compression_ratio, compression_ratio_single_gzip, corpus_stats,
    distinct_n, homogenization_rougel, ngram_diversity, python_split, rouge_l_f1, rouge_tokens,
    self_bleu4, self_repetition, self_repetition_per_document, sentence_bleu4, tokenize_13a,
    word_count,
};
use proptest::prelude::*;

/// The `choices[0].message.content` of every JSON file of the seed's
/// hand-curated ChatGPT explanations, in file name order.
fn seed_explanations() -> Vec<String> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/openai/dpo-chatgpt");
    let mut paths: Vec<PathBuf> = fs::read_dir(&folder)
        .unwrap_or_else(|error| panic!("reading {}: {error}", folder.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json")
        })
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text = fs::read_to_string(path)
                .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
            let response: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|error| panic!("parsing {}: {error}", path.display()));
            response["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_else(|| panic!("{} has no choices[0].message.content", path.display()))
                .to_owned()
        })
        .collect()
}

/// Asserts that `actual` rounds to `expected` at three decimals, as the
/// package reports its scores.
fn assert_three_places(name: &str, actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 0.0005,
        "{name}: {actual} does not round to {expected}"
    );
}

/// Asserts that two floats agree to within rounding error.
fn assert_close(name: &str, actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-12,
        "{name}: {actual} differs from {expected}"
    );
}

fn words(text: &str) -> Vec<&str> {
    text.split(' ').filter(|word| !word.is_empty()).collect()
}

mod seed {
    use super::*;

    #[test]
    fn ten_explanations_join_to_9164_chars() {
        let explanations = seed_explanations();
        assert_eq!(explanations.len(), 10);
        assert_eq!(explanations.join("^^^^").chars().count(), 9164);
    }

    #[test]
    fn ten_explanations_score_as_the_diversity_package_does() {
        let explanations = seed_explanations();
        let documents: Vec<&str> = explanations.iter().map(String::as_str).collect();
        let stats = corpus_stats(&documents);
        assert_eq!(stats.count, 10);
        assert_eq!(
            stats.chars,
            CharStats {
                total: 9128,
                min: 634,
                mean: 912.8,
                max: 1228
            }
        );
        assert_eq!(stats.words, 1415);
        assert_three_places("compression_ratio", stats.compression_ratio, 2.480);
        assert_three_places(
            "compression_ratio_single_gzip",
            stats.compression_ratio_single_gzip,
            2.503,
        );
        assert_three_places("ngram_diversity", stats.ngram_diversity, 3.307);
        assert_three_places("self_repetition", stats.self_repetition, 0.786);
        assert_three_places("homogenization_rougel", stats.homogenization_rougel, 0.170);
        assert_three_places("self_bleu4", stats.self_bleu4, 0.155);
        assert_three_places("distinct_1", stats.distinct_1, 0.447);
        assert_three_places("distinct_2", stats.distinct_2, 0.875);
        assert_three_places("distinct_3", stats.distinct_3, 0.980);
    }

    #[test]
    fn compressed_sizes_are_the_packages_byte_for_byte() {
        // The package measures 9215 bytes of text and a 3715-byte file; plain
        // gzip -9 of the same text is 3681 bytes.
        let explanations = seed_explanations();
        let documents: Vec<&str> = explanations.iter().map(String::as_str).collect();
        assert_close(
            "compression_ratio",
            compression_ratio(&documents),
            9215.0 / 3715.0,
        );
        assert_close(
            "compression_ratio_single_gzip",
            compression_ratio_single_gzip(&documents),
            9215.0 / 3681.0,
        );
    }

    #[test]
    fn unrounded_scores_match_python_to_twelve_places() {
        // The package's and the reference libraries' values before rounding,
        // computed once with Python 3.11, diversity 0.3.1, nltk 3.10,
        // rouge-score 0.1.2 and sacrebleu 2.6.
        let explanations = seed_explanations();
        let documents: Vec<&str> = explanations.iter().map(String::as_str).collect();
        assert_close(
            "ngram_diversity",
            ngram_diversity(&documents),
            3.306790688674674,
        );
        assert_close(
            "self_repetition",
            self_repetition(&documents),
            0.7860185057472167,
        );
        assert_close(
            "homogenization_rougel",
            homogenization_rougel(&documents),
            0.16969530070788366,
        );
        assert_close("self_bleu4", self_bleu4(&documents), 0.1552813094149525);
        assert_close("distinct_1", distinct_n(&documents, 1), 0.44734982332155476);
        assert_close("distinct_2", distinct_n(&documents, 2), 0.8747330960854093);
        assert_close("distinct_3", distinct_n(&documents, 3), 0.9799283154121864);
    }

    #[test]
    fn stats_serialize_with_the_documented_keys() {
        let explanations = seed_explanations();
        let documents: Vec<&str> = explanations.iter().map(String::as_str).collect();
        let json = serde_json::to_value(corpus_stats(&documents)).expect("stats serialize");
        let keys: Vec<&str> = json
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "count",
            "chars",
            "words",
            "compression_ratio",
            "compression_ratio_single_gzip",
            "ngram_diversity",
            "self_repetition",
            "homogenization_rougel",
            "self_bleu4",
            "distinct_1",
            "distinct_2",
            "distinct_3",
        ];
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys_sorted, expected);
        let chars: Vec<&str> = json["chars"]
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut chars_sorted = chars.clone();
        chars_sorted.sort_unstable();
        assert_eq!(chars_sorted, ["max", "mean", "min", "total"]);
    }
}

mod tokenizer_13a {
    use super::*;

    fn check(input: &str, expected: &[&str]) {
        assert_eq!(tokenize_13a(input), expected, "13a tokens of {input:?}");
    }

    // Expected tokens are sacreBLEU 2.6's `Tokenizer13a()(input).split()`.
    #[test]
    fn comma_and_bang_split_off() {
        check("Hello, world!", &["Hello", ",", "world", "!"]);
    }
    #[test]
    fn numbers_keep_their_period_and_comma() {
        check(
            "It costs $3.50, or 3,000 yen.",
            &["It", "costs", "$", "3.50", ",", "or", "3,000", "yen", "."],
        );
    }
    #[test]
    fn ellipsis_splits_into_periods() {
        check("a...b", &["a", ".", ".", ".", "b"]);
    }
    #[test]
    fn digit_hyphen_splits_but_word_hyphen_stays() {
        check("1.. 2-3 x-y", &["1", ".", ".", "2", "-", "3", "x-y"]);
    }
    #[test]
    fn abbreviations_split_at_every_period() {
        check(
            "e.g. U.S.A.",
            &["e", ".", "g", ".", "U", ".", "S", ".", "A", "."],
        );
    }
    #[test]
    fn apostrophe_stays_and_line_end_hyphen_joins() {
        check("don't stop-\nnow", &["don't", "stopnow"]);
    }
    #[test]
    fn entities_unescape_in_sequence() {
        check(
            "&amp;lt;tag&gt; &quot;q&quot; A&amp;B",
            &["<", "tag", ">", "\"", "q", "\"", "A", "&", "B"],
        );
    }
    #[test]
    fn skipped_marker_is_removed() {
        check("<skipped>ok", &["ok"]);
    }
    #[test]
    fn brackets_slash_at_and_hash_split_off() {
        check(
            "(a) [b] {c} /d/ @e #f",
            &[
                "(", "a", ")", "[", "b", "]", "{", "c", "}", "/", "d", "/", "@", "e", "#", "f",
            ],
        );
    }
    #[test]
    fn comma_splits_unless_between_digits() {
        check(
            "x,y 1,y x,1 1.5",
            &["x", ",", "y", "1", ",", "y", "x", ",", "1", "1.5"],
        );
    }
    #[test]
    fn non_ascii_punctuation_stays_attached() {
        check("résumé — “quoted” ok", &["résumé", "—", "“quoted”", "ok"]);
    }
    #[test]
    fn blank_text_has_no_tokens() {
        check("  ", &[]);
        check("", &[]);
    }
}

mod rouge {
    use super::*;

    fn check_tokens(input: &str, expected: &[&str]) {
        assert_eq!(rouge_tokens(input), expected, "ROUGE tokens of {input:?}");
    }

    fn check(first: &str, second: &str, expected: f64) {
        let score = rouge_l_f1(&rouge_tokens(first), &rouge_tokens(second));
        assert_close(
            &format!("ROUGE-L F1 of {first:?} and {second:?}"),
            score,
            expected,
        );
    }

    // Expected values are rouge-score 0.1.2's `RougeScorer(["rougeL"])`.
    #[test]
    fn tokens_are_lowercase_ascii_alphanumeric_runs() {
        check_tokens("Hello, World!", &["hello", "world"]);
        check_tokens("naïve café", &["na", "ve", "caf"]);
        check_tokens("İstanbul K2", &["i", "stanbul", "k2"]);
    }
    #[test]
    fn one_substitution_in_six() {
        check("the cat sat on the mat", "the cat lay on a mat", 2.0 / 3.0);
    }
    #[test]
    fn subsequence_of_half_the_length() {
        check("A B C D", "B D", 2.0 / 3.0);
    }
    #[test]
    fn case_and_punctuation_do_not_count() {
        check("Hello, World!", "hello world", 1.0);
    }
    #[test]
    fn disjoint_texts_score_zero() {
        check("abc", "xyz", 0.0);
    }
    #[test]
    fn rotation_keeps_half() {
        check("x y z w", "z w x y", 0.5);
    }
    #[test]
    fn accents_split_words() {
        check("naïve café", "naive cafe", 0.0);
        check("İstanbul K2", "istanbul k2", 0.4);
    }
    #[test]
    fn one_empty_side_scores_zero_and_two_score_one() {
        check("", "x", 0.0);
        // rouge-score says 0 here; two token-less texts count as identical.
        check("", "!!", 1.0);
    }
}

mod bleu {
    use super::*;

    fn check(hypothesis: &str, references: &[&str], expected: f64) {
        let references: Vec<Vec<&str>> = references.iter().map(|text| words(text)).collect();
        let score = sentence_bleu4(&words(hypothesis), &references);
        assert_close(&format!("BLEU of {hypothesis:?}"), score, expected);
    }

    const REFERENCE_1: &str =
        "It is a guide to action that ensures that the military will forever heed Party commands";
    const REFERENCE_2: &str = "It is the guiding principle which guarantees the military forces always being under the command of the Party";
    const REFERENCE_3: &str =
        "It is the practical guide for the army always to heed the directions of the party";

    // Expected values are NLTK 3.10's `sentence_bleu` with
    // `SmoothingFunction().method1`; the first two are its docstring examples.
    #[test]
    fn nltk_docstring_hypothesis_1() {
        check(
            "It is a guide to action which ensures that the military always obeys the commands of the party",
            &[REFERENCE_1, REFERENCE_2, REFERENCE_3],
            0.5045666840058485,
        );
    }
    #[test]
    fn nltk_docstring_hypothesis_2_with_smoothing() {
        check(
            "It is to insure the troops forever hearing the activity guidebook that party direct",
            &[REFERENCE_1, REFERENCE_2, REFERENCE_3],
            0.03703131191121491,
        );
    }
    #[test]
    fn identical_sentence_scores_one() {
        check("a b c d e", &["a b c d e"], 1.0);
    }
    #[test]
    fn three_tokens_smooth_the_missing_4_gram() {
        check("a b c", &["a b c"], 0.1_f64.powf(0.25));
    }
    #[test]
    fn short_hypothesis_pays_brevity_penalty() {
        check("a b x d", &["a b c d e f"], 0.11404605374835301);
    }
    #[test]
    fn closest_reference_length_sets_the_penalty() {
        check(
            "the cat sat on the mat",
            &["the cat", "a cat sat on mat x y"],
            0.21506254256566312,
        );
    }
    #[test]
    fn no_unigram_match_or_no_reference_scores_zero() {
        check("b", &["a"], 0.0);
        check("a", &[""], 0.0);
        check("a", &[], 0.0);
    }
}

mod edge_cases {
    use super::*;

    #[test]
    fn no_documents_give_zeros() {
        let stats = corpus_stats(&[]);
        assert_eq!(
            stats,
            CorpusStats {
                count: 0,
                chars: CharStats {
                    total: 0,
                    min: 0,
                    mean: 0.0,
                    max: 0
                },
                words: 0,
                compression_ratio: 0.0,
                compression_ratio_single_gzip: 0.0,
                ngram_diversity: 0.0,
                self_repetition: 0.0,
                homogenization_rougel: 0.0,
                self_bleu4: 0.0,
                distinct_1: 0.0,
                distinct_2: 0.0,
                distinct_3: 0.0,
            }
        );
    }

    #[test]
    fn one_document_has_no_pairs() {
        let stats = corpus_stats(&["one two three four five"]);
        assert_eq!(stats.homogenization_rougel, 0.0);
        assert_eq!(stats.self_bleu4, 0.0);
        assert_eq!(stats.self_repetition, 0.0);
        assert_eq!(stats.distinct_1, 1.0);
        assert_close("ngram_diversity", stats.ngram_diversity, 4.0);
    }

    #[test]
    fn empty_documents_are_finite() {
        let stats = corpus_stats(&["", "", ""]);
        assert_eq!(stats.chars.mean, 0.0);
        // Two spaces join three empty documents: three empty ASCII-space tokens.
        assert_close(
            "ngram_diversity",
            stats.ngram_diversity,
            1.0 / 3.0 + 1.0 / 2.0 + 1.0,
        );
        assert_eq!(stats.homogenization_rougel, 1.0);
        assert_eq!(stats.self_bleu4, 0.0);
        assert_eq!(stats.distinct_1, 0.0);
        assert_eq!(distinct_n(&["a b"], 0), 0.0);
    }

    #[test]
    fn disjoint_documents_are_not_homogeneous() {
        // The package returns 1 here: its fallback for an all-zero sum.
        assert_eq!(homogenization_rougel(&["alpha beta", "gamma delta"]), 0.0);
    }

    #[test]
    fn python_whitespace_includes_the_ascii_separators() {
        let text = "a\u{1c}b\u{1f}c\u{a0}d\u{3000}e \t\n";
        assert_eq!(
            python_split(text).collect::<Vec<_>>(),
            ["a", "b", "c", "d", "e"]
        );
        // The word count is `split_whitespace`, which keeps them inside words.
        assert_eq!(word_count(&[text]), 3);
    }

    #[test]
    fn a_copy_of_a_lonely_document_can_lower_the_mean_self_repetition() {
        // Each copy of the ten-word document repeats its seven 4-grams twice
        // elsewhere (ln 15); the four-word document shares nothing (ln 1).
        // Its copy raises its own term to ln 2 but drags the mean down. The
        // package agrees: 2.0310 before, 1.9021 after.
        let long = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10";
        let short = "red green blue yellow";
        let before = self_repetition(&[long, long, long, short]);
        let after = self_repetition(&[long, long, long, short, short]);
        assert_close("before", before, 2.0310376508266574);
        assert_close("after", after, 1.9020889928853042);
    }
}

/// A document of one to thirty lowercase words joined by single spaces.
fn document() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-e]{1,3}", 1..30).prop_map(|words| words.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Copies add no new n-gram: the distinct count stays that of one copy,
    /// the least a corpus holding that document can have.
    #[test]
    fn identical_documents_have_one_documents_distinct_ngrams(
        text in document(),
        copies in 2_usize..6,
        n in 1_usize..4,
    ) {
        let one = distinct_n(&[text.as_str()], n);
        let corpus = vec![text.as_str(); copies];
        let together = distinct_n(&corpus, n);
        prop_assert!((together - one / copies as f64).abs() < 1e-12, "{together} vs {one} / {copies}");
    }

    /// Replacing one of the identical documents by one of the same length in
    /// fresh words never lowers n-gram diversity or distinct-n: identical
    /// documents are the minimum among corpora of that shape.
    #[test]
    fn identical_documents_minimize_ngram_diversity(
        text in document(),
        copies in 1_usize..6,
        replaced in 0_usize..6,
        n in 1_usize..4,
    ) {
        let replaced = replaced % copies;
        let fresh: String = (0..words(&text).len())
            .map(|position| format!("F{position}"))
            .collect::<Vec<_>>()
            .join(" ");
        let identical = vec![text.as_str(); copies];
        let mut perturbed = identical.clone();
        perturbed[replaced] = fresh.as_str();
        prop_assert!(ngram_diversity(&identical) <= ngram_diversity(&perturbed) + 1e-12);
        prop_assert!(distinct_n(&identical, n) <= distinct_n(&perturbed, n) + 1e-12);
    }

    /// A corpus of one word said over and over reaches the absolute floor of
    /// n-gram diversity: one distinct k-gram at every order.
    #[test]
    fn one_word_repeated_reaches_the_ngram_diversity_floor(copies in 1_usize..40) {
        let corpus = vec!["word"; copies];
        let floor: f64 = (1..=4_usize)
            .filter(|&order| order <= copies)
            .map(|order| 1.0 / (copies - order + 1) as f64)
            .sum();
        prop_assert!((ngram_diversity(&corpus) - floor).abs() < 1e-12);
    }

    /// Any text, said by every document, is perfectly homogeneous.
    #[test]
    fn identical_documents_are_homogeneous(text in "\\PC{0,60}", copies in 2_usize..6) {
        let corpus = vec![text.as_str(); copies];
        prop_assert_eq!(homogenization_rougel(&corpus), 1.0);
    }

    /// Adding a copy of a document never lowers any document's term of
    /// self-repetition, so never lowers the sum; the copy scores at least what
    /// its original did before. (The mean can drop: see the edge case above.)
    #[test]
    fn a_copy_never_lowers_any_self_repetition_term(
        corpus in prop::collection::vec(document(), 1..6),
        copied in 0_usize..6,
    ) {
        let documents: Vec<&str> = corpus.iter().map(String::as_str).collect();
        let copied = copied % documents.len();
        let before = self_repetition_per_document(&documents);
        let mut with_copy = documents.clone();
        with_copy.push(documents[copied]);
        let after = self_repetition_per_document(&with_copy);
        for (position, term) in before.iter().enumerate() {
            prop_assert!(after[position] >= *term, "document {position}: {} < {term}", after[position]);
        }
        prop_assert!(after[documents.len()] >= before[copied]);
        prop_assert!(after.iter().sum::<f64>() >= before.iter().sum::<f64>());
    }

    /// No metric panics or returns NaN, whatever the text.
    #[test]
    fn metrics_are_finite_on_any_text(corpus in prop::collection::vec("\\PC{0,40}", 0..5)) {
        let documents: Vec<&str> = corpus.iter().map(String::as_str).collect();
        let stats = corpus_stats(&documents);
        for (name, value) in [
            ("compression_ratio", stats.compression_ratio),
            ("compression_ratio_single_gzip", stats.compression_ratio_single_gzip),
            ("ngram_diversity", stats.ngram_diversity),
            ("self_repetition", stats.self_repetition),
            ("homogenization_rougel", stats.homogenization_rougel),
            ("self_bleu4", stats.self_bleu4),
            ("distinct_1", stats.distinct_1),
            ("distinct_2", stats.distinct_2),
            ("distinct_3", stats.distinct_3),
            ("chars.mean", stats.chars.mean),
        ] {
            prop_assert!(value.is_finite() && value >= 0.0, "{name} = {value}");
        }
    }
}
