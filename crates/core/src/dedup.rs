//! Near-duplicate rejection (`--dedup`): MinHash estimates of the Jaccard
//! similarity of word 5-gram shingles, with locality-sensitive hashing so a
//! new response is compared only with the accepted ones likely to match.

use std::collections::HashMap;

/// The default `--dedup` threshold: responses at least this similar to an
/// accepted one are rejected.
pub const DEFAULT_THRESHOLD: f64 = 0.8;

/// Words per shingle.
pub const SHINGLE_WORDS: usize = 5;

/// Hash functions per signature: the estimate's standard error is about
/// sqrt(J (1 - J) / 128), under 0.04.
const PERMUTATIONS: usize = 128;

/// Bands of LSH; with 4 rows each, a pair at similarity 0.8 becomes a
/// candidate with probability 1 - (1 - 0.8^4)^32, above 0.9999, and one at
/// 0.3 with probability about 0.23, which the full signature then rules out.
const BANDS: usize = 32;
const ROWS: usize = PERMUTATIONS / BANDS;

/// The accepted responses' signatures, by slot.
#[derive(Debug, Clone)]
pub struct DedupIndex {
    threshold: f64,
    signatures: HashMap<u64, Vec<u64>>,
    buckets: HashMap<(usize, u64), Vec<u64>>,
}

/// An accepted response that a new one is too similar to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Twin {
    pub slot: u64,
    pub similarity: f64,
}

impl DedupIndex {
    pub fn new(threshold: f64) -> DedupIndex {
        DedupIndex {
            threshold,
            signatures: HashMap::new(),
            buckets: HashMap::new(),
        }
    }

    /// The most similar accepted response at or above the threshold, if any.
    pub fn twin(&self, text: &str) -> Option<Twin> {
        let signature = signature(text);
        let mut best: Option<Twin> = None;
        let mut seen = std::collections::HashSet::new();
        for (band, key) in band_keys(&signature) {
            for slot in self.buckets.get(&(band, key)).into_iter().flatten() {
                if !seen.insert(*slot) {
                    continue;
                }
                let similarity = estimate(&signature, &self.signatures[slot]);
                if similarity >= self.threshold
                    && best.is_none_or(|twin| similarity > twin.similarity)
                {
                    best = Some(Twin {
                        slot: *slot,
                        similarity,
                    });
                }
            }
        }
        best
    }

    /// Adds an accepted response.
    pub fn insert(&mut self, slot: u64, text: &str) {
        let signature = signature(text);
        for key in band_keys(&signature) {
            self.buckets.entry(key).or_default().push(slot);
        }
        self.signatures.insert(slot, signature);
    }
}

/// The estimated Jaccard similarity of two texts' word 5-gram shingles.
pub fn similarity(first: &str, second: &str) -> f64 {
    estimate(&signature(first), &signature(second))
}

fn estimate(first: &[u64], second: &[u64]) -> f64 {
    let equal = first.iter().zip(second).filter(|(a, b)| a == b).count();
    equal as f64 / PERMUTATIONS as f64
}

/// The MinHash signature: for each of the hash functions, the least hash of
/// any shingle. Words are lowercased so that case alone does not make a copy
/// look new; a text shorter than a shingle is one shingle.
fn signature(text: &str) -> Vec<u64> {
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    let shingles: Vec<u64> = if words.len() < SHINGLE_WORDS {
        vec![fnv1a(words.join(" ").as_bytes())]
    } else {
        words
            .windows(SHINGLE_WORDS)
            .map(|window| fnv1a(window.join(" ").as_bytes()))
            .collect()
    };
    (0..PERMUTATIONS as u64)
        .map(|permutation| {
            shingles
                .iter()
                .map(|shingle| splitmix64(shingle ^ splitmix64(permutation)))
                .min()
                .unwrap_or(u64::MAX)
        })
        .collect()
}

fn band_keys(signature: &[u64]) -> impl Iterator<Item = (usize, u64)> + '_ {
    signature.chunks(ROWS).enumerate().map(|(band, rows)| {
        (
            band,
            rows.iter()
                .fold(0xcbf2_9ce4_8422_2325, |key, row| splitmix64(key ^ row)),
        )
    })
}

/// FNV-1a: a stable hash, so signatures do not change between builds.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A strong 64-bit mixer, one per MinHash permutation.
fn splitmix64(mut value: u64) -> u64 {
    value = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}
