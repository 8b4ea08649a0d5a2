//! The embedded generator's HTTP control, on the real binary: pause, resume, rate,
//! status, and bad requests; `diffmart_sources` agrees with what HTTP reports.
//! (tests/hostile_http.rs: what it refuses without the admin key, or with GET.)
//!
//! Run: `cargo test --release --test generator_control`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::server::DiffmartProcess;

const KEY: &str = "generator-control-key";

/// One HTTP/1.1 request with the admin key; the status code and the JSON body.
fn request(port: u16, method: &str, path: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("HTTP server up");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {KEY}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no body in {response:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad head {head:?}"));
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {path}: body {body:?} is not JSON: {e}"))
    };
    (status, body)
}

fn emitted(port: u16) -> u64 {
    let (status, body) = request(port, "GET", "/generator/status");
    assert_eq!(status, 200, "{body}");
    body["events_emitted"].as_u64().unwrap()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The generator's row of `diffmart_sources`, through psql: `status|messages`.
fn generator_row(pg_port: u16) -> String {
    let output = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &pg_port.to_string(), "-d", "dev", "-U", "root", "-X", "-At"])
        .args(["-c", "SELECT status, messages FROM diffmart_sources WHERE kind = 'generator'"])
        .output()
        .expect("psql runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

#[test]
fn the_generator_pauses_resumes_and_changes_rate_over_http() {
    let server = DiffmartProcess::start(&[
        "--admin-api-key",
        KEY,
        "--generator-rate",
        "2000",
        "--generator-start",
        "2025-06-01 12:00:00",
    ]);
    let (pg, http) = (server.pg_port, server.http_port);
    wait_for("the HTTP API", || TcpStream::connect(("127.0.0.1", http)).is_ok());

    let (status, body) = request(http, "GET", "/generator/status");
    assert_eq!(status, 200);
    assert_eq!((body["running"].as_bool(), body["pace"].as_str()), (Some(true), Some("fixed")), "{body}");
    assert_eq!(body["rate"].as_f64(), Some(2000.0));
    assert!(body["event_time"].as_str().is_some_and(|t| t.starts_with("2025-06-01")) || emitted(http) == 0, "{body}");
    wait_for("events", || emitted(http) > 100);

    // Paused: nothing more is emitted, and diffmart_sources says so.
    let (status, body) = request(http, "POST", "/generator/stop");
    assert_eq!((status, body["running"].as_bool()), (200, Some(false)), "{body}");
    std::thread::sleep(Duration::from_millis(300));
    let paused_at = emitted(http);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(emitted(http), paused_at, "the generator kept emitting while stopped");
    wait_for("the stopped status in diffmart_sources", || generator_row(pg) == format!("stopped|{paused_at}"));

    // Bad rates are refused with a JSON error and change nothing.
    for bad in ["/generator/rate/fast", "/generator/rate/-5", "/generator/rate/0"] {
        let (status, body) = request(http, "POST", bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{bad}: {body}");
    }
    let (_, body) = request(http, "GET", "/generator/rate");
    assert_eq!(body, serde_json::json!({"pace": "fixed", "rate": 2000.0}));

    // A new rate, then resumed: events flow again, with no burst to catch up on the pause.
    let (status, body) = request(http, "POST", "/generator/rate/500");
    assert_eq!((status, body), (200, serde_json::json!({"pace": "fixed", "rate": 500.0})));
    let (status, body) = request(http, "POST", "/generator/start");
    assert_eq!((status, body["running"].as_bool()), (200, Some(true)), "{body}");
    let resumed = Instant::now();
    wait_for("events after resuming", || emitted(http) > paused_at + 50);
    let rate = (emitted(http) - paused_at) as f64 / resumed.elapsed().as_secs_f64();
    assert!(rate < 5_000.0, "resumed at {rate:.0} events/s: the pause was caught up on");
    wait_for("running again in diffmart_sources", || generator_row(pg).starts_with("running|"));

    let (status, body) = request(http, "POST", "/generator/rate/natural");
    assert_eq!((status, body), (200, serde_json::json!({"pace": "natural", "rate": null})));
    let (status, _) = request(http, "GET", "/generator/nothing");
    assert_eq!(status, 404);
}
