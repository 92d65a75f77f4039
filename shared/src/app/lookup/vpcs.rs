//! `GET /v1/vpcs` (every VPC with its monitoring state and flow-log coverage) and
//! `PUT /v1/vpcs/{id}/monitoring` (one switch, with the admin token).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;

use super::request::{body_json, Answer};
use super::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /v1/vpcs`.
#[utoipa::path(get, path = "/v1/vpcs", tag = "vpcs",
    summary = "Every VPC of the snapshot with its monitoring state and flow-log coverage",
    responses(
        (status = 200, description = "the VPCs", body = VpcsAnswer),
        (status = 400, description = "a query parameter (the route reads none)", body = ErrorBody), (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 405, description = "not GET", body = ErrorBody), (status = 503, description = "no snapshot", body = ErrorBody),
    ))]
pub(crate) async fn vpcs(
    State(lookup): State<Lookup>,
    call: Invocation,
    _: Query<NoParameters>,
) -> Answer<VpcsAnswer> {
    lookup.vpc_states(call.deadline).await.map(Json)
}

/// `PUT /v1/vpcs/{id}/monitoring`.
#[utoipa::path(put, path = "/v1/vpcs/{id}/monitoring", tag = "vpcs",
    summary = "Switch monitoring of one VPC on or off (null: back to the monitored list)",
    description = "Needs the admin token; audit applies it within its snapshot TTL.",
    security(("admin" = [])),
    params(("id" = String, Path, description = "the VPC id")),
    request_body = SwitchRequest,
    responses(
        (status = 200, description = "the VPC's new state", body = SwitchAnswer),
        (status = 400, description = "the body is not {\"monitored\": true|false|null}", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 403, description = "no admin token is configured: the switches are read-only (`switches_read_only`)", body = ErrorBody),
        (status = 404, description = "the snapshot has no such VPC (`unknown_vpc`)", body = ErrorBody), (status = 405, description = "not PUT", body = ErrorBody),
        (status = 409, description = "other switch changes came first five times in a row; nothing was changed (`switch_conflict`)", body = ErrorBody),
        (status = 413, description = "the body is over 1024 bytes, or the switches document would exceed its cap", body = ErrorBody),
        (status = 502, description = "the snapshot store failed (`switches_unavailable`)", body = ErrorBody), (status = 503, description = "no snapshot", body = ErrorBody),
    ))]
pub(crate) async fn switch(
    State(lookup): State<Lookup>,
    call: Invocation,
    Path(vpc): Path<String>,
    _: Query<NoParameters>,
    body: Bytes,
) -> Answer<SwitchAnswer> {
    lookup.switch(&vpc, &body, call.deadline).await.map(Json)
}

impl Lookup {
    /// Every VPC of the snapshot with its monitoring state, and the ids the list or the
    /// switches name that the snapshot does not have.
    pub(crate) async fn vpc_states(&self, deadline: Instant) -> Result<VpcsAnswer, Failure> {
        let engine = self.engine(deadline).await?;
        let (switches, problem) = self
            .snapshots
            .lock()
            .await
            .switches_by(
                Instant::now(),
                crate::app::snapshot_cache::load_by(deadline),
            )
            .await;
        let monitored = self.monitored.with_switches(&switches);
        let listed = |id: &str| match &self.monitored {
            Monitored::All => true,
            Monitored::Only(vpcs) => vpcs.contains(id),
            Monitored::Switched { listed, .. } => listed.as_ref().is_none_or(|l| l.contains(id)),
        };
        // Flow-log coverage: the snapshot's ENIs that recorded traffic in the last hour.
        let now = chrono::Utc::now().timestamp();
        let recording = match &self.store {
            None => Err(NO_STORE.to_string()),
            Some(store) => store
                .recording_enis(now - COVERAGE_SECONDS, now, deadline)
                .await
                .map_err(|failure| match failure {
                    StoreFailure::Failed { message, .. } => message,
                    StoreFailure::CursorExpired => "the records search expired".to_string(),
                }),
        };
        let vpcs: Vec<VpcState> = engine
            .topology()
            .vpc_list()
            .into_iter()
            .map(|vpc| {
                let coverage = match &recording {
                    Ok(seen) => Coverage {
                        available: true,
                        enis_recording: Some(vpc.enis.iter().filter(|e| seen.contains(*e)).count()),
                        enis: Some(vpc.enis.len()),
                        window_seconds: Some(COVERAGE_SECONDS),
                        reason: None,
                    },
                    Err(reason) => Coverage {
                        available: false,
                        enis_recording: None,
                        enis: None,
                        window_seconds: None,
                        reason: Some(reason.clone()),
                    },
                };
                VpcState {
                    monitored: monitored.is_on(&vpc.id),
                    switch: switches.vpcs.get(&vpc.id).copied(),
                    listed: listed(&vpc.id),
                    changed_at: switches.changed.get(&vpc.id).map(|c| c.at),
                    changed_by: switches.changed.get(&vpc.id).and_then(|c| c.by.clone()),
                    id: vpc.id,
                    name: vpc.name,
                    subnets: vpc.subnets,
                    subnet_names: vpc
                        .subnet_names
                        .into_iter()
                        .map(|(id, name)| SubnetName { id, name })
                        .collect(),
                    enis: vpc.enis.len(),
                    coverage,
                }
            })
            .collect();
        Ok(VpcsAnswer {
            vpcs,
            unknown: monitored.unknown(engine.topology()),
            every_vpc_listed: matches!(self.monitored, Monitored::All),
            switches_updated_at: switches.updated_at,
            switches_error: problem,
            switches_writable: self.admin_token.is_some(),
            takes_effect_within_seconds: self.snapshot_ttl.as_secs(),
            snapshot_version: engine.version().to_string(),
        })
    }

    /// `PUT /v1/vpcs/{id}/monitoring` with `{"monitored": true|false|null}` and the admin token:
    /// switches the VPC's monitoring on or off (null: back to the list), in the snapshot store.
    pub(crate) async fn switch(
        &self,
        vpc: &str,
        body: &[u8],
        deadline: Instant,
    ) -> Result<SwitchAnswer, Failure> {
        if body.len() > 1024 {
            return Err(fail(
                413,
                "payload_too_large",
                "the body is over 1024 bytes: send {\"monitored\": true|false|null}",
            ));
        }
        let change: SwitchRequest = body_json(
            body,
            "invalid_body",
            ": send {\"monitored\": true|false|null}",
        )?;
        if let Some(by) = change.by.as_deref() {
            if !crate::core::monitoring::is_changer_name(by) {
                return Err(field_error(
                    "by",
                    format!(
                        "{} is not a plain name (1-64 letters, digits, spaces and .-_@())",
                        shown(by)
                    ),
                ));
            }
        }
        let engine = self.engine(deadline).await?;
        if !is_search_id(vpc) || !engine.topology().has_vpc(vpc) {
            return Err(fail(
                404,
                "unknown_vpc",
                format!("the snapshot has no VPC {vpc:?}"),
            ));
        }
        let mut cache = self.snapshots.lock().await;
        let unavailable =
            |e: crate::core::ports::StoreError| fail(502, "switches_unavailable", e.to_string());
        let mut saved = false;
        for _ in 0..SWITCH_ATTEMPTS {
            // Start from what the store holds now, not from a copy up to a TTL old.
            let mut switches = cache.switches_now(deadline).await.map_err(unavailable)?;
            match change.monitored {
                Some(on) => switches.vpcs.insert(vpc.to_string(), on),
                None => switches.vpcs.remove(vpc),
            };
            let now = chrono::Utc::now().timestamp();
            switches.updated_at = Some(now);
            switches.changed.insert(
                vpc.to_string(),
                crate::core::monitoring::SwitchChange {
                    at: now,
                    by: change.by.clone(),
                },
            );
            switches.generation += 1;
            if switches.to_json().len() > crate::core::monitoring::MAX_SWITCHES_BYTES {
                return Err(fail(
                    413,
                    "too_many_switches",
                    "the switches document would exceed its size cap: clear switches first",
                ));
            }
            saved = cache
                .save_switches(&switches, deadline)
                .await
                .map_err(unavailable)?;
            if saved {
                break;
            }
            tracing::info!(
                vpc,
                "another switch change came first; applying this one after it"
            );
        }
        if !saved {
            return Err(fail(
                409,
                "switch_conflict",
                format!("other switch changes came first {SWITCH_ATTEMPTS} times in a row: nothing was changed, try again"),
            ));
        }
        drop(cache);
        tracing::info!(vpc, monitored = ?change.monitored, "monitoring switch changed");
        let states = self.vpc_states(deadline).await?;
        let state = states
            .vpcs
            .into_iter()
            .find(|v| v.id == vpc)
            .ok_or_else(|| {
                fail(
                    404,
                    "unknown_vpc",
                    format!("the snapshot has no VPC {vpc:?}"),
                )
            })?;
        Ok(SwitchAnswer {
            vpc: state,
            takes_effect_within_seconds: self.snapshot_ttl.as_secs(),
        })
    }
}

/// How many times a switch change is tried when other changes keep coming first.
const SWITCH_ATTEMPTS: usize = 5;

/// The window of flow-log coverage in `/v1/vpcs`: ENIs that recorded traffic in the last hour.
pub(crate) const COVERAGE_SECONDS: i64 = 3600;

/// A VPC's flow-log coverage: of its ENIs in the snapshot, how many recorded traffic in the last
/// hour (`available` false with a `reason` when there is no records store or it failed).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Coverage {
    /// Whether coverage could be read.
    pub available: bool,
    /// ENIs with traffic records in the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enis_recording: Option<usize>,
    /// ENIs of the VPC in the snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enis: Option<usize>,
    /// The window, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<i64>,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A subnet's id and name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubnetName {
    /// `subnet-…`.
    pub id: String,
    /// Its name, when the snapshot has one.
    pub name: Option<String>,
}

/// A VPC with its monitoring state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VpcState {
    /// VPC id.
    pub id: String,
    /// Its name, when the snapshot has one.
    pub name: Option<String>,
    /// Its subnets.
    pub subnets: usize,
    /// Its subnets' ids and names, by id.
    pub subnet_names: Vec<SubnetName>,
    /// Its ENIs.
    pub enis: usize,
    /// Whether audit judges flows touching it.
    pub monitored: bool,
    /// Its monitoring switch (null: none; the list applies).
    pub switch: Option<bool>,
    /// Whether the monitored VPC list covers it (every VPC when the list is empty).
    pub listed: bool,
    /// When its switch last changed, Unix seconds (null: never through the API).
    pub changed_at: Option<i64>,
    /// Who changed it last, as they named themselves (null: no name given).
    pub changed_by: Option<String>,
    /// Its flow-log coverage.
    pub coverage: Coverage,
}

/// `GET /v1/vpcs`: every VPC of the snapshot with its monitoring state.
#[derive(Debug, Serialize, ToSchema)]
pub struct VpcsAnswer {
    /// The VPCs.
    pub vpcs: Vec<VpcState>,
    /// Ids the monitored list or a switch names that the snapshot has no VPC for.
    pub unknown: Vec<String>,
    /// Whether no monitored list is set (every VPC is listed).
    pub every_vpc_listed: bool,
    /// When a switch last changed, Unix seconds.
    pub switches_updated_at: Option<i64>,
    /// Why the switches could not be read.
    pub switches_error: Option<String>,
    /// Whether an admin token is configured.
    pub switches_writable: bool,
    /// How soon audit applies a change (its snapshot TTL).
    pub takes_effect_within_seconds: u64,
    /// The snapshot the VPCs are read from.
    pub snapshot_version: String,
}

/// The body of `PUT /v1/vpcs/{id}/monitoring`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SwitchRequest {
    /// On, off, or null: back to the monitored list.
    pub monitored: Option<bool>,
    /// Who makes the change, kept with it (the admin token is shared): 1-64 letters, digits,
    /// spaces and `.-_@()`.
    #[serde(default)]
    pub by: Option<String>,
}

/// `PUT /v1/vpcs/{id}/monitoring`: the VPC's new state.
#[derive(Debug, Serialize, ToSchema)]
pub struct SwitchAnswer {
    /// The VPC.
    pub vpc: VpcState,
    /// How soon audit applies the change.
    pub takes_effect_within_seconds: u64,
}
