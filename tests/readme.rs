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
