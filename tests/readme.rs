//! The README's configuration table is kept in step with the code's settings registry: every
//! setting the code reads is listed with the functions that read it and its default, and nothing
//! else is.

use esgflow::app::config::{Function, SETTINGS};

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
    let readme =
        std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("a Configuration section")
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
        "README rows differ from the registry; expected rows:\n{expected}"
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

/// The README's tables of the hits and traffic topics' indexes are `cls_query::HITS_INDEX` and
/// `cls_query::TRAFFIC_INDEX`, row for row.
#[test]
fn the_index_tables_are_the_ones_the_queries_use() {
    use esgflow::adapters::tencent::cls_query::{FieldKind, HITS_INDEX, TRAFFIC_INDEX};
    let readme =
        std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
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
