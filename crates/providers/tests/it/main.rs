//! Integration tests of corpusgen-providers: one binary, a module per provider.

mod openai;
mod replay;
