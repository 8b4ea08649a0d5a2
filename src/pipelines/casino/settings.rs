//! `casino_settings` at start: `--hotel-threshold` and `--drink-threshold` become its row
//! when it has none.
//!
//! Written with `InsertIfAbsent`, through the one write path: with a data directory, a
//! row the table already holds wins over the flags, so thresholds changed at run time
//! (SQL, HTTP) survive a restart, and a restart without the flags does not quietly put
//! the defaults back. To apply new flags to a data directory, `UPDATE` the row (or
//! `DELETE` it: the offers then use the flags' values, and the next start writes them).

use anyhow::Context;
use diffmart_dataflows::casino::{CasinoSettings, Thresholds};
use diffmart_dataflows::datum::Record;

use crate::engine::{Engine, Update};

/// Writes the flags' row into `casino_settings` unless it holds one (or a source such as
/// CDC owns the table); returns the thresholds the table holds afterwards, if any.
pub fn write_initial_row(engine: &Engine, flags: Thresholds) -> anyhow::Result<Option<Thresholds>> {
    let table = engine.catalog().id(CasinoSettings::spec().name).context("the catalog has no casino_settings")?;
    if engine.owner_of(table).is_none() {
        let row = CasinoSettings::of(flags).into_row();
        engine
            .apply_blocking(vec![Update::insert_if_absent(table, row)])
            .map_err(|e| anyhow::anyhow!("writing casino_settings' first row: {e} (SQLSTATE {})", e.sqlstate))?;
    }
    let held = engine.snapshot().rows(table).first().map(|row| CasinoSettings::from_row(row)).transpose()?;
    let held = held.map(|settings| settings.thresholds());
    match held {
        Some(held) if held != flags => tracing::info!(
            "casino_settings keeps the thresholds set at run time (hotel {}, drink {}), not the flags' (hotel {}, \
             drink {}): UPDATE the table to change them",
            held.hotel,
            held.drink,
            flags.hotel,
            flags.drink
        ),
        _ => {}
    }
    Ok(held)
}
