//! The HTTP server against clients that misbehave, on the real binary: generator
//! control without the admin key or with GET, oversized and slow request bodies,
//! a WebSocket client that never reads while the generator runs fast, more
//! WebSocket clients than the cap, and the health probes. Each test ends with the
//! server still answering correctly.
//!
//! Run: `cargo test --release --test hostile_http`.

mod support;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use support::server::{DiffmartProcess, admin_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "hostile-test-key";

/// Starts diffmart with the admin key and `args`, and waits until it answers.
async fn start(args: &[&str]) -> DiffmartProcess {
    let mut all = vec!["--admin-api-key", KEY, "--generator-start", "2025-06-01 12:00:00"];
    all.extend_from_slice(args);
    let mut server = DiffmartProcess::start(&all);
    server.wait_ready(Duration::from_secs(120)).await;
    server
}

/// A request with `key` (empty: none sent); the status and the body as JSON
/// (`Null` when empty).
async fn request(port: u16, key: Option<&str>, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, body) = match key {
        Some(key) => admin_request(key, port, method, path, body).await,
        None => raw_request(
            port,
            &format!(
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .await,
    }
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {body:?} is not JSON: {e}"))
    };
    (status, json)
}

/// Sends `bytes` as they are; the status and body of the answer.
async fn raw_request(port: u16, bytes: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(bytes.as_bytes()).await?;
    read_answer(&mut stream).await
}

async fn read_answer(stream: &mut tokio::net::TcpStream) -> std::io::Result<(u16, String)> {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 30 s"))??;
    let answer = String::from_utf8_lossy(&answer);
    let cut = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("a cut answer: {answer:?}"));
    let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(cut)?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(cut)?;
    Ok((status, body.to_string()))
}

async fn generator_status(port: u16) -> Value {
    let (status, body) = request(port, None, "GET", "/generator/status", "").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The server still serves reads and its health probes.
async fn still_answers(server: &DiffmartProcess) {
    let (status, body) = request(server.http_port, None, "GET", "/healthz", "").await;
    assert_eq!((status, &body["status"]), (200, &Value::from("live")), "{body}");
    let (status, body) = request(server.http_port, None, "GET", "/price/PA", "").await;
    assert!(status == 200 || status == 404, "GET /price/PA: {status} {body}");
    let rows = server.connect().await.simple_query("SELECT 1").await.expect("SELECT 1 over pgwire");
    assert!(!rows.is_empty());
}

/// The value of a metric line `name value` on `/metrics`.
async fn metric(port: u16, name: &str) -> f64 {
    let (status, page) = admin_request("", port, "GET", "/metrics", "").await.expect("GET /metrics");
    assert_eq!(status, 200);
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} on /metrics:\n{page}"))
}

async fn wait_for_metric(port: u16, name: &str, done: impl Fn(f64) -> bool, within: Duration) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let value = metric(port, name).await;
        if done(value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{name} is still {value} after {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Resident memory of a process, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc/<pid>/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmRSS in kB");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_control_needs_the_key_and_post() {
    let server = start(&["--generator-rate", "2000"]).await;
    let http = server.http_port;
    let before = generator_status(http).await;
    assert_eq!((&before["running"], &before["rate"]), (&Value::from(true), &Value::from(2000.0)), "{before}");

    // Without the key, or with a wrong one: 401, and nothing changes.
    for key in [None, Some("wrong-key")] {
        for path in ["/generator/stop", "/generator/rate/1e12", "/generator/rate/5", "/generator/start"] {
            let (status, body) = request(http, key, "POST", path, "").await;
            assert_eq!(status, 401, "POST {path} with {key:?}: {body}");
            assert!(body["error"].as_str().is_some_and(|e| e.contains("API key")), "{body}");
        }
    }
    // GET never changes state, key or not: 405.
    for path in ["/generator/rate/1e12", "/generator/rate/5", "/generator/stop", "/generator/start"] {
        for key in [None, Some(KEY)] {
            let (status, body) = request(http, key, "GET", path, "").await;
            assert_eq!(status, 405, "GET {path} with {key:?}: {body}");
        }
    }
    // With the key, bad rates are refused with a clear message.
    for bad in ["1e12", "1000001", "NaN", "inf", "-5", "0", "fast"] {
        let (status, body) = request(http, Some(KEY), "POST", &format!("/generator/rate/{bad}"), "").await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| e.starts_with("rate must be")), "{bad}: {body}");
    }
    let after = generator_status(http).await;
    assert_eq!((&after["running"], &after["rate"]), (&Value::from(true), &Value::from(2000.0)), "{after}");

    // With the key and POST, it changes.
    let (status, body) = request(http, Some(KEY), "POST", "/generator/rate/500", "").await;
    assert_eq!((status, &body["rate"]), (200, &Value::from(500.0)), "{body}");
    let (status, body) = request(http, Some(KEY), "POST", "/generator/stop", "").await;
    assert_eq!((status, &body["running"]), (200, &Value::from(false)), "{body}");
    assert_eq!(generator_status(http).await["running"], Value::from(false));
    still_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_slow_bodies_are_refused() {
    let server =
        start(&["--generator-rate", "500", "--http-max-body-bytes", "1000", "--http-request-timeout", "2s"]).await;
    let http = server.http_port;
    let big = format!(r#"{{"product_id": "PA", "override_price": 10, "reason": "{}"}}"#, "x".repeat(5000));
    // Routes that read the body and routes that do not: 413 before anything runs.
    for (method, path) in
        [("POST", "/override"), ("POST", "/generator/stop"), ("GET", "/healthz"), ("POST", "/nowhere")]
    {
        let (status, body) = request(http, Some(KEY), method, path, &big).await;
        assert_eq!(status, 413, "{method} {path}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("over the limit of 1000 bytes")), "{body}");
    }
    assert_eq!(generator_status(http).await["running"], Value::from(true), "a refused stop stopped the generator");

    // A body with no length, cut at the limit: 413 as well.
    let chunk = "x".repeat(3000);
    let chunked = format!(
        "POST /override HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-API-Key: {KEY}\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let (status, body) = raw_request(http, &chunked).await.expect("an answer to a chunked body");
    assert_eq!(status, 413, "{body}");

    // A body that never finishes arriving: 408 after the request timeout.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", http)).await.unwrap();
    let head = format!(
        "POST /override HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-API-Key: {KEY}\r\n\
         Content-Length: 500\r\n\r\n{{\"product_id\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let sent = Instant::now();
    let (status, body) = read_answer(&mut stream).await.expect("an answer to a slow body");
    assert_eq!(status, 408, "{body}");
    assert!(sent.elapsed() < Duration::from_secs(20), "answered after {:?}", sent.elapsed());

    // Within the limit, the same route works.
    let (status, body) = request(http, Some(KEY), "POST", "/generator/stop", "").await;
    assert_eq!(status, 200, "{body}");
    still_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_that_never_reads_is_dropped_and_memory_stays_flat() {
    // A long idle timeout: only the change queue's bound can drop the client in time.
    let server =
        start(&["--generator-rate", "50000", "--ws-max-pending-changes", "20000", "--ws-idle-timeout", "10m"]).await;
    let http = server.http_port;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = rss_bytes(server.pid());

    // A client with a small receive buffer that never reads what it is sent.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(([127, 0, 0, 1], http).into()).await.unwrap();
    let (mut silent, _) =
        tokio_tungstenite::client_async(format!("ws://127.0.0.1:{http}/ws/prices"), stream).await.expect("upgrade");
    // No wait for the client to show in diffmart_websocket_clients: at this rate it may
    // be dropped before a poll of /metrics would see it.
    wait_for_metric(
        http,
        "diffmart_websocket_closed_total{reason=\"too_slow\"}",
        |n| n >= 1.0,
        Duration::from_secs(90),
    )
    .await;
    wait_for_metric(http, "diffmart_websocket_clients", |n| n == 0.0, Duration::from_secs(10)).await;
    let after = rss_bytes(server.pid());
    eprintln!("RSS {} MiB before the silent client, {} MiB after it was dropped", before >> 20, after >> 20);
    assert!(
        after < before + (300 << 20),
        "RSS grew from {} MiB to {} MiB while a client did not read",
        before >> 20,
        after >> 20
    );

    // The client finds the connection closed once it reads what was buffered.
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match silent.next().await {
                Some(Ok(Message::Close(frame))) => return format!("closed: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return format!("error: {e}"),
                None => return "ended".to_string(),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the silent client's connection is still open");

    // Another client is served.
    let (mut reader, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{http}/ws/prices"))
        .await
        .expect("a new client connects");
    reader.send(Message::Ping("still there?".into())).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), reader.next()).await.expect("an answer in time");
    assert!(matches!(answer, Some(Ok(Message::Text(_) | Message::Pong(_)))), "{answer:?}");
    still_answers(&server).await;
}

/// Sends a ping and waits for an answer (a pong, or a price update that came first).
async fn is_served<S>(socket: &mut tokio_tungstenite::WebSocketStream<S>) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if socket.send(Message::Ping("ping".into())).await.is_err() {
        return false;
    }
    let answer = tokio::time::timeout(Duration::from_secs(10), socket.next()).await;
    matches!(answer, Ok(Some(Ok(Message::Text(_) | Message::Pong(_)))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_past_the_cap_are_refused_while_others_are_served() {
    let server = start(&["--generator-rate", "500", "--ws-max-clients", "2", "--ws-max-message-bytes", "1024"]).await;
    let http = server.http_port;
    let url = format!("ws://127.0.0.1:{http}/ws/prices");
    let (mut first, _) = tokio_tungstenite::connect_async(&url).await.expect("the first client connects");
    let (mut second, _) = tokio_tungstenite::connect_async(&url).await.expect("the second client connects");
    for _ in 0..3 {
        match tokio_tungstenite::connect_async(&url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(answer)) => {
                assert_eq!(answer.status(), 503);
                let body = String::from_utf8_lossy(answer.body().as_deref().unwrap_or_default()).into_owned();
                assert!(body.contains("too many WebSocket clients"), "{body}");
            }
            other => panic!("a client past the cap: {other:?}"),
        }
    }
    assert_eq!(metric(http, "diffmart_websocket_refused_total").await, 3.0);
    assert!(is_served(&mut first).await, "the first client is no longer served");
    assert!(is_served(&mut second).await, "the second client is no longer served");

    // A message over the size limit closes its sender's stream, and frees its place.
    second.send(Message::Text("x".repeat(4096).into())).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match second.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an oversized message did not close the stream");
    wait_for_metric(http, "diffmart_websocket_clients", |n| n == 1.0, Duration::from_secs(10)).await;
    let (mut third, _) = tokio_tungstenite::connect_async(&url).await.expect("a place is free again");
    assert!(is_served(&mut third).await);
    assert!(is_served(&mut first).await);
    still_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let server = start(&["--generator-rate", "2000"]).await;
    let http = server.http_port;
    let (status, body) = request(http, None, "GET", "/healthz", "").await;
    assert_eq!((status, body), (200, serde_json::json!({"status": "live"})));
    // Ready: the views show every input accepted before the request.
    for _ in 0..5 {
        let (status, body) = request(http, None, "GET", "/readyz", "").await;
        assert_eq!((status, &body["ready"]), (200, &Value::from(true)), "{body}");
        let (visible, accepted) = (body["visible_upper"].as_u64().unwrap(), body["accepted_upper"].as_u64().unwrap());
        assert!(accepted >= 1 && visible >= accepted, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    still_answers(&server).await;
}
