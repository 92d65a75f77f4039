//! `esgflow serve` as a user starts it: on an ephemeral port, stopped when dropped.

use std::process::Command;

/// A running `esgflow serve`, stopped with SIGTERM (which stops its lookup process too) when
/// dropped, so a failing test leaves nothing behind.
pub struct Serving(pub std::process::Child);

impl Drop for Serving {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while matches!(self.0.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `esgflow serve` on an ephemeral port with the sample snapshot and `args`, once it listens:
/// the process and its address (`127.0.0.1:<port>`). The function binaries are built first.
pub fn start_serve(args: &[&std::ffi::OsStr]) -> (Serving, String) {
    use std::io::BufRead;
    use std::time::{Duration, Instant};
    // serve runs the lookup binary beside it: built now, so it is never stale.
    super::function_binary("lookup");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_esgflow"));
    command.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--token",
        "local-token-0123456789",
    ]);
    if !args.iter().any(|a| *a == "--snapshot") {
        command.arg("--snapshot").arg(super::sample_snapshot());
    }
    let mut serve = Serving(
        command
            .args(args)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = serve.0.stderr.take().unwrap();
    let (lines, listening) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = listening
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("esgflow serve starts listening");
        if let Some(rest) = line.split("lookup API on http://").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().to_string();
            return (serve, addr);
        }
    }
}
