//! Running the binary.

use std::path::Path;
use std::process::Output;

/// A recognisable fake key: tests assert it never shows up in any output.
pub const FAKE_KEY: &str = "sk-fake-corpusgen-key-4242";

/// The result of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `corpusgen ARGS` in `folder` with only the given environment.
pub async fn corpusgen(folder: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let output: Output = tokio::process::Command::new(env!("CARGO_BIN_EXE_corpusgen"))
        .args(args)
        .current_dir(folder)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .await
        .expect("the corpusgen binary starts");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    };
    assert!(
        !run.stdout.contains(FAKE_KEY) && !run.stderr.contains(FAKE_KEY),
        "the key leaked: {run:?}"
    );
    run
}

/// The seed's generate invocation, to which a test adds its own flags.
pub fn seed_args<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "generate",
        "--topic",
        "DPO (Direct Preference Optimization)",
    ];
    args.extend_from_slice(rest);
    args
}

/// The seed's hand-curated fixtures folder, as a string argument.
pub fn workspace_fixtures() -> String {
    corpusgen_testkit::workspace_root()
        .join("fixtures/openai/dpo-chatgpt")
        .to_string_lossy()
        .into_owned()
}

/// A mock OpenAI server whose chat endpoint answers `answers` in order and
/// expects exactly `expected` requests.
pub async fn openai_mock(
    answers: corpusgen_testkit::Sequence,
    expected: u64,
) -> wiremock::MockServer {
    use wiremock::matchers::{method, path};
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(answers)
        .expect(expected)
        .mount(&server)
        .await;
    server
}
