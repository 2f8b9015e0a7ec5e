//! `mca-lsp`: the language server on its own (the same as `mca lsp`).

use std::process::ExitCode;

fn main() -> ExitCode {
    match mca_lsp::run_stdio() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mca-lsp: {e}");
            ExitCode::FAILURE
        }
    }
}
