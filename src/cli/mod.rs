//! What the `esgflow` command prints beyond its argument parsing (`src/main.rs`): the offline
//! explain and the report after a replay.

pub mod explain;
pub mod report;
