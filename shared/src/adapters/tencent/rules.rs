//! Building a snapshot from the live Cloud Firewall and VPC APIs. The builder only fetches: every
//! page of every action is handed, as the API returned it, to the same importer that builds
//! snapshots from `tccli` exports ([`import_documents`]), so both paths give
//! the same snapshot from the same data.
//!
//! Calls (<https://www.tencentcloud.com/document/api/1160/51369>, tccli `vpc/v20170312/api.json`): cfw `DescribeEnterpriseSecurityGroupRule` (PageNo/
//! PageSize ≤ 50, 20 req/s), `DescribeEnterpriseSecurityGroupRuleList` (resolved addresses),
//! `DescribeSecurityGroupList` (old ESG, both directions, in each region of
//! `old_esg_regions`); vpc `DescribeAddressTemplates`,
//! `DescribeAddressTemplateGroups`, `DescribeServiceTemplates`, `DescribeServiceTemplateGroups`
//! (in the template region), `DescribeVpcs`, `DescribeSubnets`, `DescribeNetworkInterfaces`
//! (only the monitored VPCs when a list is given); cvm `DescribeInstances` for instance names
//! (tccli `cvm/v20170312/api.json`), which a role without `cvm:DescribeInstances` skips with a
//! warning.

use std::time::Instant;

use serde_json::{json, Value};

use crate::adapters::tencent::api::{
    self, ApiClient, ApiError, Page, PageBudget, Paging, INCOMPLETE,
};
use crate::core::snapshot::Snapshot;
use crate::core::snapshot::{import_each, refuse_mostly_unreadable, ImportError, Imported};

/// cfw API version.
pub(crate) const CFW_VERSION: &str = "2019-09-04";
/// vpc API version.
pub(crate) const VPC_VERSION: &str = "2017-03-12";
/// cvm API version.
pub(crate) const CVM_VERSION: &str = "2017-03-12";
/// The documented rate limit of `DescribeEnterpriseSecurityGroupRule`
/// (<https://www.tencentcloud.com/document/api/1160/51369>) and of
/// `DescribeEnterpriseSecurityGroupRuleList` (<https://cloud.tencent.com/document/api/1132/110987>).
pub(crate) const RULES_PER_SECOND: u32 = 20;

/// What to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveOptions {
    /// VPCs to describe (empty: all).
    pub vpcs: Vec<String>,
    /// Region of the address and service templates ESG rules refer to.
    pub template_region: String,
    /// Regions whose old-ESG rules are read (empty: the old ESG is not read).
    pub old_esg_regions: Vec<String>,
}

/// Building failed; nothing is published.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The answers could not be made into a snapshot.
    #[error(transparent)]
    Import(#[from] ImportError),
}

struct Listing {
    service: &'static str,
    version: &'static str,
    action: &'static str,
    body: Value,
    paging: Paging,
    list_key: &'static str,
    /// The member that identifies an item (tccli definitions of each action's item).
    id_key: &'static str,
    templates: bool,
    /// Request members copied into every page, so the importer knows what the page is about
    /// (the old ESG's `Area`: its answer does not name the region).
    echo: &'static [&'static str],
    /// Only names come from it: when the role may not call it, the snapshot is built without
    /// them, with a warning.
    names_only: bool,
}

/// A refusal by CAM: the caller's role does not allow the action (API 3.0 common error
/// `AuthFailure.UnauthorizedOperation`, or a service's own `UnauthorizedOperation…`).
fn not_allowed(error: &ApiError) -> bool {
    error.code == "AuthFailure.UnauthorizedOperation"
        || error.code == "UnauthorizedOperation"
        || error.code.starts_with("UnauthorizedOperation.")
}

fn listings(options: &LiveOptions) -> Vec<Listing> {
    let cfw = |action, body, paging, list_key, id_key| Listing {
        service: "cfw",
        version: CFW_VERSION,
        action,
        body,
        paging,
        list_key,
        id_key,
        templates: false,
        echo: &[],
        names_only: false,
    };
    let vpc = |action, body, paging, (list_key, id_key), templates| Listing {
        service: "vpc",
        version: VPC_VERSION,
        action,
        body,
        paging,
        list_key,
        id_key,
        templates,
        echo: &[],
        names_only: false,
    };
    let filters = if options.vpcs.is_empty() {
        json!({})
    } else {
        json!({"Filters": [{"Name": "vpc-id", "Values": options.vpcs}]})
    };
    let strings = Paging::Offset {
        limit: 100,
        strings: true,
    };
    let numbers = Paging::Offset {
        limit: 100,
        strings: false,
    };
    let mut all = vec![
        cfw(
            "DescribeEnterpriseSecurityGroupRule",
            json!({}),
            Paging::PageNo { size: 50 },
            "Rules",
            "Id",
        ),
        cfw(
            "DescribeEnterpriseSecurityGroupRuleList",
            json!({}),
            Paging::OffsetOrPage { limit: 100 },
            "Data",
            "RuleUuid",
        ),
    ];
    for area in &options.old_esg_regions {
        for direction in [1, 0] {
            all.push(Listing {
                echo: &["Area"],
                ..cfw(
                    "DescribeSecurityGroupList",
                    // Both members are required, `Direction` a number (0 outbound, 1 inbound)
                    // and `Area` the region whose old-ESG rules are listed (tccli
                    // `cfw/v20190904/api.json`, `DescribeSecurityGroupListRequest`).
                    json!({"Direction": direction, "Area": area}),
                    numbers,
                    "Data",
                    "Id",
                )
            });
        }
    }
    all.extend([
        vpc(
            "DescribeAddressTemplates",
            json!({}),
            strings,
            ("AddressTemplateSet", "AddressTemplateId"),
            true,
        ),
        vpc(
            "DescribeAddressTemplateGroups",
            json!({}),
            strings,
            ("AddressTemplateGroupSet", "AddressTemplateGroupId"),
            true,
        ),
        vpc(
            "DescribeServiceTemplates",
            json!({}),
            strings,
            ("ServiceTemplateSet", "ServiceTemplateId"),
            true,
        ),
        vpc(
            "DescribeServiceTemplateGroups",
            json!({}),
            strings,
            ("ServiceTemplateGroupSet", "ServiceTemplateGroupId"),
            true,
        ),
        vpc(
            "DescribeVpcs",
            filters.clone(),
            strings,
            ("VpcSet", "VpcId"),
            false,
        ),
        vpc(
            "DescribeSubnets",
            filters.clone(),
            strings,
            ("SubnetSet", "SubnetId"),
            false,
        ),
        vpc(
            "DescribeNetworkInterfaces",
            filters.clone(),
            numbers,
            ("NetworkInterfaceSet", "NetworkInterfaceId"),
            false,
        ),
        // `Offset`/`Limit` (≤ 100) as numbers; `vpc-id` is one of its documented filters.
        Listing {
            service: "cvm",
            version: CVM_VERSION,
            action: "DescribeInstances",
            body: filters,
            paging: numbers,
            list_key: "InstanceSet",
            id_key: "InstanceId",
            templates: false,
            echo: &[],
            names_only: true,
        },
    ]);
    all
}

/// Request members copied into a page before it is imported, so the importer knows what the
/// page is about (the old ESG's `Area`: its answer does not name the region).
type Echo = Vec<(&'static str, Value)>;

/// What the listings answered: the pages, and what could not be read but was not needed.
pub(crate) struct Fetched {
    /// Every page, named `<Action>[<body>]#<page>`, with the request members to copy into it.
    pub documents: Vec<(String, Page, Echo)>,
    /// Listings skipped (names the role may not read).
    pub warnings: Vec<String>,
}

/// Fetches every page of every listing. The listings page at the same time, each action at its
/// own documented pace: at 20,000 rules the rule listing alone is 400 pages at 20 a second, and
/// the others (the resolved-address listing is another 200) fit inside that time instead of
/// after it. The pages come back in the listings' order whatever order they arrived in.
pub(crate) async fn fetch_documents(
    client: &ApiClient,
    options: &LiveOptions,
    budget: PageBudget,
    deadline: Instant,
) -> Result<Fetched, ApiError> {
    let budget = &budget;
    let client = client
        .clone()
        .with_rate_limit("DescribeEnterpriseSecurityGroupRule", RULES_PER_SECOND)
        .with_rate_limit("DescribeEnterpriseSecurityGroupRuleList", RULES_PER_SECOND);
    let templates = client.in_region(&options.template_region);
    let listings = listings(options);
    // A listing the role may not read, where that only costs names, is `None`; any other
    // error ends every listing at once.
    let fetches = listings.iter().map(|listing| {
        let client = if listing.templates {
            &templates
        } else {
            &client
        };
        async move {
            let answer = client
                .pages(
                    &api::Listing {
                        service: listing.service,
                        version: listing.version,
                        action: listing.action,
                        body: &listing.body,
                        paging: listing.paging,
                        list_key: listing.list_key,
                        id_key: listing.id_key,
                    },
                    budget,
                    deadline,
                )
                .await;
            match answer {
                Err(error) if listing.names_only && not_allowed(&error) => Ok(Err(error)),
                answer => answer.map(Ok),
            }
        }
    });
    let answers = futures_util::future::try_join_all(fetches).await?;
    let mut documents = Vec::new();
    let mut warnings = Vec::new();
    for (listing, answer) in listings.iter().zip(answers) {
        let pages = match answer {
            Ok(pages) => pages,
            Err(error) => {
                warnings.push(format!(
                    "{}: not allowed ({}), so records carry no instance names: allow {}:{} to the sync role",
                    listing.action, error.code, listing.service, listing.action
                ));
                continue;
            }
        };
        let echo: Echo = listing
            .echo
            .iter()
            .filter_map(|key| Some((*key, listing.body.get(*key)?.clone())))
            .collect();
        for (i, page) in pages.into_iter().enumerate() {
            documents.push((
                format!("{}{}#{}", listing.action, listing.body, i + 1),
                page,
                echo.clone(),
            ));
        }
    }
    Ok(Fetched {
        documents,
        warnings,
    })
}

/// Builds the snapshot from the live APIs, holding at most `page_bytes` of answers at once.
/// When the rules changed while they were read (a listing answered part of itself, or two
/// answers hold differing copies of a rule), everything is read once more; a listing still
/// incomplete then fails the build, and differing copies still there are kept by the
/// importer's order-independent choice, with a warning.
pub(crate) async fn build_live(
    client: &ApiClient,
    options: &LiveOptions,
    taken_at: &str,
    page_bytes: usize,
    deadline: Instant,
) -> Result<Snapshot, LiveError> {
    let fetch = || fetch_documents(client, options, PageBudget::new(page_bytes), deadline);
    match fetch().await {
        Ok(fetched) => {
            let imported = import(&fetched, taken_at)?;
            if imported.conflicting.is_empty() {
                return Ok(with_warnings(imported.snapshot, fetched.warnings, options));
            }
            tracing::warn!(rules = ?imported.conflicting, "rules changed while they were read; reading once more");
        }
        Err(error) if error.code == INCOMPLETE => {
            tracing::warn!(%error, "a listing answered part of itself; reading once more");
        }
        Err(error) => return Err(error.into()),
    }
    let fetched = fetch().await?;
    let snapshot = import(&fetched, taken_at)?.snapshot;
    Ok(with_warnings(snapshot, fetched.warnings, options))
}

/// The snapshot in the fetched pages, parsed one page at a time, each with its echoed members.
fn import(fetched: &Fetched, taken_at: &str) -> Result<Imported, ImportError> {
    let pages = fetched.documents.iter().map(|(name, page, echo)| {
        let mut page: Value =
            serde_json::from_str(page.get()).expect("a page kept as JSON text reads back");
        if let Some(fields) = page.as_object_mut() {
            for (key, value) in echo {
                fields.insert((*key).to_string(), value.clone());
            }
        }
        (name, page)
    });
    let imported = import_each(pages, taken_at)?;
    refuse_mostly_unreadable(&imported.snapshot)?;
    Ok(imported)
}

/// The snapshot with the listings' warnings added, and one for each monitored VPC that
/// `DescribeVpcs` did not return (warnings are not part of the version).
fn with_warnings(mut snapshot: Snapshot, warnings: Vec<String>, options: &LiveOptions) -> Snapshot {
    for vpc in &options.vpcs {
        if !snapshot.vpcs.iter().any(|v| &v.id == vpc) {
            snapshot.warnings.push(format!(
                "monitored VPC {vpc} (ESGFLOW_MONITORED_VPCS) was not found by DescribeVpcs in this region: its flows are never judged"
            ));
        }
    }
    snapshot.warnings.extend(warnings);
    snapshot.warnings.sort();
    snapshot.warnings.dedup();
    snapshot
}
