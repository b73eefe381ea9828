//! A stateful wiremock model of the Files and Batches APIs, OpenAI's
//! (`/v1/files`, `/v1/batches`) or Azure OpenAI's (`/openai/files`,
//! `/openai/batches`, `?api-version=` required): uploads are kept, each
//! created batch walks through the statuses its plan gives, one per poll, and
//! once it ends its output and error files hold the answers the plan says.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::{completion, error_body, text_of_chars};

/// Whose paths and auth header the model speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    OpenAi,
    Azure,
}

/// How one batch goes. Batches take the plans in the order they are created;
/// without a plan left a batch completes with every request answered.
#[derive(Debug, Clone)]
pub struct BatchPlan {
    /// The status the creation answers, then one per poll; the last repeats.
    pub statuses: Vec<&'static str>,
    /// How many of the file's requests, in file order, get an answer; the
    /// rest are left unanswered (an expired or cancelled batch). `None`: all.
    pub answered: Option<usize>,
    /// Positions in the file whose requests fail with a 500 in the error file.
    pub failed_lines: Vec<usize>,
    /// Positions in the file whose requests the model refuses with a 400.
    pub refused_lines: Vec<usize>,
}

impl BatchPlan {
    /// validating, in_progress, finalizing, completed; every request answered.
    pub fn completed() -> BatchPlan {
        BatchPlan::through(&["validating", "in_progress", "finalizing", "completed"])
    }

    /// These statuses, every request answered once it ends.
    pub fn through(statuses: &[&'static str]) -> BatchPlan {
        BatchPlan {
            statuses: statuses.to_vec(),
            answered: None,
            failed_lines: Vec::new(),
            refused_lines: Vec::new(),
        }
    }

    pub fn answering(mut self, answered: usize) -> BatchPlan {
        self.answered = Some(answered);
        self
    }

    pub fn failing_lines(mut self, lines: &[usize]) -> BatchPlan {
        self.failed_lines = lines.to_vec();
        self
    }

    pub fn refusing_lines(mut self, lines: &[usize]) -> BatchPlan {
        self.refused_lines = lines.to_vec();
        self
    }
}

/// Turns one request line into the chat completion body that answers it.
pub type Answer = fn(&Value) -> Value;

/// The running model and what it saw.
#[derive(Debug)]
pub struct BatchServer {
    pub server: MockServer,
    flavor: Flavor,
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    plans: VecDeque<BatchPlan>,
    answer: Answer,
    files: BTreeMap<String, String>,
    uploads: Vec<String>,
    batches: Vec<MockBatch>,
    creates: usize,
    cancels: usize,
}

#[derive(Debug)]
struct MockBatch {
    id: String,
    input_file_id: String,
    plan: BatchPlan,
    polls: usize,
    /// The poll count at which the batch was cancelled.
    cancelled_at: Option<usize>,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    counts: (usize, usize, usize),
}

#[derive(Debug)]
struct Handler {
    flavor: Flavor,
    state: Arc<Mutex<State>>,
}

/// An answer of 200 + (seed * 37) % 300 chars made from the request's seed,
/// so that a slot's answer is the same in every run and every batch.
pub fn answer_by_seed(line: &Value) -> Value {
    let seed = line["body"]["seed"]
        .as_u64()
        .expect("the test job sends a seed");
    completion(&text_for_seed(seed), &format!("chatcmpl-{seed}"))
}

/// The text `answer_by_seed` gives for a seed.
pub fn text_for_seed(seed: u64) -> String {
    text_of_chars(200 + (seed as usize * 37) % 300, seed as usize)
}

impl BatchServer {
    /// Starts the model; batches follow `plans` in creation order.
    pub async fn start(flavor: Flavor, plans: Vec<BatchPlan>, answer: Answer) -> BatchServer {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            plans: plans.into(),
            answer,
            files: BTreeMap::new(),
            uploads: Vec::new(),
            batches: Vec::new(),
            creates: 0,
            cancels: 0,
        }));
        Mock::given(any())
            .respond_with(Handler {
                flavor,
                state: state.clone(),
            })
            .mount(&server)
            .await;
        BatchServer {
            server,
            flavor,
            state,
        }
    }

    /// What to pass as `--base-url`: OpenAI's base or Azure's endpoint.
    pub fn base_url(&self) -> String {
        match self.flavor {
            Flavor::OpenAi => format!("{}/v1", self.server.uri()),
            Flavor::Azure => self.server.uri(),
        }
    }

    /// How many batches were created (`POST /batches`).
    pub fn creates(&self) -> usize {
        self.state.lock().unwrap().creates
    }

    pub fn cancels(&self) -> usize {
        self.state.lock().unwrap().cancels
    }

    /// Every uploaded request file, in upload order.
    pub fn uploads(&self) -> Vec<String> {
        self.state.lock().unwrap().uploads.clone()
    }

    /// The lines of the n-th uploaded request file, parsed.
    pub fn request_lines(&self, upload: usize) -> Vec<Value> {
        self.uploads()[upload]
            .lines()
            .map(|line| serde_json::from_str(line).expect("request lines are JSON"))
            .collect()
    }
}

impl Respond for Handler {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let authorized = match self.flavor {
            Flavor::OpenAi => request
                .headers
                .get("authorization")
                .is_some_and(|value| value.to_str().unwrap_or("").starts_with("Bearer ")),
            Flavor::Azure => request.headers.contains_key("api-key"),
        };
        if !authorized {
            return ResponseTemplate::new(401)
                .set_body_json(error_body("no credentials", "invalid_api_key"));
        }
        let prefix = match self.flavor {
            Flavor::OpenAi => "/v1/",
            Flavor::Azure => "/openai/",
        };
        if self.flavor == Flavor::Azure
            && !request
                .url
                .query_pairs()
                .any(|(name, value)| name == "api-version" && !value.is_empty())
        {
            return ResponseTemplate::new(400)
                .set_body_json(error_body("api-version is required", "missing_api_version"));
        }
        let Some(route) = request.url.path().strip_prefix(prefix) else {
            return not_found();
        };
        let segments: Vec<&str> = route.split('/').collect();
        let method = request.method.as_str();
        let mut state = self.state.lock().unwrap();
        match (method, segments.as_slice()) {
            ("POST", ["files"]) => state.upload(request),
            ("GET", ["files", id, "content"]) => match state.files.get(*id) {
                Some(content) => ResponseTemplate::new(200)
                    .set_body_raw(content.clone().into_bytes(), "application/octet-stream"),
                None => not_found(),
            },
            ("POST", ["batches"]) => state.create(request, self.flavor),
            ("GET", ["batches"]) => state.list(self.flavor),
            ("GET", ["batches", id]) => state.poll(id, self.flavor),
            ("POST", ["batches", id, "cancel"]) => state.cancel(id, self.flavor),
            _ => not_found(),
        }
    }
}

impl State {
    fn upload(&mut self, request: &Request) -> ResponseTemplate {
        let Some((purpose, file)) = multipart_fields(request) else {
            return ResponseTemplate::new(400).set_body_json(error_body(
                "expected multipart/form-data",
                "invalid_request",
            ));
        };
        if purpose != "batch" {
            return ResponseTemplate::new(400)
                .set_body_json(error_body("purpose must be batch", "invalid_request"));
        }
        let id = format!("file-input-{}", self.uploads.len());
        self.uploads.push(file.clone());
        self.files.insert(id.clone(), file);
        ResponseTemplate::new(200).set_body_json(json!({
            "id": id, "object": "file", "purpose": "batch", "status": "processed"
        }))
    }

    fn create(&mut self, request: &Request, flavor: Flavor) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let expected_endpoint = endpoint(flavor);
        let input_file_id = body["input_file_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if body["endpoint"] != expected_endpoint
            || body["completion_window"] != "24h"
            || !self.files.contains_key(&input_file_id)
        {
            return ResponseTemplate::new(400)
                .set_body_json(error_body("bad batch creation body", "invalid_request"));
        }
        self.creates += 1;
        let plan = self.plans.pop_front().unwrap_or_else(BatchPlan::completed);
        let batch = MockBatch {
            id: format!("batch_{}", self.batches.len()),
            input_file_id,
            plan,
            polls: 0,
            cancelled_at: None,
            output_file_id: None,
            error_file_id: None,
            counts: (0, 0, 0),
        };
        self.batches.push(batch);
        let position = self.batches.len() - 1;
        self.render(position, flavor)
    }

    /// Every batch, newest first, without advancing any.
    fn list(&mut self, flavor: Flavor) -> ResponseTemplate {
        let data: Vec<Value> = (0..self.batches.len())
            .rev()
            .map(|position| self.object(position, flavor))
            .collect();
        ResponseTemplate::new(200)
            .set_body_json(json!({"object": "list", "data": data, "has_more": false}))
    }

    fn poll(&mut self, id: &str, flavor: Flavor) -> ResponseTemplate {
        let Some(position) = self.batches.iter().position(|batch| batch.id == id) else {
            return not_found();
        };
        self.batches[position].polls += 1;
        self.render(position, flavor)
    }

    fn cancel(&mut self, id: &str, flavor: Flavor) -> ResponseTemplate {
        let Some(position) = self.batches.iter().position(|batch| batch.id == id) else {
            return not_found();
        };
        self.cancels += 1;
        let batch = &mut self.batches[position];
        batch.cancelled_at.get_or_insert(batch.polls);
        self.render(position, flavor)
    }

    /// The plan's status for the polls so far; a cancelled batch is
    /// cancelling until the next poll, then cancelled.
    fn status(&self, position: usize) -> &'static str {
        let batch = &self.batches[position];
        match batch.cancelled_at {
            Some(at) if batch.polls > at => "cancelled",
            Some(_) => "cancelling",
            None => {
                let statuses = &batch.plan.statuses;
                statuses[batch.polls.min(statuses.len() - 1)]
            }
        }
    }

    /// The batch object answered.
    fn render(&mut self, position: usize, flavor: Flavor) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(self.object(position, flavor))
    }

    /// The batch object, after writing the result files once it has ended.
    fn object(&mut self, position: usize, flavor: Flavor) -> Value {
        let status = self.status(position);
        let ended = matches!(status, "completed" | "expired" | "cancelled");
        if ended && self.batches[position].output_file_id.is_none() {
            self.write_results(position);
        }
        let batch = &self.batches[position];
        let (_, completed, failed) = batch.counts;
        let total = self.line_count(position);
        let errors = (status == "failed").then(|| {
            json!({"object": "list", "data": [{
                "code": "invalid_request", "message": "the model is not a batch deployment", "line": 1
            }]})
        });
        json!({
            "id": batch.id,
            "object": "batch",
            "endpoint": endpoint(flavor),
            "errors": errors,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": 1_750_000_000,
            "request_counts": {"total": total, "completed": completed, "failed": failed},
            "metadata": null
        })
    }

    fn line_count(&self, position: usize) -> usize {
        self.files[&self.batches[position].input_file_id]
            .lines()
            .count()
    }

    fn write_results(&mut self, position: usize) {
        let input = self.files[&self.batches[position].input_file_id].clone();
        let batch = &self.batches[position];
        let answered = batch.plan.answered.unwrap_or(usize::MAX);
        let mut output = String::new();
        let mut errors = String::new();
        let (mut completed, mut failed) = (0, 0);
        for (line_number, line) in input.lines().enumerate() {
            let line: Value = serde_json::from_str(line).expect("request lines are JSON");
            let custom_id = line["custom_id"].clone();
            let failure = if batch.plan.failed_lines.contains(&line_number) {
                Some((500, error_body("the server had an error", "server_error")))
            } else if batch.plan.refused_lines.contains(&line_number) {
                Some((
                    400,
                    error_body("this model does not exist", "model_not_found"),
                ))
            } else {
                None
            };
            if let Some((status_code, body)) = failure {
                failed += 1;
                errors.push_str(
                    &json!({
                        "id": format!("batch_req_{line_number}"),
                        "custom_id": custom_id,
                        "response": {"status_code": status_code, "request_id": "req", "body": body},
                        "error": null
                    })
                    .to_string(),
                );
                errors.push('\n');
            } else if line_number < answered {
                completed += 1;
                output.push_str(&json!({
                    "id": format!("batch_req_{line_number}"),
                    "custom_id": custom_id,
                    "response": {"status_code": 200, "request_id": "req", "body": (self.answer)(&line)},
                    "error": null
                }).to_string());
                output.push('\n');
            }
        }
        let total = input.lines().count();
        let id = self.batches[position].id.clone();
        let output_file_id = format!("file-output-{id}");
        self.files.insert(output_file_id.clone(), output);
        let error_file_id = (failed > 0).then(|| {
            let error_file_id = format!("file-errors-{id}");
            self.files.insert(error_file_id.clone(), errors);
            error_file_id
        });
        let batch = &mut self.batches[position];
        batch.output_file_id = Some(output_file_id);
        batch.error_file_id = error_file_id;
        batch.counts = (total, completed, failed);
    }
}

fn endpoint(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::OpenAi => "/v1/chat/completions",
        Flavor::Azure => "/chat/completions",
    }
}

fn not_found() -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_json(error_body("no such route or id", "not_found"))
}

/// The `purpose` and `file` fields of a multipart/form-data body.
fn multipart_fields(request: &Request) -> Option<(String, String)> {
    let content_type = request.headers.get("content-type")?.to_str().ok()?;
    let boundary = content_type
        .split(';')
        .find_map(|part| part.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let body = String::from_utf8(request.body.clone()).ok()?;
    let mut purpose = None;
    let mut file = None;
    for part in body.split(&format!("--{boundary}")) {
        let Some((headers, content)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let content = content.strip_suffix("\r\n").unwrap_or(content).to_string();
        if headers.contains("name=\"purpose\"") {
            purpose = Some(content);
        } else if headers.contains("name=\"file\"") {
            file = Some(content);
        }
    }
    Some((purpose?, file?))
}
