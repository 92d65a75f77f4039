//! The two records stores answer every search the same way. The bundled sample is judged by the
//! real audit function twice — once into the CLS stand-in (which evaluates the CQL esgflow sends
//! as CLS documents it), once into JSON lines loaded into the SQLite store — and every query
//! shape runs against both, page by page, and against a plain reading of the records.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cls_stub::ClsStub;
use esgflow::adapters::sqlite::LocalRecords;
use esgflow::adapters::tencent::api::ApiClient;
use esgflow::adapters::tencent::cls_query::ClsRecords;
use esgflow::core::engine::Scope;
use esgflow::core::ports::RecordsStore;
use esgflow::core::records::Peer;
use esgflow::core::search::{
    AddressMatch, HitFilter, MatrixCell, SeriesPoint, Talker, TrafficFilter, TrafficSums,
    TrafficTotal, TrafficView, HIT_TYPES,
};
use serde_json::Value;

/// The sample's day.
const SINCE: i64 = 1_763_942_400;
const UNTIL: i64 = SINCE + 86_400;

fn sample_events() -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/flowlogs.txt"),
    )
    .unwrap();
    esgflow_local::emulator::clsfeed::cut_events(text.lines(), &Default::default()).unwrap()
}

async fn audit(env: Vec<(String, String)>, events: &[Vec<u8>]) {
    let mut audit = common::emulator_with("audit", env).await;
    for event in events {
        let invocation = audit.invoke(event.clone()).await.unwrap();
        assert!(
            invocation.result.is_response(),
            "{}",
            invocation.result.json()
        );
    }
}

/// Whether `record` answers `filter`, read plainly from the record's fields.
fn truth(filter: &HitFilter, record: &Value) -> bool {
    let text = |key: &str| record.get(key).and_then(Value::as_str);
    let ip = |key: &str| text(key).and_then(|t| t.parse().ok());
    let at = |m: &Option<AddressMatch>, key: &str| {
        m.as_ref()
            .is_none_or(|m| ip(key).is_some_and(|ip| m.contains(ip)))
    };
    let either_side = |id: &Option<String>, key: &str| {
        id.as_ref().is_none_or(|id| {
            text(&format!("src_{key}")) == Some(id) || text(&format!("dst_{key}")) == Some(id)
        })
    };
    let time = record["time"].as_i64().unwrap();
    filter.types.iter().any(|t| text("record_type") == Some(t))
        && (filter.since..=filter.until).contains(&time)
        && at(&filter.src, "src_ip")
        && at(&filter.dst, "dst_ip")
        && filter.either.as_ref().is_none_or(|m| {
            [ip("src_ip"), ip("dst_ip")]
                .into_iter()
                .flatten()
                .any(|ip| m.contains(ip))
        })
        && filter
            .port
            .is_none_or(|p| record["dst_port"].as_u64() == Some(u64::from(p)))
        && filter
            .protocol
            .is_none_or(|p| record["protocol"].as_u64() == Some(u64::from(p)))
        && filter
            .rule
            .as_ref()
            .is_none_or(|r| text("rule_uuid") == Some(r))
        && either_side(&filter.vpc, "vpc")
        && either_side(&filter.subnet, "subnet")
        && filter
            .fl_action
            .is_none_or(|a| text("fl_action") == Some(a))
}

/// Every page of `filter` from `store`, `limit` at a time: the records, and how many pages.
async fn every_page(
    store: &dyn RecordsStore,
    filter: &HitFilter,
    limit: u32,
) -> (Vec<Value>, usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut hits = Vec::new();
    let mut context: Option<String> = None;
    for page in 1.. {
        let answer = store
            .search_hits(filter, limit, context.as_deref(), deadline)
            .await
            .unwrap_or_else(|e| panic!("{filter:?}: {e:?}"));
        assert!(answer.hits.len() <= limit as usize);
        hits.extend(answer.hits);
        match answer.context {
            Some(next) => context = Some(next),
            None => return (hits, page),
        }
        assert!(page < 1000, "paging does not end");
    }
    unreachable!()
}

fn ids(hits: &[Value]) -> BTreeSet<String> {
    hits.iter()
        .map(|h| h["record_id"].as_str().unwrap().to_string())
        .collect()
}

fn times(hits: &[Value]) -> Vec<i64> {
    hits.iter().map(|h| h["time"].as_i64().unwrap()).collect()
}

fn shapes() -> Vec<(&'static str, HitFilter)> {
    let at = |t: &str| Some(AddressMatch::parse(t).unwrap());
    let base = HitFilter::new(SINCE, UNTIL);
    let every_type = HitFilter {
        types: HIT_TYPES.to_vec(),
        ..base.clone()
    };
    vec![
        ("default: block and observe hits", base.clone()),
        (
            "job 1: who blocked 10.0.1.11 → 10.0.3.10:3306/TCP",
            HitFilter {
                types: vec!["block_hit"],
                src: at("10.0.1.11"),
                dst: at("10.0.3.10"),
                port: Some(3306),
                protocol: Some(6),
                ..base.clone()
            },
        ),
        (
            "source network",
            HitFilter {
                src: at("10.0.1.0/24"),
                ..every_type.clone()
            },
        ),
        (
            "destination network",
            HitFilter {
                dst: at("10.0.0.0/16"),
                ..every_type.clone()
            },
        ),
        (
            "either side, one address",
            HitFilter {
                either: at("10.0.3.10"),
                ..base.clone()
            },
        ),
        (
            "either side, a network",
            HitFilter {
                either: at("172.16.0.0/12"),
                ..every_type.clone()
            },
        ),
        (
            "one rule",
            HitFilter {
                rule: Some("7010".into()),
                ..base.clone()
            },
        ),
        (
            "one VPC, every type",
            HitFilter {
                vpc: Some("vpc-prod0001".into()),
                ..every_type.clone()
            },
        ),
        (
            "one subnet",
            HitFilter {
                subnet: Some("subnet-db000001".into()),
                ..base.clone()
            },
        ),
        (
            "accepted by the flow log",
            HitFilter {
                fl_action: Some("ACCEPT"),
                ..every_type.clone()
            },
        ),
        (
            "ICMP",
            HitFilter {
                protocol: Some(1),
                ..every_type.clone()
            },
        ),
        (
            "a ten-minute window",
            HitFilter {
                since: SINCE + 600,
                until: SINCE + 1200,
                ..every_type.clone()
            },
        ),
        (
            "nothing matches",
            HitFilter {
                src: at("192.0.2.1"),
                ..every_type.clone()
            },
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn both_stores_answer_every_search_alike() {
    let events = sample_events();
    let stub = ClsStub::start(vec![]).await;
    audit(stub.env("topic-hits", "topic-traffic"), &events).await;
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());

    let scratch = common::scratch("stores");

    let dir = scratch.path().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let jsonl = dir.join("records.jsonl");
    let _ = std::fs::remove_file(&jsonl);
    audit(
        vec![(
            "ESGFLOW_JSONL_PATH".to_string(),
            jsonl.display().to_string(),
        )],
        &events,
    )
    .await;
    let db = dir.join("records.db");
    let _ = std::fs::remove_file(&db);
    let imported = LocalRecords::create(&db)
        .unwrap()
        .import(std::io::BufReader::new(
            std::fs::File::open(&jsonl).unwrap(),
        ))
        .unwrap();
    assert_eq!(imported.skipped, 0);
    let records: Vec<Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(imported.records, records.len() as u64);
    // No record spills into a mostly empty overflow page (schema 5 took 2,474 bytes a record
    // of the sample; its JSON is about 900).
    let per_record = std::fs::metadata(&db).unwrap().len() / imported.records;
    assert!(per_record <= 1_200, "{per_record} bytes a record");

    let cls = ClsRecords {
        // The API client signs with the credentials the stand-in expects.
        client: ApiClient::new("ap-guangzhou", Some(stub.url.clone()))
            .with_credentials(common::cls_stub::credentials()),
        topic: "topic-hits".to_string(),
        traffic_topic: "topic-traffic".to_string(),
    };
    let local = LocalRecords::open(&db).unwrap();
    // Both through the port, as lookup holds them.
    let (cls, local): (&dyn RecordsStore, &dyn RecordsStore) = (&cls, &local);

    let mut paged = 0;
    for (name, filter) in shapes() {
        let expected: BTreeSet<String> = ids(&records
            .iter()
            .filter(|r| truth(&filter, r))
            .cloned()
            .collect::<Vec<_>>());
        if name == "nothing matches" {
            assert!(expected.is_empty());
        } else {
            assert!(
                !expected.is_empty(),
                "{name}: the sample has no such record"
            );
        }
        let limit = 40;
        let (from_cls, cls_pages) = every_page(cls, &filter, limit).await;
        let (from_local, local_pages) = every_page(local, &filter, limit).await;
        assert_eq!(ids(&from_cls), expected, "{name}: CLS");
        assert_eq!(ids(&from_local), expected, "{name}: local");
        assert_eq!(
            from_cls.len(),
            expected.len(),
            "{name}: CLS repeats a record"
        );
        assert_eq!(
            from_local.len(),
            expected.len(),
            "{name}: local repeats a record"
        );
        // Each record reads the same from both, numbers as numbers, as audit wrote it.
        let written = |id: &str| records.iter().find(|r| r["record_id"] == id).unwrap();
        for hit in from_cls.iter().chain(&from_local) {
            assert_eq!(hit, written(hit["record_id"].as_str().unwrap()), "{name}");
        }
        // Newest first on both; records of one time may come in any order (CLS does not
        // order them).
        let (cls_times, local_times) = (times(&from_cls), times(&from_local));
        assert!(cls_times.windows(2).all(|w| w[0] >= w[1]), "{name}");
        assert_eq!(cls_times, local_times, "{name}");
        assert_eq!(cls_pages, local_pages, "{name}");
        if cls_pages >= 3 {
            paged += 1;
        }
    }
    assert!(paged >= 3, "too few searches span three pages: {paged}");

    // The job-1 search names the rule that blocked the connection, on both stores.
    let job1 = &shapes()[1].1;
    for store in [cls, local] {
        let (hits, _) = every_page(store, job1, 10).await;
        assert!(hits.iter().all(|h| h["rule_uuid"] == "7010"), "{hits:?}");
    }

    // Top blocking rules and a rule's counters agree too.
    let deadline = Instant::now() + Duration::from_secs(30);
    let top_cls = cls
        .top_block_rules(SINCE, UNTIL, 5, deadline)
        .await
        .unwrap();
    let top_local = local
        .top_block_rules(SINCE, UNTIL, 5, deadline)
        .await
        .unwrap();
    assert_eq!(top_cls.len(), 5);
    assert_eq!(top_cls, top_local);
    for (uuid, _) in &top_cls {
        let a = cls
            .rule_counters(uuid, SINCE, UNTIL, deadline)
            .await
            .unwrap();
        let b = local
            .rule_counters(uuid, SINCE, UNTIL, deadline)
            .await
            .unwrap();
        assert_eq!(a, b, "{uuid}");
        assert!(a.block_hits > 0, "{uuid}: {a:?}");
    }
    let none = local
        .rule_counters("no-such-rule", SINCE, UNTIL, deadline)
        .await
        .unwrap();
    assert_eq!(
        none,
        cls.rule_counters("no-such-rule", SINCE, UNTIL, deadline)
            .await
            .unwrap()
    );

    // The traffic views agree with each other and with a plain reading of the records.
    for (name, filter) in traffic_shapes() {
        let expected = traffic_truth(&filter, &records);
        assert!(
            !expected.totals.is_empty(),
            "{name}: the sample has no such traffic"
        );
        let from_cls = cls.traffic(&filter, deadline).await.unwrap();
        let from_local = local.traffic(&filter, deadline).await.unwrap();
        assert_eq!(from_cls, expected, "{name}: CLS");
        assert_eq!(from_local, expected, "{name}: local");
    }

    // Every conversation of each shape, from both stores, most bytes first (what a what-if
    // judges; over CLS read a page of SQL rows at a time), and the first few with `complete`
    // false when there are more.
    for (name, filter) in traffic_shapes() {
        let mut every = filter.clone();
        every.talkers = u32::MAX;
        let expected = traffic_truth(&every, &records).talkers;
        for (store, which) in [(cls, "CLS"), (local, "local")] {
            let all = store
                .conversations(&filter, 100_000, deadline)
                .await
                .unwrap();
            assert_eq!(all.rows, expected, "{name}: {which}");
            assert!(all.complete, "{name}: {which}");
            if expected.len() > 3 {
                let first = store.conversations(&filter, 3, deadline).await.unwrap();
                assert_eq!(first.rows, expected[..3], "{name}: {which}");
                assert!(!first.complete, "{name}: {which}");
            }
        }
    }

    // Every rule's counters at once agree, with each other and rule by rule.
    let totals = cls.rule_totals(SINCE, UNTIL, deadline).await.unwrap();
    assert_eq!(
        totals,
        local.rule_totals(SINCE, UNTIL, deadline).await.unwrap()
    );
    assert!(totals.len() >= 5, "{totals:?}");
    for (uuid, counters) in &totals {
        let one = local
            .rule_counters(uuid, SINCE, UNTIL, deadline)
            .await
            .unwrap();
        assert_eq!(&one, counters, "{uuid}");
    }

    // One record by id, from both, as written.
    let some_hit = records
        .iter()
        .find(|r| r["record_type"] == "block_hit")
        .unwrap();
    let id = some_hit["record_id"].as_str().unwrap();
    for store in [cls, local] {
        let found = store.hit_by_id(id, SINCE, UNTIL, deadline).await.unwrap();
        assert_eq!(found.as_ref(), Some(some_hit));
        let none = store
            .hit_by_id("00000000000000ff", SINCE, UNTIL, deadline)
            .await
            .unwrap();
        assert_eq!(none, None);
    }

    // Flow-log coverage: the ENIs that recorded traffic, the same from both and from the records.
    let expected: BTreeSet<String> = records
        .iter()
        .filter(|r| r["record_type"] == "traffic")
        .filter_map(|r| r["enis"].as_str())
        .flat_map(|list| list.split(',').map(str::to_string))
        .collect();
    assert!(expected.len() >= 3, "{expected:?}");
    for store in [cls, local] {
        let seen = store.recording_enis(SINCE, UNTIL, deadline).await.unwrap();
        assert_eq!(seen, expected);
    }
    std::fs::remove_dir_all(dir).ok();
}

fn traffic_shapes() -> Vec<(&'static str, TrafficFilter)> {
    let base = TrafficFilter::new(SINCE, UNTIL);
    let vpc = TrafficFilter {
        vpc: Some("vpc-prod0001".into()),
        ..base.clone()
    };
    vec![
        ("all traffic of the day", base.clone()),
        ("job 2: within one VPC", vpc.clone()),
        (
            "job 2: between subnets, 5 talkers",
            TrafficFilter {
                scope: Some(Scope::InterSubnet),
                talkers: 5,
                ..vpc.clone()
            },
        ),
        (
            "job 3: inbound",
            TrafficFilter {
                scope: Some(Scope::VpcInbound),
                ..vpc.clone()
            },
        ),
        (
            "job 3: outbound, private peers",
            TrafficFilter {
                scope: Some(Scope::VpcOutbound),
                peer: Some(Peer::Private),
                ..vpc.clone()
            },
        ),
        (
            "one subnet, rejected",
            TrafficFilter {
                subnet: Some("subnet-db000001".into()),
                fl_action: Some("REJECT"),
                ..base.clone()
            },
        ),
        (
            "job 2: one matrix cell, app to db, its host pairs",
            TrafficFilter {
                src_subnet: Some("subnet-app00001".into()),
                dst_subnet: Some("subnet-db000001".into()),
                talkers: 100,
                ..vpc.clone()
            },
        ),
        (
            "an hour by the minute",
            TrafficFilter {
                since: SINCE,
                until: SINCE + 3600,
                bucket: 60,
                ..base.clone()
            },
        ),
    ]
}

/// The traffic views of `filter`, summed plainly from the records.
fn traffic_truth(filter: &TrafficFilter, records: &[Value]) -> TrafficView {
    use std::collections::BTreeMap;
    let text = |r: &Value, key: &str| r.get(key).and_then(Value::as_str).map(str::to_string);
    let count = |r: &Value, key: &str| r[key].as_u64().unwrap_or(0);
    let either = |r: &Value, id: &Option<String>, key: &str| {
        id.as_ref().is_none_or(|id| {
            text(r, &format!("src_{key}")).as_ref() == Some(id)
                || text(r, &format!("dst_{key}")).as_ref() == Some(id)
        })
    };
    let add = |sums: &mut TrafficSums, r: &Value| {
        sums.flows += count(r, "flows");
        if r["fl_action"] == "REJECT" {
            sums.rejected_flows += count(r, "flows");
        }
        sums.packets += count(r, "packets");
        sums.bytes += count(r, "bytes");
    };
    let mut totals: BTreeMap<(String, String), TrafficSums> = BTreeMap::new();
    type TalkerKey = (String, String, Option<u16>, String, String);
    let mut talkers: BTreeMap<TalkerKey, TrafficSums> = BTreeMap::new();
    let mut matrix: BTreeMap<(Option<String>, Option<String>), TrafficSums> = BTreeMap::new();
    let mut series: BTreeMap<i64, TrafficSums> = BTreeMap::new();
    for r in records.iter().filter(|r| {
        r["record_type"] == "traffic"
            && (filter.since..=filter.until).contains(&r["time"].as_i64().unwrap())
            && either(r, &filter.vpc, "vpc")
            && either(r, &filter.subnet, "subnet")
            && filter
                .src_subnet
                .as_ref()
                .is_none_or(|id| text(r, "src_subnet").as_ref() == Some(id))
            && filter
                .dst_subnet
                .as_ref()
                .is_none_or(|id| text(r, "dst_subnet").as_ref() == Some(id))
            && filter.scope.is_none_or(|s| r["scope"] == s.as_str())
            && filter.peer.is_none_or(|p| r["peer"] == p.as_str())
            && filter.fl_action.is_none_or(|a| r["fl_action"] == a)
    }) {
        let t = |key: &str| text(r, key).unwrap_or_default();
        add(totals.entry((t("scope"), t("fl_action"))).or_default(), r);
        let port = r["dst_port"].as_u64().map(|p| p as u16);
        let key = (
            t("src_ip"),
            t("dst_ip"),
            port,
            t("protocol_name"),
            t("scope"),
        );
        add(talkers.entry(key).or_default(), r);
        let cell = (text(r, "src_subnet"), text(r, "dst_subnet"));
        add(matrix.entry(cell).or_default(), r);
        let last_seen = r["last_seen"].as_i64().unwrap();
        let step = i64::from(filter.bucket);
        add(series.entry(last_seen - last_seen % step).or_default(), r);
    }
    let mut view = TrafficView {
        totals: totals
            .into_iter()
            .map(|((scope, fl_action), sums)| TrafficTotal {
                scope,
                fl_action,
                sums,
            })
            .collect(),
        talkers: talkers
            .into_iter()
            .map(
                |((src_ip, dst_ip, dst_port, protocol_name, scope), sums)| Talker {
                    src_ip: src_ip.into(),
                    dst_ip: dst_ip.into(),
                    dst_port,
                    protocol_name: protocol_name.into(),
                    scope: scope.into(),
                    sums,
                },
            )
            .collect(),
        matrix: matrix
            .into_iter()
            .map(|((src_subnet, dst_subnet), sums)| MatrixCell {
                src_subnet,
                dst_subnet,
                sums,
            })
            .collect(),
        series: series
            .into_iter()
            .map(|(time, sums)| SeriesPoint { time, sums })
            .collect(),
    };
    view.sort();
    view.talkers.truncate(filter.talkers as usize);
    view.matrix
        .truncate(esgflow::core::search::MAX_MATRIX_CELLS as usize);
    view
}

/// The traffic views over CLS at the reference account's scale (60 VPCs, 600 subnets, 8,000
/// lines of its day): every query stays within CLS's SQL limits (the stand-in answers at most
/// 10,000 rows, as CLS does), and the views equal a plain reading of the records.
#[tokio::test(flavor = "multi_thread")]
async fn traffic_views_over_cls_hold_at_the_reference_scale() {
    use esgflow_local::testdata::reference;
    const DAY: u64 = esgflow_local::cli::synthetic::REFERENCE_DAY;
    let scratch = common::scratch("reference-traffic");
    let dir = scratch.path().to_path_buf();
    let snapshot = dir.join("snapshot.json");
    reference::snapshot(&reference::account(2_000, 42))
        .unwrap()
        .save(&snapshot)
        .unwrap();
    let lines: Vec<String> = reference::day_lines(9_500, 11, DAY).collect();
    let events = esgflow_local::emulator::clsfeed::cut_events(
        lines.iter().map(String::as_str),
        &Default::default(),
    )
    .unwrap();
    let stub = ClsStub::start(vec![]).await;
    let mut env = stub.env("topic-hits", "topic-traffic");
    env.push(("ESGFLOW_SNAPSHOT".into(), snapshot.display().to_string()));
    audit(env, &events).await;
    // The records as CLS keeps them (every value text), read back as audit wrote them.
    let records: Vec<Value> = stub
        .accepted()
        .into_iter()
        .filter(|log| log.topic == "topic-traffic")
        .map(|log| {
            let fields = log.fields.into_iter().map(|(key, text)| {
                let value = match text.parse::<u64>() {
                    Ok(n) if key != "record_id" => Value::from(n),
                    _ => Value::from(text),
                };
                (key, value)
            });
            Value::Object(fields.collect())
        })
        .collect();
    let traffic = records
        .iter()
        .filter(|r| r["record_type"] == "traffic")
        .count();
    assert!(traffic >= 3_000, "{traffic} traffic records");
    let cls = ClsRecords {
        client: ApiClient::new("ap-guangzhou", Some(stub.url.clone()))
            .with_credentials(common::cls_stub::credentials()),
        topic: "topic-hits".to_string(),
        traffic_topic: "topic-traffic".to_string(),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let (since, until) = (DAY as i64, DAY as i64 + 86_400);
    let vpc = records
        .iter()
        .find_map(|r| {
            r["dst_vpc"]
                .as_str()
                .filter(|_| r["record_type"] == "traffic")
        })
        .unwrap()
        .to_string();
    let shapes = [
        ("every VPC, the day", TrafficFilter::new(since, until)),
        (
            "one VPC, the day",
            TrafficFilter {
                vpc: Some(vpc.clone()),
                ..TrafficFilter::new(since, until)
            },
        ),
        (
            "one VPC, inbound",
            TrafficFilter {
                vpc: Some(vpc),
                scope: Some(Scope::VpcInbound),
                ..TrafficFilter::new(since, until)
            },
        ),
    ];
    for (name, filter) in shapes {
        let searches = stub.searches().len();
        let from_cls = cls.traffic(&filter, deadline).await.unwrap();
        let truth = traffic_truth(&filter, &records);
        // The local store keeps one of two traffic records that share an id (issue #35: one
        // conversation seen on two ENIs in two events gets one id), so it is held to the sample's
        // suite above, not to this one.
        assert_eq!(from_cls.totals, truth.totals, "{name}: totals");
        assert_eq!(from_cls.talkers, truth.talkers, "{name}: talkers");
        assert_eq!(from_cls.matrix, truth.matrix, "{name}: matrix");
        assert_eq!(from_cls.series, truth.series, "{name}: series");
        assert!(!from_cls.talkers.is_empty(), "{name}");
        for search in &stub.searches()[searches..] {
            let query = search["QueryString"].as_str().unwrap();
            let limit: usize = query.rsplit(" limit ").next().unwrap().parse().unwrap();
            assert!(limit <= 10_000, "{name}: {query}");
        }
    }
    // Every VPC's day crosses more subnet pairs than the matrix keeps: the busiest pairs.
    let every = cls
        .traffic(&TrafficFilter::new(since, until), deadline)
        .await
        .unwrap();
    assert_eq!(
        every.matrix.len(),
        esgflow::core::search::MAX_MATRIX_CELLS as usize
    );
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
}

/// A what-if's conversations over CLS stop at their deadline with the largest ones read so far,
/// marked cut by the deadline, rather than failing or running past it: pages come 10,000 rows at
/// a time, and every page after the first is answered slower than the deadline allows.
#[tokio::test]
async fn conversations_over_cls_stop_at_the_deadline_with_the_largest_so_far() {
    use esgflow_local::testdata::records::{as_logs, END, SPAN};
    let stub = ClsStub::start(vec![]).await;
    for (topic, log) in as_logs(12_000) {
        stub.keep(topic, [log]);
    }
    let cls = ClsRecords {
        client: ApiClient::new("ap-guangzhou", Some(stub.url.clone()))
            .with_credentials(common::cls_stub::credentials()),
        topic: "topic-hits".to_string(),
        traffic_topic: "topic-traffic".to_string(),
    };
    let filter = TrafficFilter::new(END - SPAN, END);
    let all = cls
        .conversations(&filter, 100_000, Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        all.rows.len() > 10_000 && all.complete,
        "{}",
        all.rows.len()
    );
    stub.slow_searches_after(stub.searches().len() + 1, Duration::from_secs(5));
    let started = Instant::now();
    let cut = cls
        .conversations(&filter, 100_000, Instant::now() + Duration::from_secs(2))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(cut.rows, all.rows[..10_000]);
    assert!(cut.cut_by_deadline && !cut.complete);
}
