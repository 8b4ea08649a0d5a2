//! C. Casino loyalty (`shared/spec/PIPELINES.md` §C, seed 003).
//!
//! One event stream (`gaming_transactions`) and one table (`redeemed_offers`). Each view
//! sits under its SQL (PostgreSQL dialect; `INTERVAL '5 minutes'` stands for the
//! `--casino-window` launch option, 5000 and 1000 for `--hotel-threshold` and
//! `--drink-threshold`). The event-time machinery (watermark, window close, late rows,
//! retention) is in [`windows`], whose documentation defines it precisely.
//!
//! Where state lives, and why it stays bounded:
//! - per-member windows (`member_daily_summary`, `member_window_closed` and the views on
//!   them): a keyed timely operator holding windows until they are `retention` of event
//!   time behind the watermark, then dropping them (their rows leave the views);
//! - `member_leaderboard`: one record per member, in the same operator;
//! - `game_stats`: `explode` + `count`, one record per game;
//! - `pending_offers`: the qualifying windows still retained, and the redemptions.

pub mod windows;

use std::sync::LazyLock;

use differential_dataflow::VecCollection;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use self::windows::{MemberChange, MemberLifetime, MemberWindow, event_time_views};
use crate::boundary::{Inputs, View};
use crate::datum::{
    Column, ColumnType, Datum, MICROS_PER_MINUTE, Micros, Record, RelationKind, RelationSpec, Row, RowError, RowReader,
    col, col_not_null,
};
use crate::money::MoneySum;
use crate::operators::{left_join_unique, max_per_key, unzip};
use crate::{PipelineConfig, Time};

type Coll<'s, D> = VecCollection<'s, Time, D>;

/// Money columns: amounts arrive with at most two decimal places.
pub const MONEY: ColumnType = ColumnType::Numeric { scale: 2 };
use ColumnType::{Date, Int64, Text, Timestamp};

const MICROS_PER_DAY: Micros = 24 * 60 * MICROS_PER_MINUTE;

pub const HOTEL_REWARD: &str = "🏨 Complimentary Hotel Room (1 night)";
pub const DRINK_REWARD: &str = "🍹 Complimentary Premium Drink";
/// `offer_type` of `redeemed_offers` and `pending_offers`.
pub const HOTEL_OFFER: &str = "hotel";
pub const DRINK_OFFER: &str = "drink";

// ------------------------------------------------------------------------------------------
// Inputs
// ------------------------------------------------------------------------------------------

/// `gaming_transactions` (Kafka topic `gaming-transactions`). Every column but the
/// member's name is required: a message without one is refused at the source.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GamingTransaction {
    pub transaction_id: i64,
    pub member_id: i64,
    pub member_name: Option<String>,
    /// `bet`, `win`, or anything else (`cashout`), which only counts in COUNT(*).
    pub transaction_type: String,
    pub amount: Decimal,
    pub game_type: String,
    pub transaction_time: Micros,
}

/// `redeemed_offers` (table, primary key `(member_id, offer_type, redemption_date)`):
/// the key is the one-offer-per-type-per-day policy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RedeemedOffer {
    pub member_id: i64,
    pub member_name: Option<String>,
    pub offer_type: String,
    pub redeemed_at: Option<Micros>,
    /// Days since 1970-01-01.
    pub redemption_date: i32,
}

fn view(name: &'static str, columns: Vec<Column>) -> RelationSpec {
    RelationSpec { name, kind: RelationKind::View, columns }
}

static GAMING_TRANSACTIONS: LazyLock<RelationSpec> = LazyLock::new(|| RelationSpec {
    name: "gaming_transactions",
    kind: RelationKind::Source { event_time_column: 6 },
    columns: vec![
        col_not_null("transaction_id", Int64),
        col_not_null("member_id", Int64),
        col("member_name", Text),
        col_not_null("transaction_type", Text),
        col_not_null("amount", MONEY),
        col_not_null("game_type", Text),
        col_not_null("transaction_time", Timestamp),
    ],
});
static REDEEMED_OFFERS: LazyLock<RelationSpec> = LazyLock::new(|| RelationSpec {
    name: "redeemed_offers",
    kind: RelationKind::Table { primary_key: vec![0, 2, 4] },
    columns: vec![
        col_not_null("member_id", Int64),
        col("member_name", Text),
        col_not_null("offer_type", Text),
        col("redeemed_at", Timestamp),
        col_not_null("redemption_date", Date),
    ],
});

impl Record for GamingTransaction {
    fn spec() -> &'static RelationSpec {
        &GAMING_TRANSACTIONS
    }
    fn to_row(&self) -> Row {
        vec![
            self.transaction_id.into(),
            self.member_id.into(),
            self.member_name.clone().into(),
            self.transaction_type.as_str().into(),
            self.amount.into(),
            self.game_type.as_str().into(),
            Datum::Timestamp(self.transaction_time),
        ]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(GamingTransaction {
            transaction_id: r.i64(0)?,
            member_id: r.i64(1)?,
            member_name: r.opt_text(2)?,
            transaction_type: r.text(3)?,
            amount: r.decimal(4)?,
            game_type: r.text(5)?,
            transaction_time: r.timestamp(6)?,
        })
    }
}

impl Record for RedeemedOffer {
    fn spec() -> &'static RelationSpec {
        &REDEEMED_OFFERS
    }
    fn to_row(&self) -> Row {
        vec![
            self.member_id.into(),
            self.member_name.clone().into(),
            self.offer_type.as_str().into(),
            self.redeemed_at.map_or(Datum::Null, Datum::Timestamp),
            Datum::Date(self.redemption_date),
        ]
    }
    fn read(r: &RowReader<'_>) -> Result<Self, RowError> {
        Ok(RedeemedOffer {
            member_id: r.i64(0)?,
            member_name: r.opt_text(1)?,
            offer_type: r.text(2)?,
            redeemed_at: r.opt_timestamp(3)?,
            redemption_date: r.date(4)?,
        })
    }
}

pub fn input_specs() -> Vec<&'static RelationSpec> {
    vec![GamingTransaction::spec(), RedeemedOffer::spec()]
}

// ------------------------------------------------------------------------------------------
// Views
// ------------------------------------------------------------------------------------------

fn member_window_columns() -> Vec<Column> {
    vec![
        col("member_id", Int64),
        col("member_name", Text),
        col("window_start", Timestamp),
        col("window_end", Timestamp),
        col("total_spend", MONEY),
        col("total_winnings", MONEY),
        col("net_amount", MONEY),
        col("transaction_count", Int64),
        col("last_transaction", Timestamp),
    ]
}

static MEMBER_DAILY_SUMMARY: LazyLock<RelationSpec> =
    LazyLock::new(|| view("member_daily_summary", member_window_columns()));
static HOTEL_ROOM_OFFERS: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "hotel_room_offers",
        vec![
            col("member_id", Int64),
            col("member_name", Text),
            col("total_spend", MONEY),
            col("transaction_count", Int64),
            col("net_amount", MONEY),
            col("last_transaction", Timestamp),
            col("window_start", Timestamp),
            col("window_end", Timestamp),
            col("reward_type", Text),
        ],
    )
});
static DRINK_OFFERS: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "drink_offers",
        vec![
            col("member_id", Int64),
            col("member_name", Text),
            col("total_spend", MONEY),
            col("transaction_count", Int64),
            col("net_amount", MONEY),
            col("loss_amount", MONEY),
            col("last_transaction", Timestamp),
            col("window_start", Timestamp),
            col("window_end", Timestamp),
            col("reward_type", Text),
        ],
    )
});
static GAME_STATS: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "game_stats",
        vec![
            col("game_type", Text),
            col("total_bets", Int64),
            col("total_wagered", MONEY),
            col("total_paid_out", MONEY),
            col("house_edge", MONEY),
        ],
    )
});
static MEMBER_LEADERBOARD: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "member_leaderboard",
        vec![
            col("member_id", Int64),
            col("member_name", Text),
            col("lifetime_spend", MONEY),
            col("lifetime_winnings", MONEY),
            col("lifetime_transactions", Int64),
            col("last_seen", Timestamp),
        ],
    )
});
static MEMBER_WINDOW_CLOSED: LazyLock<RelationSpec> =
    LazyLock::new(|| view("member_window_closed", member_window_columns()));
static PENDING_OFFERS: LazyLock<RelationSpec> = LazyLock::new(|| {
    view(
        "pending_offers",
        vec![
            col("member_id", Int64),
            col("member_name", Text),
            col("offer_type", Text),
            col("metric", MONEY),
            col("window_start", Timestamp),
            col("window_end", Timestamp),
        ],
    )
});
static CASINO_WATERMARK: LazyLock<RelationSpec> =
    LazyLock::new(|| view("casino_watermark", vec![col("watermark", Timestamp), col("late_transactions", Int64)]));

/// The casino views, in the order [`casino`] returns them.
pub fn view_specs() -> Vec<&'static RelationSpec> {
    vec![
        &MEMBER_DAILY_SUMMARY,
        &HOTEL_ROOM_OFFERS,
        &DRINK_OFFERS,
        &GAME_STATS,
        &MEMBER_LEADERBOARD,
        &MEMBER_WINDOW_CLOSED,
        &PENDING_OFFERS,
        &CASINO_WATERMARK,
    ]
}

/// Builds the casino views from its inputs, in `view_specs()` order.
pub fn build<'s>(config: &PipelineConfig, inputs: &mut Inputs<'s>) -> Vec<View<'s>> {
    let transactions = inputs.records();
    let redeemed_offers = inputs.records();
    casino(config, transactions, redeemed_offers)
}

/// Builds the casino views, in `view_specs()` order.
pub fn casino<'s>(
    config: &PipelineConfig,
    transactions: Coll<'s, GamingTransaction>,
    redeemed_offers: Coll<'s, RedeemedOffer>,
) -> Vec<View<'s>> {
    let settings = &config.casino;
    // Each view family gets its part of a transaction, not a copy of all of it.
    let (transactions, plays) = unzip(transactions, "CasinoGamePlays", |tx| {
        let play = GamePlay::of(&tx);
        (tx, Some(play))
    });
    let event_time = event_time_views(transactions, settings.window, config.retention);
    let summary = member_daily_summary(event_time.daily_summary);
    let hotel = hotel_room_offers(summary.clone(), settings.hotel_threshold);
    let drink = drink_offers(summary.clone(), settings.drink_threshold);
    let games = game_stats(plays);
    let leaderboard = member_leaderboard(event_time.leaderboard);
    let closed = member_window_closed(event_time.window_closed);
    let watermark = casino_watermark(event_time.watermark);
    let pending = pending_offers(hotel.clone(), drink.clone(), redeemed_offers);

    vec![
        View::new(summary, |w| member_window_row(&w)),
        View::new(hotel, |w| {
            let t = &w.totals;
            vec![
                w.member_id.into(),
                w.member_name.clone().into(),
                t.total_spend.into(),
                t.transaction_count.into(),
                t.net_amount().into(),
                Datum::Timestamp(t.last_transaction),
                Datum::Timestamp(w.window_start),
                Datum::Timestamp(w.window_end),
                HOTEL_REWARD.into(),
            ]
        }),
        View::new(drink, |w| {
            let t = &w.totals;
            vec![
                w.member_id.into(),
                w.member_name.clone().into(),
                t.total_spend.into(),
                t.transaction_count.into(),
                t.net_amount().into(),
                t.net_amount().abs().into(),
                Datum::Timestamp(t.last_transaction),
                Datum::Timestamp(w.window_start),
                Datum::Timestamp(w.window_end),
                DRINK_REWARD.into(),
            ]
        }),
        View::new(games, |(game_type, totals)| {
            vec![
                game_type.into(),
                totals.transactions.into(),
                totals.wagered.into(),
                totals.paid_out.into(),
                (totals.paid_out - totals.wagered).into(),
            ]
        }),
        View::new(leaderboard, |m| {
            let t = &m.totals;
            vec![
                m.member_id.into(),
                m.member_name.clone().into(),
                t.total_spend.into(),
                t.total_winnings.into(),
                t.transaction_count.into(),
                Datum::Timestamp(t.last_transaction),
            ]
        }),
        View::new(closed, |w| member_window_row(&w)),
        View::new(pending, |p| {
            vec![
                p.member_id.into(),
                p.member_name.into(),
                p.offer_type.into(),
                p.metric.into(),
                Datum::Timestamp(p.window_start),
                Datum::Timestamp(p.window_end),
            ]
        }),
        View::new(watermark, |(watermark, late)| vec![Datum::Timestamp(watermark), late.into()]),
    ]
}

fn member_window_row(w: &MemberWindow) -> Row {
    let t = &w.totals;
    vec![
        w.member_id.into(),
        w.member_name.clone().into(),
        Datum::Timestamp(w.window_start),
        Datum::Timestamp(w.window_end),
        t.total_spend.into(),
        t.total_winnings.into(),
        t.net_amount().into(),
        t.transaction_count.into(),
        Datum::Timestamp(t.last_transaction),
    ]
}

/// ```sql
/// CREATE MATERIALIZED VIEW member_daily_summary AS
/// SELECT member_id, member_name,
///        date_bin(INTERVAL '5 minutes', transaction_time, TIMESTAMP '1970-01-01') AS window_start,
///        date_bin(INTERVAL '5 minutes', transaction_time, TIMESTAMP '1970-01-01')
///          + INTERVAL '5 minutes' AS window_end,
///        SUM(CASE WHEN transaction_type = 'bet' THEN amount ELSE 0 END) AS total_spend,
///        SUM(CASE WHEN transaction_type = 'win' THEN amount ELSE 0 END) AS total_winnings,
///        SUM(CASE WHEN transaction_type = 'win' THEN amount ELSE 0 END)
///          - SUM(CASE WHEN transaction_type = 'bet' THEN amount ELSE 0 END) AS net_amount,
///        COUNT(*) AS transaction_count,
///        MAX(transaction_time) AS last_transaction
/// FROM gaming_transactions
/// GROUP BY member_id, member_name, window_start, window_end
/// -- retention: windows more than --retention behind the watermark are dropped
/// HAVING window_end > (SELECT watermark FROM casino_watermark) - INTERVAL '24 hours'
///     OR NOT EXISTS (SELECT 1 FROM casino_watermark);
/// ```
/// Every row counts, late ones included (only `member_window_closed` drops them).
fn member_daily_summary<'s>(changes: Coll<'s, MemberChange>) -> Coll<'s, MemberWindow> {
    changes.flat_map(|change| match change {
        MemberChange::DailySummary(window) => Some(window),
        _ => None,
    })
}

/// ```sql
/// CREATE MATERIALIZED VIEW hotel_room_offers AS
/// SELECT member_id, member_name, total_spend, transaction_count, net_amount, last_transaction,
///        window_start, window_end, '🏨 Complimentary Hotel Room (1 night)' AS reward_type
/// FROM member_daily_summary
/// WHERE total_spend >= 5000;
/// ```
fn hotel_room_offers<'s>(summary: Coll<'s, MemberWindow>, threshold: Decimal) -> Coll<'s, MemberWindow> {
    summary.filter(move |w| w.totals.total_spend >= threshold)
}

/// ```sql
/// CREATE MATERIALIZED VIEW drink_offers AS
/// SELECT member_id, member_name, total_spend, transaction_count, net_amount,
///        ABS(net_amount) AS loss_amount, last_transaction, window_start, window_end,
///        '🍹 Complimentary Premium Drink' AS reward_type
/// FROM member_daily_summary
/// WHERE net_amount < 0 AND ABS(net_amount) >= 1000;
/// ```
fn drink_offers<'s>(summary: Coll<'s, MemberWindow>, threshold: Decimal) -> Coll<'s, MemberWindow> {
    summary.filter(move |w| {
        let net = w.totals.net_amount();
        net < Decimal::ZERO && net.abs() >= threshold
    })
}

/// What `game_stats` reads of a transaction: its game, and its amount as a bet or a
/// win (zero for other types, which only count in COUNT(*)).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GamePlay {
    pub game_type: String,
    pub bet: Decimal,
    pub win: Decimal,
}

impl GamePlay {
    fn of(tx: &GamingTransaction) -> GamePlay {
        let (bet, win) = match tx.transaction_type.as_str() {
            "bet" => (tx.amount, Decimal::ZERO),
            "win" => (Decimal::ZERO, tx.amount),
            _ => (Decimal::ZERO, Decimal::ZERO),
        };
        GamePlay { game_type: tx.game_type.clone(), bet, win }
    }
}

/// All-time totals of one game.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameTotals {
    pub transactions: i64,
    pub wagered: Decimal,
    pub paid_out: Decimal,
}

/// ```sql
/// CREATE MATERIALIZED VIEW game_stats AS
/// SELECT game_type,
///        COUNT(*) AS total_bets,
///        SUM(CASE WHEN transaction_type = 'bet' THEN amount ELSE 0 END) AS total_wagered,
///        SUM(CASE WHEN transaction_type = 'win' THEN amount ELSE 0 END) AS total_paid_out,
///        SUM(CASE WHEN transaction_type = 'win' THEN amount ELSE 0 END)
///          - SUM(CASE WHEN transaction_type = 'bet' THEN amount ELSE 0 END) AS house_edge
/// FROM gaming_transactions
/// GROUP BY game_type;
/// ```
/// `total_bets` counts every transaction and `house_edge` is wins − bets, both as the
/// specification has them. Each transaction is a `(rows, bets, wins)` difference of its
/// game: one record per game, whatever the history.
fn game_stats<'s>(plays: Coll<'s, GamePlay>) -> Coll<'s, (String, GameTotals)> {
    plays
        .explode(|play| Some((play.game_type, (1isize, MoneySum::new(play.bet), MoneySum::new(play.win)))))
        .count_total()
        .map(|(game_type, (rows, bets, wins))| {
            let totals = GameTotals {
                transactions: rows as i64,
                // Every row adds a term (0 for other types), so neither sum is ever NULL.
                wagered: bets.total().unwrap_or_default(),
                paid_out: wins.total().unwrap_or_default(),
            };
            (game_type, totals)
        })
}

/// ```sql
/// CREATE MATERIALIZED VIEW member_leaderboard AS
/// SELECT member_id, member_name,
///        SUM(CASE WHEN transaction_type = 'bet' THEN amount ELSE 0 END) AS lifetime_spend,
///        SUM(CASE WHEN transaction_type = 'win' THEN amount ELSE 0 END) AS lifetime_winnings,
///        COUNT(*) AS lifetime_transactions,
///        MAX(transaction_time) AS last_seen
/// FROM gaming_transactions
/// GROUP BY member_id, member_name;
/// ```
/// All-time, late rows included; one record per member in the member operator.
fn member_leaderboard<'s>(changes: Coll<'s, MemberChange>) -> Coll<'s, MemberLifetime> {
    changes.flat_map(|change| match change {
        MemberChange::Leaderboard(member) => Some(member),
        _ => None,
    })
}

/// RisingWave's `EMIT ON WINDOW CLOSE` over the transactions that were on time:
/// ```sql
/// CREATE MATERIALIZED VIEW member_window_closed AS
/// SELECT member_id, member_name,
///        date_bin(INTERVAL '5 minutes', transaction_time, TIMESTAMP '1970-01-01') AS window_start,
///        date_bin(INTERVAL '5 minutes', transaction_time, TIMESTAMP '1970-01-01')
///          + INTERVAL '5 minutes' AS window_end,
///        SUM(CASE WHEN transaction_type = 'bet' THEN amount ELSE 0 END) AS total_spend,
///        SUM(CASE WHEN transaction_type = 'win' THEN amount ELSE 0 END) AS total_winnings,
///        SUM(CASE WHEN transaction_type = 'win' THEN amount ELSE 0 END)
///          - SUM(CASE WHEN transaction_type = 'bet' THEN amount ELSE 0 END) AS net_amount,
///        COUNT(*) AS transaction_count,
///        MAX(transaction_time) AS last_transaction
/// FROM gaming_transactions g
/// -- on time: not older than the watermark of the batches before its own
/// WHERE NOT g.transaction_time < (SELECT MAX(e.transaction_time) - INTERVAL '10 seconds'
///                                 FROM gaming_transactions e WHERE e.batch < g.batch)
///    OR NOT EXISTS (SELECT 1 FROM gaming_transactions e WHERE e.batch < g.batch)
/// GROUP BY member_id, member_name, window_start, window_end
/// HAVING window_end <= (SELECT watermark FROM casino_watermark)
///    AND window_end > (SELECT watermark FROM casino_watermark) - INTERVAL '24 hours';
/// ```
/// (`batch` is the arrival batch, which SQL does not see: see [`windows`].)
fn member_window_closed<'s>(changes: Coll<'s, MemberChange>) -> Coll<'s, MemberWindow> {
    changes.flat_map(|change| match change {
        MemberChange::WindowClosed(window) => Some(window),
        _ => None,
    })
}

/// A row of `pending_offers`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PendingOffer {
    pub member_id: i64,
    pub member_name: Option<String>,
    pub offer_type: String,
    pub metric: Decimal,
    pub window_start: Micros,
    pub window_end: Micros,
}

/// The UTC date of a timestamp, as days since 1970-01-01.
pub fn utc_date(t: Micros) -> i32 {
    t.div_euclid(MICROS_PER_DAY) as i32
}

/// ```sql
/// CREATE MATERIALIZED VIEW pending_offers AS
/// WITH qualifying AS (
///   SELECT member_id, member_name, 'hotel' AS offer_type, total_spend AS metric, window_start, window_end
///   FROM hotel_room_offers
///   UNION ALL
///   SELECT member_id, member_name, 'drink', loss_amount, window_start, window_end
///   FROM drink_offers),
/// latest AS (
///   SELECT *, ROW_NUMBER() OVER (PARTITION BY member_id, offer_type
///                                ORDER BY window_start DESC, member_name DESC NULLS LAST,
///                                         metric DESC) AS rn
///   FROM qualifying)
/// SELECT member_id, member_name, offer_type, metric, window_start, window_end
/// FROM latest l
/// WHERE rn = 1
///   AND NOT EXISTS (SELECT 1 FROM redeemed_offers r
///                   WHERE r.member_id = l.member_id AND r.offer_type = l.offer_type
///                     AND r.redemption_date = l.window_start::date);
/// ```
/// "Today" is the UTC date of the qualifying window's start, not the wall clock: the
/// answer depends only on the data, and a window that qualified yesterday is not hidden
/// by a redemption today. Ties on `window_start` (a member seen under two names) go to
/// the greater name, then the greater metric, so the answer never depends on order.
fn pending_offers<'s>(
    hotel: Coll<'s, MemberWindow>,
    drink: Coll<'s, MemberWindow>,
    redeemed_offers: Coll<'s, RedeemedOffer>,
) -> Coll<'s, PendingOffer> {
    let qualifying = |offer_type: &'static str, metric: fn(&MemberWindow) -> Decimal| {
        move |w: MemberWindow| {
            let metric = metric(&w);
            ((w.member_id, offer_type.to_string()), (w.window_start, w.member_name, metric, w.window_end))
        }
    };
    let candidates = hotel
        .map(qualifying(HOTEL_OFFER, |w| w.totals.total_spend))
        .concat(drink.map(qualifying(DRINK_OFFER, |w| w.totals.net_amount().abs())));
    let redeemed_days =
        redeemed_offers.map(|r| ((r.member_id, r.offer_type, r.redemption_date), ())).distinct_total().arrange_by_key();
    // Windows are retracted when they expire, so nothing here is append-only: no forgetting.
    let best = max_per_key(candidates, None).map(
        |((member_id, offer_type), (window_start, member_name, metric, window_end))| {
            ((member_id, offer_type, utc_date(window_start)), (member_name, metric, window_start, window_end))
        },
    );
    left_join_unique(best.arrange_by_key(), redeemed_days, |(member_id, offer_type, _day), best, redeemed| {
        let (member_name, metric, window_start, window_end) = best;
        redeemed.is_none().then(|| PendingOffer {
            member_id: *member_id,
            member_name: member_name.clone(),
            offer_type: offer_type.clone(),
            metric: *metric,
            window_start: *window_start,
            window_end: *window_end,
        })
    })
}

/// Launch options of the casino pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CasinoConfig {
    /// Tumbling window size of `member_daily_summary` (5 minutes by default).
    pub window: crate::datum::Micros,
    /// `hotel_room_offers`: total_spend at or above this.
    pub hotel_threshold: rust_decimal::Decimal,
    /// `drink_offers`: a net loss at least this large.
    pub drink_threshold: rust_decimal::Decimal,
}

impl Default for CasinoConfig {
    fn default() -> Self {
        CasinoConfig {
            window: 5 * crate::datum::MICROS_PER_MINUTE,
            hotel_threshold: rust_decimal::Decimal::from(5000),
            drink_threshold: rust_decimal::Decimal::from(1000),
        }
    }
}

/// `casino_watermark(watermark, late_transactions)`: one row once the first transaction
/// has arrived. `watermark` is the newest `transaction_time` seen minus 10 seconds;
/// `late_transactions` counts the transactions that arrived older than the watermark
/// (see [`windows`]) and were left out of `member_window_closed`.
/// ```sql
/// CREATE MATERIALIZED VIEW casino_watermark AS
/// SELECT MAX(transaction_time) - INTERVAL '10 seconds' AS watermark,
///        COUNT(*) FILTER (WHERE <late, as in member_window_closed>) AS late_transactions
/// FROM gaming_transactions
/// HAVING COUNT(*) > 0;
/// ```
fn casino_watermark<'s>(watermark: Coll<'s, (Micros, i64)>) -> Coll<'s, (Micros, i64)> {
    // Computed next to the member windows, which need the same watermark.
    watermark
}
