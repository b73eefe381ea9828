//! The job loop end to end against scripted providers: outputs, order
//! independence, rejection and resume.

use std::fs;
use std::path::Path;

use corpusgen_core::journal::{JournalRecord, ResponseStatus};
use corpusgen_core::{
    Event, JobSpec, ProviderErrorKind, RejectReason, RunError, RunOptions, Target, char_len,
    run_job, split,
};
use proptest::prelude::*;

use crate::support::{
    ByRequest, SEED_GPT41_LENGTHS, chars, lengths_provider, response, seed_spec, text,
};

/// A current-thread runtime whose clock jumps ahead whenever every task
/// sleeps, so scripted latencies cost no real time.
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

fn run<P: corpusgen_core::ChatProvider>(
    spec: &JobSpec,
    provider: &P,
    options: RunOptions,
) -> Result<corpusgen_core::RunReport, RunError> {
    paused_runtime().block_on(run_job(spec, provider, options, &mut |_: &Event| {}))
}

fn journal_records(path: &Path) -> Vec<JournalRecord> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn seed_gpt41_lengths_give_six_responses_and_a_10034_char_corpus() {
    let folder = tempfile::tempdir().unwrap();
    let spec = seed_spec(&folder.path().join("data/arxiv/gpt41.txt"), chars(9164));
    let provider = lengths_provider(SEED_GPT41_LENGTHS.to_vec());

    let report = run(&spec, &provider, RunOptions::default()).unwrap();

    assert_eq!(provider.calls(), 6);
    let corpus = fs::read_to_string(&report.paths.corpus).unwrap();
    assert_eq!(char_len(&corpus), 10034);
    let responses = split(&corpus, "^^^^");
    assert_eq!(
        responses
            .iter()
            .map(|r| char_len(r) as usize)
            .collect::<Vec<_>>(),
        SEED_GPT41_LENGTHS
    );
    assert!(!corpus.ends_with('\n'), "no trailing newline");
    let totals = &report.manifest.totals;
    assert_eq!(
        (
            totals.responses_used,
            totals.response_chars,
            totals.corpus_chars
        ),
        (6, 10014, 10034)
    );

    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&report.paths.manifest).unwrap()).unwrap();
    assert_eq!(manifest["totals"]["corpus_chars"], 10034);
    assert_eq!(manifest["job"]["model"], "gpt-4.1");

    let records = journal_records(&report.paths.journal);
    assert!(matches!(records.first(), Some(JournalRecord::Job(_))));
    let accepted: Vec<u64> = records
        .iter()
        .filter_map(|record| match record {
            JournalRecord::Response(response) => {
                assert_eq!(response.status, ResponseStatus::Accepted);
                Some(response.chars)
            }
            _ => None,
        })
        .collect();
    assert_eq!(accepted, [1710, 1419, 1899, 1839, 1663, 1484]);
    assert!(matches!(records.last(), Some(JournalRecord::Assembled(a)) if a.used_responses == 6));
}

#[test]
fn match_length_of_the_hand_curated_corpus_is_the_same_job_as_target_9164() {
    let folder = tempfile::tempdir().unwrap();
    let reference = folder.path().join("chatgpt.txt");
    fs::write(
        &reference,
        corpusgen_testkit::seed_explanations().join("^^^^"),
    )
    .unwrap();
    let target = Target::match_length(&reference).unwrap();
    assert!(matches!(target, Target::Chars { chars: 9164, .. }));

    let matched = seed_spec(&folder.path().join("matched.txt"), target);
    let plain = seed_spec(&folder.path().join("plain.txt"), chars(9164));
    assert_eq!(matched.job_id(), plain.job_id());
    let matched_report = run(
        &matched,
        &lengths_provider(SEED_GPT41_LENGTHS.to_vec()),
        RunOptions::default(),
    )
    .unwrap();
    let plain_report = run(
        &plain,
        &lengths_provider(SEED_GPT41_LENGTHS.to_vec()),
        RunOptions::default(),
    )
    .unwrap();
    assert_eq!(
        fs::read(matched_report.paths.corpus).unwrap(),
        fs::read(plain_report.paths.corpus).unwrap()
    );
}

#[test]
fn a_response_with_the_separator_is_journaled_as_rejected_and_its_slot_asked_again() {
    let folder = tempfile::tempdir().unwrap();
    let spec = seed_spec(
        &folder.path().join("out.txt"),
        Target::Count { responses: 3 },
    );
    let provider = ByRequest::new(|index, resample| {
        Ok(response(if index == 1 && resample == 0 {
            "first part ^^^^ second part".to_string()
        } else {
            text(100, index)
        }))
    });
    let mut events = Vec::new();
    let report = paused_runtime()
        .block_on(run_job(
            &spec,
            &provider,
            RunOptions::default(),
            &mut |event: &Event| {
                events.push(event.clone());
            },
        ))
        .unwrap();

    let corpus = fs::read_to_string(&report.paths.corpus).unwrap();
    assert_eq!(
        split(&corpus, "^^^^"),
        [text(100, 0), text(100, 1), text(100, 2)]
    );
    assert_eq!(provider.calls(), 4);
    assert_eq!(
        report
            .manifest
            .totals
            .rejected
            .get(&RejectReason::ContainsSeparator),
        Some(&1)
    );
    assert!(events.contains(&Event::Rejected {
        index: 1,
        reason: RejectReason::ContainsSeparator
    }));
    let rejected = journal_records(&report.paths.journal)
        .into_iter()
        .filter(|record| matches!(record, JournalRecord::Response(r) if r.status == ResponseStatus::Rejected))
        .count();
    assert_eq!(rejected, 1);
}

#[test]
fn a_slot_rejected_past_the_resample_bound_fails_the_job() {
    let folder = tempfile::tempdir().unwrap();
    let mut spec = seed_spec(
        &folder.path().join("out.txt"),
        Target::Count { responses: 2 },
    );
    spec.max_resamples = 2;
    let provider = ByRequest::new(|_, _| Ok(response("a ^^^^ b".to_string())));

    let err = run(&spec, &provider, RunOptions::default()).unwrap_err();

    assert!(
        matches!(
            err,
            RunError::Resamples {
                index: 0,
                rejections: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("--separator"), "{err}");
    assert!(!spec.out.exists(), "no corpus is written");
}

#[test]
fn empty_truncated_and_filtered_responses_do_not_count() {
    let folder = tempfile::tempdir().unwrap();
    let spec = seed_spec(
        &folder.path().join("out.txt"),
        Target::Count { responses: 1 },
    );
    let provider = ByRequest::new(|_, resample| {
        let mut answer = response(text(50, 0));
        match resample {
            0 => answer.text = "  \n".into(),
            1 => answer.finish_reason = Some("length".into()),
            2 => answer.finish_reason = Some("content_filter".into()),
            _ => {}
        }
        Ok(answer)
    });
    let report = run(&spec, &provider, RunOptions::default()).unwrap();
    let rejected = &report.manifest.totals.rejected;
    assert_eq!(
        (
            rejected.get(&RejectReason::Empty),
            rejected.get(&RejectReason::Truncated),
            rejected.get(&RejectReason::ContentFilter)
        ),
        (Some(&1), Some(&1), Some(&1))
    );
    assert_eq!(
        fs::read_to_string(&report.paths.corpus).unwrap(),
        text(50, 0)
    );
}

#[test]
fn an_interrupted_job_resumes_and_requests_only_what_is_missing() {
    let folder = tempfile::tempdir().unwrap();
    let spec = seed_spec(&folder.path().join("out.txt"), chars(9164));

    // The first run's provider has only three answers, as a replay folder that ran out.
    let short = lengths_provider(SEED_GPT41_LENGTHS[..3].to_vec());
    let err = run(&spec, &short, RunOptions::default()).unwrap_err();
    assert!(
        matches!(&err, RunError::Provider { index: 3, error } if error.kind == ProviderErrorKind::FixturesExhausted)
    );
    assert!(!spec.out.exists());

    let full = lengths_provider(SEED_GPT41_LENGTHS.to_vec());
    let report = run(&spec, &full, RunOptions::default()).unwrap();
    let seen: Vec<u64> = full
        .seen
        .lock()
        .unwrap()
        .keys()
        .map(|(index, _)| *index)
        .collect();
    assert_eq!(seen, [3, 4, 5], "slots 0..3 come from the journal");
    assert_eq!(report.manifest.totals.resumed_responses, 3);
    assert_eq!(
        char_len(&fs::read_to_string(&report.paths.corpus).unwrap()),
        10034
    );

    // A third run has nothing left to ask and writes the same corpus.
    let none = lengths_provider(Vec::new());
    let again = run(&spec, &none, RunOptions::default()).unwrap();
    assert_eq!(none.calls(), 0);
    assert_eq!(again.selection, report.selection);
}

#[test]
fn a_larger_target_on_the_same_journal_reuses_its_responses() {
    let folder = tempfile::tempdir().unwrap();
    let out = folder.path().join("out.txt");
    run(
        &seed_spec(&out, chars(3000)),
        &lengths_provider(SEED_GPT41_LENGTHS.to_vec()),
        RunOptions::default(),
    )
    .unwrap();
    let larger = lengths_provider(SEED_GPT41_LENGTHS.to_vec());
    let report = run(
        &seed_spec(&out, chars(9164)),
        &larger,
        RunOptions::default(),
    )
    .unwrap();
    assert_eq!(larger.calls(), 4);
    assert_eq!(report.manifest.totals.corpus_chars, 10034);
}

#[test]
fn a_different_job_on_the_same_output_is_refused_unless_fresh() {
    let folder = tempfile::tempdir().unwrap();
    let out = folder.path().join("out.txt");
    run(
        &seed_spec(&out, chars(100)),
        &lengths_provider(vec![200]),
        RunOptions::default(),
    )
    .unwrap();

    let mut other = seed_spec(&out, chars(100));
    other.sampling.temperature = 0.5;
    let err = run(&other, &lengths_provider(vec![200]), RunOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("belongs to a different job"),
        "{err}"
    );
    assert!(err.to_string().contains("--fresh"), "{err}");

    let fresh = RunOptions {
        fresh: true,
        ..RunOptions::default()
    };
    let provider = lengths_provider(vec![150]);
    let report = run(&other, &provider, fresh).unwrap();
    assert_eq!(provider.calls(), 1);
    assert_eq!(report.manifest.totals.corpus_chars, 150);
}

#[test]
fn a_torn_last_journal_line_is_cut_off_and_the_job_resumes() {
    let folder = tempfile::tempdir().unwrap();
    let spec = seed_spec(&folder.path().join("out.txt"), chars(9164));
    let _ = run(
        &spec,
        &lengths_provider(SEED_GPT41_LENGTHS[..2].to_vec()),
        RunOptions::default(),
    );
    let journal = folder.path().join("out.jsonl");
    let intact = fs::read(&journal).unwrap();
    let mut torn = intact.clone();
    torn.extend_from_slice(br#"{"type":"response","index":2,"resample":0,"status":"acc"#);
    fs::write(&journal, &torn).unwrap();

    let provider = lengths_provider(SEED_GPT41_LENGTHS.to_vec());
    let report = run(&spec, &provider, RunOptions::default()).unwrap();
    assert_eq!(provider.calls(), 4);
    assert_eq!(report.manifest.totals.corpus_chars, 10034);
    assert!(fs::read(&journal).unwrap().starts_with(&intact));
}

#[test]
fn a_missing_output_folder_is_created() {
    let folder = tempfile::tempdir().unwrap();
    let spec = seed_spec(
        &folder.path().join("a/b/c/out.txt"),
        Target::Count { responses: 1 },
    );
    let report = run(&spec, &lengths_provider(vec![10]), RunOptions::default()).unwrap();
    assert!(report.paths.corpus.exists());
    assert!(report.paths.journal.ends_with("a/b/c/out.jsonl"));
    assert!(report.paths.manifest.ends_with("a/b/c/out.manifest.json"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Completions arrive in an order set by random latencies; the corpus is
    /// the one a sequential run gives, for every concurrency.
    #[test]
    fn the_corpus_does_not_depend_on_concurrency_or_completion_order(
        lengths in prop::collection::vec(1usize..2500, 1..30),
        delays in prop::collection::vec(0u64..500, 1..30),
        concurrency in 1usize..64,
        target in 1u64..30_000,
    ) {
        let folder = tempfile::tempdir().unwrap();
        // Slot i answers lengths[i % n], so there is always an answer.
        let mut lengths = lengths;
        while lengths.len() < 30_000 {
            lengths.extend_from_within(..);
        }
        let sequential_spec = seed_spec(&folder.path().join("sequential.txt"), chars(target));
        let sequential = run(&sequential_spec, &lengths_provider(lengths.clone()), RunOptions::default()).unwrap();

        let mut concurrent_spec = seed_spec(&folder.path().join("concurrent.txt"), chars(target));
        concurrent_spec.concurrency = concurrency;
        let provider = lengths_provider(lengths.clone()).with_delays(delays);
        let concurrent = run(&concurrent_spec, &provider, RunOptions::default()).unwrap();

        prop_assert_eq!(fs::read(&sequential.paths.corpus).unwrap(), fs::read(&concurrent.paths.corpus).unwrap());
        let needed = sequential.selection.responses;
        prop_assert!(provider.calls() < needed + concurrency, "{} calls for {} needed", provider.calls(), needed);
    }
}

#[test]
fn the_seed_job_at_concurrency_8_pays_for_at_most_7_requests_in_about_two_latencies() {
    let folder = tempfile::tempdir().unwrap();
    let mut spec = seed_spec(&folder.path().join("out.txt"), chars(9164));
    spec.concurrency = 8;
    // The seed's six lengths, then more of the same range should more be asked.
    let mut lengths = SEED_GPT41_LENGTHS.to_vec();
    lengths.extend([1500, 1600, 1700, 1800]);
    let provider = lengths_provider(lengths).with_delays(vec![1000]);
    let runtime = paused_runtime();
    let started = runtime.block_on(async { tokio::time::Instant::now() });
    let report = runtime
        .block_on(run_job(
            &spec,
            &provider,
            RunOptions::default(),
            &mut |_: &Event| {},
        ))
        .unwrap();
    let elapsed = runtime.block_on(async { started.elapsed() });
    assert!(provider.calls() <= 7, "{} requests paid", provider.calls());
    assert!(
        elapsed <= std::time::Duration::from_millis(2100),
        "{elapsed:?}"
    );
    assert_eq!(report.manifest.totals.corpus_chars, 10034);
}

#[test]
fn dedup_rejects_near_copies_and_keeps_distinct_texts() {
    let folder = tempfile::tempdir().unwrap();
    let mut spec = seed_spec(
        &folder.path().join("out.txt"),
        Target::Count { responses: 3 },
    );
    spec.dedup = Some(corpusgen_core::dedup::DEFAULT_THRESHOLD);
    let explanations = corpusgen_testkit::seed_explanations();
    let near_copy = explanations[0].replacen("better", "finer", 1);
    assert!(corpusgen_core::dedup::similarity(&explanations[0], &near_copy) >= 0.8);
    let answers = explanations.clone();
    let provider = ByRequest::new(move |index, resample| {
        Ok(response(match (index, resample) {
            (1, 0) => near_copy.clone(),
            (index, _) => answers[index as usize].clone(),
        }))
    });
    let report = run(&spec, &provider, RunOptions::default()).unwrap();
    let corpus = fs::read_to_string(&report.paths.corpus).unwrap();
    assert_eq!(
        split(&corpus, "^^^^"),
        explanations[..3]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        report
            .manifest
            .totals
            .rejected
            .get(&RejectReason::NearDuplicate),
        Some(&1)
    );
    let twins: Vec<Option<u64>> = journal_records(&report.paths.journal)
        .into_iter()
        .filter_map(|record| match record {
            JournalRecord::Response(r) if r.status == ResponseStatus::Rejected => Some(r.twin),
            _ => None,
        })
        .collect();
    assert_eq!(twins, [Some(0)]);
}

#[test]
fn the_seed_explanations_are_not_near_copies_of_each_other() {
    let explanations = corpusgen_testkit::seed_explanations();
    for (i, first) in explanations.iter().enumerate() {
        for second in &explanations[i + 1..] {
            assert!(corpusgen_core::dedup::similarity(first, second) < 0.3);
        }
        assert_eq!(corpusgen_core::dedup::similarity(first, first), 1.0);
    }
}

/// A reply of several explanations, as `--per-request` asks for.
fn explanations_reply(texts: &[String]) -> String {
    serde_json::json!({ "explanations": texts }).to_string()
}

#[test]
fn per_request_splits_each_reply_into_responses_in_order() {
    let folder = tempfile::tempdir().unwrap();
    let mut spec = seed_spec(
        &folder.path().join("out.txt"),
        Target::Count { responses: 6 },
    );
    spec.per_request = 3;
    let provider = ByRequest::new(|index, _| {
        let texts: Vec<String> = (index..index + 3).map(|slot| text(50, slot)).collect();
        Ok(response(explanations_reply(&texts)))
    });
    let report = run(&spec, &provider, RunOptions::default()).unwrap();
    assert_eq!(provider.calls(), 2);
    let corpus = fs::read_to_string(&report.paths.corpus).unwrap();
    assert_eq!(
        split(&corpus, "^^^^"),
        (0..6).map(|slot| text(50, slot)).collect::<Vec<_>>()
    );
    assert!(
        spec.request_for(0, 0, 3).messages[1]
            .content
            .contains("Give 3 different explanations")
    );
}

#[test]
fn a_per_request_reply_that_does_not_parse_is_rejected_and_its_slots_asked_alone() {
    let folder = tempfile::tempdir().unwrap();
    let mut spec = seed_spec(
        &folder.path().join("out.txt"),
        Target::Count { responses: 3 },
    );
    spec.per_request = 3;
    let provider = ByRequest::new(|index, resample| {
        Ok(response(match (index, resample) {
            (0, 0) => "Here are three explanations: first, ...".to_string(),
            (slot, _) => text(40, slot),
        }))
    });
    let report = run(&spec, &provider, RunOptions::default()).unwrap();
    // One call for the group, then one for each slot alone.
    assert_eq!(provider.calls(), 4);
    assert_eq!(
        report
            .manifest
            .totals
            .rejected
            .get(&RejectReason::MalformedReply),
        Some(&1)
    );
    let corpus = fs::read_to_string(&report.paths.corpus).unwrap();
    assert_eq!(
        split(&corpus, "^^^^"),
        (0..3).map(|slot| text(40, slot)).collect::<Vec<_>>()
    );
}

#[test]
fn progress_events_report_requests_in_flight_and_the_tokens_counted() {
    let folder = tempfile::tempdir().unwrap();
    let mut spec = seed_spec(
        &folder.path().join("out.txt"),
        Target::Count { responses: 4 },
    );
    spec.concurrency = 2;
    let provider = ByRequest::new(|index, _| {
        Ok(corpusgen_core::ChatResponse {
            usage: Some(corpusgen_core::provider::Usage {
                prompt_tokens: 10,
                completion_tokens: 5 + index,
                total_tokens: 15 + index,
            }),
            ..response(text(100, index))
        })
    })
    .with_delays(vec![100]);
    let mut progress = Vec::new();
    let report = paused_runtime()
        .block_on(run_job(
            &spec,
            &provider,
            RunOptions::default(),
            &mut |event: &Event| {
                if let Event::Progress {
                    in_flight,
                    total_tokens,
                    ..
                } = event
                {
                    progress.push((*in_flight, *total_tokens));
                }
            },
        ))
        .unwrap();

    let most_in_flight = progress.iter().map(|(in_flight, _)| *in_flight).max();
    assert_eq!(most_in_flight, Some(2), "{progress:?}");
    let last = progress.last().copied().unwrap();
    assert_eq!(last.1, report.manifest.totals.total_tokens, "{progress:?}");
    assert_eq!(last.1, 15 + 16 + 17 + 18);

    // Resumed, the counters start where the journal left off.
    let mut resumed = Vec::new();
    paused_runtime()
        .block_on(run_job(
            &spec,
            &provider,
            RunOptions::default(),
            &mut |event: &Event| {
                if let Event::Progress {
                    completed,
                    completed_chars,
                    total_tokens,
                    ..
                } = event
                {
                    resumed.push((*completed, *completed_chars, *total_tokens));
                }
            },
        ))
        .unwrap();
    assert_eq!(resumed.first(), Some(&(4, 400, 15 + 16 + 17 + 18)));
}
