//! `retail_watermark`: the pipeline's event-time clock and how many events came too
//! late to be kept.

use serde::{Deserialize, Serialize};

use super::{Coll, Horizon};
use crate::datum::{ColumnType, Micros};
use crate::operators::left_join_unique;
use crate::relation::relation;
use ColumnType::{Int64, TimestampTz};

relation! {
    /// The row of `retail_watermark`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct RetailWatermark: view "retail_watermark" {
        pub watermark: Micros = TimestampTz,
        pub horizon: Option<Micros> = TimestampTz,
        pub late_events: i64 = Int64,
    }
}

/// `retail_watermark(watermark, horizon, late_events)`: diffmart's own view, like
/// `casino_watermark`: one row once the first retail event has arrived. `watermark`
/// is the newest event time of the four retail streams, `horizon` the watermark minus
/// `--retention` (windows that end by then have expired; NULL if before year 1), and
/// `late_events` counts the clicks, purchases and restocks dropped because their
/// window had expired when they arrived.
/// ```sql
/// SELECT MAX(event_time) AS watermark, MAX(event_time) - <retention> AS horizon,
///        COUNT(*) FILTER (WHERE <its window had expired on arrival>) AS late_events
/// FROM <web_clicks, competitor_prices, purchases and restocks> HAVING COUNT(*) > 0;
/// ```
pub(super) fn retail_watermark<'s>(
    horizon: &Horizon<'s>,
    late_events: Coll<'s, ((), isize)>,
) -> Coll<'s, RetailWatermark> {
    /// 0001-01-01T00:00:00Z: earlier horizons (absurd retentions) are shown as NULL.
    const YEAR_ONE: Micros = -62_135_596_800 * crate::datum::MICROS_PER_SECOND;
    let retention = horizon.retention;
    let row = move |watermark: Micros, late: isize| RetailWatermark {
        watermark,
        horizon: watermark.checked_sub(retention).filter(|h| *h >= YEAR_ONE),
        late_events: late as i64,
    };
    let watermark = horizon.clock.watermark(horizon.checkpoints.slot("retail.watermark")).map(|w| ((), w));
    left_join_unique(watermark.arrange_by_key(), late_events.arrange_by_key(), move |_, &w, late| {
        Some(row(w, late.copied().unwrap_or(0)))
    })
}
