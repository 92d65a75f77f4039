//! The domain: flow logs, the rule snapshot and its resolution, the evaluation engine, records,
//! classification of a batch, alert policy, snapshot diff, and the ports the adapters implement.
//!
//! Nothing here does I/O or knows a platform: no tokio, reqwest, hyper or redis item, no SCF or
//! HTTP type. Everything takes and returns plain data, so it is tested without a network.

pub mod alert;
pub mod classify;
pub mod engine;
pub mod flowlog;
pub mod ports;
pub mod records;
pub mod snapshot;
pub(crate) mod text;
