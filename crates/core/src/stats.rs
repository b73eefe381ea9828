//! Corpus diversity metrics: how varied the answers of one corpus are.
//!
//! The lexical scores follow the definitions of the `diversity` package,
//! version 0.3.1, of Shaib et al. (2024), "Standardizing the Measurement of
//! Text Diversity": compression ratio, n-gram diversity, self-repetition and
//! homogenization by ROUGE-L. Two further scores are the usual ones of the
//! literature: self-BLEU-4 (NLTK's sentence BLEU with smoothing method 1 over
//! the `13a` tokens of sacreBLEU) and distinct-1/2/3.
//!
//! Every function here is pure: it takes the documents (the responses of a
//! corpus, already split at the separator) and returns a number. The package
//! rounds its scores to three decimals; these functions do not round, so that
//! callers decide how many places to show.
//!
//! Where the package raises an error (no documents, a single document, no
//! n-grams of some order), each function documents the value it returns
//! instead. No function panics or returns NaN on any input.
//!
//! Tokens. The package tokenizes in three different ways, and each metric
//! keeps the one its definition names:
//! - [`python_split`]: Python's `str.split()`, runs of Unicode whitespace.
//!   Python counts the four ASCII separators U+001C to U+001F as whitespace,
//!   Rust's `char::is_whitespace` does not, so this is Rust's set plus those.
//! - the ASCII space alone, keeping empty tokens (n-gram diversity).
//! - [`rouge_tokens`] (homogenization) and [`tokenize_13a`] (self-BLEU).
//!
//! The word count of [`CorpusStats`] uses `str::split_whitespace`, which only
//! differs from Python's split on the four ASCII separators above.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::io::Write;

use flate2::Compression;
use flate2::Crc;
use flate2::write::DeflateEncoder;
use serde::Serialize;

/// Every metric of one corpus, as written to a stats JSON file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CorpusStats {
    /// The number of documents.
    pub count: u64,
    /// Document lengths in Unicode scalar values, as Python's `len`.
    pub chars: CharStats,
    /// Words over all documents: `split_whitespace` tokens.
    pub words: u64,
    /// The `diversity` package's compression ratio, see [`compression_ratio`].
    pub compression_ratio: f64,
    /// The plain gzip compression ratio, see [`compression_ratio_single_gzip`].
    pub compression_ratio_single_gzip: f64,
    /// See [`ngram_diversity`].
    pub ngram_diversity: f64,
    /// See [`self_repetition`].
    pub self_repetition: f64,
    /// See [`homogenization_rougel`].
    pub homogenization_rougel: f64,
    /// See [`self_bleu4`].
    pub self_bleu4: f64,
    /// See [`distinct_n`] with `n = 1`.
    pub distinct_1: f64,
    /// See [`distinct_n`] with `n = 2`.
    pub distinct_2: f64,
    /// See [`distinct_n`] with `n = 3`.
    pub distinct_3: f64,
}

/// Document lengths in chars (Unicode scalar values). With no documents every
/// field is zero, the mean included, rather than NaN.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CharStats {
    pub total: u64,
    pub min: u64,
    pub mean: f64,
    pub max: u64,
}

/// The n-gram order that self-repetition counts, as in the package.
pub const SELF_REPETITION_ORDER: usize = 4;

/// The highest n-gram order that n-gram diversity sums over, as in the package.
pub const NGRAM_DIVERSITY_MAX_ORDER: usize = 4;

/// The highest n-gram order of BLEU-4, each order weighted `1 / 4`.
pub const BLEU_MAX_ORDER: usize = 4;

/// The count that NLTK's smoothing method 1 puts in place of a zero match
/// count.
pub const BLEU_SMOOTHING_EPSILON: f64 = 0.1;

/// Every metric of a corpus. Costs are those of the single metrics; the
/// pairwise ones, [`homogenization_rougel`] and [`self_bleu4`], dominate.
pub fn corpus_stats(documents: &[&str]) -> CorpusStats {
    CorpusStats {
        count: documents.len() as u64,
        chars: char_stats(documents),
        words: word_count(documents),
        compression_ratio: compression_ratio(documents),
        compression_ratio_single_gzip: compression_ratio_single_gzip(documents),
        ngram_diversity: ngram_diversity(documents),
        self_repetition: self_repetition(documents),
        homogenization_rougel: homogenization_rougel(documents),
        self_bleu4: self_bleu4(documents),
        distinct_1: distinct_n(documents, 1),
        distinct_2: distinct_n(documents, 2),
        distinct_3: distinct_n(documents, 3),
    }
}

/// Total, shortest, mean and longest document length in chars.
pub fn char_stats(documents: &[&str]) -> CharStats {
    let lengths: Vec<u64> = documents
        .iter()
        .map(|document| document.chars().count() as u64)
        .collect();
    let total: u64 = lengths.iter().sum();
    CharStats {
        total,
        min: lengths.iter().copied().min().unwrap_or(0),
        mean: if lengths.is_empty() {
            0.0
        } else {
            total as f64 / lengths.len() as f64
        },
        max: lengths.iter().copied().max().unwrap_or(0),
    }
}

/// The number of `split_whitespace` tokens over all documents.
pub fn word_count(documents: &[&str]) -> u64 {
    documents
        .iter()
        .map(|document| document.split_whitespace().count() as u64)
        .sum()
}

/// The `diversity` package's compression ratio: the UTF-8 size of the
/// documents joined by one space, divided by the size of the file that the
/// package writes.
///
/// The package gzips the text twice: it writes `gzip.compress(text)` (level 9)
/// through a `gzip.GzipFile` (level 9 again) into a file named
/// `compressed.gz`, and measures that file. So the size is that of a gzip
/// member whose content is another gzip member, and whose header carries the
/// file name `compressed` (Python drops the `.gz`), which adds 11 bytes.
///
/// The inner member's header holds the time of the call, and since it is
/// compressed again, the clock changes the package's own result: not at all on
/// the seed's ten explanations (9 KB), by up to three bytes on a text of a few
/// hundred bytes. This function fixes that time to 0 so that the result is
/// reproducible. (Python's `gzip.compress(text, 9, mtime=0)` takes another
/// path, zlib's own header with operating system 3; the package never passes a
/// time, so its header is the one built here.) The header
/// bytes are otherwise those of Python 3.11: extra flags 2 (best compression)
/// and operating system 255 (unknown). The sizes equal the package's only with
/// the deflate of C zlib, at level 9 with its default window and memory level,
/// which is what `flate2`'s `zlib` feature is.
///
/// An empty text gives 0.
pub fn compression_ratio(documents: &[&str]) -> f64 {
    let text = documents.join(" ");
    let inner = gzip_member(text.as_bytes(), None);
    let outer = gzip_member(&inner, Some(b"compressed"));
    text.len() as f64 / outer.len() as f64
}

/// The plain compression ratio: the UTF-8 size of the documents joined by one
/// space, divided by the size of one gzip member of it at level 9 (18 bytes of
/// header and trailer plus the raw deflate). An empty text gives 0.
pub fn compression_ratio_single_gzip(documents: &[&str]) -> f64 {
    let text = documents.join(" ");
    let gzip_size = GZIP_HEADER_AND_TRAILER_BYTES + deflate_best(text.as_bytes()).len();
    text.len() as f64 / gzip_size as f64
}

/// The package's n-gram diversity: the documents are joined by one space and
/// split at every ASCII space, so that newlines stay inside tokens and two
/// spaces in a row make an empty token. The score is the sum over the orders
/// k = 1 to 4 of the number of distinct k-grams divided by the number of all
/// k-grams. It ranges from a little above 0 to 4.
///
/// Edge cases, where the package divides by zero: an order with no k-gram adds
/// 0, and an empty joined text has no tokens at all (not one empty token), so
/// it scores 0.
pub fn ngram_diversity(documents: &[&str]) -> f64 {
    let text = documents.join(" ");
    if text.is_empty() {
        return 0.0;
    }
    let tokens: Vec<&str> = text.split(' ').collect();
    (1..=NGRAM_DIVERSITY_MAX_ORDER)
        .map(|order| distinct_ratio(tokens.windows(order)))
        .sum()
}

/// The package's self-repetition score, with 4-grams of [`python_split`]
/// tokens: the mean over documents of [`self_repetition_per_document`]. It is
/// 0 when no 4-gram occurs in two documents, and grows with the log of the
/// number of repeats. With no documents it is 0 (the package divides by zero).
pub fn self_repetition(documents: &[&str]) -> f64 {
    let terms = self_repetition_per_document(documents);
    if terms.is_empty() {
        return 0.0;
    }
    terms.iter().sum::<f64>() / terms.len() as f64
}

/// Each document's term of the self-repetition score: `ln(1 + r)`, where `r`
/// adds up, over the distinct 4-grams of the document, the number of other
/// documents that contain the same 4-gram. A document with fewer than four
/// tokens has no 4-gram and a term of 0.
///
/// Adding a document never lowers any existing document's term. It can lower
/// the mean all the same, when the new document's own term is below the mean.
pub fn self_repetition_per_document(documents: &[&str]) -> Vec<f64> {
    let tokenized: Vec<Vec<&str>> = documents
        .iter()
        .map(|document| python_split(document).collect())
        .collect();
    let distinct_per_document: Vec<HashSet<&[&str]>> = tokenized
        .iter()
        .map(|tokens| tokens.windows(SELF_REPETITION_ORDER).collect())
        .collect();
    let mut document_frequency: HashMap<&[&str], u64> = HashMap::new();
    for ngrams in &distinct_per_document {
        for &ngram in ngrams {
            *document_frequency.entry(ngram).or_insert(0) += 1;
        }
    }
    distinct_per_document
        .iter()
        .map(|ngrams| {
            let repeats_elsewhere: u64 = ngrams
                .iter()
                .map(|ngram| document_frequency.get(ngram).map_or(0, |count| count - 1))
                .sum();
            // The package takes the log of the integer plus one, not `ln_1p`
            // of a float: the same expression keeps the last bit the same.
            ((repeats_elsewhere + 1) as f64).ln()
        })
        .collect()
}

/// The package's homogenization score with ROUGE-L: the mean, over all ordered
/// pairs of two different documents, of the ROUGE-L F1 of their
/// [`rouge_tokens`]. 1 means every document is every other's longest common
/// subsequence; 0 means no pair shares a token.
///
/// Cost: ROUGE-L F1 is symmetric, so each unordered pair is scored once:
/// n (n - 1) / 2 longest-common-subsequence runs, each taking time
/// proportional to the product of the two token counts and memory
/// proportional to the shorter one. Tokens are mapped to integers first so
/// that the inner loop compares integers. In a release build that is about
/// 2 ns per table cell: 300 documents of 150 tokens (10^9 cells) take about
/// two seconds, and the time grows with the square of both the number of
/// documents and their length.
///
/// Edge cases: with fewer than two documents there is no pair and the score is
/// 0 (the package divides by zero). Two documents without tokens count as
/// identical, see [`rouge_l_f1`]. The package, when every pair scores 0,
/// returns 1 instead, meaning to catch a corpus of identical empty strings; it
/// also turns a corpus of documents sharing no word into 1. Here such a corpus
/// scores 0 and identical documents score 1 without the special case.
pub fn homogenization_rougel(documents: &[&str]) -> f64 {
    if documents.len() < 2 {
        return 0.0;
    }
    let tokenized = intern(documents.iter().map(|document| rouge_tokens(document)));
    let mut pair_sum = 0.0;
    for (position, first) in tokenized.iter().enumerate() {
        for second in &tokenized[position + 1..] {
            pair_sum += rouge_l_f1(first, second);
        }
    }
    let unordered_pairs = (documents.len() * (documents.len() - 1) / 2) as f64;
    pair_sum / unordered_pairs
}

/// Self-BLEU-4: the mean over documents of the [`sentence_bleu4`] of the
/// document's [`tokenize_13a`] tokens against every other document as a
/// reference. Higher means the documents repeat each other's phrasing.
///
/// Cost: linear in the total number of tokens, plus the square of the number
/// of documents for the closest reference lengths. Each n-gram's count is
/// taken once per document, and the corpus keeps, for every n-gram, the two
/// highest counts and which document holds the highest: the most that any
/// reference other than document i holds is then the highest count, or the
/// second highest when document i holds the highest.
///
/// With fewer than two documents there is no reference and the score is 0.
pub fn self_bleu4(documents: &[&str]) -> f64 {
    if documents.len() < 2 {
        return 0.0;
    }
    let tokenized = intern(documents.iter().map(|document| tokenize_13a(document)));
    let counted: Vec<NgramCounts<'_, u32>> = tokenized
        .iter()
        .map(|tokens| NgramCounts::new(tokens))
        .collect();

    let mut highest: [HashMap<&[u32], HighestCounts>; BLEU_MAX_ORDER] = Default::default();
    for (document, counts) in counted.iter().enumerate() {
        for (order_index, order_counts) in counts.by_order.iter().enumerate() {
            for (&ngram, &count) in order_counts {
                highest[order_index]
                    .entry(ngram)
                    .or_default()
                    .record(document, count);
            }
        }
    }

    let total: f64 = counted
        .iter()
        .enumerate()
        .map(|(hypothesis, counts)| {
            let reference_lengths = counted
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != hypothesis)
                .map(|(_, other_counts)| other_counts.length);
            let Some(closest) = closest_reference_length(counts.length, reference_lengths) else {
                return 0.0;
            };
            bleu4(counts, closest, |order_index, ngram| {
                highest[order_index]
                    .get(ngram)
                    .map_or(0, |highest| highest.excluding(hypothesis))
            })
        })
        .sum();
    total / counted.len() as f64
}

/// distinct-n: the n-grams of the [`python_split`] tokens of every document,
/// pooled over the corpus (no n-gram spans two documents), distinct ones
/// divided by all. 1 means no n-gram repeats.
///
/// With no n-gram at all (no documents, documents shorter than n tokens, or
/// `n = 0`) the score is 0.
pub fn distinct_n(documents: &[&str], n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let tokenized: Vec<Vec<&str>> = documents
        .iter()
        .map(|document| python_split(document).collect())
        .collect();
    distinct_ratio(tokenized.iter().flat_map(|tokens| tokens.windows(n)))
}

/// Python's `str.split()` with no argument: the non-empty runs between Unicode
/// whitespace, where whitespace is Rust's set plus U+001C to U+001F.
pub fn python_split(text: &str) -> impl Iterator<Item = &str> {
    text.split(is_python_whitespace)
        .filter(|token| !token.is_empty())
}

/// The tokens of `rouge_score`'s default tokenizer, without stemming, as the
/// package uses it: the text lowercased (Unicode lowercasing, as Python's
/// `str.lower`), and every maximal run of the ASCII letters `a` to `z` and
/// digits `0` to `9` in it. Any other char, an accented letter included,
/// separates tokens.
pub fn rouge_tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|character: char| !(character.is_ascii_lowercase() || character.is_ascii_digit()))
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
        .collect()
}

/// ROUGE-L F1 of two token sequences: with `l` the length of their longest
/// common subsequence, precision `l / len(first)`, recall `l / len(second)`,
/// and F1 their harmonic mean. The score is symmetric in its arguments.
///
/// When one sequence is empty the score is 0, as in `rouge_score`. When both
/// are empty it is 1 here (`rouge_score` says 0): two documents without a
/// token are the same document as far as ROUGE can tell.
pub fn rouge_l_f1<T: PartialEq>(first: &[T], second: &[T]) -> f64 {
    if first.is_empty() && second.is_empty() {
        return 1.0;
    }
    if first.is_empty() || second.is_empty() {
        return 0.0;
    }
    let common = longest_common_subsequence(first, second) as f64;
    let precision = common / first.len() as f64;
    let recall = common / second.len() as f64;
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

/// The `13a` tokenizer of sacreBLEU (the one of mteval-v13a.pl, used by WMT).
///
/// It first removes `<skipped>` and hyphens that end a line (`-` before a
/// newline, which joins the two parts of the word), turns every other newline
/// into a space, and, if the text holds an `&`, unescapes `&quot;`, `&amp;`,
/// `&lt;` and `&gt;`, in that order (so `&amp;lt;` becomes `<`). Then four
/// rewrites run one after the other, each left to right without overlap:
/// 1. Spaces go around every ASCII punctuation char except the apostrophe,
///    the comma, the hyphen and the period.
/// 2. A period or comma after a char that is not an ASCII digit gets a space
///    before and after it (`end.` → `end .`, but `3.50` stays).
/// 3. A period or comma before a char that is not an ASCII digit gets a space
///    before and after it (`3,` at a text's end splits, `3,000` stays).
/// 4. A hyphen after an ASCII digit gets a space before and after it
///    (`2-3` → `2 - 3`, but `x-y` stays).
///
/// Finally the text splits at whitespace, as [`python_split`]. Case is kept.
pub fn tokenize_13a(text: &str) -> Vec<String> {
    let mut line = text
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    // The padding spaces let the pair rewrites see a char before the first one
    // and after the last one, as in sacreBLEU.
    let padded: Vec<char> = format!(" {line} ").chars().collect();

    let mut spaced = Vec::with_capacity(padded.len() * 2);
    for &character in &padded {
        if is_13a_spaced_punctuation(character) {
            spaced.extend([' ', character, ' ']);
        } else {
            spaced.push(character);
        }
    }
    let spaced = rewrite_char_pairs(
        &spaced,
        |before, after| !before.is_ascii_digit() && is_period_or_comma(after),
        |before, after| [before, ' ', after, ' '],
    );
    let spaced = rewrite_char_pairs(
        &spaced,
        |before, after| is_period_or_comma(before) && !after.is_ascii_digit(),
        |before, after| [' ', before, ' ', after],
    );
    let spaced = rewrite_char_pairs(
        &spaced,
        |before, after| before.is_ascii_digit() && after == '-',
        |before, after| [before, ' ', after, ' '],
    );
    let spaced: String = spaced.into_iter().collect();
    python_split(&spaced).map(str::to_owned).collect()
}

/// NLTK's `sentence_bleu` with the default BLEU-4 weights and smoothing method
/// 1, of one hypothesis against any number of references.
///
/// The modified precision of order k counts each hypothesis k-gram at most as
/// often as it occurs in the one reference where it occurs most, over all
/// hypothesis k-grams (at least 1, so a hypothesis shorter than k has
/// precision 0 over 1). If no unigram matches, BLEU is 0. Otherwise a zero
/// match count of a higher order becomes 0.1 (method 1's epsilon), over the
/// same denominator. BLEU is the geometric mean of the four precisions times
/// the brevity penalty: 1 when the hypothesis is longer than the closest
/// reference length, else `exp(1 - r / c)`, where c is the hypothesis length
/// and r the reference length closest to it, the shorter on a tie.
///
/// With no reference, BLEU is 0 (NLTK raises).
pub fn sentence_bleu4<T, Reference>(hypothesis: &[T], references: &[Reference]) -> f64
where
    T: Eq + Hash,
    Reference: AsRef<[T]>,
{
    let hypothesis = NgramCounts::new(hypothesis);
    let references: Vec<NgramCounts<'_, T>> = references
        .iter()
        .map(|reference| NgramCounts::new(reference.as_ref()))
        .collect();
    let reference_lengths = references.iter().map(|reference| reference.length);
    let Some(closest) = closest_reference_length(hypothesis.length, reference_lengths) else {
        return 0.0;
    };
    bleu4(&hypothesis, closest, |order_index, ngram| {
        references
            .iter()
            .map(|reference| {
                reference.by_order[order_index]
                    .get(ngram)
                    .copied()
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
    })
}

/// The bytes of a gzip header without a file name plus its trailer: magic (2),
/// method (1), flags (1), modification time (4), extra flags (1), operating
/// system (1), and then CRC-32 (4) and input size (4).
const GZIP_HEADER_AND_TRAILER_BYTES: usize = 18;

/// Per-order n-gram counts of one token sequence, for BLEU.
struct NgramCounts<'tokens, T> {
    length: usize,
    by_order: [HashMap<&'tokens [T], u64>; BLEU_MAX_ORDER],
}

impl<'tokens, T: Eq + Hash> NgramCounts<'tokens, T> {
    fn new(tokens: &'tokens [T]) -> Self {
        let by_order = std::array::from_fn(|index| {
            let mut counts = HashMap::new();
            for ngram in tokens.windows(index + 1) {
                *counts.entry(ngram).or_insert(0) += 1;
            }
            counts
        });
        Self {
            length: tokens.len(),
            by_order,
        }
    }
}

/// The two highest counts of one n-gram over the documents of a corpus, and
/// which document holds the highest.
#[derive(Debug, Default)]
struct HighestCounts {
    highest_document: usize,
    highest: u64,
    second_highest: u64,
}

impl HighestCounts {
    /// Takes one document's count; each document gives at most one per n-gram.
    fn record(&mut self, document: usize, count: u64) {
        if count > self.highest {
            self.second_highest = self.highest;
            self.highest = count;
            self.highest_document = document;
        } else if count > self.second_highest {
            self.second_highest = count;
        }
    }

    /// The highest count among all documents but `document`.
    fn excluding(&self, document: usize) -> u64 {
        if self.highest > 0 && self.highest_document == document {
            self.second_highest
        } else {
            self.highest
        }
    }
}

/// The reference length closest to the hypothesis length, the shorter one on
/// a tie, as NLTK picks it; `None` without references.
fn closest_reference_length(
    hypothesis_length: usize,
    reference_lengths: impl Iterator<Item = usize>,
) -> Option<usize> {
    reference_lengths.min_by_key(|&length| (length.abs_diff(hypothesis_length), length))
}

/// BLEU-4 with smoothing method 1; see [`sentence_bleu4`] for the definition.
/// `most_in_one_reference(order_index, ngram)` is the highest count of the
/// n-gram in any one reference, which clips the hypothesis count.
fn bleu4<T: Eq + Hash>(
    hypothesis: &NgramCounts<'_, T>,
    closest_reference_length: usize,
    most_in_one_reference: impl Fn(usize, &[T]) -> u64,
) -> f64 {
    let mut log_precision_sum = 0.0;
    for (order_index, hypothesis_counts) in hypothesis.by_order.iter().enumerate() {
        let order = order_index + 1;
        let clipped_matches: u64 = hypothesis_counts
            .iter()
            .map(|(&ngram, &count)| count.min(most_in_one_reference(order_index, ngram)))
            .sum();
        if clipped_matches == 0 && order == 1 {
            // NLTK returns 0 before smoothing when not even a unigram matches.
            return 0.0;
        }
        // NLTK divides by at least 1, so that a hypothesis shorter than the
        // order has a precision of 0 (smoothed to 0.1) rather than 0 / 0.
        let hypothesis_ngrams = (hypothesis.length + 1).saturating_sub(order).max(1) as f64;
        let precision = if clipped_matches == 0 {
            BLEU_SMOOTHING_EPSILON / hypothesis_ngrams
        } else {
            clipped_matches as f64 / hypothesis_ngrams
        };
        log_precision_sum += precision.ln() / BLEU_MAX_ORDER as f64;
    }

    // A unigram matched, so the hypothesis is not empty here.
    let brevity_penalty = if hypothesis.length > closest_reference_length {
        1.0
    } else {
        (1.0 - closest_reference_length as f64 / hypothesis.length as f64).exp()
    };
    brevity_penalty * log_precision_sum.exp()
}

/// Distinct items divided by all items, 0 when there are none.
fn distinct_ratio<Item: Eq + Hash>(items: impl Iterator<Item = Item>) -> f64 {
    let mut distinct = HashSet::new();
    let mut all = 0_u64;
    for item in items {
        distinct.insert(item);
        all += 1;
    }
    if all == 0 {
        0.0
    } else {
        distinct.len() as f64 / all as f64
    }
}

/// Maps every distinct token to a small integer, so that n-gram hashing and
/// the LCS inner loop work on integers rather than strings.
fn intern(token_lists: impl Iterator<Item = Vec<String>>) -> Vec<Vec<u32>> {
    let mut ids: HashMap<String, u32> = HashMap::new();
    token_lists
        .map(|tokens| {
            tokens
                .into_iter()
                .map(|token| {
                    let next_id = ids.len() as u32;
                    *ids.entry(token).or_insert(next_id)
                })
                .collect()
        })
        .collect()
}

/// The length of the longest common subsequence, by the classic dynamic
/// programme kept to one row as long as the shorter sequence.
fn longest_common_subsequence<T: PartialEq>(first: &[T], second: &[T]) -> usize {
    let (longer, shorter) = if first.len() >= second.len() {
        (first, second)
    } else {
        (second, first)
    };
    // Before the update for a token of the longer sequence, row[j] is the LCS
    // length of the longer sequence's prefix read so far and the shorter one's
    // first j + 1 tokens. Iterating with zip, with the left and upper-left
    // neighbours in locals, keeps bounds checks out of the inner loop.
    let mut row = vec![0_usize; shorter.len()];
    for longer_token in longer {
        let mut upper_left = 0;
        let mut left = 0;
        for (cell, shorter_token) in row.iter_mut().zip(shorter) {
            let above = *cell;
            left = if longer_token == shorter_token {
                upper_left + 1
            } else {
                above.max(left)
            };
            *cell = left;
            upper_left = above;
        }
    }
    row.last().copied().unwrap_or(0)
}

/// One gzip member of `content`, compressed at level 9, with the header bytes
/// of Python 3.11's `gzip` module and a modification time of 0, and with a file
/// name field when `file_name` is given.
fn gzip_member(content: &[u8], file_name: Option<&[u8]>) -> Vec<u8> {
    const FLAG_FILE_NAME: u8 = 0x08;
    const EXTRA_FLAGS_BEST_COMPRESSION: u8 = 2;
    const OPERATING_SYSTEM_UNKNOWN: u8 = 255;
    let flags = if file_name.is_some() {
        FLAG_FILE_NAME
    } else {
        0
    };
    let mut member = vec![0x1f, 0x8b, 0x08, flags, 0, 0, 0, 0];
    member.push(EXTRA_FLAGS_BEST_COMPRESSION);
    member.push(OPERATING_SYSTEM_UNKNOWN);
    if let Some(name) = file_name {
        member.extend_from_slice(name);
        member.push(0);
    }
    member.extend_from_slice(&deflate_best(content));
    let mut crc = Crc::new();
    crc.update(content);
    member.extend_from_slice(&crc.sum().to_le_bytes());
    // The trailer holds the input size modulo 2^32, as RFC 1952 says.
    member.extend_from_slice(&(content.len() as u32).to_le_bytes());
    member
}

/// Raw deflate (no zlib or gzip framing) at level 9.
fn deflate_best(content: &[u8]) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::best());
    // Deflating into a Vec cannot fail: the only writer is memory, and the
    // input is plain bytes, so no user input can make these calls return Err.
    encoder
        .write_all(content)
        .and_then(|()| encoder.finish())
        .expect("deflating into memory does not fail")
}

/// Whether Python's `str.isspace` holds: Unicode `White_Space` plus the ASCII
/// file, group, record and unit separators.
fn is_python_whitespace(character: char) -> bool {
    character.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&character)
}

/// The chars that the first rewrite of the `13a` tokenizer surrounds with
/// spaces: ASCII space to `&`, `(` to `+`, `/`, `:` to `@`, `[` to `` ` ``
/// and `{` to `~`. That is all ASCII punctuation but `'`, `,`, `-` and `.`.
fn is_13a_spaced_punctuation(character: char) -> bool {
    matches!(character, ' '..='&' | '('..='+' | '/' | ':'..='@' | '['..='`' | '{'..='~')
}

fn is_period_or_comma(character: char) -> bool {
    character == '.' || character == ','
}

/// Rewrites, left to right, every pair of neighbouring chars that `matches`
/// into the four chars of `replacement`, as a regular expression substitution
/// of a two-char pattern does: a rewritten pair's second char cannot start
/// another pair.
fn rewrite_char_pairs(
    text: &[char],
    matches: impl Fn(char, char) -> bool,
    replacement: impl Fn(char, char) -> [char; 4],
) -> Vec<char> {
    let mut rewritten = Vec::with_capacity(text.len() + text.len() / 2);
    let mut index = 0;
    while index < text.len() {
        match (text[index], text.get(index + 1).copied()) {
            (before, Some(after)) if matches(before, after) => {
                rewritten.extend(replacement(before, after));
                index += 2;
            }
            (character, _) => {
                rewritten.push(character);
                index += 1;
            }
        }
    }
    rewritten
}
