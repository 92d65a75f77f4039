//! The shared crate's integration tests, one module a concern, as one test binary.

mod architecture;
mod flowlog_fixtures;
mod hygiene;
mod runtime;
