//! `GET /v1/traffic`: a VPC's traffic summed four ways (totals, talkers, the subnet matrix, a
//! time series): its route and parameters.

use axum::extract::State;
use axum::Json;

use super::request::Answer;
use super::*;
use crate::core::search::TrafficView;
use serde::Serialize;
use utoipa::IntoParams;
use utoipa::ToSchema;

/// `GET /v1/traffic`.
#[utoipa::path(get, path = "/v1/traffic", tag = "traffic",
    summary = "Traffic of a VPC: totals per scope and verdict, top talkers, a subnet-to-subnet matrix and a time series",
    params(TrafficParams),
    responses(
        (status = 200, description = "the traffic views", body = TrafficAnswer),
        (status = 400, description = "a parameter is invalid (the message names it); a parameter the route does not read, or one given twice (`unknown_parameter`, `repeated_parameter`)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 405, description = "not GET", body = ErrorBody),
        (status = 502, description = "the records store failed", body = ErrorBody), (status = 503, description = "no records store", body = ErrorBody),
    ))]
pub(crate) async fn traffic(
    State(lookup): State<Lookup>,
    call: Invocation,
    Query(params): Query<TrafficParams>,
) -> Answer<TrafficAnswer> {
    lookup.traffic(&params, call.deadline).await.map(Json)
}

/// `GET /v1/traffic/peers`.
#[utoipa::path(get, path = "/v1/traffic/peers", tag = "traffic",
    summary = "A VPC's traffic grouped by where the other end is: its kind, its VPC, its network",
    description = "The window's conversations of the VPC (traffic records summed by initiator, service end, port, protocol and scope; the largest first, at most 200,000), each placed with the snapshot and grouped by its other end — the end outside the VPC, or for traffic within it the initiator — by what that end is (same or other VPC, private, internet), its VPC, and its network at `prefix` bits (IPv4) or `prefix6` (IPv6). Most bytes first.",
    params(PeersParams),
    responses(
        (status = 200, description = "the groups", body = PeersAnswer),
        (status = 400, description = "a parameter is invalid (the message names it); `vpc` is missing; a parameter the route does not read, or one given twice", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 405, description = "not GET", body = ErrorBody),
        (status = 502, description = "the records store failed", body = ErrorBody), (status = 503, description = "no snapshot, or no records store", body = ErrorBody),
    ))]
pub(crate) async fn peers(
    State(lookup): State<Lookup>,
    call: Invocation,
    Query(params): Query<PeersParams>,
) -> Answer<PeersAnswer> {
    lookup.peers(&params, call.deadline).await.map(Json)
}

/// `GET /v1/traffic/instances`.
#[utoipa::path(get, path = "/v1/traffic/instances", tag = "traffic",
    summary = "Traffic grouped by instance pair: initiator and service end",
    description = "The window's conversations (as /v1/traffic/peers reads them), grouped by the instance at each end — or, for an address that is no instance's, its network at `prefix` (IPv4) or `prefix6` (IPv6) bits. Most bytes first.",
    params(PeersParams),
    responses(
        (status = 200, description = "the instance pairs", body = InstancesAnswer),
        (status = 400, description = "a parameter is invalid (the message names it); a parameter the route does not read, or one given twice", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 405, description = "not GET", body = ErrorBody),
        (status = 502, description = "the records store failed", body = ErrorBody), (status = 503, description = "no snapshot, or no records store", body = ErrorBody),
    ))]
pub(crate) async fn instances(
    State(lookup): State<Lookup>,
    call: Invocation,
    Query(params): Query<PeersParams>,
) -> Answer<InstancesAnswer> {
    let grouped = lookup.grouped(&params, call.deadline).await?;
    let pairs = crate::core::classify::peers::instance_pairs(
        grouped.engine.topology(),
        &grouped.conversations.rows,
        grouped.prefix,
        grouped.prefix6,
    );
    let total = pairs.len();
    Ok(Json(InstancesAnswer {
        window: grouped.window(),
        total_pairs: total,
        pairs: grouped.page(pairs),
    }))
}

/// What a grouping of the window's conversations reads: its parameters, the engine that places
/// the addresses, and the conversations.
pub(crate) struct Grouped {
    filter: crate::core::search::TrafficFilter,
    prefix: u8,
    prefix6: u8,
    limit: usize,
    offset: usize,
    engine: std::sync::Arc<crate::core::engine::Engine>,
    conversations: crate::core::search::Conversations,
}

impl Grouped {
    /// The page of `rows` asked for.
    fn page<T>(&self, rows: Vec<T>) -> Vec<T> {
        rows.into_iter()
            .skip(self.offset)
            .take(self.limit)
            .collect()
    }

    fn window(&self) -> GroupedWindow {
        GroupedWindow {
            since: self.filter.since,
            until: self.filter.until,
            vpc: self.filter.vpc.clone(),
            prefix: self.prefix,
            prefix6: self.prefix6,
            conversations: self.conversations.rows.len(),
            complete: self.conversations.complete,
            cut: (!self.conversations.complete).then(|| super::whatif::cut(&self.conversations)),
            offset: self.offset,
        }
    }
}

impl Lookup {
    /// The parameters of a grouping checked, and the window's conversations read.
    pub(crate) async fn grouped(
        &self,
        params: &PeersParams,
        deadline: Instant,
    ) -> Result<Grouped, Failure> {
        let prefix = whole_number("prefix", params.prefix.as_deref(), 24, 1..=32)? as u8;
        let prefix6 = whole_number("prefix6", params.prefix6.as_deref(), 64, 1..=128)? as u8;
        let limit = whole_number(
            "limit",
            params.limit.as_deref(),
            100,
            1..=MAX_PEER_GROUPS as i64,
        )? as usize;
        let offset = whole_number(
            "offset",
            params.offset.as_deref(),
            0,
            0..=i64::from(u32::MAX),
        )? as usize;
        let filter = traffic_filter(
            &TrafficParams {
                vpc: params.vpc.clone(),
                scope: params.scope.clone(),
                peer: params.peer.clone(),
                fl_action: params.fl_action.clone(),
                since: params.since.clone(),
                until: params.until.clone(),
                ..TrafficParams::default()
            },
            chrono::Utc::now().timestamp(),
        )?;
        let store = self.store()?;
        let engine = self.engine(deadline).await?;
        let conversations = super::whatif::read_conversations(store, &filter, deadline).await?;
        Ok(Grouped {
            filter,
            prefix,
            prefix6,
            limit,
            offset,
            engine,
            conversations,
        })
    }

    /// `GET /v1/traffic/peers`: the VPC's conversations grouped by the other end.
    pub(crate) async fn peers(
        &self,
        params: &PeersParams,
        deadline: Instant,
    ) -> Result<PeersAnswer, Failure> {
        if params.vpc.is_none() {
            return Err(field_error(
                "vpc",
                "is required: the VPC whose peers to group",
            ));
        }
        let grouped = self.grouped(params, deadline).await?;
        let vpc = grouped.filter.vpc.clone().unwrap_or_default();
        let groups = crate::core::classify::peers::peer_groups(
            grouped.engine.topology(),
            &vpc,
            &grouped.conversations.rows,
            grouped.prefix,
            grouped.prefix6,
        );
        let total_groups = groups.len();
        Ok(PeersAnswer {
            window: grouped.window(),
            total_groups,
            groups: grouped.page(groups),
        })
    }

    /// `GET /v1/traffic?vpc=…`: totals, top talkers, the subnet matrix and a time series of
    /// the traffic records.
    pub(crate) async fn traffic(
        &self,
        params: &TrafficParams,
        deadline: Instant,
    ) -> Result<TrafficAnswer, Failure> {
        let mut filter = traffic_filter(params, chrono::Utc::now().timestamp())?;
        // A later page of talkers: the stores rank the first `offset + talkers`, the page skips
        // `offset` (at most 10,000 in all, what a CLS SQL answer holds).
        let offset = whole_number(
            "talkers_offset",
            params.talkers_offset.as_deref(),
            0,
            0..=i64::from(MAX_TALKERS_RANKED - MAX_TALKERS),
        )? as u32;
        filter.talkers += offset;
        let store = self.store()?;
        let mut view = store
            .traffic(&filter, deadline)
            .await
            .map_err(|failure| search_failed(failure, "the records search expired: ask again"))?;
        view.talkers
            .drain(..(offset as usize).min(view.talkers.len()));
        // The talkers' names from the snapshot (a courtesy: none without one).
        let mut names = std::collections::BTreeMap::new();
        if let Ok(engine) = self.engine(deadline).await {
            for talker in &view.talkers {
                let (Ok(src), Ok(dst)) = (
                    talker.src_ip.parse::<std::net::IpAddr>(),
                    talker.dst_ip.parse::<std::net::IpAddr>(),
                ) else {
                    continue;
                };
                let placed = engine.topology().place(src, dst, None);
                for (ip, location) in [(&talker.src_ip, &placed.src), (&talker.dst_ip, &placed.dst)]
                {
                    if let Some(name) = location.instance_name.or(location.subnet_name) {
                        names.insert(ip.to_string(), name.to_string());
                    }
                }
            }
        }
        Ok(TrafficAnswer {
            talkers_offset: offset,
            names,
            src_subnet: filter.src_subnet.clone(),
            dst_subnet: filter.dst_subnet.clone(),
            since: filter.since,
            until: filter.until,
            step: filter.bucket,
            scope: filter.scope.map(|s| s.as_str()),
            peer: filter.peer.map(|p| p.as_str()),
            fl_action: filter.fl_action,
            query: traffic_search(&filter),
            vpc: filter.vpc,
            subnet: filter.subnet,
            view,
        })
    }
}

/// The traffic views a `/v1/traffic` request asks for.
pub(crate) fn traffic_filter(params: &TrafficParams, now: i64) -> Result<TrafficFilter, Failure> {
    let named = |name: &str,
                 given: &Option<String>,
                 names: &[&'static str]|
     -> Result<Option<usize>, Failure> {
        given
            .as_deref()
            .map(|text| {
                names.iter().position(|n| *n == text.trim()).ok_or_else(|| {
                    field_error(
                        name,
                        format!("{} is not one of {}", shown(text), names.join(", ")),
                    )
                })
            })
            .transpose()
    };
    let scopes: Vec<&'static str> = Scope::VARIANTS.iter().map(|s| s.as_str()).collect();
    let peers: Vec<&'static str> = Peer::VARIANTS.iter().map(|p| p.as_str()).collect();
    let (since, until) = window(params.since.as_deref(), params.until.as_deref(), now)?;
    let mut filter = TrafficFilter::new(since, until);
    filter.vpc = search_id("vpc", params.vpc.as_deref(), "a VPC id")?;
    filter.subnet = search_id("subnet", params.subnet.as_deref(), "a subnet id")?;
    filter.src_subnet = search_id("src_subnet", params.src_subnet.as_deref(), "a subnet id")?;
    filter.dst_subnet = search_id("dst_subnet", params.dst_subnet.as_deref(), "a subnet id")?;
    filter.scope = named("scope", &params.scope, &scopes)?.map(|i| Scope::VARIANTS[i]);
    filter.peer = named("peer", &params.peer, &peers)?.map(|i| Peer::VARIANTS[i]);
    filter.fl_action = fl_action(params.fl_action.as_deref())?;
    filter.talkers = whole_number(
        "talkers",
        params.talkers.as_deref(),
        i64::from(filter.talkers),
        1..=i64::from(MAX_TALKERS),
    )? as u32;
    if let Some(text) = params.step.as_deref() {
        let smallest = series_step(since, until);
        filter.bucket = text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| n % 60 == 0 && (smallest..=86_400).contains(n))
            .ok_or_else(|| {
                field_error(
                    "step",
                    format!("{} is not a whole number of minutes, in seconds, from {smallest} (at most {MAX_SERIES_POINTS} points over this window) to 86400", shown(text)),
                )
            })?;
    }
    Ok(filter)
}

/// `fl_action` as given (any case), or none.
pub(crate) fn fl_action(given: Option<&str>) -> Result<Option<&'static str>, Failure> {
    match given.map(str::trim) {
        Some(text) if text.eq_ignore_ascii_case("accept") => Ok(Some("ACCEPT")),
        Some(text) if text.eq_ignore_ascii_case("reject") => Ok(Some("REJECT")),
        Some(text) => Err(field_error(
            "fl_action",
            format!("{} is not ACCEPT or REJECT", shown(text)),
        )),
        None => Ok(None),
    }
}

/// The query parameters of `/v1/traffic`.
#[derive(Debug, Default, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrafficParams {
    /// A VPC id: traffic with either end in it.
    pub(crate) vpc: Option<String>,
    /// A subnet id: traffic with either end in it.
    pub(crate) subnet: Option<String>,
    /// A subnet id: traffic from it (with `dst_subnet`: one cell of the subnet matrix).
    pub(crate) src_subnet: Option<String>,
    /// A subnet id: traffic to it.
    pub(crate) dst_subnet: Option<String>,
    /// The traffic scope.
    #[param(value_type = Option<crate::core::engine::Scope>)]
    pub(crate) scope: Option<String>,
    /// What the other end is, seen from its VPC: same_vpc, other_vpc, private (an RFC 1918,
    /// 100.64.0.0/10, link-local or ULA address outside the known VPCs), internet, unknown.
    pub(crate) peer: Option<String>,
    /// The flow log's verdict: ACCEPT or REJECT (any case).
    pub(crate) fl_action: Option<String>,
    /// From (Unix seconds or RFC 3339); default: an hour before `until`.
    pub(crate) since: Option<String>,
    /// To (Unix seconds or RFC 3339); default: now. The span may be at most 30 days.
    pub(crate) until: Option<String>,
    /// Rows of top talkers, 1-1000 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub(crate) talkers: Option<String>,
    /// Talkers skipped first, most bytes first (0-9000, default 0): the next page of talkers.
    #[param(value_type = Option<u32>, minimum = 0, maximum = 9000)]
    pub(crate) talkers_offset: Option<String>,
    /// The time series' step, seconds: a whole number of minutes, at most a day, and at most
    /// 120 points over the window (default: the smallest such of 1, 5, 15, 30 minutes, 1, 3,
    /// 6 hours, a day).
    #[param(value_type = Option<u32>, minimum = 60, maximum = 86400)]
    pub(crate) step: Option<String>,
}

/// Most talkers ranked for one `/v1/traffic` page: its offset and its talkers together.
pub(crate) const MAX_TALKERS_RANKED: u32 = 10_000;

/// Most groups one `/v1/traffic/peers` answer lists.
pub(crate) const MAX_PEER_GROUPS: usize = 1000;

/// The query parameters of `/v1/traffic/peers` and `/v1/traffic/instances`.
#[derive(Debug, Default, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PeersParams {
    /// The VPC id (required by /v1/traffic/peers): traffic with either end in it.
    pub(crate) vpc: Option<String>,
    /// The traffic scope (`vpc_inbound`: where it comes from; `vpc_outbound`: where it goes).
    #[param(value_type = Option<crate::core::engine::Scope>)]
    pub(crate) scope: Option<String>,
    /// What the other end is: same_vpc, other_vpc, private, internet, unknown.
    pub(crate) peer: Option<String>,
    /// The flow log's verdict: ACCEPT or REJECT (any case).
    pub(crate) fl_action: Option<String>,
    /// From (Unix seconds or RFC 3339); default: an hour before `until`.
    pub(crate) since: Option<String>,
    /// To (Unix seconds or RFC 3339); default: now. The span may be at most 30 days.
    pub(crate) until: Option<String>,
    /// IPv4 networks at this many bits (1-32, default 24).
    #[param(value_type = Option<u8>, minimum = 1, maximum = 32)]
    pub(crate) prefix: Option<String>,
    /// IPv6 networks at this many bits (1-128, default 64).
    #[param(value_type = Option<u8>, minimum = 1, maximum = 128)]
    pub(crate) prefix6: Option<String>,
    /// Groups listed, most bytes first (1-1000, default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub(crate) limit: Option<String>,
    /// Groups skipped first (default 0): the next page starts at `offset` + `limit`.
    #[param(value_type = Option<u32>, minimum = 0)]
    pub(crate) offset: Option<String>,
}

/// The window a grouping covers and the conversations it grouped.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupedWindow {
    /// From, Unix seconds.
    pub since: i64,
    /// To, Unix seconds.
    pub until: i64,
    /// The VPC asked for.
    pub vpc: Option<String>,
    /// IPv4 prefix bits.
    pub prefix: u8,
    /// IPv6 prefix bits.
    pub prefix6: u8,
    /// Conversations grouped.
    pub conversations: usize,
    /// Whether they are every conversation of the window.
    pub complete: bool,
    /// Why not (absent when complete).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut: Option<String>,
    /// The first row's place among all, from 0.
    pub offset: usize,
}

/// `GET /v1/traffic/peers`: the VPC's traffic grouped by the other end.
#[derive(Debug, Serialize, ToSchema)]
pub struct PeersAnswer {
    /// The window and the conversations grouped.
    #[serde(flatten)]
    pub window: GroupedWindow,
    /// Groups in all (`groups` lists `limit` of them from `offset`).
    pub total_groups: usize,
    /// The groups, most bytes first.
    pub groups: Vec<crate::core::classify::peers::PeerGroup>,
}

/// `GET /v1/traffic/instances`: traffic grouped by instance pair.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstancesAnswer {
    /// The window and the conversations grouped.
    #[serde(flatten)]
    pub window: GroupedWindow,
    /// Pairs in all (`pairs` lists `limit` of them from `offset`).
    pub total_pairs: usize,
    /// The pairs, most bytes first.
    pub pairs: Vec<crate::core::classify::peers::InstancePair>,
}

super::request::query_params!(TrafficParams, PeersParams);

/// `GET /v1/traffic`: the traffic views of a VPC, a subnet or every VPC.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrafficAnswer {
    /// From, Unix seconds.
    pub since: i64,
    /// To, Unix seconds.
    pub until: i64,
    /// The time series' step, seconds.
    pub step: u32,
    /// The VPC asked for.
    pub vpc: Option<String>,
    /// The subnet asked for.
    pub subnet: Option<String>,
    /// The source subnet asked for.
    pub src_subnet: Option<String>,
    /// The destination subnet asked for.
    pub dst_subnet: Option<String>,
    /// The first talker's place among all, from 0.
    pub talkers_offset: u32,
    /// The talkers' addresses that have a name in the snapshot: the instance's, else the
    /// subnet's.
    pub names: std::collections::BTreeMap<String, String>,
    /// The scope asked for.
    pub scope: Option<&'static str>,
    /// The peer kind asked for.
    pub peer: Option<&'static str>,
    /// The verdict asked for.
    pub fl_action: Option<&'static str>,
    /// The views.
    #[serde(flatten)]
    pub view: TrafficView,
    /// The CLS search of these traffic records (CQL), to paste into the CLS console.
    pub query: String,
}
