//! `cargo xtask bench [--quick] [NAME...]`: the throughput benchmark.
//!
//! Builds the release `corpusgen` and `corpusgen-mockserver`, then for each
//! scenario starts the mock (pinned to core 1) and runs `corpusgen generate`
//! against it (pinned to core 0) in a fresh temporary folder. The client's wall
//! time, CPU and peak RSS come from its `rusage`, read by a small measuring
//! process (this binary again, `bench --measure`) whose only child is the
//! client, so nothing else (cargo, rustc, the mock) counts towards them. The
//! mock's own CPU is the parent's `RUSAGE_CHILDREN` difference around reaping
//! the mock. The mock's ceiling comes from a minimal HTTP/1.1 load generator
//! (this binary again, `bench --load-generator`).
//!
//! The output is Markdown, so it can be pasted into `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use corpusgen_testkit::workspace_root;
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeValLike;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{cargo, run as run_command, target_dir};

const USAGE: &str = "usage: cargo xtask bench [--quick] [NAME...] \
                     (names: A, D, G1k, G10k, G100k, ceiling; with --quick: A, D, G100, G1k, G10k, ceiling)";

/// The hidden mode that runs one command and reports its rusage.
const MEASURE_FLAG: &str = "--measure";
/// The hidden mode that loads the mock and reports the requests per second.
const LOAD_GENERATOR_FLAG: &str = "--load-generator";
/// Starts the line each hidden mode reports on.
const REPORT_PREFIX: &str = "bench-report";

/// The client's core and the mock's, when `taskset` is there to pin them.
const CLIENT_CORE: &str = "0";
const MOCK_CORE: &str = "1";

/// The chars of every mock answer, as in the issue's goal.
const RESPONSE_CHARS: u64 = 1500;
/// The mock's safety bound; every scenario ends long before.
const MOCK_MAX_SECONDS: &str = "3600";
const TOPIC: &str = "throughput benchmark";
const API_KEY: &str = "bench";
const SEPARATOR: &str = "^^^^";

/// The size of a journal record with a 1500-char response (about 1.9 KB), for
/// the fsync probe.
const PROBE_RECORD_BYTES: usize = 2048;
const PROBE_RECORDS: u32 = 200;

/// The request the load generator sends, like the one corpusgen sends.
const LOAD_REQUEST_BODY: &str = r#"{"model":"gpt-4.1","messages":[{"role":"system","content":"You are a teacher."},{"role":"user","content":"Explain throughput benchmark"}],"temperature":1.0}"#;

#[derive(Debug, Clone)]
struct Scenario {
    name: String,
    requests: u64,
    in_flight: u64,
    latency_ms: u64,
}

/// What the measuring process reports about the client.
#[derive(Debug, Clone, Copy)]
struct ChildUsage {
    exit_code: i32,
    wall: Duration,
    user: Duration,
    system: Duration,
    max_rss_kib: u64,
}

#[derive(Debug)]
struct Outcome {
    scenario: Scenario,
    client: ChildUsage,
    mock_cpu: Duration,
    journal_responses: u64,
}

/// How the processes are placed on cores.
#[derive(Debug, Clone)]
enum Pinning {
    Taskset(PathBuf),
    Unpinned(&'static str),
}

/// The temporary folder the scenarios run in; removed when dropped, so a
/// failed run leaves no corpus of hundreds of megabytes behind.
#[derive(Debug)]
struct Scratch(PathBuf);

/// A running mock server; killed and reaped when dropped.
#[derive(Debug)]
struct Mock {
    child: Option<Child>,
    port: u16,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    match args.split_first() {
        Some((mode, rest)) if mode == MEASURE_FLAG => return measure(rest),
        Some((mode, rest)) if mode == LOAD_GENERATOR_FLAG => return load_generator(rest),
        _ => {}
    }
    let quick = args.iter().any(|arg| arg == "--quick");
    let names: Vec<&String> = args.iter().filter(|arg| *arg != "--quick").collect();
    if let Some(flag) = names.iter().find(|name| name.starts_with('-')) {
        bail!("unknown flag `{flag}`; {USAGE}");
    }
    let all = scenarios(quick);
    for name in &names {
        if *name != "ceiling" && !all.iter().any(|scenario| &scenario.name == *name) {
            bail!("no scenario `{name}`; {USAGE}");
        }
    }
    let selected: Vec<Scenario> = all
        .into_iter()
        .filter(|scenario| names.is_empty() || names.contains(&&scenario.name))
        .collect();
    let run_ceiling = names.is_empty() || names.iter().any(|name| *name == "ceiling");

    let root = workspace_root();
    run_command(Command::new(cargo()).args([
        "build",
        "--release",
        "--package",
        "corpusgen",
        "--package",
        "corpusgen-mockserver",
    ]))?;
    let release = target_dir(&root).join("release");
    let client_binary = release.join("corpusgen");
    let mock_binary = release.join("corpusgen-mockserver");
    let this_binary = std::env::current_exe().context("cannot find the xtask binary")?;
    let pinning = pinning();
    let scratch_folder = Scratch::create()?;
    let scratch = scratch_folder.0.as_path();

    let mut report = String::new();
    writeln!(report, "{}", machine_line(&pinning))?;
    writeln!(report, "{}", fsync_line(scratch)?)?;

    let mut outcomes = Vec::new();
    for scenario in selected {
        eprintln!(
            "bench: {} ({} requests, {} in flight, {} ms)",
            scenario.name, scenario.requests, scenario.in_flight, scenario.latency_ms
        );
        let folder = scratch.join(&scenario.name);
        std::fs::create_dir_all(&folder)?;
        let outcome = run_scenario(
            &scenario,
            &folder,
            &client_binary,
            &mock_binary,
            &this_binary,
            &pinning,
        )?;
        std::fs::remove_dir_all(&folder)?;
        eprintln!("{}", table_row(&outcome));
        outcomes.push(outcome);
    }
    let ceiling = if run_ceiling {
        let requests = if quick { 5_000 } else { 50_000 };
        Some(ceiling_line(
            requests,
            &mock_binary,
            &this_binary,
            &pinning,
        )?)
    } else {
        None
    };

    if !outcomes.is_empty() {
        writeln!(report)?;
        writeln!(report, "{}", table_header())?;
        for outcome in &outcomes {
            writeln!(report, "{}", table_row(outcome))?;
        }
        for outcome in &outcomes {
            if outcome.journal_responses != outcome.scenario.requests {
                writeln!(
                    report,
                    "\n{}: the journal holds {} responses for {} in the corpus (requests in flight when the target was met)",
                    outcome.scenario.name, outcome.journal_responses, outcome.scenario.requests
                )?;
            }
        }
    }
    if let Some(ceiling) = ceiling {
        writeln!(report, "\n{ceiling}")?;
    }
    print!("{report}");
    std::io::stdout().flush()?;
    Ok(())
}

/// The scenarios of the issue, or a tenth of their sizes with `--quick`.
fn scenarios(quick: bool) -> Vec<Scenario> {
    let scale = if quick { 10 } else { 1 };
    let scenario = |name: String, requests: u64, latency_ms: u64| Scenario {
        name,
        requests: requests / scale,
        in_flight: 64,
        latency_ms,
    };
    let mut scenarios = vec![
        scenario("A".into(), 2_000, 200),
        scenario("D".into(), 5_000, 0),
    ];
    for requests in [1_000, 10_000, 100_000] {
        let requests_scaled = requests / scale;
        let name = if requests_scaled >= 1_000 {
            format!("G{}k", requests_scaled / 1_000)
        } else {
            format!("G{requests_scaled}")
        };
        scenarios.push(scenario(name, requests, 0));
    }
    scenarios
}

fn run_scenario(
    scenario: &Scenario,
    folder: &Path,
    client_binary: &Path,
    mock_binary: &Path,
    this_binary: &Path,
    pinning: &Pinning,
) -> Result<Outcome> {
    let mock = Mock::start(mock_binary, scenario.latency_ms, pinning)?;
    let base_url = format!("http://127.0.0.1:{}/v1", mock.port);
    let mut command = pinned(pinning, CLIENT_CORE, this_binary);
    command
        .args(["bench", MEASURE_FLAG, "--"])
        .arg(client_binary)
        .args(["generate", "--topic", TOPIC])
        .args(["--count", &scenario.requests.to_string()])
        .args(["--concurrency", &scenario.in_flight.to_string()])
        .args(["--base-url", &base_url])
        .args(["--out", "bench.txt", "--quiet", "--max-retries", "0"])
        .current_dir(folder)
        // Nothing from the developer's environment (a real key, a base URL,
        // a config file under HOME) reaches the client.
        .env_clear()
        .env("OPENAI_API_KEY", API_KEY);
    let client = run_reporting(&mut command)
        .and_then(|report| parse_child_usage(&report))
        .with_context(|| format!("scenario {}", scenario.name))?;
    let mock_cpu = mock.stop()?;
    ensure!(
        client.exit_code == 0,
        "scenario {}: corpusgen exited with code {}",
        scenario.name,
        client.exit_code
    );
    check_corpus(scenario, &folder.join("bench.txt"))?;
    let journal_responses = count_journal_responses(&folder.join("bench.jsonl"))?;
    Ok(Outcome {
        scenario: scenario.clone(),
        client,
        mock_cpu,
        journal_responses,
    })
}

/// Fails unless the corpus holds exactly the requested number of responses,
/// each of the mock's length.
fn check_corpus(scenario: &Scenario, corpus: &Path) -> Result<()> {
    let text = std::fs::read_to_string(corpus)
        .with_context(|| format!("cannot read the corpus {}", corpus.display()))?;
    let responses: Vec<&str> = text.split(SEPARATOR).collect();
    ensure!(
        u64::try_from(responses.len())? == scenario.requests,
        "scenario {}: the corpus holds {} responses, not {}",
        scenario.name,
        responses.len(),
        scenario.requests
    );
    if let Some(short) = responses
        .iter()
        .find(|response| u64::try_from(response.chars().count()).ok() != Some(RESPONSE_CHARS))
    {
        bail!(
            "scenario {}: a response in the corpus has {} chars, not {RESPONSE_CHARS}",
            scenario.name,
            short.chars().count()
        );
    }
    Ok(())
}

fn count_journal_responses(journal: &Path) -> Result<u64> {
    let file = std::fs::File::open(journal)
        .with_context(|| format!("cannot read the journal {}", journal.display()))?;
    let mut responses = 0;
    for line in BufReader::new(file).lines() {
        if line?.starts_with(r#"{"type":"response""#) {
            responses += 1;
        }
    }
    Ok(responses)
}

impl Scratch {
    fn create() -> Result<Self> {
        let folder = std::env::temp_dir().join(format!("corpusgen-bench-{}", std::process::id()));
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        Ok(Self(folder))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Mock {
    fn start(binary: &Path, delay_ms: u64, pinning: &Pinning) -> Result<Self> {
        let mut command = pinned(pinning, MOCK_CORE, binary);
        command
            .args(["--port", "0", "--delay-ms", &delay_ms.to_string()])
            .args(["--chars", &RESPONSE_CHARS.to_string()])
            .args(["--max-seconds", MOCK_MAX_SECONDS])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("the mock's stdout is piped")?;
        let mut mock = Self {
            child: Some(child),
            port: 0,
        };
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        mock.port = line
            .trim_end()
            .strip_prefix("listening on http://127.0.0.1:")
            .and_then(|port| port.parse().ok())
            .with_context(|| format!("the mock did not say where it listens: {line:?}"))?;
        Ok(mock)
    }

    /// Kills the mock and returns the CPU time it used, user and system.
    fn stop(mut self) -> Result<Duration> {
        let mut child = self.child.take().context("the mock runs")?;
        let before = children_cpu()?;
        child.kill()?;
        child.wait()?;
        Ok(children_cpu()?.saturating_sub(before))
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The user and system CPU of the calling thread so far.
fn thread_cpu() -> Result<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_THREAD)?;
    Ok(duration_of(usage.user_time()) + duration_of(usage.system_time()))
}

/// The user and system CPU of all children reaped so far.
fn children_cpu() -> Result<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    Ok(duration_of(usage.user_time()) + duration_of(usage.system_time()))
}

fn duration_of(time: nix::sys::time::TimeVal) -> Duration {
    Duration::from_micros(u64::try_from(time.num_microseconds()).unwrap_or(0))
}

fn pinning() -> Pinning {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if cores < 2 {
        return Pinning::Unpinned("unpinned: fewer than 2 cores");
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|folder| folder.join("taskset"))
            .find(|candidate| candidate.is_file())
    });
    match found {
        Some(taskset) => Pinning::Taskset(taskset),
        None => Pinning::Unpinned("unpinned: no taskset on PATH"),
    }
}

/// `program` as a command, pinned to `core` when `taskset` is there.
fn pinned(pinning: &Pinning, core: &str, program: &Path) -> Command {
    match pinning {
        Pinning::Taskset(taskset) => {
            let mut command = Command::new(taskset);
            command.args(["-c", core]).arg(program);
            command
        }
        Pinning::Unpinned(_) => Command::new(program),
    }
}

/// Runs a hidden-mode command and returns its report line.
fn run_reporting(command: &mut Command) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start `{}`", crate::describe(command)))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(REPORT_PREFIX))
        .map(|report| report.trim().to_owned())
        .with_context(|| {
            format!(
                "`{}` reported nothing ({}): {stdout}",
                crate::describe(command),
                output.status
            )
        })
}

/// The value of `key=VALUE` in a report line.
fn report_value(report: &str, key: &str) -> Result<u64> {
    report
        .split_whitespace()
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
        .and_then(|value| value.parse().ok())
        .with_context(|| format!("no `{key}` in the report `{report}`"))
}

fn parse_child_usage(report: &str) -> Result<ChildUsage> {
    let exit_code = report
        .split_whitespace()
        .find_map(|pair| pair.strip_prefix("exit="))
        .and_then(|value| value.parse().ok())
        .with_context(|| format!("no `exit` in the report `{report}`"))?;
    Ok(ChildUsage {
        exit_code,
        wall: Duration::from_micros(report_value(report, "wall_us")?),
        user: Duration::from_micros(report_value(report, "user_us")?),
        system: Duration::from_micros(report_value(report, "sys_us")?),
        max_rss_kib: report_value(report, "maxrss_kib")?,
    })
}

/// `bench --measure -- PROGRAM ARGS...`: runs the program as this process's
/// only child and reports its wall time and rusage. Its stdout is dropped, so
/// the report is the only line on ours.
fn measure(args: &[String]) -> Result<()> {
    let Some((program, program_args)) = args
        .strip_prefix(&["--".to_owned()])
        .and_then(|command| command.split_first())
    else {
        bail!("usage: cargo xtask bench {MEASURE_FLAG} -- PROGRAM [ARGS...]");
    };
    let started = Instant::now();
    let status = Command::new(program)
        .args(program_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("cannot start {program}"))?;
    let wall = started.elapsed();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    println!(
        "{REPORT_PREFIX} exit={} wall_us={} user_us={} sys_us={} maxrss_kib={}",
        status.code().unwrap_or(-1),
        wall.as_micros(),
        usage.user_time().num_microseconds(),
        usage.system_time().num_microseconds(),
        // Linux reports the peak resident set size in KiB.
        usage.max_rss()
    );
    Ok(())
}

/// The mock's ceiling: requests per second at 0 ms from the minimal load
/// generator, and the mock's CPU per request.
fn ceiling_line(
    requests: u64,
    mock_binary: &Path,
    this_binary: &Path,
    pinning: &Pinning,
) -> Result<String> {
    let connections = 64;
    eprintln!("bench: mock ceiling ({requests} requests, {connections} connections, 0 ms)");
    let mock = Mock::start(mock_binary, 0, pinning)?;
    let mut command = pinned(pinning, CLIENT_CORE, this_binary);
    command.args([
        "bench",
        LOAD_GENERATOR_FLAG,
        &mock.port.to_string(),
        &requests.to_string(),
        &connections.to_string(),
    ]);
    let loader_cpu_before = children_cpu()?;
    let report = run_reporting(&mut command)?;
    let loader_cpu = children_cpu()?.saturating_sub(loader_cpu_before);
    let mock_cpu = mock.stop()?;
    let wall = Duration::from_micros(report_value(&report, "wall_us")?);
    let served = report_value(&report, "requests")?;
    ensure!(
        served == requests,
        "the load generator got {served} answers, not {requests}"
    );
    let per_second = requests as f64 / wall.as_secs_f64();
    let mock_us = mock_cpu.as_secs_f64() * 1e6 / requests as f64;
    Ok(format!(
        "mock ceiling: {requests} requests of {RESPONSE_CHARS} chars over {connections} connections at 0 ms: \
         {per_second:.0} requests/s from a minimal HTTP/1.1 load generator; \
         mock CPU {mock_us:.1} us/request (busy {:.0} % of the run; 1 s / CPU per request = {:.0} requests/s), \
         load generator CPU {:.0} % of its core",
        100.0 * mock_cpu.as_secs_f64() / wall.as_secs_f64(),
        1e6 / mock_us,
        100.0 * loader_cpu.as_secs_f64() / wall.as_secs_f64(),
    ))
}

/// `bench --load-generator PORT REQUESTS CONNECTIONS`: sends REQUESTS chat
/// completion requests over CONNECTIONS keep-alive connections, one in flight
/// on each, on one thread, and reports how long they took.
fn load_generator(args: &[String]) -> Result<()> {
    let [port, requests, connections] = args else {
        bail!("usage: cargo xtask bench {LOAD_GENERATOR_FLAG} PORT REQUESTS CONNECTIONS");
    };
    let port: u16 = port.parse().context("PORT")?;
    let requests: u64 = requests.parse().context("REQUESTS")?;
    let connections: u64 = connections.parse().context("CONNECTIONS")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let (served, wall) = runtime.block_on(async move {
        let remaining = Arc::new(AtomicU64::new(requests));
        let started = Instant::now();
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(load_one_connection(port, Arc::clone(&remaining))))
            .collect();
        let mut served = 0;
        for task in tasks {
            served += task.await??;
        }
        anyhow::Ok((served, started.elapsed()))
    })?;
    println!(
        "{REPORT_PREFIX} requests={served} wall_us={}",
        wall.as_micros()
    );
    Ok(())
}

async fn load_one_connection(port: u16, remaining: Arc<AtomicU64>) -> Result<u64> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{LOAD_REQUEST_BODY}",
        LOAD_REQUEST_BODY.len()
    );
    let mut buffer = Vec::with_capacity(8192);
    let mut served = 0;
    while remaining
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(1)
        })
        .is_ok()
    {
        stream.write_all(request.as_bytes()).await?;
        read_one_response(&mut stream, &mut buffer).await?;
        served += 1;
    }
    Ok(served)
}

/// Reads one `200 OK` response with a `content-length` body.
async fn read_one_response(stream: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> Result<()> {
    buffer.clear();
    let (head_end, body_length) = loop {
        if stream.read_buf(buffer).await? == 0 {
            bail!("the mock closed the connection mid-response");
        }
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end])?;
            ensure!(
                head.starts_with("HTTP/1.1 200"),
                "the mock answered {head:?}"
            );
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .context("the mock's answer has no content-length")?;
            break (end + 4, length);
        }
    };
    while buffer.len() < head_end + body_length {
        if stream.read_buf(buffer).await? == 0 {
            bail!("the mock closed the connection mid-body");
        }
    }
    Ok(())
}

/// The machine: cores, CPU model, memory, kernel, and how processes are pinned.
fn machine_line(pinning: &Pinning) -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or_else(
            || "unknown memory".into(),
            |kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |release| release.trim().to_owned());
    let placement = match pinning {
        Pinning::Taskset(_) => {
            format!("client pinned to core {CLIENT_CORE}, mock to core {MOCK_CORE} (taskset)")
        }
        Pinning::Unpinned(reason) => (*reason).to_owned(),
    };
    // Other work on the machine slows the wall times, so the figures carry
    // the load it had when they were taken.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|loadavg| loadavg.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    format!(
        "machine: {cores} cores (nproc), {model}, {memory_gib}, Linux {kernel}; {placement}; \
         load average {load} at the start; every response {RESPONSE_CHARS} chars"
    )
}

/// The cost of one append plus `fdatasync` of a journal-sized record in the
/// folder the scenarios run in: corpusgen syncs the journal after every
/// response.
fn fsync_line(folder: &Path) -> Result<String> {
    let probe = folder.join("fsync-probe.jsonl");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&probe)
        .with_context(|| format!("cannot create {}", probe.display()))?;
    let mut record = vec![b'x'; PROBE_RECORD_BYTES - 1];
    record.push(b'\n');
    let cpu_before = thread_cpu()?;
    let started = Instant::now();
    for _ in 0..PROBE_RECORDS {
        file.write_all(&record)?;
        file.sync_data()?;
    }
    let per_record = started.elapsed() / PROBE_RECORDS;
    let cpu_per_record = thread_cpu()?.saturating_sub(cpu_before) / PROBE_RECORDS;
    drop(file);
    std::fs::remove_file(&probe)?;
    Ok(format!(
        "fsync probe: append + fdatasync of a {PROBE_RECORD_BYTES}-byte record in {} ({}): \
         {:.0} us wall and {:.0} us CPU per record ({PROBE_RECORDS} records, one at a time)",
        folder.display(),
        file_system_of(folder),
        per_record.as_secs_f64() * 1e6,
        cpu_per_record.as_secs_f64() * 1e6
    ))
}

/// The type of the file system `folder` is on, from `/proc/self/mountinfo`.
fn file_system_of(folder: &Path) -> String {
    let folder = folder
        .canonicalize()
        .unwrap_or_else(|_| folder.to_path_buf());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| {
            // Fields: id, parent, major:minor, root, mount point, options...,
            // then ` - ` and the file system type.
            let mount_point = line.split(' ').nth(4)?;
            let file_system = line.split(" - ").nth(1)?.split(' ').next()?;
            folder
                .starts_with(mount_point)
                .then(|| (mount_point.len(), file_system.to_owned()))
        })
        .max_by_key(|(length, _)| *length)
        .map_or_else(
            || "unknown file system".into(),
            |(_, file_system)| file_system,
        )
}

fn table_header() -> String {
    [
        "| scenario | requests | in flight | latency | wall | wall/ideal | requests/s | client CPU/request | of which sys | peak RSS | mock CPU/request |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    .join("\n")
}

fn table_row(outcome: &Outcome) -> String {
    let Outcome {
        scenario,
        client,
        mock_cpu,
        ..
    } = outcome;
    let requests = scenario.requests as f64;
    let wall = client.wall.as_secs_f64();
    let ratio = if scenario.latency_ms == 0 {
        "-".to_owned()
    } else {
        let ideal = scenario.requests.div_ceil(scenario.in_flight) as f64
            * scenario.latency_ms as f64
            / 1000.0;
        format!("{:.3}", wall / ideal)
    };
    let cpu = (client.user + client.system).as_secs_f64();
    format!(
        "| {} | {} | {} | {} ms | {wall:.2} s | {ratio} | {:.0} | {:.0} us | {:.0} % | {:.1} MB | {:.0} us |",
        scenario.name,
        scenario.requests,
        scenario.in_flight,
        scenario.latency_ms,
        requests / wall,
        cpu * 1e6 / requests,
        if cpu > 0.0 {
            100.0 * client.system.as_secs_f64() / cpu
        } else {
            0.0
        },
        client.max_rss_kib as f64 * 1024.0 / 1e6,
        mock_cpu.as_secs_f64() * 1e6 / requests,
    )
}
