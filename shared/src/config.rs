//! Every setting esgflow reads, in one registry, and typed readers that validate them.
//!
//! Settings come from the environment (SCF passes them as function environment variables). The
//! registry [`SETTINGS`] is the single list the README's configuration table and `template.yaml`
//! are checked against; code reads a setting only through its [`Setting`] constant, so nothing
//! can be read that is not registered.

use std::fmt;

/// Which function reads a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    /// The CLS-triggered audit function.
    Audit,
    /// The HTTP-triggered lookup function.
    Lookup,
    /// The timer-triggered sync function.
    Sync,
}

impl Function {
    /// Every function.
    pub const ALL: &'static [Function] = &[Function::Audit, Function::Lookup, Function::Sync];

    /// The function's name as in `template.yaml` and `functions/`.
    pub fn name(self) -> &'static str {
        match self {
            Function::Audit => "audit",
            Function::Lookup => "lookup",
            Function::Sync => "sync",
        }
    }
}

/// One setting: its environment variable, default, readers and meaning.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The environment variable.
    pub name: &'static str,
    /// The value used when the variable is unset or empty.
    pub default: Option<&'static str>,
    /// The functions that read it.
    pub functions: &'static [Function],
    /// One line for the README.
    pub description: &'static str,
}

/// `RUST_LOG`: the log filter.
pub const RUST_LOG: Setting = Setting {
    name: "RUST_LOG",
    default: Some("info"),
    functions: Function::ALL,
    description: "Log filter in tracing's EnvFilter syntax, e.g. `info` or `esgflow=debug,info`.",
};

/// `ESGFLOW_LOG_FORMAT`: `text` or `json` log lines.
pub const LOG_FORMAT: Setting = Setting {
    name: "ESGFLOW_LOG_FORMAT",
    default: Some("text"),
    functions: Function::ALL,
    description: "Log line format on stdout: `text` (one compact line per event) or `json` (one JSON object per line).",
};

/// `ESGFLOW_MAX_DECODED_BYTES`: cap on a decompressed CLS batch.
pub const MAX_DECODED_BYTES: Setting = Setting {
    name: "ESGFLOW_MAX_DECODED_BYTES",
    default: Some("16777216"),
    functions: &[Function::Audit],
    description: "Largest decompressed CLS batch accepted, in bytes; a larger one (a decompression bomb) fails the invocation with a clear error.",
};

/// The registry: every setting the code reads.
pub const SETTINGS: &[Setting] = &[RUST_LOG, LOG_FORMAT, MAX_DECODED_BYTES];

/// A setting holds a value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting {setting} = {value:?} is invalid: {problem}")]
pub struct ConfigError {
    /// The environment variable.
    pub setting: &'static str,
    /// What it held.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

impl Setting {
    /// The raw value: the environment's if set and non-empty, the default otherwise.
    pub fn raw(&self) -> Option<String> {
        self.raw_from(&|name| std::env::var(name).ok())
    }

    /// Like [`Setting::raw`], reading variables through `lookup` (tests, config files).
    pub fn raw_from(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        lookup(self.name)
            .filter(|v| !v.trim().is_empty())
            .or_else(|| self.default.map(str::to_string))
    }

    /// Parses the value with `FromStr`, naming the setting in the error.
    pub fn parse_from<T>(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<T>, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: fmt::Display,
    {
        match self.raw_from(lookup) {
            None => Ok(None),
            Some(value) => value
                .trim()
                .parse()
                .map(Some)
                .map_err(|err: T::Err| ConfigError {
                    setting: self.name,
                    value,
                    problem: err.to_string(),
                }),
        }
    }
}

/// The audit function's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Decoding caps for CLS events.
    pub decode_limits: crate::events::DecodeLimits,
}

impl AuditConfig {
    /// Reads and validates the audit function's settings from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads and validates through `lookup`.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut decode_limits = crate::events::DecodeLimits::default();
        if let Some(max) = MAX_DECODED_BYTES.parse_from::<usize>(lookup)? {
            if max < 1024 {
                return Err(ConfigError {
                    setting: MAX_DECODED_BYTES.name,
                    value: max.to_string(),
                    problem: "must be at least 1024".to_string(),
                });
            }
            decode_limits.max_decoded_bytes = max;
        }
        Ok(Self { decode_limits })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        let config =
            AuditConfig::from_lookup(&lookup(&[("ESGFLOW_MAX_DECODED_BYTES", " ")])).unwrap();
        assert_eq!(config.decode_limits.max_decoded_bytes, 16 * 1024 * 1024);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = AuditConfig::from_lookup(&lookup(&[("ESGFLOW_MAX_DECODED_BYTES", "lots")]))
            .unwrap_err();
        assert_eq!(err.setting, "ESGFLOW_MAX_DECODED_BYTES");
        assert!(err.to_string().contains("\"lots\""), "{err}");
        let err =
            AuditConfig::from_lookup(&lookup(&[("ESGFLOW_MAX_DECODED_BYTES", "10")])).unwrap_err();
        assert!(err.problem.contains("at least"));
    }

    #[test]
    fn registry_names_are_unique() {
        let mut names: Vec<_> = SETTINGS.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SETTINGS.len());
    }
}
