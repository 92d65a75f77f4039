//! Trigger payloads: what SCF hands a function, as serde types. Shapes and caveats are in
//! <https://intl.cloud.tencent.com/document/product/583/31439>. This module decodes; it does not judge flows.

pub mod apigw;
pub mod cls;
mod inflate;
pub mod scan;
mod timer;

pub use apigw::{ApiGatewayRequest, ApiGatewayResponse, QueryValue};
pub use cls::{ClsRecord, ClsTriggerEvent, DecodeError, DecodeLimits, DecodedBatch, RecordError};
pub use scan::{scan, Escaped, ScannedBatch, ScannedRecord};
pub use timer::TimerEvent;
