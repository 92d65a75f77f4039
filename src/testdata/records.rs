//! Synthetic hit and traffic records shaped like audit's, for the local records store at scale
//! (`benches/store.rs`, `make measure`): 30 days up to [`END`], 5 VPCs, 50 subnets, 60,000
//! private addresses and some public ones, 300 rules.

use std::path::Path;

use esgflow::adapters::sqlite::LocalRecords;
use serde_json::json;

/// The generator's version (the store's schema): a database built by another version is rebuilt.
pub const GENERATOR: &str = "v9";
/// The newest record's time, Unix seconds.
pub const END: i64 = 1_764_000_000;
/// The records' span, seconds.
pub const SPAN: i64 = 30 * 86_400;

/// The n-th private address: `10.<vpc*10 + subnet>.x.y`, 5 VPCs × 10 subnets, 1,200 hosts each.
pub fn private(n: u64) -> String {
    let subnet = n % 50;
    let host = (n / 50) % 1200;
    format!("10.{}.{}.{}", subnet, host / 250, host % 250 + 2)
}

/// The i-th hit record (a block or observe hit), as audit writes it.
pub fn record(i: u64, rng: &mut fastrand::Rng) -> String {
    let time = END - rng.i64(0..SPAN);
    let inbound = rng.u8(0..10) == 0;
    let src = if inbound {
        format!("203.0.{}.{}", rng.u8(0..=255), rng.u8(1..=254))
    } else {
        private(rng.u64(0..60_000))
    };
    let dst = private(rng.u64(0..60_000));
    let subnet_of = |ip: &str| ip.split('.').nth(1).unwrap().parse::<u64>().unwrap();
    let number = |ip: &str| u32::from(ip.parse::<std::net::Ipv4Addr>().unwrap());
    let port = [22, 80, 443, 3306, 5432, 6379, 8080, 9200][rng.usize(0..8)];
    let block = rng.u8(0..10) < 6;
    let rule = rng.u32(0..300);
    let dst_subnet = subnet_of(&dst);
    let mut record = json!({
        "record_type": if block { "block_hit" } else { "observe_hit" },
        "record_id": format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        "time": time, "start": time - 60, "end": time,
        "account_id": "1251762227", "eni": format!("eni-{:08}", rng.u32(0..60_000)),
        "direction": "ingress",
        "src_ip": src, "src_ip_num": number(&src), "src_port": rng.u16(1024..65535),
        "dst_ip": dst, "dst_ip_num": number(&dst), "dst_port": port,
        "protocol": 6, "protocol_name": "TCP", "fl_action": if block { "REJECT" } else { "ACCEPT" },
        "packets": rng.u64(1..100), "bytes": rng.u64(60..100_000),
        "scope": if inbound { "vpc_inbound" } else { "inter_subnet" },
        "dst_vpc": format!("vpc-{:08}", dst_subnet / 10), "dst_subnet": format!("subnet-{dst_subnet:06}"),
        "dst_instance": format!("ins-{:08}", number(&dst) % 100_000),
        "decision": if block { "block" } else { "allow" },
        "rule_uuid": rule.to_string(), "rule_order": rule, "rule_generation": "new",
        "rule_action": if block { "drop" } else { "observe" },
        "rule_description": format!("rule {rule}"), "rule_source": "net 0.0.0.0/0",
        "rule_destination": "template ipm-data", "rule_service": format!("TCP {port}"),
        "snapshot_version": "0123456789abcdef",
    });
    if !inbound {
        let src_subnet = subnet_of(&src);
        record["src_vpc"] = json!(format!("vpc-{:08}", src_subnet / 10));
        record["src_subnet"] = json!(format!("subnet-{src_subnet:06}"));
    }
    record.to_string()
}

/// The i-th traffic record: a conversation's counters in one batch.
pub fn traffic(i: u64, rng: &mut fastrand::Rng) -> String {
    let time = END - rng.i64(0..SPAN);
    let dst = private(rng.u64(0..60_000));
    let subnet_of = |ip: &str| ip.split('.').nth(1).unwrap().parse::<u64>().unwrap();
    let (src, scope, peer) = match rng.u8(0..10) {
        0 => (
            format!("203.0.{}.{}", rng.u8(0..=255), rng.u8(1..=254)),
            "vpc_inbound",
            "internet",
        ),
        1 => (
            format!("192.168.{}.{}", rng.u8(0..=255), rng.u8(1..=254)),
            "vpc_inbound",
            "private",
        ),
        _ => {
            let src = private(rng.u64(0..60_000));
            let (a, b) = (subnet_of(&src), subnet_of(&dst));
            let scope = if a == b {
                "intra_subnet"
            } else if a / 10 == b / 10 {
                "inter_subnet"
            } else {
                "cross_vpc"
            };
            let peer = if a / 10 == b / 10 {
                "same_vpc"
            } else {
                "other_vpc"
            };
            (src, scope, peer)
        }
    };
    let dst_subnet = subnet_of(&dst);
    let reject = rng.u8(0..10) == 0;
    let flows = rng.u64(1..20);
    let port = [22, 80, 443, 3306, 5432, 6379, 8080, 9200][rng.usize(0..8)];
    let mut record = json!({
        "record_type": "traffic",
        "record_id": format!("{:016x}", i.wrapping_mul(0x94d0_49bb_1331_11eb)),
        "time": time, "scope": scope, "vpc": format!("vpc-{:08}", dst_subnet / 10),
        "src_ip": src, "dst_ip": dst,
        "dst_port": port,
        "protocol": 6, "protocol_name": "TCP", "fl_action": if reject { "REJECT" } else { "ACCEPT" },
        "dst_vpc": format!("vpc-{:08}", dst_subnet / 10), "dst_subnet": format!("subnet-{dst_subnet:06}"),
        "peer": peer, "flows": flows, "requests": flows, "replies": 0, "connections": flows,
        "packets": flows * rng.u64(1..50), "bytes": flows * rng.u64(60..100_000),
        "first_seen": time - 60, "last_seen": time, "snapshot_version": "0123456789abcdef",
    });
    if src.starts_with("10.") {
        let src_subnet = subnet_of(&src);
        record["src_vpc"] = json!(format!("vpc-{:08}", src_subnet / 10));
        record["src_subnet"] = json!(format!("subnet-{src_subnet:06}"));
    }
    record.to_string()
}

/// `count` hit and `count` traffic records as CLS keeps them: the topic (`topic-hits` or
/// `topic-traffic`), the log time in milliseconds, and every field as text.
pub fn as_logs(
    count: u64,
) -> impl Iterator<
    Item = (
        &'static str,
        (i64, std::collections::BTreeMap<String, String>),
    ),
> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..count).flat_map(move |i| {
        let hit = record(i, &mut rng);
        let traffic = traffic(i, &mut rng);
        [("topic-hits", hit), ("topic-traffic", traffic)].map(|(topic, line)| {
            let value: serde_json::Value = serde_json::from_str(&line).expect("a record");
            let time = value["time"].as_i64().unwrap_or(0) * 1000;
            let fields = value
                .as_object()
                .into_iter()
                .flatten()
                .map(|(key, value)| {
                    let text = match value {
                        serde_json::Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    (key.clone(), text)
                })
                .collect();
            (topic, (time, fields))
        })
    })
}

/// Builds a records database of `count` hit and `count` traffic records at `path` (replaced),
/// calling `progress` with the records written so far.
pub fn build(path: &Path, count: u64, mut progress: impl FnMut(u64)) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    let store = LocalRecords::create(path).map_err(|e| e.to_string())?;
    let mut rng = fastrand::Rng::with_seed(7);
    let chunk = 50_000;
    for first in (0..count).step_by(chunk as usize) {
        let mut lines = String::new();
        for i in first..(first + chunk).min(count) {
            lines.push_str(&record(i, &mut rng));
            lines.push('\n');
            lines.push_str(&traffic(i, &mut rng));
            lines.push('\n');
        }
        let imported = store.import(lines.as_bytes()).map_err(|e| e.to_string())?;
        if imported.skipped > 0 {
            return Err(format!("{} synthetic records refused", imported.skipped));
        }
        progress((first + chunk).min(count));
    }
    Ok(())
}
