//! `esgflow synthetic`: a generated account — its rule snapshot, flow-log lines, and for the
//! reference account its listings as the cloud answers them.

use std::path::PathBuf;
use std::process::ExitCode;

use super::Outcome;

/// Which account to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// The reference account (`testdata::reference`): 60 VPCs, 600 subnets, 6,000 named
    /// instances, 20,000 overlapping rules of every kind
    Enterprise,
    /// The older synthetic rule set: 64 address blocks, rules that barely overlap
    Basic,
}

/// `esgflow synthetic` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Account shape
    #[arg(long, value_enum, default_value = "enterprise")]
    pub profile: Profile,
    /// Number of rules [default: 20,000 enterprise, 1,000 basic]
    #[arg(long)]
    pub rules: Option<usize>,
    /// Number of flow-log lines (enterprise: a day, in time order; ten million is a large
    /// account's day)
    #[arg(long, default_value_t = 5000)]
    pub flows: usize,
    /// Snapshot file to write
    #[arg(long)]
    pub snapshot: PathBuf,
    /// Flow-log file to write
    #[arg(long)]
    pub flowlog: PathBuf,
    /// Directory to write the account's listings into, one file per action (what `esgflow
    /// snapshot build` and `esgflow sync --local --exports` read); enterprise only
    #[arg(long)]
    pub export: Option<PathBuf>,
}

/// The first second of the reference account's day of flow logs (2026-01-01 UTC).
pub const REFERENCE_DAY: u64 = 1_767_225_600;

/// Writes the files.
pub fn run(args: Args) -> Outcome {
    use crate::testdata::{reference, synthetic};
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(&args.flowlog)?);
    let rules = match args.profile {
        Profile::Enterprise => {
            let rules = args.rules.unwrap_or(reference::RULES);
            let items = reference::account(rules, 42);
            if let Some(dir) = &args.export {
                write_export(dir, &items)?;
            }
            reference::snapshot(&items)?.save(&args.snapshot)?;
            // A day of flow logs, streamed: ten million lines take no memory to write.
            let progress = super::Progress::new("lines written", args.flows as u64);
            for (i, line) in reference::day_lines(args.flows, 7, REFERENCE_DAY).enumerate() {
                writeln!(out, "{line}")?;
                progress.set(i as u64 + 1, "");
            }
            progress.finish();
            rules
        }
        Profile::Basic => {
            if args.export.is_some() {
                return Err("--export is for the enterprise profile".into());
            }
            let rules = args.rules.unwrap_or(1_000);
            synthetic::snapshot(rules, 64, 42).save(&args.snapshot)?;
            for line in crate::release::measure::synthetic_lines(args.flows) {
                writeln!(out, "{line}")?;
            }
            rules
        }
    };
    out.flush()?;
    eprintln!(
        "wrote {} ({rules} rules) and {} ({} lines)",
        args.snapshot.display(),
        args.flowlog.display(),
        args.flows
    );
    Ok(ExitCode::SUCCESS)
}

/// One `<Action>.json` per listing, each a `tccli` answer holding the whole list.
fn write_export(
    dir: &std::path::Path,
    items: &std::collections::BTreeMap<String, Vec<serde_json::Value>>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (action, list) in items {
        let key = crate::standins::cloud::list_key(action)
            .ok_or_else(|| std::io::Error::other(format!("{action} is not a served listing")))?;
        let body = serde_json::json!({"Response": {key: list, "TotalCount": list.len(), "RequestId": "reference"}});
        std::fs::write(dir.join(format!("{action}.json")), body.to_string())?;
    }
    Ok(())
}
