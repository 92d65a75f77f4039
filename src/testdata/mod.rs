//! Test data that must never ship: the reference account ([`reference`]) that measurements and
//! benchmarks are sized on, deterministic synthetic rule sets and flows ([`synthetic`]) for
//! benchmarks, property tests and measurements, synthetic hit and traffic records at scale
//! ([`records`]), and the fuzzing entry points ([`fuzzing`]) that the
//! `cargo fuzz` targets and `make test` share.

pub mod fuzzing;
pub mod records;
pub mod reference;
pub mod synthetic;
