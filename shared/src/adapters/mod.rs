//! Adapters: the implementations of the ports (`crate::core::ports`, `crate::core::alert`) and the
//! clients of the outside world.
//!
//! - [`tencent`]: Tencent Cloud — signing, the API 3.0 client, the CLS sink, the COS snapshot
//!   store, the cfw/vpc rule source, `SearchLog`;
//! - [`chat`]: WeCom, DingTalk and Feishu robots and signed webhooks;
//! - [`redis`]: alert cooldown state shared between instances;
//! - [`files`]: the local file system and stdout (snapshot files and directories, JSON lines);
//! - `sqlite` (feature `local-store`): the embedded records store a local lookup searches;
//! - [`retry`]: the one retry driver they all use; `bounded`: every answer read within a limit.
//!
//! Adapters use the domain (`crate::core`) and never the use cases (`crate::app`).

pub(crate) mod bounded;
pub mod chat;
pub mod files;
pub mod redis;
pub mod retry;
#[cfg(feature = "local-store")]
pub mod sqlite;
pub mod tencent;
