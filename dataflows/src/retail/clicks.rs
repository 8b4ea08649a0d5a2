//! Click views: clicks per product and minute (`web_clicks_minutely`), and the
//! clicks still in reach of a kept window's 15-minute demand.

use differential_dataflow::operators::CountTotal;
use serde::{Deserialize, Serialize};

use super::inputs::Click;
use super::{Coll, Horizon, MinuteCounts, minute_start, window_end};
use crate::datum::{ColumnType, MICROS_PER_MINUTE, Micros};
use crate::relation::relation;
use ColumnType::{Int32, Int64, TimestampTz};

relation! {
    /// A row of `web_clicks_minutely`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct WebClicksMinutely: view "web_clicks_minutely" {
        pub product_id: i32 = Int32,
        pub window_start: Micros = TimestampTz,
        pub clicks: i64 = Int64,
    }
}

/// ```sql
/// CREATE MATERIALIZED VIEW web_clicks_minutely AS
/// SELECT product_id, window_start, COUNT(*) AS clicks
/// FROM TUMBLE(web_clicks, event_time, INTERVAL '1 MINUTE')
/// GROUP BY product_id, window_start;
/// ```
/// Returns the view (kept windows) and the clicks of every minute that still counts
/// toward the 15-minute range of a kept window: a click is kept until the last
/// window it reaches, 15 minutes after its own, has expired. The clicks come without
/// the late ones (too late once their own window has expired), so the clicks behind
/// an expired window never change.
pub(super) fn web_clicks_minutely<'s>(
    web_clicks: Coll<'s, Click>,
    horizon: &Horizon<'s>,
) -> (MinuteCounts<'s>, MinuteCounts<'s>) {
    let last_window_reached = |&(_, minute): &(i32, Micros)| window_end(minute + 15 * MICROS_PER_MINUTE);
    let clicks = web_clicks.map(|c| (c.product_id, minute_start(c.event_time)));
    let clicks_in_range = horizon.retain(clicks, last_window_reached, "retail.clicks_in_range.retain").count_total();
    let window = |((_, minute), _): &((i32, Micros), isize)| window_end(*minute);
    let clicks_per_minute = horizon.retain(clicks_in_range.clone(), window, "retail.web_clicks_minutely.retain");
    (clicks_per_minute, clicks_in_range)
}
