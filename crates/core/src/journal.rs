//! The journal: one JSON record per line, every response appended and synced
//! before it counts. It is the job's memory: a re-run of the same job resumes
//! from it, and the corpus is written from it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::batch::{BatchStatus, RequestCounts};
use crate::provider::Usage;

/// One line of the journal.
// Records live one at a time on their way to or from disk; boxing the
// response variant would buy nothing but an allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JournalRecord {
    /// The first line: which job this journal belongs to.
    Job(JobHeader),
    /// One response received from the provider, accepted or rejected.
    Response(ResponseRecord),
    /// Appended when a corpus is written: which slots it used. Slots completed
    /// beyond them were paid for and stay in the journal, marked unused here.
    Assembled(AssembledRecord),
    /// A batch of `--batch`: written when its input file is uploaded, again
    /// when the batch is created, at each status change, and once its results
    /// are journaled. The latest record of an input file says where it is.
    Batch(BatchRecord),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobHeader {
    pub job_id: String,
    pub corpusgen_version: String,
    pub created: String,
    /// The resolved job, for a person reading the journal.
    pub spec: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseRecord {
    pub index: u64,
    pub resample: u32,
    pub status: ResponseStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_reason: Option<RejectReason>,
    /// For a near-duplicate: the slot of the accepted response it copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin: Option<u64>,
    pub text: String,
    pub chars: u64,
    pub variant: Option<String>,
    pub provider: String,
    pub model: String,
    /// The model the provider says answered.
    pub response_model: Option<String>,
    pub request: RequestParams,
    pub usage: Option<Usage>,
    pub finish_reason: Option<String>,
    pub latency_ms: u64,
    pub attempts: u32,
    pub response_id: Option<String>,
    pub time: String,
    /// The text's tokens in the job's encoding, counted on this side, for a
    /// `--target-tokens` job; absent otherwise and in older journals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RequestParams {
    pub temperature: f64,
    pub max_tokens: Option<u32>,
    pub seed: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    Accepted,
    Rejected,
}

/// Why a received response does not count towards the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// It contains the separator, or starts or ends with part of it, so the
    /// corpus could not be split back into its responses.
    ContainsSeparator,
    /// It is empty or only whitespace.
    Empty,
    /// The provider cut it off (finish reason `length`).
    Truncated,
    /// The provider's content filter withheld it (finish reason `content_filter`).
    ContentFilter,
    /// It is a near-copy of an accepted response (`--dedup`); `twin` names it.
    NearDuplicate,
    /// A `--per-request` reply that is not the JSON object asked for.
    MalformedReply,
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RejectReason::ContainsSeparator => {
                "it contains the separator or starts or ends with part of it"
            }
            RejectReason::Empty => "it is empty",
            RejectReason::Truncated => "it was cut off at the token limit",
            RejectReason::ContentFilter => "the content filter withheld it",
            RejectReason::NearDuplicate => "it is a near-copy of an accepted response",
            RejectReason::MalformedReply => {
                "the reply is not the JSON object of explanations asked for"
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssembledRecord {
    pub used_responses: u64,
    pub joined_chars: u64,
    pub unused_slots: Vec<u64>,
    pub time: String,
}

/// One state of one submitted batch. Records of the same `input_file_id`
/// follow each other; only the first lists the requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// The uploaded request file: it exists before the batch does.
    pub input_file_id: String,
    /// The batch, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// The requests of the file, as `[slot, resample, explanations]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<[u64; 3]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BatchStatus>,
    #[serde(default)]
    pub counts: RequestCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_file_id: Option<String>,
    /// Every result of the batch is in the journal: it needs nothing more.
    #[serde(default)]
    pub collected: bool,
    pub time: String,
}

/// A journal that cannot be used, with the sentence that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "the journal {path} belongs to a different job (its id is {found}, this job's is {expected}); pass --fresh to start over, or choose another --out"
    )]
    DifferentJob {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error(
        "the journal {path} is damaged at line {line} ({reason}); move it away or pass --fresh to start over"
    )]
    Corrupt {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("cannot use the journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// An open journal, positioned at its end.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    end: u64,
    /// Where each slot's accepted record starts and how long it is, so the
    /// corpus can be streamed from disk in slot order without holding texts.
    accepted: BTreeMap<u64, (u64, u64)>,
}

/// What an existing journal held when it was opened.
#[derive(Debug, Default)]
pub struct Recovered {
    pub responses: Vec<ResponseRecord>,
    /// Bytes of a torn last line that were cut off.
    pub truncated_bytes: u64,
    /// The batch records (`--batch`), in journal order.
    pub batches: Vec<BatchRecord>,
}

impl Journal {
    /// Opens the journal at `path` for the job `header`, creating it when
    /// missing. An existing journal of the same job is resumed: its responses
    /// come back in `Recovered` (texts emptied, to keep memory small). One of
    /// another job is refused unless `fresh`, which starts it over.
    pub fn open(
        path: &Path,
        header: &JobHeader,
        fresh: bool,
        private: bool,
    ) -> Result<(Journal, Recovered), JournalError> {
        let io_error = |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true);
        restrict_permissions(&mut options, private);
        let mut file = options.open(path).map_err(io_error)?;
        if fresh {
            file.set_len(0).map_err(io_error)?;
        }
        let (recovered, good_end, found_job) = read_existing(path, &mut file)?;
        if let Some(found) = found_job
            && found != header.job_id
        {
            return Err(JournalError::DifferentJob {
                path: path.to_path_buf(),
                found,
                expected: header.job_id.clone(),
            });
        }
        let mut journal = Journal {
            path: path.to_path_buf(),
            file,
            end: good_end,
            accepted: recovered.accepted,
        };
        if recovered.truncated_bytes > 0 {
            journal.file.set_len(good_end).map_err(io_error)?;
        }
        journal
            .file
            .seek(SeekFrom::Start(good_end))
            .map_err(io_error)?;
        if good_end == 0 {
            journal.append(&JournalRecord::Job(header.clone()))?;
        }
        Ok((
            journal,
            Recovered {
                responses: recovered.responses,
                truncated_bytes: recovered.truncated_bytes,
                batches: recovered.batches,
            },
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and syncs it to disk before returning, so a record
    /// that was appended survives a crash.
    pub fn append(&mut self, record: &JournalRecord) -> Result<(), JournalError> {
        self.write(record)?;
        self.sync()
    }

    /// Appends one record without syncing it. It is not durable, and must not
    /// count, until a sync that started after this write has finished
    /// (`sync`, or the file of `sync_handle`): that is the group commit that
    /// lets many records share one sync.
    pub fn write(&mut self, record: &JournalRecord) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record).expect("journal records always serialize");
        line.push(b'\n');
        let offset = self.end;
        self.file
            .write_all(&line)
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.end += line.len() as u64;
        if let JournalRecord::Response(response) = record
            && response.status == ResponseStatus::Accepted
        {
            self.accepted
                .insert(response.index, (offset, line.len() as u64));
        }
        Ok(())
    }

    /// Makes every record written so far durable.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// A second handle on the journal file, to sync it on another thread while
    /// the job goes on.
    pub fn sync_handle(&self) -> Result<File, JournalError> {
        self.file.try_clone().map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// The accepted text of slot `index`, read back from disk.
    pub fn accepted_text(&mut self, index: u64) -> Result<Option<String>, JournalError> {
        let Some(&(offset, len)) = self.accepted.get(&index) else {
            return Ok(None);
        };
        let io_error = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = vec![0; len as usize];
        self.file.seek(SeekFrom::Start(offset)).map_err(io_error)?;
        self.file.read_exact(&mut line).map_err(io_error)?;
        self.file
            .seek(SeekFrom::Start(self.end))
            .map_err(io_error)?;
        match serde_json::from_slice(&line) {
            Ok(JournalRecord::Response(record)) => Ok(Some(record.text)),
            _ => Err(JournalError::Corrupt {
                path: self.path.clone(),
                line: 0,
                reason: format!("the record of slot {index} changed on disk"),
            }),
        }
    }

    /// The slots with an accepted response, in order.
    pub fn accepted_slots(&self) -> impl Iterator<Item = u64> + '_ {
        self.accepted.keys().copied()
    }
}

struct ReadBack {
    responses: Vec<ResponseRecord>,
    accepted: BTreeMap<u64, (u64, u64)>,
    truncated_bytes: u64,
    batches: Vec<BatchRecord>,
}

/// Reads every complete record of an existing journal. A last line that is
/// not a complete record (no newline, or not valid JSON) is what a crash
/// mid-write leaves; it is reported for truncation. A bad line before the
/// last is real damage and refused.
fn read_existing(
    path: &Path,
    file: &mut File,
) -> Result<(ReadBack, u64, Option<String>), JournalError> {
    let io_error = |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let total = file.seek(SeekFrom::End(0)).map_err(io_error)?;
    file.seek(SeekFrom::Start(0)).map_err(io_error)?;
    let mut reader = BufReader::new(&mut *file);
    let mut back = ReadBack {
        responses: Vec::new(),
        accepted: BTreeMap::new(),
        truncated_bytes: 0,
        batches: Vec::new(),
    };
    let mut job_id = None;
    let mut offset = 0u64;
    let mut line_number = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).map_err(io_error)? as u64;
        if read == 0 {
            break;
        }
        line_number += 1;
        let is_last = offset + read == total;
        let complete = line.last() == Some(&b'\n');
        let parsed = if complete {
            serde_json::from_slice::<JournalRecord>(&line).map_err(|err| err.to_string())
        } else {
            Err("the line is incomplete".to_string())
        };
        let record = match parsed {
            Ok(record) => record,
            Err(_) if is_last => {
                back.truncated_bytes = read;
                break;
            }
            Err(reason) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: line_number,
                    reason,
                });
            }
        };
        match record {
            JournalRecord::Job(header) if line_number == 1 => job_id = Some(header.job_id),
            JournalRecord::Job(_) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: line_number,
                    reason: "a second job header".into(),
                });
            }
            _ if line_number == 1 => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: 1,
                    reason: "the first line is not a job header".into(),
                });
            }
            JournalRecord::Response(mut response) => {
                if response.status == ResponseStatus::Accepted {
                    back.accepted.insert(response.index, (offset, read));
                }
                response.text = String::new();
                back.responses.push(response);
            }
            JournalRecord::Assembled(_) => {}
            JournalRecord::Batch(batch) => back.batches.push(batch),
        }
        offset += read;
    }
    Ok((back, offset, job_id))
}

#[cfg(unix)]
fn restrict_permissions(options: &mut OpenOptions, private: bool) {
    use std::os::unix::fs::OpenOptionsExt;
    if private {
        options.mode(0o600);
    }
}

#[cfg(not(unix))]
fn restrict_permissions(_options: &mut OpenOptions, _private: bool) {}
