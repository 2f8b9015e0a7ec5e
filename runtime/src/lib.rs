//! The `mca` runtime: executes compiled actions ([`mca_compiler::ir::Project`]) against their
//! upstream APIs and serves them over HTTP.
//!
//! The runtime reads nothing but the IR. [`Runtime::new`] prepares every action once (JSONPaths
//! parsed, `env`/`secret` values read, headers and origins checked) and refuses to start while
//! anything is missing. [`Runtime::execute`] is the single execution path used by `mca serve`,
//! `mca run` and `mca test`: validate inputs, answer from the cache or call the upstream within
//! the action's deadline, map the response, and fall back when anything goes wrong. [`serve()`]
//! puts that behind the HTTP surface of the contract.
//!
//! Module map:
//! - [`config`]: [`Config`], including upstream routes (how `--demo` and `mca test` point
//!   upstream requests at a loopback server);
//! - [`response`]: [`ActionResponse`], what an execution answers;
//! - [`server`]: the hyper server ([`serve()`], [`Server`]);
//! - [`demo`]: the built-in demo upstream for the canonical examples;
//! - [`stub`]: a scriptable loopback upstream with fault injection, for tests and `mca test`;
//! - [`testing`]: runs `test` blocks against the stub (the engine of `mca test`);
//! - [`block_on`] and [`shutdown_signal`]: so callers need not know the async runtime;
//! - internal: input validation, template rendering, the outbound client with its SSRF guard,
//!   OAuth2 token cache, response mapping, the cache and the metrics.

pub mod config;
pub mod demo;
pub mod response;
pub mod schema;
pub mod server;
pub mod stub;
pub mod testing;

mod cache;
mod execute;
mod input;
mod mapping;
mod metrics;
mod oauth;
mod outbound;
mod prepare;
mod redact;
mod render;

pub use config::Config;
pub use execute::Runtime;
pub use prepare::{StartupError, StartupProblem};
pub use response::{ActionResponse, Answer, CallContext, Detail, ErrorBody, Status};
pub use server::{serve, ServeError, Server};

/// Runs a future to completion on a new multi-threaded async runtime (for the CLI, which does
/// not depend on the async runtime itself).
pub fn block_on<F: std::future::Future>(future: F) -> std::io::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(future))
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM: the `shutdown` future for [`serve()`].
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("interrupted; shutting down"),
        () = term => tracing::info!("terminated; shutting down"),
    }
}
