//! Where a flow's ends are (VPC, subnet, instance, ENI), what kind of traffic it is (scope), which
//! way it crosses the recording ENI, and whether it looks like the reply half of a connection.
//!
//! Lookups go by exact ENI address first, then by subnet CIDR, then by VPC CIDR (primary and
//! secondary). Different VPCs may reuse a CIDR; then the VPC of the recording ENI wins.

use std::collections::HashMap;

/// Maps looked up for every flow: foldhash (randomly seeded per process) instead of SipHash.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::net::IpAddr;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::core::flowlog::{protocol, FlowRecord};
use crate::core::snapshot::values::AddressSet;
use crate::core::snapshot::Snapshot;

names! {
    /// Traffic scope.
    #[derive(Serialize, utoipa::ToSchema)]
    #[serde(into = "&'static str")]
    #[schema(rename_all = "snake_case")]
    #[strum(serialize_all = "snake_case")]
    pub enum Scope {
        /// Both ends in one subnet.
        IntraSubnet,
        /// Both ends in one VPC, different subnets.
        InterSubnet,
        /// Into a VPC from outside every known VPC.
        VpcInbound,
        /// Out of a VPC to outside every known VPC.
        VpcOutbound,
        /// Between two known VPCs.
        CrossVpc,
        /// Neither end is in a known VPC.
        Unknown,
    }
}

names! {
    /// Direction of a flow relative to the ENI that recorded it.
    #[derive(Serialize)]
    #[serde(into = "&'static str")]
    #[strum(serialize_all = "snake_case")]
    pub enum Direction {
        /// Into the ENI (the destination is one of its addresses).
        Ingress,
        /// Out of the ENI (the source is one of its addresses).
        Egress,
        /// The ENI is unknown or neither address is its own.
        Unknown,
    }
}

/// Where one address is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Location<'a> {
    /// VPC id.
    pub vpc: Option<&'a str>,
    /// Subnet id.
    pub subnet: Option<&'a str>,
    /// Instance id (when the address is an ENI's).
    pub instance: Option<&'a str>,
    /// ENI id (when the address is an ENI's).
    pub eni: Option<&'a str>,
    /// The VPC's name, when the snapshot has one.
    pub vpc_name: Option<&'a str>,
    /// The subnet's name, when the snapshot has one.
    pub subnet_name: Option<&'a str>,
    /// The instance's name, when the snapshot has one.
    pub instance_name: Option<&'a str>,
    /// The ENI's name, when the snapshot has one.
    pub eni_name: Option<&'a str>,
}

/// Where both ends of a flow are, and what that makes the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Placement<'a> {
    /// The source's location.
    pub src: Location<'a>,
    /// The destination's location.
    pub dst: Location<'a>,
    /// The traffic scope.
    pub scope: Scope,
    /// Direction relative to the recording ENI.
    pub direction: Direction,
}

/// A VPC as the snapshot knows it ([`Topology::vpc_list`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcInfo {
    /// `vpc-…`.
    pub id: String,
    /// Its name, when it has one.
    pub name: Option<String>,
    /// How many subnets it has.
    pub subnets: usize,
    /// Its subnets: id and name (when it has one), by id.
    pub subnet_names: Vec<(String, Option<String>)>,
    /// Its ENIs.
    pub enis: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EniInfo {
    id: CompactString,
    vpc: CompactString,
    subnet: CompactString,
    instance: Option<CompactString>,
    ips: SmallVec<[IpAddr; 2]>,
    vpc_name: Option<CompactString>,
    subnet_name: Option<CompactString>,
    instance_name: Option<CompactString>,
    name: Option<CompactString>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Area {
    id: CompactString,
    vpc: CompactString,
    set: AddressSet,
    /// The area's own name.
    name: Option<CompactString>,
    /// Its VPC's name.
    vpc_name: Option<CompactString>,
}

/// The topology of a snapshot, indexed for lookups.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "Parts")]
pub struct Topology {
    enis: Vec<EniInfo>,
    #[serde(skip)]
    eni_by_id: FastMap<CompactString, usize>,
    #[serde(skip)]
    eni_by_ip: FastMap<IpAddr, SmallVec<[usize; 1]>>,
    subnets: Vec<Area>,
    vpcs: Vec<Area>,
    /// The subnets holding each address.
    #[serde(skip)]
    subnet_covers: Covers,
    /// The VPCs holding each address.
    #[serde(skip)]
    vpc_covers: Covers,
}

/// The areas of a list holding each address, by elementary interval of the areas' ranges:
/// what [`Topology::locate`] reads for an address no ENI has, instead of asking every area
/// (the reference account's 600 subnets, for every internet peer).
#[derive(Debug, Clone, Default)]
struct Covers {
    v4: Stab<u32>,
    v6: Stab<u128>,
}

/// Sorted interval starts, and for each interval the areas covering it, in the list's order.
#[derive(Debug, Clone, Default)]
struct Stab<K> {
    starts: Vec<K>,
    areas: Vec<SmallVec<[u32; 2]>>,
}

impl<K: super::index::Key> Stab<K> {
    /// The stab of `ranges` (each an area's inclusive ranges, in the list's order).
    fn build<'r>(ranges: impl Iterator<Item = &'r [(K, K)]> + Clone) -> Self
    where
        K: 'r,
    {
        let mut starts: Vec<K> = std::iter::once(K::MIN)
            .chain(
                ranges
                    .clone()
                    .flatten()
                    .flat_map(|&(lo, hi)| [Some(lo), hi.next()])
                    .flatten(),
            )
            .collect();
        starts.sort_unstable();
        starts.dedup();
        let mut areas = vec![SmallVec::new(); starts.len()];
        for (area, list) in ranges.enumerate() {
            for &(lo, hi) in list {
                let first = starts.partition_point(|&s| s < lo);
                let end = hi
                    .next()
                    .map_or(starts.len(), |after| starts.partition_point(|&s| s < after));
                for covered in &mut areas[first..end] {
                    covered.push(area as u32);
                }
            }
        }
        Self { starts, areas }
    }

    /// The areas holding `key`, in the list's order.
    fn at(&self, key: K) -> &[u32] {
        match self.starts.partition_point(|&s| s <= key) {
            0 => &[],
            n => &self.areas[n - 1],
        }
    }
}

impl Covers {
    fn of(areas: &[Area]) -> Self {
        Self {
            v4: Stab::build(areas.iter().map(|a| a.set.v4.as_slice())),
            v6: Stab::build(areas.iter().map(|a| a.set.v6.as_slice())),
        }
    }

    fn at(&self, ip: IpAddr) -> &[u32] {
        match ip {
            IpAddr::V4(ip) => self.v4.at(u32::from(ip)),
            IpAddr::V6(ip) => self.v6.at(u128::from(ip)),
        }
    }
}

/// A topology as an engine image holds it: its lists, the maps over them made again when read
/// (an image is the same bytes for the same engine, whatever order a map iterates in).
#[derive(Deserialize)]
struct Parts {
    enis: Vec<EniInfo>,
    subnets: Vec<Area>,
    vpcs: Vec<Area>,
}

impl From<Parts> for Topology {
    fn from(parts: Parts) -> Self {
        let mut topology = Topology {
            enis: parts.enis,
            subnets: parts.subnets,
            vpcs: parts.vpcs,
            ..Topology::default()
        };
        topology.index();
        topology
    }
}

impl Topology {
    /// Indexes the snapshot's VPCs, subnets and ENIs (entries with unreadable addresses are skipped).
    pub fn build(snapshot: &Snapshot) -> Self {
        let mut topology = Topology::default();
        // VPC, subnet and instance names by id (only the non-empty ones), copied next to what
        // names them.
        let names: FastMap<&str, &str> = snapshot
            .vpcs
            .iter()
            .map(|v| (v.id.as_str(), v.name.as_str()))
            .chain(
                snapshot
                    .subnets
                    .iter()
                    .map(|s| (s.id.as_str(), s.name.as_str())),
            )
            .chain(
                snapshot
                    .instances
                    .iter()
                    .map(|i| (i.id.as_str(), i.name.as_str())),
            )
            .filter(|(_, name)| !name.is_empty())
            .collect();
        let name = |id: &str| names.get(id).map(|n| CompactString::from(*n));
        for eni in &snapshot.enis {
            let ips: SmallVec<[IpAddr; 2]> = eni
                .ips
                .iter()
                .filter_map(|ip| ip.parse::<IpAddr>().ok())
                .map(|ip| ip.to_canonical())
                .collect();
            topology.enis.push(EniInfo {
                id: eni.id.as_str().into(),
                vpc: eni.vpc_id.as_str().into(),
                subnet: eni.subnet_id.as_str().into(),
                instance: eni.instance_id.as_deref().map(CompactString::from),
                ips,
                vpc_name: name(&eni.vpc_id),
                subnet_name: name(&eni.subnet_id),
                instance_name: eni.instance_id.as_deref().and_then(name),
                name: (!eni.name.is_empty()).then(|| eni.name.as_str().into()),
            });
        }
        let area = |id: &str, vpc: &str, cidrs: &[String]| {
            let mut set = AddressSet::default();
            for cidr in cidrs {
                let _ = set.add(cidr);
            }
            set.normalize();
            Area {
                id: id.into(),
                vpc: vpc.into(),
                set,
                name: name(id),
                vpc_name: name(vpc),
            }
        };
        topology.subnets = snapshot
            .subnets
            .iter()
            .map(|s| area(&s.id, &s.vpc_id, &s.cidrs))
            .collect();
        topology.vpcs = snapshot
            .vpcs
            .iter()
            .map(|v| area(&v.id, &v.id, &v.cidrs))
            .collect();
        // Most specific first, so the first hit is the longest match.
        let size = |a: &Area| {
            a.set
                .v4
                .iter()
                .map(|(l, h)| u128::from(h - l))
                .sum::<u128>()
                + a.set.v6.iter().map(|(l, h)| h - l).sum::<u128>()
        };
        topology.subnets.sort_by_key(size);
        topology.index();
        topology
    }

    /// The ENIs by id (the last of an id) and by address, the areas by address.
    fn index(&mut self) {
        self.subnet_covers = Covers::of(&self.subnets);
        self.vpc_covers = Covers::of(&self.vpcs);
        for (index, eni) in self.enis.iter().enumerate() {
            for ip in &eni.ips {
                self.eni_by_ip.entry(*ip).or_default().push(index);
            }
            self.eni_by_id.insert(eni.id.clone(), index);
        }
    }

    /// Whether the snapshot has a VPC with this id.
    pub fn has_vpc(&self, id: &str) -> bool {
        self.vpcs.iter().any(|v| v.id == id)
    }

    /// Every VPC of the snapshot, in its order, with its name and what it holds.
    pub fn vpc_list(&self) -> Vec<VpcInfo> {
        self.vpcs
            .iter()
            .map(|v| VpcInfo {
                id: v.id.to_string(),
                name: v.name.as_ref().map(|n| n.to_string()),
                subnets: self.subnets.iter().filter(|s| s.vpc == v.id).count(),
                subnet_names: {
                    let mut names: Vec<(String, Option<String>)> = self
                        .subnets
                        .iter()
                        .filter(|s| s.vpc == v.id)
                        .map(|s| (s.id.to_string(), s.name.as_ref().map(|n| n.to_string())))
                        .collect();
                    names.sort();
                    names.dedup_by(|a, b| a.0 == b.0);
                    names
                },
                enis: self
                    .enis
                    .iter()
                    .filter(|e| e.vpc == v.id)
                    .map(|e| e.id.to_string())
                    .collect(),
            })
            .collect()
    }

    /// Where `ip` is, preferring `vpc` when several VPCs hold it.
    pub(crate) fn locate(&self, ip: IpAddr, vpc: Option<&str>) -> Location<'_> {
        if let Some(indices) = self.eni_by_ip.get(&ip) {
            let eni = indices
                .iter()
                .map(|&i| &self.enis[i])
                .find(|e| vpc.is_none_or(|v| e.vpc == v))
                .unwrap_or(&self.enis[indices[0]]);
            return Location {
                vpc: Some(&eni.vpc),
                subnet: Some(&eni.subnet),
                instance: eni.instance.as_deref(),
                eni: Some(&eni.id),
                vpc_name: eni.vpc_name.as_deref(),
                subnet_name: eni.subnet_name.as_deref(),
                instance_name: eni.instance_name.as_deref(),
                eni_name: eni.name.as_deref(),
            };
        }
        // The first area holding `ip` in `vpc`, else the first holding it.
        let pick = |covers: &Covers, areas: &[Area]| -> Option<usize> {
            let holding = covers.at(ip);
            holding
                .iter()
                .find(|&&i| vpc.is_none_or(|v| areas[i as usize].vpc == v))
                .or(holding.first())
                .map(|&i| i as usize)
        };
        if let Some(i) = pick(&self.subnet_covers, &self.subnets) {
            let subnet = &self.subnets[i];
            return Location {
                vpc: Some(&subnet.vpc),
                subnet: Some(&subnet.id),
                vpc_name: subnet.vpc_name.as_deref(),
                subnet_name: subnet.name.as_deref(),
                ..Location::default()
            };
        }
        match pick(&self.vpc_covers, &self.vpcs) {
            Some(i) => Location {
                vpc: Some(&self.vpcs[i].id),
                vpc_name: self.vpcs[i].name.as_deref(),
                ..Location::default()
            },
            None => Location::default(),
        }
    }

    /// Places a flow seen on `eni` (if known).
    pub fn place(&self, src: IpAddr, dst: IpAddr, eni: Option<&str>) -> Placement<'_> {
        let recording = eni
            .and_then(|id| self.eni_by_id.get(id))
            .map(|&i| &self.enis[i]);
        let vpc = recording.map(|e| e.vpc.as_str());
        let src_location = self.locate(src, vpc);
        let dst_location = self.locate(dst, vpc);
        let direction = match recording {
            Some(e) if e.ips.contains(&src) => Direction::Egress,
            Some(e) if e.ips.contains(&dst) => Direction::Ingress,
            _ => Direction::Unknown,
        };
        let scope = match (src_location.vpc, dst_location.vpc) {
            (Some(a), Some(b)) if a == b => {
                if src_location.subnet.is_some() && src_location.subnet == dst_location.subnet {
                    Scope::IntraSubnet
                } else {
                    Scope::InterSubnet
                }
            }
            (Some(_), Some(_)) => Scope::CrossVpc,
            (Some(_), None) => Scope::VpcOutbound,
            (None, Some(_)) => Scope::VpcInbound,
            (None, None) => Scope::Unknown,
        };
        Placement {
            src: src_location,
            dst: dst_location,
            scope,
            direction,
        }
    }
}

impl Placement<'_> {
    /// The placement of the opposite flow (destination to source) recorded by the same ENI:
    /// what [`Topology::place`] answers with the addresses swapped, without locating them
    /// again. (For a flow between two addresses of the recording ENI itself, `place` calls both
    /// directions egress; this says ingress for the reverse. Traffic never reads it.)
    pub fn reversed(&self) -> Self {
        Placement {
            src: self.dst,
            dst: self.src,
            scope: match self.scope {
                Scope::VpcInbound => Scope::VpcOutbound,
                Scope::VpcOutbound => Scope::VpcInbound,
                same => same,
            },
            direction: match self.direction {
                Direction::Ingress => Direction::Egress,
                Direction::Egress => Direction::Ingress,
                Direction::Unknown => Direction::Unknown,
            },
        }
    }
}

/// Service ports above 1023 that are still server ports (databases, caches, brokers, web
/// alternates, kubelet 10250), for reply detection: the last resort, after pairing and the
/// ports the snapshot's rules name. None is in the ephemeral range (32,768 and up), where a
/// client's port may be any (gRPC's 50051 is a service once a rule names it).
pub(crate) const WELL_KNOWN_SERVICE_PORTS: &[u16] = &[
    1433, 1521, 2049, 2181, 2379, 3000, 3306, 3389, 5000, 5432, 5601, 5672, 6379, 6443, 8000, 8080,
    8443, 8888, 9000, 9090, 9092, 9100, 9200, 9300, 10250, 11211, 15672, 27017,
];

fn is_service_port(port: u16) -> bool {
    port < 1024 || WELL_KNOWN_SERVICE_PORTS.contains(&port)
}

/// Whether a record looks like the reply half of a connection (server → client), which a
/// stateful security group lets through without a new decision. TCP/UDP: the source port is a
/// service port (below 1024 or in [`WELL_KNOWN_SERVICE_PORTS`]) and the destination port is not
/// (an ephemeral client port, 1024 and up). ICMP: echo, timestamp and information replies
/// (types 0, 14, 16); ICMPv6: echo reply (129).
pub fn likely_reply(flow: &FlowRecord) -> bool {
    match flow.protocol {
        protocol::TCP | protocol::UDP => match (flow.src_port, flow.dst_port) {
            (Some(sport), Some(dport)) => is_service_port(sport) && !is_service_port(dport),
            _ => false,
        },
        protocol::ICMP => flow.icmp.is_some_and(|i| matches!(i.kind, 0 | 14 | 16)),
        protocol::ICMPV6 => flow.icmp.is_some_and(|i| i.kind == 129),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The first area holding `ip` in `vpc`, else the first holding it, asking each area: what
    /// [`Covers`] must answer.
    fn pick_linear(areas: &[Area], ip: IpAddr, vpc: Option<&str>) -> Option<usize> {
        let mut first = None;
        for (i, area) in areas.iter().enumerate() {
            if area.set.contains(ip) {
                if vpc.is_none_or(|v| area.vpc == v) {
                    return Some(i);
                }
                first.get_or_insert(i);
            }
        }
        first
    }

    fn area(vpc: u8, cidrs: &[(u32, u8, u16)]) -> Area {
        let mut set = AddressSet::default();
        for &(base, len, v6) in cidrs {
            // IPv4 blocks in 10.0.0.0/16 and IPv6 blocks in fd00::/112: overlapping, nested,
            // shared across VPCs.
            let v4 = 0x0a00_0000 | (base & 0xffff);
            set.add(&format!(
                "{}/{}",
                std::net::Ipv4Addr::from(v4),
                16 + len % 17
            ))
            .unwrap();
            set.add(&format!("fd00::{v6:x}/{}", 112 + len % 17))
                .unwrap();
        }
        set.normalize();
        Area {
            id: format!("a-{vpc}-{cidrs:?}").into(),
            vpc: format!("vpc-{vpc}").into(),
            set,
            name: None,
            vpc_name: None,
        }
    }

    proptest! {
        /// Any address, with or without a preferred VPC, finds the areas asking each one finds.
        #[test]
        fn covers_find_what_asking_every_area_finds(
            subnets in prop::collection::vec((0u8..3, prop::collection::vec((any::<u32>(), any::<u8>(), any::<u16>()), 1..3)), 0..24),
            vpcs in prop::collection::vec((0u8..3, prop::collection::vec((any::<u32>(), any::<u8>(), any::<u16>()), 1..3)), 0..4),
            probes in prop::collection::vec((any::<u16>(), any::<u16>(), 0u8..4), 64),
        ) {
            let mut topology = Topology {
                subnets: subnets.iter().map(|(vpc, cidrs)| area(*vpc, cidrs)).collect(),
                vpcs: vpcs.iter().map(|(vpc, cidrs)| area(*vpc, cidrs)).collect(),
                ..Topology::default()
            };
            topology.index();
            // Random addresses, and every range's ends and their neighbours.
            let mut ips: Vec<IpAddr> = Vec::new();
            for (v4, v6, _) in &probes {
                ips.push(std::net::Ipv4Addr::from(0x0a00_0000 | u32::from(*v4)).into());
                ips.push(std::net::Ipv6Addr::from(0xfd00_u128 << 112 | u128::from(*v6)).into());
            }
            for area in topology.subnets.iter().chain(&topology.vpcs) {
                for &(lo, hi) in &area.set.v4 {
                    for ip in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
                        ips.push(std::net::Ipv4Addr::from(ip).into());
                    }
                }
                for &(lo, hi) in &area.set.v6 {
                    for ip in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
                        ips.push(std::net::Ipv6Addr::from(ip).into());
                    }
                }
            }
            for (i, ip) in ips.into_iter().enumerate() {
                let vpc = match probes[i % probes.len()].2 {
                    3 => None,
                    n => Some(format!("vpc-{n}")),
                };
                let vpc = vpc.as_deref();
                let expected = match pick_linear(&topology.subnets, ip, vpc) {
                    Some(i) => (Some(&topology.subnets[i].vpc), Some(&topology.subnets[i].id)),
                    None => (pick_linear(&topology.vpcs, ip, vpc).map(|i| &topology.vpcs[i].id), None),
                };
                let found = topology.locate(ip, vpc);
                prop_assert_eq!(
                    (found.vpc, found.subnet),
                    (expected.0.map(|v| v.as_str()), expected.1.map(|s| s.as_str())),
                    "{} in {:?}", ip, vpc
                );
            }
        }
    }
}
