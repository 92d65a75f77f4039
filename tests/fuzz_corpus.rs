//! Every hand-written seed (`fuzz/seeds/<target>/`) and every input a fuzzer once crashed on
//! (`fuzz/regressions/<target>/`), replayed through the same entry points the `cargo fuzz`
//! targets call, on stable Rust, in `make test`: what fuzzing found stays fixed. Every file of
//! every fuzzing corpus (`fuzz/corpus/<target>/`, minimised with `make fuzz-cmin`, and the larger
//! one `make fuzz` grows outside the repository, named by `ESGFLOW_FUZZ_CORPUS`) is replayed by
//! `make test-long`.

use std::path::Path;

use esgflow_local::testdata::fuzzing::TARGETS;

fn replay(kind: &str) -> usize {
    replay_from(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz")
            .join(kind),
    )
}

fn replay_from(root: &Path) -> usize {
    let mut count = 0;
    for (target, entry) in TARGETS {
        let dir = root.join(target);
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = files.filter_map(|f| f.ok().map(|f| f.path())).collect();
        files.sort();
        for file in files.into_iter().filter(|f| f.is_file()) {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| entry(&data));
            assert!(outcome.is_ok(), "{target} panicked on {}", file.display());
            count += 1;
        }
    }
    count
}

#[test]
#[ignore = "long: run by `make test-long`"]
fn every_corpus_file_passes_its_entry_point() {
    // The minimised corpus in the repository, and the one `make fuzz` grows outside it.
    let outside = std::env::var_os("ESGFLOW_FUZZ_CORPUS")
        .filter(|dir| !dir.is_empty())
        .map_or(0, |dir| replay_from(Path::new(&dir)));
    let count = replay("corpus") + outside;
    assert!(
        count >= 5 * 3,
        "the corpora are in the repository ({count} files found)"
    );
}

#[test]
fn every_seed_passes_its_entry_point() {
    assert!(
        replay("seeds") >= 5 * 3,
        "the hand-written seeds are in the repository"
    );
}

/// Inputs of bugs fixed before (two gzip members, ICMP with ports `0 0`, the smallest i64 as a
/// time, a line break in a path, …), at least one per target: replaying none must fail.
#[test]
fn every_regression_input_passes_its_entry_point() {
    let count = replay("regressions");
    assert!(
        count >= 2 * TARGETS.len(),
        "the regression inputs are in the repository ({count} files found)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    for (target, _) in TARGETS {
        let files = std::fs::read_dir(root.join(target)).map_or(0, |d| d.count());
        assert!(files > 0, "no regression input for {target}");
    }
}

/// Every target has its corpus, its hand-written seeds and its regression inputs, none empty
/// (a missing or empty directory would replay nothing and pass).
#[test]
fn every_target_has_a_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (target, _) in TARGETS {
        for kind in ["corpus", "seeds", "regressions"] {
            let files = std::fs::read_dir(root.join(kind).join(target)).map_or(0, |d| {
                d.filter(|f| f.as_ref().is_ok_and(|f| f.path().is_file()))
                    .count()
            });
            assert!(files > 0, "no {kind} inputs for {target}");
        }
        assert!(
            root.join("fuzz_targets")
                .join(format!("{target}.rs"))
                .is_file(),
            "no fuzz target for {target}"
        );
    }
}
