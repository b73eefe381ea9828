//! Concurrency as the provider sees it: with `--concurrency 64`, the mock
//! really has 64 requests open at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use corpusgen_testkit::{completion, text_of_chars};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{FAKE_KEY, corpusgen, seed_args};

const LATENCY: Duration = Duration::from_millis(1500);

/// Records when each request arrived; each stays open for `LATENCY`.
struct RecordArrivals {
    arrivals: std::sync::Arc<Mutex<Vec<Instant>>>,
}

impl Respond for RecordArrivals {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let mut arrivals = self.arrivals.lock().unwrap();
        arrivals.push(Instant::now());
        let n = arrivals.len();
        ResponseTemplate::new(200)
            .set_body_json(completion(&text_of_chars(200, n), &format!("chatcmpl-{n}")))
            .set_delay(LATENCY)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_requests_are_open_at_once() {
    let arrivals = std::sync::Arc::new(Mutex::new(Vec::new()));
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(RecordArrivals {
            arrivals: arrivals.clone(),
        })
        .expect(64)
        .mount(&server)
        .await;
    let folder = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let run = corpusgen(
        folder.path(),
        &seed_args(&[
            "--base-url",
            &base_url,
            "--count",
            "64",
            "--concurrency",
            "64",
            "--out",
            "out.txt",
        ]),
        &[("OPENAI_API_KEY", FAKE_KEY)],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let arrivals = arrivals.lock().unwrap();
    // The peak: how many requests had arrived and not yet been answered at
    // the moment of any arrival.
    let peak = arrivals
        .iter()
        .map(|at| {
            arrivals
                .iter()
                .filter(|other| *other <= at && *at < **other + LATENCY)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert_eq!(
        peak, 64,
        "the mock saw at most {peak} requests open at once"
    );
}
