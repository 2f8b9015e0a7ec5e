//! A minimal hand-written webhook doing `examples/lookup_customer.mca`'s job, the anchor of the
//! load benchmark: hyper server, one pooled reqwest client, serde_json.
//!
//! `POST /actions/lookup_customer` with `{"phone": "+4930123456"}` calls
//! `GET $CRM_BASE_URL/v1/customers?phone=...` with `Authorization: Bearer $CRM_TOKEN` (2 s
//! timeout), maps the first customer and answers the same JSON shape as `mca serve`, or the
//! fallback when the upstream fails. No cache.
//!
//! Usage: `mca-bench-baseline [LISTEN_ADDR]` (default 127.0.0.1:8091).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

struct App {
    client: reqwest::Client,
    customers_url: String,
    auth: String,
}

#[derive(Deserialize)]
struct Input {
    phone: String,
}

#[derive(Deserialize)]
struct CrmResponse {
    #[serde(default)]
    data: Vec<Customer>,
}

#[derive(Deserialize)]
struct Customer {
    id: Option<String>,
    name: Option<String>,
    company: Option<Company>,
    #[serde(default)]
    tickets: Vec<Ticket>,
}

#[derive(Deserialize)]
struct Company {
    name: Option<String>,
}

#[derive(Deserialize)]
struct Ticket {
    status: Option<String>,
}

#[derive(Serialize, Default)]
struct Output {
    found: bool,
    customer_id: Option<String>,
    name: Option<String>,
    company: Option<String>,
    open_tickets: u64,
}

#[derive(Serialize)]
struct Answer {
    action: &'static str,
    status: &'static str,
    output: Output,
    say: Option<String>,
    cached: bool,
    duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

fn is_e164(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or("");
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    reply(status, body.to_string().into_bytes())
}

async fn lookup(app: &App, phone: &str) -> Result<Output, &'static str> {
    let url = format!(
        "{}?phone={}",
        app.customers_url,
        utf8_percent_encode(phone, NON_ALPHANUMERIC)
    );
    let response = app
        .client
        .get(url)
        .header(reqwest::header::AUTHORIZATION, &app.auth)
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(|_| "connect")?;
    if !response.status().is_success() {
        return Err("upstream_status");
    }
    let body = response.bytes().await.map_err(|_| "connect")?;
    let crm: CrmResponse = serde_json::from_slice(&body).map_err(|_| "invalid_response")?;
    Ok(match crm.data.into_iter().next() {
        None => Output::default(),
        Some(c) => Output {
            found: true,
            customer_id: c.id,
            name: c.name,
            company: c.company.and_then(|c| c.name),
            open_tickets: c
                .tickets
                .iter()
                .filter(|t| t.status.as_deref() == Some("open"))
                .count() as u64,
        },
    })
}

async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let start = Instant::now();
    if req.method() != Method::POST || req.uri().path() != "/actions/lookup_customer" {
        return error(StatusCode::NOT_FOUND, "not_found", "no such route");
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::BAD_REQUEST, "invalid_body", "unreadable body"),
    };
    let input: Input = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(_) => return error(StatusCode::BAD_REQUEST, "invalid_body", "not JSON"),
    };
    if !is_e164(&input.phone) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "phone is not E.164",
        );
    }
    let answer = match lookup(&app, &input.phone).await {
        Ok(output) => {
            let say = match (&output.name, &output.company) {
                (Some(n), Some(c)) => Some(format!("Found {n} from {c}.")),
                _ => None,
            };
            Answer {
                action: "lookup_customer",
                status: "ok",
                output,
                say,
                cached: false,
                duration_ms: start.elapsed().as_millis() as u64,
                reason: None,
            }
        }
        Err(reason) => Answer {
            action: "lookup_customer",
            status: "fallback",
            output: Output::default(),
            say: Some("I can't reach our customer records right now.".into()),
            cached: false,
            duration_ms: start.elapsed().as_millis() as u64,
            reason: Some(reason),
        },
    };
    reply(
        StatusCode::OK,
        serde_json::to_vec(&answer).unwrap_or_default(),
    )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:8091")
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let base = std::env::var("CRM_BASE_URL").unwrap_or_default();
    let token = std::env::var("CRM_TOKEN").unwrap_or_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(std::io::Error::other)?;
    let app = Arc::new(App {
        client,
        customers_url: format!("{}/v1/customers", base.trim_end_matches('/')),
        auth: format!("Bearer {token}"),
    });
    let listener = TcpListener::bind(listen).await?;
    eprintln!("baseline listening on http://{listen}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(app, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
