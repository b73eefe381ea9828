//! The error boundary's vocabulary: every failure the command line reports,
//! with the exit code scripts rely on (DESIGN.md section 4).

use std::fmt;
use std::path::Path;

use corpusgen_core::RunError;
use corpusgen_core::journal::JournalError;

/// What kind of failure ended the command, which decides its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// An I/O failure or a bug: nothing the user typed is wrong.
    Internal,
    /// Flags, config or job spec are wrong.
    BadInput,
    /// The provider refused: auth, policy, a permanent 4xx.
    Refused,
    /// Requests kept failing until the job gave up.
    GaveUp,
    /// Stopped by Ctrl-C or SIGTERM.
    Interrupted,
    /// `--budget-usd` stopped the job before its target: a partial corpus
    /// and its manifest (`stopped: "budget"`) are written.
    OverBudget,
}

impl ExitKind {
    pub fn code(self) -> u8 {
        match self {
            ExitKind::Internal => 1,
            ExitKind::BadInput => 2,
            ExitKind::Refused => 3,
            ExitKind::GaveUp => 4,
            ExitKind::Interrupted => 130,
            ExitKind::OverBudget => 5,
        }
    }

    /// How a job that ended this way is shown in progress and summaries.
    pub fn status(self) -> &'static str {
        match self {
            ExitKind::Internal => "failed",
            ExitKind::BadInput => "bad input",
            ExitKind::Refused => "refused",
            ExitKind::GaveUp => "gave up",
            ExitKind::Interrupted => "interrupted",
            ExitKind::OverBudget => "over budget",
        }
    }
}

/// One failure, as one sentence for the user and an exit code.
#[derive(Debug)]
pub struct CliError {
    pub kind: ExitKind,
    pub message: String,
    /// A second line: what is kept and how to go on.
    pub hint: Option<String>,
}

impl CliError {
    pub fn new(kind: ExitKind, message: impl fmt::Display) -> CliError {
        CliError {
            kind,
            message: message.to_string(),
            hint: None,
        }
    }

    pub fn bad_input(message: impl fmt::Display) -> CliError {
        CliError::new(ExitKind::BadInput, message)
    }

    /// Maps a job's failure to its exit code; a failure after requests were
    /// made also says that the journal keeps what was received.
    pub fn from_run(err: RunError, journal: &Path) -> CliError {
        let kind = match &err {
            // A journal that cannot be written (a full disk) is an I/O
            // failure; one of another job, or damaged, is the user's to fix.
            RunError::Journal(JournalError::Io { .. }) | RunError::Output { .. } => {
                ExitKind::Internal
            }
            RunError::Spec(_) | RunError::Journal(_) => ExitKind::BadInput,
            RunError::Provider { error, .. } | RunError::Batch { error, .. }
                if error.kind.is_refusal() =>
            {
                ExitKind::Refused
            }
            RunError::Batch { .. } => ExitKind::GaveUp,
            RunError::Provider { .. } | RunError::Resamples { .. } => ExitKind::GaveUp,
            RunError::Interrupted { .. } => ExitKind::Interrupted,
        };
        if kind == ExitKind::Interrupted {
            // The message already says how to resume.
            return CliError::new(kind, err);
        }
        let received = matches!(
            err,
            RunError::Provider { .. }
                | RunError::Resamples { .. }
                | RunError::Output { .. }
                | RunError::Batch { .. }
        );
        let journal_io = matches!(err, RunError::Journal(JournalError::Io { .. }));
        let mut cli_error = CliError::new(kind, err);
        if journal_io {
            cli_error.hint = Some(format!(
                "every response written to {} before the failure is kept; fix the disk or the folder's permissions and run the same command again to resume",
                journal.display()
            ));
        } else if received {
            cli_error.hint = Some(format!(
                "every response received is kept in {}; run the same command again to resume",
                journal.display()
            ));
        }
        cli_error
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn a_journal_that_cannot_be_written_is_an_io_failure_and_says_what_is_kept() {
        let full = RunError::Journal(JournalError::Io {
            path: PathBuf::from("data/x.jsonl"),
            source: std::io::Error::from_raw_os_error(28),
        });
        let err = CliError::from_run(full, Path::new("data/x.jsonl"));
        assert_eq!(err.kind, ExitKind::Internal);
        assert_eq!(err.kind.code(), 1);
        let hint = err.hint.expect("the hint says what is kept");
        assert!(
            hint.contains("data/x.jsonl before the failure is kept"),
            "{hint}"
        );

        let other = RunError::Journal(JournalError::Corrupt {
            path: PathBuf::from("data/x.jsonl"),
            line: 3,
            reason: "not JSON".to_string(),
        });
        assert_eq!(
            CliError::from_run(other, Path::new("data/x.jsonl")).kind,
            ExitKind::BadInput
        );
    }
}
