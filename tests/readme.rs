//! The documentation is kept in step with the code: the configuration table
//! (docs/configuration.md) lists every setting the code reads, with the functions that read it
//! and its default, and nothing else; the index tables (docs/records.md) are the ones the queries
//! use; the README stays short and tasks-first; and every link in README.md and docs/ points at
//! a file and heading that exist.

use esgflow::app::config::{Function, SETTINGS};

/// A file of the repository, as text.
fn doc(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|err| panic!("{path}: {err}"))
}

fn read_by(functions: &[Function]) -> String {
    if functions.len() == Function::ALL.len() {
        "all".to_string()
    } else {
        functions
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[test]
fn the_configuration_table_matches_the_registry() {
    let page = doc("docs/configuration.md");
    let section = page
        .split("\n## Every setting\n")
        .nth(1)
        .expect("an 'Every setting' section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut rows = std::collections::BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").map(str::trim).collect();
        let name = cells[0]
            .trim_start_matches("| ")
            .trim_matches('`')
            .to_string();
        rows.insert(name, (cells[1].to_string(), cells[2].to_string()));
    }
    rows.remove("TENCENTCLOUD_SECRETID`, `TENCENTCLOUD_SECRETKEY`, `TENCENTCLOUD_SESSIONTOKEN");
    let mut expected = String::new();
    for setting in SETTINGS {
        let default = setting
            .default
            .map(|d| format!("`{d}`"))
            .unwrap_or_else(|| "—".to_string());
        expected.push_str(&format!(
            "| `{}` | {default} | {} | {} |\n",
            setting.name,
            read_by(setting.functions),
            setting.description
        ));
    }
    let names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
    let listed: Vec<&str> = rows.keys().map(String::as_str).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        listed, sorted,
        "docs/configuration.md rows differ from the registry; expected rows:\n{expected}"
    );
    for setting in SETTINGS {
        let (_, functions) = &rows[setting.name];
        assert_eq!(
            functions,
            &read_by(setting.functions),
            "{}: 'read by' differs; expected rows:\n{expected}",
            setting.name
        );
    }
}

/// What `make <target>` would run, as `make --dry-run` prints it (nothing is executed).
fn planned(target: &str, vars: &[&str]) -> String {
    let output = std::process::Command::new("make")
        .args(["--dry-run", "--always-make", target])
        .args(vars)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("make runs");
    assert!(output.status.success(), "make -n {target}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// The first of the README's two commands installs only what the demo needs: cargo builds the
/// binaries and the sample replays. The test and deploy extras (system packages, the musl target,
/// the tccli wheel, npm and the serverless CLI) come with the targets that use them.
#[test]
fn make_run_installs_nothing_the_demo_does_not_need() {
    let installers = [
        "apt-get",
        "rustup target add",
        "rustup component add",
        "pip download",
        "npm ci",
    ];
    let run = planned("run", &[]);
    assert!(run.contains("esgflow replay samples/flowlogs.txt"), "{run}");
    for installer in installers {
        assert!(
            !run.contains(installer),
            "`make run` would run {installer}:\n{run}"
        );
    }
    // The extras are still there, with the targets that need them.
    let test = planned("test", &[]);
    for installer in &installers[..4] {
        assert!(
            test.contains(installer),
            "`make test` lost {installer}:\n{test}"
        );
    }
    let cli = "npm install --prefix deploy";
    assert!(
        !test.contains(cli),
        "`make test` needs no serverless CLI:\n{test}"
    );
    assert!(planned("deploy", &[]).contains(cli));
    assert!(!planned("deploy", &["DRY_RUN=1"]).contains(cli));
}

/// The tables of the hits and traffic topics' indexes (docs/records.md) are
/// `cls_query::HITS_INDEX` and `cls_query::TRAFFIC_INDEX`, row for row.
#[test]
fn the_index_tables_are_the_ones_the_queries_use() {
    use esgflow::adapters::tencent::cls_query::{FieldKind, HITS_INDEX, TRAFFIC_INDEX};
    let readme = doc("docs/records.md");
    for (marker, index) in [("hits-index", HITS_INDEX), ("traffic-index", TRAFFIC_INDEX)] {
        let table = readme
            .split(&format!("<!-- {marker}:start -->"))
            .nth(1)
            .and_then(|rest| rest.split(&format!("<!-- {marker}:end -->")).next())
            .unwrap_or_else(|| panic!("the README has no {marker} table"));
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| `")).collect();
        let expected: Vec<String> = index
            .iter()
            .map(|f| {
                let kind = match f.kind {
                    FieldKind::Text => "text",
                    FieldKind::Long => "long",
                };
                let statistics = if f.statistics { "yes" } else { "no" };
                format!("| `{}` | {kind} | {statistics} |", f.name)
            })
            .collect();
        assert_eq!(rows, expected, "{marker}");
    }
}

/// The README is a short guide (≤ 300 lines); its table of the settings people change names
/// only settings the code reads, each with the registry's default.
#[test]
fn the_readme_is_short_and_its_settings_are_real() {
    let readme = doc("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines: move reference to docs/"
    );
    let section = readme
        .split("\n## The settings people change\n")
        .nth(1)
        .expect("a 'The settings people change' section")
        .split("\n## ")
        .next()
        .unwrap();
    let rows: Vec<Vec<&str>> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.split(" | ").map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 10, "ten settings");
    for cells in rows {
        let name = cells[0].trim_start_matches("| ").trim_matches('`');
        let setting = SETTINGS
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("README names {name}, which the code does not read"));
        let default = setting
            .default
            .map(|d| format!("`{d}`"))
            .unwrap_or_else(|| "—".to_string());
        assert_eq!(cells[1], default, "{name}: the default differs");
    }
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens; a repeated
/// heading gets `-1`, `-2`, ….
fn anchors(markdown: &str) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut anchors = std::collections::BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let text = line.trim_start_matches('#').trim();
        let slug: String = text
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let count = seen.entry(slug.clone()).or_default();
        anchors.insert(if *count == 0 {
            slug.clone()
        } else {
            format!("{slug}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// The relative links of a markdown text (`[text](target)`, images too), outside code.
fn relative_links(markdown: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Inline code is not a link: drop every `…` span first.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        for (at, _) in prose.match_indices("](") {
            let rest = &prose[at + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].trim();
            if !target.contains("://") && !target.starts_with("mailto:") && !target.is_empty() {
                links.push(target.to_string());
            }
        }
    }
    links
}

/// Every relative link in README.md and docs/ points at a file that exists, and an anchor at a
/// heading of that file.
#[test]
fn every_link_in_the_documentation_points_at_something_that_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut checked = 0;
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for link in relative_links(&text) {
            checked += 1;
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            if !target.exists() {
                broken.push(format!("{}: {link}: no such file", page.display()));
            } else if !anchor.is_empty() {
                let headings = anchors(&std::fs::read_to_string(&target).unwrap_or_default());
                if !headings.contains(anchor) {
                    broken.push(format!("{}: {link}: no such heading", page.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(
        checked >= 20,
        "only {checked} links found: the reader is wrong"
    );
}

#[test]
fn the_link_reader_sees_links_and_anchors_as_github_does() {
    assert_eq!(
        relative_links("[a](docs/x.md#y) `[b](c.md)` ![i](img/p.png) [w](https://e.com)"),
        vec!["docs/x.md#y", "img/p.png"]
    );
    let found =
        anchors("# Deploy to Tencent Cloud\n## The `sync` function\n```\n# not\n```\n## A\n## A");
    let expected = ["deploy-to-tencent-cloud", "the-sync-function", "a", "a-1"];
    assert_eq!(found, expected.iter().map(|s| s.to_string()).collect());
}
