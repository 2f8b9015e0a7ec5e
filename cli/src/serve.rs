//! `mca serve`, `mca run` and `mca test`: the commands that execute actions (through the
//! runtime crate; the CLI itself knows no async runtime).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use mca_compiler::ir;
use mca_compiler::Source;
use mca_runtime::{ActionResponse, CallContext, Config, Runtime, StartupError};

use crate::{compile_or_report, EXIT_ERRORS, EXIT_USAGE};

/// Logs go to stderr; `MCA_LOG` sets the level or filter (`debug`, `mca_runtime=trace`, ...).
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MCA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .with_target(false)
        .try_init();
}

fn base_config(allow_private: bool) -> Config {
    Config {
        allow_private,
        token: std::env::var("MCA_TOKEN").ok().filter(|t| !t.is_empty()),
        inbound: crate::platform::inbound_from_env(),
        ..Config::default()
    }
}

fn startup_failed(e: &StartupError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_ERRORS)
}

pub struct ServeArgs {
    pub listen: SocketAddr,
    pub demo: bool,
    pub allow_private: bool,
    pub cache_capacity: u64,
    pub max_in_flight: usize,
    pub threads: usize,
    pub idle_poll: std::time::Duration,
    pub store: Option<std::path::PathBuf>,
}

pub fn serve(sources: &[Source], args: ServeArgs) -> ExitCode {
    let Some(project) = compile_or_report(sources) else {
        return ExitCode::from(EXIT_ERRORS);
    };
    init_logging("info");
    let result = mca_runtime::block_on_current_thread(async move {
        let mut config = base_config(args.allow_private);
        config.cache_capacity = args.cache_capacity;
        config.max_in_flight = args.max_in_flight;
        config.worker_threads = args.threads;
        config.idle_poll = args.idle_poll;
        config.store = args.store;
        let _demo = if args.demo {
            let (addr, handle) = match mca_runtime::demo::start(
                "127.0.0.1:0".parse().unwrap_or(args.listen),
            )
            .await
            {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("error: cannot start the demo upstream: {e}");
                    return ExitCode::from(EXIT_ERRORS);
                }
            };
            mca_runtime::demo::configure_project(&mut config, addr, &project);
            eprintln!("demo upstream answering the examples' APIs on http://{addr}");
            Some(handle)
        } else {
            None
        };
        let runtime = match Runtime::new(project, config) {
            Ok(r) => Arc::new(r),
            Err(e) => return startup_failed(&e),
        };
        let server = match mca_runtime::Server::bind(args.listen).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return ExitCode::from(EXIT_USAGE);
            }
        };
        // Signals are handled from here on: a SIGTERM right after start-up drains too.
        let shutdown = mca_runtime::shutdown_signal();
        let names: Vec<&str> = runtime.actions().map(|a| a.name.as_str()).collect();
        eprintln!(
            "serving {} action{} on http://{} ({})",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            server.local_addr(),
            names.join(", ")
        );
        match server.run(runtime, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_ERRORS)
            }
        }
    });
    result.unwrap_or_else(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::from(EXIT_ERRORS)
    })
}

pub struct RunArgs {
    pub action: String,
    pub input: String,
    pub allow_private: bool,
    pub call_id: Option<String>,
    pub call_from: Option<String>,
    pub store: Option<std::path::PathBuf>,
}

pub fn run(sources: &[Source], args: RunArgs) -> ExitCode {
    let inputs: serde_json::Value = match serde_json::from_str(&args.input) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: --input is not JSON: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let Some(project) = compile_or_report(sources) else {
        return ExitCode::from(EXIT_ERRORS);
    };
    if project.action(&args.action).is_none() {
        let names: Vec<&str> = project.actions.iter().map(|a| a.name.as_str()).collect();
        eprintln!(
            "error: no action `{}` (actions: {})",
            args.action,
            names.join(", ")
        );
        return ExitCode::from(EXIT_USAGE);
    }
    // Only the action that runs needs its environment.
    let project = ir::Project {
        ir_version: project.ir_version,
        actions: project
            .actions
            .into_iter()
            .filter(|a| a.name == args.action)
            .collect(),
    };
    init_logging("warn");
    let result = mca_runtime::block_on(async move {
        let config = Config {
            store: args.store,
            ..base_config(args.allow_private)
        };
        let runtime = match Runtime::new(project, config) {
            Ok(r) => r,
            Err(e) => return startup_failed(&e),
        };
        let call = CallContext::new(args.call_id, args.call_from);
        let response = runtime.execute(&args.action, inputs, call).await;
        println!("{}", response.to_json());
        if let Some(outbox) = runtime.outbox() {
            if let Ok(counts) = outbox.counts() {
                if counts.pending > 0 {
                    eprintln!(
                        "note: {} deferred write(s) pending in {}; `mca serve` with this store delivers them (`mca writes` lists them)",
                        counts.pending,
                        outbox.path().display()
                    );
                }
            }
        }
        match response {
            ActionResponse::Answer(_) => ExitCode::SUCCESS,
            ActionResponse::Error(_) => ExitCode::from(EXIT_ERRORS),
        }
    });
    result.unwrap_or_else(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::from(EXIT_ERRORS)
    })
}

pub fn test(sources: &[Source], filter: Option<&str>) -> ExitCode {
    let Some(mut project) = compile_or_report(sources) else {
        return ExitCode::from(EXIT_ERRORS);
    };
    if let Some(f) = filter {
        for a in &mut project.actions {
            let action_matches = a.name.contains(f);
            a.tests.retain(|t| action_matches || t.name.contains(f));
        }
    }
    let reports = match mca_runtime::testing::run_all_blocking(&project) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERRORS);
        }
    };
    let mut passed = 0;
    let mut failed = 0;
    for r in &reports {
        if r.passed() {
            passed += 1;
            println!("ok     {} › {}", r.action, r.test);
            continue;
        }
        failed += 1;
        println!("FAILED {} › {}", r.action, r.test);
        let file = project.action(&r.action).map_or("", |a| a.file.as_str());
        let source = sources.iter().find(|s| s.name == file);
        for f in &r.failures {
            println!(
                "  {file}:{}:{}: {}",
                f.location.line, f.location.column, f.message
            );
            if let Some(line) = source.and_then(|s| {
                s.text
                    .lines()
                    .nth(f.location.line.saturating_sub(1) as usize)
            }) {
                println!("   {:>4} | {}", f.location.line, line.trim_end());
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ERRORS)
    }
}
