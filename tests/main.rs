//! The root package's end-to-end tests, one module a concern, built and linked as one test
//! binary (one link instead of one per file). `cargo test --test integration <module>::` runs
//! one module, e.g. `cargo test --test integration openapi::`.

mod common;

mod alerts;
mod audit_cls;
mod audit_e2e;
mod browser;
mod cli;
mod console;
mod contracts;
mod deploy;
mod emulator;
mod engine;
mod faults;
mod fuzz_corpus;
mod golden;
mod hostile;
mod lookup_e2e;
mod official_examples;
mod openapi;
mod package;
mod readme;
mod records_store;
mod sample;
mod soak;
mod sync_e2e;
mod template;
