//! The config file: errors with file:line:col, precedence of flags over
//! environment over file, profiles and the seed's model alias.

use std::fs;

use corpusgen_testkit::{Sequence, completions_of_lengths};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer};

use crate::support::{FAKE_KEY, corpusgen, openai_mock, seed_args};

/// Runs with `config` as `./corpusgen.toml` and checks exit 2 and the message.
async fn check_bad_config(config: &str, says: &str) {
    let folder = tempfile::tempdir().unwrap();
    fs::write(folder.path().join("corpusgen.toml"), config).unwrap();
    // A dead local port, so that a config that wrongly passes can reach nothing.
    let args = seed_args(&[
        "--count",
        "1",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--max-retries",
        "0",
        "--out",
        "out.txt",
    ]);
    let run = corpusgen(folder.path(), &args, &[("OPENAI_API_KEY", FAKE_KEY)]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(says),
        "stderr lacks `{says}`:\n{}",
        run.stderr
    );
}

#[tokio::test]
async fn bad_config_files_name_file_line_and_column() {
    check_bad_config(
        "[providers.phi]\nkind = \"azure\"\nendpont = \"https://x.openai.azure.com\"\n",
        "corpusgen.toml:3:1: unknown field `endpont`",
    )
    .await;
    check_bad_config(
        "[providers.phi]\nkind = \"azure\"\nhipaa_eligible = \"yes\"\n",
        "corpusgen.toml:3:18: invalid type: string \"yes\", expected a boolean",
    )
    .await;
    check_bad_config("[providers.claude]\nkind = \"anthropic\"\n", "corpusgen.toml:2:8: unknown variant `anthropic`, expected one of `openai`, `azure`, `local`").await;
    check_bad_config(
        "[provider.phi]\nkind = \"azure\"\n",
        "corpusgen.toml:1:2: unknown field `provider`, expected one of `providers`, `models`, `diversify`",
    )
    .await;
    check_bad_config(
        "[models.fast]\nprovider = \"nowhere\"\nmodel = \"x\"\n",
        "corpusgen.toml:1:1: the model alias `fast` names the provider `nowhere`",
    )
    .await;
    check_bad_config(
        "[models.phi]\nprovider = \"azure\"\nmodel = \"gpt-4o\"\n",
        "the model alias `phi` is served by an azure profile and needs `deployment",
    )
    .await;
}

#[tokio::test]
async fn an_explicit_config_file_must_exist() {
    let folder = tempfile::tempdir().unwrap();
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--config",
            "missing.toml",
            "--count",
            "1",
            "--out",
            "out.txt",
        ]),
        &[("OPENAI_API_KEY", FAKE_KEY)],
    )
    .await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("cannot read the config file missing.toml"),
        "{}",
        run.stderr
    );
    let run = corpusgen(
        folder.path(),
        &seed_args(&["--count", "1", "--out", "out.txt"]),
        &[
            ("OPENAI_API_KEY", FAKE_KEY),
            ("CORPUSGEN_CONFIG", "gone.toml"),
        ],
    )
    .await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot read the config file gone.toml"),
        "{}",
        run.stderr
    );
}

fn one_answer() -> Sequence {
    Sequence::of_bodies(completions_of_lengths(&[40]))
}

#[tokio::test]
async fn the_base_url_comes_from_the_flag_then_the_environment_then_the_file() {
    for winner in ["flag", "env", "file"] {
        let from_file = openai_mock(one_answer(), u64::from(winner == "file")).await;
        let from_env = openai_mock(one_answer(), u64::from(winner == "env")).await;
        let from_flag = openai_mock(one_answer(), u64::from(winner == "flag")).await;
        let folder = tempfile::tempdir().unwrap();
        fs::write(
            folder.path().join("corpusgen.toml"),
            format!(
                "[providers.openai]\nkind = \"openai\"\nbase_url = \"{}/v1\"\n",
                from_file.uri()
            ),
        )
        .unwrap();
        let flag_url = format!("{}/v1", from_flag.uri());
        let env_url = format!("{}/v1", from_env.uri());
        let mut args = seed_args(&["--count", "1", "--out", "out.txt"]);
        if winner == "flag" {
            args.extend(["--base-url", &flag_url]);
        }
        let mut env = vec![("OPENAI_API_KEY", FAKE_KEY)];
        if winner != "file" {
            env.push(("OPENAI_BASE_URL", &env_url));
        }
        let run = corpusgen(folder.path(), &args, &env).await;
        assert_eq!(run.code, 0, "{winner}: {run:?}");
    }
}

/// An Azure mock that expects `expected` requests to `deployment`, with the
/// api-key header and the default API version.
async fn azure_mock(deployment: &str, lengths: &[usize], expected: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/openai/deployments/{deployment}/chat/completions"
        )))
        .and(query_param("api-version", "2024-10-21"))
        .and(header("api-key", FAKE_KEY))
        .respond_with(Sequence::of_bodies(completions_of_lengths(lengths)))
        .expect(expected)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn the_seed_alias_reaches_its_azure_deployment_through_the_config() {
    let server = azure_mock("gpt-4o-high-quota", &[60], 1).await;
    let folder = tempfile::tempdir().unwrap();
    fs::write(
        folder.path().join("my.toml"),
        format!(
            "[providers.azure-phi]\nkind = \"azure\"\nendpoint = \"{}\"\napi_key_env = \"PHI_KEY\"\nhipaa_eligible = true\n\n[models.\"openai-gpt-4o-high-quota-chat\"]\nprovider = \"azure-phi\"\ndeployment = \"gpt-4o-high-quota\"\n",
            server.uri()
        ),
    )
    .unwrap();
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--config",
            "my.toml",
            "--model",
            "openai-gpt-4o-high-quota-chat",
            "--no-system",
            "--hipaa",
            "--count",
            "1",
            "--out",
            "out.txt",
        ]),
        &[("PHI_KEY", FAKE_KEY)],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(folder.path().join("out.manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["job"]["provider"], "azure-phi");
    assert_eq!(manifest["job"]["model"], "gpt-4o-high-quota");
    assert_eq!(manifest["job"]["hipaa"], true);
}

#[tokio::test]
async fn azure_gives_the_same_corpus_as_openai() {
    let lengths = [1710, 1419, 1899, 1839, 1663, 1484];
    let azure = azure_mock("gpt-4.1", &lengths, 6).await;
    let openai = openai_mock(Sequence::of_bodies(completions_of_lengths(&lengths)), 6).await;
    let folder = tempfile::tempdir().unwrap();
    let openai_url = format!("{}/v1", openai.uri());
    let azure_url = azure.uri();
    let common = ["--target-chars", "9164", "--concurrency", "1"];
    let mut openai_args = seed_args(&["--base-url", &openai_url, "--out", "openai.txt"]);
    openai_args.extend(common);
    let mut azure_args = seed_args(&[
        "--provider",
        "azure",
        "--base-url",
        &azure_url,
        "--out",
        "azure.txt",
    ]);
    azure_args.extend(common);
    let env = [
        ("OPENAI_API_KEY", FAKE_KEY),
        ("AZURE_OPENAI_API_KEY", FAKE_KEY),
    ];
    assert_eq!(corpusgen(folder.path(), &openai_args, &env).await.code, 0);
    let run = corpusgen(folder.path(), &azure_args, &env).await;
    assert_eq!(run.code, 0, "{run:?}");
    let openai_corpus = fs::read_to_string(folder.path().join("openai.txt")).unwrap();
    assert_eq!(openai_corpus.chars().count(), 10034);
    assert_eq!(
        fs::read_to_string(folder.path().join("azure.txt")).unwrap(),
        openai_corpus
    );
}

#[tokio::test]
async fn a_local_server_gets_no_authorization_header() {
    let server = openai_mock(Sequence::of_bodies(completions_of_lengths(&[30])), 1).await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--provider",
            "local",
            "--base-url",
            &base_url,
            "--model",
            "smollm2",
            "--count",
            "1",
            "--out",
            "out.txt",
        ]),
        &[("OPENAI_API_KEY", FAKE_KEY)],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let received = server.received_requests().await.unwrap();
    assert!(
        received[0].headers.get("authorization").is_none(),
        "a key must never reach a local server by accident"
    );
}

#[tokio::test]
async fn providers_lists_every_profile_without_keys() {
    let folder = tempfile::tempdir().unwrap();
    fs::write(
        folder.path().join("corpusgen.toml"),
        "[providers.azure-phi]\nkind = \"azure\"\nendpoint = \"https://example-resource.openai.azure.com\"\napi_key_env = \"PHI_KEY\"\nhipaa_eligible = true\n\n[providers.ollama]\nkind = \"local\"\nbase_url = \"http://127.0.0.1:11434/v1\"\n\n[providers.lab]\nkind = \"local\"\nbase_url = \"http://gpu-box.lab:8000/v1\"\n",
    )
    .unwrap();
    let env = [("OPENAI_API_KEY", FAKE_KEY), ("PHI_KEY", FAKE_KEY)];
    let table = corpusgen(folder.path(), &["providers"], &env).await;
    assert_eq!(table.code, 0, "{table:?}");
    insta::assert_snapshot!("providers_table", table.stdout);
    let json = corpusgen(folder.path(), &["providers", "--json"], &env).await;
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    insta::assert_json_snapshot!("providers_json", parsed);
}
