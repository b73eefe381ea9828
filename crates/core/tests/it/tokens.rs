//! Token targets and the budget, in the assembler and the job loop.

use corpusgen_core::cost::{Price, PriceSource, Pricing};
use corpusgen_core::run::STOPPED_FOR_BUDGET;
use corpusgen_core::tokens::{Encoding, TokenCounter};
use corpusgen_core::{Assembler, Event, LengthPolicy, RunOptions, Target, Usage, run_job, split};
use proptest::prelude::*;

use crate::support::{ByRequest, chars, response, seed_spec, text};

fn tokens(tokens: u64) -> Target {
    Target::Tokens {
        tokens,
        encoding: "o200k_base".into(),
    }
}

fn run(
    spec: &corpusgen_core::JobSpec,
    provider: &impl corpusgen_core::ChatProvider,
    options: RunOptions,
) -> corpusgen_core::RunReport {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(run_job(spec, provider, options, &mut |_: &Event| {}))
        .unwrap()
}

#[test]
fn a_token_target_selects_by_tokens_and_reports_chars() {
    // Three responses of 10, 20 and 30 tokens and 50, 60 and 70 chars.
    let mut assembler = Assembler::measured(tokens(25), LengthPolicy::AtLeast, 4, 2);
    assembler.accept_measured(1, 60, 20);
    assert_eq!(assembler.selection(), None);
    assembler.accept_measured(0, 50, 10);
    let selection = assembler.selection().unwrap();
    assert_eq!(selection.responses, 2);
    assert_eq!(selection.response_chars, 110);
    assert_eq!(selection.joined_chars, 114);
    assert_eq!(assembler.selected_tokens(), Some(30));

    // Closest counts the separator's tokens: 10 + 2 + 20 = 32 is 7 over 25,
    // 10 is 15 under, so the longer prefix stays.
    let mut closest = Assembler::measured(tokens(25), LengthPolicy::Closest, 4, 2);
    closest.accept_measured(0, 50, 10);
    closest.accept_measured(1, 60, 20);
    assert_eq!(closest.selection().unwrap().responses, 2);
    // 10 + 2 + 20 = 32 is 17 over 15, 10 is 5 under: the shorter one.
    let mut closest = Assembler::measured(tokens(15), LengthPolicy::Closest, 4, 2);
    closest.accept_measured(0, 50, 10);
    closest.accept_measured(1, 60, 20);
    assert_eq!(closest.selection().unwrap().responses, 1);
    assert_eq!(closest.selected_tokens(), Some(10));
}

proptest! {
    #[test]
    fn a_token_selection_does_not_depend_on_arrival_order(
        lengths in prop::collection::vec((1u64..400, 1u64..100), 1..30),
        target in 1u64..2000,
        closest in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let policy = if closest { LengthPolicy::Closest } else { LengthPolicy::AtLeast };
        let mut in_order = Assembler::measured(tokens(target), policy, 4, 2);
        for (slot, (chars, measure)) in lengths.iter().enumerate() {
            in_order.accept_measured(slot as u64, *chars, *measure);
        }
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        fastrand::Rng::with_seed(seed).shuffle(&mut order);
        let mut shuffled = Assembler::measured(tokens(target), policy, 4, 2);
        for slot in order {
            let (chars, measure) = lengths[slot];
            shuffled.accept_measured(slot as u64, chars, measure);
        }
        prop_assert_eq!(in_order.selection(), shuffled.selection());
        prop_assert_eq!(in_order.selected_tokens(), shuffled.selected_tokens());
        if let (Some(selection), false) = (in_order.selection(), closest) {
            let sum: u64 = lengths[..selection.responses].iter().map(|(_, t)| t).sum();
            let before: u64 = lengths[..selection.responses - 1].iter().map(|(_, t)| t).sum();
            prop_assert!(sum >= target && before < target);
        }
    }
}

#[test]
fn the_loop_stops_at_a_token_target_counted_with_tiktoken() {
    let folder = tempfile::tempdir().unwrap();
    let mut spec = seed_spec(&folder.path().join("corpus.txt"), tokens(1000));
    spec.concurrency = 4;
    let provider = ByRequest::new(|index, _| Ok(response(text(900, index))));
    let report = run(&spec, &provider, RunOptions::default());

    let counter = TokenCounter::new(Encoding::O200kBase);
    let corpus = std::fs::read_to_string(&report.paths.corpus).unwrap();
    let counts: Vec<u64> = split(&corpus, "^^^^")
        .iter()
        .map(|response| counter.count(response))
        .collect();
    let sum: u64 = counts.iter().sum();
    assert!(sum >= 1000, "{counts:?}");
    assert!(sum - counts.last().unwrap() < 1000, "{counts:?}");
    let totals = &report.manifest.totals;
    assert_eq!(totals.response_tokens, Some(sum));
    assert_eq!(totals.token_encoding.as_deref(), Some("o200k_base"));
    assert_eq!(totals.target, "1000 tokens (o200k_base)");
    assert_eq!(report.selection.responses, counts.len());
}

fn usage_provider() -> ByRequest<
    impl Fn(u64, u32) -> Result<corpusgen_core::ChatResponse, corpusgen_core::ProviderError>
    + Send
    + Sync,
> {
    ByRequest::new(|index, _| {
        let mut answer = response(text(1000, index));
        answer.usage = Some(Usage {
            prompt_tokens: 40,
            completion_tokens: 300,
            total_tokens: 340,
        });
        Ok(answer)
    })
}

const GPT41: Pricing = Pricing {
    price: Price {
        input_per_mtok: 2.0,
        output_per_mtok: 8.0,
    },
    source: PriceSource::ConfigFile,
};

#[test]
fn the_budget_stops_issuing_and_writes_what_was_accepted() {
    let folder = tempfile::tempdir().unwrap();
    let mut spec = seed_spec(&folder.path().join("corpus.txt"), chars(9164));
    spec.concurrency = 4;
    let provider = usage_provider();
    let options = RunOptions {
        pricing: Some(GPT41),
        budget_usd: Some(0.01),
        ..RunOptions::default()
    };
    let report = run(&spec, &provider, options);
    // A call costs 40 x 2 + 300 x 8 = 2480 micro-USD: four fit in 0.01.
    assert_eq!(provider.calls(), 4);
    assert_eq!(report.selection.responses, 4);
    assert_eq!(report.manifest.stopped.as_deref(), Some(STOPPED_FOR_BUDGET));
    let cost = report.manifest.totals.cost_usd.unwrap();
    assert!((cost - 4.0 * 0.00248).abs() < 1e-9, "{cost}");
    assert!(cost <= 0.01);
    let corpus = std::fs::read_to_string(&report.paths.corpus).unwrap();
    assert_eq!(split(&corpus, "^^^^").len(), 4);
}

#[test]
fn a_job_within_its_budget_is_not_stopped() {
    let folder = tempfile::tempdir().unwrap();
    let spec = seed_spec(&folder.path().join("corpus.txt"), chars(3000));
    let provider = usage_provider();
    let options = RunOptions {
        pricing: Some(GPT41),
        budget_usd: Some(1.0),
        ..RunOptions::default()
    };
    let report = run(&spec, &provider, options);
    assert_eq!(report.selection.responses, 3);
    assert_eq!(report.manifest.stopped, None);
    let prices = report.manifest.prices.unwrap();
    assert_eq!(prices.source, "config file");
    assert_eq!(prices.model, "gpt-4.1");
}

#[test]
fn a_token_target_resumes_a_journal_written_without_token_counts() {
    let folder = tempfile::tempdir().unwrap();
    let out = folder.path().join("corpus.txt");
    let provider = ByRequest::new(|index, _| Ok(response(text(900, index))));
    let first = run(
        &seed_spec(&out, Target::Count { responses: 3 }),
        &provider,
        RunOptions::default(),
    );
    assert_eq!(provider.calls(), 3);
    let counter = TokenCounter::new(Encoding::O200kBase);
    let corpus = std::fs::read_to_string(&first.paths.corpus).unwrap();
    let counts: Vec<u64> = split(&corpus, "^^^^")
        .iter()
        .map(|response| counter.count(response))
        .collect();

    // The same job with a token target the first two responses reach: the
    // journal's texts are counted on resume, and nothing more is asked.
    let target = counts[0] + counts[1];
    let second = run(
        &seed_spec(&out, tokens(target)),
        &provider,
        RunOptions::default(),
    );
    assert_eq!(provider.calls(), 3);
    assert_eq!(second.selection.responses, 2);
    assert_eq!(second.manifest.totals.response_tokens, Some(target));
}

#[test]
fn responses_without_usage_count_at_the_estimate_against_the_budget() {
    let folder = tempfile::tempdir().unwrap();
    let spec = seed_spec(&folder.path().join("corpus.txt"), chars(9164));
    // No usage at all: each call counts as its prompt's tokens and a
    // thousand completion tokens, about 0.0081 USD at 2 and 8 USD.
    let provider = ByRequest::new(|index, _| Ok(response(text(1000, index))));
    let options = RunOptions {
        pricing: Some(GPT41),
        budget_usd: Some(0.02),
        ..RunOptions::default()
    };
    let report = run(&spec, &provider, options);
    assert_eq!(provider.calls(), 2);
    assert_eq!(report.manifest.stopped.as_deref(), Some(STOPPED_FOR_BUDGET));
    // The real cost cannot be known without usage.
    assert_eq!(report.manifest.totals.cost_usd, None);
}
