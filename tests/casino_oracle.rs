//! Oracle test of the casino pipeline (`shared/spec/PIPELINES.md` §C, seed 003).
//!
//! A seeded random stream of bets, wins and cashouts (many members, a few with two
//! names; rows out of order, late, exactly on window edges and on the watermark) and
//! random `redeemed_offers` inserts, updates and deletes, and changes of the offer
//! thresholds in `casino_settings` (up, down, to zero, exactly onto a window's amount,
//! the row deleted so the flags' values apply, and inserted again) go batch by batch to
//! diffmart and to a real PostgreSQL, where every casino view is a plain SQL VIEW
//! ([`ORACLE_SCHEMA`]). After every batch all eight views (and `casino_settings`) must be
//! equal as multisets.
//! Runs with 1 and 2 timely workers, with a long retention (nothing expires) and a short
//! one (windows expire during the history).
//!
//! The event-time views need the arrival order, which SQL tables do not have: PostgreSQL
//! gets each transaction with its batch number, and the oracle derives from it, in SQL,
//! the watermark each row was judged against (that of all earlier batches), which rows
//! were late, and which windows are closed or expired: the definition in
//! `dataflows/src/casino/windows.rs`, written independently of its implementation.
//!
//! Run: `cargo test --release --test casino_oracle`. Knobs: `CASINO_ORACLE_SEEDS=1,2`,
//! `CASINO_ORACLE_BATCHES=40`. A mismatch names seed, workers, batch and view, and saves
//! a SQL script that replays the history into PostgreSQL.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use diffmart::compute::ComputeConfig;
use diffmart::engine::{Engine, Update};
use diffmart_dataflows::PipelineConfig;
use diffmart_dataflows::casino::{CasinoConfig, CasinoSettings, GamingTransaction, RedeemedOffer, Thresholds};
use diffmart_dataflows::datum::{MICROS_PER_MINUTE, MICROS_PER_SECOND, Micros, Record};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use support::oracle::{self, Batch, OracleViews};
use support::postgres::TestPostgres;
use tokio_postgres::error::SqlState;

/// The inputs as PostgreSQL tables (transactions with their arrival batch), the launch
/// options as a one-row table (`settings`; its thresholds are the flags'), and the views
/// in PostgreSQL dialect.
const ORACLE_SCHEMA: &str = r#"
CREATE TABLE gaming_transactions (
  batch int NOT NULL,
  transaction_id bigint NOT NULL,
  member_id bigint NOT NULL,
  member_name varchar,
  transaction_type varchar NOT NULL,
  amount numeric NOT NULL,
  game_type varchar NOT NULL,
  transaction_time timestamp NOT NULL
);
CREATE TABLE redeemed_offers (
  member_id bigint NOT NULL,
  member_name varchar,
  offer_type varchar NOT NULL,
  redeemed_at timestamp,
  redemption_date date NOT NULL,
  PRIMARY KEY (member_id, offer_type, redemption_date)
);
CREATE TABLE casino_settings (
  id integer PRIMARY KEY CHECK (id = 1),
  hotel_threshold numeric(12,2) NOT NULL CHECK (hotel_threshold >= 0),
  drink_threshold numeric(12,2) NOT NULL CHECK (drink_threshold >= 0)
);
CREATE TABLE settings (
  window_size interval NOT NULL,
  retention interval NOT NULL,
  hotel_threshold numeric NOT NULL,
  drink_threshold numeric NOT NULL
);

-- The thresholds in force: casino_settings' row, or the flags' while it has none.
CREATE VIEW casino_thresholds AS
SELECT COALESCE((SELECT hotel_threshold FROM casino_settings), s.hotel_threshold) AS hotel_threshold,
       COALESCE((SELECT drink_threshold FROM casino_settings), s.drink_threshold) AS drink_threshold
FROM settings s;

-- The watermark a batch's rows are judged against: max transaction_time of all earlier
-- batches minus 10 s (NULL for the first batch with transactions).
CREATE VIEW arrival_watermarks AS
SELECT batch,
       MAX(MAX(transaction_time)) OVER (ORDER BY batch ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
         - INTERVAL '10 seconds' AS watermark
FROM gaming_transactions
GROUP BY batch;

CREATE VIEW on_time_transactions AS
SELECT g.*
FROM gaming_transactions g JOIN arrival_watermarks a USING (batch)
WHERE a.watermark IS NULL OR g.transaction_time >= a.watermark;

CREATE VIEW casino_watermark AS
SELECT MAX(transaction_time) - INTERVAL '10 seconds' AS watermark,
       COUNT(*) - (SELECT COUNT(*) FROM on_time_transactions) AS late_transactions
FROM gaming_transactions
HAVING COUNT(*) > 0;

-- Windows ending after this are retained (all of them before the first transaction).
CREATE VIEW retention_horizon AS
SELECT COALESCE((SELECT watermark FROM casino_watermark) - s.retention, '-infinity'::timestamp) AS horizon
FROM settings s;

CREATE VIEW member_daily_summary AS
SELECT member_id, member_name, window_start, window_start + window_size AS window_end,
       SUM(CASE WHEN transaction_type = 'bet' THEN amount ELSE 0 END) AS total_spend,
       SUM(CASE WHEN transaction_type = 'win' THEN amount ELSE 0 END) AS total_winnings,
       SUM(CASE WHEN transaction_type = 'win' THEN amount ELSE 0 END)
         - SUM(CASE WHEN transaction_type = 'bet' THEN amount ELSE 0 END) AS net_amount,
       COUNT(*) AS transaction_count,
       MAX(transaction_time) AS last_transaction
FROM (SELECT g.*, date_bin(s.window_size, g.transaction_time, TIMESTAMP '1970-01-01') AS window_start,
             s.window_size
      FROM gaming_transactions g CROSS JOIN settings s) t
GROUP BY member_id, member_name, window_start, window_size
HAVING window_start + window_size > (SELECT horizon FROM retention_horizon);

CREATE VIEW hotel_room_offers AS
SELECT member_id, member_name, total_spend, transaction_count, net_amount, last_transaction,
       window_start, window_end, '🏨 Complimentary Hotel Room (1 night)' AS reward_type
FROM member_daily_summary s CROSS JOIN casino_thresholds t
WHERE s.total_spend >= t.hotel_threshold;

CREATE VIEW drink_offers AS
SELECT member_id, member_name, total_spend, transaction_count, net_amount,
       ABS(net_amount) AS loss_amount, last_transaction, window_start, window_end,
       '🍹 Complimentary Premium Drink' AS reward_type
FROM member_daily_summary s CROSS JOIN casino_thresholds t
WHERE s.net_amount < 0 AND ABS(s.net_amount) >= t.drink_threshold;

CREATE VIEW game_stats AS
SELECT game_type,
       COUNT(*) AS total_bets,
       SUM(CASE WHEN transaction_type = 'bet' THEN amount ELSE 0 END) AS total_wagered,
       SUM(CASE WHEN transaction_type = 'win' THEN amount ELSE 0 END) AS total_paid_out,
       SUM(CASE WHEN transaction_type = 'win' THEN amount ELSE 0 END)
         - SUM(CASE WHEN transaction_type = 'bet' THEN amount ELSE 0 END) AS house_edge
FROM gaming_transactions
GROUP BY game_type;

CREATE VIEW member_leaderboard AS
SELECT member_id, member_name,
       SUM(CASE WHEN transaction_type = 'bet' THEN amount ELSE 0 END) AS lifetime_spend,
       SUM(CASE WHEN transaction_type = 'win' THEN amount ELSE 0 END) AS lifetime_winnings,
       COUNT(*) AS lifetime_transactions,
       MAX(transaction_time) AS last_seen
FROM gaming_transactions
GROUP BY member_id, member_name;

CREATE VIEW member_window_closed AS
SELECT member_id, member_name, window_start, window_start + window_size AS window_end,
       SUM(CASE WHEN transaction_type = 'bet' THEN amount ELSE 0 END) AS total_spend,
       SUM(CASE WHEN transaction_type = 'win' THEN amount ELSE 0 END) AS total_winnings,
       SUM(CASE WHEN transaction_type = 'win' THEN amount ELSE 0 END)
         - SUM(CASE WHEN transaction_type = 'bet' THEN amount ELSE 0 END) AS net_amount,
       COUNT(*) AS transaction_count,
       MAX(transaction_time) AS last_transaction
FROM (SELECT g.*, date_bin(s.window_size, g.transaction_time, TIMESTAMP '1970-01-01') AS window_start,
             s.window_size
      FROM on_time_transactions g CROSS JOIN settings s) t
GROUP BY member_id, member_name, window_start, window_size
HAVING window_start + window_size <= (SELECT watermark FROM casino_watermark)
   AND window_start + window_size > (SELECT horizon FROM retention_horizon);

CREATE VIEW pending_offers AS
WITH qualifying AS (
  SELECT member_id, member_name, 'hotel' AS offer_type, total_spend AS metric, window_start, window_end
  FROM hotel_room_offers
  UNION ALL
  SELECT member_id, member_name, 'drink', loss_amount, window_start, window_end
  FROM drink_offers),
latest AS (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY member_id, offer_type
                               ORDER BY window_start DESC, member_name DESC NULLS LAST, metric DESC) AS rn
  FROM qualifying)
SELECT member_id, member_name, offer_type, metric, window_start, window_end
FROM latest l
WHERE rn = 1
  AND NOT EXISTS (SELECT 1 FROM redeemed_offers r
                  WHERE r.member_id = l.member_id AND r.offer_type = l.offer_type
                    AND r.redemption_date = l.window_start::date);
"#;

/// The views, and `casino_settings`, whose row diffmart must hold as PostgreSQL does.
const VIEWS: [&str; 9] = [
    "casino_settings",
    "member_daily_summary",
    "hotel_room_offers",
    "drink_offers",
    "game_stats",
    "member_leaderboard",
    "member_window_closed",
    "pending_offers",
    "casino_watermark",
];

/// Leading columns that identify a row of each view, for side-by-side diffs.
fn key_columns(view: &str) -> usize {
    match view {
        "member_daily_summary" | "member_window_closed" => 3,
        "pending_offers" => 3,
        "member_leaderboard" => 2,
        _ => 1,
    }
}

/// What the histories must reach, summed over batches (the name and its SQL).
const COVERAGE: [(&str, &str); 12] = [
    ("late transactions", "SELECT COALESCE(MAX(late_transactions), 0) FROM casino_watermark"),
    ("closed windows", "SELECT COUNT(*) FROM member_window_closed"),
    (
        "closed windows that differ from their summary (late rows)",
        "SELECT COUNT(*) FROM member_window_closed c JOIN member_daily_summary s USING (member_id, member_name, \
         window_start) WHERE c.transaction_count <> s.transaction_count",
    ),
    ("hotel offers", "SELECT COUNT(*) FROM hotel_room_offers"),
    ("drink offers", "SELECT COUNT(*) FROM drink_offers"),
    ("pending offers", "SELECT COUNT(*) FROM pending_offers"),
    (
        "qualifying windows hidden by a redemption",
        "SELECT COUNT(*) FROM (SELECT member_id, 'hotel' AS offer_type, window_start FROM hotel_room_offers UNION ALL \
         SELECT member_id, 'drink', window_start FROM drink_offers) q JOIN redeemed_offers r ON r.member_id = \
         q.member_id AND r.offer_type = q.offer_type AND r.redemption_date = q.window_start::date",
    ),
    ("members seen under two names", "SELECT COUNT(*) - COUNT(DISTINCT member_id) FROM member_leaderboard"),
    (
        "offers under thresholds other than the flags'",
        "SELECT (SELECT COUNT(*) FROM hotel_room_offers) + (SELECT COUNT(*) FROM drink_offers) FROM casino_thresholds \
         t, settings s WHERE (t.hotel_threshold, t.drink_threshold) <> (s.hotel_threshold, s.drink_threshold)",
    ),
    (
        "offers while casino_settings has no row (the flags')",
        "SELECT (SELECT COUNT(*) FROM hotel_room_offers) + (SELECT COUNT(*) FROM drink_offers) WHERE NOT EXISTS \
         (SELECT 1 FROM casino_settings)",
    ),
    (
        "offers exactly on their threshold",
        "SELECT (SELECT COUNT(*) FROM hotel_room_offers h, casino_thresholds t WHERE h.total_spend = \
         t.hotel_threshold) + (SELECT COUNT(*) FROM drink_offers d, casino_thresholds t WHERE d.loss_amount = \
         t.drink_threshold)",
    ),
    (
        "windows a threshold of zero lets into hotel_room_offers",
        "SELECT COUNT(*) FROM hotel_room_offers h, casino_thresholds t WHERE t.hotel_threshold = 0 AND \
         h.total_spend = 0",
    ),
];

// ------------------------------------------------------------------------------------------
// Random history
// ------------------------------------------------------------------------------------------

/// 2024-05-01T23:40:00Z: the history crosses midnight, so windows fall on two dates.
const T0: Micros = 1_714_606_800 * MICROS_PER_SECOND;
const SECOND: Micros = MICROS_PER_SECOND;
const MEMBERS: [i64; 12] = [1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012];
/// Bets big.
const WHALE: i64 = 1001;
/// Rarely wins.
const UNLUCKY: i64 = 1002;
/// Shows up under two names (and now and then none).
const RENAMED: i64 = 1003;
const GAMES: [&str; 4] = ["slot", "blackjack", "roulette", "poker"];

/// The test's launch options: small thresholds so offers come up within a short history.
fn pipeline_config(retention: Micros) -> PipelineConfig {
    PipelineConfig {
        retention,
        casino: CasinoConfig {
            window: MICROS_PER_MINUTE,
            thresholds: Thresholds { hotel: Decimal::from(600), drink: Decimal::new(25_000, 2) },
        },
    }
}

#[derive(Clone, Debug)]
enum Op {
    Transaction(GamingTransaction),
    RedeemInsert(RedeemedOffer),
    RedeemUpdate { old: RedeemedOffer, new: RedeemedOffer },
    RedeemDelete(RedeemedOffer),
    /// `casino_settings` goes from one row (or none) to another (or none).
    Settings { old: Option<CasinoSettings>, new: Option<CasinoSettings> },
}

struct History {
    rng: StdRng,
    /// "Now" in event time.
    cursor: Micros,
    /// Newest transaction time so far, for rows exactly on the watermark.
    newest: Option<Micros>,
    next_transaction_id: i64,
    /// (member, window start) of transactions so far: dates that redemptions can hit.
    windows: Vec<(i64, Micros)>,
    redeemed: BTreeMap<(i64, String, i32), RedeemedOffer>,
    /// Threshold changes draw from their own generator, so the transactions and
    /// redemptions of a seed are what they were before thresholds could change.
    settings_rng: StdRng,
    settings: Option<CasinoSettings>,
    /// (member, name, window start) → (spend, net): amounts a threshold can land on.
    window_amounts: BTreeMap<(i64, Option<String>, Micros), (Decimal, Decimal)>,
}

impl History {
    fn new(seed: u64) -> History {
        History {
            rng: StdRng::seed_from_u64(seed),
            cursor: T0,
            newest: None,
            next_transaction_id: 1,
            windows: Vec::new(),
            redeemed: BTreeMap::new(),
            settings_rng: StdRng::seed_from_u64(seed ^ 0x5e77_1265),
            settings: None,
            window_amounts: BTreeMap::new(),
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn event_time(&mut self) -> Micros {
        let roll: f64 = self.rng.random();
        let t = if roll < 0.04 && self.newest.is_some() {
            // Exactly on the watermark (on time) or a microsecond behind it (late).
            let watermark = self.newest.unwrap() - 10 * SECOND;
            if self.chance(0.5) { watermark } else { watermark - 1 }
        } else if roll < 0.12 {
            // Late by up to a few windows.
            self.cursor - self.rng.random_range(15..=240) * SECOND
        } else if roll < 0.18 {
            // On a window edge.
            let edge = self.cursor.div_euclid(MICROS_PER_MINUTE) * MICROS_PER_MINUTE;
            if self.chance(0.5) { edge } else { edge - 1 }
        } else {
            // Out of order, within the allowed lateness or a little past it.
            self.cursor + self.rng.random_range(-12_000..=3_000) * 1_000
        };
        // The source format has whole seconds; keep some sub-second times too.
        if self.chance(0.7) { t.div_euclid(SECOND) * SECOND } else { t }
    }

    fn transaction(&mut self) -> GamingTransaction {
        let member_id = *MEMBERS.choose(&mut self.rng).unwrap();
        let member_name = if member_id == RENAMED {
            match self.rng.random_range(0..10) {
                0 => None,
                1..=4 => Some("Carol Danvers".to_string()),
                _ => Some("Carol D.".to_string()),
            }
        } else {
            Some(format!("Member {member_id}"))
        };
        let win_chance = if member_id == UNLUCKY { 0.1 } else { 0.38 };
        let roll: f64 = self.rng.random();
        let transaction_type = if roll < 0.08 {
            "cashout"
        } else if roll < 0.1 {
            "refund"
        } else if self.rng.random_bool(win_chance) {
            "win"
        } else {
            "bet"
        };
        let (low, high) = if member_id == WHALE { (20_000, 90_000) } else { (500, 30_000) };
        let amount = Decimal::new(self.rng.random_range(low..=high), 2);
        let transaction_time = self.event_time();
        self.newest = self.newest.max(Some(transaction_time));
        let window_start = transaction_time.div_euclid(MICROS_PER_MINUTE) * MICROS_PER_MINUTE;
        self.windows.push((member_id, window_start));
        let (spend, net) = self.window_amounts.entry((member_id, member_name.clone(), window_start)).or_default();
        match transaction_type {
            "bet" => {
                *spend += amount;
                *net -= amount;
            }
            "win" => *net += amount,
            _ => {}
        }
        let transaction_id = self.next_transaction_id;
        self.next_transaction_id += 1;
        GamingTransaction {
            transaction_id,
            member_id,
            member_name,
            transaction_type: transaction_type.to_string(),
            amount,
            game_type: GAMES.choose(&mut self.rng).unwrap().to_string(),
            transaction_time,
        }
    }

    fn redemption(&mut self) -> Option<RedeemedOffer> {
        let (member_id, window) = *self.windows.choose(&mut self.rng)?;
        let offer_type = if self.chance(0.5) { "hotel" } else { "drink" }.to_string();
        // The window's date, or the day before it.
        let day = diffmart_dataflows::casino::utc_date(window) - i32::from(self.chance(0.15));
        if self.redeemed.contains_key(&(member_id, offer_type.clone(), day)) {
            return None;
        }
        Some(RedeemedOffer {
            member_id,
            member_name: self.chance(0.9).then(|| format!("Member {member_id}")),
            offer_type,
            redeemed_at: self.chance(0.9).then_some(self.cursor),
            redemption_date: day,
        })
    }

    fn batch(&mut self) -> Vec<Op> {
        let mut ops = Vec::new();
        self.cursor += self.rng.random_range(3..=35) * SECOND;
        let rows = if self.chance(0.1) { 0 } else { self.rng.random_range(1..=30) };
        for _ in 0..rows {
            let tx = self.transaction();
            ops.push(Op::Transaction(tx));
        }
        if self.chance(0.5) {
            for _ in 0..self.rng.random_range(1..=3) {
                if let Some(offer) = self.redemption() {
                    self.redeemed.insert(redeemed_key(&offer), offer.clone());
                    ops.push(Op::RedeemInsert(offer));
                }
            }
        }
        if !self.redeemed.is_empty() && self.chance(0.15) {
            let key = self.redeemed.keys().cloned().collect::<Vec<_>>().choose(&mut self.rng).unwrap().clone();
            let old = self.redeemed[&key].clone();
            let new = RedeemedOffer { redeemed_at: Some(self.cursor), member_name: None, ..old.clone() };
            self.redeemed.insert(key, new.clone());
            ops.push(Op::RedeemUpdate { old, new });
        }
        if !self.redeemed.is_empty() && self.chance(0.2) {
            let key = self.redeemed.keys().cloned().collect::<Vec<_>>().choose(&mut self.rng).unwrap().clone();
            ops.push(Op::RedeemDelete(self.redeemed.remove(&key).unwrap()));
        }
        if self.settings_rng.random_bool(0.2) {
            let new = self.next_settings();
            let old = std::mem::replace(&mut self.settings, new.clone());
            ops.push(Op::Settings { old, new });
        }
        ops
    }

    /// New thresholds: mostly up or down around the flags' (600, 250), sometimes exactly a
    /// window's spend or loss, zero, or far above everything; or no row (the flags' apply).
    fn next_settings(&mut self) -> Option<CasinoSettings> {
        let rng = &mut self.settings_rng;
        if self.settings.is_some() && rng.random_bool(0.15) {
            return None;
        }
        let threshold = |rng: &mut StdRng, on_window: Option<Decimal>| match (rng.random_range(0..10), on_window) {
            (0, _) => Decimal::ZERO,
            (1, _) => Decimal::from(1_000_000),
            (2..=4, Some(amount)) => amount,
            _ => Decimal::new(rng.random_range(0..=150_000), 2),
        };
        let amounts: Vec<(Decimal, Decimal)> = self.window_amounts.values().copied().collect();
        let spend = amounts.choose(rng).map(|&(spend, _)| spend);
        let loss = amounts.iter().filter(|(_, net)| *net < Decimal::ZERO).collect::<Vec<_>>().choose(rng).map(|(_, n)| -*n);
        let hotel = threshold(rng, spend);
        let drink = threshold(rng, loss);
        Some(CasinoSettings::of(Thresholds { hotel, drink }))
    }
}

fn redeemed_key(offer: &RedeemedOffer) -> (i64, String, i32) {
    (offer.member_id, offer.offer_type.clone(), offer.redemption_date)
}

// ------------------------------------------------------------------------------------------
// The same change for diffmart and for PostgreSQL
// ------------------------------------------------------------------------------------------

fn sql_ts(t: Micros) -> String {
    let time = chrono::DateTime::from_timestamp_micros(t).expect("timestamp in range");
    format!("'{}'::timestamp", time.format("%Y-%m-%d %H:%M:%S%.6f"))
}
fn sql_date(days: i32) -> String {
    format!("'{}'::date", support::canonical_date(days))
}
fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
fn sql_opt<T>(value: &Option<T>, render: impl Fn(&T) -> String) -> String {
    value.as_ref().map_or_else(|| "NULL".to_string(), render)
}

fn pg_statement(op: &Op, batch: usize) -> String {
    match op {
        Op::Transaction(t) => format!(
            "INSERT INTO gaming_transactions VALUES ({batch}, {}, {}, {}, {}, {}, {}, {});",
            t.transaction_id,
            t.member_id,
            sql_opt(&t.member_name, |s| sql_text(s)),
            sql_text(&t.transaction_type),
            t.amount,
            sql_text(&t.game_type),
            sql_ts(t.transaction_time)
        ),
        Op::RedeemInsert(r) => format!(
            "INSERT INTO redeemed_offers VALUES ({}, {}, {}, {}, {});",
            r.member_id,
            sql_opt(&r.member_name, |s| sql_text(s)),
            sql_text(&r.offer_type),
            sql_opt(&r.redeemed_at, |t| sql_ts(*t)),
            sql_date(r.redemption_date)
        ),
        Op::RedeemUpdate { old, new } => format!(
            "UPDATE redeemed_offers SET member_name = {}, redeemed_at = {} WHERE member_id = {} AND offer_type = {} \
             AND redemption_date = {};",
            sql_opt(&new.member_name, |s| sql_text(s)),
            sql_opt(&new.redeemed_at, |t| sql_ts(*t)),
            old.member_id,
            sql_text(&old.offer_type),
            sql_date(old.redemption_date)
        ),
        Op::RedeemDelete(r) => format!(
            "DELETE FROM redeemed_offers WHERE member_id = {} AND offer_type = {} AND redemption_date = {};",
            r.member_id,
            sql_text(&r.offer_type),
            sql_date(r.redemption_date)
        ),
        Op::Settings { old: _, new: None } => "DELETE FROM casino_settings;".to_string(),
        Op::Settings { old: None, new: Some(new) } => format!(
            "INSERT INTO casino_settings VALUES ({}, {}, {});",
            new.id, new.hotel_threshold, new.drink_threshold
        ),
        Op::Settings { old: Some(_), new: Some(new) } => format!(
            "UPDATE casino_settings SET hotel_threshold = {}, drink_threshold = {} WHERE id = {};",
            new.hotel_threshold, new.drink_threshold, new.id
        ),
    }
}

/// The relations an oracle history writes, by catalog id.
struct Inputs {
    transactions: usize,
    redeemed: usize,
    settings: usize,
}

fn engine_updates(op: &Op, inputs: &Inputs, out: &mut Vec<Update>) {
    let Inputs { transactions, redeemed, settings } = *inputs;
    match op {
        Op::Transaction(t) => out.push(Update::insert(transactions, t.to_row())),
        Op::RedeemInsert(r) => out.push(Update::insert(redeemed, r.to_row())),
        Op::RedeemUpdate { old, new } => {
            out.push(Update::delete(redeemed, old.to_row()));
            out.push(Update::insert(redeemed, new.to_row()));
        }
        Op::RedeemDelete(r) => out.push(Update::delete(redeemed, r.to_row())),
        // As an UPDATE writes it: the old row out, the new one in.
        Op::Settings { old, new } => {
            out.extend(old.iter().map(|old| Update::delete(settings, old.to_row())));
            out.extend(new.iter().map(|new| Update::insert(settings, new.to_row())));
        }
    }
}

// ------------------------------------------------------------------------------------------
// The oracle tests
// ------------------------------------------------------------------------------------------

fn env_list(name: &str, default: &[u64]) -> Vec<u64> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            v.split(',').map(|s| s.trim().parse().unwrap_or_else(|_| panic!("{name}: bad number {s:?}"))).collect()
        }
        _ => default.to_vec(),
    }
}

/// Long enough that nothing expires within a history.
const LONG_RETENTION: Micros = 24 * 60 * MICROS_PER_MINUTE;
/// Windows expire a few minutes after they close.
const SHORT_RETENTION: Micros = 3 * MICROS_PER_MINUTE + 30 * SECOND;
const DEFAULT_BATCHES: u64 = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn casino_views_match_postgres_with_1_worker() {
    run_oracle(1, LONG_RETENTION, &[1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn casino_views_match_postgres_with_2_workers() {
    run_oracle(2, LONG_RETENTION, &[1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn casino_views_match_postgres_with_short_retention_1_worker() {
    run_oracle(1, SHORT_RETENTION, &[4, 5]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn casino_views_match_postgres_with_short_retention_2_workers() {
    run_oracle(2, SHORT_RETENTION, &[4, 5]).await;
}

async fn run_oracle(workers: usize, retention: Micros, default_seeds: &[u64]) {
    let seeds = env_list("CASINO_ORACLE_SEEDS", default_seeds);
    let batches = env_list("CASINO_ORACLE_BATCHES", &[DEFAULT_BATCHES])[0] as usize;
    let started = Instant::now();
    let pg = tokio::task::spawn_blocking(TestPostgres::start).await.expect("starting PostgreSQL");
    let client = pg.connect().await;
    client.batch_execute(ORACLE_SCHEMA).await.unwrap_or_else(|e| panic!("creating the oracle schema: {e:?}"));
    let config = pipeline_config(retention);
    let settings = format!(
        "INSERT INTO settings VALUES ('{} microseconds', '{} microseconds', {}, {});",
        config.casino.window, config.retention, config.casino.thresholds.hotel, config.casino.thresholds.drink
    );
    client.batch_execute(&settings).await.expect("settings");
    let label = format!("workers={workers} retention={}s", retention / SECOND);

    let mut coverage = [0i64; COVERAGE.len()];
    for &seed in &seeds {
        let seed_started = Instant::now();
        client.batch_execute("TRUNCATE gaming_transactions, redeemed_offers, casino_settings;").await.expect("truncating");
        let compute = ComputeConfig { workers, pipelines: config.clone(), ..Default::default() };
        let engine = Engine::start(&compute).expect("starting diffmart");
        let context = SeedContext { engine: &engine, client: &client, seed, label: &label, settings: &settings };
        let stats = run_seed(context, batches, &mut coverage).await;
        drop(engine);
        eprintln!(
            "[{label}] seed {seed}: {batches} batches, {} updates, final view sizes {:?}, {} shrinking comparisons, \
             {:?}",
            stats.updates,
            stats.final_sizes,
            stats.shrinks,
            seed_started.elapsed()
        );
        assert!(stats.shrinks > 0, "seed {seed}: no view ever shrank; the history misses retractions");
    }
    let report: Vec<String> = COVERAGE.iter().zip(coverage).map(|((name, _), n)| format!("{name}: {n}")).collect();
    eprintln!("[{label}] rows compared, by case: {}", report.join(", "));
    let defaults =
        std::env::var_os("CASINO_ORACLE_SEEDS").is_none() && std::env::var_os("CASINO_ORACLE_BATCHES").is_none();
    if defaults {
        for ((name, _), n) in COVERAGE.iter().zip(coverage) {
            assert!(n > 0, "the histories never reached case \"{name}\"");
        }
    }
    eprintln!("[{label}] done in {:?}", started.elapsed());
}

struct SeedContext<'a> {
    engine: &'a Arc<Engine>,
    client: &'a tokio_postgres::Client,
    seed: u64,
    label: &'a str,
    settings: &'a str,
}

struct SeedStats {
    updates: usize,
    shrinks: usize,
    final_sizes: Vec<usize>,
}

async fn run_seed(context: SeedContext<'_>, batches: usize, coverage: &mut [i64]) -> SeedStats {
    let SeedContext { engine, client, seed, label, settings } = context;
    let id = |name: &str| engine.catalog().id(name).unwrap_or_else(|| panic!("diffmart has no relation {name}"));
    let inputs =
        Inputs { transactions: id("gaming_transactions"), redeemed: id("redeemed_offers"), settings: id("casino_settings") };
    let mut views = OracleViews::new(engine, &VIEWS, key_columns);
    let mut history = History::new(seed);
    let mut script = format!("-- casino oracle: seed {seed}, {label}\n{ORACLE_SCHEMA}\n{settings}\n");
    let mut stats = SeedStats { updates: 0, shrinks: 0, final_sizes: Vec::new() };

    for batch in 1..=batches {
        let batch_label = format!("casino oracle: seed {seed}, {label}, batch {batch} of {batches}");
        let ops = history.batch();
        let mut updates = Vec::new();
        let mut batch_sql = String::new();
        for op in &ops {
            engine_updates(op, &inputs, &mut updates);
            batch_sql.push_str(&pg_statement(op, batch));
            batch_sql.push('\n');
        }
        stats.updates += updates.len();
        // Every batch gets its own logical time, even an empty one.
        oracle::apply_batch(client, engine, Batch { label: &batch_label, sql: &batch_sql, updates }, &mut script).await;
        let failures = views.compare(client, &engine.snapshot()).await;
        if !failures.is_empty() {
            let file = format!("casino_oracle_seed{seed}_{label}_batch{batch}");
            oracle::fail_with_history(&batch_label, &file, &failures, &script, &batch_sql);
        }
        for (slot, (_, sql)) in coverage.iter_mut().zip(COVERAGE) {
            let row = client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            *slot += row.get::<_, i64>(0);
        }
    }
    stats.shrinks = views.shrinks;
    stats.final_sizes = views.sizes;
    stats
}

// ------------------------------------------------------------------------------------------
// The one-redemption-per-day policy over pgwire
// ------------------------------------------------------------------------------------------

async fn start_server() -> (Arc<Engine>, SocketAddr) {
    let compute = ComputeConfig { workers: 2, pipelines: pipeline_config(LONG_RETENTION), ..Default::default() };
    let engine = Engine::start(&compute).expect("engine starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    diffmart::pgwire::spawn(engine.clone(), listener);
    (engine, addr)
}

async fn connect(addr: SocketAddr) -> tokio_postgres::Client {
    let config = format!("host={} port={} user=root dbname=dev", addr.ip(), addr.port());
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await.expect("connects");
    tokio::spawn(connection);
    client
}

/// `pending_offers` as (member_id, offer_type, metric), sorted.
async fn pending(client: &tokio_postgres::Client) -> Vec<(i64, String, Decimal)> {
    let rows = client
        .query("SELECT member_id, offer_type, metric FROM pending_offers ORDER BY member_id, offer_type", &[])
        .await
        .expect("reading pending_offers");
    rows.iter().map(|r| (r.get(0), r.get(1), r.get::<_, Decimal>(2).normalize())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_redemption_of_a_type_on_one_day_fails_with_23505_and_changes_nothing() {
    let (engine, addr) = start_server().await;
    let client = connect(addr).await;
    // Member 1001 spends 700 (a hotel offer at threshold 600) and loses 300 (a drink
    // offer at 250) in the window [00:10, 00:11) of 2024-05-02.
    let at = T0 + 30 * MICROS_PER_MINUTE + 5 * SECOND;
    let transactions = engine.catalog().id("gaming_transactions").unwrap();
    let rows = [("bet", 40_000), ("bet", 30_000), ("win", 40_000)].into_iter().enumerate().map(|(i, (kind, cents))| {
        let tx = GamingTransaction {
            transaction_id: i as i64 + 1,
            member_id: 1001,
            member_name: Some("Member 1001".into()),
            transaction_type: kind.into(),
            amount: Decimal::new(cents, 2),
            game_type: "poker".into(),
            transaction_time: at + i as i64 * SECOND,
        };
        Update::insert(transactions, tx.to_row())
    });
    engine.apply(rows.collect()).await.expect("transactions");
    let offers = vec![(1001, "drink".to_string(), Decimal::from(300)), (1001, "hotel".to_string(), Decimal::from(700))];
    assert_eq!(pending(&client).await, offers);

    // The hotel offer is redeemed: it leaves pending_offers.
    client
        .batch_execute(
            "INSERT INTO redeemed_offers VALUES (1001, 'Member 1001', 'hotel', '2024-05-02 00:12:00', '2024-05-02')",
        )
        .await
        .expect("the first redemption");
    assert_eq!(pending(&client).await, offers[..1].to_vec());

    // A second hotel redemption that day is refused, whatever else differs.
    for sql in [
        "INSERT INTO redeemed_offers VALUES (1001, 'Member 1001', 'hotel', '2024-05-02 09:00:00', '2024-05-02')",
        "INSERT INTO redeemed_offers (member_id, offer_type, redemption_date) VALUES (1001, 'hotel', '2024-05-02')",
    ] {
        let error = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(error.code(), Some(&SqlState::UNIQUE_VIOLATION), "{sql}: {error}");
    }
    // So is a statement of several rows where only one collides: none of them lands.
    let error = client
        .simple_query(
            "INSERT INTO redeemed_offers VALUES (1001, 'Member 1001', 'drink', NULL, '2024-05-02'), \
             (1001, 'Member 1001', 'hotel', NULL, '2024-05-02')",
        )
        .await
        .expect_err("a batch with a duplicate");
    assert_eq!(error.code(), Some(&SqlState::UNIQUE_VIOLATION), "{error}");
    // Text results: the server's own rendering of timestamp and date.
    let messages = client
        .simple_query("SELECT member_id, offer_type, redeemed_at, redemption_date FROM redeemed_offers")
        .await
        .unwrap();
    let table: Vec<Vec<String>> = messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                Some((0..4).map(|i| row.get(i).unwrap_or("NULL").to_string()).collect())
            }
            _ => None,
        })
        .collect();
    assert_eq!(table.len(), 1, "the refused redemptions changed the table: {table:?}");
    assert_eq!(table[0][..2], ["1001", "hotel"]);
    assert!(table[0][2].starts_with("2024-05-02") && table[0][2].contains("00:12:00"), "{table:?}");
    assert_eq!(table[0][3], "2024-05-02");
    assert_eq!(pending(&client).await, offers[..1].to_vec(), "the refused redemptions changed pending_offers");

    // The other type the same day, and the same type another day, are fine.
    client
        .batch_execute(
            "INSERT INTO redeemed_offers VALUES (1001, 'Member 1001', 'drink', NULL, '2024-05-02'), \
             (1001, 'Member 1001', 'hotel', NULL, '2024-05-03')",
        )
        .await
        .expect("other type, other day");
    assert!(pending(&client).await.is_empty());
    // Deleting the day's hotel redemption brings its offer back.
    client
        .batch_execute("DELETE FROM redeemed_offers WHERE offer_type = 'hotel' AND redemption_date = '2024-05-02'")
        .await
        .unwrap();
    assert_eq!(pending(&client).await, offers[1..].to_vec());

    // The views read like the seed's dashboard queries, emoji included.
    let row = client
        .query_one("SELECT reward_type, total_spend FROM hotel_room_offers ORDER BY total_spend DESC", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "🏨 Complimentary Hotel Room (1 night)");
    assert_eq!(row.get::<_, Decimal>(1), Decimal::from(700));
}
