//! One match dimension of the rule index (source address, destination address, or
//! protocol+port), built as elementary intervals under a segment tree.
//!
//! The key space is cut at every range boundary of every rule into elementary intervals, and a
//! segment tree is laid over them: each rule's range is held by the O(log n) nodes that exactly
//! cover it, as sparse lists of `(word index, 64-bit mask)` pairs over rule positions
//! (position = priority). The rules covering an interval are the union of the lists on the path
//! from its leaf to the root. Memory thus grows with rules × log(intervals), where one list per
//! interval grew with rules × intervals: 20,000 overlapping rules held 115 MB that way (a /8 is in
//! every interval under it), and a few MB this way. Rules that cover the whole key space ("any")
//! are kept apart in one dense mask (`wild`). Each node has two lists: *solo* rules, which are
//! "any" in the partner dimension (so matching here is enough for both address dimensions), and
//! *pair* rules, which also need the partner dimension's pair list to agree.
//! A lookup is one binary search; for 32-bit keys with many intervals a table over the top 16
//! bits of the key first narrows it to the few intervals of one bucket. The lists of the path are
//! then ORed into dense scratch masks ([`Dimension::fill`]).

/// A key type of a dimension.
pub trait Key: Copy + Ord {
    /// The smallest key.
    const MIN: Self;
    /// The largest key.
    const MAX: Self;
    /// `self + 1`, or `None` at `MAX`.
    fn next(self) -> Option<Self>;
    /// Bits of the key from `shift` up, as a bucket number (keys wider than 32 bits have no
    /// bucket table and never call this).
    fn bucket(self, shift: u32) -> usize;
    /// The first key of bucket `bucket`, `None` past the end of the key space.
    fn bucket_start(bucket: usize, shift: u32) -> Option<Self>;
    /// Whether lookups may use a bucket table.
    const BUCKETED: bool;
}

impl Key for u32 {
    const MIN: Self = 0;
    const MAX: Self = u32::MAX;
    const BUCKETED: bool = true;
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn bucket(self, shift: u32) -> usize {
        (self >> shift) as usize
    }
    fn bucket_start(bucket: usize, shift: u32) -> Option<Self> {
        u32::try_from((bucket as u64) << shift).ok()
    }
}

impl Key for u128 {
    const MIN: Self = 0;
    const MAX: Self = u128::MAX;
    const BUCKETED: bool = false;
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn bucket(self, _shift: u32) -> usize {
        unreachable!("u128 keys have no bucket table")
    }
    fn bucket_start(_bucket: usize, _shift: u32) -> Option<Self> {
        None
    }
}

/// Number of buckets in a bucket table (the top 16 bits of a 32-bit key space).
const BUCKETS: usize = 1 << 16;
/// Below this many intervals a plain binary search is as fast as the table.
const BUCKET_TABLE_MIN_INTERVALS: usize = 64;
/// Sub-buckets of a crowded bucket (the next 8 bits of the key).
const FINE: usize = 1 << 8;
/// A bucket holding more intervals than this gets a table of its own over its sub-buckets: the
/// networks of an account share few top-16-bit buckets (10.0.0.0/16 … 10.63.0.0/16 on the
/// synthetic sets, 150 intervals each with 10,000 rules). Counted by cachegrind per evaluation of
/// 1,000 synthetic rules (20 intervals a bucket): from 16 intervals up, 3 % fewer instructions
/// but 16 % more first-level cache misses (the two tables read instead of one); from 64, as
/// without the tables.
const FINE_MIN_INTERVALS: u32 = 64;

/// A sparse bitset word: rule positions `64 * word .. 64 * word + 63`. Packed into 12 bytes (a
/// `(u32, u64)` takes 16 with its padding): the flat lists of 10,000 synthetic rules hold 400,000.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
pub(crate) struct Word {
    /// The word's number.
    pub word: u32,
    /// Its rules' bits.
    pub bits: u64,
}

impl serde::Serialize for Word {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Word { word, bits } = *self;
        (word, bits).serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Word {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (word, bits) = <(u32, u64)>::deserialize(deserializer)?;
        Ok(Word { word, bits })
    }
}

/// Per-node sparse lists, stored back to back.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Pool {
    offsets: Vec<u32>,
    words: Vec<Word>,
}

impl Pool {
    /// The lists of `nodes` nodes from `visit`, which yields every `(node, position)` pair, the
    /// positions ascending, the same each time it is called: once to count each node's rules,
    /// once to place them (a counting sort: a comparison sort of the pairs was a fifth of the
    /// compile, and they took twice the memory).
    fn new(nodes: usize, visit: impl Fn(&mut dyn FnMut(usize, u32))) -> Self {
        let mut starts = vec![0u32; nodes + 1];
        visit(&mut |node, _| starts[node + 1] += 1);
        for node in 0..nodes {
            starts[node + 1] += starts[node];
        }
        let mut positions = vec![0u32; starts[nodes] as usize];
        let mut next = starts.clone();
        visit(&mut |node, position| {
            positions[next[node] as usize] = position;
            next[node] += 1;
        });
        let list = |node: usize| &positions[starts[node] as usize..starts[node + 1] as usize];
        // The words counted first, so the lists are allocated once at their size.
        let count = (0..nodes)
            .map(|node| {
                let list = list(node);
                list.first().map_or(0, |_| 1)
                    + list.windows(2).filter(|p| p[0] / 64 != p[1] / 64).count()
            })
            .sum();
        let mut offsets = Vec::with_capacity(nodes + 1);
        let mut words: Vec<Word> = Vec::with_capacity(count);
        for node in 0..nodes {
            offsets.push(words.len() as u32);
            let first = words.len();
            for &position in list(node) {
                let (word, bit) = (position / 64, 1u64 << (position % 64));
                let held = words.len() > first;
                match words.last_mut() {
                    Some(last) if held && last.word == word => last.bits |= bit,
                    _ => words.push(Word { word, bits: bit }),
                }
            }
        }
        offsets.push(words.len() as u32);
        debug_assert_eq!(words.len(), count);
        Pool { offsets, words }
    }

    fn list(&self, node: usize) -> &[Word] {
        &self.words[self.offsets[node] as usize..self.offsets[node + 1] as usize]
    }

    /// ORs node `node`'s words up to `last` into `into`.
    #[inline]
    fn or_into(&self, node: usize, last: u32, into: &mut [u64]) {
        for &Word { word, bits } in self.list(node) {
            if word > last {
                break;
            }
            into[word as usize] |= bits;
        }
    }
}

/// One dimension of the index.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Dimension<K> {
    /// Rules that match every key, dense, one bit per position.
    pub wild: Vec<u64>,
    starts: Vec<K>,
    /// Leaves of the segment tree (a power of two ≥ the intervals); node 1 is the root, interval
    /// `i`'s leaf is node `leaves + i`, node `n`'s parent `n / 2`.
    leaves: usize,
    solo: Pool,
    pair: Pool,
    /// Whether every range is held by its leaves ([`Dimension::is_flat`]).
    flat: bool,
    /// `up[n]`: node `n`'s nearest ancestor holding any rule (0: none), so a lookup visits only
    /// the nodes that hold rules.
    up: Vec<u32>,
    /// `entry[i]`: the first node holding rules on interval `i`'s path (its leaf or `up` of
    /// it; 0: none), one read where a lookup tested the leaf's two lists first.
    entry: Vec<u32>,
    /// `buckets[b]`: the interval holding the first key of bucket `b` (one extra at the end).
    buckets: Vec<u32>,
    /// `crowded[b]`: for a bucket of more than [`FINE_MIN_INTERVALS`] intervals, 1 + its number
    /// among those; 0 for the others (empty when there are none).
    crowded: Vec<u16>,
    /// Per crowded bucket, [`FINE`] + 1 entries: the interval holding the first key of each
    /// sub-bucket, then the bucket's entry in `buckets` after it.
    fine: Vec<u32>,
    shift: u32,
    /// In a flat dimension, per interval, [`Dimension::chunks`] words of bits: bit `w` set when
    /// its pair list holds word `w`. Two intervals' pair lists meet only on the words where both
    /// are set, so a scan finds them by ANDing these instead of merging the two lists.
    presence: Vec<u64>,
    /// Words of `presence` per interval (0 when the dimension is not flat).
    chunks: usize,
}

/// Entries (a rule in a node) one dimension may hold before its ranges move up the tree: 3 MiB
/// of lists at most. Below it every range is held by the leaves of its intervals, so a lookup
/// reads one list per kind (the engine's sparse scan); past it, ranges over more than a span of
/// intervals are held by the nodes covering them, the widest span that fits (the dense scan).
/// 10,000 synthetic rules need 188 Ki and 229 Ki entries in their two address dimensions: flat,
/// they evaluate twice as fast as under the 128 Ki entries (2 MiB of 16-byte words) held before.
/// Measured on the reference account (20,000 overlapping rules; 3 Mi entries in one dimension):
/// one list per interval took 37 MB and evaluated 4,096 flows in 5.4 ms; this limit, 6.1 ms,
/// with the whole `esgflow explain` process at 52 MB (87 MB before); 512 Ki entries was no
/// faster.
pub(crate) const MAX_ENTRIES: usize = 256 * 1024;

/// The spans tried, widest first (`usize::MAX`: every range in its leaves).
const LEAF_SPANS: [usize; 8] = [usize::MAX, 4096, 1024, 256, 64, 16, 4, 1];

impl<K: Key> Dimension<K> {
    /// Builds the dimension. `rules` yields each indexed rule's position, its sorted, merged
    /// inclusive ranges, and whether it is *solo* ("any" in the partner dimension); `space` is
    /// the key range that counts as "any" for this dimension, and `key_bits` the width of the
    /// keys used (for the bucket table of 32-bit keys). Every range is held by its leaves when
    /// that takes at most `max_entries` entries ([`MAX_ENTRIES`] in use).
    pub fn build<'a>(
        words: usize,
        space: (K, K),
        key_bits: u32,
        rules: impl Iterator<Item = (u32, &'a [(K, K)], bool)>,
        max_entries: usize,
    ) -> Self
    where
        K: 'a,
    {
        let mut wild = vec![0u64; words];
        let mut specific = Vec::new();
        let mut starts = vec![K::MIN];
        for (position, ranges, solo) in rules {
            if ranges
                .first()
                .is_some_and(|&(lo, hi)| lo <= space.0 && hi >= space.1)
            {
                set(&mut wild, position);
                continue;
            }
            for &(lo, hi) in ranges {
                starts.push(lo);
                starts.extend(hi.next());
            }
            specific.push((position, ranges, solo));
        }
        starts.sort_unstable();
        starts.dedup();
        let shift = key_bits.saturating_sub(16);
        let buckets = if K::BUCKETED && starts.len() >= BUCKET_TABLE_MIN_INTERVALS {
            bucket_table(&starts, shift)
        } else {
            Vec::new()
        };
        let (crowded, fine) = fine_tables(&starts, &buckets, shift);
        let mut dimension = Self {
            wild,
            leaves: starts.len().next_power_of_two(),
            starts,
            solo: Pool::new(0, |_| {}),
            pair: Pool::new(0, |_| {}),
            up: Vec::new(),
            entry: Vec::new(),
            flat: true,
            buckets,
            crowded,
            fine,
            shift,
            presence: Vec::new(),
            chunks: 0,
        };
        // Each range's leaves, or past the span its covering nodes, found bottom-up.
        let spans: Vec<(u32, usize, usize, bool)> = specific
            .iter()
            .flat_map(|&(position, ranges, is_solo)| {
                let dimension = &dimension;
                ranges.iter().map(move |&(lo, hi)| {
                    let left = dimension.leaves + dimension.interval(lo);
                    (
                        position,
                        left,
                        dimension.leaves + dimension.interval(hi) + 1,
                        is_solo,
                    )
                })
            })
            .collect();
        let covering = |mut left: usize, mut right: usize, out: &mut dyn FnMut(usize)| {
            while left < right {
                if left & 1 == 1 {
                    out(left);
                    left += 1;
                }
                if right & 1 == 1 {
                    right -= 1;
                    out(right);
                }
                left /= 2;
                right /= 2;
            }
        };
        let entries = |span: usize| -> usize {
            spans
                .iter()
                .map(|&(_, left, right, _)| {
                    if right - left <= span {
                        right - left
                    } else {
                        let mut nodes = 0;
                        covering(left, right, &mut |_| nodes += 1);
                        nodes
                    }
                })
                .sum()
        };
        let span = LEAF_SPANS
            .into_iter()
            .find(|&span| entries(span) <= max_entries)
            .unwrap_or(1);
        dimension.flat = span == usize::MAX;
        let place = |kind: bool, out: &mut dyn FnMut(usize, u32)| {
            for &(position, left, right, is_solo) in &spans {
                if is_solo != kind {
                    continue;
                }
                if right - left <= span {
                    (left..right).for_each(|leaf| out(leaf, position));
                } else {
                    covering(left, right, &mut |node| out(node, position));
                }
            }
        };
        let nodes = 2 * dimension.leaves;
        dimension.solo = Pool::new(nodes, |out| place(true, out));
        dimension.pair = Pool::new(nodes, |out| place(false, out));
        let mut up = vec![0u32; nodes];
        for node in 2..nodes {
            let parent = node / 2;
            up[node] = if dimension.holds(parent) {
                parent as u32
            } else {
                up[parent]
            };
        }
        dimension.entry = (dimension.leaves..dimension.leaves + dimension.starts.len())
            .map(|leaf| {
                if dimension.holds(leaf) {
                    leaf as u32
                } else {
                    up[leaf]
                }
            })
            .collect();
        dimension.up = up;
        if dimension.flat {
            let chunks = words.div_ceil(64);
            let mut presence = vec![0u64; dimension.starts.len() * chunks];
            for (interval, bits) in presence.chunks_exact_mut(chunks.max(1)).enumerate() {
                for w in dimension.leaf_pair(interval) {
                    set(bits, w.word);
                }
            }
            dimension.presence = presence;
            dimension.chunks = chunks;
        }
        dimension
    }

    /// Whether node `node` holds any rule.
    fn holds(&self, node: usize) -> bool {
        !self.solo.list(node).is_empty() || !self.pair.list(node).is_empty()
    }

    /// The nodes holding rules on the path from interval `index`'s leaf to the root.
    #[inline]
    fn path(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        let first = self.entry[index] as usize;
        std::iter::successors(Some(first).filter(|&n| n != 0), |&node| {
            Some(self.up[node] as usize).filter(|&n| n != 0)
        })
    }

    /// The interval holding `key`.
    #[inline]
    pub(crate) fn interval(&self, key: K) -> usize {
        if self.buckets.is_empty() {
            return self.starts.partition_point(|&start| start <= key) - 1;
        }
        let bucket = key.bucket(self.shift);
        let (lo, hi) = match self.crowded.get(bucket) {
            Some(&n) if n != 0 => {
                let at = (n as usize - 1) * (FINE + 1) + (key.bucket(self.shift - 8) % FINE);
                (self.fine[at] as usize, self.fine[at + 1] as usize)
            }
            _ => (
                self.buckets[bucket] as usize,
                self.buckets[bucket + 1] as usize,
            ),
        };
        lo + self.starts[lo + 1..=hi].partition_point(|&start| start <= key)
    }

    /// ORs the specific rules of interval `index` in words `..= last` into dense masks: the
    /// solo rules into `solo`, the pair rules into `pair`.
    #[inline]
    pub(crate) fn fill(&self, index: usize, last: u32, solo: &mut [u64], pair: &mut [u64]) {
        for node in self.path(index) {
            self.solo.or_into(node, last, solo);
            self.pair.or_into(node, last, pair);
        }
    }

    /// ORs the specific solo rules of interval `index` in words `..= last` into `solo`.
    #[inline]
    pub(crate) fn fill_solo(&self, index: usize, last: u32, solo: &mut [u64]) {
        for node in self.path(index) {
            self.solo.or_into(node, last, solo);
        }
    }

    /// Whether every rule is held by the leaves of its intervals (one list per interval).
    #[inline]
    pub(crate) fn is_flat(&self) -> bool {
        self.flat
    }

    /// The solo rules of interval `index` in a flat dimension.
    #[inline]
    pub(crate) fn leaf_solo(&self, index: usize) -> &[Word] {
        self.solo.list(self.leaves + index)
    }

    /// The pair rules of interval `index` in a flat dimension.
    #[inline]
    pub(crate) fn leaf_pair(&self, index: usize) -> &[Word] {
        self.pair.list(self.leaves + index)
    }

    /// The words interval `index`'s pair list holds, one bit each, in a flat dimension.
    #[inline]
    pub(crate) fn leaf_presence(&self, index: usize) -> &[u64] {
        &self.presence[index * self.chunks..(index + 1) * self.chunks]
    }

    /// The specific rules of interval `index`, solo and pair, as a dense mask of `words` words.
    #[cfg(test)]
    fn dense(&self, index: usize, words: usize) -> (Vec<u64>, Vec<u64>) {
        let (mut solo, mut pair) = (vec![0; words], vec![0; words]);
        self.fill(index, words as u32, &mut solo, &mut pair);
        (solo, pair)
    }

    /// Number of elementary intervals.
    pub(crate) fn intervals(&self) -> usize {
        self.starts.len()
    }
}

/// The bucket table of sorted interval starts (the first `K::MIN`): for each bucket the
/// interval holding its first key, and last the last interval. One walk over the starts, the
/// buckets' first keys ascending: a binary search per bucket (65,536 of them in each dimension
/// of each index) was most of an index's build.
fn bucket_table<K: Key>(starts: &[K], shift: u32) -> Vec<u32> {
    let mut table = first_intervals(starts, 0, (0..BUCKETS).map(|b| K::bucket_start(b, shift)));
    table.push((starts.len() - 1) as u32);
    table
}

/// The intervals holding ascending keys (`None`: past the key space, the last interval), walking
/// the sorted starts from interval `from`.
fn first_intervals<K: Key>(
    starts: &[K],
    from: usize,
    firsts: impl Iterator<Item = Option<K>>,
) -> Vec<u32> {
    let mut interval = from;
    firsts
        .map(|first| match first {
            Some(first) => {
                while starts
                    .get(interval + 1)
                    .is_some_and(|&start| start <= first)
                {
                    interval += 1;
                }
                interval as u32
            }
            None => (starts.len() - 1) as u32,
        })
        .collect()
}

/// The crowded buckets' numbers and their sub-bucket tables ([`Dimension::crowded`] and
/// [`Dimension::fine`]); empty without a bucket table.
fn fine_tables<K: Key>(starts: &[K], buckets: &[u32], shift: u32) -> (Vec<u16>, Vec<u32>) {
    let mut crowded = Vec::new();
    let mut fine = Vec::new();
    if shift < 8 {
        return (crowded, fine);
    }
    for bucket in 0..buckets.len().saturating_sub(1) {
        let (lo, hi) = (buckets[bucket], buckets[bucket + 1]);
        let number = fine.len() / (FINE + 1) + 1;
        if hi - lo <= FINE_MIN_INTERVALS || number > usize::from(u16::MAX) {
            continue;
        }
        if crowded.is_empty() {
            crowded = vec![0u16; BUCKETS];
        }
        crowded[bucket] = number as u16;
        let firsts = (0..FINE).map(|sub| K::bucket_start(bucket * FINE + sub, shift - 8));
        fine.extend(first_intervals(starts, lo as usize, firsts));
        fine.push(hi);
    }
    (crowded, fine)
}

/// Sets bit `position` in a dense mask.
#[inline]
pub fn set(mask: &mut [u64], position: u32) {
    mask[(position / 64) as usize] |= 1 << (position % 64);
}

/// The bits of word `word` in a sorted sparse list, advancing `cursor` (lookups come in
/// ascending word order). Gallops from the cursor, so a dense list costs O(1) per step and a
/// sparse one O(log gap).
#[inline]
pub(crate) fn sparse_get(words: &[Word], cursor: &mut usize, word: u32) -> u64 {
    gallop(words, cursor, word);
    match words.get(*cursor) {
        Some(&w) if { w.word } == word => w.bits,
        _ => 0,
    }
}

/// Advances `cursor` to the first entry whose word is `>= word`, galloping (1, 2, 4, … ahead)
/// and then bisecting, so the cost is O(log gap).
#[inline]
fn gallop(words: &[Word], cursor: &mut usize, word: u32) {
    let mut lo = *cursor;
    if lo >= words.len() || words[lo].word >= word {
        return;
    }
    let mut step = 1;
    let mut hi = lo + 1;
    while hi < words.len() && words[hi].word < word {
        lo = hi;
        step *= 2;
        hi = lo + step;
    }
    let hi = hi.min(words.len());
    *cursor = lo + words[lo..hi].partition_point(|w| { w.word } < word);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk finds for every bucket the interval a binary search finds, for 32-bit keys
    /// bucketed by their top 16 bits and for 24-bit service keys by their top 16 of 24.
    #[test]
    fn bucket_tables_agree_with_a_search_per_bucket() {
        let mut rng = fastrand::Rng::with_seed(3);
        for (shift, top) in [(16, u32::MAX), (8, (1 << 24) - 1)] {
            for count in [64, 300, 5_000] {
                let mut starts: Vec<u32> = (0..count).map(|_| rng.u32(..=top)).collect();
                // Clusters, as rules' networks have: several starts in one bucket.
                starts.extend((0..count / 4).map(|i| (1 << shift) * 7 + i as u32));
                starts.push(0);
                starts.sort_unstable();
                starts.dedup();
                let table = bucket_table(&starts, shift);
                assert_eq!(table.len(), BUCKETS + 1);
                for (bucket, &interval) in table.iter().enumerate().take(BUCKETS) {
                    let first = (bucket as u32) << shift;
                    let searched = starts.partition_point(|&s| s <= first) - 1;
                    assert_eq!(
                        interval as usize, searched,
                        "bucket {bucket}, shift {shift}"
                    );
                }
                assert_eq!(table[BUCKETS] as usize, starts.len() - 1);
            }
        }
    }

    fn bits(mask: &[u64]) -> Vec<u32> {
        (0..mask.len() as u32 * 64)
            .filter(|&p| mask[(p / 64) as usize] & (1 << (p % 64)) != 0)
            .collect()
    }

    #[test]
    fn intervals_hold_the_covering_rules() {
        let r0 = [(10u32, 20u32)];
        let r1 = [(15u32, 30u32)];
        let r2 = [(0u32, u32::MAX)];
        let r3 = [(100u32, 100u32), (200, 210)];
        let dim = Dimension::build(
            1,
            (0, u32::MAX),
            32,
            [
                (0, &r0[..], false),
                (1, &r1[..], true),
                (2, &r2[..], false),
                (3, &r3[..], false),
            ]
            .into_iter(),
            0,
        );
        let (solo, pair) = dim.dense(dim.interval(16), 1);
        assert_eq!((bits(&solo), bits(&pair)), (vec![1], vec![0]));
        assert_eq!(dim.wild, vec![0b100]);
        let at = |k: u32| {
            let (solo, pair) = dim.dense(dim.interval(k), 1);
            bits(&[solo[0] | pair[0]])
        };
        assert_eq!(at(0), Vec::<u32>::new());
        assert_eq!(at(10), vec![0]);
        assert_eq!(at(16), vec![0, 1]);
        assert_eq!(at(21), vec![1]);
        assert_eq!(at(31), Vec::<u32>::new());
        assert_eq!(at(100), vec![3]);
        assert_eq!(at(101), Vec::<u32>::new());
        assert_eq!(at(205), vec![3]);
        assert_eq!(at(u32::MAX), Vec::<u32>::new());
    }

    #[test]
    fn ranges_starting_at_zero_and_ending_at_max() {
        let r0 = [(0u32, 5u32)];
        let r1 = [(7u32, u32::MAX)];
        let dim = Dimension::build(
            1,
            (0, u32::MAX),
            32,
            [(0, &r0[..], false), (1, &r1[..], false)].into_iter(),
            MAX_ENTRIES,
        );
        let at = |k: u32| bits(&dim.dense(dim.interval(k), 1).1);
        assert_eq!(at(0), vec![0]);
        assert_eq!(at(6), Vec::<u32>::new());
        assert_eq!(at(u32::MAX), vec![1]);
    }

    /// Every interval's rules, read from the tree, are the rules whose ranges cover it: checked
    /// against a scan of the ranges over many random overlapping rules and keys.
    #[test]
    fn the_tree_holds_what_the_ranges_cover() {
        let mut rng = fastrand::Rng::with_seed(11);
        let rules: Vec<Vec<(u32, u32)>> = (0..300)
            .map(|_| {
                let mut ranges: Vec<(u32, u32)> = (0..rng.usize(1..4))
                    .map(|_| {
                        let lo = rng.u32(0..10_000);
                        (lo, lo + rng.u32(0..3_000))
                    })
                    .collect();
                ranges.sort_unstable();
                let mut merged: Vec<(u32, u32)> = Vec::new();
                for (lo, hi) in ranges {
                    match merged.last_mut() {
                        Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                        _ => merged.push((lo, hi)),
                    }
                }
                merged
            })
            .collect();
        let words = rules.len().div_ceil(64);
        // Every range in its leaves; ranges over more than a span in the covering nodes; every
        // range in the covering nodes.
        for max_entries in [usize::MAX, 20_000, 0] {
            let dim = Dimension::build(
                words,
                (0, u32::MAX),
                32,
                rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (i as u32, r.as_slice(), i % 2 == 0)),
                max_entries,
            );
            the_lookups_agree(&dim, &rules, words, &mut rng);
        }
    }

    fn the_lookups_agree(
        dim: &Dimension<u32>,
        rules: &[Vec<(u32, u32)>],
        words: usize,
        rng: &mut fastrand::Rng,
    ) {
        for _ in 0..2_000 {
            let key = rng.u32(0..14_000);
            let (solo, pair) = dim.dense(dim.interval(key), words);
            let expected: Vec<u32> = (0..rules.len() as u32)
                .filter(|&i| {
                    rules[i as usize]
                        .iter()
                        .any(|&(lo, hi)| lo <= key && key <= hi)
                })
                .collect();
            let found: Vec<u32> = bits(&solo)
                .into_iter()
                .chain(bits(&pair))
                .collect::<std::collections::BTreeSet<u32>>()
                .into_iter()
                .collect();
            assert_eq!(found, expected, "key {key}");
            assert!(bits(&solo).iter().all(|p| p % 2 == 0));
            assert!(bits(&pair).iter().all(|p| p % 2 == 1));
        }
    }
}

#[cfg(test)]
mod bucket_tests {
    use super::*;

    /// The bucket table answers exactly as the plain binary search does.
    #[test]
    fn bucket_table_agrees_with_binary_search() {
        let mut rng = fastrand::Rng::with_seed(3);
        let ranges: Vec<Vec<(u32, u32)>> = (0..400)
            .map(|_| {
                let lo = (rng.u32(..)) & 0xffff_ff00;
                vec![(lo, lo.saturating_add(rng.u32(0..1 << 20)))]
            })
            .collect();
        let dim = Dimension::build(
            7,
            (0, u32::MAX),
            32,
            ranges
                .iter()
                .enumerate()
                .map(|(i, r)| (i as u32, r.as_slice(), i % 3 == 0)),
            MAX_ENTRIES,
        );
        assert!(!dim.buckets.is_empty());
        for _ in 0..20_000 {
            let key = rng.u32(..);
            assert_eq!(
                dim.interval(key),
                dim.starts.partition_point(|&s| s <= key) - 1,
                "key {key:#x}"
            );
        }
        for key in [0, 1, u32::MAX, u32::MAX - 1] {
            assert_eq!(
                dim.interval(key),
                dim.starts.partition_point(|&s| s <= key) - 1
            );
        }
        for r in &ranges {
            for key in [
                r[0].0,
                r[0].1,
                r[0].0.wrapping_sub(1),
                r[0].1.wrapping_add(1),
            ] {
                assert_eq!(
                    dim.interval(key),
                    dim.starts.partition_point(|&s| s <= key) - 1
                );
            }
        }
    }

    /// Keys in crowded buckets (networks of a few /16s, and services of a few protocols) are
    /// found through the sub-bucket tables exactly as the plain binary search finds them,
    /// at every sub-bucket's edges as well as at random.
    #[test]
    fn crowded_buckets_agree_with_binary_search() {
        let mut rng = fastrand::Rng::with_seed(5);
        for (key_bits, base) in [(32u32, 0x0a00_0000u32), (24, 6 << 16)] {
            let bucket = key_bits - 16;
            let ranges: Vec<Vec<(u32, u32)>> = (0..2_000)
                .map(|_| {
                    let (lo, width) = (base + rng.u32(0..4 << bucket), rng.u32(0..bucket - 4));
                    vec![(lo, lo + rng.u32(0..1 << width))]
                })
                .collect();
            let top = if key_bits == 32 {
                u32::MAX
            } else {
                (1 << 24) - 1
            };
            let dim = Dimension::build(
                32,
                (0, top),
                key_bits,
                ranges
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (i as u32, r.as_slice(), true)),
                MAX_ENTRIES,
            );
            assert!(dim.fine.len() >= 4 * (FINE + 1), "{key_bits}-bit keys");
            let searched = |key: u32| dim.starts.partition_point(|&s| s <= key) - 1;
            let edges = (0..8u32 << 8).flat_map(|sub| {
                let first = base + (sub << (key_bits - 24));
                [first.wrapping_sub(1), first, first + 1]
            });
            let random = (0..20_000).map(|_| base + rng.u32(0..5 << bucket));
            for key in edges.chain(random).chain([0, top]) {
                assert_eq!(dim.interval(key), searched(key), "key {key:#x}");
            }
        }
    }
}
