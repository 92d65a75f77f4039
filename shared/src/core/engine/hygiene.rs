//! Rule hygiene, computed exactly over address × address × protocol/port space (no sampling):
//!
//! - **shadowed**: no flow can ever reach the rule, because earlier enabled terminal (allow or
//!   block) rules cover its whole match space. Observe rules can be shadowed too.
//! - **redundant**: the rule is reachable, but removing it would change nothing: every flow that
//!   reaches it would be decided the same way by later rules of the same action, with no observe
//!   rule and no rule of another action in between. Later rules that are themselves reported
//!   (shadowed or redundant) count as removed with it, so the findings hold together: removing
//!   every reported rule at once changes no decision. Redundancy is thus decided bottom-up.
//! - **unresolvable**: enabled rules the snapshot cannot resolve (unknown template, empty tag...).
//!
//! A rule's match space is a union of boxes `S × D × K` (source ranges, destination ranges,
//! service keys `protocol << 16 | port`), one box per address-family pair. A rule is compared
//! only with the rules whose boxes can touch it ([`candidates`]). Shadowing does not depend on the
//! order of the earlier rules, so a rule's boxes are split where their edges fall until each piece
//! lies inside one of them or outside all ([`Analyzer::cover`]); redundancy walks the later rules
//! in order, subtracting boxes: `B \ T` splits into at most three disjoint boxes,
//! `(S∖S')×D×K ∪ (S∩S')×(D∖D')×K ∪ (S∩S')×(D∩D')×(K∖K')`. Only determinate rules cover; an
//! unresolvable rule before a rule makes no claim either way. Service keys are first limited to
//! the keys a flow can have (protocols other than TCP and UDP carry port 0), so a rule is never
//! reported reachable through keys no flow can carry.
//!
//! The work is bounded by [`MAX_BOXES`] and [`MAX_PIECES`]; a rule whose analysis would exceed
//! them is reported as `undecided` rather than guessed.

mod candidates;

use serde::Serialize;

use self::candidates::{Bits, Candidates};
use super::{CompiledRule, Engine, RuleId};
use crate::core::snapshot::values::AddressSet;

/// Most boxes kept while analysing one rule.
pub(crate) const MAX_BOXES: usize = 20_000;

/// Most pieces examined while finding what earlier rules leave of one rule.
const MAX_PIECES: usize = 200_000;

type Ranges = Vec<(u128, u128)>;

/// One generalized box: a family pair and three range unions.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Region {
    families: (u8, u8),
    src: Ranges,
    dst: Ranges,
    keys: Ranges,
}

fn intersect(a: &[(u128, u128)], b: &[(u128, u128)]) -> Ranges {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        let lo = a[i].0.max(b[j].0);
        let hi = a[i].1.min(b[j].1);
        if lo <= hi {
            out.push((lo, hi));
        }
        if a[i].1 < b[j].1 {
            i += 1
        } else {
            j += 1
        }
    }
    out
}

/// Whether two sorted range lists share a value, without allocating (the hot test of the
/// analysis: most pairs of rules do not overlap, and their spans rule that out at once).
fn overlaps(a: &[(u128, u128)], b: &[(u128, u128)]) -> bool {
    let (Some(first_a), Some(first_b)) = (a.first(), b.first()) else {
        return false;
    };
    let (last_a, last_b) = (a[a.len() - 1], b[b.len() - 1]);
    if last_a.1 < first_b.0 || last_b.1 < first_a.0 {
        return false;
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].0.max(b[j].0) <= a[i].1.min(b[j].1) {
            return true;
        }
        if a[i].1 < b[j].1 {
            i += 1
        } else {
            j += 1
        }
    }
    false
}

/// Whether every value of sorted ranges `a` is in sorted ranges `b`.
fn within(a: &[(u128, u128)], b: &[(u128, u128)]) -> bool {
    let mut j = 0;
    a.iter().all(|&(lo, hi)| {
        while j < b.len() && b[j].1 < lo {
            j += 1;
        }
        j < b.len() && b[j].0 <= lo && hi <= b[j].1
    })
}

fn subtract(a: &[(u128, u128)], b: &[(u128, u128)]) -> Ranges {
    let mut out = Vec::new();
    let mut j = 0;
    for &(mut lo, hi) in a {
        while j < b.len() && b[j].1 < lo {
            j += 1;
        }
        let mut k = j;
        let mut open = true;
        while k < b.len() && b[k].0 <= hi {
            if b[k].0 > lo {
                out.push((lo, b[k].0 - 1));
            }
            if b[k].1 >= hi {
                open = false;
                break;
            }
            lo = b[k].1 + 1;
            k += 1;
        }
        if open {
            out.push((lo, hi));
        }
    }
    out
}

impl Region {
    fn intersects(&self, other: &Region) -> bool {
        self.families == other.families
            && overlaps(&self.src, &other.src)
            && overlaps(&self.dst, &other.dst)
            && overlaps(&self.keys, &other.keys)
    }

    /// Whether `other` lies inside this box.
    fn contains(&self, other: &Region) -> bool {
        self.families == other.families
            && within(&other.src, &self.src)
            && within(&other.dst, &self.dst)
            && within(&other.keys, &self.keys)
    }

    /// Whether this box intersects `other` and holds it in two of the three dimensions, so
    /// `other ∖ self` is one box.
    fn spans_two(&self, other: &Region) -> bool {
        self.intersects(other)
            && [
                within(&other.src, &self.src),
                within(&other.dst, &self.dst),
                within(&other.keys, &self.keys),
            ]
            .into_iter()
            .filter(|&inside| inside)
            .count()
                >= 2
    }

    fn dimension(&self, dimension: usize) -> &Ranges {
        [&self.src, &self.dst, &self.keys][dimension]
    }

    /// This box cut in two through the middle edge of `boxes` inside it, in the dimension where
    /// most of their edges fall inside it (`None`: no edge falls inside).
    fn cut<'r>(&self, boxes: impl Iterator<Item = &'r Region> + Clone) -> Option<(Region, Region)> {
        let mut best: Option<(usize, Vec<u128>)> = None;
        for dimension in 0..3 {
            let own = self.dimension(dimension);
            let (lo, hi) = (own[0].0, own[own.len() - 1].1);
            // An edge at `v`: `v - 1` and `v` lie on different sides of it.
            let mut edges: Vec<u128> = boxes
                .clone()
                .flat_map(|b| b.dimension(dimension).iter())
                .flat_map(|&(a, b)| [Some(a), b.checked_add(1)])
                .flatten()
                .filter(|&v| lo < v && v <= hi)
                .collect();
            if best
                .as_ref()
                .is_none_or(|(_, most)| edges.len() > most.len())
            {
                edges.sort_unstable();
                edges.dedup();
                if !edges.is_empty() {
                    best = Some((dimension, edges));
                }
            }
        }
        let (dimension, edges) = best?;
        let at = edges[edges.len() / 2];
        let own = self.dimension(dimension);
        let below: Ranges = own
            .iter()
            .filter(|r| r.0 < at)
            .map(|&(a, b)| (a, b.min(at - 1)))
            .collect();
        let above: Ranges = own
            .iter()
            .filter(|r| r.1 >= at)
            .map(|&(a, b)| (a.max(at), b))
            .collect();
        let with = |ranges: Ranges| {
            let mut region = self.clone();
            *[&mut region.src, &mut region.dst, &mut region.keys][dimension] = ranges;
            region
        };
        Some((with(below), with(above)))
    }

    /// `self ∖ other` as disjoint boxes.
    fn minus(&self, other: &Region) -> Vec<Region> {
        if !self.intersects(other) {
            return vec![self.clone()];
        }
        let mut out = Vec::with_capacity(3);
        let src_in = intersect(&self.src, &other.src);
        let src_out = subtract(&self.src, &other.src);
        if !src_out.is_empty() {
            out.push(Region {
                src: src_out,
                ..self.clone()
            });
        }
        let dst_in = intersect(&self.dst, &other.dst);
        let dst_out = subtract(&self.dst, &other.dst);
        if !dst_out.is_empty() {
            out.push(Region {
                families: self.families,
                src: src_in.clone(),
                dst: dst_out,
                keys: self.keys.clone(),
            });
        }
        let keys_out = subtract(&self.keys, &other.keys);
        if !keys_out.is_empty() {
            out.push(Region {
                families: self.families,
                src: src_in,
                dst: dst_in,
                keys: keys_out,
            });
        }
        out
    }
}

/// The same space in fewer boxes: boxes (disjoint) that agree in two dimensions are one box with
/// the union of the third, repeated while that merges any (the splitting of
/// [`Analyzer::cover`] leaves neighbours that differ in one dimension only).
fn coalesce(mut boxes: Vec<Region>) -> Vec<Region> {
    loop {
        let before = boxes.len();
        for dimension in 0..3 {
            let mut groups: std::collections::BTreeMap<((u8, u8), Ranges, Ranges), Ranges> =
                std::collections::BTreeMap::new();
            for region in boxes {
                let Region {
                    families,
                    src,
                    dst,
                    keys,
                } = region;
                let (merged, key) = match dimension {
                    0 => (src, (families, dst, keys)),
                    1 => (dst, (families, src, keys)),
                    _ => (keys, (families, src, dst)),
                };
                groups.entry(key).or_default().extend(merged);
            }
            boxes = groups
                .into_iter()
                .map(|((families, a, b), mut ranges)| {
                    ranges.sort_unstable();
                    let mut union: Ranges = Vec::with_capacity(ranges.len());
                    for (lo, hi) in ranges {
                        match union.last_mut() {
                            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                            _ => union.push((lo, hi)),
                        }
                    }
                    let (src, dst, keys) = match dimension {
                        0 => (union, a, b),
                        1 => (a, union, b),
                        _ => (a, b, union),
                    };
                    Region {
                        families,
                        src,
                        dst,
                        keys,
                    }
                })
                .collect();
        }
        if boxes.len() == before {
            return boxes;
        }
    }
}

/// Where protocol `protocol`'s keys start in the dense key space of [`flow_keys`].
fn protocol_base(protocol: u32) -> u128 {
    let wide_before = [6, 17].iter().filter(|&&p| p < protocol).count() as u128;
    u128::from(protocol) + wide_before * 0xffff
}

/// The service keys (`protocol << 16 | port` ranges) a flow can carry, renumbered densely: every
/// port of TCP and UDP, port 0 of the other protocols (the only one a flow log gives them), one
/// after the other in protocol order. "Any service" is then one range, where it was 256: the
/// match spaces of the third of a large account's rules that allow any protocol took 8 KB a box.
fn flow_keys(services: &[(u32, u32)]) -> Ranges {
    let mut keys: Ranges = Vec::new();
    for &(lo, hi) in services {
        for protocol in lo >> 16..=hi >> 16 {
            let (first, last) = (
                lo.max(protocol << 16) & 0xffff,
                hi.min(protocol << 16 | 0xffff) & 0xffff,
            );
            let base = protocol_base(protocol);
            let range = match protocol {
                6 | 17 => (base + u128::from(first), base + u128::from(last)),
                _ if first == 0 => (base, base),
                _ => continue,
            };
            match keys.last_mut() {
                Some(last) if range.0 <= last.1 + 1 => last.1 = last.1.max(range.1),
                _ => keys.push(range),
            }
        }
    }
    keys
}

fn families(set: &AddressSet) -> Vec<(u8, Ranges)> {
    let mut out = Vec::new();
    if !set.v4.is_empty() {
        out.push((
            4,
            set.v4
                .iter()
                .map(|&(a, b)| (u128::from(a), u128::from(b)))
                .collect(),
        ));
    }
    if !set.v6.is_empty() {
        out.push((6, set.v6.clone()));
    }
    out
}

/// A determinate rule's match space; `None` for rules that cannot be resolved.
fn space(rule: &CompiledRule) -> Option<Vec<Region>> {
    let (Ok(src), Ok(dst), Ok(services)) = (&rule.source, &rule.destination, &rule.services) else {
        return None;
    };
    let keys = flow_keys(services);
    let mut regions = Vec::new();
    if keys.is_empty() {
        return Some(regions);
    }
    for (fs, s) in families(src) {
        for (fd, d) in families(dst) {
            regions.push(Region {
                families: (fs, fd),
                src: s.clone(),
                dst: d,
                keys: keys.clone(),
            });
        }
    }
    Some(regions)
}

/// Subtracts `cover` from every region; `None` when the work bound is exceeded.
fn remove(regions: Vec<Region>, cover: &[Region]) -> Option<Vec<Region>> {
    let mut current = regions;
    for c in cover {
        if !current.iter().any(|region| region.intersects(c)) {
            continue;
        }
        let mut next = Vec::with_capacity(current.len() + 2);
        for region in current {
            if region.intersects(c) {
                next.extend(region.minus(c));
            } else {
                next.push(region);
            }
            if next.len() > MAX_BOXES {
                return None;
            }
        }
        current = next;
    }
    Some(current)
}

fn touches(regions: &[Region], other: &[Region]) -> bool {
    regions
        .iter()
        .any(|r| other.iter().any(|o| r.intersects(o)))
}

/// A rule's match space after the earlier terminal rules.
enum Shadow {
    /// It cannot be resolved.
    Unresolvable,
    /// It matches no flow a flow log can carry.
    Empty,
    /// The analysis stopped at its work bound.
    Undecided,
    /// The analysis ran out of its time or memory (it stops; nothing is reported).
    OutOfBudget,
    /// These earlier rules cover all of it.
    Covered(Vec<usize>),
    /// What they leave (taken by the rule's redundancy walk, the one reader, so the regions of
    /// every rule analysed are not all kept to the end).
    Left(std::sync::Mutex<Vec<Region>>),
}

/// What the analysis found about one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// Never reached: earlier terminal rules cover it.
    Shadowed,
    /// Reached, but later rules of the same action decide the same.
    Redundant,
    /// Cannot be resolved from the snapshot.
    Unresolvable,
    /// The analysis stopped at its work bound.
    Undecided,
}

/// One finding, with the rules that explain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleFinding {
    /// The finding.
    pub finding: Finding,
    /// The rule's position in evaluation order.
    pub rule: RuleId,
    /// The rule's uuid.
    pub uuid: String,
    /// Covering rules (shadowed: earlier; redundant: later), as uuids, in evaluation order.
    pub covering: Vec<String>,
    /// Why (unresolvable: the resolution error).
    pub detail: String,
}

/// Analyses every enabled rule of the engine.
pub fn analyze(engine: &Engine) -> Vec<RuleFinding> {
    analyze_until(engine, Budget::unlimited()).findings
}

/// What an analysis may use: a time to stop at, and bytes of match-space boxes (and the walks
/// over them) it may hold at once. Past either, it stops; the findings it made are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// When to stop (`None`: never).
    pub until: Option<std::time::Instant>,
    /// Bytes it may hold.
    pub bytes: usize,
}

impl Budget {
    /// No limit.
    pub fn unlimited() -> Self {
        Self {
            until: None,
            bytes: usize::MAX,
        }
    }
}

/// What stopped an analysis before its last rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    /// Its time ran out.
    Time,
    /// It held as much as its memory budget allows.
    Memory,
}

/// What [`analyze_until`] found, and how far it got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    /// Findings about the rules analysed.
    pub findings: Vec<RuleFinding>,
    /// Rules analysed, from the top of the evaluation order.
    pub analysed: usize,
    /// Rules in the engine.
    pub rules: usize,
    /// Why it stopped before the last rule (`None`: it did not).
    pub stopped: Option<Stopped>,
}

impl Analysis {
    /// Whether every rule was analysed.
    pub fn complete(&self) -> bool {
        self.analysed == self.rules
    }
}

/// Analyses the rules in evaluation order within `budget`; the findings about the rules it
/// reached are exact, and it says why it stopped before the last one.
pub fn analyze_until(engine: &Engine, budget: Budget) -> Analysis {
    let analyzer = Analyzer::new(engine, budget);
    let rules = engine.rules().len();
    let mut findings = Vec::new();
    for i in 0..rules {
        let stopped = match analyzer.stopped() {
            Some(why) => Some(why),
            None => match analyzer.rule(i) {
                Ok(finding) => {
                    findings.extend(finding);
                    None
                }
                Err(OutOfBudget) => Some(analyzer.stopped().unwrap_or(Stopped::Time)),
            },
        };
        if stopped.is_some() {
            return Analysis {
                findings,
                analysed: i,
                rules,
                stopped,
            };
        }
    }
    Analysis {
        findings,
        analysed: rules,
        rules,
        stopped: None,
    }
}

/// The finding about one rule (`None`: nothing to report), computing only the match spaces of the
/// rules it depends on: what the lookup API needs for one rule of a large snapshot. Past
/// `bytes` held, the rule is reported undecided.
pub(crate) fn analyze_rule(engine: &Engine, rule: RuleId, bytes: usize) -> Option<RuleFinding> {
    let analyzer = Analyzer::new(engine, Budget { until: None, bytes });
    match analyzer.rule(rule as usize) {
        Ok(finding) => finding,
        Err(OutOfBudget) => Some(RuleFinding {
            finding: Finding::Undecided,
            rule,
            uuid: engine.rule(rule).rule.uuid.clone(),
            covering: Vec::new(),
            detail: format!(
                "the analysis needed more than its {} MiB of memory",
                bytes >> 20
            ),
        }),
    }
}

/// Bytes a list of boxes holds.
fn bytes_of(regions: &[Region]) -> usize {
    regions
        .iter()
        .map(|r| {
            std::mem::size_of::<Region>()
                + (r.src.len() + r.dst.len() + r.keys.len()) * std::mem::size_of::<(u128, u128)>()
        })
        .sum()
}

struct Analyzer<'e> {
    engine: &'e Engine,
    spaces: Vec<std::sync::OnceLock<Option<Vec<Region>>>>,
    shadows: Vec<std::sync::OnceLock<Shadow>>,
    /// Each terminal rule's redundancy, once known (see [`Analyzer::redundancy`]).
    redundant: Vec<std::sync::OnceLock<Option<Vec<usize>>>>,
    /// The rules each rule can touch (built on first use, from every rule's match space).
    candidates: std::sync::OnceLock<Candidates>,
    budget: Budget,
    /// Bytes of boxes (and walks) held now.
    held: std::sync::atomic::AtomicUsize,
}

impl<'e> Analyzer<'e> {
    fn new(engine: &'e Engine, budget: Budget) -> Self {
        fn memo<T>(rules: usize) -> Vec<std::sync::OnceLock<T>> {
            (0..rules).map(|_| std::sync::OnceLock::new()).collect()
        }
        let rules = engine.rules().len();
        Self {
            engine,
            spaces: memo(rules),
            shadows: memo(rules),
            redundant: memo(rules),
            candidates: std::sync::OnceLock::new(),
            budget,
            held: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The rules whose match space can touch `regions`, and every unresolvable rule in effect (it
    /// might match anything).
    fn touching(&self, regions: &[Region]) -> Bits {
        self.candidates
            .get_or_init(|| {
                let rules = self.engine.rules();
                Candidates::new(
                    (0..rules.len()).map(|i| self.space(i).as_deref()),
                    (0..rules.len())
                        .filter(|&i| rules[i].rule.in_effect() && !rules[i].is_determinate()),
                )
            })
            .touching(regions)
    }

    fn hold(&self, bytes: usize) {
        self.held
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    fn release(&self, bytes: usize) {
        self.held
            .fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// What the analysis has run out of, if anything.
    fn stopped(&self) -> Option<Stopped> {
        if self.held.load(std::sync::atomic::Ordering::Relaxed) > self.budget.bytes {
            Some(Stopped::Memory)
        } else if self
            .budget
            .until
            .is_some_and(|stop| std::time::Instant::now() >= stop)
        {
            Some(Stopped::Time)
        } else {
            None
        }
    }

    fn out_of_budget(&self) -> bool {
        self.stopped().is_some()
    }

    /// Whether rule `i` is reported shadowed.
    fn is_shadowed(&self, i: usize) -> bool {
        matches!(self.shadow(i), Shadow::Empty | Shadow::Covered(_))
    }

    /// What the earlier terminal rules leave of rule `i`'s match space (computed once: the
    /// redundancy of earlier rules asks it too).
    fn shadow(&self, i: usize) -> &Shadow {
        self.shadows[i].get_or_init(|| self.compute_shadow(i))
    }

    fn compute_shadow(&self, i: usize) -> Shadow {
        let rules = self.engine.rules();
        let terminal = |j: usize| {
            rules[j].rule.in_effect()
                && rules[j].is_determinate()
                && rules[j].rule.action.is_terminal()
        };
        let Some(own) = self.space(i).clone() else {
            return Shadow::Unresolvable;
        };
        if own.is_empty() {
            return Shadow::Empty;
        }
        // Subtract the earlier terminal rules that touch it.
        let mut covers = self.touching(&own);
        covers.retain(|j| j < i && terminal(j));
        match self.cover(own, &covers) {
            Err(OutOfBudget) => Shadow::OutOfBudget,
            Ok(None) => Shadow::Undecided,
            Ok(Some((effective, used))) if effective.is_empty() => Shadow::Covered(used),
            Ok(Some((effective, _))) => {
                let left = coalesce(effective);
                self.hold(bytes_of(&left));
                Shadow::Left(std::sync::Mutex::new(left))
            }
        }
    }

    /// What `covers` (rule positions) leave of `regions`, and the covers that took part, in
    /// evaluation order; `None` past [`MAX_BOXES`] boxes or [`MAX_PIECES`] pieces examined, an
    /// error past the analysis's stop time.
    ///
    /// The union does not depend on the order of the covers, so each box is split where the
    /// covers' edges fall until every piece lies inside one cover (the first such, in evaluation
    /// order, is the one named) or outside them all (what is left). A cut goes through the middle
    /// edge of the dimension with the most edges inside the piece, so pieces follow the covers'
    /// shapes instead of being cut by every cover in turn, and each piece is compared only with
    /// the covers its parent touched.
    #[allow(clippy::type_complexity)]
    fn cover(
        &self,
        regions: Vec<Region>,
        covers: &Bits,
    ) -> Result<Option<(Vec<Region>, Vec<usize>)>, OutOfBudget> {
        let boxes: Vec<(usize, &Region)> = covers
            .iter()
            .flat_map(|j| self.space(j).iter().flatten().map(move |c| (j, c)))
            .collect();
        let all: Vec<u32> = (0..boxes.len() as u32).collect();
        let mut pending: Vec<(Region, Vec<u32>)> =
            regions.into_iter().map(|r| (r, all.clone())).collect();
        let mut left = Vec::new();
        let mut used = std::collections::BTreeSet::new();
        let mut examined = 0;
        while let Some((region, candidates)) = pending.pop() {
            examined += 1;
            if examined > MAX_PIECES {
                return Ok(None);
            }
            if examined % 1024 == 0 && self.out_of_budget() {
                return Err(OutOfBudget);
            }
            let touching: Vec<u32> = candidates
                .into_iter()
                .filter(|&b| boxes[b as usize].1.intersects(&region))
                .collect();
            if touching.is_empty() {
                left.push(region);
                continue;
            }
            if let Some(&b) = touching
                .iter()
                .find(|&&b| boxes[b as usize].1.contains(&region))
            {
                used.insert(boxes[b as usize].0);
                continue;
            }
            // A cover spanning the piece in two dimensions takes its share of the third without
            // splitting it: the piece stays one box with one range list fewer values.
            let (clean, touching): (Vec<u32>, Vec<u32>) = touching
                .into_iter()
                .partition(|&b| boxes[b as usize].1.spans_two(&region));
            if !clean.is_empty() {
                let mut rest = Some(region);
                for b in clean {
                    let (rule, cover) = boxes[b as usize];
                    let Some(current) = rest.take_if(|current| cover.intersects(current)) else {
                        continue;
                    };
                    used.insert(rule);
                    rest = current.minus(cover).pop();
                }
                if let Some(rest) = rest {
                    pending.push((rest, touching));
                }
                continue;
            }
            let Some((below, above)) = region.cut(touching.iter().map(|&b| boxes[b as usize].1))
            else {
                return Ok(None);
            };
            pending.push((above, touching.clone()));
            pending.push((below, touching));
            if pending.len() + left.len() > MAX_BOXES {
                return Ok(None);
            }
        }
        Ok(Some((left, used.into_iter().collect())))
    }

    fn space(&self, i: usize) -> &Option<Vec<Region>> {
        self.spaces[i].get_or_init(|| {
            let rule = &self.engine.rules()[i];
            let space = if rule.rule.in_effect() && rule.is_determinate() {
                space(rule)
            } else {
                None
            };
            self.hold(space.as_deref().map_or(0, bytes_of));
            space
        })
    }

    fn rule(&self, i: usize) -> Result<Option<RuleFinding>, OutOfBudget> {
        let rules = self.engine.rules();
        let Some(compiled) = rules.get(i) else {
            return Ok(None);
        };
        if !compiled.rule.in_effect() {
            return Ok(None);
        }
        let finding = |finding, covering: Vec<usize>, detail: String| {
            Some(RuleFinding {
                finding,
                rule: i as RuleId,
                uuid: compiled.rule.uuid.clone(),
                covering: covering
                    .into_iter()
                    .map(|j| rules[j].rule.uuid.clone())
                    .collect(),
                detail,
            })
        };
        match self.shadow(i) {
            Shadow::Unresolvable => {
                return Ok(finding(
                    Finding::Unresolvable,
                    Vec::new(),
                    compiled.indeterminate_reason(),
                ))
            }
            Shadow::Empty => {
                return Ok(finding(
                    Finding::Shadowed,
                    Vec::new(),
                    "it matches no flow a flow log can carry".into(),
                ))
            }
            Shadow::Undecided => {
                return Ok(finding(
                    Finding::Undecided,
                    Vec::new(),
                    format!("more than {MAX_BOXES} regions"),
                ))
            }
            Shadow::Covered(used) => {
                return Ok(finding(
                    Finding::Shadowed,
                    used.clone(),
                    "earlier rules decide every flow it matches".into(),
                ))
            }
            Shadow::OutOfBudget => return Err(OutOfBudget),
            Shadow::Left(_) => {}
        }
        Ok(match self.redundancy(i)? {
            Some(used) => finding(
                Finding::Redundant,
                used.clone(),
                "later rules of the same action decide every flow it decides".into(),
            ),
            None => None,
        })
    }

    /// The later rules that make rule `i` redundant (`None`: it is not, or no claim). Later rules
    /// reported shadowed or redundant count as removed together with it, so the answer for `i`
    /// needs theirs first; the chain is walked with an explicit stack (it can be thousands of
    /// rules long), each answer kept once found.
    fn redundancy(&self, i: usize) -> Result<&Option<Vec<usize>>, OutOfBudget> {
        if let Some(known) = self.redundant[i].get() {
            return Ok(known);
        }
        let mut stack = Vec::new();
        match self.start(i) {
            Ok(frame) => stack.push(frame),
            Err(answer) => {
                let _ = self.redundant[i].set(answer);
            }
        }
        while let Some(frame) = stack.last_mut() {
            if self.out_of_budget() {
                return Err(OutOfBudget);
            }
            match self.advance(frame) {
                Step::Ask(j) => match self.start(j) {
                    Ok(frame) => stack.push(frame),
                    Err(answer) => {
                        let _ = self.redundant[j].set(answer);
                    }
                },
                Step::Answer(answer) => {
                    let rule = frame.rule;
                    self.release(frame.held);
                    stack.pop();
                    let _ = self.redundant[rule].set(answer);
                }
            }
        }
        // A later rule's shadow cut short by the stop time may have led the walk astray.
        if self.out_of_budget() {
            return Err(OutOfBudget);
        }
        Ok(self.redundant[i].get().expect("answered above"))
    }

    /// The walk for rule `i`, or its answer at once when it cannot be redundant.
    fn start(&self, i: usize) -> Result<Frame, Option<Vec<usize>>> {
        let rule = &self.engine.rules()[i].rule;
        if !rule.in_effect() || !rule.action.is_terminal() {
            return Err(None);
        }
        match self.shadow(i) {
            Shadow::Left(effective) => {
                // The walk starts once per rule (its answer is then kept).
                // Its boxes were held as what is left of it; the walk holds them now.
                let left = std::mem::take(&mut *effective.lock().expect("not poisoned"));
                let candidates = self.touching(&left);
                let held = bytes_of(&left) + candidates.bytes();
                self.hold(candidates.bytes());
                Ok(Frame {
                    rule: i,
                    next: i + 1,
                    candidates,
                    left,
                    used: Vec::new(),
                    held,
                })
            }
            _ => Err(None),
        }
    }

    /// Walks later rules until one whose own redundancy is not known yet, or the answer.
    fn advance(&self, frame: &mut Frame) -> Step {
        let rules = self.engine.rules();
        let action = rules[frame.rule].rule.action;
        while let Some(j) = frame.candidates.next_from(frame.next) {
            let later = &rules[j];
            frame.next = j + 1;
            if !later.rule.in_effect() {
                continue;
            }
            let Some(cover) = self.space(j) else {
                // An unresolvable rule might match what is left: no claim.
                if later.rule.action != action {
                    return Step::Answer(None);
                }
                continue;
            };
            if !touches(&frame.left, cover) || self.is_shadowed(j) {
                continue;
            }
            if later.rule.action.is_terminal() {
                match self.redundant[j].get() {
                    None => {
                        frame.next = j;
                        return Step::Ask(j);
                    }
                    // Removed with this one: it decides nothing.
                    Some(Some(_)) => continue,
                    Some(None) => {}
                }
            }
            if later.rule.action != action {
                return Step::Answer(None);
            }
            frame.used.push(j);
            match remove(std::mem::take(&mut frame.left), cover) {
                None => return Step::Answer(None),
                Some(left) if left.is_empty() => {
                    return Step::Answer(Some(std::mem::take(&mut frame.used)))
                }
                Some(left) => {
                    let held = bytes_of(&left) + frame.candidates.bytes();
                    self.hold(held);
                    self.release(frame.held);
                    frame.held = held;
                    frame.left = left;
                }
            }
        }
        Step::Answer(None)
    }
}

/// The analysis ran out of its time or its memory.
#[derive(Debug)]
struct OutOfBudget;

/// Where the redundancy walk of one rule stands.
struct Frame {
    rule: usize,
    /// The next later rule to look at.
    next: usize,
    /// The rules that can touch it (the others decide none of it).
    candidates: Bits,
    /// What no later rule has decided yet.
    left: Vec<Region>,
    /// The later rules that decided the rest.
    used: Vec<usize>,
    /// Bytes it holds (its boxes and candidates), counted in the analysis's budget.
    held: usize,
}

enum Step {
    /// The answer needs this later rule's redundancy first.
    Ask(usize),
    Answer(Option<Vec<usize>>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_analysis_stops_at_its_budget_and_says_how_far_it_got() {
        let engine = Engine::compile(&crate::core::snapshot::fixtures::sample(0)).unwrap();
        let timed = Budget {
            until: Some(std::time::Instant::now()),
            bytes: usize::MAX,
        };
        let stopped = analyze_until(&engine, timed);
        assert_eq!((stopped.analysed, stopped.complete()), (0, false));
        assert_eq!(stopped.stopped, Some(Stopped::Time));
        assert!(stopped.findings.is_empty());
        let whole = analyze_until(&engine, Budget::unlimited());
        assert!(whole.complete() && whole.rules > 0 && whole.stopped.is_none());
        assert_eq!(whole.findings, analyze(&engine));
        // Within a memory budget, the findings it made are today's, and it stopped for memory.
        let small = Budget {
            until: None,
            bytes: 4 * 1024,
        };
        let bounded = analyze_until(&engine, small);
        assert_eq!(bounded.stopped, Some(Stopped::Memory));
        assert!(bounded.analysed < whole.rules);
        let reached: Vec<&RuleFinding> = whole
            .findings
            .iter()
            .filter(|f| (f.rule as usize) < bounded.analysed)
            .collect();
        assert_eq!(bounded.findings.iter().collect::<Vec<_>>(), reached);
        // One rule asked alone past its budget is undecided, saying so.
        let last = engine.rules().len() as RuleId - 1;
        let alone = analyze_rule(&engine, last, 1).expect("a finding");
        assert_eq!(alone.finding, Finding::Undecided);
        assert!(alone.detail.contains("memory"), "{}", alone.detail);
    }

    /// Flow keys are dense: any service is one range; a TCP or UDP range keeps its ports; another
    /// protocol keeps only port 0; and the order of protocols is kept.
    #[test]
    fn flow_keys_are_dense() {
        let any = flow_keys(&[(0, 0xff_ffff)]);
        assert_eq!(any.len(), 1);
        assert_eq!(any[0], (0, 253 + 2 * 65_536));
        let tcp = |lo: u32, hi: u32| (6 << 16 | lo, 6 << 16 | hi);
        assert_eq!(flow_keys(&[tcp(80, 80)]), vec![(86, 86)]);
        assert_eq!(flow_keys(&[(1 << 16, 1 << 16 | 0xffff)]), vec![(1, 1)]);
        assert_eq!(flow_keys(&[(1 << 16 | 5, 1 << 16 | 9)]), vec![]);
        let udp = flow_keys(&[(17 << 16, 17 << 16 | 0xffff)]);
        let after = flow_keys(&[(18 << 16, 18 << 16)]);
        assert!(udp[0].1 + 1 == after[0].0);
        assert_eq!(flow_keys(&[tcp(0, 0xffff), (7 << 16, 7 << 16)]).len(), 1);
    }

    #[test]
    fn range_subtraction() {
        assert_eq!(subtract(&[(0, 10)], &[(3, 4)]), vec![(0, 2), (5, 10)]);
        assert_eq!(subtract(&[(0, 10)], &[(0, 10)]), vec![]);
        assert_eq!(subtract(&[(0, 10)], &[(0, 3), (8, 20)]), vec![(4, 7)]);
        assert_eq!(subtract(&[(0, 3), (5, 9)], &[(2, 6)]), vec![(0, 1), (7, 9)]);
        assert_eq!(subtract(&[(5, 9)], &[(0, 1)]), vec![(5, 9)]);
        assert_eq!(
            intersect(&[(0, 3), (5, 9)], &[(2, 6)]),
            vec![(2, 3), (5, 6)]
        );
        assert!(overlaps(&[(0, 3), (5, 9)], &[(4, 5)]));
        assert!(!overlaps(&[(0, 3), (5, 9)], &[(4, 4), (10, 12)]));
        assert!(!overlaps(&[], &[(0, 1)]));
    }
}
