//! `mca serve` reads the platform credentials from the environment: a real process, real
//! HTTP, Retell and Vapi requests signed, unsigned and tampered.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mca_runtime::platforms::auth::sign_retell;
use serde_json::{json, Value};

struct Served {
    child: Child,
    addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(env: &[(&str, &str)]) -> Served {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mca"));
    c.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .env("NO_COLOR", "1")
        .env_remove("MCA_TOKEN")
        .env_remove("MCA_VAPI_SECRET")
        .env_remove("MCA_VAPI_HMAC_SECRET")
        .env_remove("MCA_RETELL_API_KEY")
        .envs(env.iter().copied())
        .args(["serve", "examples/order_status.mca", "--demo"])
        .args(["--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = c.spawn().unwrap_or_else(|e| panic!("{e}"));
    let stderr = child.stderr.take().expect("stderr");
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
    std::thread::spawn(move || for _ in lines {});
    Served { child, addr }
}

fn post(addr: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap_or_default();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
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
    let json =
        serde_json::from_str(body.get(start..end).unwrap_or_default()).unwrap_or(Value::Null);
    (status, json)
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis()
}

#[test]
fn retell_signatures_are_checked_with_the_key_from_the_environment() {
    let s = serve(&[("MCA_RETELL_API_KEY", "key_from_env")]);
    let body = json!({
        "name": "order_status",
        "call": {"call_id": "call_1", "from_number": "+14155550100"},
        "args": {"order_number": "100234"}
    })
    .to_string();
    let (status, _) = post(&s.addr, "/retell/order_status", &[], &body);
    assert_eq!(status, 401, "unsigned");
    let sig = sign_retell("key_from_env", body.as_bytes(), now_ms());
    let tampered = body.replace("100234", "100235");
    let (status, _) = post(
        &s.addr,
        "/retell/order_status",
        &[("X-Retell-Signature", &sig)],
        &tampered,
    );
    assert_eq!(status, 401, "tampered");
    let (status, answer) = post(
        &s.addr,
        "/retell/order_status",
        &[("X-Retell-Signature", &sig)],
        &body,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], json!("Order 100234 is shipped."));
}

#[test]
fn the_vapi_secret_comes_from_the_environment() {
    let s = serve(&[("MCA_VAPI_SECRET", "vapi-env-secret")]);
    let body = json!({"message": {
        "type": "tool-calls",
        "call": {"id": "call-9"},
        "toolCallList": [{"id": "t1", "name": "order_status", "arguments": "{\"order_number\":\"100234\"}"}]
    }})
    .to_string();
    assert_eq!(post(&s.addr, "/vapi", &[], &body).0, 401);
    let (status, answer) = post(
        &s.addr,
        "/vapi",
        &[("X-Vapi-Secret", "vapi-env-secret")],
        &body,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"results": [{"toolCallId": "t1", "name": "order_status", "result": "Order 100234 is shipped."}]})
    );
}
