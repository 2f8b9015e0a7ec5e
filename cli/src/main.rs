//! `mca`: compile, check, test and serve mid-call actions.

mod files;
mod platform;
mod render;
mod serve;
mod writes;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// mimalloc instead of the system allocator: the server's hot path (parsing upstream JSON,
/// building requests and answers) allocates and frees many small blocks from several threads,
/// where glibc's malloc cost about a quarter of the instructions of a cache miss. Built without
/// transparent huge pages, which doubled the idle RSS (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "mca",
    version,
    about = "Compiler and runtime for mid-call actions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile .mca files and print their diagnostics.
    Check {
        /// Files or folders (every .mca file below a folder).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Write the checked IR of every action as one JSON document.
    Build {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Where to write the IR (`-` for stdout).
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Run every `test` block offline: upstream requests are answered by an in-process stub.
    Test {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Only tests whose name, or whose action's name, contains this text.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Execute one action for real and print its response JSON.
    Run {
        /// A .mca file or a folder.
        path: PathBuf,
        /// The action to run.
        action: String,
        /// The inputs, as a JSON object.
        #[arg(long, default_value = "{}")]
        input: String,
        /// Fill `call.id`.
        #[arg(long)]
        call_id: Option<String>,
        /// Fill `call.from`.
        #[arg(long)]
        call_from: Option<String>,
        /// Permit plain http:// and loopback/private upstream addresses.
        #[arg(long)]
        allow_private: bool,
        /// The store of deferred writes and follow-ups (default: $MCA_STORE, or
        /// .mca/store.sqlite).
        #[arg(long)]
        store: Option<PathBuf>,
    },
    /// Rewrite .mca files in the canonical layout (comments kept).
    Fmt {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Change nothing; exit 1 when a file is not in canonical layout.
        #[arg(long)]
        check: bool,
    },
    /// Language server over stdio, for editors.
    Lsp,
    /// Serve every action over HTTP until SIGINT or SIGTERM, then drain.
    Serve {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Also start a built-in demo upstream answering the examples' APIs, so everything works
        /// offline.
        #[arg(long)]
        demo: bool,
        /// Permit plain http:// and loopback/private upstream addresses.
        #[arg(long)]
        allow_private: bool,
        /// Most entries kept in the cache of each cached action.
        #[arg(long, default_value_t = 10_000)]
        cache_capacity: u64,
        /// Most calls run at once; more get a fast 503 (`overloaded`, `Retry-After: 1`) instead
        /// of waiting in a queue. 0: no limit.
        #[arg(long, default_value_t = 1024)]
        max_in_flight: usize,
        /// Threads that serve connections, each keeping its connections and their upstream
        /// requests to itself (default: one per CPU).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
        /// Microseconds a serving thread keeps checking for new events before it sleeps, at
        /// most 1000 (the window adapts to how soon events come; 0: sleep at once). Saves
        /// wake-ups when the upstream answers fast, at the price of some CPU.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=1000))]
        idle_poll_us: u32,
        /// The store of deferred writes and follow-ups (default: $MCA_STORE, or
        /// .mca/store.sqlite).
        #[arg(long)]
        store: Option<PathBuf>,
    },
    /// Print the actions as tool definitions for a voice platform, OpenAI or MCP.
    Schema {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The platform's tool format.
        #[arg(long, value_enum)]
        format: platform::SchemaFormat,
        /// Where the platform reaches `mca serve` (tool URLs of vapi, retell and elevenlabs).
        #[arg(long)]
        base_url: Option<String>,
    },
    /// MCP server over stdio: every action is a tool.
    Mcp {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Answer the examples' APIs from the built-in demo upstream, so everything works offline.
        #[arg(long)]
        demo: bool,
        /// Permit plain http:// and loopback/private upstream addresses.
        #[arg(long)]
        allow_private: bool,
    },
    /// List the deferred writes and follow-ups in the store, newest first, with counts.
    Writes {
        /// The store (default: $MCA_STORE, or .mca/store.sqlite).
        #[arg(long)]
        store: Option<PathBuf>,
        /// Only jobs in this state.
        #[arg(long, value_enum)]
        state: Option<writes::StateArg>,
        /// Most jobs listed.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
}

/// Exit codes of the contract.
pub(crate) const EXIT_ERRORS: u8 = 1;
pub(crate) const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { paths, format } => check(&paths, format, None),
        Command::Build {
            paths,
            output,
            format,
        } => check(&paths, format, Some(output)),
        Command::Test { paths, filter } => {
            with_sources(&paths, |s| serve::test(s, filter.as_deref()))
        }
        Command::Run {
            path,
            action,
            input,
            call_id,
            call_from,
            allow_private,
            store,
        } => with_sources(std::slice::from_ref(&path), |s| {
            serve::run(
                s,
                serve::RunArgs {
                    action,
                    input,
                    allow_private,
                    call_id,
                    call_from,
                    store,
                },
            )
        }),
        Command::Fmt { paths, check } => with_sources(&paths, |s| fmt(s, check)),
        Command::Lsp => match mca_lsp::run_stdio() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_ERRORS)
            }
        },
        Command::Serve {
            paths,
            listen,
            demo,
            allow_private,
            cache_capacity,
            max_in_flight,
            threads,
            idle_poll_us,
            store,
        } => with_sources(&paths, |s| {
            serve::serve(
                s,
                serve::ServeArgs {
                    listen,
                    demo,
                    allow_private,
                    cache_capacity,
                    max_in_flight,
                    threads: threads.map_or_else(
                        || std::thread::available_parallelism().map_or(1, |n| n.get()),
                        usize::from,
                    ),
                    idle_poll: std::time::Duration::from_micros(idle_poll_us.into()),
                    store,
                },
            )
        }),
        Command::Schema {
            paths,
            format,
            base_url,
        } => with_sources(&paths, |s| platform::schema(s, format, base_url.as_deref())),
        Command::Mcp {
            paths,
            demo,
            allow_private,
        } => with_sources(&paths, |s| {
            platform::mcp(
                s,
                platform::McpArgs {
                    demo,
                    allow_private,
                },
            )
        }),
        Command::Writes {
            store,
            state,
            limit,
            format,
        } => writes::writes(writes::WritesArgs {
            store,
            state,
            limit,
            format,
        }),
    }
}

/// `mca fmt`: files with syntax errors are left alone and reported; `--check` lists files that
/// would change.
fn fmt(sources: &[mca_compiler::Source], check: bool) -> ExitCode {
    let mut failed = false;
    let mut would_change = Vec::new();
    for src in sources {
        let Some(formatted) = mca_compiler::format::format(&src.text) else {
            eprintln!(
                "error: `{}` has syntax errors; run `mca check` on it",
                src.name
            );
            failed = true;
            continue;
        };
        if formatted == src.text {
            continue;
        }
        if check {
            would_change.push(src.name.as_str());
        } else if let Err(e) = std::fs::write(&src.name, formatted) {
            eprintln!("error: cannot write `{}`: {e}", src.name);
            failed = true;
        } else {
            eprintln!("formatted {}", src.name);
        }
    }
    for name in &would_change {
        println!("{name}");
    }
    if !would_change.is_empty() {
        eprintln!(
            "{} file{} not in canonical layout (run `mca fmt` without --check)",
            would_change.len(),
            if would_change.len() == 1 {
                " is"
            } else {
                "s are"
            }
        );
    }
    if failed || !would_change.is_empty() {
        ExitCode::from(EXIT_ERRORS)
    } else {
        ExitCode::SUCCESS
    }
}

/// Compiles on every core the machine offers.
pub(crate) fn compile(sources: &[mca_compiler::Source]) -> mca_compiler::Compilation {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    mca_compiler::compile_parallel(sources, threads)
}

fn with_sources(
    paths: &[PathBuf],
    f: impl FnOnce(&[mca_compiler::Source]) -> ExitCode,
) -> ExitCode {
    match files::load(paths) {
        Ok(s) => f(&s),
        Err(files::LoadError(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Compiles for a command that executes actions: diagnostics go to stderr only when there are
/// any, and the IR is returned only when there are no errors.
pub(crate) fn compile_or_report(
    sources: &[mca_compiler::Source],
) -> Option<mca_compiler::ir::Project> {
    let compilation = crate::compile(sources);
    if !compilation.diagnostics.is_empty() {
        render::human(sources, &compilation.diagnostics);
    }
    compilation.ir
}

fn check(paths: &[PathBuf], format: Format, output: Option<PathBuf>) -> ExitCode {
    let sources = match files::load(paths) {
        Ok(s) => s,
        Err(files::LoadError(msg)) => {
            eprintln!("error: {msg}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let compilation = crate::compile(&sources);
    match format {
        Format::Json => {
            let out = render::json(&sources, &compilation.diagnostics);
            println!("{out}");
        }
        Format::Human => render::human(&sources, &compilation.diagnostics),
    }
    let code = match (&compilation.ir, output) {
        (None, _) => ExitCode::from(EXIT_ERRORS),
        (Some(ir), Some(output)) => write_ir(ir, &output),
        (Some(_), None) => ExitCode::SUCCESS,
    };
    // The process ends next: the project's syntax trees and IR go back to the system with it,
    // instead of being freed allocation by allocation first.
    std::mem::forget(compilation);
    std::mem::forget(sources);
    code
}

/// Writes the IR as pretty JSON to `output` (`-`: standard output).
fn write_ir(ir: &mca_compiler::ir::Project, output: &Path) -> ExitCode {
    let text = match serde_json::to_string_pretty(ir) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot serialise the IR: {e}");
            return ExitCode::from(EXIT_ERRORS);
        }
    };
    let written = if output.as_os_str() == "-" {
        std::io::stdout().write_all(format!("{text}\n").as_bytes())
    } else {
        std::fs::write(output, format!("{text}\n"))
    };
    if let Err(e) = written {
        eprintln!("error: cannot write `{}`: {e}", output.display());
        return ExitCode::from(EXIT_USAGE);
    }
    ExitCode::SUCCESS
}
