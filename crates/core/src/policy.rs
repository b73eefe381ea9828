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
        Target::Chars { chars: target, .. } => {
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
    /// Lengths of slots 0..n, all completed.
    prefix: Vec<u64>,
    /// Completed slots past a gap, waiting for the slots before them.
    waiting: BTreeMap<u64, u64>,
    completed_chars: u64,
    completed: u64,
    selection: Option<Selection>,
}

impl Assembler {
    pub fn new(target: Target, policy: LengthPolicy, separator_chars: u64) -> Self {
        Assembler {
            target,
            policy,
            separator_chars,
            prefix: Vec::new(),
            waiting: BTreeMap::new(),
            completed_chars: 0,
            completed: 0,
            selection: None,
        }
    }

    /// Records the accepted response of a slot. Each slot is accepted once.
    pub fn accept(&mut self, index: u64, chars: u64) {
        self.completed += 1;
        self.completed_chars += chars;
        self.waiting.insert(index, chars);
        while let Some(chars) = self.waiting.remove(&(self.prefix.len() as u64)) {
            self.prefix.push(chars);
        }
        if self.selection.is_none() {
            self.selection = select(
                &self.prefix,
                &self.target,
                self.policy,
                self.separator_chars,
            );
        }
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

    /// The mean accepted length, the expectation for a request still in flight.
    pub fn mean_chars(&self) -> Option<f64> {
        (self.completed > 0).then(|| self.completed_chars as f64 / self.completed as f64)
    }

    /// Whether one more request could still be needed, given the requests in
    /// flight and the responses received but not yet counted (`pending`,
    /// whose lengths are known).
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
            Target::Chars { chars: target, .. } => {
                let known = self.completed + pending;
                let known_chars = self.completed_chars + pending_chars;
                if known == 0 {
                    return in_flight == 0;
                }
                let mean = known_chars as f64 / known as f64;
                let separators = match self.policy {
                    LengthPolicy::AtLeast => 0.0,
                    LengthPolicy::Closest => self.separator_chars as f64,
                };
                let expected = known_chars as f64
                    + separators * known.saturating_sub(1) as f64
                    + (mean + separators) * in_flight as f64;
                expected < target as f64
            }
        }
    }
}
