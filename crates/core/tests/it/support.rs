//! Providers and specs for driving the job loop without any network.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use corpusgen_core::spec::{DEFAULT_MAX_RESAMPLES, DEFAULT_SYSTEM_PROMPT};
use corpusgen_core::{
    ChatProvider, ChatRequest, ChatResponse, JobSpec, LengthPolicy, ProviderError,
    ProviderErrorKind, Sampling, Target,
};

/// The seed's gpt-4.1 run: six responses for target 9164.
pub const SEED_GPT41_LENGTHS: [usize; 6] = [1710, 1419, 1899, 1839, 1663, 1484];

/// A job like the seed's automated cell, writing to `out`.
pub fn seed_spec(out: &Path, target: Target) -> JobSpec {
    JobSpec {
        topic: "DPO (Direct Preference Optimization)".into(),
        prompt_template: "Explain {topic}".into(),
        system_prompt: Some(DEFAULT_SYSTEM_PROMPT.into()),
        provider: "scripted".into(),
        model: "gpt-4.1".into(),
        sampling: Sampling {
            temperature: 1.0,
            max_tokens: None,
            seed: None,
        },
        target,
        length_policy: LengthPolicy::AtLeast,
        separator: "^^^^".into(),
        concurrency: 1,
        max_resamples: DEFAULT_MAX_RESAMPLES,
        out: out.to_path_buf(),
        hipaa: false,
        endpoint: None,
        diversify: Vec::new(),
        dedup: None,
        per_request: 1,
    }
}

pub fn chars(chars: u64) -> Target {
    Target::Chars {
        chars,
        matched_from: None,
    }
}

/// A deterministic text of exactly `chars` chars, distinct per `salt`.
pub fn text(chars: usize, salt: u64) -> String {
    let stem = format!("response {salt} é ");
    stem.chars().cycle().take(chars).collect()
}

pub fn response(text: String) -> ChatResponse {
    ChatResponse {
        text,
        finish_reason: Some("stop".into()),
        usage: None,
        response_id: None,
        model: Some("gpt-4.1-2025-04-14".into()),
        attempts: 1,
        rate_limit: None,
    }
}

/// Answers every request from a function of its slot and resample, after a
/// delay that is also a function of them, so completions arrive in an order
/// unrelated to the slots. Counts the requests it received.
pub struct ByRequest<F> {
    answer: F,
    delays_ms: Vec<u64>,
    pub calls: AtomicUsize,
    pub seen: Mutex<BTreeMap<(u64, u32), usize>>,
}

impl<F> ByRequest<F>
where
    F: Fn(u64, u32) -> Result<ChatResponse, ProviderError> + Send + Sync,
{
    pub fn new(answer: F) -> Self {
        ByRequest {
            answer,
            delays_ms: Vec::new(),
            calls: AtomicUsize::new(0),
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn with_delays(mut self, delays_ms: Vec<u64>) -> Self {
        self.delays_ms = delays_ms;
        self
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl<F> ChatProvider for ByRequest<F>
where
    F: Fn(u64, u32) -> Result<ChatResponse, ProviderError> + Send + Sync,
{
    fn name(&self) -> &str {
        "scripted"
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        *self
            .seen
            .lock()
            .unwrap()
            .entry((request.index, request.resample))
            .or_default() += 1;
        if !self.delays_ms.is_empty() {
            let delay = self.delays_ms[request.index as usize % self.delays_ms.len()];
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        (self.answer)(request.index, request.resample)
    }
}

/// Slot i answers with a text of `lengths[i]` chars; past the list, an error
/// as the replay provider gives when its fixtures run out.
pub fn lengths_provider(
    lengths: Vec<usize>,
) -> ByRequest<impl Fn(u64, u32) -> Result<ChatResponse, ProviderError> + Send + Sync> {
    ByRequest::new(move |index, _resample| match lengths.get(index as usize) {
        Some(length) => Ok(response(text(*length, index))),
        None => Err(ProviderError::new(
            ProviderErrorKind::FixturesExhausted,
            "no scripted response left",
        )),
    })
}
