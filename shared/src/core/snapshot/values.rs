//! Parsers for the value syntaxes rules use: ports (`80`, `80/90`, `80-90`, `80,443`, `-1/-1`,
//! `all`), protocols (`ANY`, `TCP`, `UDP`, `ICMP`, `ICMPv6`), addresses (IP, CIDR, `a-b` range,
//! comma lists) and service-template entries (`tcp:80`, `udp:53-60`, `icmp`, `all`).
//! ESG writes port ranges with a slash and VPC security groups with a hyphen; both are accepted.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Most items a comma-separated port list holds in rules the ESG API creates (its documented
/// limit, `SecurityGroupRule.Port` in tccli `cfw/v20190904/api.json`); the importer warns past it.
pub(crate) const DOCUMENTED_PORT_ITEMS: usize = 15;

/// Most items a port list may hold at all: a bound on work, far past anything the API makes.
const MAX_PORT_ITEMS: usize = 1_024;

/// A rule's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Every protocol.
    Any,
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP (1).
    Icmp,
    /// ICMPv6 (58).
    Icmpv6,
    /// GRE (47), which VPC service templates may hold (tccli `vpc/v20170312/api.json`,
    /// `CreateServiceTemplateRequest.Services`).
    Gre,
}

impl Protocol {
    /// Parses `ANY`/`ALL`, `TCP`, `UDP`, `ICMP`, `ICMPv6`, `GRE` (any case).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_uppercase().as_str() {
            "ANY" | "ALL" | "-1" => Ok(Protocol::Any),
            "TCP" | "6" => Ok(Protocol::Tcp),
            "UDP" | "17" => Ok(Protocol::Udp),
            "ICMP" | "1" => Ok(Protocol::Icmp),
            "ICMPV6" | "58" => Ok(Protocol::Icmpv6),
            "GRE" | "47" => Ok(Protocol::Gre),
            other => Err(format!(
                "protocol {other:?} is not ANY, TCP, UDP, ICMP, ICMPv6 or GRE"
            )),
        }
    }

    /// The IANA number (`None` for ANY).
    pub fn number(self) -> Option<u8> {
        match self {
            Protocol::Any => None,
            Protocol::Tcp => Some(6),
            Protocol::Udp => Some(17),
            Protocol::Icmp => Some(1),
            Protocol::Icmpv6 => Some(58),
            Protocol::Gre => Some(47),
        }
    }

    /// Whether the protocol has ports a rule can name.
    pub(crate) fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp)
    }

    /// Upper-case name as the API writes it.
    pub fn name(self) -> &'static str {
        match self.number() {
            None => "ANY",
            Some(number) => crate::core::flowlog::protocol::known_name(number)
                .expect("every protocol a rule can name has a name"),
        }
    }
}

/// A set of ports: inclusive ranges, sorted and merged; `[(0, 65535)]` is "all".
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortSet(pub Vec<(u16, u16)>);

impl PortSet {
    /// Every port.
    pub fn all() -> Self {
        PortSet(vec![(0, u16::MAX)])
    }

    /// Whether every port is in the set.
    pub(crate) fn is_all(&self) -> bool {
        self.0 == [(0, u16::MAX)]
    }

    /// Whether `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= port && port <= hi)
    }

    /// Parses a port expression.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() || text == "-1/-1" || text == "-1" || text.eq_ignore_ascii_case("all") {
            return Ok(PortSet::all());
        }
        let items: Vec<&str> = text.split(',').map(str::trim).collect();
        if items.len() > MAX_PORT_ITEMS {
            return Err(format!(
                "port list {text:?} has {} items, more than the {MAX_PORT_ITEMS} allowed",
                items.len()
            ));
        }
        let mut ranges = Vec::with_capacity(items.len());
        for item in items {
            let (lo, hi) = match item.split_once(['/', '-']) {
                Some((lo, hi)) => (port_number(lo, text)?, port_number(hi, text)?),
                None => {
                    let port = port_number(item, text)?;
                    (port, port)
                }
            };
            if lo > hi {
                return Err(format!("port range {item:?} in {text:?} runs backwards"));
            }
            ranges.push((lo, hi));
        }
        Ok(PortSet(merge_ranges(ranges)))
    }

    /// Renders the set in ESG syntax (`80`, `80/90`, comma lists, `-1/-1`).
    pub fn render(&self) -> String {
        if self.is_all() {
            return "-1/-1".to_string();
        }
        self.0
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}/{hi}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn port_number(text: &str, whole: &str) -> Result<u16, String> {
    let text = text.trim();
    text.parse::<u16>()
        .map_err(|_| format!("port {text:?} in {whole:?} is not a number from 0 to 65535"))
}

/// Sorts and merges overlapping or adjacent inclusive ranges.
pub(crate) fn merge_ranges<T: Copy + Ord + Successor>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut merged: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if last.1 >= lo || last.1.successor() == Some(lo) => {
                if hi > last.1 {
                    last.1 = hi;
                }
            }
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

/// The next value, if any.
pub(crate) trait Successor: Sized {
    /// `self + 1`, or `None` at the maximum.
    fn successor(self) -> Option<Self>;
}

macro_rules! successor {
    ($($t:ty),*) => {$(
        impl Successor for $t {
            fn successor(self) -> Option<Self> {
                self.checked_add(1)
            }
        }
    )*};
}
successor!(u16, u32, u128);

/// A resolved set of addresses, per family, as sorted merged inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AddressSet {
    /// IPv4 ranges.
    pub v4: Vec<(u32, u32)>,
    /// IPv6 ranges.
    pub v6: Vec<(u128, u128)>,
}

impl AddressSet {
    /// Parses a comma-separated list of IPs, CIDRs and `a-b` ranges.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut set = AddressSet::default();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            set.add(item)?;
        }
        set.normalize();
        Ok(set)
    }

    /// Adds one IP, CIDR or `a-b` range (call [`AddressSet::normalize`] afterwards).
    pub fn add(&mut self, item: &str) -> Result<(), String> {
        let item = item.trim();
        if let Some((lo, hi)) = item.split_once('-') {
            let lo: IpAddr = lo
                .trim()
                .parse()
                .map_err(|_| format!("address range {item:?} has a bad start"))?;
            let hi: IpAddr = hi
                .trim()
                .parse()
                .map_err(|_| format!("address range {item:?} has a bad end"))?;
            match (lo.to_canonical(), hi.to_canonical()) {
                (IpAddr::V4(lo), IpAddr::V4(hi)) if lo <= hi => {
                    self.v4.push((lo.into(), hi.into()))
                }
                (IpAddr::V6(lo), IpAddr::V6(hi)) if lo <= hi => {
                    self.v6.push((lo.into(), hi.into()))
                }
                _ => {
                    return Err(format!(
                        "address range {item:?} mixes families or runs backwards"
                    ))
                }
            }
            return Ok(());
        }
        if item.contains('/') {
            let net: IpNet = item
                .parse()
                .map_err(|_| format!("{item:?} is not a CIDR block"))?;
            match net {
                IpNet::V4(n) => self.v4.push((n.network().into(), n.broadcast().into())),
                IpNet::V6(n) => self.v6.push((n.network().into(), n.broadcast().into())),
            }
            return Ok(());
        }
        let ip: IpAddr = item
            .parse()
            .map_err(|_| format!("{item:?} is not an IP address, CIDR block or range"))?;
        match ip.to_canonical() {
            IpAddr::V4(ip) => self.v4.push((ip.into(), ip.into())),
            IpAddr::V6(ip) => self.v6.push((ip.into(), ip.into())),
        }
        Ok(())
    }

    /// Adds every range of `other`.
    pub fn extend(&mut self, other: &AddressSet) {
        self.v4.extend_from_slice(&other.v4);
        self.v6.extend_from_slice(&other.v6);
    }

    /// Sorts and merges the ranges.
    pub(crate) fn normalize(&mut self) {
        self.v4 = merge_ranges(std::mem::take(&mut self.v4));
        self.v6 = merge_ranges(std::mem::take(&mut self.v6));
    }

    /// Whether the set holds no address.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether `ip` is in the set (an IPv6 address never matches IPv4 ranges).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => contains(&self.v4, u32::from(ip)),
            IpAddr::V6(ip) => contains(&self.v6, u128::from(ip)),
        }
    }

    /// Renders the ranges as CIDRs or `a-b` ranges, comma-separated.
    pub fn render(&self) -> String {
        let v4 = self.v4.iter().map(|&(lo, hi)| {
            render_range(
                IpAddr::V4(lo.into()),
                IpAddr::V4(hi.into()),
                (hi - lo).wrapping_add(1).is_power_of_two() && lo & (hi - lo) == 0,
                32 - (hi - lo).wrapping_add(1).trailing_zeros() as u8,
                hi - lo == u32::MAX,
            )
        });
        let v6 = self.v6.iter().map(|&(lo, hi)| {
            render_range(
                IpAddr::V6(lo.into()),
                IpAddr::V6(hi.into()),
                (hi - lo).wrapping_add(1).is_power_of_two() && lo & (hi - lo) == 0,
                128 - (hi - lo).wrapping_add(1).trailing_zeros() as u8,
                hi - lo == u128::MAX,
            )
        });
        v4.chain(v6).collect::<Vec<_>>().join(", ")
    }
}

fn render_range(lo: IpAddr, hi: IpAddr, aligned: bool, prefix: u8, everything: bool) -> String {
    if lo == hi {
        lo.to_string()
    } else if everything {
        format!("{lo}/0")
    } else if aligned {
        format!("{lo}/{prefix}")
    } else {
        format!("{lo}-{hi}")
    }
}

/// Binary search over sorted, merged inclusive ranges.
pub fn contains<T: Copy + Ord>(ranges: &[(T, T)], key: T) -> bool {
    let i = ranges.partition_point(|&(lo, _)| lo <= key);
    i > 0 && key <= ranges[i - 1].1
}

/// One entry of a service template: a protocol and its ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Service {
    /// The protocol.
    pub protocol: Protocol,
    /// The ports (all for protocols without ports).
    pub ports: PortSet,
}

impl Service {
    /// Parses `tcp:80`, `udp:53-60`, `tcp:80,443`, `tcp:all`, `icmp`, `all`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (protocol, ports) = match text.split_once(':') {
            Some((protocol, ports)) => (protocol, ports),
            None => (text, ""),
        };
        let protocol = Protocol::parse(protocol)?;
        let ports = if protocol.has_ports() {
            PortSet::parse(ports)?
        } else {
            PortSet::all()
        };
        Ok(Service { protocol, ports })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_syntaxes() {
        assert_eq!(PortSet::parse("80").unwrap().0, vec![(80, 80)]);
        assert_eq!(PortSet::parse("80/90").unwrap().0, vec![(80, 90)]);
        assert_eq!(PortSet::parse("80-90").unwrap().0, vec![(80, 90)]);
        assert_eq!(
            PortSet::parse("443, 80,81,82").unwrap().0,
            vec![(80, 82), (443, 443)]
        );
        assert!(PortSet::parse("-1/-1").unwrap().is_all());
        assert!(PortSet::parse("all").unwrap().is_all());
        assert!(PortSet::parse("1/65535").unwrap().0 == vec![(1, 65535)]);
        assert_eq!(
            PortSet::parse("80,8080/8090").unwrap().render(),
            "80,8080/8090"
        );
    }

    #[test]
    fn bad_ports_say_why() {
        assert!(PortSet::parse("99999").unwrap_err().contains("0 to 65535"));
        assert!(PortSet::parse("90/80").unwrap_err().contains("backwards"));
        assert!(PortSet::parse("http").is_err());
        let sixteen = (1..=16)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(PortSet::parse(&sixteen).unwrap().0, vec![(1, 16)]);
        let huge = vec!["80"; MAX_PORT_ITEMS + 1].join(",");
        assert!(PortSet::parse(&huge).unwrap_err().contains("1025 items"));
    }

    #[test]
    fn protocols() {
        assert_eq!(Protocol::parse("any").unwrap(), Protocol::Any);
        assert_eq!(Protocol::parse("TCP").unwrap().number(), Some(6));
        assert_eq!(Protocol::parse("ICMPv6").unwrap(), Protocol::Icmpv6);
        assert_eq!(Protocol::parse("gre").unwrap().number(), Some(47));
        assert!(Protocol::parse("SCTP").is_err());
    }

    #[test]
    fn addresses() {
        let set = AddressSet::parse(
            "10.0.0.0/24, 10.0.1.0/24,10.0.3.5,192.168.1.10-192.168.1.20,2001:db8::/32",
        )
        .unwrap();
        assert_eq!(set.v4.len(), 3, "the two /24s merge");
        assert!(set.contains("10.0.1.255".parse().unwrap()));
        assert!(!set.contains("10.0.2.0".parse().unwrap()));
        assert!(set.contains("192.168.1.15".parse().unwrap()));
        assert!(set.contains("2001:db8::42".parse().unwrap()));
        assert_eq!(
            set.render(),
            "10.0.0.0/23, 10.0.3.5, 192.168.1.10-192.168.1.20, 2001:db8::/32"
        );
        assert_eq!(
            AddressSet::parse("0.0.0.0/0").unwrap().render(),
            "0.0.0.0/0"
        );
        assert!(AddressSet::parse("10.0.0.0/33").is_err());
        assert!(AddressSet::parse("10.0.0.9-10.0.0.1").is_err());
    }

    #[test]
    fn ipv6_never_matches_ipv4_ranges() {
        let set = AddressSet::parse("0.0.0.0/0").unwrap();
        assert!(!set.contains("2001:db8::1".parse().unwrap()));
        assert!(
            !set.contains("::a00:1".parse().unwrap()),
            "::10.0.0.1 is an IPv6 address"
        );
    }

    #[test]
    fn services() {
        assert_eq!(
            Service::parse("tcp:80,443").unwrap().ports.0,
            vec![(80, 80), (443, 443)]
        );
        assert_eq!(Service::parse("udp:53-60").unwrap().protocol, Protocol::Udp);
        assert!(Service::parse("icmp").unwrap().ports.is_all());
        assert_eq!(Service::parse("ALL").unwrap().protocol, Protocol::Any);
        assert!(Service::parse("tcp:x").is_err());
    }
}
