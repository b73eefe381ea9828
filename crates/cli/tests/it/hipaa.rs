//! The HIPAA policy: for every built-in and configured profile, with and
//! without `--hipaa`, a refused job sends nothing (the mock expects 0
//! requests), an eligible job sends, logs never carry text, files are 0600.

use std::fs;

use corpusgen_testkit::{Sequence, completion};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{FAKE_KEY, corpusgen, seed_args, workspace_fixtures};

const RESPONSE_TEXT: &str = "Protected answer text that must never reach a log line.";

/// A mock that answers any POST and expects exactly `expected` requests.
async fn mock(expected: u64) -> MockServer {
    let server = MockServer::start().await;
    let bodies = (0..expected.max(1)).map(|n| completion(RESPONSE_TEXT, &format!("chatcmpl-{n}")));
    Mock::given(method("POST"))
        .respond_with(Sequence::new(
            bodies
                .map(|body| ResponseTemplate::new(200).set_body_json(body))
                .collect(),
        ))
        .expect(expected)
        .mount(&server)
        .await;
    server
}

/// The config: one profile of each interesting kind, all pointed at `url`.
fn config(url: &str) -> String {
    format!(
        "[providers.azure-phi]\nkind = \"azure\"\nendpoint = \"{url}\"\napi_key_env = \"PHI_KEY\"\nhipaa_eligible = true\n\n\
         [providers.azure-dev]\nkind = \"azure\"\nendpoint = \"{url}\"\napi_key_env = \"PHI_KEY\"\n\n\
         [providers.openai-baa]\nkind = \"openai\"\nbase_url = \"{url}/v1\"\nhipaa_eligible = true\n\n\
         [providers.ollama]\nkind = \"local\"\nbase_url = \"{url}/v1\"\n\n\
         [providers.remote-gpu]\nkind = \"local\"\nbase_url = \"http://gpu-box.invalid:8000/v1\"\n\n\
         [providers.remote-gpu-attested]\nkind = \"local\"\nbase_url = \"http://gpu-box.invalid:8000/v1\"\nhipaa_eligible = true\n"
    )
}

/// (profile, extra flags, allowed under --hipaa)
fn matrix(url: &str) -> Vec<(&'static str, Vec<String>, bool)> {
    let v1 = format!("{url}/v1");
    vec![
        ("openai", vec!["--base-url".into(), v1.clone()], false),
        ("azure", vec!["--base-url".into(), url.to_string()], false),
        ("local", vec!["--base-url".into(), v1.clone()], true),
        (
            "replay",
            vec!["--fixtures".into(), workspace_fixtures()],
            true,
        ),
        ("azure-phi", vec![], true),
        (
            "azure-phi",
            vec!["--base-url".into(), url.to_string()],
            false,
        ),
        ("azure-dev", vec![], false),
        ("openai-baa", vec![], true),
        ("ollama", vec![], true),
        ("remote-gpu", vec![], false),
        ("remote-gpu-attested", vec![], false),
    ]
}

#[tokio::test]
async fn refused_jobs_send_nothing_and_eligible_jobs_send() {
    let probe = MockServer::start().await;
    for hipaa in [true, false] {
        for (profile, extra, allowed) in matrix(&probe.uri()) {
            let sends =
                profile != "replay" && !profile.starts_with("remote-gpu") && (allowed || !hipaa);
            let server = mock(u64::from(sends)).await;
            let folder = tempfile::tempdir().unwrap();
            fs::write(folder.path().join("corpusgen.toml"), config(&server.uri())).unwrap();
            let extra: Vec<String> = extra
                .iter()
                .map(|arg| arg.replace(&probe.uri(), &server.uri()))
                .collect();
            let mut args = seed_args(&[
                "--provider",
                profile,
                "--count",
                "1",
                "--max-retries",
                "0",
                "--out",
                "out.txt",
            ]);
            args.extend(extra.iter().map(String::as_str));
            if hipaa {
                args.push("--hipaa");
            }
            let run = corpusgen(
                folder.path(),
                &args,
                &[
                    ("OPENAI_API_KEY", FAKE_KEY),
                    ("AZURE_OPENAI_API_KEY", FAKE_KEY),
                    ("PHI_KEY", FAKE_KEY),
                ],
            )
            .await;
            let case = format!("{profile} {extra:?} hipaa={hipaa}");
            if hipaa && !allowed {
                assert_eq!(run.code, 3, "{case}: {run:?}");
                assert!(
                    run.stderr
                        .contains(&format!("--hipaa refuses the profile `{profile}`")),
                    "{case}: {}",
                    run.stderr
                );
                assert!(
                    !folder.path().join("out.jsonl").exists(),
                    "{case}: nothing is written"
                );
            } else if profile.starts_with("remote-gpu") {
                // Not refused, so it tries the unreachable host and gives up.
                assert_eq!(run.code, 4, "{case}: {run:?}");
            } else {
                assert_eq!(run.code, 0, "{case}: {run:?}");
            }
            // Dropping the server checks its `.expect(n)`.
        }
    }
}

#[tokio::test]
async fn the_refusal_says_how_to_attest() {
    let folder = tempfile::tempdir().unwrap();
    let run = corpusgen(
        folder.path(),
        &seed_args(&["--hipaa", "--count", "1", "--out", "out.txt"]),
        &[("OPENAI_API_KEY", FAKE_KEY)],
    )
    .await;
    assert_eq!(run.code, 3);
    insta::assert_snapshot!(run.stderr);
}

#[cfg(unix)]
#[tokio::test]
async fn under_hipaa_logs_carry_no_text_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let server = mock(2).await;
    let folder = tempfile::tempdir().unwrap();
    fs::write(folder.path().join("corpusgen.toml"), config(&server.uri())).unwrap();
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--provider",
            "azure-phi",
            "--hipaa",
            "-vv",
            "--count",
            "2",
            "--concurrency",
            "1",
            "--out",
            "phi/out.txt",
        ]),
        &[("PHI_KEY", FAKE_KEY)],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.lines().count() > 4,
        "-vv logs something: {}",
        run.stderr
    );
    for secret in [
        RESPONSE_TEXT,
        "Explain DPO",
        "DPO (Direct Preference Optimization)",
        "You are a teacher",
    ] {
        assert!(
            !run.stderr.contains(secret) && !run.stdout.contains(secret),
            "`{secret}` reached the output:\n{}",
            run.stderr
        );
    }
    for file in ["out.txt", "out.jsonl", "out.manifest.json"] {
        let mode = fs::metadata(folder.path().join("phi").join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
}

#[tokio::test]
async fn an_error_that_echoes_the_prompt_is_redacted_under_hipaa() {
    let server = MockServer::start().await;
    let echo = corpusgen_testkit::error_body(
        "Invalid request: 'Explain DPO (Direct Preference Optimization)' is not allowed",
        "invalid_request",
    );
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(echo))
        .expect(1)
        .mount(&server)
        .await;
    let folder = tempfile::tempdir().unwrap();
    fs::write(folder.path().join("corpusgen.toml"), config(&server.uri())).unwrap();
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--provider",
            "openai-baa",
            "--hipaa",
            "-vv",
            "--count",
            "1",
            "--out",
            "out.txt",
        ]),
        &[("OPENAI_API_KEY", FAKE_KEY)],
    )
    .await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("[prompt text]"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("Direct Preference Optimization"),
        "{}",
        run.stderr
    );
}
