//! `corpusgen-mockserver`: a small, fast OpenAI-compatible server for
//! `cargo xtask bench`.
//!
//! `POST /v1/chat/completions` answers a `chat.completion` whose content has
//! exactly `--chars` chars (ASCII, so as many bytes), different for every
//! request, after `--delay-ms`. Every other path is a 404. It binds 127.0.0.1
//! only, prints `listening on http://127.0.0.1:PORT` once it accepts
//! connections, and stops by itself after `--max-seconds`.
//!
//! It runs on one thread (the benchmark pins it to one core) and waits for the
//! delay with a timer, so any number of requests can be in flight at once.
//! Streaming (`"stream": true`) is not supported: the answer is always a plain
//! completion, which OpenAI clients accept from servers that ignore `stream`.

use std::convert::Infallible;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const USAGE: &str =
    "usage: corpusgen-mockserver [--port P] [--delay-ms D] [--chars N] [--max-seconds S]";

/// The one path that answers; clients post to `{base_url}/chat/completions`
/// with a base URL ending in `/v1`.
const COMPLETIONS_PATH: &str = "/v1/chat/completions";

/// The model name every answer reports.
const MODEL: &str = "corpusgen-mockserver";

/// Repeated to fill each answer. Plain ASCII without quotes, backslashes or
/// `^`, so it needs no JSON escaping and never contains corpusgen's separator.
const FILLER: &str = "The mock server answers every request with the same number of chars, \
                      so a benchmark can count what the client does with them. ";

#[derive(Debug)]
struct Options {
    port: u16,
    delay: Duration,
    chars: usize,
    max_seconds: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            port: 0,
            delay: Duration::ZERO,
            chars: 1500,
            max_seconds: 600,
        }
    }
}

/// What every connection shares: the answer's shape and the request counter
/// that makes each answer different.
#[derive(Debug)]
struct Completions {
    delay: Duration,
    chars: usize,
    /// `FILLER` repeated to `chars` plus one `FILLER`, so an answer can start
    /// its filler at any offset within one repetition.
    filler: String,
    served: AtomicU64,
}

fn main() -> ExitCode {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("corpusgen-mockserver: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("corpusgen-mockserver: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("corpusgen-mockserver: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the flags; `Ok(None)` asks for the usage line.
fn parse_options(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options::default();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(None);
        }
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = || {
            inline_value
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("`{flag}` needs a value"))
        };
        match flag.as_str() {
            "--port" => options.port = parse_number(&flag, &value()?)?,
            "--delay-ms" => {
                options.delay = Duration::from_millis(parse_number(&flag, &value()?)?);
            }
            "--chars" => options.chars = parse_number(&flag, &value()?)?,
            "--max-seconds" => options.max_seconds = parse_number(&flag, &value()?)?,
            _ => return Err(format!("unknown argument `{flag}`")),
        }
    }
    Ok(Some(options))
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("`{flag}` needs a non-negative integer, not `{value}`"))
}

async fn serve(options: Options) -> std::io::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, options.port))).await?;
    let address = listener.local_addr()?;
    {
        // The harness reads the port from this line, so it goes out at once.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{address}")?;
        stdout.flush()?;
    }
    let completions = Arc::new(Completions {
        delay: options.delay,
        chars: options.chars,
        filler: FILLER.repeat(options.chars / FILLER.len() + 2),
        served: AtomicU64::new(0),
    });
    tokio::spawn(accept_connections(listener, completions));
    tokio::time::sleep(Duration::from_secs(options.max_seconds)).await;
    eprintln!(
        "corpusgen-mockserver: stopping after --max-seconds {}",
        options.max_seconds
    );
    Ok(())
}

async fn accept_connections(listener: TcpListener, completions: Arc<Completions>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                // Running out of file descriptors is the usual cause; give the
                // open connections a moment to close instead of spinning.
                eprintln!("corpusgen-mockserver: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Answers are small and the client waits for each one, so Nagle's
        // algorithm would only add latency.
        let _ = stream.set_nodelay(true);
        let completions = Arc::clone(&completions);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let completions = Arc::clone(&completions);
                async move { Ok::<_, Infallible>(answer(&completions, request).await) }
            });
            // A client that hangs up mid-request is no concern of a mock.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(completions: &Completions, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::POST || request.uri().path() != COMPLETIONS_PATH {
        let message = format!(
            "the mock answers only POST {COMPLETIONS_PATH}, not {} {}",
            request.method(),
            request.uri().path()
        );
        return json_response(StatusCode::NOT_FOUND, error_body(&message));
    }
    // The body is read whole so the connection can be kept alive; its
    // content does not change the answer.
    let request_bytes = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes().len(),
        Err(err) => {
            let message = format!("cannot read the request body: {err}");
            return json_response(StatusCode::BAD_REQUEST, error_body(&message));
        }
    };
    let index = completions.served.fetch_add(1, Ordering::Relaxed);
    if !completions.delay.is_zero() {
        tokio::time::sleep(completions.delay).await;
    }
    json_response(
        StatusCode::OK,
        completion_body(completions, index, request_bytes),
    )
}

/// The `chat.completion` for request `index`, its content exactly
/// `completions.chars` chars long.
fn completion_body(completions: &Completions, index: u64, request_bytes: usize) -> String {
    let content = content(completions, index);
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    // Rough token counts, about four chars a token as for English text.
    let prompt_tokens = request_bytes.div_ceil(4);
    let completion_tokens = completions.chars.div_ceil(4);
    let total_tokens = prompt_tokens + completion_tokens;
    format!(
        concat!(
            r#"{{"id":"chatcmpl-mock-{index}","object":"chat.completion","created":{created},"#,
            r#""model":"{model}","choices":[{{"index":0,"message":{{"role":"assistant","#,
            r#""content":"{content}"}},"finish_reason":"stop"}}],"usage":{{"#,
            r#""prompt_tokens":{prompt_tokens},"completion_tokens":{completion_tokens},"#,
            r#""total_tokens":{total_tokens}}}}}"#
        ),
        index = index,
        created = created,
        model = MODEL,
        content = content,
        prompt_tokens = prompt_tokens,
        completion_tokens = completion_tokens,
        total_tokens = total_tokens,
    )
}

/// `mock response INDEX. ` and then the filler from an offset that depends on
/// the index, cut to exactly `chars` chars and never ending in a space.
fn content(completions: &Completions, index: u64) -> String {
    let chars = completions.chars;
    let mut content = format!("mock response {index}. ");
    content.truncate(chars);
    let offset = usize::try_from(index).unwrap_or(0) % FILLER.len();
    let rest = chars - content.len();
    content.push_str(&completions.filler[offset..offset + rest]);
    if content.ends_with(' ') {
        content.pop();
        content.push('.');
    }
    content
}

fn error_body(message: &str) -> String {
    format!(
        r#"{{"error":{{"message":{},"type":"invalid_request_error"}}}}"#,
        json_string(message)
    )
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut literal = String::with_capacity(text.len() + 2);
    literal.push('"');
    for character in text.chars() {
        match character {
            '"' => literal.push_str("\\\""),
            '\\' => literal.push_str("\\\\"),
            character if character.is_control() => {
                literal.push_str(&format!("\\u{:04x}", u32::from(character)));
            }
            character => literal.push(character),
        }
    }
    literal.push('"');
    literal
}

fn json_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
