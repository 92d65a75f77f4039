//! Soak: 1,000 consecutive CLS events of varying size (1 to 300 records, some malformed) through
//! one warm audit process. Every record is accounted for (parsed or counted as skipped, and every
//! ESG flow-log record the summaries report is in the output), and memory stays flat: the peak
//! RSS after the last event is within a few MB of the peak after the first hundred. The RSS curve
//! is printed (`make test-long`, or `cargo test --test integration soak:: -- --ignored --nocapture`).

use crate::common;

const EVENTS: usize = 1_000;

#[tokio::test]
#[ignore = "long: run by `make test-long`"]
async fn a_thousand_events_through_one_warm_instance() {
    let scratch = common::scratch("soak");
    let out = scratch.path().join("records.jsonl");
    let _ = std::fs::remove_file(&out);
    let mut audit =
        common::emulator("audit", &[("ESGFLOW_JSONL_PATH", out.to_str().unwrap())]).await;
    let (mut records_in, mut accounted, mut written) = (0u64, 0u64, 0u64);
    let mut curve = Vec::new();
    for i in 0..EVENTS {
        let size = 1 + (i * 37) % 300;
        let lines: Vec<String> = (0..size)
            .map(|j| {
                if (i + j) % 23 == 0 {
                    format!("garbage record {i}/{j}")
                } else {
                    format!(
                        "2 1251762227 eni-web00001 10.0.1.{} 10.0.{}.{} {} {} 6 3 180 {} {} {} OK",
                        10 + j % 40,
                        2 + j % 2,
                        10 + (i + j) % 30,
                        30000 + j,
                        [3306, 443, 22, 6379][j % 4],
                        1763942400 + i as u64 * 60,
                        1763942460 + i as u64 * 60,
                        if j % 3 == 0 { "REJECT" } else { "ACCEPT" }
                    )
                }
            })
            .collect();
        let contents: Vec<&str> = lines.iter().map(String::as_str).collect();
        let invocation = audit
            .invoke(common::cls_event("fl", &contents))
            .await
            .unwrap();
        let summary = invocation.result.json();
        assert!(invocation.result.is_response(), "event {i}: {summary}");
        records_in += summary["records_in"].as_u64().unwrap();
        let skipped: u64 = summary["skipped"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        accounted += summary["parsed"].as_u64().unwrap()
            + skipped
            + summary["nodata"].as_u64().unwrap()
            + summary["skipdata"].as_u64().unwrap();
        written += summary["written"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>();
        if (i + 1) % 100 == 0 {
            curve.push((i + 1, audit.peak_rss_kib().unwrap()));
        }
    }
    let expected: u64 = (0..EVENTS).map(|i| 1 + (i as u64 * 37) % 300).sum();
    assert_eq!(records_in, expected);
    assert_eq!(accounted, records_in, "every record parsed or counted");
    let lines = std::fs::read_to_string(&out).unwrap().lines().count() as u64;
    assert_eq!(
        lines, written,
        "every record the summaries report is in the output"
    );
    eprintln!("peak RSS (VmHWM) after n events:");
    for (n, kib) in &curve {
        eprintln!("  {n:>5}: {:.1} MB", *kib as f64 / 1024.0);
    }
    let first = curve[0].1;
    let last = curve[curve.len() - 1].1;
    assert!(
        last <= first + 8 * 1024,
        "memory grew from {first} KiB to {last} KiB over {EVENTS} events"
    );
    std::fs::remove_file(&out).ok();
}
