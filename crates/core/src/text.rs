//! Lengths and the corpus format: responses joined by a separator.

/// The length of a text as the seed measures it: Unicode scalar values, as
/// Python's `len`, never bytes.
pub fn char_len(text: &str) -> u64 {
    text.chars().count() as u64
}

/// The corpus file's content: the responses joined by the separator, with no
/// header and no trailing newline.
pub fn join(responses: &[impl AsRef<str>], separator: &str) -> String {
    let mut corpus = String::new();
    for (position, response) in responses.iter().enumerate() {
        if position > 0 {
            corpus.push_str(separator);
        }
        corpus.push_str(response.as_ref());
    }
    corpus
}

/// The responses of a corpus file. The inverse of `join` for responses that
/// do not contain the separator, which is why such responses are never written.
pub fn split<'a>(corpus: &'a str, separator: &str) -> Vec<&'a str> {
    corpus.split(separator).collect()
}
