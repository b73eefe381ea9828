//! The job loop: issue requests while the corpus could still need them,
//! journal every response before it counts, assemble in slot order and write
//! the outputs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::batch::BatchSummary;
use crate::cost::Pricing;
use crate::dedup::DedupIndex;
use crate::journal::{
    AssembledRecord, BatchRecord, JobHeader, Journal, JournalError, JournalRecord, RejectReason,
    RequestParams, ResponseRecord, ResponseStatus,
};
use crate::manifest::{MANIFEST_STATS_MAX_RESPONSES, Manifest, ManifestOutputs, Timings, Totals};
use crate::output::{OutputPaths, create_parent, write_atomic};
use crate::policy::{Assembler, Selection};
use crate::provider::{
    ChatProvider, ChatRequest, ChatResponse, ProviderError, ProviderErrorKind, Usage,
};
use crate::rate::{Pacing, RateLimits, Wait};
use crate::retry::{Attempted, RetryPolicy, complete_with_retries};
use crate::spec::{JobSpec, SpecError, Target};
use crate::stats::{CorpusStats, corpus_stats};
use crate::text::{char_len, splits_cleanly};
use crate::tokens::{Encoding, TokenCounter};

/// How long requests in flight may still finish after a stop was asked for.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// How a job runs, beside what the spec says.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Start over even if the journal holds another job.
    pub fresh: bool,
    /// Create every output file readable by its owner only (mode 0600).
    pub private_files: bool,
    pub retry: RetryPolicy,
    pub rate: RateLimits,
    /// The price of the job's model, for the manifest's cost; `None` when
    /// it is unknown.
    pub pricing: Option<Pricing>,
    /// Stop issuing requests before the cost would pass this many USD
    /// (`--budget-usd`); it needs `pricing`.
    pub budget_usd: Option<f64>,
}

/// What the manifest's `stopped` says of a job that ended before its target
/// because of `--budget-usd`.
pub const STOPPED_FOR_BUDGET: &str = "budget";

/// What the loop reports as it goes, for progress displays. Events carry no
/// prompt or response text, so a display can never leak it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The journal of an earlier run was picked up.
    Resumed {
        accepted: u64,
        rejected: u64,
    },
    Accepted {
        index: u64,
        chars: u64,
        completed_chars: u64,
        completed: u64,
    },
    Rejected {
        index: u64,
        reason: RejectReason,
    },
    /// A request failed; the job stops issuing requests.
    Failed {
        index: u64,
        message: String,
    },
    /// The loop's running counters, after requests are issued or responses
    /// arrive, for live displays: what `Accepted` alone cannot tell.
    Progress {
        in_flight: u64,
        retries: u64,
        /// Accepted responses and their chars, as in `Accepted`, resumed
        /// ones included.
        completed: u64,
        completed_chars: u64,
        /// The accepted responses' length in the target's unit: their
        /// tokens for a token target, else their chars.
        completed_measure: u64,
        /// Token sums of the responses counted so far whose provider
        /// reported usage.
        prompt_tokens: u64,
        completion_tokens: u64,
        total_tokens: u64,
    },
}

/// A finished job.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub paths: OutputPaths,
    pub selection: Selection,
    pub manifest: Manifest,
}

/// Why a job stopped without a corpus. Everything received before it stopped
/// is in the journal.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot write {path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("request {index} failed: {error}")]
    Provider { index: u64, error: ProviderError },
    #[error(
        "interrupted with {journaled} responses in the journal{abandoned_note}; run the same command again to resume"
    )]
    Interrupted {
        journaled: u64,
        abandoned_note: String,
    },
    #[error(
        "request {index} was rejected {rejections} times in a row (last: {reason}); change the prompt{hint}, or look at the rejected responses in the journal"
    )]
    Resamples {
        index: u64,
        rejections: u32,
        reason: RejectReason,
        hint: &'static str,
    },
    /// A call to the provider's batch engine failed (`--batch`), or a batch
    /// failed as a whole.
    #[error("{what} failed: {error}")]
    Batch { what: String, error: ProviderError },
}

/// Runs one job to its end: a corpus, a journal and a manifest. It needs a
/// tokio runtime with its timer enabled, for retry waits.
pub async fn run_job<P: ChatProvider>(
    spec: &JobSpec,
    provider: &P,
    options: RunOptions,
    observer: &mut dyn FnMut(&Event),
) -> Result<RunReport, RunError> {
    run_job_until(spec, provider, options, observer, std::future::pending()).await
}

/// `run_job`, stopping early once `stop` completes (Ctrl-C, SIGTERM): no new
/// request is issued, the ones in flight get `STOP_GRACE` to finish and are
/// journaled, and the job ends with `RunError::Interrupted`.
pub async fn run_job_until<P: ChatProvider>(
    spec: &JobSpec,
    provider: &P,
    options: RunOptions,
    observer: &mut dyn FnMut(&Event),
    stop: impl Future<Output = ()>,
) -> Result<RunReport, RunError> {
    let Opened {
        paths,
        header,
        mut journal,
        mut state,
        started,
        started_at,
        batches: _,
    } = open_job(spec, options)?;
    if state.totals.responses_received > 0 {
        observer(&Event::Resumed {
            accepted: state.assembler.completed(),
            rejected: state.totals.rejected.values().sum(),
        });
        observer(&state.progress(0));
    }

    // Declared before the requests in flight, which borrow it.
    let pacing = Pacing::new(options.rate, spec.concurrency);
    let pacing = &pacing;
    let mut in_flight = FuturesUnordered::new();
    // Responses the calls in flight will bring: more than the calls with
    // --per-request.
    let mut in_flight_responses: u64 = 0;
    let mut failure: Option<RunError> = None;
    let mut stop = std::pin::pin!(stop);
    let mut stopping = false;
    let grace = tokio::time::sleep(Duration::MAX);
    let mut grace = std::pin::pin!(grace);
    // Group commit: records are written as they arrive, and one sync on a
    // blocking thread makes a whole batch durable while requests go on.
    // A record counts only once a sync that started after its write is done.
    let mut next_permit: Option<tokio::time::Instant> = None;
    let mut unsynced: Vec<ResponseRecord> = Vec::new();
    let mut syncing: Option<(tokio::task::JoinHandle<io::Result<()>>, Vec<ResponseRecord>)> = None;
    // Set once --budget-usd stopped the issuing of requests.
    let mut over_budget = false;
    loop {
        let issued_before = in_flight.len();
        while failure.is_none()
            && !stopping
            && !over_budget
            && next_permit.is_none()
            && in_flight.len() < pacing.in_flight_limit()
        {
            // Received but not yet synced: their lengths are known, though
            // they do not count yet.
            let (pending, pending_chars) = unsynced
                .iter()
                .chain(syncing.iter().flat_map(|(_, batch)| batch))
                .filter(|record| record.status == ResponseStatus::Accepted)
                .fold((0, 0), |(n, measure), record| {
                    (n + 1, measure + state.measure(record))
                });
            let Some((index, resample, width, fresh)) =
                state.next_request(spec, in_flight_responses, pending, pending_chars)
            else {
                break;
            };
            if let Some(budget) = options.budget_usd
                && let Some(pricing) = options.pricing
            {
                let pending_usage = unsynced
                    .iter()
                    .chain(syncing.iter().flat_map(|(_, batch)| batch))
                    .map(|record| record.usage);
                if state.would_pass_budget(
                    spec,
                    pricing,
                    budget,
                    pending_usage,
                    in_flight.len() as u64 + 1,
                ) {
                    state.unissue(index, resample, width, fresh);
                    // While responses are still coming, their usage may
                    // lower the estimate; once none is, the budget is final.
                    if in_flight.is_empty() && unsynced.is_empty() && syncing.is_none() {
                        over_budget = true;
                        tracing::info!(index, "--budget-usd reached: no more requests are issued");
                    }
                    break;
                }
            }
            if let Err(Wait::Until(when)) = pacing.permit(state.expected_tokens(spec) * width) {
                state.unissue(index, resample, width, fresh);
                next_permit = Some(when);
                break;
            }
            in_flight_responses += u64::from(width);
            let request = spec.request_for(index, resample, width);
            tracing::info!(
                index,
                resample,
                in_flight = in_flight.len() + 1,
                "request issued"
            );
            let retry = options.retry;
            in_flight.push(async move {
                let sent = Instant::now();
                let attempted = complete_with_retries(provider, &request, retry, pacing).await;
                (request, sent.elapsed(), attempted)
            });
        }
        if in_flight.len() > issued_before {
            observer(&state.progress(in_flight.len()));
        }
        if syncing.is_none() && !unsynced.is_empty() {
            let handle = journal.sync_handle()?;
            syncing = Some((
                tokio::task::spawn_blocking(move || handle.sync_data()),
                std::mem::take(&mut unsynced),
            ));
        }
        if in_flight.is_empty() && syncing.is_none() && next_permit.is_none() {
            break;
        }
        let next = tokio::select! {
            synced = async { (&mut syncing.as_mut().expect("guarded by the condition").0).await }, if syncing.is_some() => {
                let (_, batch) = syncing.take().expect("a sync was running");
                synced
                    .unwrap_or_else(|err| Err(io::Error::other(err)))
                    .map_err(|source| JournalError::Io { path: paths.journal.clone(), source })?;
                for record in batch {
                    commit(spec, &mut state, &record, observer, &mut failure);
                }
                observer(&state.progress(in_flight.len()));
                continue;
            }
            next = in_flight.next(), if !in_flight.is_empty() => next,
            () = tokio::time::sleep_until(next_permit.unwrap_or_else(tokio::time::Instant::now)), if next_permit.is_some() => {
                next_permit = None;
                continue;
            }
            () = &mut stop, if !stopping => {
                stopping = true;
                grace.as_mut().reset(tokio::time::Instant::now() + STOP_GRACE);
                continue;
            }
            () = &mut grace, if stopping => break,
        };
        let Some((request, latency, attempted)) = next else {
            continue;
        };
        let Attempted {
            mut result,
            attempts,
            waited,
        } = attempted;
        if spec.hipaa
            && let Err(error) = &mut result
        {
            error.message = redact_prompt_text(spec, &request, &error.message);
        }
        // Logs carry numbers and the provider's error messages, never a
        // prompt or a response text: they are safe under --hipaa at any level.
        match &result {
            Ok(response) => tracing::info!(
                index = request.index,
                chars = char_len(&response.text),
                latency_ms = latency.as_millis() as u64,
                attempts,
                finish_reason = response.finish_reason.as_deref().unwrap_or("none"),
                "response received"
            ),
            Err(error) => tracing::warn!(
                index = request.index,
                attempts,
                kind = ?error.kind,
                "request failed: {}",
                error.message
            ),
        }
        tracing::debug!(
            index = request.index,
            waited_ms = waited.as_millis() as u64,
            "retry waits"
        );
        state.totals.retries += u64::from(attempts.saturating_sub(1));
        state.totals.retry_wait_ms += waited.as_millis() as u64;
        observer(&state.progress(in_flight.len()));
        match filtered_as_rejection(result) {
            Ok(mut response) => {
                response.attempts = attempts;
                in_flight_responses -= u64::from(request.explanations);
                let (elements, missing) = split_reply(&request, response);
                for element in elements {
                    let record = state.record(spec, provider.name(), &request, latency, element);
                    journal.write(&JournalRecord::Response(record.clone()))?;
                    unsynced.push(record);
                }
                for slot in missing {
                    state.queue.push_back((slot, 1));
                }
            }
            Err(error) => {
                in_flight_responses -= u64::from(request.explanations);
                if state.still_needs(request.index) && failure.is_none() {
                    observer(&Event::Failed {
                        index: request.index,
                        message: error.message.clone(),
                    });
                    failure = Some(RunError::Provider {
                        index: request.index,
                        error,
                    });
                }
            }
        }
    }
    // What was received but not yet synced (the grace period ran out, or a
    // sync was under way) becomes durable before the job reports anything.
    if let Some((sync, mut batch)) = syncing.take() {
        let _ = sync.await;
        batch.append(&mut unsynced);
        unsynced = batch;
    }
    if !unsynced.is_empty() {
        journal.sync()?;
        for record in std::mem::take(&mut unsynced) {
            commit(spec, &mut state, &record, observer, &mut failure);
        }
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    if stopping && state.assembler.selection().is_none() {
        let abandoned = in_flight.len();
        return Err(RunError::Interrupted {
            journaled: state.totals.responses_received,
            abandoned_note: match abandoned {
                0 => String::new(),
                n => format!(" ({n} requests still in flight were abandoned)"),
            },
        });
    }
    // The loop ends without a failure once the target is met, or once the
    // budget stopped it: then the corpus is what was accepted so far.
    let (selection, stopped) = match state.assembler.selection() {
        Some(selection) => (selection, None),
        None if over_budget => (
            state.assembler.partial(),
            Some(STOPPED_FOR_BUDGET.to_string()),
        ),
        None => unreachable!("the loop only ends without a failure once the target is met"),
    };
    state.totals.cooldowns = pacing.cooldowns();
    finish_job(
        spec,
        Finishing {
            paths,
            job_id: header.job_id,
            journal,
            state,
            selection,
            started,
            started_at,
            batch: None,
            stopped,
        },
        options,
    )
}

/// A job whose journal is open and read back: where its files go, and what
/// the earlier runs of the same job received.
pub(crate) struct Opened {
    pub(crate) paths: OutputPaths,
    pub(crate) header: JobHeader,
    pub(crate) journal: Journal,
    pub(crate) state: State,
    pub(crate) started: String,
    pub(crate) started_at: Instant,
    /// The batches earlier runs submitted (`--batch`), in journal order.
    pub(crate) batches: Vec<BatchRecord>,
}

/// Validates the job, opens (or resumes) its journal and counts what the
/// journal already holds, for the online loop and the batch flow alike.
pub(crate) fn open_job(spec: &JobSpec, options: RunOptions) -> Result<Opened, RunError> {
    spec.validate()?;
    let started_at = Instant::now();
    let started = now();
    let paths = OutputPaths::for_corpus(&spec.out);
    if paths.collides() {
        return Err(SpecError(format!(
            "the output {} would be overwritten by its own journal or manifest; give --out another extension, such as .txt",
            paths.corpus.display()
        ))
        .into());
    }
    create_parent(&paths.corpus).map_err(|err| {
        SpecError(format!(
            "cannot create the output folder of {}: {err}; pass an --out in a folder you can write",
            paths.corpus.display()
        ))
    })?;

    let header = JobHeader {
        job_id: spec.job_id(),
        corpusgen_version: crate::VERSION.to_string(),
        created: started.clone(),
        spec: serde_json::to_value(spec).expect("the job spec always serializes"),
    };
    let (mut journal, recovered) = Journal::open(
        &paths.journal,
        &header,
        options.fresh,
        options.private_files,
    )?;
    let mut state = State::new(spec);
    for mut record in recovered.responses {
        // A journal written for another target (the target is not part of
        // the job's identity) has no token counts: count them now.
        if let Some(counter) = state.tokens
            && record.tokens.is_none()
            && record.status == ResponseStatus::Accepted
            && let Some(text) = journal.accepted_text(record.index)?
        {
            record.tokens = Some(counter.count(&text));
        }
        state.replay(record);
    }
    if let Some(dedup) = state.dedup.as_mut() {
        // The journal's texts were not kept in memory: read back the
        // accepted ones to compare new responses with.
        let slots: Vec<u64> = journal.accepted_slots().collect();
        for slot in slots {
            if let Some(text) = journal.accepted_text(slot)? {
                dedup.insert(slot, &text);
            }
        }
    }
    state.queue_missing_slots();
    state.totals.resumed_responses = state.totals.responses_received;
    Ok(Opened {
        paths,
        header,
        journal,
        state,
        started,
        started_at,
        batches: recovered.batches,
    })
}

/// A job whose target is met, ready for its corpus and manifest.
pub(crate) struct Finishing {
    pub(crate) paths: OutputPaths,
    pub(crate) job_id: String,
    pub(crate) journal: Journal,
    pub(crate) state: State,
    pub(crate) selection: Selection,
    pub(crate) started: String,
    pub(crate) started_at: Instant,
    /// What the batches of a `--batch` job did, for the manifest.
    pub(crate) batch: Option<BatchSummary>,
    /// Why the job ended before its target, if it did (`STOPPED_FOR_BUDGET`).
    pub(crate) stopped: Option<String>,
}

/// Writes the corpus from the journal, marks the unused slots, and writes
/// the manifest.
pub(crate) fn finish_job(
    spec: &JobSpec,
    finishing: Finishing,
    options: RunOptions,
) -> Result<RunReport, RunError> {
    let Finishing {
        paths,
        job_id,
        mut journal,
        state,
        selection,
        started,
        started_at,
        batch,
        stopped,
    } = finishing;
    write_corpus(&mut journal, &paths, selection, &spec.separator, options)?;
    let unused_slots: Vec<u64> = journal
        .accepted_slots()
        .filter(|slot| *slot >= selection.responses as u64)
        .collect();
    journal.append(&JournalRecord::Assembled(AssembledRecord {
        used_responses: selection.responses as u64,
        joined_chars: selection.joined_chars,
        unused_slots: unused_slots.clone(),
        time: now(),
    }))?;

    let mut totals = state.totals;
    totals.responses_used = selection.responses as u64;
    totals.responses_unused = unused_slots.len() as u64;
    totals.corpus_chars = selection.joined_chars;
    totals.response_chars = selection.response_chars;
    totals.target = spec.target.to_string();
    // Batch engines bill at a discount: the manifest's cost is what was paid.
    let discount = batch.as_ref().map_or(1.0, |batch| batch.batch_discount);
    totals.cost_usd = options
        .pricing
        .and_then(|pricing| pricing.cost_of(&totals, spec.per_request))
        .map(|cost| cost * discount);
    if let Target::Tokens { encoding, .. } = &spec.target {
        totals.token_encoding = Some(encoding.clone());
        totals.response_tokens = state.assembler.prefix_tokens(selection.responses);
    }
    let (stats, stats_note) = manifest_stats(&paths, selection, &spec.separator)?;
    let manifest = Manifest {
        corpusgen_version: crate::VERSION.to_string(),
        job_id,
        job: spec.clone(),
        user_prompt: spec.user_prompt(),
        outputs: ManifestOutputs {
            corpus: paths.corpus.clone(),
            journal: paths.journal.clone(),
            manifest: paths.manifest.clone(),
        },
        totals,
        response_models: state.response_models,
        timings: Timings {
            started,
            finished: now(),
            wall_ms: started_at.elapsed().as_millis() as u64,
        },
        stats,
        stats_note,
        variants: crate::variants::counts(
            (0..selection.responses as u64).filter_map(|slot| spec.variant(slot)),
        ),
        prices: options
            .pricing
            .map(|pricing| pricing.manifest_prices(&spec.model)),
        stopped,
        batch,
    };
    write_atomic(&paths.manifest, options.private_files, |out| {
        serde_json::to_writer_pretty(&mut *out, &manifest)?;
        out.write_all(b"\n")
    })
    .map_err(|source| RunError::Output {
        path: paths.manifest.clone(),
        source,
    })?;
    Ok(RunReport {
        paths,
        selection,
        manifest,
    })
}

/// A filtered prompt or answer (Azure's content filter answers 400) is a
/// rejected sample, asked again like any other, not a failure of the job.
pub(crate) fn filtered_as_rejection(
    result: Result<ChatResponse, ProviderError>,
) -> Result<ChatResponse, ProviderError> {
    match result {
        Err(error) if error.kind == ProviderErrorKind::ContentFilter => Ok(ChatResponse {
            finish_reason: Some("content_filter".into()),
            ..ChatResponse::default()
        }),
        other => other,
    }
}

/// Under --hipaa, a provider's error message must not carry prompt text to a
/// log or the terminal, even if a server or proxy echoes the request back.
pub(crate) fn redact_prompt_text(spec: &JobSpec, request: &ChatRequest, message: &str) -> String {
    let mut redacted = message.to_string();
    let texts = request
        .messages
        .iter()
        .map(|message| message.content.as_str())
        .chain([spec.topic.as_str()]);
    for text in texts {
        if !text.trim().is_empty() && redacted.contains(text) {
            redacted = redacted.replace(text, "[prompt text]");
        }
    }
    redacted
}

/// The diversity scores of the corpus just written, read back from it, for
/// corpora small enough that the pairwise scores take seconds, not hours.
fn manifest_stats(
    paths: &OutputPaths,
    selection: Selection,
    separator: &str,
) -> Result<(Option<CorpusStats>, Option<String>), RunError> {
    if selection.responses == 0 {
        return Ok((None, Some("no responses in the corpus".to_string())));
    }
    if selection.responses as u64 > MANIFEST_STATS_MAX_RESPONSES {
        return Ok((
            None,
            Some(format!(
                "not computed for {} responses (more than {MANIFEST_STATS_MAX_RESPONSES}); run `corpusgen stats {}`",
                selection.responses,
                paths.corpus.display()
            )),
        ));
    }
    let corpus = std::fs::read_to_string(&paths.corpus).map_err(|source| RunError::Output {
        path: paths.corpus.clone(),
        source,
    })?;
    let documents = crate::text::split(&corpus, separator);
    Ok((Some(corpus_stats(&documents)), None))
}

/// Counts a journaled, synced response: towards the corpus when accepted, or
/// as a rejection whose slot is asked again, within the resample bound.
pub(crate) fn commit(
    spec: &JobSpec,
    state: &mut State,
    record: &ResponseRecord,
    observer: &mut dyn FnMut(&Event),
    failure: &mut Option<RunError>,
) {
    match state.count(record) {
        Counted::Accepted => observer(&Event::Accepted {
            index: record.index,
            chars: record.chars,
            completed_chars: state.assembler.completed_chars(),
            completed: state.assembler.completed(),
        }),
        Counted::Rejected(reason) => {
            observer(&Event::Rejected {
                index: record.index,
                reason,
            });
            if record.resample >= spec.max_resamples {
                if failure.is_none() {
                    *failure = Some(RunError::Resamples {
                        index: record.index,
                        rejections: record.resample + 1,
                        reason,
                        hint: match reason {
                            RejectReason::ContainsSeparator => " or --separator",
                            RejectReason::Truncated => " or raise --max-tokens",
                            _ => "",
                        },
                    });
                }
            } else {
                state.queue.push_back((record.index, record.resample + 1));
            }
        }
    }
}

/// Streams the selected responses from the journal into the corpus file, in
/// slot order, so the corpus is never held in memory whole.
fn write_corpus(
    journal: &mut Journal,
    paths: &OutputPaths,
    selection: Selection,
    separator: &str,
    options: RunOptions,
) -> Result<(), RunError> {
    let mut journal_error = None;
    write_atomic(&paths.corpus, options.private_files, |out| {
        for index in 0..selection.responses as u64 {
            if index > 0 {
                out.write_all(separator.as_bytes())?;
            }
            match journal.accepted_text(index) {
                Ok(Some(text)) => out.write_all(text.as_bytes())?,
                Ok(None) => {
                    return Err(io::Error::other(format!(
                        "slot {index} has no accepted response"
                    )));
                }
                Err(err) => {
                    journal_error = Some(err);
                    return Err(io::Error::other("the journal could not be read"));
                }
            }
        }
        Ok(())
    })
    .map_err(|source| match journal_error.take() {
        Some(err) => RunError::Journal(err),
        None => RunError::Output {
            path: paths.corpus.clone(),
            source,
        },
    })
}

/// One response of a reply, for the slot it fills.
pub(crate) struct Element {
    pub(crate) slot: u64,
    pub(crate) response: ChatResponse,
    /// A rejection decided before the usual checks (a malformed reply).
    pub(crate) forced: Option<RejectReason>,
}

pub(crate) enum Counted {
    Accepted,
    Rejected(RejectReason),
}

/// The loop's bookkeeping: what is accepted, what must be asked again.
pub(crate) struct State {
    pub(crate) assembler: Assembler,
    pub(crate) separator: String,
    /// Slots issued so far; every slot below it has been requested at least once.
    pub(crate) next_slot: u64,
    /// Slots without an accepted response that must be asked (again), with
    /// their resample number, lowest slot first.
    pub(crate) queue: VecDeque<(u64, u32)>,
    pub(crate) accepted_slots: BTreeSet<u64>,
    /// Rejections so far per slot that has no accepted response yet.
    pub(crate) rejections: BTreeMap<u64, u32>,
    /// Signatures of the accepted responses, with `--dedup`.
    pub(crate) dedup: Option<DedupIndex>,
    /// The length of the job's prompt templates, for `--tpm` estimates.
    pub(crate) prompt_chars: u64,
    /// The counter of a `--target-tokens` job's encoding.
    pub(crate) tokens: Option<TokenCounter>,
    pub(crate) totals: Totals,
    pub(crate) response_models: BTreeMap<String, u64>,
}

impl State {
    pub(crate) fn new(spec: &JobSpec) -> State {
        let tokens = match &spec.target {
            Target::Tokens { encoding, .. } => Some(TokenCounter::new(
                Encoding::from_name(encoding).expect("the spec was validated"),
            )),
            _ => None,
        };
        let separator_chars = char_len(&spec.separator);
        State {
            assembler: Assembler::measured(
                spec.target.clone(),
                spec.length_policy,
                separator_chars,
                tokens.map_or(separator_chars, |counter| counter.count(&spec.separator)),
            ),
            tokens,
            separator: spec.separator.clone(),
            next_slot: 0,
            queue: VecDeque::new(),
            accepted_slots: BTreeSet::new(),
            rejections: BTreeMap::new(),
            dedup: spec.dedup.map(DedupIndex::new),
            prompt_chars: spec
                .messages()
                .iter()
                .map(|message| char_len(&message.content))
                .sum(),
            totals: Totals::default(),
            response_models: BTreeMap::new(),
        }
    }

    /// The running counters, for `Event::Progress`.
    fn progress(&self, in_flight: usize) -> Event {
        Event::Progress {
            in_flight: in_flight as u64,
            retries: self.totals.retries,
            completed: self.assembler.completed(),
            completed_chars: self.assembler.completed_chars(),
            completed_measure: self.assembler.completed_measure(),
            prompt_tokens: self.totals.prompt_tokens,
            completion_tokens: self.totals.completion_tokens,
            total_tokens: self.totals.total_tokens,
        }
    }

    /// Takes in a response from an earlier run's journal.
    fn replay(&mut self, record: ResponseRecord) {
        self.next_slot = self.next_slot.max(record.index + 1);
        self.count(&record);
    }

    /// After a resume: slots below `next_slot` that never got an accepted
    /// response (in flight at a crash, or rejected) are asked again first.
    fn queue_missing_slots(&mut self) {
        for slot in 0..self.next_slot {
            if !self.accepted_slots.contains(&slot) {
                let resample = self.rejections.get(&slot).copied().unwrap_or(0);
                self.queue.push_back((slot, resample));
            }
        }
    }

    /// The next call to make, if the corpus could still need one: its first
    /// slot, its resample number and how many slots it asks for. A slot asked
    /// again goes alone; new slots go `--per-request` at a time.
    fn next_request(
        &mut self,
        spec: &JobSpec,
        in_flight: u64,
        pending: u64,
        pending_chars: u64,
    ) -> Option<(u64, u32, u32, bool)> {
        while let Some((slot, resample)) = self.queue.pop_front() {
            if self.still_needs(slot) {
                return Some((slot, resample, 1, false));
            }
        }
        if self
            .assembler
            .wants_more(self.next_slot, in_flight, pending, pending_chars)
        {
            let slot = self.next_slot;
            let width = match spec.target {
                Target::Count { responses } => u64::from(spec.per_request)
                    .min(responses.saturating_sub(slot))
                    .max(1) as u32,
                Target::Chars { .. } | Target::Tokens { .. } => spec.per_request,
            };
            self.next_slot += u64::from(width);
            return Some((slot, 0, width, true));
        }
        None
    }

    /// Puts back a call that `next_request` gave but that could not be sent
    /// yet (the rate limit said wait).
    fn unissue(&mut self, slot: u64, resample: u32, width: u32, fresh: bool) {
        if fresh {
            self.next_slot -= u64::from(width);
        } else {
            self.queue.push_front((slot, resample));
        }
    }

    /// The tokens one more request is expected to use, for `--tpm`: the
    /// prompt at about four chars a token, plus the completion tokens seen
    /// so far on average (or the token limit, or a thousand before any).
    fn expected_tokens(&self, spec: &JobSpec) -> u32 {
        let prompt_chars = self.prompt_chars;
        let completion = match (self.totals.responses_with_usage, spec.sampling.max_tokens) {
            (0, Some(max_tokens)) => u64::from(max_tokens),
            (0, None) => 1000,
            (with_usage, _) => self.totals.completion_tokens / with_usage,
        };
        u32::try_from(prompt_chars / 4 + completion).unwrap_or(u32::MAX)
    }

    /// A response's length in the target's unit: its tokens for a token
    /// target, else its chars.
    fn measure(&self, record: &ResponseRecord) -> u64 {
        match self.tokens {
            Some(_) => record.tokens.unwrap_or_default(),
            None => record.chars,
        }
    }

    /// Whether issuing `calls` more calls (those in flight and the next)
    /// could take the job's cost past `budget` USD: the cost so far from the
    /// reported usage, plus each call at the mean usage of a call so far
    /// (before any, the prompt counted with tiktoken and `--max-tokens` or a
    /// thousand completion tokens per response). A response that reported no
    /// usage counts as one more call at that estimate, so a provider that
    /// never reports usage still stops at the budget.
    fn would_pass_budget(
        &self,
        spec: &JobSpec,
        pricing: Pricing,
        budget: f64,
        pending_usage: impl Iterator<Item = Option<Usage>>,
        calls: u64,
    ) -> bool {
        let (mut with_usage, mut prompt_tokens, mut completion_tokens) = (
            self.totals.responses_with_usage,
            self.totals.prompt_tokens,
            self.totals.completion_tokens,
        );
        let mut received = self.totals.responses_received;
        for usage in pending_usage {
            received += 1;
            if let Some(usage) = usage {
                with_usage += 1;
                prompt_tokens += usage.prompt_tokens;
                completion_tokens += usage.completion_tokens;
            }
        }
        // With --per-request, only a call's first response carries usage.
        let unreported = match spec.per_request {
            0 | 1 => received - with_usage,
            _ => 0,
        };
        let spent = pricing.price.cost(prompt_tokens, completion_tokens);
        let per_request = u64::from(spec.per_request.max(1));
        let (prompt, completion) = match with_usage {
            0 => {
                let counter = TokenCounter::new(Encoding::for_model(&spec.model).encoding);
                let prompt =
                    counter.chat_prompt_tokens(&spec.request_for(0, 0, spec.per_request).messages);
                let completion = u64::from(spec.sampling.max_tokens.unwrap_or(1000)) * per_request;
                (prompt as f64, completion as f64)
            }
            with_usage => {
                // With --per-request, usage comes once per call.
                let with_usage = with_usage as f64;
                (
                    prompt_tokens as f64 / with_usage,
                    completion_tokens as f64 / with_usage,
                )
            }
        };
        let per_call = (prompt * pricing.price.input_per_mtok
            + completion * pricing.price.output_per_mtok)
            / 1_000_000.0;
        spent + per_call * (calls + unreported) as f64 > budget
    }

    /// Whether a slot's response can still end up in the corpus.
    pub(crate) fn still_needs(&self, slot: u64) -> bool {
        match self.assembler.selection() {
            Some(selection) => slot < selection.responses as u64,
            None => true,
        }
    }

    /// Classifies a response and turns it into its journal record.
    pub(crate) fn record(
        &mut self,
        spec: &JobSpec,
        provider: &str,
        request: &ChatRequest,
        latency: Duration,
        element: Element,
    ) -> ResponseRecord {
        let Element {
            slot,
            response,
            forced,
        } = element;
        let mut reject_reason = forced.or_else(|| reject_reason(&response, &self.separator));
        let mut twin = None;
        if reject_reason.is_none()
            && let Some(dedup) = self.dedup.as_mut()
        {
            match dedup.twin(&response.text) {
                Some(found) => {
                    reject_reason = Some(RejectReason::NearDuplicate);
                    twin = Some(found.slot);
                }
                None => dedup.insert(slot, &response.text),
            }
        }
        let tokens = self.tokens.map(|counter| counter.count(&response.text));
        ResponseRecord {
            twin,
            index: slot,
            resample: request.resample,
            status: match reject_reason {
                None => ResponseStatus::Accepted,
                Some(_) => ResponseStatus::Rejected,
            },
            reject_reason,
            chars: char_len(&response.text),
            text: response.text,
            variant: request.variant.clone(),
            provider: provider.to_string(),
            model: spec.model.clone(),
            response_model: response.model,
            request: RequestParams {
                temperature: request.temperature,
                max_tokens: request.max_tokens,
                seed: request.seed,
            },
            usage: response.usage,
            finish_reason: response.finish_reason,
            latency_ms: latency.as_millis() as u64,
            attempts: response.attempts,
            response_id: response.response_id,
            time: now(),
            tokens,
        }
    }

    /// Counts a journaled response: towards the corpus when accepted, towards
    /// a resample of its slot when rejected.
    fn count(&mut self, record: &ResponseRecord) -> Counted {
        self.totals.responses_received += 1;
        self.totals.attempts += u64::from(record.attempts);
        if let Some(usage) = record.usage {
            self.totals.responses_with_usage += 1;
            self.totals.prompt_tokens += usage.prompt_tokens;
            self.totals.completion_tokens += usage.completion_tokens;
            self.totals.total_tokens += usage.total_tokens;
        }
        if let Some(model) = &record.response_model {
            *self.response_models.entry(model.clone()).or_default() += 1;
        }
        match (record.status, record.reject_reason) {
            (ResponseStatus::Accepted, _) if !self.accepted_slots.contains(&record.index) => {
                self.accepted_slots.insert(record.index);
                self.rejections.remove(&record.index);
                let measure = self.measure(record);
                self.assembler
                    .accept_measured(record.index, record.chars, measure);
                Counted::Accepted
            }
            (ResponseStatus::Accepted, _) => Counted::Accepted,
            (ResponseStatus::Rejected, reason) => {
                let reason = reason.unwrap_or(RejectReason::Empty);
                *self.totals.rejected.entry(reason).or_default() += 1;
                let rejections = self.rejections.entry(record.index).or_default();
                *rejections = (*rejections).max(record.resample + 1);
                Counted::Rejected(reason)
            }
        }
    }
}

/// The responses one reply holds, each with its slot and a rejection it must
/// have, and the slots it left without one. A plain reply is one response. A
/// `--per-request` reply holds one per element; one that is not the JSON asked
/// for is kept as one rejected record and leaves its other slots to be asked
/// again alone, as do slots beyond its last element.
pub(crate) fn split_reply(
    request: &ChatRequest,
    response: ChatResponse,
) -> (Vec<Element>, Vec<u64>) {
    let width = u64::from(request.explanations);
    if width <= 1 {
        let whole = Element {
            slot: request.index,
            response,
            forced: None,
        };
        return (vec![whole], Vec::new());
    }
    let Some(texts) = parse_explanations(&response.text) else {
        let missing = (1..width).map(|offset| request.index + offset).collect();
        let malformed = Element {
            slot: request.index,
            response,
            forced: Some(RejectReason::MalformedReply),
        };
        return (vec![malformed], missing);
    };
    let mut elements = Vec::new();
    let mut missing = Vec::new();
    for offset in 0..width {
        let slot = request.index + offset;
        match texts.get(offset as usize) {
            Some(text) => elements.push(Element {
                slot,
                response: ChatResponse {
                    text: text.clone(),
                    // The call's usage is counted once, on its first element.
                    usage: if offset == 0 { response.usage } else { None },
                    ..response.clone()
                },
                forced: None,
            }),
            None => missing.push(slot),
        }
    }
    (elements, missing)
}

/// The explanations of a `--per-request` reply: a JSON object
/// `{"explanations": [...]}` of strings, or `None` when it is anything else.
fn parse_explanations(text: &str) -> Option<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Reply {
        explanations: Vec<String>,
    }
    serde_json::from_str::<Reply>(text.trim())
        .ok()
        .map(|reply| reply.explanations)
        .filter(|explanations| !explanations.is_empty())
}

/// Why a received response must not count, if it must not.
fn reject_reason(response: &ChatResponse, separator: &str) -> Option<RejectReason> {
    match response.finish_reason.as_deref() {
        Some("length") => return Some(RejectReason::Truncated),
        Some("content_filter") => return Some(RejectReason::ContentFilter),
        _ => {}
    }
    if response.text.trim().is_empty() {
        Some(RejectReason::Empty)
    } else if !splits_cleanly(&response.text, separator) {
        Some(RejectReason::ContainsSeparator)
    } else {
        None
    }
}

pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("the current time always formats")
}
