//! Shipping esgflow: one zip per function ([`package`]), the stack deployment ([`deploy`]) and
//! the release health measurements ([`measure`]).

pub mod apply;
pub mod deploy;
pub mod measure;
pub mod package;
pub mod provision;
