//! Where the function binaries are and how the local tools run them.

use std::path::{Path, PathBuf};

/// The functions esgflow ships.
pub const FUNCTIONS: &[&str] = &["audit", "lookup", "sync"];

/// The binary of `function` in `bin_dir` (`esgflow-<function>`, packaged as `bootstrap`).
pub fn binary_path(bin_dir: &Path, function: &str) -> PathBuf {
    bin_dir.join(format!("esgflow-{function}"))
}

/// The directory the binaries are looked up in: `ESGFLOW_BIN_DIR`, else the directory of the
/// running executable (so `target/debug/esgflow` finds `target/debug/esgflow-audit`).
pub fn default_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ESGFLOW_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/debug"))
}
