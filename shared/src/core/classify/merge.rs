//! Which records of a batch are one flow (the same flow seen on two ENIs, merged) and which are
//! replies of a connection rather than new ones.

use super::*;

pub(super) type FlowIdentity = (
    IpAddr,
    IpAddr,
    Option<u16>,
    Option<u16>,
    u8,
    Option<(u8, u8, Option<u16>)>,
);

/// Merges the records of one flow seen on more than one ENI: same 5-tuple (and ICMP type, code
/// and id, when known), overlapping windows, **different** ENIs (or one ENI's record of the
/// same window delivered twice). One ENI's records of a flow in consecutive windows (whose
/// bounds may touch) are parts of it, summed by the traffic aggregate, not duplicates; two
/// pings of one pair with different ids are two flows.
/// REJECT wins (the ENI that rejected it is the interesting one), counters take the larger
/// value, the window the union.
pub(super) fn merge_duplicates(mut flows: Vec<FlowRecord>) -> (Vec<FlowRecord>, usize, OtherEnis) {
    // Merged in place: a duplicate is folded into the first record of its flow and marked, and
    // the marked ones are dropped at the end (no second vector of flows).
    let mut seen: FastMap<FlowIdentity, SmallIndexes> =
        FastMap::with_capacity_and_hasher(flows.len(), Default::default());
    let mut merged_away = vec![false; flows.len()];
    let mut duplicates = 0;
    // (kept flow's index before the merged ones go, the other ENI that recorded it)
    let mut others: Vec<(usize, CompactString)> = Vec::new();
    for index in 0..flows.len() {
        let flow = &flows[index];
        let identity = (
            flow.src,
            flow.dst,
            flow.src_port,
            flow.dst_port,
            flow.protocol,
            flow.icmp.map(|i| (i.kind, i.code, i.id)),
        );
        let slots = seen.entry(identity).or_default();
        let existing = slots.iter().copied().find(|&i| {
            let other = &flows[i];
            // Another ENI's record of the flow in an overlapping window, or this ENI's record
            // of the same window delivered twice.
            if other.eni == flow.eni {
                other.start == flow.start && other.end == flow.end
            } else {
                flow.start <= other.end && other.start <= flow.end
            }
        });
        let Some(kept_index) = existing else {
            slots.push(index);
            continue;
        };
        duplicates += 1;
        merged_away[index] = true;
        let (head, tail) = flows.split_at_mut(index);
        let (kept, flow) = (&mut head[kept_index], &tail[0]);
        let mut other = flow.eni.clone();
        if flow.action == FlowAction::Reject && kept.action == FlowAction::Accept {
            kept.action = FlowAction::Reject;
            other = std::mem::replace(&mut kept.eni, flow.eni.clone());
        }
        if other != kept.eni {
            others.push((kept_index, other));
        }
        kept.packets = kept.packets.max(flow.packets);
        kept.bytes = kept.bytes.max(flow.bytes);
        kept.start = kept.start.min(flow.start);
        kept.end = kept.end.max(flow.end);
    }
    let mut other_enis = OtherEnis::default();
    if duplicates > 0 {
        // A kept flow moves down by the number of merged ones before it.
        let mut before = Vec::with_capacity(merged_away.len());
        let mut gone = 0;
        for &away in &merged_away {
            before.push(gone);
            gone += usize::from(away);
        }
        for (kept, eni) in others {
            other_enis.entry(kept - before[kept]).or_default().push(eni);
        }
        let mut away = merged_away.into_iter();
        flows.retain(|_| !away.next().unwrap_or(false));
    }
    (flows, duplicates, other_enis)
}

/// The other ENIs that recorded a merged flow, by the flow's index after merging.
pub(super) type OtherEnis = FastMap<usize, smallvec::SmallVec<[CompactString; 1]>>;

pub(super) type SmallIndexes = smallvec::SmallVec<[usize; 2]>;

/// A TCP or UDP record's source, destination, source port, destination port and protocol.
type FiveTuple = (IpAddr, IpAddr, u16, u16, u8);

/// Which records of a batch are replies, and how that is known ([`ReplyBy`]): by pairing
/// first, then by the ports the snapshot's rules name as services, then by the fixed port list.
pub(super) struct Replies<'e> {
    /// TCP and UDP records by 5-tuple: the earliest start of each.
    starts: FastMap<FiveTuple, u64>,
    /// ICMP records of unknown type by (source, destination, protocol): their windows.
    exchanges: FastMap<(IpAddr, IpAddr, u8), Vec<(u64, u64)>>,
    services: &'e ServicePorts,
}

impl<'e> Replies<'e> {
    /// What `flows` (one batch, duplicates merged) tell of each other.
    pub(super) fn of(flows: &[FlowRecord], services: &'e ServicePorts) -> Self {
        let mut starts: FastMap<FiveTuple, u64> =
            FastMap::with_capacity_and_hasher(flows.len(), Default::default());
        let mut exchanges: FastMap<(IpAddr, IpAddr, u8), Vec<(u64, u64)>> = FastMap::default();
        for flow in flows {
            if let Some(key) = five_tuple(flow) {
                let start = starts.entry(key).or_insert(flow.start);
                *start = (*start).min(flow.start);
            } else if is_icmp(flow.protocol) && flow.icmp.is_none() {
                exchanges
                    .entry((flow.src, flow.dst, flow.protocol))
                    .or_default()
                    .push((flow.start, flow.end));
            }
        }
        Self {
            starts,
            exchanges,
            services,
        }
    }

    /// How a port ranks as a connection's service end: named by a rule (4), on the fixed list
    /// (3), privileged (2), below the ephemeral range (1), ephemeral (0, from 32,768: Linux's and
    /// Windows' client ports).
    fn rank(&self, protocol: u8, port: u16) -> u8 {
        if self.services.names(protocol, port) {
            4
        } else if WELL_KNOWN_SERVICE_PORTS.contains(&port) {
            3
        } else if port < 1024 {
            2
        } else if port < 32_768 {
            1
        } else {
            0
        }
    }

    /// How `port` (a reply's source port) was known as the service end.
    fn by_port(&self, protocol: u8, port: u16) -> ReplyBy {
        if self.services.names(protocol, port) {
            ReplyBy::ServicePort
        } else {
            ReplyBy::PortList
        }
    }

    /// Whether `flow` is a reply, and how that is known; `None` for a request (or a flow that
    /// cannot be told: judged like a request, never silently taken for a reply).
    ///
    /// - TCP and UDP: when the batch holds the exact reversed 5-tuple, the record that started
    ///   later is the reply; starting in the same second, the side whose port ranks higher as a
    ///   service ([`Self::rank`]; equal ranks: the lower port) is the service end. Without the
    ///   reversed record: a reply when its source port is a service (named by a rule, listed or
    ///   privileged) and its destination port is not.
    /// - ICMP of known type: echo, timestamp and information replies (types 0, 14, 16; ICMPv6
    ///   129).
    /// - ICMP of unknown type (ports `0 0`): the opposite record of the same exchange started
    ///   earlier with overlapping windows (the documented ping example), or in the same second,
    ///   where the exchange is judged once: the record from the lower address is taken as the
    ///   request.
    pub(super) fn reply(&self, flow: &FlowRecord) -> Option<ReplyBy> {
        let protocol = flow.protocol;
        if let Some((src, dst, sport, dport, _)) = five_tuple(flow) {
            if let Some(&reversed) = self.starts.get(&(dst, src, dport, sport, protocol)) {
                let own = self.starts[&(src, dst, sport, dport, protocol)];
                return match reversed.cmp(&own) {
                    std::cmp::Ordering::Less => Some(ReplyBy::Pair),
                    std::cmp::Ordering::Greater => None,
                    std::cmp::Ordering::Equal => {
                        let (from, to) = (self.rank(protocol, sport), self.rank(protocol, dport));
                        (from > to || (from == to && sport < dport)).then_some(ReplyBy::Pair)
                    }
                };
            }
            let service = |port: u16| self.rank(protocol, port) >= 2;
            return (service(sport) && !service(dport)).then(|| self.by_port(protocol, sport));
        }
        if !(is_icmp(protocol) && flow.icmp.is_none()) {
            return likely_reply(flow).then_some(ReplyBy::PortList);
        }
        let windows = self.exchanges.get(&(flow.dst, flow.src, protocol))?;
        windows
            .iter()
            .any(|&(start, end)| {
                (start < flow.start && flow.start <= end)
                    || (start == flow.start && flow.dst < flow.src)
            })
            .then_some(ReplyBy::Pair)
    }
}

/// A TCP or UDP record's 5-tuple, when it has both ports.
fn five_tuple(flow: &FlowRecord) -> Option<FiveTuple> {
    match (flow.protocol, flow.src_port, flow.dst_port) {
        (protocol::TCP | protocol::UDP, Some(sport), Some(dport)) => {
            Some((flow.src, flow.dst, sport, dport, flow.protocol))
        }
        _ => None,
    }
}

pub(super) fn is_icmp(protocol: u8) -> bool {
    use crate::core::flowlog::protocol::{ICMP, ICMPV6};
    protocol == ICMP || protocol == ICMPV6
}
