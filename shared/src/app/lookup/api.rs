//! The OpenAPI document of the lookup API, generated from the routes' annotations
//! (each resource module's) and the request and answer types each resource module owns, with utoipa.
//! `openapi.json` in the repository is this document; `tests/openapi.rs` fails when they differ
//! (`UPDATE_OPENAPI=1 cargo test --test integration openapi::` rewrites it).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{explain, health, hits, rules, snapshot, traffic, vpcs, whatif};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "esgflow lookup API",
        description = "ESG flow logs and on-demand answers from the ESG rule snapshot: search the hit records by source and destination, explain a flow or a record, traffic views per VPC, what proposed rule edits would do to the recorded traffic, rules with hit counters and hygiene, VPCs with their monitoring switches. Every route but `/` and `/v1/healthz` needs `Authorization: Bearer <token>`; changing a monitoring switch needs the admin token."
    ),
    paths(
        health::page,
        health::healthz,
        explain::explain_flows,
        snapshot::snapshot,
        rules::top_rules,
        rules::rules,
        rules::one_rule,
        hits::hits,
        hits::export,
        hits::one_hit,
        traffic::traffic,
        traffic::peers,
        traffic::instances,
        vpcs::vpcs,
        vpcs::switch,
        whatif::what_if,
        whatif::observe_as_drop,
        whatif::tighten,
    ),
    security(("bearer" = [])),
    modifiers(&Schemes)
)]
pub struct ApiDoc;

/// The two bearer schemes: the lookup token and the admin token.
struct Schemes;

impl Modify for Schemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        let mut admin = Http::new(HttpAuthScheme::Bearer);
        admin.description =
            Some("ESGFLOW_ADMIN_TOKEN: only for changing monitoring switches".to_string());
        components.add_security_scheme("admin", SecurityScheme::Http(admin));
    }
}

/// The document as `openapi.json` holds it: pretty JSON and a final newline.
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serializes");
    text.push('\n');
    text
}
