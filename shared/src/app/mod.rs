//! The three use cases and their wiring: [`audit`] (a CLS batch in, ESG flow-log records and
//! alerts out, the alerts sent by [`alerts`]), [`lookup`] (the HTTP API and the console page), [`sync`] (the rule snapshot kept
//! fresh, rule changes reported); the [`records_store`] lookup searches; the [`snapshot_cache`] audit and lookup read through; the
//! [`config`] every function reads once at start-up, the snapshot [`stores`] it names, and the
//! typed answers ([`views`]) the API and the CLI share.

pub mod alerts;
pub mod audit;
pub mod config;
pub mod lookup;
pub mod records_store;
pub mod snapshot_cache;
pub mod stores;
pub mod sync;
pub mod views;
