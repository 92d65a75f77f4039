//! esgflow: turns VPC flow logs into Enterprise Security Group (ESG) flow logs.
//!
//! This crate holds all of esgflow's logic and its SCF Custom Runtime; the function binaries in
//! `functions/` only wire it together. Its modules are layers that depend only downwards (see
//! `docs/ARCHITECTURE.md`; `shared/tests/architecture.rs` checks it):
//!
//! - [`core`]: the domain, no I/O: flow logs, the snapshot model and its resolution, the engine,
//!   records and their ids, classification, alert policy, snapshot diff, and the ports (small
//!   traits) the adapters implement;
//! - [`runtime`]: the SCF Custom Runtime client, `lambda_runtime`-shaped;
//! - [`events`]: trigger payloads (CLS, API Gateway / Function URL, Timer);
//! - [`adapters`]: what talks to the outside: Tencent Cloud (signing, API 3.0, CLS, COS, cfw/vpc),
//!   chat robots and webhooks, Redis, the local file system;
//! - [`app`]: the three use cases (audit, lookup, sync), the snapshot cache, configuration and
//!   wiring.

#![deny(clippy::all)]
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod adapters;
pub mod app;
pub mod core;
pub mod events;
pub mod runtime;
