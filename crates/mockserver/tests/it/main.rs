//! Integration tests of the `corpusgen-mockserver` binary: each starts it on a
//! free port and talks plain HTTP/1.1 to it over a TCP socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running mock server, stopped when dropped.
#[derive(Debug)]
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts the binary with `args` and reads the port from its first line.
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_corpusgen-mockserver"))
            .args(["--port", "0", "--max-seconds", "60"])
            .args(args)
            .env_clear()
            .stdout(Stdio::piped())
            .spawn()
            .expect("the mock server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .expect("the mock server prints a line");
        let port = line
            .trim_end()
            .strip_prefix("listening on http://127.0.0.1:")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("not a listening line: {line:?}"));
        Self { child, port }
    }

    /// Sends one request and returns the status code and the body.
    fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("the server accepts");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("the request is sent");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("the response is read");
        let (head, body) = response
            .split_once("\r\n\r\n")
            .expect("the response has a head and a body");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        (status, body.to_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const REQUEST: &str = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"Explain DPO"}]}"#;

/// Starts a server with `--chars chars` and checks that its first answer is a
/// chat completion whose content has exactly that many chars.
fn check_chars(chars: usize) -> serde_json::Value {
    let server = Server::start(&["--chars", &chars.to_string()]);
    let (status, body) = server.request("POST", "/v1/chat/completions", REQUEST);
    assert_eq!(status, 200, "{body}");
    let mut completion: serde_json::Value = serde_json::from_str(&body).expect("the body is JSON");
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    let content = completion["choices"][0]["message"]["content"]
        .as_str()
        .expect("the content is a string");
    assert_eq!(content.chars().count(), chars, "{content:?}");
    completion["created"] = "[created]".into();
    completion
}

#[test]
fn answers_a_chat_completion_of_exactly_chars_chars() {
    insta::assert_json_snapshot!(check_chars(60));
    for chars in [1, 5, 17, 1500, 4000] {
        check_chars(chars);
    }
}

#[test]
fn every_answer_differs() {
    let server = Server::start(&["--chars", "1500"]);
    let first = server.request("POST", "/v1/chat/completions", REQUEST).1;
    let second = server.request("POST", "/v1/chat/completions", REQUEST).1;
    assert_ne!(first, second);
}

#[test]
fn delay_ms_delays_every_answer() {
    let delay = Duration::from_millis(300);
    let server = Server::start(&["--delay-ms", "300", "--chars", "10"]);
    let started = Instant::now();
    let (status, _) = server.request("POST", "/v1/chat/completions", REQUEST);
    assert_eq!(status, 200);
    let elapsed = started.elapsed();
    assert!(elapsed >= delay, "answered after {elapsed:?}");
}

#[test]
fn other_paths_are_not_found() {
    let server = Server::start(&[]);
    let (status, body) = server.request("GET", "/v1/models", "");
    assert_eq!(status, 404);
    insta::assert_snapshot!(body, @r#"{"error":{"message":"the mock answers only POST /v1/chat/completions, not GET /v1/models","type":"invalid_request_error"}}"#);
}
