//! One match dimension of the rule index (source address, destination address, or
//! protocol+port), built as elementary intervals.
//!
//! The key space is cut at every range boundary of every rule. Each resulting interval stores the
//! rules whose range covers it as sparse lists of `(word index, 64-bit mask)` pairs over rule
//! positions (position = priority). Rules that cover the whole key space ("any") are kept apart
//! in one dense mask (`wild`), so the per-interval lists hold only specific rules and stay short.
//! Each interval has two lists: *solo* rules, which are "any" in the partner dimension (so
//! matching here is enough for both address dimensions), and *pair* rules, which also need the
//! partner dimension's pair list to agree.
//! A lookup is one binary search; for 32-bit keys with many intervals a table over the top 16
//! bits of the key first narrows it to the few intervals of one bucket.

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

/// A sparse bitset word: rule positions `64 * word .. 64 * word + 63`.
pub(crate) type Word = (u32, u64);

/// Per-interval sparse lists, stored back to back.
#[derive(Debug, Clone)]
struct Pool {
    offsets: Vec<u32>,
    words: Vec<Word>,
}

impl Pool {
    fn new() -> Self {
        Pool {
            offsets: vec![0, 0],
            words: Vec::new(),
        }
    }

    fn list(&self, index: usize) -> &[Word] {
        &self.words[self.offsets[index] as usize..self.offsets[index + 1] as usize]
    }

    /// Appends the nonzero words of `active` as the newest interval's list.
    fn push(&mut self, active: &[u64], replace_first: bool) {
        if replace_first {
            self.offsets.pop();
        }
        self.words.extend(
            active
                .iter()
                .enumerate()
                .filter(|(_, bits)| **bits != 0)
                .map(|(w, bits)| (w as u32, *bits)),
        );
        self.offsets.push(self.words.len() as u32);
    }
}

/// One dimension of the index.
#[derive(Debug, Clone)]
pub(crate) struct Dimension<K> {
    /// Rules that match every key, dense, one bit per position.
    pub wild: Vec<u64>,
    starts: Vec<K>,
    solo: Pool,
    pair: Pool,
    /// `buckets[b]`: the interval holding the first key of bucket `b` (one extra at the end).
    buckets: Vec<u32>,
    shift: u32,
}

impl<K: Key> Dimension<K> {
    /// Builds the dimension over `words` 64-bit words of positions. `rules` yields each indexed
    /// rule's position, its sorted, merged inclusive ranges, and whether it is *solo* ("any" in
    /// the partner dimension); `space` is the key range that counts as "any" for this dimension,
    /// and `key_bits` the width of the keys used (for the bucket table of 32-bit keys).
    pub fn build<'a>(
        words: usize,
        space: (K, K),
        key_bits: u32,
        rules: impl Iterator<Item = (u32, &'a [(K, K)], bool)>,
    ) -> Self
    where
        K: 'a,
    {
        let mut wild = vec![0u64; words];
        let mut events: Vec<(K, bool, u32, bool)> = Vec::new();
        for (position, ranges, solo) in rules {
            if ranges
                .first()
                .is_some_and(|&(lo, hi)| lo <= space.0 && hi >= space.1)
            {
                set(&mut wild, position);
                continue;
            }
            for &(lo, hi) in ranges {
                events.push((lo, true, position, solo));
                if let Some(end) = hi.next() {
                    events.push((end, false, position, solo));
                }
            }
        }
        events.sort_unstable_by_key(|e| e.0);
        let mut active_solo = vec![0u64; words];
        let mut active_pair = vec![0u64; words];
        let mut starts = vec![K::MIN];
        let (mut solo, mut pair) = (Pool::new(), Pool::new());
        let mut i = 0;
        while i < events.len() {
            let key = events[i].0;
            while i < events.len() && events[i].0 == key {
                let (_, add, position, is_solo) = events[i];
                let active = if is_solo {
                    &mut active_solo
                } else {
                    &mut active_pair
                };
                let (word, bit) = ((position / 64) as usize, position % 64);
                if add {
                    active[word] |= 1 << bit;
                } else {
                    active[word] &= !(1 << bit);
                }
                i += 1;
            }
            // A key at MIN replaces the empty first interval.
            let replace_first = key == K::MIN;
            if !replace_first {
                starts.push(key);
            }
            solo.push(&active_solo, replace_first);
            pair.push(&active_pair, replace_first);
        }
        let shift = key_bits.saturating_sub(16);
        let buckets = if K::BUCKETED && starts.len() >= BUCKET_TABLE_MIN_INTERVALS {
            (0..=BUCKETS)
                .map(|b| match K::bucket_start(b, shift) {
                    Some(first) if b < BUCKETS => {
                        (starts.partition_point(|&s| s <= first) - 1) as u32
                    }
                    _ => (starts.len() - 1) as u32,
                })
                .collect()
        } else {
            Vec::new()
        };
        Self {
            wild,
            starts,
            solo,
            pair,
            buckets,
            shift,
        }
    }

    /// The interval holding `key`.
    #[inline]
    pub(crate) fn interval(&self, key: K) -> usize {
        if self.buckets.is_empty() {
            return self.starts.partition_point(|&start| start <= key) - 1;
        }
        let bucket = key.bucket(self.shift);
        let (lo, hi) = (
            self.buckets[bucket] as usize,
            self.buckets[bucket + 1] as usize,
        );
        lo + self.starts[lo + 1..=hi].partition_point(|&start| start <= key)
    }

    /// The specific solo rules of interval `index`.
    #[inline]
    pub(crate) fn solo(&self, index: usize) -> &[Word] {
        self.solo.list(index)
    }

    /// The specific pair rules of interval `index`.
    #[inline]
    pub fn pair(&self, index: usize) -> &[Word] {
        self.pair.list(index)
    }

    /// All specific rules of interval `index`, solo and pair, merged.
    #[cfg(test)]
    pub(crate) fn words(&self, index: usize) -> Vec<Word> {
        let mut all: Vec<Word> = self
            .solo(index)
            .iter()
            .chain(self.pair(index))
            .copied()
            .collect();
        all.sort_unstable_by_key(|w| w.0);
        all.dedup_by(|b, a| {
            let same = a.0 == b.0;
            if same {
                a.1 |= b.1;
            }
            same
        });
        all
    }

    /// Number of elementary intervals.
    pub(crate) fn intervals(&self) -> usize {
        self.starts.len()
    }
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
        Some(&(w, bits)) if w == word => bits,
        _ => 0,
    }
}

/// Advances `cursor` to the first entry whose word is `>= word`, galloping (1, 2, 4, … ahead)
/// and then bisecting, so the cost is O(log gap).
#[inline]
pub(crate) fn gallop(words: &[Word], cursor: &mut usize, word: u32) {
    let mut lo = *cursor;
    if lo >= words.len() || words[lo].0 >= word {
        return;
    }
    let mut step = 1;
    let mut hi = lo + 1;
    while hi < words.len() && words[hi].0 < word {
        lo = hi;
        step *= 2;
        hi = lo + step;
    }
    let hi = hi.min(words.len());
    *cursor = lo + words[lo..hi].partition_point(|&(w, _)| w < word);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(words: &[Word]) -> Vec<u32> {
        words
            .iter()
            .flat_map(|&(w, b)| {
                (0..64)
                    .filter(move |i| b & (1 << i) != 0)
                    .map(move |i| w * 64 + i)
            })
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
        );
        assert_eq!(bits(dim.solo(dim.interval(16))), vec![1]);
        assert_eq!(bits(dim.pair(dim.interval(16))), vec![0]);
        assert_eq!(dim.wild, vec![0b100]);
        let at = |k: u32| bits(&dim.words(dim.interval(k)));
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
        );
        assert_eq!(bits(&dim.words(dim.interval(0))), vec![0]);
        assert_eq!(bits(&dim.words(dim.interval(6))), Vec::<u32>::new());
        assert_eq!(bits(&dim.words(dim.interval(u32::MAX))), vec![1]);
    }

    #[test]
    fn sparse_lookup_with_cursor() {
        let words: Vec<Word> = (0..40).map(|w| (w * 3, u64::from(w) + 1)).collect();
        let mut cursor = 0;
        assert_eq!(sparse_get(&words, &mut cursor, 0), 1);
        assert_eq!(sparse_get(&words, &mut cursor, 4), 0);
        assert_eq!(sparse_get(&words, &mut cursor, 30), 11);
        assert_eq!(sparse_get(&words, &mut cursor, 117), 40);
        assert_eq!(sparse_get(&words, &mut cursor, 500), 0);
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
}
