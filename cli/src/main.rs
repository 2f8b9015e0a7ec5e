//! `mca`: compile, check, test and serve mid-call actions.

mod files;
mod render;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

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
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
}

/// Exit codes of the contract.
const EXIT_ERRORS: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { paths, format } => check(&paths, format, None),
        Command::Build {
            paths,
            output,
            format,
        } => check(&paths, format, Some(output)),
    }
}

fn check(paths: &[PathBuf], format: Format, output: Option<PathBuf>) -> ExitCode {
    let sources = match files::load(paths) {
        Ok(s) => s,
        Err(files::LoadError(msg)) => {
            eprintln!("error: {msg}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let compilation = mca_compiler::compile(&sources);
    match format {
        Format::Json => {
            let out = render::json(&sources, &compilation.diagnostics);
            println!("{out}");
        }
        Format::Human => render::human(&sources, &compilation.diagnostics),
    }
    let Some(ir) = compilation.ir else {
        return ExitCode::from(EXIT_ERRORS);
    };
    if let Some(output) = output {
        let text = match serde_json::to_string_pretty(&ir) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot serialise the IR: {e}");
                return ExitCode::from(EXIT_ERRORS);
            }
        };
        let written = if output.as_os_str() == "-" {
            std::io::stdout().write_all(format!("{text}\n").as_bytes())
        } else {
            std::fs::write(&output, format!("{text}\n"))
        };
        if let Err(e) = written {
            eprintln!("error: cannot write `{}`: {e}", output.display());
            return ExitCode::from(EXIT_USAGE);
        }
    }
    ExitCode::SUCCESS
}
