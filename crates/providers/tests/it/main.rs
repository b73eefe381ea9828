//! Integration tests of corpusgen-providers: one binary, a module per area.

mod azure;
mod batch;
mod conformance;
mod local;
mod openai;
mod replay;
mod streaming;
mod support;
