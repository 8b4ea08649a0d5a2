//! E. Demand-driven pricing (`shared/spec/PIPELINES.md` §E, seed 004).
//!
//! One event stream (`product_events`) and three tables: the catalog
//! (`pricing_products`), manual overrides (`price_overrides`) and the time each
//! product's last override was removed (`price_override_removals`, written by the
//! engine whenever an override row is deleted, see [`rows_implied_by_delete`]).
//!
//! Every view comes out of one per-product state machine ([`state`]): demand is a
//! running sum and skipping depends on what happened before, so the answer depends
//! on order, which SQL over a set of rows cannot express. The definitions below are
//! therefore written as the sequential fold the state machine performs.
//!
//! Where state lives, and why it stays bounded: one [`state::ProductPricing`] per
//! product (O(1) fields), plus the product's `price_history` and `price_updates`
//! rows younger than `--retention` of event time behind its newest row.

pub mod state;
#[cfg(test)]
pub(crate) mod testing;

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use self::state::{PricingChange, PricingInput, per_product_pricing};
use crate::boundary::{Inputs, View};
use crate::checkpoint::Slot;
use crate::datum::{ColumnType, Datum, F64, Micros, Record, RelationSpec, Row, RowError};
use crate::operators::split_by_kind;
use crate::relation::relation;
use crate::{PipelineConfig, Time};
use ColumnType::{Float64, Int64, Text, TimestampTz};

type Coll<'s, D> = VecCollection<'s, Time, D>;

/// The seed's catalog: product ids PA..PJ and their base prices.
pub const CATALOG: [(&str, f64); 10] = [
    ("PA", 299.0),
    ("PB", 349.0),
    ("PC", 129.0),
    ("PD", 499.0),
    ("PE", 219.0),
    ("PF", 179.0),
    ("PG", 649.0),
    ("PH", 269.0),
    ("PI", 399.0),
    ("PJ", 159.0),
];

/// `reason` of an override written without one.
pub const DEFAULT_OVERRIDE_REASON: &str = "manual override";

/// `price_source` values.
pub const SOURCE_BASE: &str = "base";
pub const SOURCE_DYNAMIC: &str = "dynamic";
pub const SOURCE_OVERRIDE: &str = "override";

/// Demand weight of an event type: view 1, cart 3, purchase 5; `None` for anything else.
pub fn demand_weight(event_type: &str) -> Option<i64> {
    match event_type {
        "view" => Some(1),
        "cart" => Some(3),
        "purchase" => Some(5),
        _ => None,
    }
}

/// The price after an event: `event_price + sqrt(demand) × 5`, with `demand` the
/// weighted demand after the event, not rounded (price(100, demand 9) = 115).
pub fn dynamic_price(event_price: f64, demand: i64) -> f64 {
    event_price + (demand as f64).sqrt() * 5.0
}

/// Whether a product id is one the HTTP API accepts: `^[A-Za-z0-9_-]+$`.
pub fn is_valid_product_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

// ------------------------------------------------------------------------------------------
// Inputs
// ------------------------------------------------------------------------------------------

relation! {
    /// `product_events` (Kafka topic `product-events`): one view, cart or purchase.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct ProductEvent: source "product_events" (event_time = timestamp) {
        pub event_type: String = Text,
        pub product_id: String = Text,
        pub user_id: Option<String> = Text,
        /// Epoch milliseconds on the topic; microseconds here, like every timestamp.
        pub timestamp: Micros = TimestampTz,
        pub price: F64 = Float64,
    }
}

impl ProductEvent {
    /// Why the pricing engine refuses this event, if it does: an unknown event type,
    /// a blank product id, or a price that is not a positive number.
    pub fn invalid_reason(&self) -> Option<String> {
        if demand_weight(&self.event_type).is_none() {
            return Some(format!("event_type must be view, cart or purchase, got {:?}", self.event_type));
        }
        if self.product_id.trim().is_empty() {
            return Some("product_id must not be blank".into());
        }
        let price = self.price.get();
        if !(price.is_finite() && price > 0.0) {
            return Some(format!("price must be a positive number, got {price}"));
        }
        None
    }
}

relation! {
    /// `pricing_products` (table): the catalog and its base prices.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct CatalogProduct: table "pricing_products" (primary_key = product_id) {
        pub product_id: String = Text,
        pub base_price: F64 = Float64,
        /// When the product entered the catalog (`now()` when an INSERT leaves it out):
        /// the event time of its `base` row in `price_history`.
        pub added_at: Option<Micros> = TimestampTz,
    }
}

relation! {
    /// `price_overrides` (table): a manual price that wins while it exists.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct PriceOverride: table "price_overrides" (primary_key = product_id) {
        pub product_id: String = Text,
        pub override_price: F64 = Float64,
        /// `manual override` when a write leaves it out.
        pub reason: Option<String> = Text,
        /// `now()` when a write leaves it out.
        pub set_time: Option<Micros> = TimestampTz,
    }
}

relation! {
    /// `price_override_removals` (table): when the product's override was last removed.
    /// Events with a timestamp at or before it are skipped.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct OverrideRemoval: table "price_override_removals" (primary_key = product_id) {
        pub product_id: String = Text,
        pub removed_at: Micros = TimestampTz,
    }
}

pub fn input_specs() -> Vec<&'static RelationSpec> {
    vec![ProductEvent::spec(), CatalogProduct::spec(), PriceOverride::spec(), OverrideRemoval::spec()]
}

// ------------------------------------------------------------------------------------------
// Rules of the inputs that column types cannot say (CHECK, DEFAULT, the removal record)
// ------------------------------------------------------------------------------------------

fn positive(value: f64) -> bool {
    value.is_finite() && value > 0.0
}

/// CHECK constraints: `product_events` rows must be valid events (so a bad Kafka
/// message is refused and counted in `diffmart_source_errors`, never applied);
/// `override_price > 0` and `base_price > 0`.
pub fn check_row(spec: &RelationSpec, row: &[Datum]) -> Result<(), RowError> {
    let violation = |constraint: &str, why: String| {
        RowError::check(format!(
            "new row for relation \"{}\" violates check constraint \"{constraint}\": {why}",
            spec.name
        ))
    };
    match spec.name {
        "product_events" => match ProductEvent::from_row(row)?.invalid_reason() {
            Some(why) => Err(violation("product_events_valid_event", why)),
            None => Ok(()),
        },
        "price_overrides" => {
            let price = PriceOverride::from_row(row)?.override_price.get();
            if positive(price) {
                Ok(())
            } else {
                Err(violation(
                    "price_overrides_override_price_check",
                    format!("override_price must be > 0, got {price}"),
                ))
            }
        }
        "pricing_products" => {
            let price = CatalogProduct::from_row(row)?.base_price.get();
            if positive(price) {
                Ok(())
            } else {
                Err(violation("pricing_products_base_price_check", format!("base_price must be > 0, got {price}")))
            }
        }
        _ => Ok(()),
    }
}

/// DEFAULTs of a row a write inserts: `reason` → `manual override`, `set_time` and
/// `added_at` → `now`. A NULL is taken as "left out", since writes cannot tell them apart.
pub fn fill_defaults(spec: &RelationSpec, row: &mut Row, now: Micros) {
    let mut default = |column: &str, value: Datum| {
        if let Some(datum) = spec.column_index(column).and_then(|i| row.get_mut(i))
            && datum.is_null()
        {
            *datum = value;
        }
    };
    match spec.name {
        "price_overrides" => {
            default("reason", Datum::text(DEFAULT_OVERRIDE_REASON));
            default("set_time", Datum::Timestamp(now));
        }
        "pricing_products" => default("added_at", Datum::Timestamp(now)),
        _ => {}
    }
}

/// Rows other tables gain when a write deletes `row` from `spec` (and does not put
/// its key back): removing an override records its removal time, which the pricing
/// state machine needs to keep skipping the events produced while it was active.
/// The engine upserts them by primary key in the same step as the delete.
pub fn rows_implied_by_delete(spec: &RelationSpec, row: &[Datum], now: Micros) -> Vec<(&'static RelationSpec, Row)> {
    let removed = match spec.name {
        "price_overrides" => PriceOverride::from_row(row).ok(),
        _ => None,
    };
    removed
        .map(|o| (OverrideRemoval::spec(), OverrideRemoval { product_id: o.product_id, removed_at: now }.into_row()))
        .into_iter()
        .collect()
}

// ------------------------------------------------------------------------------------------
// Views
// ------------------------------------------------------------------------------------------

relation! {
    /// A row of `product_prices`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct ProductPrice: view "product_prices" {
        pub product_id: String = Text,
        pub price: F64 = Float64,
        pub demand: i64 = Int64,
        pub price_source: String = Text,
    }
}

relation! {
    /// A row of `price_history`.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct PriceHistoryRow: view "price_history" {
        pub product_id: String = Text,
        pub price: F64 = Float64,
        pub price_source: String = Text,
        pub event_time: Option<Micros> = TimestampTz,
        /// The product's price change number (1, 2, …): orders rows of equal event time.
        pub seq: i64 = Int64,
    }
}

relation! {
    /// A row of `price_updates`: one price change, what the `price-updates` topic and
    /// the `/ws/prices` stream carry.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct PriceUpdate: view "price_updates" {
        pub product_id: String = Text,
        /// Second column, so a batch's changes (sorted by row) keep each product's order.
        pub seq: i64 = Int64,
        pub new_price: F64 = Float64,
        /// The event time of the change: the event's timestamp, the override's `set_time`,
        /// the removal time, or the catalog row's `added_at`.
        pub timestamp: Option<Micros> = TimestampTz,
    }
}

impl PriceUpdate {
    /// [`Record::spec`], for callers that do not import [`Record`] (the Kafka sink).
    pub fn spec() -> &'static RelationSpec {
        <PriceUpdate as Record>::spec()
    }

    /// [`Record::from_row`], likewise.
    pub fn from_row(row: &[Datum]) -> Result<PriceUpdate, RowError> {
        <PriceUpdate as Record>::from_row(row)
    }

    /// The `price-updates` message (and, with `"type"`, the WebSocket message):
    /// `{"product_id", "new_price", "timestamp"}`, timestamp in epoch seconds as the
    /// original service sent it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "product_id": self.product_id,
            "new_price": self.new_price.get(),
            "timestamp": self.timestamp.map(|t| t.div_euclid(crate::datum::MICROS_PER_SECOND)),
        })
    }
}

/// The pricing views, as the catalog lists them.
pub fn view_specs() -> Vec<&'static RelationSpec> {
    vec![ProductPrice::spec(), PriceHistoryRow::spec(), PriceUpdate::spec()]
}

/// Builds the pricing views from its inputs.
pub fn build<'s>(config: &PipelineConfig, inputs: &mut Inputs<'s>) -> Vec<View<'s>> {
    let events = inputs.projected(|e: ProductEvent| (e.product_id.clone(), PricingInput::Event(e)));
    let catalog = inputs.projected(|c: CatalogProduct| (c.product_id.clone(), PricingInput::Catalog(c)));
    let overrides = inputs.projected(|o: PriceOverride| (o.product_id.clone(), PricingInput::Override(o)));
    let removals = inputs.projected(|r: OverrideRemoval| (r.product_id.clone(), PricingInput::Removal(r)));
    let slot = inputs.checkpoints().slot("pricing.products");
    pricing(config, catalog.concat(removals).concat(overrides).concat(events), slot)
}

/// Builds the pricing views from every input keyed by product. Every input goes
/// straight (through `concat`s) into the state machine, which is checkpointed in `slot`:
/// nothing else holds state of `product_events`.
pub fn pricing<'s>(config: &PipelineConfig, inputs: Coll<'s, (String, PricingInput)>, slot: Slot) -> Vec<View<'s>> {
    let [prices, history, updates] =
        split_by_kind(per_product_pricing(inputs, config.retention, slot), PricingChange::kind);
    vec![product_prices(prices), price_history(history), price_updates(updates)]
}

/// `product_prices(product_id, price, demand, price_source)`, per product, after
/// folding its inputs in order (see [`state`]):
/// ```text
/// demand       = Σ weight(event_type) over the events not skipped   -- view 1, cart 3, purchase 5
/// price        = override_price                                     -- while an override exists
///              | last_event.price + sqrt(demand) * 5                -- after an event was priced
///              | base_price                                         -- catalog, before any event
/// price_source = 'override' | 'dynamic' | 'base'                    -- the same cases
/// skipped      = an override exists when the event is processed
///             OR event.timestamp <= (SELECT removed_at FROM price_override_removals r
///                                    WHERE r.product_id = event.product_id)
/// ```
fn product_prices<'s>(changes: Coll<'s, PricingChange>) -> View<'s> {
    View::filter_map(changes, |change| match change {
        PricingChange::Price(row) => Some(row),
        _ => None,
    })
}

/// `price_history(product_id, price, price_source, event_time, seq)`: one row per
/// priced event (`dynamic`, event_time = its timestamp), a `base` row when a catalog
/// row sets the current price (event_time = `added_at`), an `override` row when an
/// override is set (event_time = `set_time`). Rows older than `--retention` behind
/// the product's newest row leave the view.
/// ```sql
/// -- as if every price change were appended here, then:
/// DELETE FROM price_history h
/// WHERE h.event_time < (SELECT max(event_time) FROM price_history n
///                       WHERE n.product_id = h.product_id) - INTERVAL '24 hours';
/// ```
fn price_history<'s>(changes: Coll<'s, PricingChange>) -> View<'s> {
    View::filter_map(changes, |change| match change {
        PricingChange::History(row) => Some(row),
        _ => None,
    })
}

/// `price_updates(product_id, seq, new_price, timestamp)`: every change of a
/// product's current price, `price_history`'s rows plus the reverts when an override
/// is removed, under the same retention. Feeds `price-updates` and `/ws/prices`.
fn price_updates<'s>(changes: Coll<'s, PricingChange>) -> View<'s> {
    View::filter_map(changes, |change| match change {
        PricingChange::Update(row) => Some(row),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::checkpoint::testing::{PipelineBatch, PipelineUnderTest, assert_pipeline_restores_exactly};
    use crate::datum::validate_row;
    use crate::pricing::testing::{RETENTION, batches, histories};

    fn event(event_type: &str, product_id: &str, price: f64) -> ProductEvent {
        ProductEvent {
            event_type: event_type.into(),
            product_id: product_id.into(),
            user_id: Some("u1".into()),
            timestamp: 1_700_000_000_000_000,
            price: F64::new(price),
        }
    }

    #[test]
    fn the_price_formula() {
        assert_eq!(dynamic_price(100.0, 9), 115.0);
        assert_eq!(dynamic_price(299.0, 1), 304.0);
        assert_eq!(dynamic_price(129.0, 2), 129.0 + 2f64.sqrt() * 5.0, "no rounding");
        assert_eq!(
            [demand_weight("view"), demand_weight("cart"), demand_weight("purchase")],
            [Some(1), Some(3), Some(5)]
        );
        assert_eq!(demand_weight("click"), None);
    }

    #[test]
    fn product_ids() {
        assert!(is_valid_product_id("PA"));
        assert!(is_valid_product_id("sku_1-b"));
        for bad in ["", "P A", "P/A", "é", "PA;"] {
            assert!(!is_valid_product_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn invalid_events_and_overrides_violate_checks() {
        let spec = ProductEvent::spec();
        assert!(validate_row(spec, &event("view", "PA", 10.0).to_row()).is_ok());
        let error = |e: ProductEvent| validate_row(spec, &e.to_row()).unwrap_err().0;
        assert!(error(event("click", "PA", 10.0)).contains("event_type must be view, cart or purchase"));
        assert!(error(event("view", "  ", 10.0)).contains("product_id must not be blank"));
        assert!(error(event("view", "PA", 0.0)).contains("price must be a positive number, got 0"));
        assert!(error(event("view", "PA", -3.0)).contains("check constraint"));
        assert!(error(event("view", "PA", f64::NAN)).contains("positive number"));
        let over = |price: f64| PriceOverride {
            product_id: "PA".into(),
            override_price: F64::new(price),
            reason: None,
            set_time: None,
        };
        assert!(validate_row(PriceOverride::spec(), &over(1.0).to_row()).is_ok());
        let e = validate_row(PriceOverride::spec(), &over(0.0).to_row()).unwrap_err().0;
        assert!(e.contains("violates check constraint \"price_overrides_override_price_check\""), "{e}");
    }

    #[test]
    fn defaults_and_the_removal_record() {
        let mut row =
            PriceOverride { product_id: "PA".into(), override_price: F64::new(5.0), reason: None, set_time: None }
                .to_row();
        fill_defaults(PriceOverride::spec(), &mut row, 42);
        let filled = PriceOverride::from_row(&row).unwrap();
        assert_eq!(filled.reason.as_deref(), Some(DEFAULT_OVERRIDE_REASON));
        assert_eq!(filled.set_time, Some(42));
        let implied = rows_implied_by_delete(PriceOverride::spec(), &row, 99);
        assert_eq!(
            implied,
            vec![(OverrideRemoval::spec(), OverrideRemoval { product_id: "PA".into(), removed_at: 99 }.to_row())]
        );
        assert!(rows_implied_by_delete(CatalogProduct::spec(), &row, 99).is_empty());
    }

    #[test]
    fn update_messages_carry_epoch_seconds() {
        let update = PriceUpdate {
            product_id: "PA".into(),
            seq: 3,
            new_price: F64::new(151.5),
            timestamp: Some(1_773_713_139_250_000),
        };
        assert_eq!(
            update.to_json(),
            serde_json::json!({"product_id": "PA", "new_price": 151.5, "timestamp": 1_773_713_139i64})
        );
        assert_eq!(PriceUpdate::from_row(&update.to_row()).unwrap(), update);
    }

    /// The pricing pipeline as the engine builds it.
    fn pipeline() -> PipelineUnderTest {
        PipelineUnderTest {
            input_specs: input_specs(),
            build,
            config: PipelineConfig { retention: RETENTION, ..Default::default() },
        }
    }

    /// The updates as rows of the input relations, in [`input_specs`] order.
    fn rows(batches: Vec<Vec<((String, PricingInput), isize)>>) -> Vec<PipelineBatch> {
        let row = |input: PricingInput| match input {
            PricingInput::Event(e) => (0, e.into_row()),
            PricingInput::Catalog(c) => (1, c.into_row()),
            PricingInput::Override(o) => (2, o.into_row()),
            PricingInput::Removal(r) => (3, r.into_row()),
        };
        let batch = |updates: Vec<_>| {
            updates.into_iter().map(|((_, input), diff)| {
                let (relation, row) = row(input);
                (relation, row, diff)
            })
        };
        batches.into_iter().map(|updates| batch(updates).collect()).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Restored from the checkpoint's state and the tables' current rows, with no
        /// events, every view equals the straight run's after every later batch.
        #[test]
        fn every_view_restores_from_the_state_and_the_tables(steps in histories(), cut in 0..=12usize) {
            assert_pipeline_restores_exactly(&pipeline(), &rows(batches(&steps)), cut.min(steps.len()));
        }
    }
}
