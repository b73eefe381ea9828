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

/// Whether `text` can stand between two separators and be split out again
/// unchanged. It must not contain the separator, and must not start or end
/// with a part of it that would make a new separator across the boundary:
/// with `^^^^`, the text `a^` joined before `b` gives `a^^^^^b`, which splits
/// as `a` and `^b`. Checking `separator + text + separator` for occurrences
/// other than the two at its ends covers every way a join could go wrong. The
/// rule is conservative: it also refuses a few texts that a left-to-right split
/// would recover (an empty text, say), which is cheaper than a lost response.
pub fn splits_cleanly(text: &str, separator: &str) -> bool {
    if separator.is_empty() {
        return false;
    }
    let framed = format!("{separator}{text}{separator}");
    let last = framed.len() - separator.len();
    let mut from = 0;
    while let Some(found) = framed[from..].find(separator) {
        let position = from + found;
        if position != 0 && position != last {
            return false;
        }
        // Step one char past this occurrence's start, to find overlapping ones.
        from = position + framed[position..].chars().next().map_or(1, char::len_utf8);
        if from > last {
            break;
        }
    }
    true
}

/// The responses of a corpus file. The inverse of `join` for responses that
/// do not contain the separator, which is why a response that does not `splits_cleanly` is never written.
pub fn split<'a>(corpus: &'a str, separator: &str) -> Vec<&'a str> {
    corpus.split(separator).collect()
}
