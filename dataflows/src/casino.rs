//! C. Casino loyalty (`shared/spec/PIPELINES.md` §C, seed 003).
//!
//! One event stream (`gaming_transactions`) and two tables (`redeemed_offers`, and
//! `casino_settings`, the offer thresholds: see [`settings`]). Each view sits under its SQL
//! (PostgreSQL dialect; `INTERVAL '5 minutes'` stands for the `--casino-window` launch
//! option). The event-time machinery (watermark, window close, late rows, retention) is in
//! [`windows`], whose documentation defines it precisely.
//!
//! Where state lives, and why it stays bounded:
//! - per-member windows (`member_daily_summary`, `member_window_closed` and the views on
//!   them): a keyed timely operator holding windows until they are `retention` of event
//!   time behind the watermark, then dropping them (their rows leave the views);
//! - `member_leaderboard`: one record per member, in the same operator;
//! - `game_stats`: `explode` + `count`, one record per game;
//! - `hotel_room_offers`, `drink_offers`: the retained windows and the thresholds in force,
//!   arranged for their cross join ([`settings`]);
//! - `pending_offers`: the qualifying windows still retained, and the redemptions.
//!
//! At a checkpoint, every path from `gaming_transactions` passes a history-dependent
//! operator before any operator that holds state: the member windows and the watermark
//! ([`windows`]), and the accumulation tap in front of `game_stats`' count. The views
//! further on, and the tables `redeemed_offers` and `casino_settings` (fed again at a
//! restore as their current rows), need nothing saved.

pub mod settings;
pub mod windows;

use differential_dataflow::VecCollection;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub use self::settings::{CasinoSettings, Thresholds};
use self::windows::{MemberChange, MemberLifetime, MemberWindow, event_time_views};
use crate::boundary::{Inputs, View};
use crate::checkpoint::{Checkpoints, Slot};
use crate::datum::{ColumnType, MICROS_PER_MINUTE, Micros, Record, RelationSpec};
use crate::money::MoneySum;
use crate::operators::{ByKey, accumulated, left_join_unique, max_per_key, unzip};
use crate::relation::relation;
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

relation! {
    /// `gaming_transactions` (Kafka topic `gaming-transactions`). Every column but the
    /// member's name is required: a message without one is refused at the source.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct GamingTransaction: source "gaming_transactions" (event_time = transaction_time) {
        pub transaction_id: i64 = Int64,
        pub member_id: i64 = Int64,
        pub member_name: Option<String> = Text,
        /// `bet`, `win`, or anything else (`cashout`), which only counts in COUNT(*).
        pub transaction_type: String = Text,
        pub amount: Decimal = MONEY,
        pub game_type: String = Text,
        pub transaction_time: Micros = Timestamp,
    }
}

relation! {
    /// `redeemed_offers` (table): the key is the one-offer-per-type-per-day policy.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct RedeemedOffer: table "redeemed_offers" (primary_key = member_id, offer_type, redemption_date) {
        pub member_id: i64 = Int64,
        pub member_name: Option<String> = Text,
        pub offer_type: String = Text,
        pub redeemed_at: Option<Micros> = Timestamp,
        /// Days since 1970-01-01.
        pub redemption_date: i32 = Date,
    }
}

pub fn input_specs() -> Vec<&'static RelationSpec> {
    vec![GamingTransaction::spec(), RedeemedOffer::spec(), CasinoSettings::spec()]
}

// ------------------------------------------------------------------------------------------
// Views
// ------------------------------------------------------------------------------------------

relation! {
    /// The columns of `member_daily_summary` and `member_window_closed`: one member's window.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct MemberWindowColumns {
        pub member_id: i64 = Int64,
        pub member_name: Option<String> = Text,
        pub window_start: Micros = Timestamp,
        pub window_end: Micros = Timestamp,
        pub total_spend: Decimal = MONEY,
        pub total_winnings: Decimal = MONEY,
        pub net_amount: Decimal = MONEY,
        pub transaction_count: i64 = Int64,
        pub last_transaction: Micros = Timestamp,
    }
}

impl From<MemberWindow> for MemberWindowColumns {
    fn from(w: MemberWindow) -> MemberWindowColumns {
        let t = w.totals;
        MemberWindowColumns {
            member_id: w.member_id,
            member_name: w.member_name,
            window_start: w.window_start,
            window_end: w.window_end,
            total_spend: t.total_spend,
            total_winnings: t.total_winnings,
            net_amount: t.net_amount(),
            transaction_count: t.transaction_count,
            last_transaction: t.last_transaction,
        }
    }
}

relation! {
    /// A row of `member_daily_summary`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct MemberDailySummary: view "member_daily_summary" {
        pub window: MemberWindowColumns,
    }
}

relation! {
    /// A row of `member_window_closed`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct MemberWindowClosed: view "member_window_closed" {
        pub window: MemberWindowColumns,
    }
}

relation! {
    /// A row of `hotel_room_offers`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct HotelRoomOffer: view "hotel_room_offers" {
        pub member_id: i64 = Int64,
        pub member_name: Option<String> = Text,
        pub total_spend: Decimal = MONEY,
        pub transaction_count: i64 = Int64,
        pub net_amount: Decimal = MONEY,
        pub last_transaction: Micros = Timestamp,
        pub window_start: Micros = Timestamp,
        pub window_end: Micros = Timestamp,
        pub reward_type: String = Text,
    }
}

impl HotelRoomOffer {
    fn of(w: MemberWindow) -> HotelRoomOffer {
        let t = &w.totals;
        HotelRoomOffer {
            member_id: w.member_id,
            total_spend: t.total_spend,
            transaction_count: t.transaction_count,
            net_amount: t.net_amount(),
            last_transaction: t.last_transaction,
            window_start: w.window_start,
            window_end: w.window_end,
            reward_type: HOTEL_REWARD.into(),
            member_name: w.member_name,
        }
    }
}

relation! {
    /// A row of `drink_offers`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct DrinkOffer: view "drink_offers" {
        pub member_id: i64 = Int64,
        pub member_name: Option<String> = Text,
        pub total_spend: Decimal = MONEY,
        pub transaction_count: i64 = Int64,
        pub net_amount: Decimal = MONEY,
        pub loss_amount: Decimal = MONEY,
        pub last_transaction: Micros = Timestamp,
        pub window_start: Micros = Timestamp,
        pub window_end: Micros = Timestamp,
        pub reward_type: String = Text,
    }
}

impl DrinkOffer {
    fn of(w: MemberWindow) -> DrinkOffer {
        let t = &w.totals;
        DrinkOffer {
            member_id: w.member_id,
            total_spend: t.total_spend,
            transaction_count: t.transaction_count,
            net_amount: t.net_amount(),
            loss_amount: t.net_amount().abs(),
            last_transaction: t.last_transaction,
            window_start: w.window_start,
            window_end: w.window_end,
            reward_type: DRINK_REWARD.into(),
            member_name: w.member_name,
        }
    }
}

relation! {
    /// A row of `game_stats`: all-time totals of one game.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct GameStats: view "game_stats" {
        pub game_type: String = Text,
        pub total_bets: i64 = Int64,
        pub total_wagered: Decimal = MONEY,
        pub total_paid_out: Decimal = MONEY,
        pub house_edge: Decimal = MONEY,
    }
}

relation! {
    /// A row of `member_leaderboard`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct MemberLeaderboard: view "member_leaderboard" {
        pub member_id: i64 = Int64,
        pub member_name: Option<String> = Text,
        pub lifetime_spend: Decimal = MONEY,
        pub lifetime_winnings: Decimal = MONEY,
        pub lifetime_transactions: i64 = Int64,
        pub last_seen: Micros = Timestamp,
    }
}

impl From<MemberLifetime> for MemberLeaderboard {
    fn from(m: MemberLifetime) -> MemberLeaderboard {
        let t = m.totals;
        MemberLeaderboard {
            member_id: m.member_id,
            member_name: m.member_name,
            lifetime_spend: t.total_spend,
            lifetime_winnings: t.total_winnings,
            lifetime_transactions: t.transaction_count,
            last_seen: t.last_transaction,
        }
    }
}

relation! {
    /// A row of `pending_offers`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct PendingOffer: view "pending_offers" {
        pub member_id: i64 = Int64,
        pub member_name: Option<String> = Text,
        pub offer_type: String = Text,
        pub metric: Decimal = MONEY,
        pub window_start: Micros = Timestamp,
        pub window_end: Micros = Timestamp,
    }
}

relation! {
    /// The row of `casino_watermark`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct CasinoWatermark: view "casino_watermark" {
        pub watermark: Micros = Timestamp,
        pub late_transactions: i64 = Int64,
    }
}

/// The casino views, as the catalog lists them.
pub fn view_specs() -> Vec<&'static RelationSpec> {
    vec![
        MemberDailySummary::spec(),
        HotelRoomOffer::spec(),
        DrinkOffer::spec(),
        GameStats::spec(),
        MemberLeaderboard::spec(),
        MemberWindowClosed::spec(),
        PendingOffer::spec(),
        CasinoWatermark::spec(),
    ]
}

/// Builds the casino views from its inputs.
pub fn build<'s>(config: &PipelineConfig, inputs: &mut Inputs<'s>) -> Vec<View<'s>> {
    let transactions = inputs.records();
    let redeemed_offers = inputs.records();
    let settings = inputs.records();
    casino(config, transactions, redeemed_offers, settings, inputs.checkpoints())
}

/// Builds the casino views, its history-dependent operators registering in `checkpoints`.
pub fn casino<'s>(
    config: &PipelineConfig,
    transactions: Coll<'s, GamingTransaction>,
    redeemed_offers: Coll<'s, RedeemedOffer>,
    settings: Coll<'s, CasinoSettings>,
    checkpoints: &Checkpoints,
) -> Vec<View<'s>> {
    let options = &config.casino;
    // Each view family gets its part of a transaction, not a copy of all of it.
    let (transactions, plays) = unzip(transactions, "CasinoGamePlays", |tx| {
        let play = GamePlay::of(&tx);
        (tx, Some(play))
    });
    let event_time = event_time_views(transactions, options.window, config.retention, checkpoints);
    let summary = member_daily_summary(event_time.daily_summary);
    // Both offer views cross join the summary with the thresholds in force (see `settings`).
    let windows = settings::windows_by_shard(summary.clone());
    let thresholds = settings::thresholds_in_force(settings, options.thresholds);
    let hotel = hotel_room_offers(windows.clone(), thresholds.clone());
    let drink = drink_offers(windows, thresholds);
    let games = game_stats(plays, checkpoints.slot("casino.game_stats"));
    let leaderboard = member_leaderboard(event_time.leaderboard);
    let closed = member_window_closed(event_time.window_closed);
    let watermark = casino_watermark(event_time.watermark);
    let pending = pending_offers(hotel.clone(), drink.clone(), redeemed_offers);

    vec![
        View::new(summary, |w| MemberDailySummary { window: w.into() }),
        View::new(hotel, HotelRoomOffer::of),
        View::new(drink, DrinkOffer::of),
        View::of_records(games),
        View::new(leaderboard, MemberLeaderboard::from),
        View::new(closed, |w| MemberWindowClosed { window: w.into() }),
        View::of_records(pending),
        View::new(watermark, |(watermark, late_transactions)| CasinoWatermark { watermark, late_transactions }),
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
/// SELECT s.member_id, s.member_name, s.total_spend, s.transaction_count, s.net_amount,
///        s.last_transaction, s.window_start, s.window_end,
///        '🏨 Complimentary Hotel Room (1 night)' AS reward_type
/// FROM member_daily_summary s CROSS JOIN casino_thresholds t
/// WHERE s.total_spend >= t.hotel_threshold;
/// ```
/// (`casino_thresholds`: the row of `casino_settings`, or the flags' values while it has
/// none; see [`settings`].)
fn hotel_room_offers<'s>(
    windows: ByKey<'s, u64, MemberWindow>,
    thresholds: ByKey<'s, u64, Thresholds>,
) -> Coll<'s, MemberWindow> {
    settings::offers(windows, thresholds, |w, t| w.totals.total_spend >= t.hotel)
}

/// ```sql
/// CREATE MATERIALIZED VIEW drink_offers AS
/// SELECT member_id, member_name, total_spend, transaction_count, net_amount,
///        ABS(net_amount) AS loss_amount, last_transaction, window_start, window_end,
///        '🍹 Complimentary Premium Drink' AS reward_type
/// FROM member_daily_summary s CROSS JOIN casino_thresholds t
/// WHERE s.net_amount < 0 AND ABS(s.net_amount) >= t.drink_threshold;
/// ```
fn drink_offers<'s>(
    windows: ByKey<'s, u64, MemberWindow>,
    thresholds: ByKey<'s, u64, Thresholds>,
) -> Coll<'s, MemberWindow> {
    settings::offers(windows, thresholds, |w, t| {
        let net = w.totals.net_amount();
        net < Decimal::ZERO && net.abs() >= t.drink
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
/// game: one record per game, whatever the history. The totals are all-time, over events
/// retention drops, so the per-game accumulation is tapped in `slot` for checkpoints.
fn game_stats<'s>(plays: Coll<'s, GamePlay>, slot: Slot) -> Coll<'s, GameStats> {
    let per_game =
        plays.explode(|play| Some((play.game_type, (1isize, MoneySum::new(play.bet), MoneySum::new(play.win)))));
    accumulated(per_game, slot).count_total().map(|(game_type, (rows, bets, wins))| {
        // Every row adds a term (0 for other types), so neither sum is ever NULL.
        let (wagered, paid_out) = (bets.total().unwrap_or_default(), wins.total().unwrap_or_default());
        GameStats {
            game_type,
            total_bets: rows as i64,
            total_wagered: wagered,
            total_paid_out: paid_out,
            house_edge: paid_out - wagered,
        }
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
    /// `--hotel-threshold` and `--drink-threshold` (5000 and 1000): the offer thresholds
    /// while `casino_settings` has no row. The server writes them as its row at start when
    /// it has none; from then on the table's row is what the offer views read.
    pub thresholds: Thresholds,
}

impl Default for CasinoConfig {
    fn default() -> Self {
        CasinoConfig { window: 5 * crate::datum::MICROS_PER_MINUTE, thresholds: Thresholds::default() }
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::windows::tests::{BatchPlan, batch_plans, transactions};
    use super::*;
    use crate::checkpoint::testing::{PipelineBatch, PipelineUnderTest, assert_pipeline_restores_exactly};
    use crate::datum::Record;

    const MINUTE: Micros = MICROS_PER_MINUTE;

    /// The casino pipeline with 1-minute windows, 3 minutes of retention, and thresholds
    /// the generated members reach.
    fn pipeline() -> PipelineUnderTest {
        let thresholds = Thresholds { hotel: Decimal::from(60), drink: Decimal::from(30) };
        let casino = CasinoConfig { window: MINUTE, thresholds };
        let config = PipelineConfig { retention: 3 * MINUTE, casino };
        PipelineUnderTest { input_specs: input_specs(), build, config }
    }

    /// The transactions of `plans` from 20 minutes before midnight (offers on two days),
    /// in every other batch a redemption for a member, or one taken back, and every third
    /// batch new thresholds, lower or higher than the flags', or none (the flags').
    fn batches(plans: &[BatchPlan]) -> Vec<PipelineBatch> {
        let mut redeemed: Vec<RedeemedOffer> = Vec::new();
        let mut settings: Option<CasinoSettings> = None;
        transactions(plans, MICROS_PER_DAY - 20 * MINUTE)
            .into_iter()
            .enumerate()
            .map(|(k, batch)| {
                let clock = batch.iter().map(|(tx, _)| tx.transaction_time).max();
                let mut rows: PipelineBatch = batch.into_iter().map(|(tx, diff)| (0, tx.into_row(), diff)).collect();
                match (k % 4, clock) {
                    (1, Some(clock)) => {
                        let member_id = k as i64 % 4;
                        let offer = RedeemedOffer {
                            member_id,
                            member_name: Some(format!("member {member_id}")),
                            offer_type: [HOTEL_OFFER, DRINK_OFFER][k / 4 % 2].to_string(),
                            redeemed_at: Some(clock),
                            redemption_date: utc_date(clock),
                        };
                        let key = |r: &RedeemedOffer| (r.member_id, r.offer_type.clone(), r.redemption_date);
                        if !redeemed.iter().any(|r| key(r) == key(&offer)) {
                            rows.push((1, offer.to_row(), 1));
                            redeemed.push(offer);
                        }
                    }
                    (3, _) if redeemed.len() > 1 => rows.push((1, redeemed.remove(0).into_row(), -1)),
                    _ => {}
                }
                if k % 3 == 2 {
                    let next = [(20, 10), (90, 45), (0, 0)].get(k / 3 % 4).map(|&(hotel, drink)| {
                        CasinoSettings::of(Thresholds { hotel: Decimal::from(hotel), drink: Decimal::from(drink) })
                    });
                    rows.extend(settings.take().map(|old| (2, old.into_row(), -1)));
                    rows.extend(next.clone().map(|new| (2, new.into_row(), 1)));
                    settings = next;
                }
                rows
            })
            .collect()
    }

    #[test]
    fn the_views_restore_exactly() {
        let busy: Vec<BatchPlan> = (0..12)
            .map(|k: i64| {
                let txs = (0..4).map(|m| (m, m % 3 != 0, ((k + m) % 3) as usize, 10 + 7 * m, (k * 37 + m * 61) % 300));
                ((k % 4) as usize, txs.collect(), (k % 5 == 4).then_some(k as usize))
            })
            .collect();
        let batches = batches(&busy);
        for cut in [0, 1, 5, 9, 12] {
            assert_pipeline_restores_exactly(&pipeline(), &batches, cut);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

        #[test]
        fn the_views_restore_exactly_at_any_cut(plans in batch_plans(), cut in 0..10usize) {
            let batches = batches(&plans);
            assert_pipeline_restores_exactly(&pipeline(), &batches, cut.min(batches.len()));
        }
    }
}
