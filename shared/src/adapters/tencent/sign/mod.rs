//! The two request signers Tencent Cloud uses: TC3-HMAC-SHA256 for API 3.0 calls ([`tc3`]) and
//! COS's `q-sign` ([`qsign`]). Both are checked against the official SDKs' signers.

pub mod qsign;
pub mod tc3;
