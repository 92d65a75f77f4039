//! Resolution of a rule endpoint (an address, a template, an instance, a tag…) to the addresses
//! the snapshot records for it. The engine compiles rules through it; the import checks with it
//! which rules can be resolved at all.

use super::values::AddressSet;
use super::{Endpoint, EndpointKind, Snapshot};

/// An endpoint as messages name it: `net 10.0.0.0/8`, `template ipm-1`.
pub fn describe_endpoint(endpoint: &Endpoint) -> String {
    match endpoint.kind {
        EndpointKind::Net => format!("net {}", endpoint.content),
        kind => format!("{} {}", kind.as_str(), endpoint.content),
    }
}

/// Resolves a rule endpoint to addresses from the snapshot. `Err` says why it cannot be.
pub(crate) fn resolve_endpoint(
    snapshot: &Snapshot,
    endpoint: &Endpoint,
) -> Result<AddressSet, String> {
    let content = endpoint.content.as_str();
    let mut set = AddressSet::default();
    let add_all = |set: &mut AddressSet, items: &[String], what: &str| -> Result<(), String> {
        for item in items {
            set.add(item).map_err(|e| format!("{what}: {e}"))?;
        }
        Ok(())
    };
    add_all(&mut set, &endpoint.resolved, "resolved addresses")?;
    match endpoint.kind {
        EndpointKind::Net => {
            for item in content.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                set.add(item)?;
            }
        }
        EndpointKind::Template => {
            let ids: Vec<&str> = match snapshot.address_template_groups.get(content) {
                Some(group) => group.members.iter().map(String::as_str).collect(),
                None => vec![content],
            };
            for id in ids {
                match snapshot.address_templates.get(id) {
                    Some(template) => {
                        add_all(&mut set, &template.addresses, &format!("template {id}"))?
                    }
                    None if endpoint.resolved.is_empty() => {
                        return Err(format!("template {id} is not in the snapshot"))
                    }
                    None => {}
                }
            }
        }
        EndpointKind::Instance => {
            if let Some(vpc) = snapshot.vpcs.iter().find(|v| v.id == content) {
                add_all(&mut set, &vpc.cidrs, content)?;
            }
            if let Some(subnet) = snapshot.subnets.iter().find(|s| s.id == content) {
                add_all(&mut set, &subnet.cidrs, content)?;
            }
            for eni in &snapshot.enis {
                if eni.id == content || eni.instance_id.as_deref() == Some(content) {
                    add_all(&mut set, &eni.ips, content)?;
                }
            }
        }
        EndpointKind::ResourceGroup
        | EndpointKind::Tag
        | EndpointKind::Region
        | EndpointKind::Domain
        | EndpointKind::Unknown => {}
    }
    if let Some(members) = snapshot
        .members
        .get(&format!("{}:{content}", endpoint.kind.as_str()))
    {
        add_all(&mut set, members, "members")?;
    }
    set.normalize();
    if set.is_empty() {
        return Err(format!(
            "{} has no members in the snapshot",
            describe_endpoint(endpoint)
        ));
    }
    Ok(set)
}
