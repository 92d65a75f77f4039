//! Which rules can touch a rule: the hygiene analysis compares a rule only with these, instead of
//! with every rule before and after it.
//!
//! Every match-space box has a span in each dimension (source, destination, service key): from
//! the start of its first range to the end of its last. Two boxes can only intersect when their
//! family pairs agree and their spans overlap in all three dimensions, so the rules whose spans
//! overlap a rule's spans are a superset of the rules that touch it, and the exact box test then
//! runs on those alone.
//!
//! "Spans overlap" is `start ≤ their end` and `end ≥ their start`. Per family pair and dimension
//! the boxes are kept sorted by start and by end; the boxes with `start ≤ x` are a prefix of the
//! first order, those with `end ≥ x` a prefix of the second (descending). A cumulative bitset over
//! rule positions is kept every [`STRIDE`] boxes of each order, so one prefix is a copied bitset
//! plus at most `STRIDE - 1` bits, and the six prefixes of a query are ANDed word by word. The
//! memory is `boxes / STRIDE × rules / 8` bytes per order (about 1.2 MB per order at 20,000
//! rules).

use super::{Ranges, Region};

/// Boxes between two cumulative bitsets.
const STRIDE: usize = 64;

/// A set of rule positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Bits(Vec<u64>);

impl Bits {
    fn empty(rules: usize) -> Self {
        Bits(vec![0; rules.div_ceil(64)])
    }

    fn insert(&mut self, position: usize) {
        self.0[position / 64] |= 1 << (position % 64);
    }

    /// Bytes it holds.
    pub(super) fn bytes(&self) -> usize {
        self.0.len() * 8
    }

    /// Keeps the positions `keep` accepts.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(usize) -> bool) {
        for (w, word) in self.0.iter_mut().enumerate() {
            let mut bits = *word;
            while bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if !keep(w * 64 + bit) {
                    *word &= !(1 << bit);
                }
            }
        }
    }

    /// The first position at or after `from`.
    pub(super) fn next_from(&self, from: usize) -> Option<usize> {
        let mut word = from / 64;
        let mut bits = *self.0.get(word)? & (u64::MAX << (from % 64));
        loop {
            if bits != 0 {
                return Some(word * 64 + bits.trailing_zeros() as usize);
            }
            word += 1;
            bits = *self.0.get(word)?;
        }
    }

    /// Positions in ascending order.
    pub(super) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        let mut next = 0;
        std::iter::from_fn(move || {
            let position = self.next_from(next)?;
            next = position + 1;
            Some(position)
        })
    }
}

/// The boxes of one family pair in one dimension, sorted two ways.
#[derive(Debug)]
struct Order {
    /// `(start, rule)` by start, ascending.
    starts: Vec<(u128, u32)>,
    /// `(end, rule)` by end, descending.
    ends: Vec<(u128, u32)>,
    /// Cumulative bitsets of `starts`: the `k`-th holds the rules of `starts[..k * STRIDE]`.
    start_marks: Vec<u64>,
    end_marks: Vec<u64>,
}

impl Order {
    fn new(mut spans: Vec<(u128, u128, u32)>, words: usize) -> Self {
        let mut starts: Vec<(u128, u32)> = spans.iter().map(|&(lo, _, r)| (lo, r)).collect();
        starts.sort_unstable();
        spans.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
        let ends: Vec<(u128, u32)> = spans.iter().map(|&(_, hi, r)| (hi, r)).collect();
        let start_marks = marks(&starts, words);
        let end_marks = marks(&ends, words);
        Order {
            starts,
            ends,
            start_marks,
            end_marks,
        }
    }

    /// ANDs into `out` the rules with a box of this order overlapping `lo..=hi` (`first`: set
    /// instead of AND).
    fn select(&self, lo: u128, hi: u128, out: &mut [u64], scratch: &mut [u64], first: bool) {
        let started = self.starts.partition_point(|&(start, _)| start <= hi);
        prefix(&self.starts, &self.start_marks, started, scratch);
        if first {
            out.copy_from_slice(scratch);
        } else {
            and(out, scratch);
        }
        let ended = self.ends.partition_point(|&(end, _)| end >= lo);
        prefix(&self.ends, &self.end_marks, ended, scratch);
        and(out, scratch);
    }
}

/// The cumulative bitsets of `entries`, one every [`STRIDE`] entries, back to back.
fn marks(entries: &[(u128, u32)], words: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity((entries.len() / STRIDE + 1) * words);
    let mut current = vec![0u64; words];
    out.extend_from_slice(&current);
    for chunk in entries.chunks(STRIDE) {
        if chunk.len() < STRIDE {
            break;
        }
        for &(_, rule) in chunk {
            current[rule as usize / 64] |= 1 << (rule % 64);
        }
        out.extend_from_slice(&current);
    }
    out
}

/// The rules of `entries[..count]` into `out`.
fn prefix(entries: &[(u128, u32)], marks: &[u64], count: usize, out: &mut [u64]) {
    let words = out.len();
    let mark = count / STRIDE;
    out.copy_from_slice(&marks[mark * words..(mark + 1) * words]);
    for &(_, rule) in &entries[mark * STRIDE..count] {
        out[rule as usize / 64] |= 1 << (rule % 64);
    }
}

fn and(out: &mut [u64], other: &[u64]) {
    for (a, b) in out.iter_mut().zip(other) {
        *a &= b;
    }
}

fn span(ranges: &Ranges) -> (u128, u128) {
    (ranges[0].0, ranges[ranges.len() - 1].1)
}

/// A box's family pair (its index in [`PAIRS`]) and its spans in the three dimensions; `None` for
/// a box with an empty dimension or a pair of other families.
fn spans(region: &Region) -> Option<(usize, [(u128, u128); 3])> {
    let pair = PAIRS.iter().position(|&p| p == region.families)?;
    if region.src.is_empty() || region.dst.is_empty() || region.keys.is_empty() {
        return None;
    }
    Some((
        pair,
        [span(&region.src), span(&region.dst), span(&region.keys)],
    ))
}

/// Family pairs, in the order of [`Candidates::pairs`].
const PAIRS: [(u8, u8); 4] = [(4, 4), (4, 6), (6, 4), (6, 6)];

/// The index over every determinate rule's match space.
#[derive(Debug)]
pub(super) struct Candidates {
    /// Per family pair: source, destination and service-key orders (`None`: no box of that pair).
    pairs: [Option<[Order; 3]>; 4],
    /// Rules that are always candidates (in effect but unresolvable: they might match anything).
    always: Bits,
}

impl Candidates {
    /// Indexes `spaces[i]`, the match space of rule `i` (`None`: none to index), and marks
    /// `always` as candidates of every query. A match space has at most one box per family pair
    /// (as [`super::space`] builds it): the dimensions are indexed per rule, so two boxes of one
    /// rule and pair would be answered as their spans' mix, a superset.
    pub(super) fn new<'a>(
        spaces: impl ExactSizeIterator<Item = Option<&'a [Region]>>,
        always: impl Iterator<Item = usize>,
    ) -> Self {
        let rules = spaces.len();
        let words = rules.div_ceil(64);
        let mut boxes: [[Vec<(u128, u128, u32)>; 3]; 4] = Default::default();
        for (rule, space) in spaces.enumerate() {
            for (pair, spans) in space.into_iter().flatten().filter_map(spans) {
                for (dimension, (lo, hi)) in spans.into_iter().enumerate() {
                    boxes[pair][dimension].push((lo, hi, rule as u32));
                }
            }
        }
        let pairs = boxes.map(|dimensions| {
            if dimensions[0].is_empty() {
                return None;
            }
            Some(dimensions.map(|spans| Order::new(spans, words)))
        });
        let mut all = Bits::empty(rules);
        for rule in always {
            all.insert(rule);
        }
        Candidates { pairs, always: all }
    }

    /// The rules with a box whose spans overlap those of a box of `regions`, and the rules that
    /// are always candidates.
    pub(super) fn touching(&self, regions: &[Region]) -> Bits {
        let mut out = self.always.clone();
        let words = out.0.len();
        let mut found = vec![0u64; words];
        let mut scratch = vec![0u64; words];
        for (pair, spans) in regions.iter().filter_map(spans) {
            let Some(orders) = &self.pairs[pair] else {
                continue;
            };
            for (dimension, (lo, hi)) in spans.into_iter().enumerate() {
                orders[dimension].select(lo, hi, &mut found, &mut scratch, dimension == 0);
            }
            for (a, b) in out.0.iter_mut().zip(&found) {
                *a |= b;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn region(
        families: (u8, u8),
        src: (u128, u128),
        dst: (u128, u128),
        keys: (u128, u128),
    ) -> Region {
        Region {
            families,
            src: vec![src],
            dst: vec![dst],
            keys: vec![keys],
        }
    }

    fn range() -> impl Strategy<Value = (u128, u128)> {
        (0u128..300, 0u128..60).prop_map(|(lo, width)| (lo, lo + width))
    }

    fn boxed() -> impl Strategy<Value = Region> {
        (0usize..4, range(), range(), range())
            .prop_map(|(pair, src, dst, keys)| region(PAIRS[pair], src, dst, keys))
    }

    proptest! {
        /// The index finds exactly the rules a scan over every pair finds (spans overlapping in
        /// all three dimensions, same family pair), for rule counts on both sides of a stride.
        #[test]
        fn the_index_finds_what_a_scan_of_every_rule_finds(
            spaces in proptest::collection::vec(
                proptest::option::weighted(
                    0.9,
                    // At most one box per family pair, as a rule's match space has.
                    proptest::collection::vec(boxed(), 0..3).prop_map(|mut boxes| {
                        boxes.sort_by_key(|b| b.families);
                        boxes.dedup_by_key(|b| b.families);
                        boxes
                    }),
                ),
                0..200,
            ),
            query in proptest::collection::vec(boxed(), 1..3),
        ) {
            let always: Vec<usize> = (0..spaces.len()).filter(|i| i % 17 == 3).collect();
            let index = Candidates::new(
                spaces.iter().map(|s| s.as_deref()),
                always.iter().copied(),
            );
            let found: Vec<usize> = index.touching(&query).iter().collect();
            let overlap = |a: (u128, u128), b: (u128, u128)| a.0 <= b.1 && b.0 <= a.1;
            let expected: Vec<usize> = (0..spaces.len())
                .filter(|&i| {
                    always.contains(&i)
                        || spaces[i].iter().flatten().any(|r| {
                            query.iter().any(|q| {
                                q.families == r.families
                                    && overlap(span(&q.src), span(&r.src))
                                    && overlap(span(&q.dst), span(&r.dst))
                                    && overlap(span(&q.keys), span(&r.keys))
                            })
                        })
                })
                .collect();
            prop_assert_eq!(found, expected);
        }
    }

    #[test]
    fn next_from_walks_the_set_positions() {
        let mut bits = Bits::empty(200);
        for p in [0, 63, 64, 130, 199] {
            bits.insert(p);
        }
        assert_eq!(bits.iter().collect::<Vec<_>>(), vec![0, 63, 64, 130, 199]);
        assert_eq!(bits.next_from(65), Some(130));
        assert_eq!(bits.next_from(200), None);
        assert_eq!(Bits::empty(0).next_from(0), None);
    }
}
