//! The sync function: on each timer tick, build the rule snapshot from the live APIs, and when it
//! differs from the published `latest`, write what changed and publish it.
//!
//! One run:
//! 1. build the snapshot (every page of every cfw/vpc listing); a failed call fails the run and
//!    nothing is written;
//! 2. read the store's `latest`; the same version → the run ends: nothing is written
//!    (idempotent);
//! 3. otherwise write the `rule_change` records (diff against `latest`) and the `rule_hygiene`
//!    records (shadowed, redundant, unresolvable, and unused rules when a hits topic is
//!    configured) to the sink, **then** publish the snapshot and move `latest`. Records go first so
//!    a failed publish is retried by the next run with the same deterministic record ids, while a
//!    failed write leaves `latest` untouched;
//! 4. send one `rule_change` alert (opt-in: `rule_change` in `ESGFLOW_ALERT_KINDS`).
//!
//! The unused-rule report sums the audit function's `rule_hits` records over the window with a
//! CLS `SearchLog` SQL query; the rules that never appear are unused.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::adapters::chat::Robot;
use crate::adapters::tencent::api::{ApiClient, ApiError};
use crate::adapters::tencent::cls_query::USED_RULES_QUERY;
use crate::adapters::tencent::rules::{build_live, LiveError};
use crate::adapters::tencent::search::{all_rows, number};
use crate::app::alerts::{DispatchReport, Dispatcher};
use crate::app::config::{quarter_of, Function, SinkConfig, SyncConfig};
use crate::core::alert::{rules_not_read, MemoryState};
use crate::core::engine::hygiene::{analyze_until, Budget, Finding, Stopped};
use crate::core::engine::Engine;
use crate::core::ports::{Latest, SnapshotStore, StoreError};
use crate::core::ports::{RecordSink, SinkError};
use crate::core::records::{Record, RecordId, RecordType, RuleHygieneRecord};
use crate::core::snapshot::diff::change_records;
use crate::core::snapshot::Snapshot;
use crate::runtime::Diagnostic;

/// Why a run failed; `latest` is untouched unless the error says the records were written.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Building the snapshot failed: nothing was published.
    #[error("building the snapshot failed: {error}{}; {}", stopped_early(.stopped.as_deref()), kept_in_force(.kept.as_deref()))]
    Build {
        /// Why.
        error: LiveError,
        /// When the run stopped at its own deadline, before the function's: the slowest calls.
        stopped: Option<String>,
        /// The published snapshot that stays in force (`None`: none, or its pointer could not
        /// be read).
        kept: Option<String>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The records could not be written (`latest` not moved).
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The snapshot does not compile.
    #[error("the new snapshot does not compile: {0}")]
    Compile(String),
}

impl From<SyncError> for Diagnostic {
    fn from(err: SyncError) -> Self {
        let kind = match err {
            SyncError::Build { .. } => "SnapshotBuildFailed",
            SyncError::Store(_) => "SnapshotStoreFailed",
            SyncError::Sink(_) => "SinkError",
            SyncError::Compile(_) => "SnapshotInvalid",
        };
        Diagnostic::new(kind, err.to_string())
    }
}

/// How the run stopped short of the function's deadline, and what was slow.
fn stopped_early(slowest: Option<&str>) -> String {
    match slowest {
        Some(slowest) => format!(
            " (stopped before the function's deadline to report; the slowest calls: {})",
            if slowest.is_empty() {
                "none answered"
            } else {
                slowest
            }
        ),
        None => String::new(),
    }
}

/// The time a run keeps back from the function's deadline to report how it ended: an eighth of
/// what it was given, at most 10 s.
fn reserve(deadline: Instant) -> Duration {
    (deadline.saturating_duration_since(Instant::now()) / 8).min(Duration::from_secs(10))
}

/// What a failed run leaves in force.
fn kept_in_force(kept: Option<&str>) -> String {
    match kept {
        Some(version) => format!("nothing was published: snapshot {version} stays in force"),
        None => "nothing was published, and no published snapshot was found: flows are not judged until one is".to_string(),
    }
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct SyncSummary {
    /// The snapshot built.
    pub snapshot_version: String,
    /// The `latest` before the run (empty when none).
    pub previous_version: String,
    /// Whether the snapshot differed from `latest` (and was published).
    pub published: bool,
    /// Rules in the snapshot.
    pub rules: usize,
    /// Rule changes by kind.
    pub changes: BTreeMap<&'static str, usize>,
    /// Hygiene findings by kind.
    pub hygiene: BTreeMap<&'static str, usize>,
    /// Rules the hygiene analysis reached, from the top; less than `rules` when it stopped at
    /// its budget (the findings it made are exact; the rules after are reported undecided).
    pub hygiene_analysed: usize,
    /// Why the analysis stopped before the last rule: `time` (to leave time to publish) or
    /// `memory` (a quarter of the function's memory); absent when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hygiene_stopped: Option<Stopped>,
    /// Unused rules (uuids), when the report ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unused: Option<Vec<String>>,
    /// Why the unused report did not run, if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unused_error: Option<String>,
    /// Records written per destination.
    pub written: BTreeMap<String, usize>,
    /// Field values cut to the sink's limit (CLS: 1 MB a value), each marked in its record's
    /// `truncated_fields`.
    pub truncated_values: usize,
    /// Alerting.
    pub alerts: DispatchReport,
    /// How many warnings the snapshot carries (items the importer could not read, references
    /// it could not resolve).
    pub warning_count: usize,
    /// Snapshot warnings.
    pub warnings: Vec<String>,
    /// Where snapshots are published.
    pub store: String,
    /// Wall time, milliseconds.
    pub elapsed_ms: u64,
}

/// The sync function.
pub struct SyncFunction {
    config: SyncConfig,
    client: ApiClient,
    store: Box<dyn SnapshotStore>,
    sink: Box<dyn RecordSink>,
    hits: Option<(ApiClient, String)>,
    alerts: tokio::sync::Mutex<Dispatcher>,
}

impl SyncFunction {
    /// Builds the function from its configuration.
    pub fn new(config: SyncConfig) -> Result<Self, String> {
        let client = ApiClient::new(&config.region, config.api_endpoint.clone())
            .with_domain(&config.api_domain);
        let store = config.snapshot.store()?;
        let sink = config.sink.open().map_err(|e| e.to_string())?;
        let hits = match &config.sink {
            SinkConfig::Cls(cls) if config.unused_days > 0 => Some((
                ApiClient::new(&cls.region, Some(cls.endpoint.clone())),
                cls.hits_topic.clone(),
            )),
            _ => None,
        };
        let alerts = Dispatcher::new(
            config.alerts.policy.clone(),
            Robot::all(&config.alerts.channels),
            Box::new(MemoryState::default()),
        );
        Ok(Self {
            config,
            client,
            store,
            sink,
            hits,
            alerts: tokio::sync::Mutex::new(alerts),
        })
    }

    /// One run, finishing before `deadline`, in `memory_mb` of memory (0: not known, the
    /// deployed memory). The listings' pages may hold a quarter of it, and so may the hygiene
    /// analysis.
    pub async fn run(&self, deadline: Instant, memory_mb: u32) -> Result<SyncSummary, SyncError> {
        let started = Instant::now();
        let now = chrono::Utc::now();
        let taken_at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let memory = if memory_mb == 0 {
            Function::Sync.deployed_memory_mb()
        } else {
            memory_mb
        };
        let page_bytes = quarter_of(memory);
        // The listings stop early enough to report which of them were slow; the rest of the
        // run (store, records, alerts) has the time kept back.
        let listings_until = deadline - reserve(deadline);
        let built = build_live(
            &self.client,
            &self.config.live,
            &taken_at,
            page_bytes,
            listings_until,
        )
        .await;
        let snapshot = match built {
            Ok(snapshot) => snapshot,
            Err(error) => {
                let stopped = (Instant::now() + Duration::from_millis(100) >= listings_until)
                    .then(|| self.client.slowest());
                return Err(self.not_built(error, stopped, deadline).await);
            }
        };
        // The pointer alone says whether anything changed; the previous snapshot itself is read
        // only when it did, for the diff.
        let pointed = self.store.latest_version(deadline).await?;
        let previous = match &pointed {
            Some(published) if published.version != snapshot.version => {
                match self.store.latest(None, deadline).await? {
                    Latest::Found { snapshot, .. } => Some(*snapshot),
                    Latest::Missing | Latest::Unchanged | Latest::Compiled { .. } => None,
                }
            }
            _ => None,
        };
        let previous_version = pointed
            .as_ref()
            .map(|published| published.version.clone())
            .unwrap_or_default();
        let (unused, unused_error) = match self.unused_rules(&snapshot, deadline).await {
            Ok(unused) => (unused, None),
            Err(err) => {
                tracing::warn!(error = %err, "unused-rule report failed");
                (None, Some(err.to_string()))
            }
        };
        let mut summary = SyncSummary {
            snapshot_version: snapshot.version.clone(),
            previous_version: previous_version.clone(),
            published: false,
            rules: snapshot.rules.len(),
            changes: BTreeMap::new(),
            hygiene: BTreeMap::new(),
            hygiene_analysed: 0,
            hygiene_stopped: None,
            unused: unused.clone(),
            unused_error,
            written: BTreeMap::new(),
            truncated_values: 0,
            alerts: DispatchReport::default(),
            warning_count: snapshot.warnings.len(),
            warnings: snapshot.warnings.clone(),
            store: self.store.describe(),
            elapsed_ms: 0,
        };
        if previous_version == snapshot.version {
            if pointed.is_some_and(|published| published.image_missing) {
                // Published by another build (or before images): this build's functions would
                // compile it at every cold start until the rules change.
                let engine =
                    Engine::compile(&snapshot).map_err(|e| SyncError::Compile(e.to_string()))?;
                self.store.publish(&snapshot, &engine, deadline).await?;
                tracing::info!(version = %snapshot.version, "rules unchanged; the engine image published for this build");
            }
            tracing::info!(version = %snapshot.version, "rules unchanged; nothing written");
            summary.elapsed_ms = started.elapsed().as_millis() as u64;
            return Ok(summary);
        }
        // Only a snapshot about to be published needs compiling: to prove the functions can
        // load it, and for the hygiene analysis.
        let engine = Engine::compile(&snapshot).map_err(|e| SyncError::Compile(e.to_string()))?;
        let time = now.timestamp().max(0) as u64;
        let mut records: Vec<Record> = match &previous {
            Some(previous) => change_records(previous, &snapshot, time)
                .into_iter()
                .map(|c| Record::RuleChange(Box::new(c)))
                .collect(),
            None => Vec::new(),
        };
        for record in &records {
            if let Record::RuleChange(c) = record {
                *summary.changes.entry(c.change).or_default() += 1;
            }
        }
        // Hygiene may use the time until the reserve the rest of the run needs; past it the
        // snapshot is published with the findings so far rather than the run being killed.
        let reserve = HYGIENE_RESERVE.min(deadline.saturating_duration_since(Instant::now()) / 4);
        let stop = deadline.checked_sub(reserve).unwrap_or_else(Instant::now);
        let budget = Budget {
            until: Some(stop),
            bytes: quarter_of(memory),
        };
        let (hygiene, analysed, stopped) =
            hygiene_records(&engine, &snapshot, unused.as_deref(), time, budget);
        summary.hygiene_analysed = analysed;
        summary.hygiene_stopped = stopped;
        if let Some(stopped) = stopped {
            tracing::warn!(
                analysed,
                rules = snapshot.rules.len(),
                ?stopped,
                "rule hygiene stopped at its budget: the rules after are reported undecided"
            );
        }
        for record in &hygiene {
            if let Record::RuleHygiene(h) = record {
                *summary.hygiene.entry(h.finding).or_default() += 1;
            }
        }
        records.extend(hygiene);
        if !records.is_empty() {
            let written = self.sink.write(&records, deadline).await?;
            summary.written = written.records;
            summary.truncated_values = written.truncated_values;
        }
        self.store.publish(&snapshot, &engine, deadline).await?;
        summary.published = true;
        tracing::info!(from = %previous_version, to = %snapshot.version, rules = snapshot.rules.len(), "snapshot published");
        summary.alerts = self
            .alerts
            .lock()
            .await
            .dispatch(&records, SystemTime::now(), deadline)
            .await;
        summary.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(summary)
    }

    /// The error of a run whose snapshot could not be built, naming the snapshot that stays in
    /// force, after the rule-change alert saying so (when rule changes are alerted).
    async fn not_built(
        &self,
        error: LiveError,
        stopped: Option<String>,
        deadline: Instant,
    ) -> SyncError {
        tracing::error!(%error, "the snapshot could not be built; nothing is published");
        let kept = self
            .store
            .latest_version(deadline)
            .await
            .unwrap_or_else(|err| {
                tracing::warn!(error = %err, "the snapshot pointer could not be read either");
                None
            })
            .map(|published| published.version);
        let what = match &error {
            LiveError::Api(api) => format!("{} could not be read ({})", api.action, api.code),
            LiveError::Import(_) => "the rule listings could not be imported".to_string(),
        };
        let time = chrono::Utc::now().timestamp().max(0) as u64;
        let mut alerts = self.alerts.lock().await;
        let details = vec![
            format!("{error}{}", stopped_early(stopped.as_deref())),
            kept_in_force(kept.as_deref()),
        ];
        if let Some(alert) = rules_not_read(&what, details, kept.as_deref(), time, &alerts.policy) {
            let report = alerts.send(&[alert], SystemTime::now(), deadline).await;
            tracing::info!(sent = report.sent_total(), "rules-not-read alert");
        }
        SyncError::Build {
            error,
            stopped,
            kept,
        }
    }

    /// Rules with no `rule_hits` in the window; `None` when no hits topic is configured.
    async fn unused_rules(
        &self,
        snapshot: &Snapshot,
        deadline: Instant,
    ) -> Result<Option<Vec<String>>, ApiError> {
        let Some((client, topic)) = &self.hits else {
            return Ok(None);
        };
        let until = chrono::Utc::now().timestamp_millis();
        let from = until - self.config.unused_days as i64 * 86_400_000;
        let rows = all_rows(client, topic, USED_RULES_QUERY, from, until, deadline).await?;
        let used: BTreeSet<String> = rows
            .iter()
            .filter(|row| number(row, "hits").unwrap_or(0) > 0)
            .filter_map(|row| row.get("rule_uuid")?.as_str().map(str::to_string))
            .collect();
        Ok(Some(
            snapshot
                .rules
                .iter()
                .filter(|r| r.enabled && !used.contains(&r.uuid))
                .map(|r| r.uuid.clone())
                .collect(),
        ))
    }
}

/// Time a run keeps for writing records, publishing and alerting after the hygiene analysis (at
/// most a quarter of the time it has left).
pub(crate) const HYGIENE_RESERVE: std::time::Duration = std::time::Duration::from_secs(20);

/// Hygiene findings as records, analysing until `stop`; and how many rules (from the top) the
/// analysis reached.
pub(crate) fn hygiene_records(
    engine: &Engine,
    snapshot: &Snapshot,
    unused: Option<&[String]>,
    time: u64,
    budget: Budget,
) -> (Vec<Record>, usize, Option<Stopped>) {
    let record = |finding: &'static str, uuid: &str, covering: Vec<String>, detail: String| {
        let rule = engine
            .rules()
            .iter()
            .find(|r| r.rule.uuid == uuid)
            .map(|r| &r.rule);
        Record::RuleHygiene(Box::new(RuleHygieneRecord {
            record_type: RecordType::RuleHygiene,
            record_id: RecordId::new("rule_hygiene")
                .text(finding)
                .text(uuid)
                .text(&snapshot.version)
                .finish(),
            time,
            finding,
            rule_uuid: uuid.to_string(),
            rule_order: rule.map_or(0, |r| r.order),
            rule_action: rule.map_or(crate::core::snapshot::RuleAction::Unknown, |r| r.action),
            rule_description: rule.map(|r| r.description.clone()).unwrap_or_default(),
            covering_rules: (!covering.is_empty()).then(|| covering.join(",")),
            detail,
            snapshot_version: snapshot.version.clone(),
        }))
    };
    let analysis = analyze_until(engine, budget);
    let (analysed, stopped) = (analysis.analysed, analysis.stopped);
    let mut records: Vec<Record> = analysis
        .findings
        .into_iter()
        .map(|f| {
            let name = match f.finding {
                Finding::Shadowed => "shadowed",
                Finding::Redundant => "redundant",
                // Fields the importer could not read, or a delayed dispatch (`Rule::doubt`).
                Finding::Unresolvable if engine.rule(f.rule).doubt.is_some() => "unreadable",
                Finding::Unresolvable => "unresolvable",
                Finding::Undecided => "undecided",
            };
            record(name, &f.uuid, f.covering, f.detail)
        })
        .collect();
    // The rules the analysis did not reach are undecided, saying why and what would help.
    if let Some(stopped) = stopped {
        let detail = match stopped {
            Stopped::Memory => format!(
                "the analysis stopped at its memory budget ({} MiB) before this rule: give the sync function more memory (template.yaml MemorySize)",
                budget.bytes >> 20
            ),
            Stopped::Time => "the analysis stopped to leave time to publish before this rule: give the sync function a longer timeout".to_string(),
        };
        for compiled in &engine.rules()[analysed..] {
            if compiled.rule.in_effect() {
                records.push(record(
                    "undecided",
                    &compiled.rule.uuid,
                    Vec::new(),
                    detail.clone(),
                ));
            }
        }
    }
    for uuid in unused.unwrap_or_default() {
        records.push(record(
            "unused",
            uuid,
            Vec::new(),
            "no hits recorded in the report window".to_string(),
        ));
    }
    (records, analysed, stopped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::snapshot::build_from_documents;
    use serde_json::json;

    /// Out of time or memory, the analysis stops and says how far it got and why; the records
    /// are the findings it made, and every rule it did not reach is `undecided`, saying why.
    #[test]
    fn hygiene_out_of_budget_reports_the_rest_undecided() {
        let snapshot = crate::core::snapshot::fixtures::sample(0);
        let engine = Engine::compile(&snapshot).unwrap();
        let in_effect = engine.rules().iter().filter(|r| r.rule.in_effect()).count();
        let undecided = |records: &[Record]| {
            records
                .iter()
                .filter_map(|r| match r {
                    Record::RuleHygiene(h) if h.finding == "undecided" => Some(h.detail.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let out_of_time = Budget {
            until: Some(Instant::now()),
            bytes: usize::MAX,
        };
        let (records, analysed, stopped) =
            hygiene_records(&engine, &snapshot, None, 1, out_of_time);
        assert_eq!((analysed, stopped), (0, Some(Stopped::Time)));
        assert_eq!(undecided(&records).len(), in_effect);
        assert_eq!(records.len(), in_effect);
        let out_of_memory = Budget {
            until: None,
            bytes: 1,
        };
        let (records, analysed, stopped) =
            hygiene_records(&engine, &snapshot, None, 1, out_of_memory);
        assert_eq!(stopped, Some(Stopped::Memory));
        assert!(analysed < snapshot.rules.len());
        let details = undecided(&records);
        assert!(!details.is_empty());
        assert!(
            details.iter().all(|d| d.contains("memory budget")),
            "{details:?}"
        );
        let (records, analysed, stopped) =
            hygiene_records(&engine, &snapshot, None, 1, Budget::unlimited());
        assert_eq!((analysed, stopped), (snapshot.rules.len(), None));
        assert!(!records.is_empty() && undecided(&records).is_empty());
    }

    /// A rule the importer could not read, or whose dispatch is delayed, is reported
    /// `unreadable`; one whose reference does not resolve stays `unresolvable`.
    #[test]
    fn unreadable_rules_get_their_own_finding() {
        let rule = |id: &str, action: &str, dest_type: &str, dest: &str| {
            json!({"Id": id, "OrderIndex": id, "RuleAction": action, "SourceType": "net", "SourceContent": "10.0.0.0/8",
                   "DestType": dest_type, "DestContent": dest, "Protocol": "TCP", "Port": "80"})
        };
        let snapshot = build_from_documents(
            &[
                (
                    "rules".to_string(),
                    json!({"Rules": [
                        rule("1", "reject", "net", "10.1.0.0/16"),
                        rule("2", "drop", "template", "ipm-missing"),
                    ]}),
                ),
                (
                    "list".to_string(),
                    json!({"Data": [{"RuleUuid": 3, "OrderIndex": 3, "SourceId": "10.0.0.0/8", "SourceType": 0,
                        "TargetId": "10.2.0.0/16", "TargetType": 0, "Protocol": "TCP", "Port": "80", "Strategy": 1, "IsDelay": 1}]}),
                ),
            ],
            "t",
        )
        .unwrap();
        let engine = Engine::compile(&snapshot).unwrap();
        let mut findings: Vec<(String, &str)> =
            hygiene_records(&engine, &snapshot, None, 1, Budget::unlimited())
                .0
                .iter()
                .filter_map(|r| match r {
                    Record::RuleHygiene(h) => Some((h.rule_uuid.clone(), h.finding)),
                    _ => None,
                })
                .collect();
        findings.sort();
        assert_eq!(
            findings,
            [
                ("1".to_string(), "unreadable"),
                ("2".to_string(), "unresolvable"),
                ("3".to_string(), "unreadable"),
            ]
        );
    }
}
