//! B. E-commerce analytics (`shared/spec/PIPELINES.md` §B, seed 001).
//!
//! Three tables written over SQL (`products`, `users`, `user_events`) and seven
//! views over them. Each view's Rust sits under the SQL that defines it (PostgreSQL
//! dialect; the seed's RisingWave `HOP` is kept as the one non-PostgreSQL construct):
//!
//! - [`traffic`]: `user_events_watermarked`, `pageview_metrics`, `product_view_metrics`,
//!   `product_performance`;
//! - [`sales`]: `funnel_analysis`, `revenue_tracker`, `anomaly_detection`.
//!
//! The building blocks: [`float_sum`] (an exact, retractable `SUM(double)`),
//! [`pg_numeric`] (PostgreSQL's numeric `AVG`), [`json_fields`] (`->>` plus a cast),
//! and [`preceding_rows`] (a window over the N preceding rows as a keyed operator).

pub mod float_sum;
pub mod inputs;
pub mod json_fields;
pub mod pg_numeric;
pub mod preceding_rows;
pub mod sales;
pub mod traffic;

use differential_dataflow::VecCollection;

pub use self::inputs::{Product, User, UserEvent};
use crate::boundary::{Inputs, View};
use crate::datum::{Record, RelationSpec};
use crate::{PipelineConfig, Time};

type Coll<'s, D> = VecCollection<'s, Time, D>;

/// `products` arranged by `product_id` once, shared by the views that join it.
type ProductsArranged<'s> = crate::operators::ByKey<'s, String, Product>;

/// Input relations, in the order [`build`] takes them.
pub fn input_specs() -> Vec<&'static RelationSpec> {
    vec![Product::spec(), User::spec(), UserEvent::spec()]
}

/// The seven views, as the catalog lists them.
pub fn view_specs() -> Vec<&'static RelationSpec> {
    vec![
        traffic::UserEventWatermarked::spec(),
        traffic::PageviewMetrics::spec(),
        traffic::ProductViewMetrics::spec(),
        sales::FunnelAnalysis::spec(),
        sales::RevenueTracker::spec(),
        traffic::ProductPerformance::spec(),
        sales::AnomalyDetection::spec(),
    ]
}

/// Builds the views from the pipeline's inputs.
pub fn build<'s>(_config: &PipelineConfig, inputs: &mut Inputs<'s>) -> Vec<View<'s>> {
    let products_by_id = inputs.projected(|p: Product| (p.product_id.clone(), p)).arrange_by_key();
    inputs.unread(User::spec());
    let events: Coll<'s, UserEvent> = inputs.records();
    vec![
        traffic::user_events_watermarked(events.clone()),
        traffic::pageview_metrics(events.clone()),
        traffic::product_view_metrics(events.clone(), &products_by_id),
        sales::funnel_analysis(events.clone()),
        sales::revenue_tracker(events.clone()),
        traffic::product_performance(events.clone(), &products_by_id),
        sales::anomaly_detection(events),
    ]
}
