//! Progress on stderr while jobs run. On a terminal every job gets a live
//! bar (indicatif) that redraws in place; anywhere else (a pipe, a log file,
//! CI) no control characters are ever written: nothing by default, and at
//! `-v` a plain line per job at most every few seconds. `--quiet` shows
//! nothing but errors.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use corpusgen_core::cost::Pricing;
use corpusgen_core::{Event, Target};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain progress line may be written when stderr is not a
/// terminal.
pub const LINE_INTERVAL: Duration = Duration::from_secs(5);

/// Where progress goes, decided once per process from the flags and whether
/// stderr is a terminal.
#[derive(Debug, Clone)]
pub struct Display {
    mode: Mode,
    /// Holds every job's bar; hidden unless `mode` is `Bars`.
    multi: MultiProgress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bars,
    /// Plain lines; `verbose` decides whether there are any at all.
    Lines {
        verbose: bool,
    },
    Quiet,
}

impl Display {
    pub fn for_stderr(quiet: bool, verbose: u8) -> Display {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines {
                verbose: verbose > 0,
            }
        };
        let multi = match mode {
            Mode::Bars => MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            _ => MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
        };
        Display { mode, multi }
    }

    pub fn is_quiet(&self) -> bool {
        self.mode == Mode::Quiet
    }

    /// The progress of one job, labelled `label` (a job name, or the corpus
    /// file for `generate`).
    pub fn job(&self, label: &str, target: &Target, pricing: Option<Pricing>) -> JobProgress {
        let bar = match self.mode {
            Mode::Bars => {
                let bar = self.multi.add(ProgressBar::new(target_size(target)));
                bar.set_style(bar_style(target));
                bar.set_prefix(label.to_string());
                bar.enable_steady_tick(Duration::from_millis(250));
                bar
            }
            _ => ProgressBar::hidden(),
        };
        JobProgress {
            display: self.clone(),
            bar,
            label: label.to_string(),
            target: target.clone(),
            pricing,
            counters: Counters::default(),
            started: Instant::now(),
            last_line: None,
        }
    }

    /// A line for the user that must not tear the bars: printed above them
    /// on a terminal, plainly otherwise, and not at all under `--quiet`.
    pub fn println(&self, line: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Bars => {
                let _ = self.multi.println(line);
            }
            Mode::Lines { .. } => eprintln!("{line}"),
        }
    }

    /// A line worth knowing but not needed (such as a resume): above the
    /// bars on a terminal, at `-v` otherwise, which keeps logs quiet.
    pub fn note(&self, line: &str) {
        match self.mode {
            Mode::Bars | Mode::Lines { verbose: true } => self.println(line),
            Mode::Lines { verbose: false } | Mode::Quiet => {}
        }
    }

    /// An error line: shown even under `--quiet`, above the bars if any.
    pub fn print_error(&self, text: &str) {
        self.multi.suspend(|| eprintln!("{text}"));
    }

    /// The writer for log lines (tracing): while bars are drawn, each line
    /// is written with the bars lifted, so the two never interleave.
    pub fn log_writer(&self) -> LogWriter {
        LogWriter {
            multi: (self.mode == Mode::Bars).then(|| self.multi.clone()),
        }
    }

    fn verbose_lines(&self) -> bool {
        self.mode == Mode::Lines { verbose: true }
    }
}

/// What the bar and the lines show, accumulated from the job loop's events.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    responses: u64,
    chars: u64,
    /// Tokens of the accepted responses, for a token target.
    tokens: u64,
    rejected: u64,
    in_flight: u64,
    retries: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

/// One job's progress: fed every event of its loop, finished once.
#[derive(Debug)]
pub struct JobProgress {
    display: Display,
    bar: ProgressBar,
    label: String,
    target: Target,
    /// The model's price, for the cost so far; `None` when it is unknown.
    pricing: Option<Pricing>,
    counters: Counters,
    started: Instant,
    last_line: Option<Instant>,
}

impl JobProgress {
    pub fn observe(&mut self, event: &Event) {
        let counters = &mut self.counters;
        match event {
            // The counters follow in a `Progress` event.
            Event::Resumed { accepted, rejected } => {
                self.display.note(&format!(
                    "{}: resuming, the journal already holds {accepted} accepted and {rejected} rejected responses",
                    self.label
                ));
                return;
            }
            Event::Accepted {
                completed_chars,
                completed,
                ..
            } => {
                counters.responses = *completed;
                counters.chars = *completed_chars;
            }
            Event::Rejected { index, reason } => {
                counters.rejected += 1;
                if self.display.verbose_lines() {
                    eprintln!(
                        "{}: request {index}: response rejected because {reason}; asking again",
                        self.label
                    );
                }
            }
            // The error itself is reported once, when the job ends.
            Event::Failed { .. } => {}
            Event::Progress {
                in_flight,
                retries,
                completed,
                completed_chars,
                completed_measure,
                prompt_tokens,
                completion_tokens,
                total_tokens,
            } => {
                counters.responses = *completed;
                counters.chars = *completed_chars;
                counters.tokens = *completed_measure;
                counters.in_flight = *in_flight;
                counters.retries = *retries;
                counters.prompt_tokens = *prompt_tokens;
                counters.completion_tokens = *completion_tokens;
                counters.total_tokens = *total_tokens;
            }
        }
        self.bar.set_position(self.position());
        self.bar.set_message(self.summary());
        if self.display.verbose_lines()
            && self
                .last_line
                .is_none_or(|last| last.elapsed() >= LINE_INTERVAL)
        {
            self.last_line = Some(Instant::now());
            eprintln!("{}: {}", self.label, self.line());
        }
    }

    /// Ends the bar, or writes the last plain line at `-v`, with how the job
    /// ended (`done`, or what stopped it).
    pub fn finish(&self, outcome: &str) {
        self.bar.set_position(self.position());
        self.bar
            .finish_with_message(format!("{} · {outcome}", self.summary()));
        if self.display.verbose_lines() {
            eprintln!(
                "{}: {outcome}: {}, {:.1} s",
                self.label,
                self.line(),
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    fn position(&self) -> u64 {
        match self.target {
            Target::Count { .. } => self.counters.responses,
            Target::Chars { .. } => self.counters.chars,
            Target::Tokens { .. } => self.counters.tokens,
        }
    }

    /// The bar's message: what the bar itself does not show.
    fn summary(&self) -> String {
        let counters = &self.counters;
        let mut parts = Vec::new();
        if !matches!(self.target, Target::Count { .. }) {
            parts.push(format!("{} responses", counters.responses));
        }
        parts.push(format!("{} in flight", counters.in_flight));
        parts.push(format!("{} retries", counters.retries));
        if counters.rejected > 0 {
            parts.push(format!("{} rejected", counters.rejected));
        }
        if counters.total_tokens > 0 {
            parts.push(format!("{} tokens", counters.total_tokens));
        }
        // Only reported usage is priced: with none yet, there is no cost to show.
        if let Some(pricing) = self.pricing.filter(|_| counters.total_tokens > 0) {
            let cost = pricing
                .price
                .cost(counters.prompt_tokens, counters.completion_tokens);
            parts.push(format!("${cost:.4}"));
        }
        parts.join(", ")
    }

    /// A whole plain line, the bar's figures in words.
    fn line(&self) -> String {
        let counters = &self.counters;
        let done = match &self.target {
            Target::Count { responses } => {
                format!("{} of {responses} responses", counters.responses)
            }
            Target::Chars { chars, .. } => {
                format!("{} of {chars} chars", counters.chars)
            }
            Target::Tokens { tokens, .. } => {
                format!("{} of {tokens} tokens", counters.tokens)
            }
        };
        format!("{done}, {}", self.summary())
    }
}

fn target_size(target: &Target) -> u64 {
    match target {
        Target::Count { responses } => *responses,
        Target::Chars { chars, .. } => *chars,
        Target::Tokens { tokens, .. } => *tokens,
    }
}

fn bar_style(target: &Target) -> ProgressStyle {
    let unit = match target {
        Target::Count { .. } => "responses",
        Target::Chars { .. } => "chars",
        Target::Tokens { .. } => "tokens",
    };
    ProgressStyle::with_template(&format!(
        "{{prefix:.bold}} [{{bar:30.cyan/blue}}] {{pos}}/{{len}} {unit} · {{msg}} · ETA {{eta}}"
    ))
    .expect("the bar template is valid")
    .progress_chars("=> ")
}

/// Makes one `LogLine` per log event.
#[derive(Debug, Clone)]
pub struct LogWriter {
    multi: Option<MultiProgress>,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine {
            multi: self.multi.clone(),
            buffer: Vec::new(),
        }
    }
}

/// One log event's text, written to stderr in one piece when dropped.
#[derive(Debug)]
pub struct LogLine {
    multi: Option<MultiProgress>,
    buffer: Vec<u8>,
}

impl Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let write = || {
            let _ = std::io::stderr().write_all(&self.buffer);
        };
        match &self.multi {
            Some(multi) => multi.suspend(write),
            None => write(),
        }
    }
}
