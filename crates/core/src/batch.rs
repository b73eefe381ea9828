//! `--batch`: a job run through a provider's batch engine (the OpenAI Batch
//! API, Azure OpenAI global batch) instead of one request at a time.
//!
//! The flow is rounds: build the requests the corpus still needs, upload them
//! as request files of at most the per-batch limits, create one batch per
//! file, poll each until it ends, download its results and count them by the
//! same rules, the same journal and the same length policy as the online
//! loop. A round that leaves the target short (rejections, an expired batch,
//! failed lines) is followed by one that asks only for the shortfall.
//!
//! Every id is journaled the moment it exists (the request file's once it is
//! uploaded, the batch's once it is created), so a re-run after a crash
//! attaches to the batches already submitted instead of paying twice.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use futures::FutureExt;
use serde::{Deserialize, Serialize};

use crate::journal::{BatchRecord, JobHeader, JournalError, JournalRecord, ResponseRecord};
use crate::provider::{ChatRequest, ChatResponse, ProviderError, ProviderErrorKind};
use crate::retry::call_with_retries;
use crate::run::{
    Finishing, Opened, RunError, RunOptions, RunReport, State, commit, filtered_as_rejection,
    finish_job, now, open_job, redact_prompt_text, split_reply,
};
use crate::spec::{JobSpec, SpecError, Target};

/// The most requests one batch may hold (OpenAI and Azure OpenAI alike).
pub const MAX_BATCH_REQUESTS: usize = 50_000;
/// The largest request file one batch may have: OpenAI's 200 MB, counted in
/// decimal megabytes to stay on the safe side of either reading.
pub const MAX_BATCH_BYTES: u64 = 200_000_000;
/// The chars a response is expected to have before the journal knows better:
/// the mean of the seed's gpt-4.1 run (1710, 1419, 1899, 1839, 1663, 1484).
pub const DEFAULT_EXPECT_CHARS: u64 = 1669;
/// How many more requests than the expectation a char-target round asks for,
/// so that rejections and short answers rarely need a follow-up batch.
pub const DEFAULT_MARGIN: f64 = 0.2;
/// The first wait between two polls of a batch; it grows by half after every
/// poll that shows no change, up to `MAX_POLL_INTERVAL`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);
/// Rounds in a row that may bring no accepted response before the job gives up.
pub const MAX_ROUNDS_WITHOUT_PROGRESS: u32 = 3;

/// Where a batch is, in the providers' own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    Validating,
    Failed,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
}

/// A batch's request counts, as the provider reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub completed: u64,
    #[serde(default)]
    pub failed: u64,
}

/// What the provider says about one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInfo {
    pub id: String,
    pub status: BatchStatus,
    pub counts: RequestCounts,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    /// Why the batch failed validation, one message per problem.
    pub errors: Vec<String>,
}

/// One line of a batch's output or error file.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchResult {
    pub custom_id: String,
    pub result: Result<ChatResponse, ProviderError>,
}

/// A provider's batch engine: the Files and Batches APIs. Core decides what
/// to ask; the implementation knows the wire format.
pub trait BatchApi: Send + Sync {
    /// The profile name, recorded in the journal.
    fn name(&self) -> &str;

    /// One line of a request file: the same body the online path posts.
    fn request_line(&self, custom_id: &str, request: &ChatRequest) -> String;

    /// Uploads a request file (`purpose=batch`) and returns its file id.
    fn upload(&self, jsonl: Vec<u8>) -> impl Future<Output = Result<String, ProviderError>> + Send;

    /// Creates a batch from an uploaded request file, within 24 hours.
    fn create(
        &self,
        input_file_id: &str,
    ) -> impl Future<Output = Result<BatchInfo, ProviderError>> + Send;

    fn get(&self, batch_id: &str) -> impl Future<Output = Result<BatchInfo, ProviderError>> + Send;

    /// The most recent batch created from this request file, if any: a crash
    /// between creating a batch and journaling its id leaves only the file id.
    fn find(
        &self,
        input_file_id: &str,
    ) -> impl Future<Output = Result<Option<BatchInfo>, ProviderError>> + Send;

    /// The lines of an output or error file.
    fn results(
        &self,
        file_id: &str,
    ) -> impl Future<Output = Result<Vec<BatchResult>, ProviderError>> + Send;

    fn cancel(
        &self,
        batch_id: &str,
    ) -> impl Future<Output = Result<BatchInfo, ProviderError>> + Send;
}

/// How a batch job runs, beside what the spec says.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    pub run: RunOptions,
    /// The chars a response is expected to have while the journal holds none
    /// (`--expect-chars`); the journal's mean wins once there is one.
    pub expect_chars: u64,
    /// Extra requests asked for a char target, as a fraction (`--batch-margin`).
    pub margin: f64,
    /// The per-batch limits the request files are split at.
    pub max_requests: usize,
    pub max_bytes: u64,
    pub poll_interval: Duration,
    pub max_poll_interval: Duration,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            run: RunOptions::default(),
            expect_chars: DEFAULT_EXPECT_CHARS,
            margin: DEFAULT_MARGIN,
            max_requests: MAX_BATCH_REQUESTS,
            max_bytes: MAX_BATCH_BYTES,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_poll_interval: MAX_POLL_INTERVAL,
        }
    }
}

/// What a batch job reports as it goes. Like `Event`, no prompt or response text.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchEvent {
    /// The journal of an earlier run was picked up.
    Resumed { accepted: u64, rejected: u64 },
    /// A request file was uploaded and its batch created.
    Submitted { batch_id: String, requests: u64 },
    /// A request file an earlier run uploaded, and its batch if one was
    /// created, is followed again.
    Attached {
        input_file_id: String,
        batch_id: Option<String>,
        status: Option<BatchStatus>,
    },
    /// A poll showed a new status or new counts.
    Progress {
        batch_id: String,
        status: BatchStatus,
        counts: RequestCounts,
    },
    /// A batch's results are in the journal.
    Collected {
        batch_id: String,
        accepted: u64,
        rejected: u64,
        /// Requests it did not answer (expired, cancelled, failed lines):
        /// the next round asks for them again.
        missing: u64,
    },
}

/// The manifest's `batch` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchSummary {
    pub batches: Vec<BatchEntry>,
    /// Requests over every batch, by how they ended.
    pub requests: RequestTally,
    /// What batch prices are of online prices: the token totals of the
    /// manifest are billed at this factor.
    pub batch_discount: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchEntry {
    pub batch_id: Option<String>,
    pub input_file_id: String,
    pub status: Option<BatchStatus>,
    pub requests: u64,
    pub counts: RequestCounts,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestTally {
    pub submitted: u64,
    pub completed: u64,
    pub failed: u64,
    /// Never answered: the batch expired or was cancelled first.
    pub unanswered: u64,
}

/// Both providers bill batch tokens at half the online price.
pub const BATCH_DISCOUNT: f64 = 0.5;

/// Chars per o200k token in the seed's gpt-4.1 answers (1669 chars, 346
/// tokens), to size a token target's first batch.
const CHARS_PER_TOKEN: f64 = 1669.0 / 346.0;

impl BatchStatus {
    /// Whether the batch will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            BatchStatus::Failed
                | BatchStatus::Completed
                | BatchStatus::Expired
                | BatchStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Validating => "validating",
            BatchStatus::Failed => "failed",
            BatchStatus::InProgress => "in_progress",
            BatchStatus::Finalizing => "finalizing",
            BatchStatus::Completed => "completed",
            BatchStatus::Expired => "expired",
            BatchStatus::Cancelling => "cancelling",
            BatchStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `custom_id` of a request: the job's identity, the slot and the sample,
/// so a result maps back to its slot whatever order the output file has.
pub fn custom_id(job_id: &str, slot: u64, resample: u32) -> String {
    format!("{job_id}-{slot}-{resample}")
}

/// Runs one job through the batch engine to its end: a corpus, a journal and
/// a manifest, as `run_job` would write them. `stop` (Ctrl-C, SIGTERM) ends it
/// while it waits for a batch, which keeps running at the provider: the same
/// command attaches to it again.
pub async fn run_batch_job<A: BatchApi>(
    spec: &JobSpec,
    api: &A,
    options: BatchOptions,
    observer: &mut dyn FnMut(&BatchEvent),
    stop: impl Future<Output = ()>,
) -> Result<RunReport, RunError> {
    let Opened {
        paths,
        header,
        mut journal,
        mut state,
        started,
        started_at,
        batches,
    } = open_job(spec, options.run)?;
    if state.totals.responses_received > 0 {
        observer(&BatchEvent::Resumed {
            accepted: state.assembler.completed(),
            rejected: state.totals.rejected.values().sum(),
        });
    }
    let mut submissions = merge_records(batches);
    let mut issued_end = submissions
        .iter()
        .flat_map(|submission| &submission.requests)
        .map(|[slot, _, width]| slot + width)
        .max()
        .unwrap_or(0)
        .max(state.next_slot);
    let mut flow = Flow {
        spec,
        api,
        options,
        job_id: header.job_id.clone(),
        stop: Box::pin(stop),
        stopped: false,
    };
    // Polled once now, so that a signal handler behind `stop` is in place
    // before the first request file is uploaded.
    flow.stopped = flow.stop.as_mut().now_or_never().is_some();
    for submission in submissions
        .iter()
        .filter(|submission| !submission.collected)
    {
        observer(&BatchEvent::Attached {
            input_file_id: submission.input_file_id.clone(),
            batch_id: submission.batch_id.clone(),
            status: submission.status,
        });
    }
    let recovered = submissions.len();
    let mut rounds_without_progress = 0;
    loop {
        let accepted_before = state.assembler.completed();
        // Batches are created before any is waited for, so that they all run
        // at the provider at once.
        for (position, submission) in submissions.iter_mut().enumerate() {
            if submission.batch_id.is_none() && !submission.collected {
                flow.create(submission, position < recovered, &mut journal, observer)
                    .await?;
            }
        }
        for submission in submissions.iter_mut() {
            if !submission.collected {
                flow.follow(submission, &mut journal, &mut state, observer)
                    .await?;
            }
        }
        if state.assembler.selection().is_some() {
            break;
        }
        if state.assembler.completed() == accepted_before && !submissions.is_empty() {
            rounds_without_progress += 1;
            if rounds_without_progress >= MAX_ROUNDS_WITHOUT_PROGRESS {
                return Err(RunError::Batch {
                    what: format!("{MAX_ROUNDS_WITHOUT_PROGRESS} batches in a row"),
                    error: ProviderError::new(
                        ProviderErrorKind::Server,
                        "brought no accepted response; look at the batches with `corpusgen batch status` and at the rejected responses in the journal",
                    ),
                });
            }
        } else {
            rounds_without_progress = 0;
        }
        let requests = plan(spec, &state, &mut issued_end, &options);
        if requests.is_empty() {
            return Err(SpecError(
                "the batch plan found nothing to ask although the target is not met".into(),
            )
            .into());
        }
        for file in flow.request_files(&requests)? {
            let input_file_id = flow
                .call("uploading a request file", || {
                    api.upload(file.bytes.clone())
                })
                .await?;
            let record = BatchRecord {
                input_file_id,
                batch_id: None,
                requests: file.requests,
                status: None,
                counts: RequestCounts::default(),
                output_file_id: None,
                error_file_id: None,
                collected: false,
                time: now(),
            };
            journal.append(&JournalRecord::Batch(record.clone()))?;
            submissions.push(record);
        }
    }
    let selection = state
        .assembler
        .selection()
        .expect("the rounds end only once the target is met");
    let batch = Some(summary(&submissions));
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
            batch,
            stopped: None,
        },
        options.run,
    )
}

/// The job's header and its batches as they stand in the journal at `path`,
/// the latest state of each, for `corpusgen batch status|cancel`. A torn last
/// line is skipped, as a resume would.
pub fn read_batches(path: &Path) -> Result<(JobHeader, Vec<BatchRecord>), JournalError> {
    let io_error = |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let mut header = None;
    let mut records = Vec::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_error)?;
        match serde_json::from_str::<JournalRecord>(&line) {
            Ok(JournalRecord::Job(job)) => header = Some(job),
            Ok(JournalRecord::Batch(batch)) => records.push(batch),
            Ok(_) => {}
            // This reader only looks for batch ids: a line that does not
            // parse (a torn last line) is skipped, and the job's own resume
            // still refuses real damage.
            Err(_) if number > 0 => {}
            Err(err) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: number as u64 + 1,
                    reason: err.to_string(),
                });
            }
        }
    }
    let header = header.ok_or_else(|| JournalError::Corrupt {
        path: path.to_path_buf(),
        line: 1,
        reason: "the first line is not a job header".into(),
    })?;
    Ok((header, merge_records(records)))
}

/// Folds the journal's batch records into one per request file, the latest
/// state of each, in the order the files were uploaded.
fn merge_records(records: Vec<BatchRecord>) -> Vec<BatchRecord> {
    let mut merged: Vec<BatchRecord> = Vec::new();
    for record in records {
        match merged
            .iter_mut()
            .find(|known| known.input_file_id == record.input_file_id)
        {
            Some(known) => {
                let requests = std::mem::take(&mut known.requests);
                *known = record;
                if known.requests.is_empty() {
                    known.requests = requests;
                }
            }
            None => merged.push(record),
        }
    }
    merged
}

/// The requests of the next round: every slot the corpus still needs that
/// has no accepted response (rejected, or never answered), then new slots:
/// for a count, up to the count; for chars, enough to cover the shortfall at
/// the expected length, plus the margin.
fn plan(
    spec: &JobSpec,
    state: &State,
    issued_end: &mut u64,
    options: &BatchOptions,
) -> Vec<[u64; 3]> {
    let mut requests: Vec<[u64; 3]> = (0..*issued_end)
        .filter(|slot| !state.accepted_slots.contains(slot) && state.still_needs(*slot))
        .map(|slot| {
            let resample = state.rejections.get(&slot).copied().unwrap_or(0);
            [slot, u64::from(resample), 1]
        })
        .collect();
    let new_slots = match spec.target {
        Target::Count { responses } => responses.saturating_sub(*issued_end),
        Target::Chars { chars: target, .. } | Target::Tokens { tokens: target, .. } => {
            // In the target's unit: chars, or tokens at the chars per token
            // of the seed's gpt-4.1 answers until the journal says better.
            let expected_unit = match spec.target {
                Target::Tokens { .. } => options.expect_chars as f64 / CHARS_PER_TOKEN,
                _ => options.expect_chars as f64,
            };
            let completed = state.assembler.completed();
            let mean = if completed > 0 {
                state.assembler.completed_measure() as f64 / completed as f64
            } else {
                expected_unit
            }
            .max(1.0);
            let expected =
                state.assembler.completed_measure() as f64 + requests.len() as f64 * mean;
            if expected >= target as f64 {
                0
            } else {
                let needed = ((target as f64 - expected) / mean).ceil();
                ((needed * (1.0 + options.margin.max(0.0))).ceil() as u64).max(1)
            }
        }
    };
    let per_request = u64::from(spec.per_request.max(1));
    let end = *issued_end + new_slots;
    let mut slot = *issued_end;
    while slot < end {
        let width = match spec.target {
            Target::Count { .. } => per_request.min(end - slot),
            Target::Chars { .. } | Target::Tokens { .. } => per_request,
        };
        requests.push([slot, 0, width]);
        slot += width;
    }
    *issued_end = slot;
    requests
}

fn summary(submissions: &[BatchRecord]) -> BatchSummary {
    let mut requests = RequestTally::default();
    let batches = submissions
        .iter()
        .map(|submission| {
            let submitted = submission.requests.len() as u64;
            requests.submitted += submitted;
            requests.completed += submission.counts.completed;
            requests.failed += submission.counts.failed;
            requests.unanswered +=
                submitted.saturating_sub(submission.counts.completed + submission.counts.failed);
            BatchEntry {
                batch_id: submission.batch_id.clone(),
                input_file_id: submission.input_file_id.clone(),
                status: submission.status,
                requests: submitted,
                counts: submission.counts,
            }
        })
        .collect();
    BatchSummary {
        batches,
        requests,
        batch_discount: BATCH_DISCOUNT,
    }
}

/// One request file, at most the per-batch limits.
struct RequestFile {
    bytes: Vec<u8>,
    requests: Vec<[u64; 3]>,
}

/// What every step of a batch job needs.
struct Flow<'a, A, S> {
    spec: &'a JobSpec,
    api: &'a A,
    options: BatchOptions,
    job_id: String,
    stop: std::pin::Pin<Box<S>>,
    /// `stop` has completed, and must not be polled again.
    stopped: bool,
}

impl<A: BatchApi, S: Future<Output = ()>> Flow<'_, A, S> {
    /// A control-plane call with the job's retry policy: the batch engine's
    /// own endpoints fail and rate-limit like the online one.
    async fn call<T, F, Fut>(&self, what: &str, call: F) -> Result<T, RunError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        call_with_retries(self.options.run.retry, call)
            .await
            .0
            .map_err(|error| RunError::Batch {
                what: what.to_string(),
                error,
            })
    }

    /// Splits the requests into request files at the per-batch limits.
    fn request_files(&self, requests: &[[u64; 3]]) -> Result<Vec<RequestFile>, RunError> {
        let mut files: Vec<RequestFile> = Vec::new();
        let mut current = RequestFile {
            bytes: Vec::new(),
            requests: Vec::new(),
        };
        for &[slot, resample, width] in requests {
            let request = self.spec.request_for(slot, resample as u32, width as u32);
            let mut line = self
                .api
                .request_line(&custom_id(&self.job_id, slot, resample as u32), &request);
            line.push('\n');
            if line.len() as u64 > self.options.max_bytes {
                return Err(SpecError(format!(
                    "one batch request is {} bytes, more than the {} a request file may have; shorten the prompt",
                    line.len(),
                    self.options.max_bytes
                ))
                .into());
            }
            let full = current.requests.len() >= self.options.max_requests.max(1)
                || current.bytes.len() as u64 + line.len() as u64 > self.options.max_bytes;
            if full {
                files.push(std::mem::replace(
                    &mut current,
                    RequestFile {
                        bytes: Vec::new(),
                        requests: Vec::new(),
                    },
                ));
            }
            current.bytes.extend_from_slice(line.as_bytes());
            current.requests.push([slot, resample, width]);
        }
        if !current.requests.is_empty() {
            files.push(current);
        }
        Ok(files)
    }

    /// Creates the batch of an uploaded request file and journals its id.
    async fn create(
        &mut self,
        submission: &mut BatchRecord,
        recovered: bool,
        journal: &mut crate::journal::Journal,
        observer: &mut dyn FnMut(&BatchEvent),
    ) -> Result<(), RunError> {
        let api = self.api;
        let input_file_id = submission.input_file_id.clone();
        // A request file of an earlier run may already have its batch: the
        // run may have died before the batch's id reached the journal.
        let found = if recovered {
            self.call(&format!("looking for the batch of {input_file_id}"), || {
                api.find(&input_file_id)
            })
            .await?
        } else {
            None
        };
        let info = match found {
            Some(info) => info,
            None => {
                self.call(&format!("creating a batch from {input_file_id}"), || {
                    api.create(&input_file_id)
                })
                .await?
            }
        };
        update(submission, &info);
        journal.append(&JournalRecord::Batch(BatchRecord {
            requests: Vec::new(),
            ..submission.clone()
        }))?;
        observer(&BatchEvent::Submitted {
            batch_id: info.id.clone(),
            requests: submission.requests.len() as u64,
        });
        observer(&BatchEvent::Progress {
            batch_id: info.id,
            status: info.status,
            counts: info.counts,
        });
        Ok(())
    }

    /// Polls a batch until it ends, then journals its results.
    async fn follow(
        &mut self,
        submission: &mut BatchRecord,
        journal: &mut crate::journal::Journal,
        state: &mut State,
        observer: &mut dyn FnMut(&BatchEvent),
    ) -> Result<(), RunError> {
        let api = self.api;
        let batch_id = submission
            .batch_id
            .clone()
            .expect("batches are created before they are followed");
        let mut interval = self.options.poll_interval;
        let mut last = submission.status.map(|status| (status, submission.counts));
        let mut errors = Vec::new();
        loop {
            let info = self
                .call(&format!("polling batch {batch_id}"), || api.get(&batch_id))
                .await?;
            let seen = (info.status, info.counts);
            if last != Some(seen) {
                observer(&BatchEvent::Progress {
                    batch_id: batch_id.clone(),
                    status: info.status,
                    counts: info.counts,
                });
                interval = self.options.poll_interval;
            } else {
                interval = interval.mul_f64(1.5).min(
                    self.options
                        .max_poll_interval
                        .max(self.options.poll_interval),
                );
            }
            let status_changed = submission.status != Some(info.status);
            update(submission, &info);
            if status_changed {
                journal.append(&JournalRecord::Batch(BatchRecord {
                    requests: Vec::new(),
                    time: now(),
                    ..submission.clone()
                }))?;
            }
            last = Some(seen);
            errors.clone_from(&info.errors);
            if info.status.is_terminal() {
                break;
            }
            if !self.stopped {
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = self.stop.as_mut() => self.stopped = true,
                }
            }
            if self.stopped {
                return Err(RunError::Interrupted {
                    journaled: state.totals.responses_received,
                    abandoned_note: format!(
                        " (batch {batch_id} is {} and keeps running at the provider; the same command attaches to it)",
                        info.status
                    ),
                });
            }
        }
        if submission.status == Some(BatchStatus::Failed) {
            submission.collected = true;
            journal.append(&JournalRecord::Batch(BatchRecord {
                requests: Vec::new(),
                time: now(),
                ..submission.clone()
            }))?;
            let errors = match errors.is_empty() {
                true => "no reason given".to_string(),
                false => errors.join("; "),
            };
            let mut message = format!("{} rejected it while validating ({errors})", api.name());
            if self.spec.hipaa {
                // A validation message may quote a line of the request file.
                message = redact_prompt_text(self.spec, &self.spec.request(0, 0), &message);
            }
            return Err(RunError::Batch {
                what: format!("batch {batch_id}"),
                error: ProviderError::new(ProviderErrorKind::BadRequest, message),
            });
        }
        self.collect(submission, journal, state, observer).await
    }

    /// Downloads a finished batch's output and error files and journals every
    /// result, in slot order, through the online path's acceptance rules. A
    /// result already in the journal (a crash after some were written) is
    /// skipped, so collecting twice adds nothing.
    async fn collect(
        &mut self,
        submission: &mut BatchRecord,
        journal: &mut crate::journal::Journal,
        state: &mut State,
        observer: &mut dyn FnMut(&BatchEvent),
    ) -> Result<(), RunError> {
        let api = self.api;
        let batch_id = submission.batch_id.clone().unwrap_or_default();
        let mut lines = Vec::new();
        for file_id in [&submission.output_file_id, &submission.error_file_id]
            .into_iter()
            .flatten()
        {
            let file_id = file_id.clone();
            lines.extend(
                self.call(
                    &format!("downloading {file_id} of batch {batch_id}"),
                    || api.results(&file_id),
                )
                .await?,
            );
        }
        let widths: BTreeMap<(u64, u64), u64> = submission
            .requests
            .iter()
            .map(|&[slot, resample, width]| ((slot, resample), width))
            .collect();
        let prefix = format!("{}-", self.job_id);
        let mut results: Vec<(u64, u32, u32, Result<ChatResponse, ProviderError>)> = lines
            .into_iter()
            .filter_map(|line| {
                let (slot, resample) = parse_custom_id(line.custom_id.strip_prefix(&prefix)?)?;
                let width = *widths.get(&(slot, u64::from(resample)))?;
                Some((slot, resample, width as u32, line.result))
            })
            .collect();
        results.sort_by_key(|(slot, resample, ..)| (*slot, *resample));
        results.dedup_by_key(|(slot, resample, ..)| (*slot, *resample));

        let mut written: Vec<ResponseRecord> = Vec::new();
        let mut refusal: Option<RunError> = None;
        let mut answered = 0u64;
        for (slot, resample, width, result) in results {
            let already = state.accepted_slots.contains(&slot)
                || state.rejections.get(&slot).copied().unwrap_or(0) > resample;
            if already {
                answered += 1;
                continue;
            }
            let request = self.spec.request_for(slot, resample, width);
            match filtered_as_rejection(result) {
                Ok(response) => {
                    answered += 1;
                    let response = ChatResponse {
                        attempts: 1,
                        ..response
                    };
                    let (elements, _missing) = split_reply(&request, response);
                    for element in elements {
                        let record =
                            state.record(self.spec, api.name(), &request, Duration::ZERO, element);
                        journal.write(&JournalRecord::Response(record.clone()))?;
                        written.push(record);
                    }
                }
                Err(mut error) => {
                    if self.spec.hipaa {
                        error.message = redact_prompt_text(self.spec, &request, &error.message);
                    }
                    tracing::warn!(index = slot, kind = ?error.kind, "batch request failed: {}", error.message);
                    if error.kind.is_refusal() && refusal.is_none() {
                        refusal = Some(RunError::Provider { index: slot, error });
                    }
                }
            }
        }
        journal.sync()?;
        let mut failure = None;
        let (mut accepted, mut rejected) = (0, 0);
        for record in &written {
            match record.status {
                crate::journal::ResponseStatus::Accepted => accepted += 1,
                crate::journal::ResponseStatus::Rejected => rejected += 1,
            }
            commit(self.spec, state, record, &mut |_| {}, &mut failure);
        }
        // The online loop's queue of slots to ask again is not used here: the
        // next round's plan finds them in the state.
        state.queue.clear();
        submission.collected = true;
        journal.append(&JournalRecord::Batch(BatchRecord {
            requests: Vec::new(),
            time: now(),
            ..submission.clone()
        }))?;
        observer(&BatchEvent::Collected {
            batch_id,
            accepted,
            rejected,
            missing: (submission.requests.len() as u64).saturating_sub(answered),
        });
        match refusal.or(failure) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

fn update(submission: &mut BatchRecord, info: &BatchInfo) {
    submission.batch_id = Some(info.id.clone());
    submission.status = Some(info.status);
    submission.counts = info.counts;
    if info.output_file_id.is_some() {
        submission.output_file_id = info.output_file_id.clone();
    }
    if info.error_file_id.is_some() {
        submission.error_file_id = info.error_file_id.clone();
    }
    submission.time = now();
}

/// `{slot}-{resample}`, the part of a custom id after the job id.
fn parse_custom_id(rest: &str) -> Option<(u64, u32)> {
    let (slot, resample) = rest.split_once('-')?;
    Some((slot.parse().ok()?, resample.parse().ok()?))
}
