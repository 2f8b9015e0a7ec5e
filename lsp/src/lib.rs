//! The `.mca` language server.
pub mod incremental;
pub mod scan;
