//! esgflow's local toolkit: the SCF emulator that runs the real function binaries, and the
//! helpers the `esgflow` CLI and the end-to-end tests share.

#![deny(clippy::all)]
#![warn(missing_docs)]

pub mod alert_receiver;
pub mod cloudstub;
pub mod clsfeed;
pub mod deploy;
pub mod emulator;
pub mod explain;
pub mod functions;
pub mod gateway;
pub mod measure;
pub mod package;
pub mod report;
