//! `esgflow serve`: the lookup function behind a local HTTP gateway, as API Gateway would put it
//! (curl, a browser), until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::{absolute, snapshot_location, Outcome, RunArgs};
use crate::emulator::gateway::Gateway;
use crate::emulator::Emulator;

/// `esgflow serve` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Rule snapshot: a file, or any location the functions read (`dir:///path`,
    /// `cos://<bucket>-<appid>/<prefix>?region=<region>`; sets ESGFLOW_SNAPSHOT)
    #[arg(long)]
    pub snapshot: String,
    /// Bearer token clients must send (sets ESGFLOW_LOOKUP_TOKEN)
    #[arg(long, env = "ESGFLOW_LOOKUP_TOKEN")]
    pub token: String,
    /// Records database to search (filled by `esgflow replay --store`; sets ESGFLOW_RECORDS_DB)
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Token that may change the per-VPC monitoring switches, kept beside the snapshot
    /// (sets ESGFLOW_ADMIN_TOKEN)
    #[arg(long, env = "ESGFLOW_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    #[command(flatten)]
    run: RunArgs,
}

/// Serves until a stop signal, then stops the lookup process with it.
pub async fn run(args: Args) -> Outcome {
    let mut stop = Stop::catch()?;
    // The lookup function's deployed limit (template.yaml), unless one was asked for: a
    // traffic view over a week of a large store needs more than 3 s in a debug build.
    let mut spec = args
        .run
        .with_default_timeout(Duration::from_secs(15))
        .spec("lookup");
    spec.env.push((
        "ESGFLOW_SNAPSHOT".into(),
        snapshot_location(&args.snapshot)?,
    ));
    spec.env.push(("ESGFLOW_LOOKUP_TOKEN".into(), args.token));
    if let Some(admin) = args.admin_token {
        spec.env.push(("ESGFLOW_ADMIN_TOKEN".into(), admin));
    }
    if let Some(store) = &args.store {
        // Opened here first, so a missing or empty database is named before start-up.
        esgflow::adapters::sqlite::LocalRecords::open(store)?;
        spec.env
            .push(("ESGFLOW_RECORDS_DB".into(), absolute(store)?));
    }
    let mut emulator = Emulator::new(spec).await?;
    emulator.start_instance().await?;
    let gateway = Gateway::start(emulator, args.listen).await?;
    eprintln!(
        "lookup API on http://{} (Authorization: Bearer <token>); Ctrl-C to stop",
        gateway.addr
    );
    stop.requested().await;
    // Dropping the gateway drops the emulator, which kills the function process.
    drop(gateway);
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C (SIGINT) and SIGTERM (a service manager, `kill`), caught from the moment this is
/// made, so the caller can stop its function processes instead of leaving them behind: a signal
/// that arrives while they are still starting is kept and answered once start-up ends.
struct Stop {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Stop {
    fn catch() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for either signal (at once if one already came).
    async fn requested(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
