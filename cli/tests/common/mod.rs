//! Shared by the CLI tests that run a real `mca serve`: start it on a free loopback port, talk
//! HTTP/1.1 to it with a plain socket.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `mca serve`, killed on drop.
pub struct Served {
    pub child: Child,
    pub addr: String,
    /// Its standard error after the line that announced the address, as it comes.
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Served {
    /// Waits (up to 10 s) until its standard error has a line containing `needle`; returns
    /// that line, or `None` with all it logged.
    pub fn log_line(&self, needle: &str) -> Result<String, String> {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                return Ok(line.to_string());
            }
            if std::time::Instant::now() > until {
                return Err(log);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `mca serve ARGS --listen 127.0.0.1:0` with `env` set (and no inherited MCA_* secrets),
/// and waits until it announces its address.
pub fn serve(args: &[&str], env: &[(&str, &str)]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mca"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .env("NO_COLOR", "1")
        .env_remove("MCA_TOKEN")
        .env_remove("MCA_VAPI_SECRET")
        .env_remove("MCA_VAPI_HMAC_SECRET")
        .env_remove("MCA_RETELL_API_KEY")
        .envs(env.iter().copied())
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let Some(Ok(line)) = lines.next() else {
            panic!("mca serve exited before serving");
        };
        if let Some(rest) = line
            .split(" on http://")
            .nth(1)
            .filter(|_| line.starts_with("serving"))
        {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Ok(mut log) = kept.lock() {
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
    Served { child, addr, log }
}

/// One HTTP/1.1 request with `Connection: close`; returns the status and the JSON part of the
/// body (chunked framing stripped).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap_or_default();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let start = body.find(['{', '[']).unwrap_or(0);
    let end = body.rfind(['}', ']']).map_or(body.len(), |e| e + 1);
    (status, body.get(start..end).unwrap_or_default().to_string())
}
