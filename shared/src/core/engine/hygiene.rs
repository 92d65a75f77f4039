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

/// The service keys a flow can carry: every port for TCP and UDP, port 0 for the rest.
fn reachable_keys() -> Ranges {
    let mut keys = Vec::new();
    for protocol in 0u128..=255 {
        let base = protocol << 16;
        if protocol == 6 || protocol == 17 {
            keys.push((base, base | 0xffff));
        } else {
            keys.push((base, base));
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
fn space(rule: &CompiledRule, reachable: &Ranges) -> Option<Vec<Region>> {
    let (Ok(src), Ok(dst), Ok(services)) = (&rule.source, &rule.destination, &rule.services) else {
        return None;
    };
    let services: Ranges = services
        .iter()
        .map(|&(a, b)| (u128::from(a), u128::from(b)))
        .collect();
    let keys = intersect(&services, reachable);
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
    /// The analysis ran out of its time (the analysis stops; nothing is reported).
    OutOfTime,
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
    analyze_until(engine, None).findings
}

/// What [`analyze_until`] found, and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// Findings about the rules analysed.
    pub findings: Vec<RuleFinding>,
    /// Rules analysed, from the top of the evaluation order.
    pub analysed: usize,
    /// Rules in the engine.
    pub rules: usize,
}

impl Analysis {
    /// Whether every rule was analysed.
    pub fn complete(&self) -> bool {
        self.analysed == self.rules
    }
}

/// Analyses the rules in evaluation order until `stop` (never, with `None`); the findings about
/// the rules it reached are exact.
pub fn analyze_until(engine: &Engine, stop: Option<std::time::Instant>) -> Analysis {
    let analyzer = Analyzer::new(engine, stop);
    let rules = engine.rules().len();
    let mut findings = Vec::new();
    for i in 0..rules {
        let out_of_time = || Analysis {
            findings: findings.clone(),
            analysed: i,
            rules,
        };
        if stop.is_some_and(|stop| std::time::Instant::now() >= stop) {
            return out_of_time();
        }
        match analyzer.rule(i) {
            Ok(finding) => findings.extend(finding),
            Err(OutOfTime) => return out_of_time(),
        }
    }
    Analysis {
        findings,
        analysed: rules,
        rules,
    }
}

/// The finding about one rule (`None`: nothing to report), computing only the match spaces of the
/// rules it depends on: what the lookup API needs for one rule of a large snapshot.
pub(crate) fn analyze_rule(engine: &Engine, rule: RuleId) -> Option<RuleFinding> {
    Analyzer::new(engine, None)
        .rule(rule as usize)
        .expect("no time limit")
}

struct Analyzer<'e> {
    engine: &'e Engine,
    reachable: Ranges,
    spaces: Vec<std::sync::OnceLock<Option<Vec<Region>>>>,
    shadows: Vec<std::sync::OnceLock<Shadow>>,
    /// Each terminal rule's redundancy, once known (see [`Analyzer::redundancy`]).
    redundant: Vec<std::sync::OnceLock<Option<Vec<usize>>>>,
    /// The rules each rule can touch (built on first use, from every rule's match space).
    candidates: std::sync::OnceLock<Candidates>,
    stop: Option<std::time::Instant>,
}

impl<'e> Analyzer<'e> {
    fn new(engine: &'e Engine, stop: Option<std::time::Instant>) -> Self {
        fn memo<T>(rules: usize) -> Vec<std::sync::OnceLock<T>> {
            (0..rules).map(|_| std::sync::OnceLock::new()).collect()
        }
        let rules = engine.rules().len();
        Self {
            engine,
            reachable: reachable_keys(),
            spaces: memo(rules),
            shadows: memo(rules),
            redundant: memo(rules),
            candidates: std::sync::OnceLock::new(),
            stop,
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

    fn out_of_time(&self) -> bool {
        self.stop
            .is_some_and(|stop| std::time::Instant::now() >= stop)
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
            Err(OutOfTime) => Shadow::OutOfTime,
            Ok(None) => Shadow::Undecided,
            Ok(Some((effective, used))) if effective.is_empty() => Shadow::Covered(used),
            Ok(Some((effective, _))) => Shadow::Left(std::sync::Mutex::new(coalesce(effective))),
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
    ) -> Result<Option<(Vec<Region>, Vec<usize>)>, OutOfTime> {
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
            if examined % 1024 == 0 && self.out_of_time() {
                return Err(OutOfTime);
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
            if rule.rule.in_effect() && rule.is_determinate() {
                space(rule, &self.reachable)
            } else {
                None
            }
        })
    }

    fn rule(&self, i: usize) -> Result<Option<RuleFinding>, OutOfTime> {
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
            Shadow::OutOfTime => return Err(OutOfTime),
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
    fn redundancy(&self, i: usize) -> Result<&Option<Vec<usize>>, OutOfTime> {
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
            if self.out_of_time() {
                return Err(OutOfTime);
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
                    stack.pop();
                    let _ = self.redundant[rule].set(answer);
                }
            }
        }
        // A later rule's shadow cut short by the stop time may have led the walk astray.
        if self.out_of_time() {
            return Err(OutOfTime);
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
                let left = std::mem::take(&mut *effective.lock().expect("not poisoned"));
                Ok(Frame {
                    rule: i,
                    next: i + 1,
                    candidates: self.touching(&left),
                    left,
                    used: Vec::new(),
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
                Some(left) => frame.left = left,
            }
        }
        Step::Answer(None)
    }
}

/// The analysis ran out of its time.
#[derive(Debug)]
struct OutOfTime;

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
    fn an_analysis_stops_at_its_time_and_says_how_far_it_got() {
        let engine = Engine::compile(&crate::core::snapshot::fixtures::sample(0)).unwrap();
        let stopped = analyze_until(&engine, Some(std::time::Instant::now()));
        assert_eq!((stopped.analysed, stopped.complete()), (0, false));
        assert!(stopped.findings.is_empty());
        let whole = analyze_until(&engine, None);
        assert!(whole.complete() && whole.rules > 0);
        assert_eq!(whole.findings, analyze(&engine));
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
