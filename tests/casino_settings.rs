//! The casino thresholds at run time, against the real binary over pgwire:
//! `casino_settings` starts with the flags' row, an `UPDATE` moves windows in and out of
//! `hotel_room_offers` and `drink_offers` as seen by the very next `SELECT`, bad rows are
//! refused with their SQLSTATE and change nothing, a deleted row means the flags' values,
//! a data directory keeps a changed row over the flags of the next start, and
//! `PUT /casino/settings` writes the same row over HTTP, with the admin key.
//!
//! Every comparison is one statement, so it reads one snapshot while the generator runs.

mod support;

use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use support::server::{DiffmartProcess, admin_request};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

const READY: Duration = Duration::from_secs(60);
const KEY: &str = "casino-settings-test-key";

/// `casino_settings` as (id, hotel_threshold, drink_threshold), in id order.
async fn settings(client: &Client) -> Vec<(i32, Decimal, Decimal)> {
    let rows = client
        .query("SELECT id, hotel_threshold, drink_threshold FROM casino_settings ORDER BY id", &[])
        .await
        .expect("reading casino_settings");
    rows.iter().map(|r| (r.get(0), r.get::<_, Decimal>(1).normalize(), r.get::<_, Decimal>(2).normalize())).collect()
}

fn dec(s: &str) -> Decimal {
    s.parse::<Decimal>().expect("a decimal").normalize()
}

/// The offer views and what `member_daily_summary` says they must hold under `hotel` and
/// `drink`, read in one statement (one snapshot).
#[derive(Debug, PartialEq)]
struct Offers {
    hotel: i64,
    hotel_expected: i64,
    drink: i64,
    drink_expected: i64,
    /// Windows in the summary: the offers' upper bound.
    windows: i64,
}

async fn offers(client: &Client, hotel: Decimal, drink: Decimal) -> Offers {
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM hotel_room_offers), \
                (SELECT COUNT(*) FROM member_daily_summary WHERE total_spend >= {hotel}), \
                (SELECT COUNT(*) FROM drink_offers), \
                (SELECT COUNT(*) FROM member_daily_summary WHERE net_amount < 0 AND abs(net_amount) >= {drink}), \
                (SELECT COUNT(*) FROM member_daily_summary)"
    );
    let row = client.query_one(&sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    Offers { hotel: row.get(0), hotel_expected: row.get(1), drink: row.get(2), drink_expected: row.get(3), windows: row.get(4) }
}

/// Asserts the offers are those of `hotel` and `drink`, and returns them.
async fn assert_offers_under(client: &Client, hotel: &str, drink: &str, after: &str) -> Offers {
    let found = offers(client, dec(hotel), dec(drink)).await;
    assert_eq!(
        (found.hotel, found.drink),
        (found.hotel_expected, found.drink_expected),
        "{after}: the offers are not those of hotel {hotel}, drink {drink}: {found:?}"
    );
    found
}

/// A statement that must fail with `code` and leave the table as it was.
async fn assert_refused(client: &Client, sql: &str, code: &SqlState) {
    let before = settings(client).await;
    let error = client.simple_query(sql).await.expect_err(sql);
    assert_eq!(error.code(), Some(code), "{sql}: {error}");
    assert_eq!(settings(client).await, before, "{sql} was refused but changed casino_settings");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_of_the_thresholds_moves_members_in_and_out_of_the_offers() {
    let mut server = DiffmartProcess::start(&[
        "-w",
        "2",
        "--generator-rate",
        "4000",
        "--generator-start",
        "2025-06-01 12:00:00",
        "--hotel-threshold",
        "3000",
        "--drink-threshold",
        "500.50",
        "--admin-api-key",
        KEY,
    ]);
    server.wait_ready(READY).await;
    let client = server.connect().await;
    assert_eq!(settings(&client).await, vec![(1, dec("3000"), dec("500.5"))], "the flags' row");

    // Wait for windows on both sides of the hotel threshold, and some drink offers.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let found = assert_offers_under(&client, "3000", "500.50", "from the flags").await;
        if found.hotel > 0 && found.hotel < found.windows && found.drink > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the generator made no windows on both sides of 3000: {found:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Down to zero: every window is a hotel offer, at once.
    client.batch_execute("UPDATE casino_settings SET hotel_threshold = 0").await.expect("lowering");
    let found = assert_offers_under(&client, "0", "500.50", "hotel_threshold = 0").await;
    assert_eq!(found.hotel, found.windows, "with a threshold of 0 every window qualifies: {found:?}");
    assert_eq!(settings(&client).await, vec![(1, dec("0"), dec("500.5"))]);

    // Up past everything, and the drink threshold down to zero, in one statement.
    client
        .batch_execute("UPDATE casino_settings SET hotel_threshold = 9999999999.99, drink_threshold = 0 WHERE id = 1")
        .await
        .expect("raising");
    let found = assert_offers_under(&client, "9999999999.99", "0", "hotel up, drink 0").await;
    assert_eq!(found.hotel, 0, "{found:?}");
    assert!(found.drink > 0, "{found:?}");

    // In between, in a transaction: the next statement in it reads the write.
    client.batch_execute("BEGIN; UPDATE casino_settings SET hotel_threshold = 4321.5").await.expect("in a transaction");
    assert_offers_under(&client, "4321.5", "0", "hotel 4321.5 inside a transaction").await;
    client.batch_execute("COMMIT").await.unwrap();

    // Bad rows are refused with their SQLSTATE, and change neither the table nor the offers.
    let check = SqlState::CHECK_VIOLATION;
    assert_refused(&client, "UPDATE casino_settings SET hotel_threshold = -1", &check).await;
    assert_refused(&client, "UPDATE casino_settings SET drink_threshold = -0.01", &check).await;
    assert_refused(&client, "INSERT INTO casino_settings VALUES (2, 1, 1)", &check).await;
    assert_refused(&client, "UPDATE casino_settings SET id = 2", &check).await;
    assert_refused(&client, "UPDATE casino_settings SET hotel_threshold = 10000000000", &SqlState::NUMERIC_VALUE_OUT_OF_RANGE)
        .await;
    assert_refused(&client, "UPDATE casino_settings SET hotel_threshold = NULL", &SqlState::NOT_NULL_VIOLATION).await;
    assert_refused(&client, "INSERT INTO casino_settings VALUES (1, 1, 1)", &SqlState::UNIQUE_VIOLATION).await;
    assert_eq!(settings(&client).await, vec![(1, dec("4321.5"), dec("0"))]);
    assert_offers_under(&client, "4321.5", "0", "after the refused statements").await;

    // No row: the flags' values apply until a row is written again.
    client.batch_execute("DELETE FROM casino_settings").await.expect("deleting the row");
    assert!(settings(&client).await.is_empty());
    assert_offers_under(&client, "3000", "500.50", "without a row (the flags')").await;
    client.batch_execute("INSERT INTO casino_settings VALUES (1, 2500, 750)").await.expect("a row again");
    assert_offers_under(&client, "2500", "750", "a row inserted again").await;

    // Over HTTP: one threshold, then both; the other keeps its value.
    let put = |key: &'static str, body: &'static str| admin_request(key, server.http_port, "PUT", "/casino/settings", body);
    let (status, body) = put(KEY, r#"{"hotel_threshold": 1000.005}"#).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer, serde_json::json!({"id": 1, "hotel_threshold": 1000.01, "drink_threshold": 750.0}));
    assert_eq!(settings(&client).await, vec![(1, dec("1000.01"), dec("750"))]);
    assert_offers_under(&client, "1000.01", "750", "PUT hotel_threshold").await;
    let (status, body) = put(KEY, r#"{"hotel_threshold": "0", "drink_threshold": 99.5}"#).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_offers_under(&client, "0", "99.5", "PUT both").await;
    // Refused: without the key, a negative value, an unknown field; nothing changes.
    for (key, body, want) in [
        ("wrong-key", r#"{"hotel_threshold": 5}"#, 401),
        (KEY, r#"{"hotel_threshold": -5}"#, 400),
        (KEY, r#"{"drink_threshold": 10000000000}"#, 400),
        (KEY, r#"{"id": 2}"#, 400),
        (KEY, r#"not json"#, 400),
    ] {
        let (status, answer) = put(key, body).await.unwrap();
        assert_eq!(status, want, "{body}: {answer}");
        assert!(serde_json::from_str::<serde_json::Value>(&answer).unwrap()["error"].is_string(), "{answer}");
    }
    assert_eq!(settings(&client).await, vec![(1, dec("0"), dec("99.5"))], "the refused PUTs changed the row");
    // With no row, a PUT must give both thresholds.
    client.batch_execute("DELETE FROM casino_settings").await.unwrap();
    let (status, answer) = put(KEY, r#"{"hotel_threshold": 5}"#).await.unwrap();
    assert_eq!(status, 400, "{answer}");
    assert!(settings(&client).await.is_empty());
    let (status, answer) = put(KEY, r#"{"hotel_threshold": 5, "drink_threshold": 6}"#).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(settings(&client).await, vec![(1, dec("5"), dec("6"))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_keeps_a_changed_row_over_the_next_starts_flags() {
    let dir = tempfile::tempdir().unwrap();
    let start = |flags: &[&str]| {
        let mut args = vec!["--no-generator"];
        args.extend_from_slice(flags);
        DiffmartProcess::start_on(dir.path(), &args)
    };
    let restart = |mut server: DiffmartProcess| {
        server.terminate();
        assert!(server.wait_exit(Duration::from_secs(30)).is_some_and(|s| s.success()), "a clean shutdown");
    };

    let mut server = start(&["--hotel-threshold", "4000"]);
    server.wait_ready(READY).await;
    let client = server.connect().await;
    assert_eq!(settings(&client).await, vec![(1, dec("4000"), dec("1000"))], "the flags' row, default drink");
    client.batch_execute("UPDATE casino_settings SET hotel_threshold = 3000").await.unwrap();
    restart(server);

    // The row the table holds wins over the flags.
    let mut server = start(&["--hotel-threshold", "4500", "--drink-threshold", "900"]);
    server.wait_ready(READY).await;
    let client = server.connect().await;
    assert_eq!(settings(&client).await, vec![(1, dec("3000"), dec("1000"))], "the changed row survives");
    assert!(server.stderr().contains("casino_settings keeps the thresholds set at run time"), "{}", server.stderr());
    client.batch_execute("DELETE FROM casino_settings").await.unwrap();
    restart(server);

    // A deleted row: the next start writes its flags.
    let mut server = start(&["--hotel-threshold", "4500", "--drink-threshold", "900"]);
    server.wait_ready(READY).await;
    let client = server.connect().await;
    assert_eq!(settings(&client).await, vec![(1, dec("4500"), dec("900"))], "the flags' row after a delete");
}

#[test]
fn a_threshold_the_table_would_refuse_is_refused_at_start() {
    for (flags, message) in [
        (["--hotel-threshold", "-1"], "casino_settings_hotel_threshold_check"),
        (["--drink-threshold", "0.001"], "more decimal places"),
    ] {
        let mut server = DiffmartProcess::start(&flags);
        let status = server.wait_exit(Duration::from_secs(30)).expect("diffmart exits");
        assert!(!status.success(), "{flags:?} started");
        assert!(server.stderr().contains(message), "{flags:?}: {}", server.stderr());
    }
}
