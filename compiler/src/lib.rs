//! The `.mca` compiler: pure functions from source text to an AST, diagnostics and the checked IR.
//!
//! No IO, no async, no network. User mistakes become [`Diagnostic`]s, never panics or `Err`s.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod formats;
pub mod ir;
