//! The domain: flow logs, the rule snapshot and its resolution, the evaluation engine, records,
//! classification of a batch, alert policy, snapshot diff, and the ports the adapters implement.
//!
//! Nothing here does I/O or knows a platform: no tokio, reqwest, hyper or redis item, no SCF or
//! HTTP type. Everything takes and returns plain data, so it is tested without a network.

/// Declares a closed set of names: an enum whose variants' names are written once, in strum's
/// `serialize_all` (or `serialize`) attribute, and read from there by `as_str`, `Display` and,
/// through `#[serde(into = "&'static str")]` or a matching `rename_all`, by serde.
macro_rules! names {
    (
        $(#[$attr:meta])*
        $vis:vis enum $name:ident {
            $($(#[$variant_attr:meta])* $variant:ident,)*
        }
    ) => {
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            strum::IntoStaticStr,
            strum::Display,
            strum::VariantArray,
        )]
        $(#[$attr])*
        $vis enum $name {
            $($(#[$variant_attr])* $variant,)*
        }

        impl $name {
            /// The name, as records, reports and answers write it.
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    };
}

pub mod alert;
pub mod classify;
pub mod engine;
pub mod flowlog;
pub mod monitoring;
pub mod ports;
pub mod records;
pub mod search;
pub mod snapshot;
pub(crate) mod text;
pub mod whatif;
