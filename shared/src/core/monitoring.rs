//! The per-VPC monitoring switches: a small JSON document (`monitoring.json`) beside the
//! snapshots in the snapshot store, changed through the lookup API with the admin token and read
//! by the audit function on its snapshot TTL.
//!
//! Changes are compare-and-swap: each is written once, create-only, as change number
//! `generation` (`monitoring/<generation>.json`), so two lookups switching at once cannot both
//! take the same number; the loser reads the winner's change and tries the next number.
//! `monitoring.json` is a copy of the latest change that saves readers a walk; a reader starts
//! there and reads forward while a next change exists, so a stale copy is never believed.
//!
//! A switch overrides `ESGFLOW_MONITORED_VPCS` for its VPC: `true` monitors it even when the list
//! leaves it out, `false` stops monitoring it even when the list (or its absence: every VPC)
//! covers it. A VPC without a switch follows the list.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::search::is_search_id;

/// The largest switches document read or written: room for 4,000 VPCs.
pub const MAX_SWITCHES_BYTES: usize = 256 * 1024;

/// The switches, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Switches {
    /// VPC id → monitored.
    pub vpcs: BTreeMap<String, bool>,
    /// When they last changed, Unix seconds.
    #[serde(default)]
    pub updated_at: Option<i64>,
    /// The change number: 0 for none yet, one more with each change.
    #[serde(default)]
    pub generation: u64,
    /// VPC id → its switch's last change: when, and who (a name the caller gave).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub changed: BTreeMap<String, SwitchChange>,
}

/// When a VPC's switch last changed, and who changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchChange {
    /// Unix seconds.
    pub at: i64,
    /// The name the caller gave (the admin token is shared), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// The longest name a switch change keeps.
pub const MAX_CHANGED_BY_CHARS: usize = 64;

/// Whether `name` may be kept as who changed a switch: 1 to 64 letters, digits, spaces and
/// `.-_@()`, nothing a page or a log could read as markup or a control.
pub fn is_changer_name(name: &str) -> bool {
    let chars = name.chars().count();
    (1..=MAX_CHANGED_BY_CHARS).contains(&chars)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || " .-_@()".contains(c))
}

/// The most changes a reader walks past `monitoring.json` before giving up: the copy is rewritten
/// after every change, so more means the copy has not been written for that long.
pub const MAX_CHANGES_AHEAD: u64 = 256;

/// The create-only object of change `generation`, beside `monitoring.json`.
pub fn change_object(generation: u64) -> String {
    format!("monitoring/{generation}.json")
}

impl Switches {
    /// Reads a stored document: bounded in size, every key a plain VPC id.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > MAX_SWITCHES_BYTES {
            return Err(format!(
                "the monitoring switches are {} bytes, over the {MAX_SWITCHES_BYTES}-byte cap",
                bytes.len()
            ));
        }
        let switches: Switches = serde_json::from_slice(bytes)
            .map_err(|e| format!("the monitoring switches are not valid: {e}"))?;
        if let Some(bad) = switches
            .vpcs
            .keys()
            .chain(switches.changed.keys())
            .find(|id| !is_search_id(id))
        {
            return Err(format!(
                "the monitoring switches name {bad:?}, which is not a VPC id"
            ));
        }
        if let Some(bad) = switches
            .changed
            .values()
            .filter_map(|c| c.by.as_deref())
            .find(|by| !is_changer_name(by))
        {
            return Err(format!(
                "the monitoring switches name {bad:?} as who changed one, which is not a plain name"
            ));
        }
        Ok(switches)
    }

    /// The document to store.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("switches serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_read_strictly_and_written_back_the_same() {
        let read =
            Switches::parse(br#"{"vpcs": {"vpc-a": true, "vpc-b": false}, "updated_at": 5}"#)
                .unwrap();
        assert!(!read.vpcs["vpc-b"]);
        assert_eq!(Switches::parse(&read.to_json()).unwrap(), read);
        for (bad, named) in [
            (&br#"{"vpcs": {"vpc a": true}}"#[..], "not a VPC id"),
            (br#"{"vpcs": {"vpc-a": "yes"}}"#, "not valid"),
            (br#"{"vpcs": {}, "extra": 1}"#, "not valid"),
            (
                br#"{"vpcs": {}, "changed": {"vpc-a": {"at": 1, "by": "<b>"}}}"#,
                "not a plain name",
            ),
            (
                br#"{"vpcs": {}, "changed": {"vpc a": {"at": 1}}}"#,
                "not a VPC id",
            ),
            (b"[", "not valid"),
        ] {
            let err = Switches::parse(bad).unwrap_err();
            assert!(err.contains(named), "{err}");
        }
        let huge = format!(
            r#"{{"vpcs": {{"v": true}}, "pad": "{}"}}"#,
            "x".repeat(MAX_SWITCHES_BYTES)
        );
        assert!(Switches::parse(huge.as_bytes())
            .unwrap_err()
            .contains("cap"));
    }
}
