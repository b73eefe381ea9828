//! Integration tests of corpusgen-core: one binary, a module per area.

mod journal;
mod policy;
mod retry;
mod run;
mod stats;
mod support;
