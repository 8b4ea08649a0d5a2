//! `casino_settings`: the offer thresholds as a one-row table, so that changing one at run
//! time (SQL `UPDATE`, an HTTP write) re-derives `hotel_room_offers` and `drink_offers`
//! incrementally instead of needing a restart.
//!
//! ```sql
//! CREATE TABLE casino_settings (
//!   id integer PRIMARY KEY CHECK (id = 1),
//!   hotel_threshold numeric(12,2) NOT NULL CHECK (hotel_threshold >= 0),
//!   drink_threshold numeric(12,2) NOT NULL CHECK (drink_threshold >= 0));
//!
//! -- The thresholds in force: the table's row, or the flags' while it has none.
//! CREATE VIEW casino_thresholds AS
//! SELECT COALESCE((SELECT hotel_threshold FROM casino_settings), 5000) AS hotel_threshold,
//!        COALESCE((SELECT drink_threshold FROM casino_settings), 1000) AS drink_threshold;
//! ```
//! (5000 and 1000 stand for `--hotel-threshold` and `--drink-threshold`.)
//!
//! The server writes the flags' row at start if the table has none, so the table shows
//! the thresholds in force; a deleted row means "back to the flags' values".
//!
//! The offer views are a cross join of `member_daily_summary` with that one row. Both
//! sides are arranged by a shard of the member ([`SHARDS`] of them, the thresholds copied
//! into each), so the windows stay spread over the workers. A window's change joins one
//! thresholds record: its cost does not depend on history. A threshold change joins
//! every retained window once (retracting each under the old thresholds, adding it under
//! the new, at the same logical time): re-filtering the current windows is inherent to it.

use differential_dataflow::AsCollection;
use differential_dataflow::VecCollection;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::ToStream;

use super::MONEY;
use super::windows::MemberWindow;
use crate::Time;
use crate::datum::{ColumnType, Datum, Record, RelationSpec, RowError, RowErrorKind};
use crate::operators::{ByKey, left_join_unique};
use crate::relation::relation;

type Coll<'s, D> = VecCollection<'s, Time, D>;

relation! {
    /// `casino_settings` (table): the one row (`id = 1`) of the offer thresholds.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct CasinoSettings: table "casino_settings" (primary_key = id) {
        /// Always 1: the table has at most one row.
        pub id: i32 = ColumnType::Int32,
        /// `hotel_room_offers`: a window's total_spend at or above this.
        pub hotel_threshold: Decimal = MONEY,
        /// `drink_offers`: a window's net loss at least this large.
        pub drink_threshold: Decimal = MONEY,
    }
}

/// The offer thresholds: the launch options' (`--hotel-threshold`, `--drink-threshold`),
/// or those in force in the dataflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Thresholds {
    pub hotel: Decimal,
    pub drink: Decimal,
}

impl Default for Thresholds {
    /// The seed's values: 5000 and 1000.
    fn default() -> Self {
        Thresholds { hotel: Decimal::from(5000), drink: Decimal::from(1000) }
    }
}

impl CasinoSettings {
    /// The id of the one row.
    pub const ID: i32 = 1;

    /// The row holding `thresholds`.
    pub fn of(thresholds: Thresholds) -> CasinoSettings {
        CasinoSettings { id: CasinoSettings::ID, hotel_threshold: thresholds.hotel, drink_threshold: thresholds.drink }
    }

    pub fn thresholds(&self) -> Thresholds {
        Thresholds { hotel: self.hotel_threshold, drink: self.drink_threshold }
    }
}

/// `numeric(12,2)`: an absolute value below 10^10.
const PRECISION_LIMIT: Decimal = Decimal::from_parts(1_410_065_408, 2, 0, false, 0);

/// The table's CHECK constraints (SQLSTATE 23514) and the precision of `numeric(12,2)`
/// (22003, as PostgreSQL's "numeric field overflow"); the scale is the column type's.
pub fn check_row(spec: &RelationSpec, row: &[Datum]) -> Result<(), RowError> {
    if spec.name != CasinoSettings::spec().name {
        return Ok(());
    }
    let settings = CasinoSettings::from_row(row)?;
    let violation = |constraint: &str, why: String| {
        RowError::check(format!(
            "new row for relation \"casino_settings\" violates check constraint \"{constraint}\": {why}"
        ))
    };
    if settings.id != CasinoSettings::ID {
        return Err(violation(
            "casino_settings_id_check",
            format!("id must be {} (the table has one row), got {}", CasinoSettings::ID, settings.id),
        ));
    }
    for (column, value) in [("hotel_threshold", settings.hotel_threshold), ("drink_threshold", settings.drink_threshold)]
    {
        if value.abs() >= PRECISION_LIMIT {
            return Err(RowError(
                format!(
                    "numeric field overflow: {column} = {value}; a field with precision 12, scale 2 must round to \
                     an absolute value less than 10^10"
                ),
                RowErrorKind::NumericOutOfRange,
            ));
        }
        if value.is_sign_negative() && !value.is_zero() {
            return Err(violation(&format!("casino_settings_{column}_check"), format!("{column} must be >= 0, got {value}")));
        }
    }
    Ok(())
}

/// Members are spread over this many shards for the cross join with the thresholds: enough
/// that the shards' hashes spread over the workers, few enough that a threshold change
/// (one record per shard) costs nothing next to the windows it re-filters.
pub const SHARDS: u64 = 64;

/// The shard of a member's windows.
pub fn shard(member_id: i64) -> u64 {
    member_id.rem_euclid(SHARDS as i64) as u64
}

/// The thresholds in force, once per shard: the row of `settings`, or `flags` while the
/// table has none (see the module's `casino_thresholds`).
pub fn thresholds_in_force<'s>(settings: Coll<'s, CasinoSettings>, flags: Thresholds) -> ByKey<'s, u64, Thresholds> {
    let scope = settings.scope();
    // The flags' row, present from the first time on (once, on worker 0).
    let flags = if scope.index() == 0 { vec![((CasinoSettings::ID, flags), Time::default(), 1isize)] } else { vec![] };
    let flags = flags.to_stream(scope).as_collection();
    // At most one row: `id` is the primary key and its CHECK says 1.
    let row = settings.map(|s| (s.id, s.thresholds()));
    let in_force = left_join_unique(flags.arrange_by_key(), row.arrange_by_key(), |_, flags, row| {
        Some(*row.unwrap_or(flags))
    });
    in_force.flat_map(|thresholds| (0..SHARDS).map(move |shard| (shard, thresholds))).arrange_by_key()
}

/// A summary's windows by shard, for [`offers`].
pub fn windows_by_shard<'s>(summary: Coll<'s, MemberWindow>) -> ByKey<'s, u64, MemberWindow> {
    summary.map(|w| (shard(w.member_id), w)).arrange_by_key()
}

/// `SELECT w.* FROM windows w CROSS JOIN casino_thresholds t WHERE qualifies(w, t)`.
pub fn offers<'s>(
    windows: ByKey<'s, u64, MemberWindow>,
    thresholds: ByKey<'s, u64, Thresholds>,
    qualifies: fn(&MemberWindow, &Thresholds) -> bool,
) -> Coll<'s, MemberWindow> {
    windows.join_core(thresholds, move |_shard, w, t| qualifies(w, t).then(|| w.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datum::{RowErrorKind, validate_row};

    fn row(id: i32, hotel: Decimal, drink: Decimal) -> Vec<Datum> {
        CasinoSettings { id, hotel_threshold: hotel, drink_threshold: drink }.to_row()
    }

    #[test]
    fn the_checks_refuse_another_id_negative_and_too_large_thresholds() {
        let spec = CasinoSettings::spec();
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(validate_row(spec, &row(1, d("0"), d("0"))), Ok(()));
        assert_eq!(validate_row(spec, &row(1, d("9999999999.99"), d("1000.50"))), Ok(()));
        let kind = |r: Vec<Datum>| validate_row(spec, &r).unwrap_err().kind();
        assert_eq!(kind(row(2, d("5000"), d("1000"))), RowErrorKind::Check);
        assert_eq!(kind(row(1, d("-0.01"), d("1000"))), RowErrorKind::Check);
        assert_eq!(kind(row(1, d("5000"), d("-1"))), RowErrorKind::Check);
        assert_eq!(kind(row(1, d("10000000000"), d("1000"))), RowErrorKind::NumericOutOfRange);
        assert_eq!(kind(row(1, d("5000"), d("0.001"))), RowErrorKind::NumericOutOfRange);
        let message = validate_row(spec, &row(1, d("-5"), d("1000"))).unwrap_err().to_string();
        assert!(message.contains("casino_settings_hotel_threshold_check"), "{message}");
    }

    #[test]
    fn the_precision_limit_is_ten_to_the_tenth() {
        assert_eq!(PRECISION_LIMIT, Decimal::from(10_000_000_000i64));
    }
}
