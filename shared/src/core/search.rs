//! What a search of the records asks, in one validated shape both records stores answer: CLS
//! through `SearchLog` (`crate::adapters::tencent::cls_query`) and the embedded local database
//! (`crate::adapters::sqlite`). Every value here has been checked, so a store can put it into its
//! query language without further escaping decisions.

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
    #[error("{0:?} is neither an IP address nor a CIDR network (10.0.1.0/24)")]
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
