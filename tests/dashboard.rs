//! The dashboard (`src/http/dashboard/`) against the real binary: in a real headless
//! Chromium driven over the DevTools Protocol (`support/cdp.rs`), with the generator
//! on, every tab shows rows, a value on screen changes as events arrive, a threshold
//! change moves members in and out of the offers, "Mark as redeemed" works once and
//! is refused the second time, and an override shows on the pricing tab, with no
//! console error. Screenshots of every tab are saved in target/dashboard-screenshots/.
//! Without a browser: the live endpoint's stream and bounds, and who may use the
//! dashboard when a root password is set.
//!
//! Run: `cargo test --release --features failpoints --test dashboard` (scripts/test
//! installs Debian's `chromium` when it is missing).

#[path = "support/cdp.rs"]
mod cdp;
mod support;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use cdp::Browser;
use serde_json::Value;
use support::server::DiffmartProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "dashboard-test-key";
const WAIT: Duration = Duration::from_secs(60);

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-screenshots")
}

/// Text of the element with `data-testid` `id`, as JavaScript.
fn testid(id: &str) -> String {
    format!("document.querySelector('[data-testid=\"{id}\"]')?.textContent")
}

/// Rows of the table with `data-testid` `id`, as JavaScript.
fn rows(id: &str) -> String {
    format!("document.querySelectorAll('[data-testid=\"{id}\"] tbody tr').length")
}

/// A number shown in an element, digits only (the page groups thousands), as JavaScript.
fn number(id: &str) -> String {
    format!("Number(({} || '').replace(/[^0-9]/g, '') || 'NaN')", testid(id))
}

async fn click(browser: &mut Browser, selector: &str) {
    let clicked = browser
        .eval(&format!("(() => {{ const b = document.querySelector('{selector}'); if (b) b.click(); return !!b; }})()"))
        .await;
    assert_eq!(clicked, Value::Bool(true), "nothing to click at {selector}");
}

async fn set_value(browser: &mut Browser, selector: &str, value: &str, event: &str) {
    browser
        .eval(&format!(
            "(() => {{ const e = document.querySelector('{selector}'); e.value = '{value}'; \
             e.dispatchEvent(new Event('{event}')); return true; }})()"
        ))
        .await;
}

async fn message(browser: &mut Browser, contains: &str, what: &str) -> String {
    let expression = format!(
        "(() => {{ const m = document.getElementById('message'); \
         return !m.hidden && m.textContent.includes('{contains}') && m.textContent; }})()"
    );
    browser.wait_for(&expression, WAIT, what).await.as_str().unwrap_or_default().to_string()
}

async fn show_tab(browser: &mut Browser, tab: &str) {
    click(browser, &format!("#tabs button[data-tab=\"{tab}\"]")).await;
}

async fn casino_subtab(browser: &mut Browser, subtab: &str) {
    show_tab(browser, "casino").await;
    click(browser, &format!("[data-subtab=\"{subtab}\"]")).await;
}

async fn set_thresholds(browser: &mut Browser, hotel: &str, drink: &str) {
    set_value(browser, "#hotel-threshold", hotel, "input").await;
    set_value(browser, "#drink-threshold", drink, "input").await;
    click(browser, "#apply-thresholds").await;
    message(browser, "Thresholds set", "the thresholds are set").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tab_in_a_real_browser() {
    let mut server = DiffmartProcess::start(&["--admin-api-key", KEY]);
    server.wait_ready(Duration::from_secs(120)).await;
    let mut browser = Browser::launch(1400, 1000).await;
    browser.navigate(&format!("http://127.0.0.1:{}/#casino", server.http_port)).await;
    set_value(&mut browser, "#admin-key", KEY, "change").await;
    browser
        .wait_for("document.getElementById('live-status').textContent.startsWith('live')", WAIT, "the page is live")
        .await;
    set_value(&mut browser, "#refresh-interval", "1", "change").await;

    // A value on screen changes as the generator's events are ingested.
    casino_subtab(&mut browser, "analytics").await;
    let first = browser
        .wait_for(
            &format!("{} > 0 && {}", number("casino-transactions"), number("casino-transactions")),
            WAIT,
            "transactions",
        )
        .await;
    browser
        .wait_for(&format!("{} > {first}", number("casino-transactions")), WAIT, "the transaction count grows")
        .await;
    browser.wait_for(&rows("game-stats"), WAIT, "game statistics").await;
    browser.screenshot(&screenshots().join("casino-analytics.png")).await;

    casino_subtab(&mut browser, "members").await;
    browser.wait_for(&rows("members"), WAIT, "members").await;
    browser.screenshot(&screenshots().join("casino-members.png")).await;

    // An override shows on the pricing tab, and the history chart draws.
    show_tab(&mut browser, "pricing").await;
    browser.wait_for(&rows("prices"), WAIT, "prices").await;
    set_value(&mut browser, "#override-product", "PA", "input").await;
    set_value(&mut browser, "#override-price", "123.45", "input").await;
    click(&mut browser, "#set-override").await;
    message(&mut browser, "Override set", "the override is set").await;
    browser
        .wait_for(
            "[...document.querySelectorAll('[data-testid=\"prices\"] tr[data-key=\"PA\"]')]\
             .some(r => r.textContent.includes('override') && r.textContent.includes('123.45'))",
            WAIT,
            "PA's price shows the override",
        )
        .await;
    browser.wait_for(&rows("overrides"), WAIT, "the active overrides").await;
    set_value(&mut browser, "#history-product", "PA", "change").await;
    browser
        .wait_for("!!document.querySelector('[data-testid=\"history-svg\"] path')", WAIT, "PA's price history")
        .await;
    browser.screenshot(&screenshots().join("pricing.png")).await;

    for (tab, table) in [("inventory", "inventory"), ("retail", "retail-stock"), ("ecommerce", "ecommerce-products")] {
        show_tab(&mut browser, tab).await;
        browser.wait_for(&rows(table), WAIT, &format!("rows on the {tab} tab")).await;
        browser.screenshot(&screenshots().join(format!("{tab}.png"))).await;
    }
    show_tab(&mut browser, "retail").await;
    browser.wait_for(&rows("retail-prices"), WAIT, "retail prices").await;

    // The generator's controls, with the admin key.
    show_tab(&mut browser, "generator").await;
    let running = format!("{} === 'running'", testid("generator-state"));
    browser.wait_for(&running, WAIT, "the generator runs").await;
    click(&mut browser, "#generator-stop").await;
    browser.wait_for(&format!("{} === 'stopped'", testid("generator-state")), WAIT, "the generator stops").await;
    browser.screenshot(&screenshots().join("generator.png")).await;
    click(&mut browser, "#generator-start").await;
    browser.wait_for(&running, WAIT, "the generator runs again").await;

    // A threshold change moves members out of the offers, then in.
    casino_subtab(&mut browser, "hotel").await;
    set_thresholds(&mut browser, "1000000000", "1000000000").await;
    browser.wait_for(&format!("{} === 0", number("hotel-live-count")), WAIT, "no member qualifies").await;
    browser.wait_for(&format!("{} === 0", number("hotel-count")), WAIT, "the offers list empties").await;
    set_thresholds(&mut browser, "1", "1").await;
    browser.wait_for(&format!("{} > 0", number("hotel-live-count")), WAIT, "members qualify again").await;
    browser.wait_for(&rows("hotel-offers"), WAIT, "the offers list fills").await;

    browser.pump(Duration::from_millis(500)).await;
    let errors = browser.console_errors();
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");

    // "Mark as redeemed" works once, then is refused for that member, type and day.
    let offer = browser
        .eval(
            "(() => { const b = document.querySelector('[data-testid=\"hotel-offers\"] button.redeem'); \
             b.click(); return b.dataset.member + '|' + b.dataset.window; })()",
        )
        .await;
    let (member, window) = offer.as_str().expect("an offer").split_once('|').expect("member|window");
    message(&mut browser, &format!("Marked member {member}"), "the offer is redeemed").await;
    browser.screenshot(&screenshots().join("casino-hotel.png")).await;
    click(&mut browser, &format!("button.redeem[data-member=\"{member}\"][data-window=\"{window}\"]")).await;
    let refusal = message(&mut browser, "already redeemed", "the second redemption is refused").await;
    assert!(refusal.contains("one per member per day per type"), "{refusal}");
    casino_subtab(&mut browser, "fulfillment").await;
    browser.wait_for(&rows("redeemed-offers"), WAIT, "the redemption is listed").await;
    browser.screenshot(&screenshots().join("casino-fulfillment.png")).await;
    casino_subtab(&mut browser, "drink").await;
    browser.wait_for(&rows("drink-offers"), WAIT, "drink offers").await;
    browser.screenshot(&screenshots().join("casino-drink.png")).await;

    // The refusal's 409 is the one error the browser logs (as a failed load).
    browser.pump(Duration::from_millis(500)).await;
    let errors: Vec<String> = browser
        .console_errors()
        .into_iter()
        .filter(|e| !(e.contains("409") && e.contains("/api/casino/redeem")))
        .collect();
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
}

/// One HTTP/1.1 request with `headers`: the status, the answer's head and its body.
async fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("the HTTP port");
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).to_string();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn basic(role: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{role}:{password}")))
}

const REDEMPTION: &str =
    r#"{"member_id": 1001, "member_name": "A", "offer_type": "hotel", "window_start": "2026-12-07T10:00:00Z"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_root_password_the_dashboard_needs_a_role() {
    let mut server = DiffmartProcess::start(&["--no-generator", "--root-password", "rootpw"]);
    server.wait_ready(Duration::from_secs(120)).await;
    let port = server.http_port;
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE ROLE reader LOGIN PASSWORD 'readpw'; GRANT pg_read_all_data TO reader; \
             CREATE ROLE nobody LOGIN PASSWORD 'nopw'",
        )
        .await
        .unwrap();

    let (status, head, body) = request(port, "GET", "/", &[], "").await;
    assert_eq!(status, 401, "{body}");
    assert!(head.contains("www-authenticate: basic realm=\"diffmart\""), "{head}");
    assert!(body.contains("\"error\""), "{body}");
    let wrong = basic("root", "wrong");
    assert_eq!(request(port, "GET", "/", &[("Authorization", &wrong)], "").await.0, 401);
    let root = basic("root", "rootpw");
    let (status, head, body) = request(port, "GET", "/", &[("Authorization", &root)], "").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(body.contains("/dashboard/app.js"), "{body}");

    let reader = basic("reader", "readpw");
    assert_eq!(request(port, "GET", "/api/relations", &[("Authorization", &reader)], "").await.0, 200);
    assert_eq!(request(port, "GET", "/dashboard/app.js", &[("Authorization", &reader)], "").await.0, 200);
    let nobody = basic("nobody", "nopw");
    let (status, _, body) = request(port, "GET", "/api/relations", &[("Authorization", &nobody)], "").await;
    assert_eq!(status, 403, "{body}");
    let (status, _, body) =
        request(port, "POST", "/api/casino/redeem", &[("Authorization", &reader)], REDEMPTION).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("may not write"), "{body}");

    let (status, _, body) = request(port, "POST", "/api/casino/redeem", &[("Authorization", &root)], REDEMPTION).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = request(port, "POST", "/api/casino/redeem", &[("Authorization", &root)], REDEMPTION).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("already redeemed a hotel offer on 2026-12-07"), "{body}");
    let rows = client.simple_query("SELECT member_id FROM redeemed_offers").await.unwrap();
    assert_eq!(rows.iter().filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))).count(), 1);
}

/// Reads an SSE stream until `until` is in what arrived; returns everything read.
async fn read_until(stream: &mut tokio::net::TcpStream, seen: &mut String, until: &str) {
    let mut buffer = [0u8; 65536];
    tokio::time::timeout(WAIT, async {
        while !seen.contains(until) {
            let n = stream.read(&mut buffer).await.expect("the stream");
            assert!(n > 0, "the stream ended before {until:?}: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {until:?} within {WAIT:?}: {seen}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_sends_rows_then_changes_within_its_bounds() {
    let mut server = DiffmartProcess::start(&["--no-generator", "--ws-max-pending-changes", "3"]);
    server.wait_ready(Duration::from_secs(120)).await;
    let port = server.http_port;
    let client = server.connect().await;
    client
        .batch_execute("INSERT INTO redeemed_offers VALUES (1001, 'A', 'drink', '2026-12-07 10:00:00', '2026-12-07')")
        .await
        .unwrap();

    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(b"GET /api/live?relations=redeemed_offers HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "event: ready").await;
    assert!(seen.to_ascii_lowercase().contains("content-type: text/event-stream"), "{seen}");
    assert!(seen.contains("event: rows"), "{seen}");
    assert!(seen.contains(r#""member_id":1001"#), "{seen}");
    client
        .batch_execute("INSERT INTO redeemed_offers VALUES (1002, 'B', 'hotel', '2026-12-07 11:00:00', '2026-12-07')")
        .await
        .unwrap();
    read_until(&mut stream, &mut seen, "event: changes").await;
    read_until(&mut stream, &mut seen, r#""diff":1"#).await;
    let changes = &seen[seen.find("event: changes").unwrap()..];
    assert!(
        changes.contains(r#""member_id":1002"#) && changes.contains(r#""relation":"redeemed_offers""#),
        "{changes}"
    );

    // More first rows than a client may be sent: refused, not buffered.
    client
        .batch_execute(
            "INSERT INTO redeemed_offers VALUES (1003, 'C', 'hotel', NULL, '2026-12-07'), \
             (1004, 'D', 'hotel', NULL, '2026-12-07')",
        )
        .await
        .unwrap();
    let (status, _, body) = request(port, "GET", "/api/live?relations=redeemed_offers", &[], "").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("4 rows") && body.contains("--ws-max-pending-changes"), "{body}");
    let (status, _, body) = request(port, "GET", "/api/live?relations=no_such_relation", &[], "").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(request(port, "GET", "/api/live?relations=", &[], "").await.0, 400);
    assert_eq!(request(port, "GET", "/dashboard/nothing.js", &[], "").await.0, 404);
}
