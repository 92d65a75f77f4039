//! The `esgflow` command, one module per subcommand: each owns its arguments (`Args`) and its
//! `run`; `src/main.rs` only parses the command line and dispatches. What the commands share —
//! how a function is run under the emulator, how a flow-log file is cut into events — is here.

pub mod explain;
pub mod feed;
pub mod invoke;
pub mod measure;
pub mod package;
pub mod replay;
pub mod report;
pub mod serve;
pub mod snapshot;
pub mod stack;
pub mod sync;
pub mod synthetic;
pub mod tick;
pub mod whatif;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::emulator::clsfeed::{self, ContentForm, FeedOptions};
use crate::emulator::functions;
use crate::emulator::{Emulator, FunctionSpec, InvocationResult, Output};

/// A progress bar on standard error, with throughput and time left, for work that runs longer
/// than [`Progress::QUIET`]: shorter work (and output that is not a terminal) shows none.
pub struct Progress {
    bar: indicatif::ProgressBar,
    started: std::time::Instant,
    shown: std::cell::Cell<bool>,
}

impl Progress {
    /// How long work runs before its bar shows.
    pub const QUIET: Duration = Duration::from_secs(2);

    /// A bar for `total` units of `what` ("lines written").
    pub fn new(what: &str, total: u64) -> Self {
        Self::styled(
            total,
            &format!("{{bar:30}} {{human_pos}}/{{human_len}} {what}, {{per_sec}}, {{eta}} left"),
        )
    }

    /// A bar for `total` bytes `what` ("read"), with a message beside it.
    pub fn bytes(what: &str, total: u64) -> Self {
        Self::styled(
            total,
            &format!("{{bar:30}} {{bytes}}/{{total_bytes}} {what} ({{msg}}), {{bytes_per_sec}}, {{eta}} left"),
        )
    }

    fn styled(total: u64, template: &str) -> Self {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total),
            indicatif::ProgressDrawTarget::hidden(),
        );
        bar.set_style(indicatif::ProgressStyle::with_template(template).expect("a valid template"));
        Self {
            bar,
            started: std::time::Instant::now(),
            shown: std::cell::Cell::new(false),
        }
    }

    /// `done` units so far, and what the bar says beside them.
    pub fn set(&self, done: u64, message: &str) {
        if !self.shown.get() && self.started.elapsed() >= Self::QUIET {
            self.shown.set(true);
            self.bar
                .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        self.bar.set_message(message.to_string());
        self.bar.set_position(done);
    }

    /// Runs `print` with the bar out of the way.
    pub fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        self.bar.suspend(print)
    }

    /// Clears the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// What a command answers: an exit code, or an error the command line prints.
pub type Outcome = Result<ExitCode, Box<dyn std::error::Error>>;

/// The emulator's time limit when none is asked for (SCF's default, 3 s).
const DEFAULT_TIMEOUT_MS: u64 = 3000;

/// How a function is run under the emulator (the flags every running command takes).
#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// Directory holding the esgflow-<function> binaries [default: next to this executable]
    #[arg(long, env = "ESGFLOW_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Function time limit (ms), sent as time_limit_in_ms and enforced
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_MS)]
    pub timeout_ms: u64,
    /// Init timeout (ms): process start to /runtime/init/ready
    #[arg(long, default_value_t = 10_000)]
    pub init_timeout_ms: u64,
    /// Memory limit (MB), sent as memory_limit_in_mb
    #[arg(long, default_value_t = 128)]
    pub memory_mb: u32,
    /// Function environment variable KEY=VALUE (repeatable)
    #[arg(long = "env", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Show the function's own log lines
    #[arg(long)]
    pub logs: bool,
}

impl RunArgs {
    /// The emulator's description of `function` run with these flags.
    pub fn spec(&self, function: &str) -> FunctionSpec {
        let bin_dir = self
            .bin_dir
            .clone()
            .unwrap_or_else(functions::default_bin_dir);
        let mut spec = FunctionSpec::new(function, functions::binary_path(&bin_dir, function));
        spec.env = self.env.clone();
        spec.timeout = Duration::from_millis(self.timeout_ms);
        spec.init_timeout = Duration::from_millis(self.init_timeout_ms);
        spec.memory_mb = self.memory_mb;
        spec.output = if self.logs {
            Output::Inherit
        } else {
            Output::Discard
        };
        spec
    }

    /// The time limit: the one asked for, else `deployed` (the function's limit in
    /// template.yaml) in place of the emulator's 3 s default.
    pub fn with_default_timeout(mut self, deployed: Duration) -> Self {
        if self.timeout_ms == DEFAULT_TIMEOUT_MS {
            self.timeout_ms = deployed.as_millis() as u64;
        }
        self
    }
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

/// How a flow-log file is cut into CLS trigger events.
#[derive(clap::Args)]
pub struct FeedArgs {
    /// Form of each record's content
    #[arg(long, value_enum, default_value_t = ContentForm::Json)]
    pub content: ContentForm,
    /// Largest event in bytes
    #[arg(long, default_value_t = clsfeed::MAX_ASYNC_EVENT_BYTES)]
    pub max_event_bytes: usize,
    /// topic_id written into each batch
    #[arg(long, default_value = "00000000-0000-4000-8000-00000000f10w")]
    pub topic_id: String,
}

impl FeedArgs {
    /// The feeder's options.
    pub fn options(&self) -> FeedOptions {
        FeedOptions {
            topic_id: self.topic_id.clone(),
            content: self.content,
            max_event_bytes: self.max_event_bytes,
            ..FeedOptions::default()
        }
    }
}

/// The CLS trigger events a flow-log file is cut into.
pub fn cut_file(
    path: &Path,
    options: &FeedOptions,
) -> Result<Vec<Vec<u8>>, Box<dyn std::error::Error>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(clsfeed::cut_events(text.lines(), options)?)
}

/// `path` made absolute against the working directory (function processes run elsewhere).
pub fn absolute(path: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    Ok(path.display().to_string())
}

/// A `--snapshot` as `ESGFLOW_SNAPSHOT`: a location the functions read (`file://`, `dir://`,
/// `cos://`, …) as given, a path made absolute (the functions run in another directory).
pub fn snapshot_location(snapshot: &str) -> Result<String, Box<dyn std::error::Error>> {
    if snapshot.contains("://") {
        return Ok(snapshot.to_string());
    }
    absolute(Path::new(snapshot))
}

/// An invocation's result, pretty-printed: a response on stdout, an error on stderr.
pub fn print_result(result: &InvocationResult) {
    let text = match serde_json::from_slice::<serde_json::Value>(result.body()) {
        Ok(json) => serde_json::to_string_pretty(&json).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(result.body()).into_owned(),
    };
    match result {
        InvocationResult::Response(_) => println!("{text}"),
        InvocationResult::Error(_) => eprintln!("invocation error: {text}"),
    }
}

/// Exit 0 when nothing failed, else 1.
pub fn exit_code(failed: usize) -> ExitCode {
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Fires `count` Timer events, `every_ms` apart, printing each result; returns how many failed.
pub async fn fire_timers(
    emulator: &mut Emulator,
    trigger: &str,
    message: &str,
    count: u32,
    every_ms: u64,
) -> Result<usize, Box<dyn std::error::Error>> {
    let mut failed = 0;
    for i in 0..count {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(every_ms)).await;
        }
        let invocation = emulator
            .invoke(crate::emulator::timer_event(trigger, message))
            .await?;
        print_result(&invocation.result);
        failed += usize::from(!invocation.result.is_response());
    }
    Ok(failed)
}
