//! The error boundary's vocabulary: every failure the command line reports,
//! with the exit code scripts rely on (DESIGN.md section 4).

use std::fmt;
use std::path::Path;

use corpusgen_core::RunError;

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
            RunError::Spec(_) | RunError::Journal(_) => ExitKind::BadInput,
            RunError::Output { .. } => ExitKind::Internal,
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
        let mut cli_error = CliError::new(kind, err);
        if received {
            cli_error.hint = Some(format!(
                "every response received is kept in {}; run the same command again to resume",
                journal.display()
            ));
        }
        cli_error
    }
}
