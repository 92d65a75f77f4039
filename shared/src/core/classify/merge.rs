//! Which records of a batch are one flow (the same flow seen on two ENIs, merged) and which are
//! replies of a connection rather than new ones.

use super::*;

pub(super) type FlowIdentity = (
    IpAddr,
    IpAddr,
    Option<u16>,
    Option<u16>,
    u8,
    Option<(u8, u8)>,
);

/// Merges the records of one flow seen on more than one ENI: same 5-tuple (and ICMP type and
/// code, when known), overlapping windows.
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
            flow.icmp.map(|i| (i.kind, i.code)),
        );
        let slots = seen.entry(identity).or_default();
        let existing = slots.iter().copied().find(|&i| {
            let other = &flows[i];
            flow.start <= other.end && other.start <= flow.end
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

/// Windows of ICMP records of unknown type, by (source, destination, protocol).
pub(super) type Exchanges = FastMap<(IpAddr, IpAddr, u8), Vec<(u64, u64)>>;

/// ICMP records whose type is unknown (ports `0 0`), by (source, destination, protocol), with
/// their windows: a reply is told from its request by the opposite record of the same exchange.
pub(super) fn unknown_icmp(flows: &[FlowRecord]) -> Exchanges {
    let mut exchanges = Exchanges::default();
    for flow in flows
        .iter()
        .filter(|f| is_icmp(f.protocol) && f.icmp.is_none())
    {
        exchanges
            .entry((flow.src, flow.dst, flow.protocol))
            .or_default()
            .push((flow.start, flow.end));
    }
    exchanges
}

pub(super) fn is_icmp(protocol: u8) -> bool {
    use crate::core::flowlog::protocol::{ICMP, ICMPV6};
    protocol == ICMP || protocol == ICMPV6
}

/// Whether `flow` is a reply: by its ports or ICMP type ([`likely_reply`]), or, for an ICMP
/// record of unknown type, because the batch holds the opposite record of the same exchange
/// starting strictly earlier with overlapping windows (the documented ping example: request
/// `203.0.113.12 → 172.31.16.139` from 1432917027, reply back from 1432917094). Otherwise it is
/// judged like a request: never silently taken for a reply.
pub(super) fn is_reply(flow: &FlowRecord, exchanges: &Exchanges) -> bool {
    if !(is_icmp(flow.protocol) && flow.icmp.is_none()) {
        return likely_reply(flow);
    }
    exchanges
        .get(&(flow.dst, flow.src, flow.protocol))
        .is_some_and(|windows| {
            windows
                .iter()
                .any(|&(start, end)| start < flow.start && flow.start <= end)
        })
}
