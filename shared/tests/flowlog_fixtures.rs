//! Golden fixtures: every case in fixtures/flowlog/cases.jsonl parses to its expected outcome.

use esgflow::core::flowlog::{parse, Parsed};

#[test]
fn every_fixture_parses_as_expected() {
    let text = include_str!("../../fixtures/flowlog/cases.jsonl");
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let name = case["name"].as_str().unwrap();
        let content = case["content"].as_str().unwrap();
        let result = parse(content);
        if let Some(expected) = case.get("flow") {
            match &result {
                Ok(Parsed::Flow(flow)) => {
                    assert_eq!(&serde_json::to_value(flow).unwrap(), expected, "{name}")
                }
                other => panic!("{name}: expected a flow, got {other:?}"),
            }
        } else if let Some(reason) = case.get("skip") {
            let err = result
                .as_ref()
                .err()
                .unwrap_or_else(|| panic!("{name}: expected a skip, got {result:?}"));
            assert_eq!(
                err.reason.as_str(),
                reason.as_str().unwrap(),
                "{name}: {err}"
            );
            assert!(!err.message.is_empty(), "{name}");
        } else {
            let expected = match case["outcome"].as_str().unwrap() {
                "nodata" => Parsed::NoData,
                "skipdata" => Parsed::SkipData,
                other => panic!("{name}: unknown outcome {other}"),
            };
            assert_eq!(result, Ok(expected), "{name}");
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} fixtures");
}
