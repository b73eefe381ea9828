//! Integration tests of corpusgen-core: one binary, a module per area.

mod journal;
mod policy;
mod run;
mod support;
