//! The length policy: which prefix of the responses, in request-slot order,
//! forms the corpus.

use std::collections::BTreeMap;

use crate::spec::{LengthPolicy, Target};

/// The prefix of responses the corpus is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// How many responses, counted from slot 0.
    pub responses: usize,
    /// The sum of their lengths, separators not counted.
    pub response_chars: u64,
    /// The length of the corpus file: responses plus separators.
    pub joined_chars: u64,
}

/// Picks the corpus prefix from response lengths in slot order, or `None`
/// while the lengths so far cannot satisfy the target yet.
///
/// `at-least` stops at the first response after which the sum of response
/// lengths reaches the target (the seed's loop). `closest` finds the first
/// prefix whose joined length reaches the target and keeps it or the one
/// before it, whichever joined length is nearer to the target (a tie keeps the
/// longer, which also reaches the target).
///
/// For a token target, `lengths` and `separator_chars` are token counts and
/// so are the selection's lengths; the `Assembler` turns them back into chars.
/// The joined length in tokens is the responses' tokens plus the separator's
/// tokens between them, as if each were encoded alone.
pub fn select(
    lengths: &[u64],
    target: &Target,
    policy: LengthPolicy,
    separator_chars: u64,
) -> Option<Selection> {
    let joined =
        |responses: usize, sum: u64| sum + separator_chars * (responses.saturating_sub(1) as u64);
    let selection = |responses: usize, sum: u64| Selection {
        responses,
        response_chars: sum,
        joined_chars: joined(responses, sum),
    };
    match *target {
        Target::Count { responses } => {
            let responses = usize::try_from(responses).unwrap_or(usize::MAX);
            (lengths.len() >= responses)
                .then(|| selection(responses, lengths[..responses].iter().sum()))
        }
        Target::Chars { chars: target, .. } | Target::Tokens { tokens: target, .. } => {
            let mut sum = 0;
            for (position, length) in lengths.iter().enumerate() {
                let previous_sum = sum;
                sum += length;
                let responses = position + 1;
                match policy {
                    LengthPolicy::AtLeast if sum >= target => {
                        return Some(selection(responses, sum));
                    }
                    LengthPolicy::Closest if joined(responses, sum) >= target => {
                        let longer = selection(responses, sum);
                        if responses == 1 {
                            return Some(longer);
                        }
                        let shorter = selection(responses - 1, previous_sum);
                        let over = longer.joined_chars - target;
                        let under = target - shorter.joined_chars;
                        return Some(if under < over { shorter } else { longer });
                    }
                    _ => {}
                }
            }
            None
        }
    }
}

/// Collects response lengths as they complete, in any order, and decides on
/// the corpus prefix as soon as the contiguous run from slot 0 allows it.
///
/// It holds a length per slot, never the texts, so memory stays small however
/// large the corpus grows.
#[derive(Debug, Clone)]
pub struct Assembler {
    target: Target,
    policy: LengthPolicy,
    separator_chars: u64,
    /// The separator in the target's unit: its tokens for a token target,
    /// else its chars.
    separator_measure: u64,
    /// Lengths in the target's unit of slots 0..n, all completed.
    prefix: Vec<u64>,
    /// Lengths in chars of the same slots.
    prefix_chars: Vec<u64>,
    /// Completed slots past a gap, waiting for the slots before them, with
    /// their chars and their length in the target's unit.
    waiting: BTreeMap<u64, (u64, u64)>,
    completed_chars: u64,
    completed_measure: u64,
    completed: u64,
    selection: Option<Selection>,
    /// The selected responses' tokens, for a token target.
    selected_tokens: Option<u64>,
}

impl Assembler {
    pub fn new(target: Target, policy: LengthPolicy, separator_chars: u64) -> Self {
        Assembler::measured(target, policy, separator_chars, separator_chars)
    }

    /// An assembler whose target is in another unit than chars (tokens):
    /// `separator_measure` is the separator's length in that unit, and
    /// responses come in with `accept_measured`.
    pub fn measured(
        target: Target,
        policy: LengthPolicy,
        separator_chars: u64,
        separator_measure: u64,
    ) -> Self {
        Assembler {
            target,
            policy,
            separator_chars,
            separator_measure,
            prefix: Vec::new(),
            prefix_chars: Vec::new(),
            waiting: BTreeMap::new(),
            completed_chars: 0,
            completed_measure: 0,
            completed: 0,
            selection: None,
            selected_tokens: None,
        }
    }

    /// Records the accepted response of a slot. Each slot is accepted once.
    pub fn accept(&mut self, index: u64, chars: u64) {
        self.accept_measured(index, chars, chars);
    }

    /// Records the accepted response of a slot with its length in chars and
    /// in the target's unit (its tokens, for a token target).
    pub fn accept_measured(&mut self, index: u64, chars: u64, measure: u64) {
        self.completed += 1;
        self.completed_chars += chars;
        self.completed_measure += measure;
        self.waiting.insert(index, (chars, measure));
        while let Some((chars, measure)) = self.waiting.remove(&(self.prefix.len() as u64)) {
            self.prefix.push(measure);
            self.prefix_chars.push(chars);
        }
        if self.selection.is_none()
            && let Some(selected) = select(
                &self.prefix,
                &self.target,
                self.policy,
                self.separator_measure,
            )
        {
            if matches!(self.target, Target::Tokens { .. }) {
                self.selected_tokens = Some(selected.response_chars);
            }
            self.selection = Some(self.in_chars(selected.responses));
        }
    }

    /// The selection of the first `responses` slots, its lengths in chars.
    fn in_chars(&self, responses: usize) -> Selection {
        let response_chars = self.prefix_chars[..responses].iter().sum();
        Selection {
            responses,
            response_chars,
            joined_chars: response_chars
                + self.separator_chars * responses.saturating_sub(1) as u64,
        }
    }

    /// Every response of the contiguous run from slot 0, for a job that
    /// stopped before its target (`--budget-usd`): the corpus it can have.
    pub fn partial(&self) -> Selection {
        self.in_chars(self.prefix.len())
    }

    /// The tokens of the contiguous run's first `responses` slots, for a
    /// token target.
    pub fn prefix_tokens(&self, responses: usize) -> Option<u64> {
        matches!(self.target, Target::Tokens { .. })
            .then(|| self.prefix[..responses.min(self.prefix.len())].iter().sum())
    }

    /// The corpus prefix, once the target is met.
    pub fn selection(&self) -> Option<Selection> {
        self.selection
    }

    /// How many slots have an accepted response.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// The sum of all accepted lengths, in or out of order.
    pub fn completed_chars(&self) -> u64 {
        self.completed_chars
    }

    /// The sum of all accepted lengths in the target's unit.
    pub fn completed_measure(&self) -> u64 {
        self.completed_measure
    }

    /// The selected responses' tokens, once a token target is met.
    pub fn selected_tokens(&self) -> Option<u64> {
        self.selected_tokens
    }

    /// The mean accepted length, the expectation for a request still in flight.
    pub fn mean_chars(&self) -> Option<f64> {
        (self.completed > 0).then(|| self.completed_chars as f64 / self.completed as f64)
    }

    /// Whether one more request could still be needed, given the requests in
    /// flight and the responses received but not yet counted (`pending`,
    /// whose lengths are known; `pending_chars` is in the target's unit).
    ///
    /// With nothing known about lengths, only one request goes out first;
    /// after that, requests go out while the known chars plus the expected
    /// chars of those in flight (the mean so far) fall short of the target.
    pub fn wants_more(
        &self,
        issued_slots: u64,
        in_flight: u64,
        pending: u64,
        pending_chars: u64,
    ) -> bool {
        if self.selection.is_some() {
            return false;
        }
        match self.target {
            Target::Count { responses } => issued_slots < responses,
            Target::Chars { chars: target, .. } | Target::Tokens { tokens: target, .. } => {
                let known = self.completed + pending;
                let known_chars = self.completed_measure + pending_chars;
                if known == 0 {
                    return in_flight == 0;
                }
                let mean = known_chars as f64 / known as f64;
                let separators = match self.policy {
                    LengthPolicy::AtLeast => 0.0,
                    LengthPolicy::Closest => self.separator_measure as f64,
                };
                let expected = known_chars as f64
                    + separators * known.saturating_sub(1) as f64
                    + (mean + separators) * in_flight as f64;
                expected < target as f64
            }
        }
    }
}
