//! The crate's architecture, checked: its modules are layers that depend only downwards, with no
//! module cycle; the domain uses no I/O crate; `unsafe` stays in the libdeflate module; the
//! function binaries link nothing of the local toolkit; and every document a comment cites is in
//! the repository. The layers and their rules are described in `docs/ARCHITECTURE.md`.
//!
//! The dependency graph is read from the source: every `crate::…`, `super::…` and `self::…` path
//! in non-test code (comments and `#[cfg(test)]` modules left out), resolved to the module it
//! names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first, and the layers each may use besides itself.
const LAYERS: &[(&str, &[&str])] = &[
    ("core", &[]),
    ("runtime", &[]),
    ("events", &["core"]),
    ("adapters", &["core"]),
    ("app", &["core", "runtime", "events", "adapters"]),
];

/// Crates whose items the domain must not use: it does no I/O.
const NOT_IN_CORE: &[&str] = &[
    "tokio", "reqwest", "hyper", "redis", "axum", "tower", "http",
];

/// The modules allowed `unsafe` code: libdeflate's C API, and the musl binaries' `memcpy` and
/// `memmove` (docs/performance.md has why).
const UNSAFE_MODULES: [&str; 2] = ["events::inflate", "runtime::musl"];

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("shared/ sits in the repository")
        .to_path_buf()
}

/// Every file below `dir` whose name ends in one of `extensions`.
fn files(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, extensions, out);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e))
        {
            out.push(path);
        }
    }
}

/// `core/engine/mod.rs` → `core::engine`; `lib.rs` → ``.
fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file without comments and without its `#[cfg(test)]` items.
fn production_code(text: &str) -> String {
    let mut out = String::new();
    let mut skipping_test_item = false;
    let mut depth = 0i32;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if !skipping_test_item && trimmed.starts_with("#[cfg(test)]") {
            skipping_test_item = true;
            depth = 0;
            continue;
        }
        if skipping_test_item {
            depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
            if depth <= 0 && (line.contains('}') || line.trim_end().ends_with(';')) {
                skipping_test_item = false;
            }
            continue;
        }
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Every path the code names, with `use` groups expanded: `use crate::a::{b, c::d}` gives
/// `crate::a::b` and `crate::a::c::d`.
fn paths(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        let ahead: String = chars[i..chars.len().min(i + 7)].iter().collect();
        if starts_word
            && ["crate::", "super::", "self::"]
                .iter()
                .any(|h| ahead.starts_with(h))
        {
            let (path, end) = read_path(&chars, i);
            found.extend(path);
            i = end;
        } else {
            i += 1;
        }
    }
    found
}

/// Reads a path at `start`, expanding `{…}` groups; returns the paths and where it ended.
fn read_path(chars: &[char], start: usize) -> (Vec<String>, usize) {
    let mut prefix = String::new();
    let mut i = start;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' || c == ':' {
            prefix.push(c);
            i += 1;
        } else if c == '{' && prefix.ends_with("::") {
            // A group: split its items at top-level commas.
            let mut depth = 0;
            let mut item_start = i + 1;
            let mut results = Vec::new();
            let mut j = i + 1;
            while j < chars.len() {
                match chars[j] {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        results.extend(group_item(&prefix, &chars[item_start..j]));
                        item_start = j + 1;
                    }
                    _ => {}
                }
                j += 1;
            }
            results.extend(group_item(&prefix, &chars[item_start..j.min(chars.len())]));
            return (results, j + 1);
        } else {
            break;
        }
    }
    (vec![prefix.trim_end_matches(':').to_string()], i)
}

fn group_item(prefix: &str, item: &[char]) -> Vec<String> {
    let text: String = item.iter().collect();
    let text = text.trim();
    if text.is_empty() {
        return Vec::new();
    }
    if text == "self" {
        return vec![prefix.trim_end_matches(':').to_string()];
    }
    let joined: Vec<char> = format!("{prefix}{text}").chars().collect();
    read_path(&joined, 0).0
}

/// The module a path names, given the module it is written in and the modules that exist.
fn resolve(path: &str, from: &str, modules: &BTreeSet<String>) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = if from.is_empty() {
        Vec::new()
    } else {
        from.split("::").collect()
    };
    match segments.first().copied() {
        Some("crate") => base.clear(),
        Some("self") => {}
        Some("super") => {
            while segments.first() == Some(&"super") {
                base.pop();
                segments.remove(0);
            }
            segments.insert(0, "super");
        }
        _ => return None,
    }
    segments.remove(0);
    // The longest prefix of base + segments that is a module.
    let full: Vec<&str> = base.iter().chain(segments.iter()).copied().collect();
    (1..=full.len())
        .rev()
        .map(|n| full[..n].join("::"))
        .find(|candidate| modules.contains(candidate))
}

fn layer(module: &str) -> &str {
    module.split("::").next().unwrap_or("")
}

fn related(a: &str, b: &str) -> bool {
    let is_ancestor = |x: &str, y: &str| y.starts_with(&format!("{x}::"));
    a == b || is_ancestor(a, b) || is_ancestor(b, a)
}

struct Crate {
    /// Module → its production code.
    code: BTreeMap<String, String>,
    /// Module → the modules it uses (parents and children left out).
    uses: BTreeMap<String, BTreeSet<String>>,
}

fn read_crate() -> Crate {
    let root = source_root();
    let mut sources = Vec::new();
    files(&root, &["rs"], &mut sources);
    let code: BTreeMap<String, String> = sources
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            (
                module_of(f.strip_prefix(&root).unwrap()),
                production_code(&text),
            )
        })
        .collect();
    let modules: BTreeSet<String> = code.keys().cloned().collect();
    let uses = code
        .iter()
        .map(|(module, text)| {
            let targets = paths(text)
                .iter()
                .filter_map(|p| resolve(p, module, &modules))
                .filter(|target| !related(module, target))
                .collect();
            (module.clone(), targets)
        })
        .collect();
    Crate { code, uses }
}

/// A cycle in `graph`, as the list of its modules, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let at = stack.iter().position(|n| n == node).unwrap();
                let mut cycle = stack[at..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_string(), Mark::Open);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut marks, &mut Vec::new()))
}

#[test]
fn the_checker_finds_cycles_and_reads_grouped_paths() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
        }
        g
    };
    assert_eq!(find_cycle(&graph(&[("a", "b"), ("b", "c")])), None);
    let cycle = find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])).unwrap();
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4);

    let found =
        paths("use crate::core::{engine::{Engine, FlowKey}, records};\nlet x = super::values::X;");
    assert_eq!(
        found,
        [
            "crate::core::engine::Engine",
            "crate::core::engine::FlowKey",
            "crate::core::records",
            "super::values::X"
        ]
    );
    let modules: BTreeSet<String> = ["core::snapshot", "core::snapshot::values", "core::engine"]
        .map(String::from)
        .into();
    assert_eq!(
        resolve("super::values::X", "core::snapshot::import", &modules).as_deref(),
        Some("core::snapshot::values")
    );
    assert_eq!(
        resolve("crate::core::engine::Engine", "app::audit", &modules).as_deref(),
        Some("core::engine")
    );
    assert!(
        production_code("#[cfg(test)]\nmod tests {\n    use crate::app;\n}\nfn f() {}\n")
            .trim()
            .eq("fn f() {}")
    );
}

#[test]
fn the_crate_reads_as_its_layers() {
    let krate = read_crate();
    let known: BTreeSet<&str> = LAYERS.iter().map(|(name, _)| *name).collect();
    for module in krate.code.keys().filter(|m| !m.is_empty()) {
        assert!(
            known.contains(layer(module)),
            "module {module} is in no layer: put it under one of {known:?} (docs/ARCHITECTURE.md)"
        );
    }
    let mut wrong = Vec::new();
    for (module, targets) in &krate.uses {
        let from = layer(module);
        let allowed = LAYERS
            .iter()
            .find(|(name, _)| *name == from)
            .map_or(&[][..], |(_, allowed)| *allowed);
        for target in targets {
            let to = layer(target);
            if to != from && !allowed.contains(&to) && !module.is_empty() {
                wrong.push(format!("{module} uses {target} ({from} may not use {to})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "layers depend only downwards:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_module_cycle() {
    let krate = read_crate();
    assert!(
        krate.uses.values().map(BTreeSet::len).sum::<usize>() > 50,
        "the graph was read"
    );
    if std::env::var_os("ESGFLOW_PRINT_MODULES").is_some() {
        for (module, targets) in &krate.uses {
            println!(
                "{module} → {}",
                Vec::from_iter(targets.iter().map(String::as_str)).join(", ")
            );
        }
    }
    if let Some(cycle) = find_cycle(&krate.uses) {
        panic!("module cycle: {}", cycle.join(" → "));
    }
}

#[test]
fn the_domain_does_no_io() {
    let krate = read_crate();
    let mut found = Vec::new();
    for (module, code) in krate.code.iter().filter(|(m, _)| layer(m) == "core") {
        for name in NOT_IN_CORE {
            let used = code.match_indices(&format!("{name}::")).any(|(at, _)| {
                at == 0 || {
                    let before = code[..at].chars().next_back().unwrap();
                    !(before.is_alphanumeric() || before == '_' || before == ':')
                }
            });
            if used {
                found.push(format!("{module} uses {name}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the domain does no I/O:\n{}",
        found.join("\n")
    );
}

#[test]
fn unsafe_code_only_in_the_libdeflate_and_musl_modules() {
    let root = source_root();
    let lib = std::fs::read_to_string(root.join("lib.rs")).unwrap();
    assert!(lib.contains("#![deny(unsafe_code)]"));
    assert!(lib.contains("#![deny(missing_docs)]"));
    let krate = read_crate();
    let mut with_unsafe: Vec<&String> = krate
        .code
        .iter()
        .filter(|(_, code)| {
            code.match_indices("unsafe")
                .any(|(at, _)| !code[at..].starts_with("unsafe_code"))
        })
        .map(|(module, _)| module)
        .collect();
    with_unsafe.sort();
    assert_eq!(with_unsafe, UNSAFE_MODULES);
}

fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(repository_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_functions_link_nothing_of_the_local_toolkit() {
    let metadata = metadata();
    let packages = metadata["packages"].as_array().unwrap();
    let dependencies = |name: &str| -> Vec<String> {
        let package = packages
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("package {name}"));
        package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect()
    };
    for package in ["esgflow", "esgflow-audit", "esgflow-lookup", "esgflow-sync"] {
        let deps = dependencies(package);
        assert!(!deps.is_empty(), "{package} has dependencies");
        assert!(
            !deps.iter().any(|d| d == "esgflow-local"),
            "{package} depends on the local toolkit"
        );
    }
    for function in ["esgflow-audit", "esgflow-lookup", "esgflow-sync"] {
        assert!(dependencies(function).iter().any(|d| d == "esgflow"));
    }
}

/// Every document a comment or a document cites by a bare name is in the repository.
#[test]
fn cited_documents_are_in_the_repository() {
    let root = repository_root();
    let mut cited = Vec::new();
    for dir in [
        "shared",
        "functions",
        "src",
        "tests",
        "benches",
        "fuzz/fuzz_targets",
        "docs",
    ] {
        let dir = root.join(dir);
        if dir.exists() {
            files(&dir, &["rs", "md", "toml", "html", "yaml"], &mut cited);
        }
    }
    for file in ["README.md", "Makefile", "template.yaml", "Cargo.toml"] {
        cited.push(root.join(file));
    }
    let outside = [
        "scf-platform.md",
        "flowlog-esg-data.md",
        "cloud-contracts.md",
        "STYLE.md",
    ];
    let mut found = Vec::new();
    for file in &cited {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        if file.ends_with("shared/tests/architecture.rs") {
            continue;
        }
        for (number, line) in text.lines().enumerate() {
            let bare_architecture = line
                .match_indices("ARCHITECTURE.md")
                .any(|(at, _)| !line[..at].ends_with("docs/"));
            if outside.iter().any(|name| line.contains(name))
                || bare_architecture
                || line.contains("shared/reference/")
                || line.contains("shared/design/")
            {
                found.push(format!(
                    "{}:{}: {}",
                    file.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "cites a document not in the repository:\n{}",
        found.join("\n")
    );
    assert!(root.join("docs/ARCHITECTURE.md").exists());
}
