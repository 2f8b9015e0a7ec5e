//! `file:` URIs to paths and back, and the `.mca` files of a folder. The only IO of the server
//! besides the protocol: the compiler never reads files.

use std::path::{Path, PathBuf};

/// How a document is known: a path on disk, or (for `untitled:` and other schemes) its URI.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DocKey {
    Path(PathBuf),
    Uri(String),
}

/// The path of a `file:` URI, percent-decoded (`None` for other schemes).
pub fn uri_to_path(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    // Skip the authority (empty or `localhost`).
    let path = match rest.find('/') {
        Some(i) => &rest[i..],
        None => return None,
    };
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let decoded = percent_decode(path)?;
    // `/c:/x` on Windows.
    let b = decoded.as_bytes();
    let windows = b.len() >= 3 && b[0] == b'/' && b[1].is_ascii_alphabetic() && b[2] == b':';
    let decoded = if windows && cfg!(windows) {
        decoded[1..].to_string()
    } else {
        decoded
    };
    Some(PathBuf::from(decoded))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The `file:` URI of a path, percent-encoded the way editors write them.
pub fn path_to_uri(path: &Path) -> String {
    let s = path.to_string_lossy().replace('\\', "/");
    let mut out = String::from("file://");
    if !s.starts_with('/') {
        out.push('/');
    }
    for (i, b) in s.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/');
        // Keep the drive letter's colon readable only when it is not the drive (`c%3A` is what
        // VS Code writes).
        if keep {
            out.push(b as char);
        } else {
            let _ = i;
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The key of a URI.
pub fn key_of(uri: &str) -> DocKey {
    match uri_to_path(uri) {
        Some(p) => DocKey::Path(normalize(&p)),
        None => DocKey::Uri(uri.to_string()),
    }
}

/// `a/./b/../c` to `a/c`, without touching the disk.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c.as_os_str()),
        }
    }
    out
}

/// Most files read from one folder.
const MAX_FILES: usize = 10_000;

/// Every `.mca` file below a folder (skipping hidden folders, `target` and `node_modules`),
/// sorted as `mca check FOLDER` sorts them.
pub fn mca_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(dir, &mut out, 0);
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 32 || out.len() >= MAX_FILES {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<(PathBuf, bool)> = entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            (e.path(), is_dir)
        })
        .collect();
    entries.sort();
    for (path, is_dir) in entries {
        if is_dir {
            let skip = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') || n == "target" || n == "node_modules");
            if !skip {
                walk(&path, out, depth + 1);
            }
        } else if path.extension().is_some_and(|x| x == "mca") && out.len() < MAX_FILES {
            out.push(normalize(&path));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_paths_round_trip() {
        let p = PathBuf::from("/home/a b/ü/x#1.mca");
        let uri = path_to_uri(&p);
        assert_eq!(uri, "file:///home/a%20b/%C3%BC/x%231.mca");
        assert_eq!(uri_to_path(&uri), Some(p));
        assert_eq!(
            uri_to_path("file://localhost/tmp/x.mca"),
            Some(PathBuf::from("/tmp/x.mca"))
        );
        assert_eq!(uri_to_path("untitled:Untitled-1"), None);
        assert_eq!(key_of("untitled:1"), DocKey::Uri("untitled:1".into()));
        assert_eq!(uri_to_path("file:///bad%zz"), None);
    }
}
