//! esgflow's calls against the official API definitions of the pinned `tccli`
//! (`esgflow_local::standins::contract`): every action esgflow calls has a definition, no call
//! escapes the list, and the requests that once went out wrong are refused by the definitions
//! themselves, not by a rule of our own.

use std::collections::BTreeSet;
use std::path::Path;

use esgflow::adapters::tencent::ACTIONS;
use esgflow_local::standins::contract::{self, TCCLI_VERSION};
use serde_json::json;

#[test]
fn every_action_esgflow_calls_has_a_definition_in_the_pinned_version() {
    assert!(ACTIONS.len() >= 12);
    for (service, version, action) in ACTIONS {
        let definitions = contract::definitions(service, version)
            .unwrap_or_else(|e| panic!("{service} {version}: {e}"));
        assert!(
            definitions.has(action),
            "{service} {version} has no action {action} in tccli {TCCLI_VERSION}"
        );
    }
}

/// Every quoted name in the shipped crate that is an action of cfw, vpc or cls is in
/// [`ACTIONS`], so a new call cannot skip the contract check.
#[test]
fn no_call_escapes_the_list() {
    let services = [
        ("cfw", "2019-09-04"),
        ("vpc", "2017-03-12"),
        ("cvm", "2017-03-12"),
        ("cls", "2020-10-16"),
    ];
    let definitions: Vec<_> = services
        .iter()
        .map(|(s, v)| contract::definitions(s, v).unwrap())
        .collect();
    let listed: BTreeSet<&str> = ACTIONS.iter().map(|(_, _, a)| *a).collect();
    let mut sources = Vec::new();
    collect(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("shared/src"),
        &mut sources,
    );
    let mut seen = BTreeSet::new();
    for source in &sources {
        let text = std::fs::read_to_string(source).unwrap();
        for literal in text.split('"').skip(1).step_by(2) {
            let is_name = literal.len() > 3
                && literal.starts_with(|c: char| c.is_ascii_uppercase())
                && literal.chars().all(|c| c.is_ascii_alphanumeric());
            if is_name && definitions.iter().any(|d| d.has(literal)) {
                seen.insert(literal.to_string());
                assert!(
                    listed.contains(literal),
                    "{} calls {literal}, which is not in adapters::tencent::ACTIONS",
                    source.display()
                );
            }
        }
    }
    assert!(seen.len() >= 10, "the scan found the calls: {seen:?}");
}

/// The old-ESG listing once went out without `Area` and with `Direction` as a string; the
/// official definition refuses both, and accepts what the rule source sends now.
#[test]
fn the_definitions_refuse_the_old_esg_request_esgflow_once_sent() {
    let cfw = contract::definitions("cfw", "2019-09-04").unwrap();
    let refusal = cfw
        .validate("DescribeSecurityGroupList", &json!({"Direction": "1"}))
        .unwrap_err();
    assert_eq!(refusal.code, "MissingParameter", "{}", refusal.message);
    let refusal = cfw
        .validate(
            "DescribeSecurityGroupList",
            &json!({"Direction": "1", "Area": "ap-guangzhou"}),
        )
        .unwrap_err();
    assert_eq!(refusal.code, "InvalidParameter", "{}", refusal.message);
    cfw.validate(
        "DescribeSecurityGroupList",
        &json!({"Direction": 1, "Area": "ap-guangzhou", "Limit": 100, "Offset": 0}),
    )
    .unwrap();
    // vpc's template listings take their paging as strings, DescribeNetworkInterfaces as numbers.
    let vpc = contract::definitions("vpc", "2017-03-12").unwrap();
    vpc.validate(
        "DescribeAddressTemplates",
        &json!({"Offset": "0", "Limit": "100"}),
    )
    .unwrap();
    assert_eq!(
        vpc.validate("DescribeAddressTemplates", &json!({"Offset": 0}))
            .unwrap_err()
            .code,
        "InvalidParameter"
    );
    vpc.validate(
        "DescribeNetworkInterfaces",
        &json!({"Offset": 0, "Limit": 100, "Filters": [{"Name": "vpc-id", "Values": ["vpc-1"]}]}),
    )
    .unwrap();
    assert_eq!(
        vpc.validate("DescribeVpcs", &json!({"Nope": 1}))
            .unwrap_err()
            .code,
        "UnknownParameter"
    );
    assert_eq!(
        vpc.validate("DescribeNothing", &json!({}))
            .unwrap_err()
            .code,
        "InvalidAction"
    );
}

#[test]
fn every_action_esgflow_reads_has_official_example_responses() {
    for (service, version, action) in ACTIONS {
        let examples = contract::definitions(service, version)
            .unwrap()
            .examples(action);
        assert!(
            !examples.is_empty(),
            "{service} {action}: no official example response in tccli {TCCLI_VERSION}"
        );
    }
}

#[test]
fn the_makefile_downloads_the_pinned_version() {
    let makefile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Makefile")).unwrap();
    assert!(
        makefile.contains(&format!("TCCLI_VERSION := {TCCLI_VERSION}")),
        "the Makefile pins tccli {TCCLI_VERSION}"
    );
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
