//! What a search of the records asks, in one validated shape both records stores answer: CLS
//! through `SearchLog` (`crate::adapters::tencent::cls_query`) and the embedded local database
//! (`crate::adapters::sqlite`). Every value here has been checked, so a store can put it into its
//! query language without further escaping decisions.
use compact_str::CompactString;

use std::net::IpAddr;

use ipnet::IpNet;

/// The hit record types a search may ask for.
pub const HIT_TYPES: [&str; 4] = [
    "block_hit",
    "observe_hit",
    "unattributed_block",
    "snapshot_drift",
];

/// How an address parameter matches a record's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressMatch {
    /// Exactly this address (an address, or a /32 or /128 network).
    Exact(IpAddr),
    /// An IPv4 network: the record's address as a number (`src_ip_num`, `dst_ip_num`) within
    /// `first..=last`.
    V4Range {
        /// The network's first address as a number.
        first: u32,
        /// Its last address.
        last: u32,
    },
}

/// Why an address parameter cannot be searched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Neither an address nor a CIDR network.
    #[error("{} is neither an IP address nor a CIDR network (10.0.1.0/24)", crate::core::text::shown(.0))]
    Syntax(String),
    /// An IPv6 network wider than one address: records carry IPv4 addresses as numbers only.
    #[error("{0} is an IPv6 network; IPv6 addresses can be searched one at a time")]
    V6Range(IpNet),
}

impl AddressMatch {
    /// Reads `10.0.1.11`, `10.0.1.0/24`, `2001:db8::1` or `::ffff:10.0.1.11` (IPv4-mapped
    /// addresses match as IPv4, as audit writes them). A network's host bits are ignored
    /// (`10.0.1.7/24` is `10.0.1.0/24`).
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let text = text.trim();
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(AddressMatch::Exact(ip.to_canonical()));
        }
        let net: IpNet = text
            .parse()
            .map_err(|_| AddressError::Syntax(text.to_string()))?;
        let net = match net {
            IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                Some(v4) if v6.prefix_len() >= 96 => {
                    IpNet::V4(ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).expect("prefix ≤ 32"))
                }
                _ => net,
            },
            IpNet::V4(_) => net,
        };
        match net {
            IpNet::V4(v4) if v4.prefix_len() == 32 => {
                Ok(AddressMatch::Exact(IpAddr::V4(v4.addr())))
            }
            IpNet::V4(v4) => Ok(AddressMatch::V4Range {
                first: u32::from(v4.network()),
                last: u32::from(v4.broadcast()),
            }),
            IpNet::V6(v6) if v6.prefix_len() == 128 => {
                Ok(AddressMatch::Exact(IpAddr::V6(v6.addr())))
            }
            IpNet::V6(_) => Err(AddressError::V6Range(net.trunc())),
        }
    }

    /// Whether it matches IPv4 addresses only (through `src_ip_num`/`dst_ip_num`).
    pub fn is_v4(&self) -> bool {
        matches!(
            self,
            AddressMatch::V4Range { .. } | AddressMatch::Exact(IpAddr::V4(_))
        )
    }

    /// Whether `ip` matches.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (*self, ip.to_canonical()) {
            (AddressMatch::Exact(want), ip) => want == ip,
            (AddressMatch::V4Range { first, last }, IpAddr::V4(v4)) => {
                (first..=last).contains(&u32::from(v4))
            }
            (AddressMatch::V4Range { .. }, IpAddr::V6(_)) => false,
        }
    }
}

impl std::fmt::Display for AddressMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            AddressMatch::Exact(ip) => write!(f, "{ip}"),
            AddressMatch::V4Range { first, last } => {
                let prefix = 32 - (last - first).count_ones();
                write!(f, "{}/{prefix}", std::net::Ipv4Addr::from(first))
            }
        }
    }
}

/// A search of the hit records: every condition given must hold. Times are Unix seconds,
/// `since ≤ time ≤ until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitFilter {
    /// Record types, at least one of [`HIT_TYPES`].
    pub types: Vec<&'static str>,
    /// The source address.
    pub src: Option<AddressMatch>,
    /// The destination address.
    pub dst: Option<AddressMatch>,
    /// Either address.
    pub either: Option<AddressMatch>,
    /// The destination (service) port.
    pub port: Option<u16>,
    /// The IANA protocol number.
    pub protocol: Option<u8>,
    /// The deciding or observing rule's uuid (letters, digits, `-`, `_`).
    pub rule: Option<String>,
    /// A VPC id, as the source's or the destination's VPC.
    pub vpc: Option<String>,
    /// A subnet id, as the source's or the destination's subnet.
    pub subnet: Option<String>,
    /// The flow log's verdict: `ACCEPT` or `REJECT`.
    pub fl_action: Option<&'static str>,
    /// From, Unix seconds.
    pub since: i64,
    /// To, Unix seconds.
    pub until: i64,
}

impl HitFilter {
    /// Block and observe hits between `since` and `until`, nothing else narrowed.
    pub fn new(since: i64, until: i64) -> Self {
        Self {
            types: vec!["block_hit", "observe_hit"],
            src: None,
            dst: None,
            either: None,
            port: None,
            protocol: None,
            rule: None,
            vpc: None,
            subnet: None,
            fl_action: None,
            since,
            until,
        }
    }
}

/// Whether `text` may be searched as an id (rule uuid, VPC or subnet id): letters, digits, `-`
/// and `_`, 1 to 64 of them. Nothing else reaches a query.
pub fn is_search_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One page of a search, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct HitsPage {
    /// The records, as written.
    pub hits: Vec<serde_json::Value>,
    /// The store's position after this page, when there is more.
    pub context: Option<String>,
}

/// A rule's hit counters summed over a window (`rule_hits` records).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleCounters {
    /// Every hit.
    pub hits: u64,
    /// Hits as the deciding drop rule.
    pub block_hits: u64,
    /// Hits as an observe rule.
    pub observe_hits: u64,
    /// The first hit, Unix seconds.
    pub first_hit: Option<u64>,
    /// The last hit.
    pub last_hit: Option<u64>,
}

/// A view of the traffic records: every condition given must hold. Times are Unix seconds,
/// `since ≤ time ≤ until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficFilter {
    /// A VPC id, as either end's VPC.
    pub vpc: Option<String>,
    /// A subnet id, as either end's subnet.
    pub subnet: Option<String>,
    /// A subnet id, as the source's subnet (a matrix cell's row).
    pub src_subnet: Option<String>,
    /// A subnet id, as the destination's subnet (a matrix cell's column).
    pub dst_subnet: Option<String>,
    /// The traffic scope.
    pub scope: Option<crate::core::engine::Scope>,
    /// What the other end is, seen from its VPC.
    pub peer: Option<crate::core::records::Peer>,
    /// The flow log's verdict: `ACCEPT` or `REJECT`.
    pub fl_action: Option<&'static str>,
    /// From, Unix seconds.
    pub since: i64,
    /// To, Unix seconds.
    pub until: i64,
    /// Most rows of top talkers.
    pub talkers: u32,
    /// The time series' step, seconds.
    pub bucket: u32,
}

impl TrafficFilter {
    /// All traffic between `since` and `until`, 20 talkers, a step giving at most
    /// [`MAX_SERIES_POINTS`] points.
    pub fn new(since: i64, until: i64) -> Self {
        Self {
            vpc: None,
            subnet: None,
            src_subnet: None,
            dst_subnet: None,
            scope: None,
            peer: None,
            fl_action: None,
            since,
            until,
            talkers: 20,
            bucket: series_step(since, until),
        }
    }
}

/// Most points of a traffic time series.
pub const MAX_SERIES_POINTS: i64 = 120;

/// Time series steps, seconds: the smallest that keeps a window within [`MAX_SERIES_POINTS`].
const SERIES_STEPS: [u32; 8] = [60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 24 * 3600];

/// The step of a time series over `since..=until`.
pub fn series_step(since: i64, until: i64) -> u32 {
    let span = (until - since).max(1);
    SERIES_STEPS
        .into_iter()
        .find(|step| span / i64::from(*step) < MAX_SERIES_POINTS)
        .unwrap_or(SERIES_STEPS[SERIES_STEPS.len() - 1])
}

/// Sums of traffic counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct TrafficSums {
    /// Flow log records.
    pub flows: u64,
    /// Of them, rejected.
    pub rejected_flows: u64,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Totals of one scope and verdict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct TrafficTotal {
    /// The traffic scope.
    #[schema(value_type = crate::core::engine::Scope)]
    pub scope: String,
    /// `ACCEPT` or `REJECT`.
    pub fl_action: String,
    /// Its sums.
    #[serde(flatten)]
    pub sums: TrafficSums,
}

/// One conversation (initiator → service) of the top talkers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Talker {
    /// The initiator.
    #[schema(value_type = String)]
    pub src_ip: CompactString,
    /// The service end.
    #[schema(value_type = String)]
    pub dst_ip: CompactString,
    /// The service port (none for ICMP and other portless protocols).
    pub dst_port: Option<u16>,
    /// `TCP`, `UDP`, `ICMP`, …
    #[schema(value_type = String)]
    pub protocol_name: CompactString,
    /// The traffic scope.
    #[schema(value_type = crate::core::engine::Scope)]
    pub scope: CompactString,
    /// Its sums.
    #[serde(flatten)]
    pub sums: TrafficSums,
}

impl Talker {
    /// The top talkers' order: most bytes, then most flows, ties by their addresses, port,
    /// protocol and scope.
    pub fn order(a: &Self, b: &Self) -> std::cmp::Ordering {
        TrafficSums::most_first(&a.sums, &b.sums)
            .then_with(|| a.src_ip.cmp(&b.src_ip))
            .then_with(|| a.dst_ip.cmp(&b.dst_ip))
            .then_with(|| a.dst_port.cmp(&b.dst_port))
            .then_with(|| a.protocol_name.cmp(&b.protocol_name))
            .then_with(|| a.scope.cmp(&b.scope))
    }
}

/// The conversations of a window, most bytes first ([`crate::core::ports::RecordsStore::conversations`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversations {
    /// Each conversation and its sums.
    pub rows: Vec<Talker>,
    /// Whether they are all of the window's (false: the largest only, up to the limit or as
    /// many as the deadline let the store give).
    pub complete: bool,
    /// Whether the deadline cut the reading short.
    pub cut_by_deadline: bool,
}

impl Conversations {
    /// `rows` read with a limit of `limit` and asked for one more: complete when that one more
    /// did not come.
    pub fn of(mut rows: Vec<Talker>, limit: usize) -> Self {
        let complete = rows.len() <= limit;
        rows.truncate(limit);
        Self {
            rows,
            complete,
            cut_by_deadline: false,
        }
    }
}

/// The SQL (after the search's `|`) of every conversation of a window, most bytes first, ending
/// its order on the whole group key so pages of it never overlap.
pub fn conversations_sql() -> String {
    format!(
        "select src_ip, dst_ip, dst_port, protocol_name, scope, {TRAFFIC_SUMS} group by src_ip, dst_ip, dst_port, protocol_name, scope order by sum_bytes desc, sum_flows desc, src_ip, dst_ip, dst_port, protocol_name, scope"
    )
}

/// Traffic from one subnet to another (`None`: outside every known subnet).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct MatrixCell {
    /// The initiator's subnet.
    pub src_subnet: Option<String>,
    /// The service end's subnet.
    pub dst_subnet: Option<String>,
    /// Its sums.
    #[serde(flatten)]
    pub sums: TrafficSums,
}

/// Traffic in one step of the time series.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SeriesPoint {
    /// The step's start, Unix seconds (a multiple of the step).
    pub time: i64,
    /// Its sums.
    #[serde(flatten)]
    pub sums: TrafficSums,
}

/// Most subnet pairs in a traffic matrix.
pub const MAX_MATRIX_CELLS: u32 = 400;

/// Most rows of top talkers.
pub const MAX_TALKERS: u32 = 1000;

/// The traffic views of one [`TrafficFilter`]: by bytes, most first; the series by time.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct TrafficView {
    /// Sums per scope and verdict.
    pub totals: Vec<TrafficTotal>,
    /// The conversations with the most bytes.
    pub talkers: Vec<Talker>,
    /// Subnet to subnet, at most [`MAX_MATRIX_CELLS`] pairs.
    pub matrix: Vec<MatrixCell>,
    /// The time series, one point per step with traffic.
    pub series: Vec<SeriesPoint>,
}

/// The four traffic views as SQL over the matching traffic records, which CLS runs as
/// `{search} | select {select} {rest}`. The local database sums the same views in one pass
/// instead (`adapters::sqlite`; `tests/records_store.rs` holds both to the same sums).
/// Counters are cast to `bigint` so that the sums hold whether CLS hands SQL a `long` field as
/// a number or as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficQuery {
    /// [`TrafficView::totals`].
    Totals,
    /// [`TrafficView::talkers`].
    Talkers,
    /// [`TrafficView::matrix`].
    Matrix,
    /// [`TrafficView::series`].
    Series,
}

/// The sums every traffic view selects, as `sum_flows`, `sum_rejected`, `sum_packets` and
/// `sum_bytes` (names no record field has, so `order by` cannot mean a field).
const TRAFFIC_SUMS: &str = "sum(cast(flows as bigint)) as sum_flows, sum(case when fl_action = 'REJECT' then cast(flows as bigint) else 0 end) as sum_rejected, sum(cast(packets as bigint)) as sum_packets, sum(cast(bytes as bigint)) as sum_bytes";

impl TrafficQuery {
    /// Every view, in [`TrafficView`] order.
    pub const ALL: [TrafficQuery; 4] = [
        TrafficQuery::Totals,
        TrafficQuery::Talkers,
        TrafficQuery::Matrix,
        TrafficQuery::Series,
    ];

    /// `(select list, group/order/limit)` of this view of `filter`.
    pub fn sql(self, filter: &TrafficFilter) -> (String, String) {
        match self {
            TrafficQuery::Totals => (
                format!("scope, fl_action, {TRAFFIC_SUMS}"),
                "group by scope, fl_action order by sum_bytes desc, scope, fl_action limit 100"
                    .to_string(),
            ),
            TrafficQuery::Talkers => (
                format!("src_ip, dst_ip, dst_port, protocol_name, scope, {TRAFFIC_SUMS}"),
                format!(
                    "group by src_ip, dst_ip, dst_port, protocol_name, scope order by sum_bytes desc, sum_flows desc, src_ip, dst_ip, protocol_name, scope limit {}",
                    filter.talkers
                ),
            ),
            TrafficQuery::Matrix => (
                format!("src_subnet, dst_subnet, {TRAFFIC_SUMS}"),
                format!(
                    "group by src_subnet, dst_subnet order by sum_bytes desc, src_subnet, dst_subnet limit {MAX_MATRIX_CELLS}"
                ),
            ),
            TrafficQuery::Series => (
                format!(
                    "cast(last_seen as bigint) - cast(last_seen as bigint) % {bucket} as bucket, {TRAFFIC_SUMS}",
                    bucket = filter.bucket
                ),
                // One more point than a window holds: its first step can start before `since`.
                format!("group by bucket order by bucket limit {}", MAX_SERIES_POINTS * 2),
            ),
        }
    }

    /// Adds one answer row (column name → number or text, as a store gives it) to `view`.
    pub fn add_row(self, view: &mut TrafficView, row: &serde_json::Value) {
        let text = |key: &str| match row.get(key) {
            Some(serde_json::Value::String(s)) if !s.is_empty() && s != "null" => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let number = |key: &str| -> Option<i64> {
            let value = row.get(key)?;
            value
                .as_i64()
                .or_else(|| value.as_f64().map(|f| f as i64))
                .or_else(|| value.as_str()?.trim().parse().ok())
        };
        let count = |key: &str| number(key).unwrap_or(0).max(0) as u64;
        let sums = TrafficSums {
            flows: count("sum_flows"),
            rejected_flows: count("sum_rejected"),
            packets: count("sum_packets"),
            bytes: count("sum_bytes"),
        };
        match self {
            TrafficQuery::Totals => view.totals.push(TrafficTotal {
                scope: text("scope").unwrap_or_default(),
                fl_action: text("fl_action").unwrap_or_default(),
                sums,
            }),
            TrafficQuery::Talkers => view.talkers.push(Talker {
                src_ip: CompactString::new(text("src_ip").unwrap_or_default()),
                dst_ip: CompactString::new(text("dst_ip").unwrap_or_default()),
                dst_port: number("dst_port").and_then(|p| u16::try_from(p).ok()),
                protocol_name: CompactString::new(text("protocol_name").unwrap_or_default()),
                scope: CompactString::new(text("scope").unwrap_or_default()),
                sums,
            }),
            TrafficQuery::Matrix => view.matrix.push(MatrixCell {
                src_subnet: text("src_subnet"),
                dst_subnet: text("dst_subnet"),
                sums,
            }),
            TrafficQuery::Series => {
                if let Some(time) = number("bucket") {
                    view.series.push(SeriesPoint { time, sums });
                }
            }
        }
    }
}

impl TrafficSums {
    /// The views' order of sums: most bytes first, then most flows.
    pub fn most_first(a: &Self, b: &Self) -> std::cmp::Ordering {
        b.bytes.cmp(&a.bytes).then(b.flows.cmp(&a.flows))
    }

    /// Adds `other`'s counters to these.
    pub fn add(&mut self, other: &TrafficSums) {
        self.flows = self.flows.saturating_add(other.flows);
        self.rejected_flows = self.rejected_flows.saturating_add(other.rejected_flows);
        self.packets = self.packets.saturating_add(other.packets);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

impl TrafficView {
    /// Puts every view in its documented order, whatever order a store answered in: totals,
    /// talkers and the matrix by bytes (most first, ties by their keys), the series by time.
    pub fn sort(&mut self) {
        let most = TrafficSums::most_first;
        self.totals.sort_by(|a, b| {
            most(&a.sums, &b.sums)
                .then_with(|| a.scope.cmp(&b.scope))
                .then_with(|| a.fl_action.cmp(&b.fl_action))
        });
        self.talkers.sort_by(Talker::order);
        self.matrix.sort_by(|a, b| {
            most(&a.sums, &b.sums)
                .then_with(|| a.src_subnet.cmp(&b.src_subnet))
                .then_with(|| a.dst_subnet.cmp(&b.dst_subnet))
        });
        self.series.sort_by_key(|p| p.time);
    }
}

/// The ENI ids of traffic records' `enis` lists (comma-separated), each once.
pub fn split_enis<'a>(
    lists: impl IntoIterator<Item = &'a str>,
) -> std::collections::BTreeSet<String> {
    lists
        .into_iter()
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|eni| !eni.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_networks_are_read_as_audit_writes_them() {
        let exact = |t: &str| AddressMatch::Exact(t.parse().unwrap());
        assert_eq!(
            AddressMatch::parse("10.0.1.11").unwrap(),
            exact("10.0.1.11")
        );
        assert_eq!(
            AddressMatch::parse(" ::ffff:10.0.1.11 ").unwrap(),
            exact("10.0.1.11")
        );
        assert_eq!(
            AddressMatch::parse("10.0.1.11/32").unwrap(),
            exact("10.0.1.11")
        );
        assert_eq!(
            AddressMatch::parse("2001:db8::1/128").unwrap(),
            exact("2001:db8::1")
        );
        let net = AddressMatch::parse("10.0.1.7/24").unwrap();
        assert_eq!(
            net,
            AddressMatch::V4Range {
                first: 0x0a00_0100,
                last: 0x0a00_01ff
            }
        );
        assert_eq!(net.to_string(), "10.0.1.0/24");
        assert_eq!(
            AddressMatch::parse("::ffff:10.0.0.0/104")
                .unwrap()
                .to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            AddressMatch::parse("0.0.0.0/0").unwrap().to_string(),
            "0.0.0.0/0"
        );
        assert!(net.contains("10.0.1.255".parse().unwrap()));
        assert!(net.contains("::ffff:10.0.1.3".parse().unwrap()));
        assert!(!net.contains("10.0.2.0".parse().unwrap()));
        assert!(!net.contains("2001:db8::1".parse().unwrap()));
        assert_eq!(
            AddressMatch::parse("2001:db8::/64")
                .unwrap_err()
                .to_string(),
            "2001:db8::/64 is an IPv6 network; IPv6 addresses can be searched one at a time"
        );
        assert!(matches!(
            AddressMatch::parse("10.0.1.0/33"),
            Err(AddressError::Syntax(_))
        ));
        assert!(matches!(
            AddressMatch::parse("10.0.1.x"),
            Err(AddressError::Syntax(_))
        ));
    }

    #[test]
    fn only_plain_ids_are_searchable() {
        assert!(is_search_id("vpc-prod01"));
        assert!(is_search_id("a1b2_c3"));
        for bad in ["", "vpc\"x", "a b", "x:y", "(x)", &"a".repeat(65)] {
            assert!(!is_search_id(bad), "{bad}");
        }
    }
}
