//! The records store lookup searches, as configured: the port ([`RecordsStore`] in
//! `core::ports`) opened on the hits topic in CLS ([`ClsRecords`]) or, on one machine, on the
//! database `esgflow replay` fills (`crate::adapters::sqlite`, feature `local-store`; the shipped
//! lookup is built without it).

use std::path::PathBuf;
use std::sync::Arc;

use crate::adapters::tencent::cls_query::ClsRecords;
use crate::core::ports::RecordsStore;

/// Where the records are, as configured.
#[derive(Debug, Clone)]
pub enum RecordsSource {
    /// The hits topic in CLS.
    Cls(ClsRecords),
    /// An embedded database file (`ESGFLOW_RECORDS_DB`).
    Local(PathBuf),
}

impl RecordsSource {
    /// Opens the store: a local database must exist and hold records.
    pub fn open(self) -> Result<Arc<dyn RecordsStore>, String> {
        match self {
            RecordsSource::Cls(cls) => Ok(Arc::new(cls)),
            #[cfg(feature = "local-store")]
            RecordsSource::Local(path) => crate::adapters::sqlite::LocalRecords::open(&path)
                .map(|local| Arc::new(local) as Arc<dyn RecordsStore>)
                .map_err(|e| e.to_string()),
            #[cfg(not(feature = "local-store"))]
            RecordsSource::Local(path) => Err(format!(
                "{}: this build reads records from CLS only; the local store is in the toolkit's \
                 build (`make build`, `esgflow serve --store`)",
                path.display()
            )),
        }
    }
}
