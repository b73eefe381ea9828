//! Integration tests of corpusgen-core: one binary, a module per area.

mod journal;
mod policy;
mod rate;
mod retry;
mod run;
mod stats;
mod support;
mod tokens;
mod variants;
