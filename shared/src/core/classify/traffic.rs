//! The traffic aggregates: one per batch, connection (initiator → service port) and verdict, with
//! both ends placed, the peer named and the recording ENIs listed.

use super::*;

#[derive(Default)]
pub(super) struct Aggregate {
    requests: u64,
    replies: u64,
    connections: u64,
    /// The first connection's client (port or ICMP id): a second record of the same
    /// connection is told without the batch's connection set.
    first_client: Option<u16>,
    packets: u64,
    bytes: u64,
    first_seen: u64,
    last_seen: u64,
    /// The ENIs whose flow logs recorded it (at most [`MAX_RECORDING_ENIS`]).
    enis: smallvec::SmallVec<[CompactString; 2]>,
}

/// Most recording ENIs one traffic record names: a conversation between two addresses is
/// recorded by the ENIs holding them, usually one or two.
pub(super) const MAX_RECORDING_ENIS: usize = 8;

/// A placement's identity: the addresses of the topology strings its ends point to (each id
/// is one string in the topology, so equal pointers are equal ends).
pub(super) type PlacementKey = [usize; 8];

pub(super) fn placement_key(placement: &Placement<'_>) -> PlacementKey {
    let at = |s: Option<&str>| s.map_or(0, |s| s.as_ptr() as usize);
    let (src, dst) = (&placement.src, &placement.dst);
    [
        at(src.vpc),
        at(src.subnet),
        at(src.instance),
        at(src.eni),
        at(dst.vpc),
        at(dst.subnet),
        at(dst.instance),
        at(dst.eni),
    ]
}

/// Both ends of a placement, built once per batch and shared by every record placed alike.
pub(super) fn shared_ends<'c>(
    cache: &'c mut FastMap<PlacementKey, Arc<Ends>>,
    placement: &Placement<'_>,
) -> &'c Arc<Ends> {
    cache
        .entry(placement_key(placement))
        .or_insert_with(|| Arc::new(ends_of(placement)))
}

/// Both ends of a placement, with the names the snapshot has for their VPC, subnet, instance
/// and ENI.
pub(super) fn ends_of(placement: &Placement<'_>) -> Ends {
    let text = |value: Option<&str>| value.map(CompactString::from);
    let (src, dst) = (&placement.src, &placement.dst);
    Ends {
        src_vpc: text(src.vpc),
        src_vpc_name: text(src.vpc_name),
        src_subnet: text(src.subnet),
        src_subnet_name: text(src.subnet_name),
        src_instance: text(src.instance),
        src_instance_name: text(src.instance_name),
        src_eni: text(src.eni),
        src_eni_name: text(src.eni_name),
        dst_vpc: text(dst.vpc),
        dst_vpc_name: text(dst.vpc_name),
        dst_subnet: text(dst.subnet),
        dst_subnet_name: text(dst.subnet_name),
        dst_instance: text(dst.instance),
        dst_instance_name: text(dst.instance_name),
        dst_eni: text(dst.eni),
        dst_eni_name: text(dst.eni_name),
    }
}

/// What the other end of a connection is, seen from its VPC.
pub(super) fn peer_of(placement: &Placement<'_>, src: IpAddr, dst: IpAddr) -> Peer {
    let kind = |ip: IpAddr| {
        if is_private(ip) {
            Peer::Private
        } else {
            Peer::Internet
        }
    };
    match (placement.src.vpc, placement.dst.vpc) {
        (Some(a), Some(b)) if a == b => Peer::SameVpc,
        (Some(_), Some(_)) => Peer::OtherVpc,
        (Some(_), None) => kind(dst),
        (None, Some(_)) => kind(src),
        (None, None) => Peer::Unknown,
    }
}

/// Private, shared (100.64.0.0/10), link-local and loopback addresses (RFC 1918, 6598, 3927,
/// 4193, 4291): traffic to them stays off the internet.
pub(super) fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_link_local()
                || v4.is_loopback()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// What identifies a traffic aggregate: the connection's scope and VPC (by the address of its
/// id in the topology, where each id is one string), initiator, responder, service port,
/// protocol and flow-log action.
pub(super) type TrafficKey = (Scope, usize, IpAddr, IpAddr, Option<u16>, u8, FlowAction);

/// One aggregate with its key, its VPC, both ends and the kind of peer.
pub(super) type Slot<'e> = (TrafficKey, Aggregate, Option<&'e str>, Arc<Ends>, Peer);

/// The batch's traffic aggregates in the order their first flow came (deterministic for a
/// given batch, so a retry writes the same records in the same order), found by key.
pub(super) struct TrafficTable<'e> {
    /// Each aggregate with its VPC, both ends (shared) and the kind of peer: a few words each
    /// rather than the connection's whole placement.
    aggregates: Vec<Slot<'e>>,
    /// Indexes into `aggregates`, found by their key's hash: four bytes a slot rather than a
    /// second copy of every key (15 MB less on the largest legal batch).
    slots: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    /// (aggregate, client port or ICMP id): one entry per connection of the aggregates with
    /// more than one client (grown as needed: most batches never use it).
    connections: std::collections::HashSet<(usize, Option<u16>), foldhash::fast::RandomState>,
}

impl<'e> TrafficTable<'e> {
    pub(super) fn with_capacity(flows: usize) -> Self {
        Self {
            aggregates: Vec::with_capacity(flows),
            slots: hashbrown::HashTable::with_capacity(flows),
            hasher: Default::default(),
            connections: Default::default(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.aggregates.len()
    }

    /// Adds one flow record (a request, or a reply folded into its connection) to its
    /// aggregate; answers how many sums reached `u64::MAX`.
    pub(super) fn add(
        &mut self,
        flow: &FlowRecord,
        other_enis: &[CompactString],
        reply: bool,
        connection: &Placement<'e>,
        ends_cache: &mut FastMap<PlacementKey, Arc<Ends>>,
    ) -> usize {
        let (src, dst, port) = if reply {
            (flow.dst, flow.src, flow.src_port)
        } else {
            (flow.src, flow.dst, flow.dst_port)
        };
        let vpc = connection.src.vpc.or(connection.dst.vpc);
        let key = (
            connection.scope,
            vpc.map_or(0, |v| v.as_ptr() as usize),
            src,
            dst,
            port,
            flow.protocol,
            flow.action,
        );
        let client = match flow.icmp {
            Some(icmp) => icmp.id,
            None if reply => flow.dst_port,
            None => flow.src_port,
        };
        let (aggregates, slots, hasher) = (&mut self.aggregates, &mut self.slots, &self.hasher);
        let hash = hasher.hash_one(key);
        let found = slots
            .find(hash, |&i| aggregates[i as usize].0 == key)
            .copied();
        let created = found.is_none();
        let slot = match found {
            Some(slot) => slot as usize,
            None => {
                let aggregate = Aggregate {
                    first_seen: u64::MAX,
                    first_client: client,
                    ..Aggregate::default()
                };
                let ends = shared_ends(ends_cache, connection).clone();
                aggregates.push((key, aggregate, vpc, ends, peer_of(connection, src, dst)));
                let slot = aggregates.len() - 1;
                let index = u32::try_from(slot).expect("a batch holds fewer than 2^32 flows");
                slots.insert_unique(hash, index, |&i| hasher.hash_one(aggregates[i as usize].0));
                slot
            }
        };
        let aggregate = &mut self.aggregates[slot].1;
        // Most aggregates hold one connection: its client is kept in the aggregate, and the set
        // is consulted only once a second client turns up.
        let new_connection = if created {
            true
        } else if aggregate.connections == 1 && aggregate.first_client == client {
            false
        } else {
            if aggregate.connections == 1 {
                self.connections.insert((slot, aggregate.first_client));
            }
            self.connections.insert((slot, client))
        };
        aggregate.replies += u64::from(reply);
        aggregate.requests += u64::from(!reply);
        aggregate.connections += u64::from(new_connection);
        // Counters stop at u64::MAX rather than wrap (or panic): the batch is counted, and the
        // summary says how many sums reached the ceiling.
        let (packets, overflow_p) = aggregate.packets.overflowing_add(flow.packets.unwrap_or(0));
        let (bytes, overflow_b) = aggregate.bytes.overflowing_add(flow.bytes.unwrap_or(0));
        aggregate.packets = if overflow_p { u64::MAX } else { packets };
        aggregate.bytes = if overflow_b { u64::MAX } else { bytes };
        aggregate.first_seen = aggregate.first_seen.min(flow.start);
        aggregate.last_seen = aggregate.last_seen.max(flow.end);
        for eni in std::iter::once(&flow.eni).chain(other_enis) {
            if !eni.is_empty()
                && aggregate.enis.len() < MAX_RECORDING_ENIS
                && !aggregate.enis.contains(eni)
            {
                aggregate.enis.push(eni.clone());
            }
        }
        usize::from(overflow_p) + usize::from(overflow_b)
    }

    /// The aggregates as traffic records.
    pub(super) fn into_records(
        self,
        records: &mut Vec<Record>,
        id_prefix: &IdPrefix,
        version: &Arc<str>,
    ) {
        let TrafficTable {
            aggregates,
            slots,
            connections,
            ..
        } = self;
        drop((slots, connections));
        for ((scope, _, src, dst, port, protocol, action), mut aggregate, vpc, ends, peer) in
            aggregates
        {
            let flows = aggregate.requests + aggregate.replies;
            aggregate.enis.sort_unstable();
            let enis = aggregate.enis.join(",");
            records.push(Record::Traffic(Box::new(TrafficRecord {
                record_type: RecordType::Traffic,
                record_id: RecordId::parts()
                    .text(scope.as_str())
                    .text(vpc.unwrap_or(""))
                    .ip(src)
                    .ip(dst)
                    .number(port.map_or(0, u64::from))
                    .number(u64::from(protocol))
                    .number(action_code(action))
                    .number(aggregate.first_seen)
                    .number(aggregate.last_seen)
                    .number(flows)
                    // Every counter: two aggregates of one key and window (a request and its
                    // reply cut into two events) never share an id.
                    .number(aggregate.requests)
                    .number(aggregate.replies)
                    .number(aggregate.connections)
                    .number(aggregate.packets)
                    .number(aggregate.bytes)
                    .finish_after(id_prefix),
                time: aggregate.last_seen,
                scope,
                vpc: vpc.map(CompactString::from),
                src_ip: src,
                src_ip_num: ipv4_number(src),
                dst_ip: dst,
                dst_ip_num: ipv4_number(dst),
                dst_port: port,
                protocol,
                protocol_name: ProtocolName(protocol),
                fl_action: action,
                ends,
                peer,
                flows,
                requests: aggregate.requests,
                replies: aggregate.replies,
                connections: aggregate.connections,
                packets: aggregate.packets,
                bytes: aggregate.bytes,
                first_seen: aggregate.first_seen,
                last_seen: aggregate.last_seen,
                enis: enis.into(),
                snapshot_version: version.clone(),
            })));
        }
    }
}
