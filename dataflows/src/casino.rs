//! Placeholder: this pipeline is being written (see the issue); it has no relations yet.

use differential_dataflow::VecCollection;

use crate::datum::{RelationSpec, Row};
use crate::{PipelineConfig, Time};

pub fn input_specs() -> Vec<&'static RelationSpec> {
    Vec::new()
}

pub fn view_specs() -> Vec<&'static RelationSpec> {
    Vec::new()
}

pub fn build_from_rows<'s>(
    _config: &PipelineConfig,
    _inputs: &[VecCollection<'s, Time, Row>],
) -> Vec<VecCollection<'s, Time, Row>> {
    Vec::new()
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
