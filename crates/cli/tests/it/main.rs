//! Integration tests of the `corpusgen` binary, run as a child process with a
//! cleared environment so that a developer's real key can never reach a test.

mod batch;
mod config;
mod cost;
mod crash;
mod errors;
mod faults;
mod generate;
mod help;
mod hipaa;
mod jobs;
mod keys;
mod record;
mod stats;
mod support;
mod throughput;
