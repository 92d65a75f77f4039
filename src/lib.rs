//! esgflow's local toolkit: everything that runs esgflow on a workstation and in tests, and is never
//! linked into a function binary.
//!
//! - [`emulator`]: the SCF runtime emulator that runs the real function binaries, the local HTTP
//!   gateway in front of lookup, and the CLS feeder that cuts flow logs into trigger events;
//! - [`standins`]: local servers that stand in for cloud services (cfw/vpc/COS, CLS, the chat
//!   robots and webhooks), sharing one test-server helper;
//! - [`cli`]: what the `esgflow` command prints (offline explain, the replay report);
//! - [`release`]: packaging, deployment and the release health measurements;
//! - [`testdata`]: synthetic rule sets and flows, and the fuzzing entry points.

#![deny(clippy::all)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod emulator;
pub mod release;
pub mod standins;
pub mod testdata;
