#![no_main]
//! Fuzz target: `esgflow_local::testdata::fuzzing::audit` (the same entry point `make test` replays the corpus through).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| esgflow_local::testdata::fuzzing::audit(data));
