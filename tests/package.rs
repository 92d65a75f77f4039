//! The deployment packages SCF receives: built for x86_64-unknown-linux-musl, zipped, read back,
//! and the unpacked `bootstrap` run under the emulator. Built as `make package-check` builds them:
//! the dev profile, each function's binary stripped. What is checked here — a static `bootstrap`
//! at the zip root that runs — does not depend on optimisation, and the build is minutes shorter
//! than the release one. The size bound is conservative: an unoptimised binary is about twice the
//! size of the release one (`make measure` checks the shipped sizes).

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use esgflow_local::emulator::functions;
use esgflow_local::emulator::{Emulator, FunctionSpec, Output};
use esgflow_local::release::package;

const MUSL: &str = "x86_64-unknown-linux-musl";
/// Packages above this size must go through COS; far below SCF's limits, and our budget.
const MAX_ZIP_BYTES: u64 = 6 * 1024 * 1024;

/// Text every SQLite library holds (its database file header).
const SQLITE_HEADER: &[u8] = b"SQLite format 3";

fn release_bin_dir() -> PathBuf {
    // The Makefile's PACKAGE_CHECK_ARGS: the same build is then nothing to do.
    let mut command = common::cargo();
    command.args(["build", "--quiet", "--target", MUSL]);
    for function in functions::FUNCTIONS {
        command.arg("-p").arg(format!("esgflow-{function}"));
        command.arg("--config").arg(format!(
            "profile.dev.package.esgflow-{function}.strip=\"symbols\""
        ));
    }
    let status = command.status().expect("cargo runs");
    assert!(
        status.success(),
        "release build for {MUSL} failed: run `make setup` (rustup target add {MUSL})"
    );
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(MUSL)
        .join("debug")
}

#[tokio::test]
async fn each_package_is_a_static_bootstrap_at_the_zip_root_that_runs() {
    let bin_dir = release_bin_dir();
    let scratch = common::scratch("package");
    let out = scratch.path().to_path_buf();
    for function in functions::FUNCTIONS {
        let zip =
            package::package(&functions::binary_path(&bin_dir, function), function, &out).unwrap();
        assert_eq!(zip.file_name().unwrap(), format!("{function}.zip").as_str());
        let info = package::inspect(&zip).unwrap();
        assert_eq!(info.entries, vec!["bootstrap".to_string()], "{function}");
        assert_eq!(info.bootstrap_mode, Some(0o755), "{function}");
        assert!(
            info.is_static_elf,
            "{function}: bootstrap needs a dynamic loader"
        );
        assert!(
            info.zip_size <= MAX_ZIP_BYTES,
            "{function}: {} bytes",
            info.zip_size
        );
        // The functions read records from CLS: none links the embedded store (bundled SQLite,
        // whose library carries its file header's text).
        let binary = std::fs::read(functions::binary_path(&bin_dir, function)).unwrap();
        assert!(
            !binary
                .windows(SQLITE_HEADER.len())
                .any(|w| w == SQLITE_HEADER),
            "{function} links SQLite"
        );
    }

    // Unpack the audit package as SCF does and run its bootstrap.
    let unpacked = out.join("audit-unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let mut archive =
        zip::ZipArchive::new(std::fs::File::open(out.join("audit.zip")).unwrap()).unwrap();
    let mut entry = archive.by_name("bootstrap").unwrap();
    let bootstrap = unpacked.join("bootstrap");
    let mut file = std::fs::File::create(&bootstrap).unwrap();
    std::io::copy(&mut entry, &mut file).unwrap();
    drop(file);
    let mode = entry.unix_mode().unwrap();
    std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(mode)).unwrap();

    let mut spec = FunctionSpec::new("audit", &bootstrap);
    spec.output = Output::Discard;
    spec.env = vec![("ESGFLOW_SNAPSHOT".to_string(), common::sample_snapshot())];
    let mut emulator = Emulator::new(spec).await.unwrap();
    let event = common::cls_event(
        "t",
        &["2 1 eni-a 10.0.0.1 10.0.0.2 1 80 6 1 1 1 2 ACCEPT OK"],
    );
    let invocation = emulator.invoke(event).await.unwrap();
    assert_eq!(invocation.result.json()["parsed"], 1);
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn a_dynamic_binary_is_not_taken_for_static() {
    // The test binary itself is a dynamically linked glibc executable.
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    assert!(!package::elf_has_no_interpreter(&me));
    assert!(!package::elf_has_no_interpreter(b"#!/bin/sh\n"));
}
