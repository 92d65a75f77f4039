//! Every setting esgflow reads, in one registry, and typed readers that validate them.
//!
//! Settings come from the environment (SCF passes them as function environment variables). The
//! registry [`SETTINGS`] is the single list docs/configuration.md's table and `template.yaml`
//! are checked against; code reads a setting only through its [`Setting`] constant, so nothing
//! can be read that is not registered.

use std::fmt;

/// Which function reads a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    /// The CLS-triggered audit function.
    Audit,
    /// The HTTP-triggered lookup function.
    Lookup,
    /// The timer-triggered sync function.
    Sync,
}

impl Function {
    /// Every function.
    pub const ALL: &'static [Function] = &[Function::Audit, Function::Lookup, Function::Sync];

    /// Its memory as deployed (template.yaml `MemorySize`), MB.
    pub const fn deployed_memory_mb(self) -> u32 {
        match self {
            Function::Audit => 64,
            Function::Lookup => 128,
            Function::Sync => 256,
        }
    }

    /// The largest snapshot object it reads: a quarter of its deployed memory (the parsed
    /// snapshot and its engine take a multiple of the text).
    pub const fn max_snapshot_bytes(self) -> usize {
        quarter_of(self.deployed_memory_mb())
    }

    /// The function named `name` (as [`Function::name`] gives it).
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// The function's name as in `template.yaml` and `functions/`.
    pub fn name(self) -> &'static str {
        match self {
            Function::Audit => "audit",
            Function::Lookup => "lookup",
            Function::Sync => "sync",
        }
    }
}

/// A quarter of `memory_mb` MB, in bytes: what one of a function's large holdings (a snapshot
/// read, a sync run's listing pages, its hygiene analysis) may take.
pub const fn quarter_of(memory_mb: u32) -> usize {
    (memory_mb as usize) << 20 >> 2
}

/// One setting: its environment variable, default, readers and meaning.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The environment variable.
    pub name: &'static str,
    /// The value used when the variable is unset or empty.
    pub default: Option<&'static str>,
    /// The functions that read it.
    pub functions: &'static [Function],
    /// One line for docs/configuration.md.
    pub description: &'static str,
}

/// `RUST_LOG`: the log filter.
pub const RUST_LOG: Setting = Setting {
    name: "RUST_LOG",
    default: Some("info"),
    functions: Function::ALL,
    description: "Log filter in tracing's EnvFilter syntax, e.g. `info` or `esgflow=debug,info`.",
};

/// `ESGFLOW_LOG_FORMAT`: `text` or `json` log lines.
pub(crate) const LOG_FORMAT: Setting = Setting {
    name: "ESGFLOW_LOG_FORMAT",
    default: Some("text"),
    functions: Function::ALL,
    description: "Log line format on stdout: `text` (one compact line per event) or `json` (one JSON object per line).",
};

/// `ESGFLOW_MAX_DECODED_BYTES`: cap on a decompressed CLS batch.
pub(crate) const MAX_DECODED_BYTES: Setting = Setting {
    name: "ESGFLOW_MAX_DECODED_BYTES",
    default: Some("16777216"),
    functions: &[Function::Audit],
    description: "Largest decompressed CLS batch accepted, in bytes (1024 to 67108864); a larger one (a decompression bomb) fails the invocation with a clear error.",
};

/// The largest `ESGFLOW_MAX_DECODED_BYTES` accepted: 64 MiB.
pub(crate) const MAX_DECODED_BYTES_CEILING: usize = 64 * 1024 * 1024;

/// `ESGFLOW_SNAPSHOT`: where the rule snapshot is.
pub(crate) const SNAPSHOT: Setting = Setting {
    name: "ESGFLOW_SNAPSHOT",
    default: None,
    functions: Function::ALL,
    description: "Where the rule snapshot is: a path or `file:///path.json` (one file), `dir:///path` (a directory of versions with `latest.json`), or `cos://<bucket>-<appid>/<prefix>?region=<region>` (COS, as the sync function publishes it). Required.",
};

/// `ESGFLOW_COS_ENDPOINT`: the COS endpoint override.
pub(crate) const COS_ENDPOINT: Setting = Setting {
    name: "ESGFLOW_COS_ENDPOINT",
    default: None,
    functions: Function::ALL,
    description: "Replaces `https://<bucket>.cos.<region>.myqcloud.com` for a `cos://` snapshot location (a test server, or a private endpoint).",
};

/// `ESGFLOW_SNAPSHOT_TTL_SECONDS`: how long a warm instance trusts its snapshot.
pub(crate) const SNAPSHOT_TTL_SECONDS: Setting = Setting {
    name: "ESGFLOW_SNAPSHOT_TTL_SECONDS",
    default: Some("300"),
    functions: &[Function::Audit, Function::Lookup],
    description: "Seconds a warm instance uses its loaded snapshot before re-reading it; a failed re-read keeps the last good one.",
};

/// `ESGFLOW_MONITORED_VPCS`: which VPCs are monitored.
pub(crate) const MONITORED_VPCS: Setting = Setting {
    name: "ESGFLOW_MONITORED_VPCS",
    default: None,
    functions: &[Function::Audit, Function::Sync, Function::Lookup],
    description: "Comma-separated VPC ids to monitor; flows touching none of them are skipped. Empty: every VPC. Per-VPC monitoring switches (changed through lookup's PUT /v1/vpcs/{id}/monitoring) override it. An id the snapshot does not have is reported (audit summary and log, lookup's /v1/vpcs, snapshot warning).",
};

/// `ESGFLOW_CLS_TOPIC_ID`: CLS topic for hit records.
pub(crate) const CLS_TOPIC_ID: Setting = Setting {
    name: "ESGFLOW_CLS_TOPIC_ID",
    default: None,
    functions: Function::ALL,
    description: "CLS topic for hit records (block_hit, observe_hit, unattributed_block, snapshot_drift, rule_hits from audit; rule_change, rule_hygiene from sync). lookup's /v1/hits searches it, sync's unused-rule report sums its rule_hits.",
};

/// `ESGFLOW_RECORDS_DB`: the local records database lookup searches.
pub(crate) const RECORDS_DB: Setting = Setting {
    name: "ESGFLOW_RECORDS_DB",
    default: None,
    functions: &[Function::Lookup],
    description: "An SQLite records database (filled by `esgflow replay --store`) that lookup searches instead of the CLS hits topic; `esgflow serve --store` sets it. For running on one machine; not with ESGFLOW_CLS_TOPIC_ID.",
};

/// `ESGFLOW_CLS_TRAFFIC_TOPIC_ID`: CLS topic for traffic records.
pub(crate) const CLS_TRAFFIC_TOPIC_ID: Setting = Setting {
    name: "ESGFLOW_CLS_TRAFFIC_TOPIC_ID",
    default: None,
    functions: &[Function::Audit, Function::Lookup],
    description: "CLS topic for traffic records (audit writes them, lookup's /v1/traffic reads them). Empty: the ESGFLOW_CLS_TOPIC_ID topic.",
};

/// `ESGFLOW_CLS_ENDPOINT`: the CLS API endpoint.
pub(crate) const CLS_ENDPOINT: Setting = Setting {
    name: "ESGFLOW_CLS_ENDPOINT",
    default: Some("https://cls.tencentcloudapi.com"),
    functions: Function::ALL,
    description: "CLS API 3.0 endpoint: the public one, `https://cls.internal.tencentcloudapi.com` from inside Tencent Cloud, or a test server.",
};

/// `ESGFLOW_JSONL_PATH`: JSONL output file when no CLS topic is set.
pub(crate) const JSONL_PATH: Setting = Setting {
    name: "ESGFLOW_JSONL_PATH",
    default: None,
    functions: &[Function::Audit, Function::Sync],
    description: "Append records as JSON lines to this file when no CLS topic is set (on SCF only /tmp is writable). Neither set: records go to stdout.",
};

/// `TENCENTCLOUD_REGION`: the region (set by SCF).
pub(crate) const REGION: Setting = Setting {
    name: "TENCENTCLOUD_REGION",
    default: None,
    functions: Function::ALL,
    description: "Region for API calls (`X-TC-Region`); SCF sets it.",
};

macro_rules! alert_setting {
    ($(#[$doc:meta])* $constant:ident, $name:literal, $default:expr, $description:literal) => {
        $(#[$doc])*
        pub const $constant: Setting = Setting { name: $name, default: $default, functions: &[Function::Audit, Function::Sync], description: $description };
    };
}

macro_rules! audit_setting {
    ($(#[$doc:meta])* $constant:ident, $name:literal, $default:expr, $description:literal) => {
        $(#[$doc])*
        pub const $constant: Setting = Setting { name: $name, default: $default, functions: &[Function::Audit], description: $description };
    };
}

alert_setting!(
    /// WeCom robot URL.
    ALERT_WECOM_URL, "ESGFLOW_ALERT_WECOM_URL", None,
    "WeCom group robot webhook URL (`https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…`); a secret."
);
alert_setting!(
    /// DingTalk robot URL.
    ALERT_DINGTALK_URL, "ESGFLOW_ALERT_DINGTALK_URL", None,
    "DingTalk robot URL (`https://oapi.dingtalk.com/robot/send?access_token=…`); a secret."
);
alert_setting!(
    /// DingTalk signing secret.
    ALERT_DINGTALK_SECRET, "ESGFLOW_ALERT_DINGTALK_SECRET", None,
    "DingTalk robot signing secret (`SEC…`), for 加签."
);
alert_setting!(
    /// Feishu bot URL.
    ALERT_FEISHU_URL, "ESGFLOW_ALERT_FEISHU_URL", None,
    "Feishu/Lark custom bot URL (`https://open.feishu.cn/open-apis/bot/v2/hook/…`); a secret."
);
alert_setting!(
    /// Feishu signing secret.
    ALERT_FEISHU_SECRET, "ESGFLOW_ALERT_FEISHU_SECRET", None,
    "Feishu/Lark signature-verification secret."
);
alert_setting!(
    /// Generic webhook URL.
    ALERT_WEBHOOK_URL, "ESGFLOW_ALERT_WEBHOOK_URL", None,
    "Generic webhook URL: receives the alert and its records as JSON."
);
alert_setting!(
    /// Generic webhook secret.
    ALERT_WEBHOOK_SECRET, "ESGFLOW_ALERT_WEBHOOK_SECRET", None,
    "Secret for `X-Esgflow-Signature: sha256=<hex HMAC-SHA256 of the body>`."
);
alert_setting!(
    /// Record types that alert.
    ALERT_KINDS, "ESGFLOW_ALERT_KINDS", Some("block_hit"),
    "Comma-separated record types that raise alerts: block_hit, observe_hit, unattributed_block, snapshot_drift (audit), rule_change (sync: one message per snapshot change)."
);
audit_setting!(
    /// Minimum flows per rule per batch.
    ALERT_MIN_FLOWS, "ESGFLOW_ALERT_MIN_FLOWS", Some("1"),
    "Fewest flows of one rule in one batch before it alerts."
);
audit_setting!(
    /// Cooldown per rule.
    ALERT_COOLDOWN_SECONDS, "ESGFLOW_ALERT_COOLDOWN_SECONDS", Some("900"),
    "No repeat alert for the same rule within this many seconds ..."
);
audit_setting!(
    /// Regrowth factor that breaks the cooldown.
    ALERT_REGROW_FACTOR, "ESGFLOW_ALERT_REGROW_FACTOR", Some("2"),
    "... unless its flow count reached this many times the last alerted count."
);
audit_setting!(
    /// Where cooldown state lives.
    ALERT_STATE, "ESGFLOW_ALERT_STATE", Some("memory"),
    "Cooldown state: `memory` (per warm instance) or a Redis URL `redis://[:password@]host:port[/db]` (shared by all instances, survives cold starts)."
);
alert_setting!(
    /// The console's address, linked from alerts.
    CONSOLE_URL, "ESGFLOW_CONSOLE_URL", None,
    "The console's public address (the lookup function's Function URL, or where `esgflow serve` is reachable). Alerts about flows then carry a link that explains their top flow there. Empty: no link."
);
audit_setting!(
    /// Muted rule ids.
    ALERT_MUTE_RULES, "ESGFLOW_ALERT_MUTE_RULES", None,
    "Comma-separated rule uuids that never alert."
);
audit_setting!(
    /// Muted description patterns.
    ALERT_MUTE_DESCRIPTIONS, "ESGFLOW_ALERT_MUTE_DESCRIPTIONS", None,
    "Comma-separated text; rules whose description contains any of it (case-insensitive) never alert."
);

/// `ESGFLOW_API_ENDPOINT`: override of the cfw/vpc API endpoints.
pub(crate) const API_ENDPOINT: Setting = Setting {
    name: "ESGFLOW_API_ENDPOINT",
    default: None,
    functions: &[Function::Sync],
    description: "Replaces `https://<service>.tencentcloudapi.com` for the cfw and vpc API calls (a test server). Empty: the public endpoints.",
};

/// `ESGFLOW_API_DOMAIN`: the API 3.0 domain of the account's site.
pub(crate) const API_DOMAIN: Setting = Setting {
    name: "ESGFLOW_API_DOMAIN",
    default: Some("tencentcloudapi.com"),
    functions: &[Function::Sync],
    description: "The API 3.0 domain the cfw, vpc and cvm calls go to (`https://<service>.<domain>`): `intl.tencentcloudapi.com` for an account of the international site (deploy parameter SITE).",
};

/// `ESGFLOW_TEMPLATE_REGION`: where ESG address/service templates live.
pub(crate) const TEMPLATE_REGION: Setting = Setting {
    name: "ESGFLOW_TEMPLATE_REGION",
    default: Some("ap-guangzhou"),
    functions: &[Function::Sync],
    description: "Region whose VPC address and service templates ESG rules refer to (the ESG documentation says ap-guangzhou templates).",
};

/// `ESGFLOW_OLD_ESG`: whether to read the old ESG's rules.
pub(crate) const OLD_ESG: Setting = Setting {
    name: "ESGFLOW_OLD_ESG",
    default: Some("true"),
    functions: &[Function::Sync],
    description: "Also read the old ESG's rules (`DescribeSecurityGroupList`, both directions): `true` or `false`.",
};

/// `ESGFLOW_OLD_ESG_REGIONS`: the regions whose old-ESG rules are read.
pub(crate) const OLD_ESG_REGIONS: Setting = Setting {
    name: "ESGFLOW_OLD_ESG_REGIONS",
    default: None,
    functions: &[Function::Sync],
    description: "Comma-separated regions whose old-ESG rules are read (`DescribeSecurityGroupList` takes one `Area` per call); rules carry their region. Empty: the function's own region (TENCENTCLOUD_REGION).",
};

/// `ESGFLOW_UNUSED_DAYS`: the window of the unused-rules report.
pub(crate) const UNUSED_DAYS: Setting = Setting {
    name: "ESGFLOW_UNUSED_DAYS",
    default: Some("30"),
    functions: &[Function::Sync],
    description: "Rules with no `rule_hits` in the hits topic over this many days are reported unused (needs ESGFLOW_CLS_TOPIC_ID; 0 turns the report off).",
};

/// `ESGFLOW_ADMIN_TOKEN`: the token that may change the monitoring switches.
pub const ADMIN_TOKEN: Setting = Setting {
    name: "ESGFLOW_ADMIN_TOKEN",
    default: None,
    functions: &[Function::Lookup],
    description: "Bearer token that may change the per-VPC monitoring switches (PUT /v1/vpcs/{id}/monitoring); a secret, at least 16 characters, not the lookup token. Empty: the switches can be read but not changed.",
};

/// `ESGFLOW_LOOKUP_TOKEN`: the bearer token of the lookup API.
pub const LOOKUP_TOKEN: Setting = Setting {
    name: "ESGFLOW_LOOKUP_TOKEN",
    default: None,
    functions: &[Function::Lookup],
    description: "Bearer token the lookup API requires (`Authorization: Bearer <token>`); a secret. Required unless ESGFLOW_LOOKUP_AUTH=apigw.",
};

/// `ESGFLOW_LOOKUP_AUTH`: who authenticates lookup requests.
pub(crate) const LOOKUP_AUTH: Setting = Setting {
    name: "ESGFLOW_LOOKUP_AUTH",
    default: Some("token"),
    functions: &[Function::Lookup],
    description: "`token`: the function checks ESGFLOW_LOOKUP_TOKEN; `apigw`: the deployment declares API Gateway authentication and the function checks nothing itself.",
};

/// `ESGFLOW_LOOKUP_MAX_BODY_BYTES`: request body cap.
pub(crate) const LOOKUP_MAX_BODY_BYTES: Setting = Setting {
    name: "ESGFLOW_LOOKUP_MAX_BODY_BYTES",
    default: Some("1048576"),
    functions: &[Function::Lookup],
    description: "Largest request body the lookup API accepts; larger ones get 413.",
};

/// The registry: every setting the code reads.
pub const SETTINGS: &[Setting] = &[
    RUST_LOG,
    LOG_FORMAT,
    MAX_DECODED_BYTES,
    SNAPSHOT,
    SNAPSHOT_TTL_SECONDS,
    COS_ENDPOINT,
    MONITORED_VPCS,
    CLS_TOPIC_ID,
    CLS_TRAFFIC_TOPIC_ID,
    RECORDS_DB,
    CLS_ENDPOINT,
    JSONL_PATH,
    REGION,
    ALERT_WECOM_URL,
    ALERT_DINGTALK_URL,
    ALERT_DINGTALK_SECRET,
    ALERT_FEISHU_URL,
    ALERT_FEISHU_SECRET,
    ALERT_WEBHOOK_URL,
    ALERT_WEBHOOK_SECRET,
    ALERT_KINDS,
    ALERT_MIN_FLOWS,
    ALERT_COOLDOWN_SECONDS,
    ALERT_REGROW_FACTOR,
    ALERT_MUTE_RULES,
    ALERT_MUTE_DESCRIPTIONS,
    ALERT_STATE,
    CONSOLE_URL,
    LOOKUP_TOKEN,
    LOOKUP_AUTH,
    ADMIN_TOKEN,
    LOOKUP_MAX_BODY_BYTES,
    API_ENDPOINT,
    API_DOMAIN,
    TEMPLATE_REGION,
    OLD_ESG,
    OLD_ESG_REGIONS,
    UNUSED_DAYS,
];

/// The lookup function's configuration.
#[derive(Debug, Clone)]
pub struct LookupConfig {
    /// Authentication.
    pub auth: crate::app::lookup::Auth,
    /// Body cap.
    pub max_body_bytes: usize,
    /// Where the snapshot is.
    pub snapshot: SnapshotSource,
    /// How long a loaded snapshot is trusted.
    pub snapshot_ttl: std::time::Duration,
    /// Where records are searched, when a hits topic or a local database is configured.
    pub records: Option<crate::app::records_store::RecordsSource>,
    /// `ESGFLOW_MONITORED_VPCS`, shown beside the switches.
    pub monitored: crate::core::classify::Monitored,
    /// `ESGFLOW_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
}

impl LookupConfig {
    /// Reads and validates the lookup settings from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads and validates through `lookup`.
    pub(crate) fn from_lookup(
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let auth = match LOOKUP_AUTH.raw_from(lookup).unwrap_or_default().trim() {
            "apigw" => crate::app::lookup::Auth::ApiGateway,
            "token" => match LOOKUP_TOKEN.raw_from(lookup) {
                Some(token) if token.trim().len() >= 16 => crate::app::lookup::Auth::Bearer(token.trim().to_string()),
                Some(_) => return Err(ConfigError { setting: LOOKUP_TOKEN.name, value: String::new(), problem: "must be at least 16 characters".to_string() }),
                None => return Err(ConfigError { setting: LOOKUP_TOKEN.name, value: String::new(), problem: "required: the lookup API refuses to serve without authentication (or set ESGFLOW_LOOKUP_AUTH=apigw)".to_string() }),
            },
            other => return Err(ConfigError { setting: LOOKUP_AUTH.name, value: other.to_string(), problem: "must be `token` or `apigw`".to_string() }),
        };
        use crate::app::records_store::RecordsSource;
        let records = match (CLS_TOPIC_ID.raw_from(lookup), RECORDS_DB.raw_from(lookup)) {
            (Some(_), Some(path)) => {
                return Err(ConfigError {
                    setting: RECORDS_DB.name,
                    value: path,
                    problem: format!(
                        "cannot be used with {}: lookup searches one records store",
                        CLS_TOPIC_ID.name
                    ),
                })
            }
            (Some(topic), None) => Some(RecordsSource::Cls(
                crate::adapters::tencent::cls_query::ClsRecords {
                    client: crate::adapters::tencent::api::ApiClient::new(
                        &required(&REGION, lookup)?,
                        CLS_ENDPOINT.raw_from(lookup),
                    ),
                    traffic_topic: CLS_TRAFFIC_TOPIC_ID
                        .raw_from(lookup)
                        .map_or_else(|| topic.trim().to_string(), |t| t.trim().to_string()),
                    topic: topic.trim().to_string(),
                },
            )),
            (None, Some(path)) => Some(RecordsSource::Local(path.trim().into())),
            (None, None) => None,
        };
        let admin_token = match ADMIN_TOKEN.raw_from(lookup).map(|t| t.trim().to_string()) {
            None => None,
            Some(token) if token.len() < 16 => {
                return Err(ConfigError {
                    setting: ADMIN_TOKEN.name,
                    value: String::new(),
                    problem: "must be at least 16 characters".to_string(),
                })
            }
            Some(token) if matches!(&auth, crate::app::lookup::Auth::Bearer(t) if *t == token) => {
                return Err(ConfigError {
                    setting: ADMIN_TOKEN.name,
                    value: String::new(),
                    problem: format!("must differ from {}", LOOKUP_TOKEN.name),
                })
            }
            Some(token) => Some(token),
        };
        Ok(Self {
            records,
            monitored: monitored_from(lookup),
            admin_token,
            auth,
            max_body_bytes: LOOKUP_MAX_BODY_BYTES.parse_from(lookup)?.unwrap_or(1 << 20),
            snapshot: SnapshotSource::from_lookup(lookup, Function::Lookup)?,
            snapshot_ttl: std::time::Duration::from_secs(
                SNAPSHOT_TTL_SECONDS.parse_from(lookup)?.unwrap_or(300),
            ),
        })
    }
}

/// `ESGFLOW_MONITORED_VPCS`, read.
fn monitored_from(lookup: &dyn Fn(&str) -> Option<String>) -> crate::core::classify::Monitored {
    match MONITORED_VPCS.raw_from(lookup) {
        Some(list) => crate::core::classify::Monitored::Only(
            list.split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        None => crate::core::classify::Monitored::All,
    }
}

/// Where a function reads (or the sync function publishes) snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSource {
    /// `ESGFLOW_SNAPSHOT`.
    pub location: crate::app::stores::SnapshotLocation,
    /// `TENCENTCLOUD_REGION`, for a `cos://` location without `?region=`.
    pub region: Option<String>,
    /// `ESGFLOW_COS_ENDPOINT`.
    pub cos_endpoint: Option<String>,
    /// The largest snapshot object read ([`Function::max_snapshot_bytes`]).
    pub max_bytes: usize,
}

impl SnapshotSource {
    /// Reads and validates `ESGFLOW_SNAPSHOT` (and what a COS location needs) for `function`.
    pub(crate) fn from_lookup(
        lookup: &dyn Fn(&str) -> Option<String>,
        function: Function,
    ) -> Result<Self, ConfigError> {
        let text = required(&SNAPSHOT, lookup)?;
        let location =
            crate::app::stores::SnapshotLocation::parse(&text).map_err(|problem| ConfigError {
                setting: SNAPSHOT.name,
                value: text.clone(),
                problem,
            })?;
        let source = Self {
            location,
            region: REGION.raw_from(lookup).map(|r| r.trim().to_string()),
            cos_endpoint: COS_ENDPOINT.raw_from(lookup).map(|e| e.trim().to_string()),
            max_bytes: function.max_snapshot_bytes(),
        };
        source.store().map_err(|problem| ConfigError {
            setting: SNAPSHOT.name,
            value: text,
            problem,
        })?;
        Ok(source)
    }

    /// Opens the store.
    pub fn store(&self) -> Result<Box<dyn crate::core::ports::SnapshotStore>, String> {
        self.location.open(
            self.region.as_deref(),
            self.cos_endpoint.as_deref(),
            self.max_bytes,
        )
    }

    /// A snapshot cache over the store.
    pub fn cache(&self, ttl: std::time::Duration) -> crate::app::snapshot_cache::SnapshotCache {
        let store = self
            .store()
            .expect("validated when the configuration was read");
        crate::app::snapshot_cache::SnapshotCache::with_store(store, ttl)
    }
}

/// `value` if it is an http(s) URL; else an error naming `setting`, and the value unless it is
/// a secret.
fn http_url(setting: &Setting, value: String, secret: bool) -> Result<String, ConfigError> {
    if value.starts_with("https://") || value.starts_with("http://") {
        return Ok(value);
    }
    Err(ConfigError {
        setting: setting.name,
        value: if secret { String::new() } else { value },
        problem: "must be an http(s) URL".to_string(),
    })
}

/// Whether `text` reads as a Tencent Cloud region code (`ap-guangzhou`, `na-siliconvalley`).
fn is_region_code(text: &str) -> bool {
    text.len() <= 32
        && text.contains('-')
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn list(setting: &Setting, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    setting
        .raw_from(lookup)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Alerting: the policy and the channels.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    /// What to alert.
    pub policy: crate::core::alert::AlertPolicy,
    /// Where to.
    pub channels: Vec<crate::adapters::chat::Channel>,
    /// Redis URL for shared cooldown state; `None`: in memory.
    pub redis: Option<String>,
}

impl AlertConfig {
    /// Reads and validates the alert settings.
    pub(crate) fn from_lookup(
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        use crate::adapters::chat::{Channel, ChannelKind};
        use crate::core::records::RecordType;
        let mut kinds = std::collections::BTreeSet::new();
        for kind in list(&ALERT_KINDS, lookup) {
            let parsed = [
                RecordType::BlockHit,
                RecordType::ObserveHit,
                RecordType::UnattributedBlock,
                RecordType::SnapshotDrift,
                RecordType::RuleChange,
            ]
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(|| ConfigError {
                setting: ALERT_KINDS.name,
                value: kind.clone(),
                problem: "not one of block_hit, observe_hit, unattributed_block, snapshot_drift, rule_change"
                    .to_string(),
            })?;
            kinds.insert(parsed);
        }
        let regrow_factor: f64 = ALERT_REGROW_FACTOR.parse_from(lookup)?.unwrap_or(2.0);
        if regrow_factor.is_nan() || regrow_factor < 1.0 {
            return Err(ConfigError {
                setting: ALERT_REGROW_FACTOR.name,
                value: regrow_factor.to_string(),
                problem: "must be at least 1".to_string(),
            });
        }
        let policy = crate::core::alert::AlertPolicy {
            kinds,
            min_flows: ALERT_MIN_FLOWS.parse_from(lookup)?.unwrap_or(1),
            cooldown: std::time::Duration::from_secs(
                ALERT_COOLDOWN_SECONDS.parse_from(lookup)?.unwrap_or(900),
            ),
            regrow_factor,
            muted_rules: list(&ALERT_MUTE_RULES, lookup).into_iter().collect(),
            muted_descriptions: list(&ALERT_MUTE_DESCRIPTIONS, lookup),
            region: REGION
                .raw_from(lookup)
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty()),
            console_url: CONSOLE_URL
                .raw_from(lookup)
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .map(|u| http_url(&CONSOLE_URL, u, false))
                .transpose()?,
        };
        let mut channels = Vec::new();
        for (kind, url, secret) in [
            (ChannelKind::WeCom, &ALERT_WECOM_URL, None),
            (
                ChannelKind::DingTalk,
                &ALERT_DINGTALK_URL,
                Some(&ALERT_DINGTALK_SECRET),
            ),
            (
                ChannelKind::Feishu,
                &ALERT_FEISHU_URL,
                Some(&ALERT_FEISHU_SECRET),
            ),
            (
                ChannelKind::Webhook,
                &ALERT_WEBHOOK_URL,
                Some(&ALERT_WEBHOOK_SECRET),
            ),
        ] {
            if let Some(address) = url.raw_from(lookup) {
                // The value is a secret: an error names the setting, not the value.
                let address = http_url(url, address, true)?;
                channels.push(Channel {
                    kind,
                    url: address.trim().to_string(),
                    secret: secret.and_then(|s| s.raw_from(lookup)),
                });
            }
        }
        let redis = match ALERT_STATE.raw_from(lookup).unwrap_or_default().trim() {
            "" | "memory" => None,
            url if url.starts_with("redis://") || url.starts_with("rediss://") => {
                // Parsed here, so a malformed URL stops the start instead of failing every
                // batch's cooldown check later.
                redis::IntoConnectionInfo::into_connection_info(url).map_err(|err| {
                    ConfigError {
                        setting: ALERT_STATE.name,
                        value: String::new(),
                        problem: format!(
                            "is not a valid Redis URL `redis://[:password@]host:port[/db]` ({:?})",
                            err.kind()
                        ),
                    }
                })?;
                Some(url.to_string())
            }
            _ => {
                return Err(ConfigError {
                    setting: ALERT_STATE.name,
                    value: String::new(),
                    problem: "must be `memory` or a redis:// URL".to_string(),
                })
            }
        };
        Ok(Self {
            policy,
            channels,
            redis,
        })
    }
}

/// A setting holds a value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting {setting}{}: {problem}", if value.is_empty() { String::new() } else { format!(" = {value:?}") })]
pub struct ConfigError {
    /// The environment variable.
    pub setting: &'static str,
    /// What it held.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

impl Setting {
    /// The raw value: the environment's if set and non-empty, the default otherwise.
    pub fn raw(&self) -> Option<String> {
        self.raw_from(&|name| std::env::var(name).ok())
    }

    /// Like [`Setting::raw`], reading variables through `lookup` (tests, config files).
    pub(crate) fn raw_from(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        lookup(self.name)
            .filter(|v| !v.trim().is_empty())
            .or_else(|| self.default.map(str::to_string))
    }

    /// Parses the value with `FromStr`, naming the setting in the error.
    pub(crate) fn parse_from<T>(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<T>, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: fmt::Display,
    {
        match self.raw_from(lookup) {
            None => Ok(None),
            Some(value) => value
                .trim()
                .parse()
                .map(Some)
                .map_err(|err: T::Err| ConfigError {
                    setting: self.name,
                    value,
                    problem: err.to_string(),
                }),
        }
    }
}

/// Where the audit function writes records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkConfig {
    /// CLS UploadLog.
    Cls(crate::adapters::tencent::cls::ClsConfig),
    /// A JSONL file.
    Jsonl(std::path::PathBuf),
    /// Standard output.
    Stdout,
}

impl SinkConfig {
    /// Reads `ESGFLOW_CLS_TOPIC_ID` (with the endpoint and region), else `ESGFLOW_JSONL_PATH`,
    /// else stdout.
    pub(crate) fn from_lookup(
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Ok(match CLS_TOPIC_ID.raw_from(lookup) {
            Some(topic) => {
                let topic = topic.trim().to_string();
                let endpoint = http_url(
                    &CLS_ENDPOINT,
                    CLS_ENDPOINT.raw_from(lookup).unwrap_or_default(),
                    false,
                )?;
                SinkConfig::Cls(crate::adapters::tencent::cls::ClsConfig {
                    endpoint,
                    region: required(&REGION, lookup)?,
                    traffic_topic: CLS_TRAFFIC_TOPIC_ID
                        .raw_from(lookup)
                        .map(|t| t.trim().to_string())
                        .unwrap_or_else(|| topic.clone()),
                    hits_topic: topic,
                })
            }
            None => match JSONL_PATH.raw_from(lookup) {
                Some(path) => SinkConfig::Jsonl(path.into()),
                None => SinkConfig::Stdout,
            },
        })
    }

    /// Opens the sink.
    pub fn open(
        &self,
    ) -> Result<Box<dyn crate::core::ports::RecordSink>, crate::core::ports::SinkError> {
        Ok(match self {
            SinkConfig::Cls(cls) => Box::new(crate::adapters::tencent::cls::ClsSink::new(
                cls.clone(),
                crate::adapters::tencent::transport::CredentialSource::environment(),
            )?),
            SinkConfig::Jsonl(path) => Box::new(crate::adapters::files::JsonlSink::new(path)),
            SinkConfig::Stdout => Box::new(crate::adapters::files::StdoutSink),
        })
    }
}

/// The audit function's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    /// Decoding caps for CLS events.
    pub decode_limits: crate::events::DecodeLimits,
    /// Where the snapshot is.
    pub snapshot: SnapshotSource,
    /// How long a loaded snapshot is trusted.
    pub snapshot_ttl: std::time::Duration,
    /// Which VPCs are monitored.
    pub monitored: crate::core::classify::Monitored,
    /// Where records go.
    pub sink: SinkConfig,
    /// Alerting.
    pub alerts: AlertConfig,
}

fn required(
    setting: &Setting,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    setting.raw_from(lookup).ok_or_else(|| ConfigError {
        setting: setting.name,
        value: String::new(),
        problem: "required, and not set".to_string(),
    })
}

impl AuditConfig {
    /// Reads and validates the audit function's settings from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads and validates through `lookup`.
    pub(crate) fn from_lookup(
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut decode_limits = crate::events::DecodeLimits::default();
        if let Some(max) = MAX_DECODED_BYTES.parse_from::<usize>(lookup)? {
            if !(1024..=MAX_DECODED_BYTES_CEILING).contains(&max) {
                return Err(ConfigError {
                    setting: MAX_DECODED_BYTES.name,
                    value: max.to_string(),
                    problem: format!(
                        "must be at least 1024 and at most {MAX_DECODED_BYTES_CEILING} (64 MiB: a larger batch cannot be held in the function's memory)"
                    ),
                });
            }
            decode_limits.max_decoded_bytes = max;
        }
        let snapshot = SnapshotSource::from_lookup(lookup, Function::Audit)?;
        let ttl: u64 = SNAPSHOT_TTL_SECONDS.parse_from(lookup)?.unwrap_or(300);
        let monitored = monitored_from(lookup);
        let sink = SinkConfig::from_lookup(lookup)?;
        let alerts = AlertConfig::from_lookup(lookup)?;
        Ok(Self {
            decode_limits,
            snapshot,
            snapshot_ttl: std::time::Duration::from_secs(ttl),
            monitored,
            sink,
            alerts,
        })
    }
}

/// The sync function's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncConfig {
    /// API region (`TENCENTCLOUD_REGION`).
    pub region: String,
    /// cfw/vpc endpoint override.
    pub api_endpoint: Option<String>,
    /// `ESGFLOW_API_DOMAIN` (empty: `tencentcloudapi.com`).
    pub api_domain: String,
    /// What to fetch.
    pub live: crate::adapters::tencent::rules::LiveOptions,
    /// Where snapshots are published.
    pub snapshot: SnapshotSource,
    /// Where rule_change and rule_hygiene records go.
    pub sink: SinkConfig,
    /// Unused-rule window in days (0: off).
    pub unused_days: u64,
    /// Alerting (rule_change alerts are opt-in through ESGFLOW_ALERT_KINDS).
    pub alerts: AlertConfig,
}

impl SyncConfig {
    /// Reads and validates the sync function's settings from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads and validates through `lookup`.
    pub(crate) fn from_lookup(
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let old_esg = match OLD_ESG.raw_from(lookup).as_deref().map(str::trim) {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(ConfigError {
                    setting: OLD_ESG.name,
                    value: other.to_string(),
                    problem: "must be `true` or `false`".to_string(),
                })
            }
        };
        let region = required(&REGION, lookup)?.trim().to_string();
        let mut old_esg_regions = list(&OLD_ESG_REGIONS, lookup);
        if let Some(bad) = old_esg_regions.iter().find(|r| !is_region_code(r)) {
            return Err(ConfigError {
                setting: OLD_ESG_REGIONS.name,
                value: bad.clone(),
                problem: "is not a region code such as `ap-guangzhou`".to_string(),
            });
        }
        if old_esg_regions.is_empty() {
            old_esg_regions.push(region.clone());
        }
        old_esg_regions.sort();
        old_esg_regions.dedup();
        Ok(Self {
            api_endpoint: API_ENDPOINT.raw_from(lookup).map(|e| e.trim().to_string()),
            api_domain: API_DOMAIN
                .raw_from(lookup)
                .map(|d| d.trim().to_string())
                .unwrap_or_default(),
            live: crate::adapters::tencent::rules::LiveOptions {
                vpcs: list(&MONITORED_VPCS, lookup),
                template_region: TEMPLATE_REGION
                    .raw_from(lookup)
                    .map(|r| r.trim().to_string())
                    .unwrap_or_else(|| "ap-guangzhou".to_string()),
                old_esg_regions: if old_esg { old_esg_regions } else { Vec::new() },
            },
            region,
            snapshot: SnapshotSource::from_lookup(lookup, Function::Sync)?,
            sink: SinkConfig::from_lookup(lookup)?,
            unused_days: UNUSED_DAYS.parse_from(lookup)?.unwrap_or(30),
            alerts: AlertConfig::from_lookup(lookup)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn old_esg_regions_default_to_the_functions_region_and_are_checked() {
        let base = [
            ("TENCENTCLOUD_REGION", "ap-shanghai"),
            ("ESGFLOW_SNAPSHOT", "/tmp/snapshots"),
        ];
        let config = SyncConfig::from_lookup(&lookup(&base)).unwrap();
        assert_eq!(config.live.old_esg_regions, ["ap-shanghai"]);
        let mut pairs = base.to_vec();
        pairs.push((
            "ESGFLOW_OLD_ESG_REGIONS",
            " ap-guangzhou,ap-beijing,ap-guangzhou ",
        ));
        let config = SyncConfig::from_lookup(&lookup(&pairs)).unwrap();
        assert_eq!(config.live.old_esg_regions, ["ap-beijing", "ap-guangzhou"]);
        pairs.push(("ESGFLOW_OLD_ESG", "false"));
        let config = SyncConfig::from_lookup(&lookup(&pairs)).unwrap();
        assert!(config.live.old_esg_regions.is_empty());
        let mut bad = base.to_vec();
        bad.push(("ESGFLOW_OLD_ESG_REGIONS", "ap-guangzhou,Guangzhou City"));
        let err = SyncConfig::from_lookup(&lookup(&bad)).unwrap_err();
        assert_eq!(err.setting, "ESGFLOW_OLD_ESG_REGIONS");
        assert!(err.to_string().contains("Guangzhou City"), "{err}");
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        let config = AuditConfig::from_lookup(&lookup(&[
            ("ESGFLOW_MAX_DECODED_BYTES", " "),
            ("ESGFLOW_SNAPSHOT", "/tmp/s.json"),
        ]))
        .unwrap();
        assert_eq!(config.decode_limits.max_decoded_bytes, 16 * 1024 * 1024);
        assert_eq!(config.snapshot_ttl.as_secs(), 300);
        assert_eq!(config.monitored, crate::core::classify::Monitored::All);
        assert_eq!(config.sink, SinkConfig::Stdout);
    }

    #[test]
    fn sink_selection() {
        let config = AuditConfig::from_lookup(&lookup(&[
            ("ESGFLOW_SNAPSHOT", "s"),
            ("ESGFLOW_JSONL_PATH", "/tmp/out.jsonl"),
        ]))
        .unwrap();
        assert_eq!(config.sink, SinkConfig::Jsonl("/tmp/out.jsonl".into()));
        let config = AuditConfig::from_lookup(&lookup(&[
            ("ESGFLOW_SNAPSHOT", "s"),
            ("ESGFLOW_CLS_TOPIC_ID", "t-1"),
            ("TENCENTCLOUD_REGION", "ap-guangzhou"),
            ("ESGFLOW_MONITORED_VPCS", "vpc-a, vpc-b"),
        ]))
        .unwrap();
        let SinkConfig::Cls(cls) = config.sink else {
            panic!("expected CLS")
        };
        assert_eq!(
            (
                cls.hits_topic.as_str(),
                cls.traffic_topic.as_str(),
                cls.endpoint.as_str()
            ),
            ("t-1", "t-1", "https://cls.tencentcloudapi.com")
        );
        assert_eq!(
            config.monitored,
            crate::core::classify::Monitored::Only(
                ["vpc-a".to_string(), "vpc-b".to_string()].into()
            )
        );
        let err = AuditConfig::from_lookup(&lookup(&[
            ("ESGFLOW_SNAPSHOT", "s"),
            ("ESGFLOW_CLS_TOPIC_ID", "t-1"),
        ]))
        .unwrap_err();
        assert_eq!(err.setting, "TENCENTCLOUD_REGION");
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = AuditConfig::from_lookup(&lookup(&[("ESGFLOW_MAX_DECODED_BYTES", "lots")]))
            .unwrap_err();
        assert_eq!(err.setting, "ESGFLOW_MAX_DECODED_BYTES");
        assert!(err.to_string().contains("\"lots\""), "{err}");
        let err =
            AuditConfig::from_lookup(&lookup(&[("ESGFLOW_MAX_DECODED_BYTES", "10")])).unwrap_err();
        assert!(err.problem.contains("at least"));
        // 2^64 - 1 was once accepted.
        for huge in ["18446744073709551615", "67108865"] {
            let err = AuditConfig::from_lookup(&lookup(&[
                ("ESGFLOW_SNAPSHOT", "s"),
                ("ESGFLOW_MAX_DECODED_BYTES", huge),
            ]))
            .unwrap_err();
            assert_eq!(err.setting, "ESGFLOW_MAX_DECODED_BYTES");
            assert!(err.problem.contains("at most 67108864"), "{err}");
        }
        let err = AuditConfig::from_lookup(&lookup(&[])).unwrap_err();
        assert_eq!(err.setting, "ESGFLOW_SNAPSHOT");
        let err = AuditConfig::from_lookup(&lookup(&[
            ("ESGFLOW_SNAPSHOT", "s"),
            ("ESGFLOW_SNAPSHOT_TTL_SECONDS", "-3"),
        ]))
        .unwrap_err();
        assert_eq!(err.setting, "ESGFLOW_SNAPSHOT_TTL_SECONDS");
    }

    /// A Redis URL that does not parse stops the start, naming the setting and never the
    /// value (it may hold a password); a valid one is kept.
    #[test]
    fn a_malformed_redis_url_stops_the_start() {
        for bad in [
            "redis://:s3cret@cache:notaport",
            "redis://:s3cret@[::1/0",
            "redis://cache:6379/db",
        ] {
            let err =
                AlertConfig::from_lookup(&lookup(&[("ESGFLOW_ALERT_STATE", bad)])).expect_err(bad);
            assert_eq!(err.setting, "ESGFLOW_ALERT_STATE");
            assert!(err.problem.contains("not a valid Redis URL"), "{err}");
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
        let ok = AlertConfig::from_lookup(&lookup(&[(
            "ESGFLOW_ALERT_STATE",
            "redis://:s3cret@10.0.0.5:6379/2",
        )]))
        .unwrap();
        assert_eq!(ok.redis.as_deref(), Some("redis://:s3cret@10.0.0.5:6379/2"));
    }

    #[test]
    fn alert_settings() {
        let config = AlertConfig::from_lookup(&lookup(&[
            ("ESGFLOW_ALERT_KINDS", "block_hit, snapshot_drift"),
            (
                "ESGFLOW_ALERT_DINGTALK_URL",
                "https://oapi.dingtalk.com/robot/send?access_token=t",
            ),
            ("ESGFLOW_ALERT_DINGTALK_SECRET", "SECx"),
            ("ESGFLOW_ALERT_MUTE_RULES", "7,8"),
        ]))
        .unwrap();
        assert_eq!(config.policy.kinds.len(), 2);
        assert_eq!(config.channels.len(), 1);
        assert_eq!(config.channels[0].secret.as_deref(), Some("SECx"));
        assert_eq!(config.policy.muted_rules.len(), 2);
        let err =
            AlertConfig::from_lookup(&lookup(&[("ESGFLOW_ALERT_KINDS", "traffic")])).unwrap_err();
        assert_eq!(err.setting, "ESGFLOW_ALERT_KINDS");
        let err = AlertConfig::from_lookup(&lookup(&[(
            "ESGFLOW_ALERT_WECOM_URL",
            "qyapi.weixin.qq.com/?key=SECRETKEY",
        )]))
        .unwrap_err();
        assert!(!err.to_string().contains("SECRETKEY"), "{err}");
        let err =
            AlertConfig::from_lookup(&lookup(&[("ESGFLOW_CONSOLE_URL", "esgflow.example.com")]))
                .unwrap_err();
        assert_eq!(err.setting, "ESGFLOW_CONSOLE_URL");
        assert!(err.to_string().contains("esgflow.example.com"), "{err}");
        let config = AlertConfig::from_lookup(&lookup(&[
            ("ESGFLOW_CONSOLE_URL", " https://esgflow.example.com "),
            ("TENCENTCLOUD_REGION", "ap-guangzhou"),
        ]))
        .unwrap();
        assert_eq!(
            (
                config.policy.console_url.as_deref(),
                config.policy.region.as_deref()
            ),
            (Some("https://esgflow.example.com"), Some("ap-guangzhou"))
        );
        let unset = AlertConfig::from_lookup(&lookup(&[("ESGFLOW_CONSOLE_URL", "")])).unwrap();
        assert_eq!(unset.policy.console_url, None);
    }

    #[test]
    fn lookup_refuses_to_start_without_authentication() {
        let err = LookupConfig::from_lookup(&lookup(&[("ESGFLOW_SNAPSHOT", "s")])).unwrap_err();
        assert_eq!(err.setting, "ESGFLOW_LOOKUP_TOKEN");
        let err = LookupConfig::from_lookup(&lookup(&[
            ("ESGFLOW_SNAPSHOT", "s"),
            ("ESGFLOW_LOOKUP_TOKEN", "short"),
        ]))
        .unwrap_err();
        assert!(
            !err.to_string().contains("short"),
            "the token is not echoed: {err}"
        );
        let config = LookupConfig::from_lookup(&lookup(&[
            ("ESGFLOW_SNAPSHOT", "s"),
            ("ESGFLOW_LOOKUP_AUTH", "apigw"),
        ]))
        .unwrap();
        assert_eq!(config.auth, crate::app::lookup::Auth::ApiGateway);
        let config = LookupConfig::from_lookup(&lookup(&[
            ("ESGFLOW_SNAPSHOT", "s"),
            ("ESGFLOW_LOOKUP_TOKEN", "0123456789abcdef"),
        ]))
        .unwrap();
        assert_eq!(
            config.auth,
            crate::app::lookup::Auth::Bearer("0123456789abcdef".into())
        );
    }

    #[test]
    fn registry_names_are_unique() {
        let mut names: Vec<_> = SETTINGS.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SETTINGS.len());
    }
}
