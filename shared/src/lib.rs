//! esgflow: turns VPC flow logs into Enterprise Security Group (ESG) flow logs.
//!
//! This crate holds all of esgflow's logic and its SCF Custom Runtime; the function binaries in
//! `functions/` only wire it together. Domain modules take and return plain data (no SCF or HTTP
//! types); trigger payloads live in [`events`], the platform conversation in [`runtime`].

#![deny(clippy::all)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod alert;
pub mod audit;
pub mod cloud;
pub mod config;
pub mod engine;
pub mod events;
pub mod flowlog;
pub mod fuzzing;
pub mod lookup;
pub mod records;
pub mod runtime;
pub mod sink;
pub mod snapshot;
pub mod sync;
