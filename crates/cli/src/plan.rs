//! `--dry-run`: what a resolved job would do and cost, estimated before any
//! request is sent. Nothing here touches the network or writes a file.

use std::fmt;

use corpusgen_core::cost::Pricing;
use corpusgen_core::journal::{JournalRecord, ResponseStatus};
use corpusgen_core::tokens::{Encoding, TokenCounter};
use corpusgen_core::{OutputPaths, Target};

use crate::generate::Resolved;
use crate::profiles::Kind;

/// The expected length of a response before a journal shows one: the mean
/// of the seed notebook's six gpt-4.1 responses (10014 chars / 6).
pub const DEFAULT_RESPONSE_CHARS: u64 = 1669;

/// The same response in tokens: 1669 chars at the o200k_base chars per token
/// of the seed's hand-curated explanations (9164 chars, 1902 tokens), which
/// a test recounts.
pub const DEFAULT_RESPONSE_TOKENS: u64 = 346;

/// The most requests whose prompts are counted one by one; a larger plan
/// extrapolates from their mean.
const MAX_COUNTED_PROMPTS: u64 = 1000;

/// What a job would send and cost, for `--dry-run`.
#[derive(Debug, Clone)]
pub struct Plan {
    pub profile: String,
    pub kind: Kind,
    pub endpoint: Option<String>,
    pub hipaa: bool,
    pub model: String,
    pub encoding: Encoding,
    /// Whether tiktoken knows the model, or `encoding` is the fallback.
    pub encoding_known: bool,
    pub target: String,
    pub length_policy: String,
    pub expected: Expected,
    /// Accepted responses of this job already in the journal, which a run
    /// resumes from.
    pub journaled: u64,
    /// The journal beside `--out` belongs to another job: the run would be
    /// refused without `--fresh`.
    pub other_job: bool,
    pub responses: u64,
    pub requests: u64,
    pub prompt_tokens_per_request: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub pricing: Option<Pricing>,
    pub cost_usd: Option<f64>,
    pub budget_usd: Option<f64>,
    /// With `--batch`: the margin of extra requests the first batch asks for.
    pub batch_margin: Option<f64>,
    /// The target of a char target, and the separator's length, for the
    /// corpus's expected length.
    pub target_chars: Option<u64>,
    pub separator_chars: u64,
}

/// The expected length of one response, and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expected {
    pub chars: f64,
    pub tokens: f64,
    /// The mean of this many accepted responses of the journal; 0 for the
    /// built-in default.
    pub from_journal: u64,
}

/// The plan of a resolved job. It reads the job's journal, if there is one
/// of this job, for the expected response length and what is already done.
pub fn plan(resolved: &Resolved) -> Plan {
    let spec = &resolved.spec;
    let model_encoding = Encoding::for_model(&spec.model);
    let encoding = match &spec.target {
        Target::Tokens { encoding, .. } => {
            Encoding::from_name(encoding).unwrap_or(model_encoding.encoding)
        }
        _ => model_encoding.encoding,
    };
    let counter = TokenCounter::new(encoding);
    let journal = read_journal(resolved, &counter);
    let expected = journal.expected();

    let responses = match &spec.target {
        Target::Count { responses } => responses.saturating_sub(journal.accepted),
        Target::Chars { chars, .. } => remaining_responses(*chars, journal.chars, expected.chars),
        Target::Tokens { tokens, .. } => {
            remaining_responses(*tokens, journal.tokens, expected.tokens)
        }
    };
    let per_request = u64::from(spec.per_request.max(1));
    let requests = responses.div_ceil(per_request);

    let counted = requests.min(MAX_COUNTED_PROMPTS);
    let first_slot = journal.accepted;
    let counted_tokens: u64 = (0..counted)
        .map(|call| {
            let request = spec.request_for(first_slot + call * per_request, 0, spec.per_request);
            counter.chat_prompt_tokens(&request.messages)
        })
        .sum();
    let prompt_tokens_per_request = match counted {
        0 => counter.chat_prompt_tokens(&spec.request_for(0, 0, spec.per_request).messages),
        _ => counted_tokens.div_ceil(counted),
    };
    let prompt_tokens = if counted == requests {
        counted_tokens
    } else {
        prompt_tokens_per_request * requests
    };
    let completion_tokens = (responses as f64 * expected.tokens).round() as u64;
    let pricing = resolved.pricing;
    Plan {
        profile: spec.provider.clone(),
        kind: resolved.kind,
        endpoint: spec.endpoint.clone(),
        hipaa: spec.hipaa,
        model: spec.model.clone(),
        encoding,
        encoding_known: model_encoding.known,
        target: spec.target.to_string(),
        length_policy: spec.length_policy.to_string(),
        expected,
        journaled: journal.accepted,
        other_job: journal.other_job,
        responses,
        requests,
        prompt_tokens_per_request,
        prompt_tokens,
        completion_tokens,
        pricing,
        cost_usd: pricing.map(|pricing| pricing.price.cost(prompt_tokens, completion_tokens)),
        budget_usd: resolved.budget_usd,
        batch_margin: None,
        target_chars: match spec.target {
            Target::Chars { chars, .. } => Some(chars),
            _ => None,
        },
        separator_chars: corpusgen_core::text::char_len(&spec.separator),
    }
}

impl Plan {
    /// The corpus's expected length in chars, separators counted: the target
    /// for a char target, else the expected responses at the expected length.
    pub fn corpus_chars(&self) -> u64 {
        if let Some(chars) = self.target_chars {
            return chars;
        }
        let responses = self.responses + self.journaled;
        let separators = responses.saturating_sub(1) * self.separator_chars;
        (responses as f64 * self.expected.chars).round() as u64 + separators
    }

    /// The plan of the same job sent through the provider's batch engine:
    /// the first batch asks for the margin more requests (exactly the count
    /// for a `--count` target), and the engine bills at the batch discount.
    pub fn through_batch(mut self, margin: f64, count_target: bool) -> Plan {
        if !count_target && self.requests > 0 {
            let with_margin = (self.requests as f64 * (1.0 + margin)).ceil() as u64;
            let factor = with_margin as f64 / self.requests as f64;
            self.prompt_tokens = (self.prompt_tokens as f64 * factor).round() as u64;
            self.completion_tokens = (self.completion_tokens as f64 * factor).round() as u64;
            self.requests = with_margin;
        }
        self.cost_usd = self.pricing.map(|pricing| {
            pricing
                .price
                .cost(self.prompt_tokens, self.completion_tokens)
                * corpusgen_core::batch::BATCH_DISCOUNT
        });
        // A count asks for exactly its responses: no margin.
        self.batch_margin = Some(if count_target { 0.0 } else { margin });
        self
    }
}

/// Responses still needed to add `target - done` at `mean` each.
fn remaining_responses(target: u64, done: u64, mean: f64) -> u64 {
    let left = target.saturating_sub(done);
    if left == 0 || mean <= 0.0 {
        return 0;
    }
    (left as f64 / mean).ceil() as u64
}

/// What the job's journal already holds, if it is this job's.
#[derive(Debug, Default)]
struct JournalSummary {
    accepted: u64,
    chars: u64,
    tokens: u64,
    with_usage: u64,
    completion_tokens: u64,
    other_job: bool,
}

impl JournalSummary {
    /// The mean of the journal's responses, or the seed's default. The
    /// completion tokens are the provider's usage when it reported some,
    /// else the tokens counted here.
    fn expected(&self) -> Expected {
        if self.accepted == 0 {
            return Expected {
                chars: DEFAULT_RESPONSE_CHARS as f64,
                tokens: DEFAULT_RESPONSE_TOKENS as f64,
                from_journal: 0,
            };
        }
        let accepted = self.accepted as f64;
        Expected {
            chars: self.chars as f64 / accepted,
            tokens: match self.with_usage {
                0 => self.tokens as f64 / accepted,
                with_usage => self.completion_tokens as f64 / with_usage as f64,
            },
            from_journal: self.accepted,
        }
    }
}

/// Reads the journal beside `--out` without opening it for writing; one of
/// another job, or none, counts as empty.
fn read_journal(resolved: &Resolved, counter: &TokenCounter) -> JournalSummary {
    let mut summary = JournalSummary::default();
    let path = OutputPaths::for_corpus(&resolved.spec.out).journal;
    let Ok(text) = std::fs::read_to_string(path) else {
        return summary;
    };
    let mut records = text
        .lines()
        .filter_map(|line| serde_json::from_str::<JournalRecord>(line).ok());
    match records.next() {
        Some(JournalRecord::Job(header)) if header.job_id == resolved.spec.job_id() => {}
        _ => {
            summary.other_job = true;
            return summary;
        }
    }
    let mut slots = std::collections::BTreeSet::new();
    for record in records {
        let JournalRecord::Response(response) = record else {
            continue;
        };
        if let Some(usage) = response.usage {
            summary.with_usage += 1;
            summary.completion_tokens += usage.completion_tokens;
        }
        if response.status == ResponseStatus::Accepted && slots.insert(response.index) {
            summary.accepted += 1;
            summary.chars += response.chars;
            summary.tokens += response
                .tokens
                .unwrap_or_else(|| counter.count(&response.text));
        }
    }
    summary
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "dry run: nothing is sent and no file is written")?;
        writeln!(
            f,
            "profile:     {} ({})",
            self.profile,
            kind_name(self.kind)
        )?;
        writeln!(
            f,
            "endpoint:    {}",
            self.endpoint
                .as_deref()
                .unwrap_or("none, answers come from the fixtures")
        )?;
        writeln!(
            f,
            "HIPAA:       {}",
            if self.hipaa {
                "required by --hipaa, and this profile may serve it"
            } else {
                "not required (no --hipaa)"
            }
        )?;
        writeln!(f, "model:       {}", self.model)?;
        writeln!(f, "target:      {}, {}", self.target, self.length_policy)?;
        let source = match self.expected.from_journal {
            0 => "the seed's gpt-4.1 mean, before any response".to_string(),
            n => format!("the mean of the journal's {n} accepted responses"),
        };
        writeln!(
            f,
            "per answer:  about {:.0} chars, {:.0} tokens ({source})",
            self.expected.chars, self.expected.tokens
        )?;
        if self.other_job {
            writeln!(
                f,
                "journal:     the one beside --out belongs to another job; the run is refused without --fresh"
            )?;
        }
        if self.journaled > 0 {
            writeln!(
                f,
                "journal:     {} accepted responses already, resumed from",
                self.journaled
            )?;
        }
        match self.batch_margin {
            Some(margin) if margin > 0.0 => writeln!(
                f,
                "requests:    about {} in the first batch for {} responses ({:.0}% margin for rejections)",
                self.requests,
                self.responses,
                margin * 100.0
            )?,
            Some(_) => writeln!(
                f,
                "requests:    {} in the first batch for {} responses; rejected ones go in a follow-up batch",
                self.requests, self.responses
            )?,
            None => writeln!(
                f,
                "requests:    about {} for {} responses, before any is rejected",
                self.requests, self.responses
            )?,
        }
        writeln!(
            f,
            "prompt:      {} tokens a request ({}{}, {} per message and {} for the reply included), {} in all",
            self.prompt_tokens_per_request,
            self.encoding,
            if self.encoding_known {
                ""
            } else {
                ", assumed: tiktoken does not know this model"
            },
            corpusgen_core::tokens::TOKENS_PER_MESSAGE,
            corpusgen_core::tokens::TOKENS_PER_REPLY,
            self.prompt_tokens
        )?;
        writeln!(f, "completion:  about {} tokens", self.completion_tokens)?;
        match (&self.pricing, self.cost_usd) {
            (Some(pricing), Some(cost)) => {
                writeln!(
                    f,
                    "price:       {:.2} / {:.2} USD per million input / output tokens ({})",
                    pricing.price.input_per_mtok, pricing.price.output_per_mtok, pricing.source
                )?;
                match self.batch_margin {
                    _ if self.kind == Kind::Replay => writeln!(
                        f,
                        "cost:        about {cost:.4} USD at the model's price; a replay bills nothing, and its manifest prices the recorded usage the same way"
                    )?,
                    Some(_) => writeln!(
                        f,
                        "cost:        about {cost:.4} USD at the batch price ({:.0}% of the price above)",
                        corpusgen_core::batch::BATCH_DISCOUNT * 100.0
                    )?,
                    None => writeln!(f, "cost:        about {cost:.4} USD")?,
                }
            }
            _ => {
                writeln!(
                    f,
                    "cost:        unknown: corpusgen has no price for `{model}`; add [prices.\"{model}\"] with input_per_mtok and output_per_mtok to the config file",
                    model = self.model
                )?;
            }
        }
        if let Some(budget) = self.budget_usd {
            let verdict = match self.cost_usd {
                Some(cost) if cost > budget => {
                    "the estimate passes it, so the job would stop early"
                }
                _ => "the estimate is within it",
            };
            writeln!(f, "budget:      {budget:.4} USD; {verdict}")?;
        }
        Ok(())
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Openai => "openai",
        Kind::Azure => "azure",
        Kind::Local => "local",
        Kind::Replay => "replay",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_response_tokens_follow_the_seed_s_chars_per_token() {
        let corpus = corpusgen_testkit::seed_explanations().join("^^^^");
        let chars = corpus.chars().count() as f64;
        let tokens = TokenCounter::new(Encoding::O200kBase).count(&corpus) as f64;
        let expected = (DEFAULT_RESPONSE_CHARS as f64 * tokens / chars).round() as u64;
        assert_eq!(
            DEFAULT_RESPONSE_TOKENS, expected,
            "{chars} chars, {tokens} tokens"
        );
    }

    #[test]
    fn remaining_responses_round_up() {
        assert_eq!(remaining_responses(9164, 0, 1669.0), 6);
        assert_eq!(remaining_responses(9164, 9000, 1669.0), 1);
        assert_eq!(remaining_responses(9164, 9164, 1669.0), 0);
    }
}
