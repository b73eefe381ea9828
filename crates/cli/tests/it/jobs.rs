//! `corpusgen run JOBS.toml`: whole job files run by the binary, against
//! replay fixtures made in a temporary folder and wiremock servers.

use std::fs;
use std::path::Path;
use std::time::Duration;

use corpusgen_testkit::{Sequence, completions_of_lengths, error_body, fixture_bodies};
use serde_json::Value;
use wiremock::ResponseTemplate;
use wiremock::matchers::{method, path};

use crate::support::{FAKE_KEY, Run, corpusgen, openai_mock, workspace_fixtures};

/// Writes completion bodies of these lengths as a replay fixtures folder.
fn fixtures(folder: &Path, lengths: &[usize]) {
    fs::create_dir_all(folder).unwrap();
    for (position, body) in completions_of_lengths(lengths).iter().enumerate() {
        fs::write(
            folder.join(format!("{position:02}.json")),
            serde_json::to_string(body).unwrap(),
        )
        .unwrap();
    }
}

fn manifest(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

fn chars(path: &Path) -> u64 {
    fs::read_to_string(path).unwrap().chars().count() as u64
}

/// Writes `text` as `jobs/grid.toml` in `folder` and runs it.
async fn run_file(folder: &Path, text: &str, flags: &[&str], env: &[(&str, &str)]) -> Run {
    fs::create_dir_all(folder.join("jobs")).unwrap();
    fs::write(folder.join("jobs/grid.toml"), text).unwrap();
    let mut args = vec!["run", "jobs/grid.toml"];
    args.extend_from_slice(flags);
    corpusgen(folder, &args, env).await
}

#[tokio::test]
async fn a_matrix_of_two_topics_and_two_models_writes_four_corpora() {
    let folder = tempfile::tempdir().unwrap();
    fixtures(&folder.path().join("fixtures/a"), &[100, 200, 300]);
    let run = run_file(
        folder.path(),
        r#"
[defaults]
provider = "replay"
fixtures = "../fixtures/a"
count = 2
concurrency = 1

[matrix]
topic = ["DPO (Direct Preference Optimization)", "RLHF"]
model = ["gpt-4.1", "gpt-4o"]

[[job]]
name = "gen"
out = "../data/arxiv/list_of_{topic_slug}_explanations_{model_slug}_generated.txt"
"#,
        &[],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    for topic in ["dpo_direct_preference_optimization", "rlhf"] {
        for model in ["gpt_4_1", "gpt_4o"] {
            let corpus = folder.path().join(format!(
                "data/arxiv/list_of_{topic}_explanations_{model}_generated.txt"
            ));
            // Two responses of 100 and 200 chars and one separator.
            assert_eq!(chars(&corpus), 304, "{}", corpus.display());
        }
    }
    let written = fs::read_dir(folder.path().join("data/arxiv"))
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().extension().unwrap() == "txt")
        .count();
    assert_eq!(written, 4);
    let rlhf = manifest(
        &folder
            .path()
            .join("data/arxiv/list_of_rlhf_explanations_gpt_4o_generated.manifest.json"),
    );
    assert_eq!(rlhf["job"]["topic"], "RLHF");
    assert_eq!(rlhf["job"]["model"], "gpt-4o");
    assert_eq!(run.stdout.lines().count(), 5, "{}", run.stdout);
}

#[tokio::test]
async fn a_job_reference_targets_the_length_of_that_jobs_corpus() {
    let folder = tempfile::tempdir().unwrap();
    fixtures(&folder.path().join("curated"), &[400, 500, 600]);
    fixtures(
        &folder.path().join("model"),
        &[300, 300, 300, 300, 300, 300, 300],
    );
    let run = run_file(
        folder.path(),
        r#"
[defaults]
topic = "DPO"
provider = "replay"
concurrency = 1

[[job]]
name = "matched"
fixtures = "../model"
match_length = "job:curated"
out = "{name}.txt"

[[job]]
name = "curated"
fixtures = "../curated"
count = 3
out = "{name}.txt"
"#,
        &[],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let curated = chars(&folder.path().join("jobs/curated.txt"));
    assert_eq!(curated, 400 + 500 + 600 + 2 * 4);
    let matched = manifest(&folder.path().join("jobs/matched.manifest.json"));
    assert_eq!(matched["job"]["target"]["chars"]["chars"], curated);
    assert_eq!(
        matched["job"]["target"]["chars"]["matched_from"],
        "jobs/curated.txt"
    );
    // At least 1508 chars of 300-char responses: six of them.
    assert_eq!(matched["totals"]["responses_used"], 6);
    // The dependency ran first, though it comes second in the file, where
    // the summary keeps it.
    let curated_manifest = manifest(&folder.path().join("jobs/curated.manifest.json"));
    assert!(
        curated_manifest["timings"]["finished"].as_str().unwrap()
            <= matched["timings"]["started"].as_str().unwrap()
    );
    let rows: Vec<&str> = run.stdout.lines().collect();
    assert!(
        rows[1].starts_with("matched  replay    6          1820   1508 chars"),
        "{}",
        run.stdout
    );
    assert!(rows[2].starts_with("curated"), "{}", run.stdout);
}

#[tokio::test]
async fn a_bad_job_file_is_one_sentence_and_exit_2_before_any_job_runs() {
    let cases = [
        (
            "cycle",
            "[defaults]\ntopic = \"x\"\nprovider = \"replay\"\nfixtures = \"f\"\n\
             [[job]]\nname = \"a\"\nmatch_length = \"job:b\"\nout = \"a.txt\"\n\
             [[job]]\nname = \"b\"\nmatch_length = \"job:a\"\nout = \"b.txt\"\n\
             [[job]]\nname = \"c\"\ncount = 1\nout = \"c.txt\"\n",
            "jobs/grid.toml: the match_length = \"job:...\" references form a cycle (a -> b -> a)",
        ),
        (
            "unknown key",
            "[[job]]\nname = \"c\"\ntopic = \"x\"\ncount = 1\nout = \"c.txt\"\nprovder = \"replay\"\n",
            "jobs/grid.toml: job `c` has the unknown key `provder`",
        ),
        (
            "a job that cannot start",
            "[defaults]\ntopic = \"x\"\ncount = 1\n\
             [[job]]\nname = \"c\"\nprovider = \"replay\"\nfixtures = \"../f\"\nout = \"c.txt\"\n\
             [[job]]\nname = \"d\"\nout = \"d.txt\"\n",
            "jobs/grid.toml: job `d`: OPENAI_API_KEY is not set",
        ),
    ];
    for (case, text, says) in cases {
        let folder = tempfile::tempdir().unwrap();
        fixtures(&folder.path().join("f"), &[100]);
        let run = run_file(folder.path(), text, &[], &[]).await;
        assert_eq!(run.code, 2, "{case}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{case}: {}", run.stderr);
        assert!(
            run.stderr.starts_with(&format!("error: {says}")),
            "{case}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{case}: {}", run.stdout);
        assert!(
            !folder.path().join("jobs/c.jsonl").exists(),
            "{case}: job c ran"
        );
    }
}

/// A mock that answers each request after `delay`, expecting `expected`
/// requests.
async fn slow_mock(
    lengths: &[usize],
    delay: Duration,
    expected: impl Into<wiremock::Times>,
) -> wiremock::MockServer {
    let server = wiremock::MockServer::start().await;
    let answers = completions_of_lengths(lengths)
        .into_iter()
        .map(|body| {
            ResponseTemplate::new(200)
                .set_body_json(body)
                .set_delay(delay)
        })
        .collect();
    wiremock::Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Sequence::new(answers))
        .expect(expected)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn two_jobs_at_once_against_wiremock_and_a_failure_skips_its_dependent() {
    let first = slow_mock(&[700, 800], Duration::from_millis(400), 2).await;
    let second = slow_mock(&[900, 1000], Duration::from_millis(400), 2).await;
    let refusing = openai_mock(
        Sequence::new(vec![ResponseTemplate::new(401).set_body_json(error_body(
            "Incorrect API key provided",
            "invalid_api_key",
        ))]),
        1,
    )
    .await;
    let folder = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[defaults]
topic = "DPO (Direct Preference Optimization)"
count = 2
concurrency = 1
max_retries = 0
out = "out/{{name}}.txt"

[[job]]
name = "first"
base_url = "{}/v1"

[[job]]
name = "second"
base_url = "{}/v1"

[[job]]
name = "refused"
base_url = "{}/v1"
count = 1

[[job]]
name = "after_refused"
base_url = "{}/v1"
count = false
match_length = "job:refused"
"#,
        first.uri(),
        second.uri(),
        refusing.uri(),
        refusing.uri(),
    );
    let run = run_file(
        folder.path(),
        &text,
        &["--jobs", "2"],
        &[("OPENAI_API_KEY", FAKE_KEY)],
    )
    .await;
    assert_eq!(run.code, 3, "{run:?}");
    let out = folder.path().join("jobs/out");
    assert_eq!(chars(&out.join("first.txt")), 700 + 4 + 800);
    assert_eq!(chars(&out.join("second.txt")), 900 + 4 + 1000);
    assert!(!out.join("after_refused.jsonl").exists());
    // Both ran at once: each started before the other finished.
    let (a, b) = (
        manifest(&out.join("first.manifest.json")),
        manifest(&out.join("second.manifest.json")),
    );
    let time = |manifest: &Value, at: &str| manifest["timings"][at].as_str().unwrap().to_string();
    assert!(time(&a, "started") < time(&b, "finished"), "{a:#}\n{b:#}");
    assert!(time(&b, "started") < time(&a, "finished"), "{a:#}\n{b:#}");
    assert!(
        run.stderr
            .contains("error: job `refused`: request 0 failed")
            && run.stderr.contains("Incorrect API key provided"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .lines()
            .last()
            .unwrap()
            .contains("2 of 4 jobs did not finish: refused (refused), after_refused (skipped)"),
        "{}",
        run.stderr
    );
    insta::assert_snapshot!(run.stdout);
}

#[tokio::test]
async fn progress_at_v_without_a_terminal_writes_no_control_characters() {
    let folder = tempfile::tempdir().unwrap();
    fixtures(&folder.path().join("fixtures/a"), &[100, 200, 300]);
    let run = run_file(
        folder.path(),
        r#"
[[job]]
name = "gen"
topic = "DPO"
provider = "replay"
fixtures = "../fixtures/a"
count = 3
out = "gen.txt"
"#,
        &["-v"],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("gen: done: 3 of 3 responses"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("response received"), "{}", run.stderr);
    for byte in [0x1b_u8, b'\r'] {
        assert!(
            !run.stderr.as_bytes().contains(&byte) && !run.stdout.as_bytes().contains(&byte),
            "byte {byte:#x} in {:?}",
            run.stderr
        );
    }
    // Without -v, only the summary on stdout.
    let quiet = corpusgen(folder.path(), &["run", "jobs/grid.toml"], &[]).await;
    assert_eq!(quiet.code, 0, "{quiet:?}");
    assert!(quiet.stderr.is_empty(), "{}", quiet.stderr);
}

/// Runs `examples/dpo.toml` from a copy of the example in a temporary
/// folder whose `fixtures` is `fixtures_root`, so nothing is written into
/// the repository.
async fn run_dpo_example(fixtures_root: &Path) -> (tempfile::TempDir, Run) {
    let folder = tempfile::tempdir().unwrap();
    let example = corpusgen_testkit::workspace_root().join("examples/dpo.toml");
    fs::create_dir_all(folder.path().join("examples")).unwrap();
    fs::copy(&example, folder.path().join("examples/dpo.toml")).unwrap();
    std::os::unix::fs::symlink(fixtures_root, folder.path().join("fixtures")).unwrap();
    let run = corpusgen(folder.path(), &["run", "examples/dpo.toml"], &[]).await;
    (folder, run)
}

/// Checks the three corpora of the example, whatever the model fixtures.
fn check_dpo_corpora(folder: &Path, run: &Run) {
    assert_eq!(run.code, 0, "{run:?}");
    let data = folder.join("data/arxiv");
    let chatgpt =
        fs::read_to_string(data.join("list_of_dpo_explanations_chatgpt_generated.txt")).unwrap();
    assert_eq!(chatgpt, corpusgen_testkit::seed_explanations().join("^^^^"));
    assert_eq!(chatgpt.chars().count(), 9164);
    for name in ["gpt_4_1", "gpt_4_1_formats"] {
        let manifest = manifest(&data.join(format!(
            "list_of_dpo_explanations_{name}_generated.manifest.json"
        )));
        assert_eq!(manifest["job"]["target"]["chars"]["chars"], 9164, "{name}");
        assert!(
            manifest["totals"]["response_chars"].as_u64().unwrap() >= 9164,
            "{name}: {manifest:#}"
        );
    }
    let formats =
        manifest(&data.join("list_of_dpo_explanations_gpt_4_1_formats_generated.manifest.json"));
    assert!(
        formats["variants"]["format"]
            .as_object()
            .is_some_and(|counts| counts.len() > 1),
        "{formats:#}"
    );
}

#[tokio::test]
async fn the_dpo_example_runs_on_stand_in_fixtures() {
    // The example's structure, on made-up model responses in a temporary
    // folder: the hand-curated ten, and 1500-char stand-ins for the models.
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("openai")).unwrap();
    std::os::unix::fs::symlink(workspace_fixtures(), root.path().join("openai/dpo-chatgpt"))
        .unwrap();
    fixtures(&root.path().join("local/dpo-smollm2"), &[1500; 8]);
    fixtures(&root.path().join("local/dpo-smollm2-format"), &[1500; 8]);
    let (folder, run) = run_dpo_example(root.path()).await;
    check_dpo_corpora(folder.path(), &run);
    let gpt = manifest(
        &folder
            .path()
            .join("data/arxiv/list_of_dpo_explanations_gpt_4_1_generated.manifest.json"),
    );
    // 9164 chars of 1500-char responses: seven.
    assert_eq!(gpt["totals"]["responses_used"], 7);
}

#[tokio::test]
async fn the_dpo_example_reproduces_the_seeds_three_corpora_offline() {
    let root = corpusgen_testkit::workspace_root().join("fixtures");
    // The hand-curated fixtures are served as they are, not changed.
    assert_eq!(fixture_bodies(&root.join("openai/dpo-chatgpt")).len(), 10);
    let (folder, run) = run_dpo_example(&root).await;
    check_dpo_corpora(folder.path(), &run);
}

#[tokio::test]
async fn run_batch_refuses_a_file_with_a_job_that_has_no_batch_engine_before_any_job_runs() {
    let folder = tempfile::tempdir().unwrap();
    let example = corpusgen_testkit::workspace_root().join("examples/dpo.toml");
    fs::create_dir_all(folder.path().join("examples")).unwrap();
    fs::copy(&example, folder.path().join("examples/dpo.toml")).unwrap();
    std::os::unix::fs::symlink(
        corpusgen_testkit::workspace_root().join("fixtures"),
        folder.path().join("fixtures"),
    )
    .unwrap();
    let run = corpusgen(folder.path(), &["run", "examples/dpo.toml", "--batch"], &[]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(
        run.stderr,
        "error: examples/dpo.toml: job `chatgpt`: --batch needs an openai or azure profile, and `replay` is a replay profile; run the job without --batch\n"
    );
    assert!(run.stdout.is_empty(), "no summary: no job ran");
    assert!(!folder.path().join("data").exists());
}

#[tokio::test]
async fn run_help() {
    let folder = tempfile::tempdir().unwrap();
    let run = corpusgen(folder.path(), &["run", "--help"], &[]).await;
    assert_eq!(run.code, 0);
    insta::assert_snapshot!(run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_running_job_skips_the_rest_and_exits_130() {
    // Stopped after the first response: the second request is in flight
    // and is journaled; no third is sent.
    let server = slow_mock(&[500; 5], Duration::from_millis(300), 1..=3).await;
    let folder = tempfile::tempdir().unwrap();
    fs::create_dir_all(folder.path().join("jobs")).unwrap();
    fs::write(
        folder.path().join("jobs/grid.toml"),
        format!(
            r#"
[defaults]
topic = "DPO"
base_url = "{}/v1"
concurrency = 1

[[job]]
name = "slow"
count = 5
out = "slow.txt"

[[job]]
name = "after"
match_length = "job:slow"
out = "after.txt"
"#,
            server.uri()
        ),
    )
    .unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_corpusgen"))
        .args(["run", "jobs/grid.toml"])
        .current_dir(folder.path())
        .env_clear()
        .env("OPENAI_API_KEY", FAKE_KEY)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let journal = folder.path().join("jobs/slow.jsonl");
    for _ in 0..2000 {
        let accepted = fs::read_to_string(&journal)
            .map(|text| text.matches("\"accepted\"").count())
            .unwrap_or(0);
        if accepted >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("run the same command again to resume"),
        "{stderr}"
    );
    assert!(
        stdout.contains("interrupted") && stdout.contains("skipped"),
        "{stdout}"
    );
    assert!(!folder.path().join("jobs/after.jsonl").exists());
    assert!(!stderr.contains(FAKE_KEY) && !stdout.contains(FAKE_KEY));
}

/// Every file under `folder`, relative to it, sorted.
fn files_under(folder: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(folder).unwrap();
                found.push(relative.display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// The lines of the dry run's block for one job: from its `== job NAME`
/// header to the next header.
fn plan_block<'a>(stdout: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("== job {name}");
    let mut lines = stdout.lines().skip_while(|line| {
        !(line.starts_with(&header) && line[header.len()..].chars().next().is_none_or(|c| c == ' '))
    });
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no {header}:\n{stdout}"));
    std::iter::once(first)
        .chain(lines.take_while(|line| !line.starts_with("== job ")))
        .collect()
}

#[tokio::test]
async fn a_dry_run_plans_every_job_in_order_sends_nothing_and_estimates_a_job_target() {
    let server = openai_mock(Sequence::of_bodies(Vec::new()), 0).await;
    let folder = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[defaults]
topic = "DPO (Direct Preference Optimization)"
base_url = "{}/v1"
out = "{{name}}.txt"

[[job]]
name = "second"
match_length = "job:first"

[[job]]
name = "first"
target_chars = 3000
"#,
        server.uri()
    );
    let key = [("OPENAI_API_KEY", FAKE_KEY)];
    let run = run_file(folder.path(), &text, &["--dry-run"], &key).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(files_under(folder.path()), ["jobs/grid.toml"]);
    let headers: Vec<&str> = run
        .stdout
        .lines()
        .filter(|line| line.starts_with("== job "))
        .collect();
    // The dependency first, though it comes second in the file.
    assert_eq!(
        headers,
        [
            "== job first",
            "== job second (its target, the length of job `first`'s corpus, is not known yet: planned at about 3000 chars)",
        ],
        "{}",
        run.stdout
    );
    for name in ["first", "second"] {
        let block = plan_block(&run.stdout, name);
        for line in [
            "profile:     openai (openai)",
            "target:      3000 chars",
            "cost:        about ",
        ] {
            assert!(
                block.iter().any(|row| row.starts_with(line)),
                "{name}: no `{line}` in\n{}",
                block.join("\n")
            );
        }
    }

    // Once the first job's corpus exists, its length is the target.
    fs::write(
        folder.path().join("jobs/first.txt"),
        corpusgen_testkit::text_of_chars(2500, 0),
    )
    .unwrap();
    let again = run_file(folder.path(), &text, &["--dry-run"], &key).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        files_under(folder.path()),
        ["jobs/first.txt", "jobs/grid.toml"]
    );
    assert!(!again.stdout.contains("not known yet"), "{}", again.stdout);
    let second = plan_block(&again.stdout, "second");
    assert_eq!(second[0], "== job second", "{}", again.stdout);
    assert!(
        second
            .iter()
            .any(|row| row.starts_with("target:      2500 chars")),
        "{}",
        again.stdout
    );
    assert!(
        second
            .iter()
            .any(|row| row.starts_with("cost:        about ")),
        "{}",
        again.stdout
    );
}

#[tokio::test]
async fn run_batch_sends_every_job_through_the_batch_engine() {
    use corpusgen_testkit::batch::{BatchPlan, BatchServer, Flavor, answer_by_seed, text_for_seed};
    let server = BatchServer::start(
        Flavor::OpenAi,
        vec![BatchPlan::completed(), BatchPlan::completed()],
        answer_by_seed,
    )
    .await;
    let folder = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[defaults]
topic = "DPO (Direct Preference Optimization)"
base_url = "{}"
batch_poll_ms = 5
out = "{{name}}.txt"

[[job]]
name = "three"
seed = 100
count = 3

[[job]]
name = "two"
seed = 200
count = 2
"#,
        server.base_url()
    );
    let run = run_file(
        folder.path(),
        &text,
        &["--batch"],
        &[("OPENAI_API_KEY", FAKE_KEY)],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let corpus =
        |seeds: std::ops::Range<u64>| seeds.map(text_for_seed).collect::<Vec<_>>().join("^^^^");
    let read = |name: &str| fs::read_to_string(folder.path().join("jobs").join(name)).unwrap();
    assert_eq!(read("three.txt"), corpus(100..103));
    assert_eq!(read("two.txt"), corpus(200..202));
    assert_eq!(server.creates(), 2);
    let mut sizes: Vec<usize> = (0..server.uploads().len())
        .map(|upload| server.request_lines(upload).len())
        .collect();
    sizes.sort();
    assert_eq!(sizes, [2, 3]);
    for name in ["three", "two"] {
        let manifest = manifest(&folder.path().join(format!("jobs/{name}.manifest.json")));
        assert_eq!(
            manifest["batch"]["batches"][0]["status"], "completed",
            "{name}"
        );
    }
    let online = server
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|request| request.url.path().ends_with("/chat/completions"))
        .count();
    assert_eq!(online, 0);
    // Each batch line names its job, so two jobs' lines can be told apart.
    let batch_lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.contains("batch_"))
        .collect();
    for name in ["three", "two"] {
        assert!(
            batch_lines
                .iter()
                .any(|line| line.starts_with(&format!("{name}: batch batch_"))),
            "{name}: {batch_lines:?}"
        );
    }
    assert!(
        batch_lines
            .iter()
            .all(|line| line.starts_with("three: ") || line.starts_with("two: ")),
        "{batch_lines:?}"
    );
}

#[tokio::test]
async fn a_job_stopped_by_its_budget_exits_5_and_skips_the_job_matching_its_length() {
    // Three calls of 0.00248 USD fit in 0.009, a fourth would not.
    let pricey = openai_mock(Sequence::of_bodies(completions_of_lengths(&[1000; 10])), 3).await;
    let after = openai_mock(Sequence::of_bodies(Vec::new()), 0).await;
    let folder = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[defaults]
topic = "DPO (Direct Preference Optimization)"
concurrency = 1
out = "{{name}}.txt"

[[job]]
name = "pricey"
base_url = "{}/v1"
target_chars = 5000
budget_usd = 0.009

[[job]]
name = "after"
base_url = "{}/v1"
match_length = "job:pricey"
"#,
        pricey.uri(),
        after.uri()
    );
    let run = run_file(folder.path(), &text, &[], &[("OPENAI_API_KEY", FAKE_KEY)]).await;
    assert_eq!(run.code, 5, "{run:?}");
    let stopped = manifest(&folder.path().join("jobs/pricey.manifest.json"));
    assert_eq!(stopped["stopped"], "budget");
    assert_eq!(stopped["totals"]["responses_used"], 3);
    let rows: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(rows.len(), 3, "{}", run.stdout);
    assert!(
        rows[1].starts_with("pricey") && rows[1].ends_with("over budget"),
        "{}",
        run.stdout
    );
    assert!(
        rows[2].starts_with("after") && rows[2].ends_with("skipped"),
        "{}",
        run.stdout
    );
    assert!(!folder.path().join("jobs/after.jsonl").exists());
    assert!(
        run.stderr
            .lines()
            .last()
            .unwrap()
            .contains("2 of 2 jobs did not finish: pricey (over budget), after (skipped)"),
        "{}",
        run.stderr
    );
    assert!(
        after.received_requests().await.unwrap().is_empty(),
        "the skipped job sent a request"
    );
}
