//! `esgflow whatif`: what a proposed rule change would do to the traffic the local records store
//! holds — the same judgement as `POST /v1/whatif`, offline.

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use esgflow::adapters::sqlite::LocalRecords;
use esgflow::app::lookup::whatif::{
    cut, Judged, ObserveAnswer, TightenAnswer, WhatIfAnswer, MAX_CONVERSATIONS,
};
use esgflow::core::engine::Engine;
use esgflow::core::search::TrafficFilter;
use esgflow::core::snapshot::Snapshot;
use esgflow::core::whatif::{self, Edit, Report};

/// `esgflow whatif` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The current rule snapshot (file)
    #[arg(long)]
    pub snapshot: PathBuf,
    /// The local records store (what `esgflow replay --store` wrote)
    #[arg(long)]
    pub store: PathBuf,
    /// The proposed rules: a snapshot file, or a directory of rule-listing answers (tccli
    /// output; the topology of --snapshot is kept)
    #[arg(long, conflicts_with_all = ["edits", "remove", "set", "move_to"])]
    pub proposed: Option<PathBuf>,
    /// A JSON file of edits to the current rules, as `POST /v1/whatif` takes them
    #[arg(long)]
    pub edits: Option<PathBuf>,
    /// Remove this rule (repeatable)
    #[arg(long, value_name = "UUID")]
    pub remove: Vec<String>,
    /// Set a rule's action: UUID=accept|drop|observe (repeatable)
    #[arg(long, value_name = "UUID=ACTION")]
    pub set: Vec<String>,
    /// Move a rule: UUID=POSITION, 1 the first (repeatable)
    #[arg(long = "move", value_name = "UUID=POSITION")]
    pub move_to: Vec<String>,
    /// From (Unix seconds or RFC 3339); default: the store's first record
    #[arg(long)]
    pub since: Option<String>,
    /// To (Unix seconds or RFC 3339); default: now
    #[arg(long)]
    pub until: Option<String>,
    /// Only conversations with either end in this VPC
    #[arg(long)]
    pub vpc: Option<String>,
    /// Changed conversations listed (every class is summed whole)
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Instead of a proposal: what each observe rule would block if it were a drop rule
    #[arg(long, conflicts_with_all = ["proposed", "edits", "remove", "set", "move_to"])]
    pub observe_as_drop: bool,
    /// Instead of a proposal: a narrower form of this accept or drop rule that keeps every
    /// conversation it decided, checked to change nothing
    #[arg(long, value_name = "UUID", conflicts_with_all = ["proposed", "edits", "remove", "set", "move_to", "observe_as_drop"])]
    pub tighten: Option<String>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

/// Judges the store's conversations with the current and the proposed rules, and prints the
/// report.
pub fn run(args: Args) -> super::Outcome {
    let current = Snapshot::load(&args.snapshot)?;
    let before =
        Engine::compile(&current).map_err(|e| format!("{}: {e}", args.snapshot.display()))?;
    let time = |name: &str, given: &Option<String>, default: i64| -> Result<i64, String> {
        match given {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse::<i64>()
                .or_else(|_| {
                    chrono::DateTime::parse_from_rfc3339(text.trim()).map(|t| t.timestamp())
                })
                .map_err(|_| format!("--{name} {text:?} is neither Unix seconds nor RFC 3339")),
        }
    };
    let mut filter = TrafficFilter::new(
        time("since", &args.since, 0)?,
        time("until", &args.until, chrono::Utc::now().timestamp())?,
    );
    filter.vpc = args.vpc.clone();
    let store = LocalRecords::open(&args.store)?;
    if args.observe_as_drop {
        let conversations = store.conversations(&filter, MAX_CONVERSATIONS)?;
        print_promotions(&before, &conversations, &filter, args.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(uuid) = &args.tighten {
        let conversations = store.conversations(&filter, MAX_CONVERSATIONS)?;
        let tightening = whatif::tighten(&current, &before, uuid, &conversations.rows)?;
        if args.json {
            let answer = TightenAnswer {
                judged: Judged::of(&filter, &before, &conversations),
                tightening,
            };
            println!("{}", serde_json::to_string_pretty(&answer)?);
        } else {
            print!("{}", render_tightening(&tightening));
        }
        return Ok(ExitCode::SUCCESS);
    }
    // The proposal is checked before the records are read.
    let (proposed, edits) = proposal(&args, &current)?;
    let after = Engine::compile_owned(proposed).map_err(|e| format!("the proposed rules: {e}"))?;
    let conversations = store.conversations(&filter, MAX_CONVERSATIONS)?;
    let mut report = whatif::compare(&before, &after, &conversations.rows, args.limit);
    if !conversations.complete {
        report.complete = false;
        report.cut = Some(cut(&conversations));
    }
    if args.json {
        let answer = WhatIfAnswer {
            since: filter.since,
            until: filter.until,
            vpc: filter.vpc,
            snapshot_version: before.version().to_string(),
            proposed_version: after.version().to_string(),
            edits,
            report,
        };
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", render(&report, before.version(), after.version()));
    }
    Ok(ExitCode::SUCCESS)
}

/// What each observe rule would block as a drop rule, as text or as `GET /v1/whatif/observe`
/// answers.
fn print_promotions(
    engine: &Engine,
    conversations: &esgflow::core::search::Conversations,
    filter: &TrafficFilter,
    json: bool,
) -> Result<(), serde_json::Error> {
    let promoted = whatif::promotions(engine, &conversations.rows);
    if json {
        let answer = ObserveAnswer {
            judged: Judged::of(filter, engine, conversations),
            rules: promoted,
        };
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    for p in &promoted {
        let sources: Vec<String> = p
            .top_sources
            .iter()
            .take(3)
            .map(|s| s.name.clone().unwrap_or_else(|| s.ip.clone()))
            .collect();
        println!(
            "observe rule {} ({}): matches {} conversations; as a drop rule it would block {} of them, {} flows, {} bytes{}",
            p.rule,
            p.description,
            p.matched,
            p.newly_blocked,
            p.sums.flows,
            p.sums.bytes,
            if sources.is_empty() {
                String::new()
            } else {
                format!(" (from {})", sources.join(", "))
            }
        );
    }
    Ok(())
}

/// The proposed snapshot, and the edits it came from (none for a whole proposed rule set).
fn proposal(args: &Args, current: &Snapshot) -> Result<(Snapshot, Vec<Edit>), String> {
    if let Some(path) = &args.proposed {
        let mut proposed = if path.is_dir() {
            esgflow::core::snapshot::build_from_dir(path, &current.taken_at)
                .map_err(|e| e.to_string())?
        } else {
            Snapshot::load(path).map_err(|e| format!("{}: {e}", path.display()))?
        };
        // Rule listings alone: the account's topology (and templates, when the listings carry
        // none) are the current snapshot's.
        if proposed.vpcs.is_empty() {
            proposed.vpcs = current.vpcs.clone();
            proposed.subnets = current.subnets.clone();
            proposed.enis = current.enis.clone();
            proposed.instances = current.instances.clone();
            proposed.members = current.members.clone();
        }
        if proposed.address_templates.is_empty() && proposed.service_templates.is_empty() {
            proposed.address_templates = current.address_templates.clone();
            proposed.address_template_groups = current.address_template_groups.clone();
            proposed.service_templates = current.service_templates.clone();
            proposed.service_template_groups = current.service_template_groups.clone();
        }
        proposed.seal();
        return Ok((proposed, Vec::new()));
    }
    let mut edits: Vec<Edit> = match &args.edits {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            #[derive(serde::Deserialize)]
            #[serde(untagged)]
            enum Given {
                Wrapped { edits: Vec<Edit> },
                Bare(Vec<Edit>),
            }
            match serde_json::from_str::<Given>(&text)
                .map_err(|e| format!("{}: not a list of edits: {e}", path.display()))?
            {
                Given::Wrapped { edits } | Given::Bare(edits) => edits,
            }
        }
        None => Vec::new(),
    };
    let pair = |flag: &str, text: &str| {
        text.split_once('=')
            .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
            .ok_or_else(|| format!("--{flag} {text:?} is not UUID=VALUE"))
    };
    edits.extend(
        args.remove
            .iter()
            .map(|rule| Edit::Remove { rule: rule.clone() }),
    );
    for text in &args.set {
        let (rule, action) = pair("set", text)?;
        edits.push(Edit::Set {
            rule,
            action: Some(action),
            enabled: None,
        });
    }
    for text in &args.move_to {
        let (rule, to) = pair("move", text)?;
        let to = to
            .parse()
            .map_err(|_| format!("--move {text:?}: {to:?} is not a position"))?;
        edits.push(Edit::Move { rule, to });
    }
    if edits.is_empty() {
        return Err("nothing proposed: give --proposed, --edits, --remove, --set or --move".into());
    }
    Ok((whatif::apply(current, &edits)?, edits))
}

/// A tightening as a person reads it.
fn render_tightening(t: &whatif::Tightening) -> String {
    let mut out = format!(
        "rule {} ({}) decided {} conversations ({} flows, {} bytes) in the window\n  now:  source {}, destination {}, {}\n  seen: {} sources, {} destinations, {}\n",
        t.rule,
        t.action,
        t.decided,
        t.sums.flows,
        t.sums.bytes,
        t.now.source,
        t.now.destination,
        t.now.services,
        t.seen.sources,
        t.seen.destinations,
        t.seen.services.join(", ")
    );
    match &t.proposed {
        Some(Edit::Match {
            source,
            destination,
            protocol,
            port,
            ..
        }) => {
            let keep = |v: &Option<String>| v.clone().unwrap_or_else(|| "(as now)".into());
            out.push_str(&format!(
                "  narrower: source {}, destination {}, protocol {}, port {}\n  checked: {} conversations of the window would change\n",
                keep(source),
                keep(destination),
                keep(protocol),
                keep(port),
                t.changes
            ));
        }
        _ => out.push_str("  nothing narrower to suggest\n"),
    }
    out
}

/// The report as a person reads it: the classes, then the changed conversations.
pub fn render(report: &Report, current: &str, proposed: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "what-if: snapshot {current} → proposed {proposed}: {} conversations judged{}",
        report.judged,
        if report.complete {
            ""
        } else {
            " (not all: see below)"
        }
    );
    let _ = writeln!(
        out,
        "unchanged: {} conversations, {} flows, {} bytes",
        report.unchanged, report.unchanged_sums.flows, report.unchanged_sums.bytes
    );
    if report.classes.is_empty() {
        let _ = writeln!(out, "nothing recorded in the window would change");
    }
    for class in &report.classes {
        let _ = writeln!(
            out,
            "\n{}: {} conversations, {} flows, {} bytes; rules before {:?}, after {:?}",
            class.outcome,
            class.conversations,
            class.sums.flows,
            class.sums.bytes,
            class.rules_before,
            class.rules_after
        );
        for (label, parties) in [
            ("sources", &class.top_sources),
            ("destinations", &class.top_destinations),
        ] {
            let named: Vec<String> = parties
                .iter()
                .map(|p| match &p.name {
                    Some(name) => format!("{} ({name}) {} B", p.ip, p.bytes),
                    None => format!("{} {} B", p.ip, p.bytes),
                })
                .collect();
            let _ = writeln!(out, "  top {label}: {}", named.join(", "));
        }
    }
    if !report.changed.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<18} {:<40} {:<28} {:>10}  before → after",
            "change", "conversation", "", "bytes"
        );
        for changed in &report.changed {
            let c = &changed.conversation;
            let port = c.dst_port.map_or(String::new(), |p| format!(":{p}"));
            let side = |j: &whatif::Judgement| match &j.rule {
                Some(rule) => format!("{} ({rule})", j.decision),
                None => j.decision.to_string(),
            };
            let _ = writeln!(
                out,
                "{:<18} {:<40} {:<28} {:>10}  {} → {}",
                changed.outcome.as_str(),
                format!("{} → {}{port} {}", c.src_ip, c.dst_ip, c.protocol_name),
                format!(
                    "{} → {}",
                    changed.src_name.as_deref().unwrap_or("-"),
                    changed.dst_name.as_deref().unwrap_or("-")
                ),
                c.sums.bytes,
                side(&changed.before),
                side(&changed.after),
            );
        }
        if report.changed_total > report.changed.len() as u64 {
            let _ = writeln!(
                out,
                "… and {} more changed conversations (--limit, --json)",
                report.changed_total - report.changed.len() as u64
            );
        }
    }
    if let Some(cut) = &report.cut {
        let _ = writeln!(out, "\nnot all judged: {cut}");
    }
    out
}
