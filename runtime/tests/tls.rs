//! Upstream HTTPS: certificates are validated. The fixtures are a test-only CA and a server
//! certificate for `localhost` / `127.0.0.1` signed by it (valid until 2126); their keys protect
//! nothing.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mca_runtime::Config;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

const CA: &[u8] = include_bytes!("fixtures/ca.pem");
const CERT: &[u8] = include_bytes!("fixtures/server.pem");
const KEY: &[u8] = include_bytes!("fixtures/server.key");

/// An HTTPS upstream on loopback answering `{"value": "tls"}`; counts HTTP requests (only
/// requests that got through a TLS handshake reach it).
async fn https_upstream(ip: &str) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = vec![CertificateDer::from_pem_slice(CERT).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |_req| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                            json!({"value": "tls"}).to_string(),
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, requests)
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstream_with_an_untrusted_certificate_is_refused() {
    let (addr, requests) = https_upstream("127.0.0.1").await;
    let server = start(
        project(vec![action("a")]),
        config(&format!("https://localhost:{}", addr.port())),
    )
    .await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "fallback");
    assert_eq!(body["reason"], "connect");
    let message = server_message(&server, "a").await;
    assert!(message.contains("certificate"), "{message}");
    assert_eq!(requests.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstream_signed_by_an_extra_root_is_trusted() {
    let (addr, requests) = https_upstream("127.0.0.1").await;
    let server = start(
        project(vec![action("a")]),
        Config {
            extra_root_certs: Some(CA.to_vec()),
            ..config(&format!("https://localhost:{}", addr.port()))
        },
    )
    .await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["output"]["value"], "tls");
    assert_eq!(requests.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn https_certificate_must_match_the_host_name() {
    // The certificate names localhost and 127.0.0.1, not 127.0.0.2 (which is loopback too).
    let (addr, requests) = https_upstream("127.0.0.2").await;
    let server = start(
        project(vec![action("a")]),
        Config {
            extra_root_certs: Some(CA.to_vec()),
            ..config(&format!("https://127.0.0.2:{}", addr.port()))
        },
    )
    .await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["reason"], "connect");
    let message = server_message(&server, "a").await;
    assert!(message.contains("certificate"), "{message}");
    assert_eq!(requests.load(Ordering::SeqCst), 0);
}

/// The diagnostic message of a fresh execution (not part of the HTTP answer).
async fn server_message(server: &Running, action: &str) -> String {
    let r = server
        .runtime
        .execute(action, json!({"id": "1"}), Default::default())
        .await;
    r.answer()
        .and_then(|a| a.detail.message.clone())
        .unwrap_or_default()
}

#[test]
fn extra_root_certificates_that_do_not_parse_stop_start_up() {
    let err = mca_runtime::Runtime::new(
        project(vec![action("a")]),
        Config {
            extra_root_certs: Some(b"-----BEGIN CERTIFICATE-----\nnot base64\n".to_vec()),
            ..config("https://x.example")
        },
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("root certificates"), "{err}");
}
