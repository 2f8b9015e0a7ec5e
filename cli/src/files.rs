//! Finding and reading `.mca` sources named on the command line.

use std::path::{Path, PathBuf};

use mca_compiler::Source;

/// A path that could not be used, said in words for the user.
#[derive(Debug)]
pub struct LoadError(pub String);

/// Every `.mca` file named or found below the given paths (folders recursively, sorted), read.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Source>, LoadError> {
    let mut files = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p)
            .map_err(|e| LoadError(format!("cannot read `{}`: {}", p.display(), io_words(&e))))?;
        if meta.is_dir() {
            let before = files.len();
            collect(p, &mut files)?;
            if files.len() == before {
                return Err(LoadError(format!("no .mca files in `{}`", p.display())));
            }
        } else {
            files.push(p.clone());
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.clone()));
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).map_err(|e| {
                LoadError(format!("cannot read `{}`: {}", f.display(), io_words(&e)))
            })?;
            Ok(Source::new(display(&f), text))
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| LoadError(format!("cannot read `{}`: {}", dir.display(), io_words(&e))))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for e in entries {
        if e.is_dir() {
            let hidden = e
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') || n == "target");
            if !hidden {
                collect(&e, out)?;
            }
        } else if e.extension().is_some_and(|x| x == "mca") {
            out.push(e);
        }
    }
    Ok(())
}

fn display(p: &Path) -> String {
    let s = p.display().to_string();
    s.strip_prefix("./").map(str::to_string).unwrap_or(s)
}

fn io_words(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or folder".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::InvalidData => "not UTF-8 text".into(),
        _ => e.to_string(),
    }
}
