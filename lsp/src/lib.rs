//! The `.mca` language server: diagnostics while typing, completion, hover, go-to-definition,
//! references, rename, outline, semantic tokens and formatting, over stdio.
//!
//! - [`run_stdio`] serves an editor over stdin/stdout until it says `exit` (what `mca lsp` runs).
//! - [`run`] serves any [`lsp_server::Connection`] (tests use `Connection::memory()`).
//!
//! Only this crate knows LSP types. The compiler gives diagnostics and formatting; the
//! server reads the workspace folder's `.mca` files from disk (open documents' text wins) and
//! compiles them together, incrementally (`incremental`). Editor features read each file with a
//! tolerant scanner (`scan`) that works on half-typed text, and compute on byte offsets (`ide`);
//! `server` converts to and from UTF-16 positions.

pub mod docs;
pub mod ide;
pub mod incremental;
pub mod paths;
pub mod scan;
mod server;

use std::fmt;

pub use server::capabilities;

/// Why the server stopped abnormally (a broken connection, a protocol violation).
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<lsp_server::ProtocolError> for Error {
    fn from(e: lsp_server::ProtocolError) -> Error {
        Error(format!("protocol error: {e}"))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error(format!("i/o error: {e}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error(format!("json error: {e}"))
    }
}

/// Serves one client on a connection until it sends `exit` (or the connection closes).
pub fn run(connection: lsp_server::Connection) -> Result<(), Error> {
    server::serve(connection)
}

/// Serves an editor over stdin and stdout until it sends `exit`. Logs nothing on stdout.
pub fn run_stdio() -> Result<(), Error> {
    let (connection, io_threads) = lsp_server::Connection::stdio();
    let result = run(connection);
    // The reader thread ends after `exit`; it is only joined when the session ended normally
    // (after a protocol error it may still be blocked on stdin).
    if result.is_ok() {
        io_threads.join()?;
    }
    result
}
