//! Which snapshot store a function reads and publishes to: `ESGFLOW_SNAPSHOT`, parsed by
//! [`SnapshotLocation::parse`] and opened on its adapter.
//!
//! | form | store | latest |
//! |---|---|---|
//! | `/path/s.json`, `file:///path/s.json` | one file ([`FileStore`]) | the file itself |
//! | `dir:///path/dir` | a directory ([`DirStore`]) | `<dir>/latest.json` → `<dir>/<version>.json` |
//! | `cos://<bucket>-<appid>/<prefix>?region=<region>` | COS ([`CosStore`]) | `<prefix>/latest.json` → `<prefix>/<version>.json` |

use std::path::PathBuf;

use crate::adapters::files::{DirStore, FileStore};
use crate::adapters::tencent::cos::CosStore;
use crate::adapters::tencent::transport::CredentialSource;
use crate::core::ports::SnapshotStore;

/// A parsed `ESGFLOW_SNAPSHOT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotLocation {
    /// One file.
    File(PathBuf),
    /// A directory of versions with `latest.json`.
    Dir(PathBuf),
    /// A COS bucket and prefix.
    Cos {
        /// `<bucket>-<appid>`.
        bucket: String,
        /// Key prefix, without leading or trailing `/` (may be empty).
        prefix: String,
        /// Bucket region, from `?region=` (else the function's region).
        region: Option<String>,
    },
}

impl SnapshotLocation {
    /// Parses the forms in the module documentation.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("file://") {
            return non_empty(rest).map(|p| Self::File(p.into()));
        }
        if let Some(rest) = text.strip_prefix("dir://") {
            return non_empty(rest).map(|p| Self::Dir(p.into()));
        }
        if let Some(rest) = text.strip_prefix("cos://") {
            let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
            if bucket.is_empty() || !bucket.chars().all(valid) || !bucket.contains('-') {
                return Err(format!(
                    "{bucket:?} is not a COS bucket name of the form <bucket>-<appid>"
                ));
            }
            let mut region = None;
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("region", value)) if !value.is_empty() => {
                        region = Some(value.to_string())
                    }
                    _ => return Err(format!("unknown COS location parameter {pair:?}")),
                }
            }
            return Ok(Self::Cos {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
                region,
            });
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(format!(
                "unknown snapshot location scheme {scheme:?} (use a path, file://, dir:// or cos://)"
            ));
        }
        non_empty(text).map(|p| Self::File(p.into()))
    }

    /// Opens the store. `region` is the function's region (for COS without `?region=`),
    /// `cos_endpoint` replaces `https://<bucket>.cos.<region>.myqcloud.com` (tests, private
    /// endpoints).
    pub fn open(
        &self,
        region: Option<&str>,
        cos_endpoint: Option<&str>,
        max_bytes: usize,
    ) -> Result<Box<dyn SnapshotStore>, String> {
        Ok(match self {
            Self::File(path) => Box::new(FileStore::new(path).within(max_bytes)),
            Self::Dir(path) => Box::new(DirStore::new(path).within(max_bytes)),
            Self::Cos {
                bucket,
                prefix,
                region: own,
            } => {
                let region = own.as_deref().or(region).ok_or_else(|| {
                    "a cos:// snapshot location needs ?region= or TENCENTCLOUD_REGION".to_string()
                })?;
                let endpoint = cos_endpoint
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("https://{bucket}.cos.{region}.myqcloud.com"));
                Box::new(
                    CosStore::new(&endpoint, bucket, prefix, CredentialSource::environment())?
                        .within(max_bytes),
                )
            }
        })
    }
}

fn non_empty(path: &str) -> Result<&str, String> {
    if path.trim().is_empty() {
        Err("the snapshot location is empty".into())
    } else {
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        assert_eq!(
            SnapshotLocation::parse("/opt/esgflow/snapshot.json"),
            Ok(SnapshotLocation::File("/opt/esgflow/snapshot.json".into()))
        );
        assert_eq!(
            SnapshotLocation::parse("file:///tmp/s.json"),
            Ok(SnapshotLocation::File("/tmp/s.json".into()))
        );
        assert_eq!(
            SnapshotLocation::parse("dir:///var/esgflow"),
            Ok(SnapshotLocation::Dir("/var/esgflow".into()))
        );
        assert_eq!(
            SnapshotLocation::parse("cos://esg-1250000000/esgflow/snapshots/?region=ap-guangzhou"),
            Ok(SnapshotLocation::Cos {
                bucket: "esg-1250000000".into(),
                prefix: "esgflow/snapshots".into(),
                region: Some("ap-guangzhou".into())
            })
        );
        for bad in [
            "",
            "s3://x/y",
            "cos://Bad_Bucket/x",
            "cos://nodash/x",
            "cos://a-1/x?zone=1",
        ] {
            assert!(SnapshotLocation::parse(bad).is_err(), "{bad}");
        }
        let cos = SnapshotLocation::parse("cos://esg-1250000000/p").unwrap();
        assert!(
            cos.open(None, None, usize::MAX).is_err(),
            "a region is needed"
        );
        assert_eq!(
            cos.open(Some("ap-shanghai"), None, usize::MAX)
                .unwrap()
                .describe(),
            "cos://esg-1250000000/p"
        );
    }
}
