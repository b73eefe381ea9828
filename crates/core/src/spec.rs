//! The resolved description of one generation job.
//!
//! A `JobSpec` is built once by the command line (flags over environment over
//! config file over defaults), validated once, and then passed by reference to
//! everything that runs the job.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::provider::{ChatMessage, ChatRequest, Role};
use crate::text::char_len;
use crate::variants::{self, Axis, Variant};

/// The seed notebook's system prompt, sent unless `--system` or `--no-system` says otherwise.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a teacher that explains concepts in a way that is easy to understand but also fully accurate and detailed. Please make sure the output is in paragraph form.";

/// The seed notebook's user prompt, with the topic as a placeholder.
pub const DEFAULT_PROMPT_TEMPLATE: &str = "Explain {topic}";

/// The separator the seed notebook joins its responses with.
pub const DEFAULT_SEPARATOR: &str = "^^^^";

/// The seed notebook samples at temperature 1.
pub const DEFAULT_TEMPERATURE: f64 = 1.0;

/// How many times one request slot is sampled again after a rejected response
/// before the job gives up on it.
pub const DEFAULT_MAX_RESAMPLES: u32 = 5;

/// The placeholders a prompt template may use.
pub const PROMPT_PLACEHOLDERS: &[&str] = &["topic"];

/// Everything that determines one job's requests, its stopping rule and its outputs.
#[derive(Debug, Clone, Serialize)]
pub struct JobSpec {
    pub topic: String,
    pub prompt_template: String,
    pub system_prompt: Option<String>,
    /// The profile name the job runs on (`openai`, `replay`, ...), recorded for provenance
    /// and part of the job's identity.
    pub provider: String,
    pub model: String,
    pub sampling: Sampling,
    pub target: Target,
    pub length_policy: LengthPolicy,
    pub separator: String,
    pub concurrency: usize,
    pub max_resamples: u32,
    pub out: PathBuf,
    /// The job ran under the HIPAA policy (`--hipaa`). Recorded for
    /// provenance, not part of the job's identity.
    pub hipaa: bool,
    /// Where the provider was reached, for provenance (`None` for replay).
    pub endpoint: Option<String>,
    /// The axes the prompts vary along (`--diversify`); empty for none.
    pub diversify: Vec<Axis>,
    /// Reject responses at least this similar to an accepted one (`--dedup`).
    pub dedup: Option<f64>,
    /// Explanations asked for in one call (`--per-request`); 1 is the seed's
    /// one answer per call.
    pub per_request: u32,
}

/// The most explanations one call may ask for.
pub const MAX_PER_REQUEST: u32 = 20;

/// The sampling parameters sent with every request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sampling {
    pub temperature: f64,
    pub max_tokens: Option<u32>,
    /// With a seed S, request slot i sends S + i, so a provider that honours seeds
    /// reproduces the whole corpus.
    pub seed: Option<i64>,
}

/// When the job has collected enough.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A length in chars (Unicode scalar values, as Python's `len`).
    Chars {
        chars: u64,
        /// The file whose length this target was taken from (`--match-length`).
        matched_from: Option<PathBuf>,
    },
    /// An exact number of responses.
    Count { responses: u64 },
    /// A length in tokens of the responses, counted on this side in the
    /// named tiktoken encoding (`o200k_base`, ...), not from reported usage.
    Tokens { tokens: u64, encoding: String },
}

/// How the length target picks the prefix of responses that forms the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LengthPolicy {
    /// The seed's rule: stop at the first response after which the sum of response
    /// lengths (separators not counted) is at least the target.
    #[default]
    AtLeast,
    /// Of the two prefixes around the target, keep the one whose joined length
    /// (separators counted) is nearest to it; a tie keeps the longer one.
    Closest,
}

/// A job spec that cannot run, with the sentence that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

impl Target {
    /// The target of `--match-length FILE`: the char length of that file.
    pub fn match_length(path: &Path) -> Result<Target, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            SpecError(format!(
                "cannot read the --match-length file {}: {err}",
                path.display()
            ))
        })?;
        Ok(Target::Chars {
            chars: char_len(&text),
            matched_from: Some(path.to_path_buf()),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Chars {
                chars,
                matched_from: None,
            } => write!(f, "{chars} chars"),
            Target::Chars {
                chars,
                matched_from: Some(path),
            } => write!(f, "{chars} chars (the length of {})", path.display()),
            Target::Count { responses } => write!(f, "{responses} responses"),
            Target::Tokens { tokens, encoding } => write!(f, "{tokens} tokens ({encoding})"),
        }
    }
}

impl FromStr for LengthPolicy {
    type Err = SpecError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "at-least" => Ok(LengthPolicy::AtLeast),
            "closest" => Ok(LengthPolicy::Closest),
            other => Err(SpecError(format!(
                "unknown length policy `{other}`; use `at-least` or `closest`"
            ))),
        }
    }
}

impl fmt::Display for LengthPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LengthPolicy::AtLeast => "at-least",
            LengthPolicy::Closest => "closest",
        })
    }
}

impl JobSpec {
    /// Checks every value once, before any request is made.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.topic.trim().is_empty() {
            return Err(SpecError("the topic is empty; pass --topic TEXT".into()));
        }
        if self.prompt_template.trim().is_empty() {
            return Err(SpecError(
                "the prompt is empty; pass --prompt TEXT or leave it at its default".into(),
            ));
        }
        let mut known: Vec<&str> = PROMPT_PLACEHOLDERS.to_vec();
        known.extend(self.diversify.iter().map(|axis| axis.name.as_str()));
        check_placeholders(&self.prompt_template, &known)?;
        if let Some(system) = &self.system_prompt {
            check_placeholders(system, &known)?;
        }
        for axis in &self.diversify {
            if axis.values.is_empty() {
                return Err(SpecError(format!(
                    "the --diversify axis `{}` has no values; give it some in the config file's [diversify] table",
                    axis.name
                )));
            }
            let used = self.prompt_template.contains(&format!("{{{}}}", axis.name))
                || self
                    .system_prompt
                    .as_ref()
                    .is_some_and(|system| system.contains(&format!("{{{}}}", axis.name)))
                || (axis.name == "format"
                    && self.system_prompt.as_deref() == Some(DEFAULT_SYSTEM_PROMPT));
            if !used {
                return Err(SpecError(format!(
                    "--diversify varies {name}, but the prompt has no {{{name}}} placeholder; add it to --prompt or leave --prompt at its default",
                    name = axis.name
                )));
            }
        }
        if self.model.trim().is_empty() {
            return Err(SpecError(
                "the model name is empty; pass --model NAME".into(),
            ));
        }
        if !(0.0..=2.0).contains(&self.sampling.temperature) {
            return Err(SpecError(format!(
                "temperature {} is outside 0..2; pass --temperature between 0 and 2",
                self.sampling.temperature
            )));
        }
        if self.sampling.max_tokens == Some(0) {
            return Err(SpecError(
                "--max-tokens 0 leaves no room for an answer; pass a positive number".into(),
            ));
        }
        match self.target {
            Target::Chars {
                chars: 0,
                ref matched_from,
            } => {
                return Err(SpecError(match matched_from {
                    Some(path) => format!(
                        "the --match-length file {} is empty, so the target would be 0 chars; pass a non-empty file",
                        path.display()
                    ),
                    None => {
                        "the target is 0 chars; pass --target-chars with a positive number".into()
                    }
                }));
            }
            Target::Count { responses: 0 } => {
                return Err(SpecError(
                    "the target is 0 responses; pass --count with a positive number".into(),
                ));
            }
            Target::Tokens { tokens: 0, .. } => {
                return Err(SpecError(
                    "the target is 0 tokens; pass --target-tokens with a positive number".into(),
                ));
            }
            Target::Tokens { ref encoding, .. }
                if crate::tokens::Encoding::from_name(encoding).is_none() =>
            {
                return Err(SpecError(format!(
                    "the token encoding `{encoding}` is not one corpusgen counts with; use o200k_base, cl100k_base or o200k_harmony"
                )));
            }
            _ => {}
        }
        if !(1..=MAX_PER_REQUEST).contains(&self.per_request) {
            return Err(SpecError(format!(
                "--per-request {} is out of range; ask for 1 to {MAX_PER_REQUEST} explanations per call",
                self.per_request
            )));
        }
        if let Some(threshold) = self.dedup
            && !(threshold > 0.0 && threshold <= 1.0)
        {
            return Err(SpecError(format!(
                "--dedup={threshold} is not a similarity; pass a threshold above 0 and at most 1, such as --dedup=0.8"
            )));
        }
        if self.separator.is_empty() {
            return Err(SpecError(
                "the separator is empty, so the corpus could not be split again; pass a non-empty --separator".into(),
            ));
        }
        if self.concurrency == 0 {
            return Err(SpecError(
                "--concurrency 0 would send nothing; pass 1 or more".into(),
            ));
        }
        if self.out.as_os_str().is_empty() || self.out.file_name().is_none() {
            return Err(SpecError(format!(
                "the output path `{}` names no file; pass --out FILE",
                self.out.display()
            )));
        }
        Ok(())
    }

    /// The user prompt with the topic filled in; the variant's placeholders
    /// stay, as they differ per request.
    pub fn user_prompt(&self) -> String {
        self.prompt_template.replace("{topic}", &self.topic)
    }

    /// The messages before any variant is filled in: the job's templates.
    pub fn messages(&self) -> Vec<ChatMessage> {
        self.messages_for(None)
    }

    /// The messages of one request: the templates with its variant filled in.
    /// With a format axis, the default system prompt's "paragraph form"
    /// sentence asks for the variant's format instead.
    fn messages_for(&self, variant: Option<&Variant>) -> Vec<ChatMessage> {
        let fill = |text: &str| match variant {
            Some(variant) => variant.fill(&text.replace("{topic}", &self.topic)),
            None => text.replace("{topic}", &self.topic),
        };
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = &self.system_prompt {
            let has_format = self.diversify.iter().any(|axis| axis.name == "format");
            let system = if has_format && system == DEFAULT_SYSTEM_PROMPT {
                system.replace(
                    "Please make sure the output is in paragraph form.",
                    "Please make sure the output is written as {format}.",
                )
            } else {
                system.clone()
            };
            messages.push(ChatMessage {
                role: Role::System,
                content: fill(&system),
            });
        }
        messages.push(ChatMessage {
            role: Role::User,
            content: fill(&self.prompt_template),
        });
        messages
    }

    /// The variant of slot `index`, when the job diversifies. The slots of
    /// one `--per-request` call share the call's variant.
    pub fn variant(&self, index: u64) -> Option<Variant> {
        (!self.diversify.is_empty()).then(|| {
            variants::variant(
                &self.diversify,
                self.sampling.seed.unwrap_or(0) as u64,
                index / u64::from(self.per_request.max(1)),
            )
        })
    }

    /// The request for slot `index`, sample `resample` of that slot.
    pub fn request(&self, index: u64, resample: u32) -> ChatRequest {
        self.request_for(index, resample, 1)
    }

    /// The request for `explanations` slots from `index` on. Above one, the
    /// user prompt asks for that many distinct explanations as a JSON object.
    pub fn request_for(&self, index: u64, resample: u32, explanations: u32) -> ChatRequest {
        let variant = self.variant(index);
        let mut messages = self.messages_for(variant.as_ref());
        if explanations > 1
            && let Some(user) = messages.last_mut()
        {
            user.content.push_str(&format!(
                "\n\nGive {explanations} different explanations, each complete on its own, as a JSON object {{\"explanations\": [...]}} holding exactly {explanations} strings."
            ));
        }
        ChatRequest {
            index,
            resample,
            explanations,
            model: self.model.clone(),
            messages,
            temperature: self.sampling.temperature,
            max_tokens: self.sampling.max_tokens,
            seed: self
                .sampling
                .seed
                .map(|seed| request_seed(seed, index, resample)),
            variant: variant.map(|variant| variant.label()),
        }
    }

    /// A stable hash of everything that shapes the responses and how they are
    /// joined. The target, the length policy, the concurrency and the output
    /// path are left out on purpose: the same responses serve a larger target
    /// or another policy, so a re-run with those changed resumes.
    pub fn job_id(&self) -> String {
        let identity = serde_json::json!({
            "provider": self.provider,
            "model": self.model,
            "messages": self.messages(),
            "temperature": self.sampling.temperature,
            "max_tokens": self.sampling.max_tokens,
            "seed": self.sampling.seed,
            "separator": self.separator,
            "diversify": self.diversify,
            "dedup": self.dedup,
            "per_request": self.per_request,
        });
        let digest = Sha256::digest(identity.to_string().as_bytes());
        digest
            .iter()
            .take(16)
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// The seed sent for a slot and sample: S + i for the first sample, moved by a
/// large odd stride for each resample so that a seed-honouring provider does
/// not repeat the rejected answer.
fn request_seed(seed: i64, index: u64, resample: u32) -> i64 {
    const RESAMPLE_STRIDE: i64 = 1_000_003;
    seed.wrapping_add(index as i64)
        .wrapping_add(i64::from(resample).wrapping_mul(RESAMPLE_STRIDE))
}

/// Rejects `{name}` placeholders that the template engine does not know, so a
/// typo such as `{topc}` is not sent to the model verbatim. Braces that do not
/// enclose a plain lowercase name (LaTeX, JSON) are left alone.
fn check_placeholders(template: &str, known: &[&str]) -> Result<(), SpecError> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let name = &after[..close];
        let is_placeholder =
            !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        if is_placeholder && !known.contains(&name) {
            return Err(SpecError(format!(
                "the prompt uses the unknown placeholder {{{name}}}; the placeholders are {}",
                known
                    .iter()
                    .map(|known| format!("{{{known}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}
