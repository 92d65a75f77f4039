//! `esgflow explain`: which ESG rule decides a flow, and why, offline against a snapshot file;
//! and the human-readable renderings it and `esgflow snapshot show` print.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use esgflow::app::views::ExplainView;
use esgflow::core::engine::{Decision, Detail, Engine, FlowKey, StepOutcome};
use esgflow::core::snapshot::Snapshot;

/// `esgflow explain` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Snapshot file
    #[arg(long)]
    pub snapshot: PathBuf,
    /// Source address
    #[arg(long)]
    pub src: std::net::IpAddr,
    /// Destination address
    #[arg(long)]
    pub dst: std::net::IpAddr,
    /// Protocol: tcp, udp, icmp, icmpv6 or a number
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    /// Destination port (TCP and UDP)
    #[arg(long)]
    pub port: Option<u16>,
    /// The ENI that recorded the flow (for direction)
    #[arg(long)]
    pub eni: Option<String>,
    /// Print every rule considered, not only the ones that matched
    #[arg(long)]
    pub verbose: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// Explains the flow and prints it.
pub fn run(args: Args) -> super::Outcome {
    let engine = load_engine(&args.snapshot)?;
    let protocol = parse_protocol(&args.protocol)?;
    let flow = FlowKey::requested(args.src, args.dst, protocol, args.port);
    if matches!(protocol, 6 | 17) && args.port.is_none() {
        return Err("--port is required for TCP and UDP".into());
    }
    print!(
        "{}",
        render(&engine, &flow, args.eni.as_deref(), args.verbose, args.json)
    );
    Ok(ExitCode::SUCCESS)
}

/// The snapshot file at `path`, loaded and compiled.
pub fn load_engine(path: &Path) -> Result<Engine, Box<dyn std::error::Error>> {
    let snapshot = Snapshot::load(path)?;
    Ok(Engine::compile_owned(snapshot).map_err(|e| format!("{}: {e}", path.display()))?)
}

/// Parses `tcp`, `udp`, `icmp`, `icmpv6` or a protocol number, as lookup does.
pub fn parse_protocol(text: &str) -> Result<u8, String> {
    esgflow::core::flowlog::protocol::requested(text).ok_or_else(|| {
        format!("protocol {text:?} is not tcp, udp, icmp, icmpv6 or a number from 0 to 255")
    })
}

/// The explanation of one flow, as text or JSON.
pub fn render(
    engine: &Engine,
    flow: &FlowKey,
    eni: Option<&str>,
    verbose: bool,
    json: bool,
) -> String {
    if json {
        // Exactly what `POST /v1/explain` answers for this flow.
        let detail = if verbose {
            Detail::Full
        } else {
            Detail::Summary
        };
        let view = ExplainView::of(engine, flow, eni, detail);
        return serde_json::to_string_pretty(&view).expect("plain data") + "\n";
    }
    let explanation = engine.explain(flow);
    let placement = engine.topology().place(flow.src, flow.dst, eni);
    let mut out = String::new();
    let describe = |id: u32| {
        let c = engine.rule(id);
        format!(
            "rule {} (order {}, {}) \"{}\": {} {} → {} {}, {}",
            c.rule.uuid,
            c.rule.order,
            c.rule.action.as_str(),
            c.rule.description,
            c.rule.source.kind.as_str(),
            c.rule.source.content,
            c.rule.destination.kind.as_str(),
            c.rule.destination.content,
            c.services_label
        )
    };
    let port = flow.dst_port.map(|p| format!(":{p}")).unwrap_or_default();
    let _ = writeln!(
        out,
        "flow {} → {}{port} protocol {} (snapshot {})",
        flow.src,
        flow.dst,
        flow.protocol,
        engine.version()
    );
    let _ = writeln!(
        out,
        "scope {} | source {} | destination {}",
        placement.scope.as_str(),
        location(&placement.src),
        location(&placement.dst)
    );
    match explanation.evaluation.decision {
        Decision::Allow { rule } => {
            let _ = writeln!(out, "ALLOWED by {}", describe(rule));
        }
        Decision::Block { rule } => {
            let _ = writeln!(out, "BLOCKED by {}", describe(rule));
        }
        Decision::None => {
            let _ = writeln!(out, "NO ESG DECISION: no enabled rule matches; other security groups or the network ACL decide");
        }
    }
    for &rule in &explanation.evaluation.observed {
        let _ = writeln!(out, "observed by {}", describe(rule));
    }
    for &rule in &explanation.evaluation.indeterminate {
        let _ = writeln!(
            out,
            "UNCERTAIN: {} cannot be resolved from the snapshot and might match",
            describe(rule)
        );
    }
    let _ = writeln!(out, "rules considered: {}", explanation.steps.len());
    for step in &explanation.steps {
        if verbose || step.outcome != StepOutcome::NotMatched {
            let outcome = match step.outcome {
                StepOutcome::Matched => "matched",
                StepOutcome::NotMatched => "no match",
                StepOutcome::Disabled => "disabled",
                StepOutcome::Indeterminate => "indeterminate",
            };
            let _ = writeln!(
                out,
                "  [{:>5}] rule {:<10} {:<7} {:<13} {}",
                step.order,
                step.uuid,
                step.action.as_str(),
                outcome,
                step.detail
            );
        }
    }
    out
}

fn location(l: &esgflow::core::engine::Location<'_>) -> String {
    let parts: Vec<&str> = [l.vpc, l.subnet, l.instance, l.eni]
        .into_iter()
        .flatten()
        .collect();
    if parts.is_empty() {
        "outside known VPCs".to_string()
    } else {
        parts.join("/")
    }
}

/// A snapshot's summary.
pub fn summary(snapshot: &Snapshot, engine: &Engine) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "version   {}", snapshot.version);
    let _ = writeln!(out, "taken_at  {}", snapshot.taken_at);
    let mut by_action: BTreeMap<String, usize> = BTreeMap::new();
    for rule in &snapshot.rules {
        let key = format!(
            "{:?}/{}{}",
            rule.generation,
            rule.action.as_str(),
            if rule.enabled { "" } else { " (disabled)" }
        )
        .to_lowercase();
        *by_action.entry(key).or_default() += 1;
    }
    let _ = writeln!(out, "rules     {}", snapshot.rules.len());
    for (key, count) in by_action {
        let _ = writeln!(out, "  {key:<24} {count}");
    }
    let _ = writeln!(
        out,
        "templates {} address, {} address groups, {} service, {} service groups",
        snapshot.address_templates.len(),
        snapshot.address_template_groups.len(),
        snapshot.service_templates.len(),
        snapshot.service_template_groups.len()
    );
    let _ = writeln!(
        out,
        "topology  {} VPCs, {} subnets, {} ENIs",
        snapshot.vpcs.len(),
        snapshot.subnets.len(),
        snapshot.enis.len()
    );
    let unresolved = engine.indeterminate_rules();
    let _ = writeln!(out, "unresolvable enabled rules: {}", unresolved.len());
    for &id in unresolved {
        let _ = writeln!(
            out,
            "  rule {} ({})",
            engine.rule(id).rule.uuid,
            engine.rule(id).rule.description
        );
    }
    // Shadowed and redundant rules (the sync function's rule hygiene, computed the same way).
    let findings: Vec<_> = esgflow::core::engine::hygiene::analyze(engine)
        .into_iter()
        .filter(|f| {
            matches!(
                f.finding,
                esgflow::core::engine::hygiene::Finding::Shadowed
                    | esgflow::core::engine::hygiene::Finding::Redundant
            )
        })
        .collect();
    let _ = writeln!(out, "shadowed or redundant rules: {}", findings.len());
    for finding in findings {
        let rule = &engine.rule(finding.rule).rule;
        let how = match finding.finding {
            esgflow::core::engine::hygiene::Finding::Shadowed => "shadowed by",
            _ => "redundant with",
        };
        let covering = if finding.covering.is_empty() {
            finding.detail.clone()
        } else {
            finding.covering.join(", ")
        };
        let _ = writeln!(
            out,
            "  rule {} ({}): {how} {covering}",
            rule.uuid, rule.description
        );
    }
    let _ = writeln!(out, "warnings  {}", snapshot.warnings.len());
    for warning in &snapshot.warnings {
        let _ = writeln!(out, "  {warning}");
    }
    out
}
