//! The pricing rules of the retail views' SQL as plain functions: the stock level
//! category, the stock rule, high demand, the competitor adjustment and
//! PostgreSQL's rounding. `product_stock_status`, `dynamic_pricing_enriched` (when
//! a snapshot is read) and `sales_profit` all price with these.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::datum::{ColumnType, Datum};
use crate::relation::{ColumnValue, Holds};

/// `ROUND(x, 2)` on numeric: half away from zero, like PostgreSQL.
pub fn round2(x: Decimal) -> Decimal {
    x.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// `stock_level_category`: a column of it holds the category's [`StockCategory::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum StockCategory {
    Low,
    Medium,
    High,
}

impl StockCategory {
    /// `CASE WHEN inv < 20 THEN 'Low' WHEN inv BETWEEN 20 AND 50 THEN 'Medium' ELSE 'High' END`:
    /// a NULL inventory matches neither test and lands in `High`.
    pub fn of(current_inventory: Option<i64>) -> StockCategory {
        match current_inventory {
            Some(i) if i < 20 => StockCategory::Low,
            Some(i) if i <= 50 => StockCategory::Medium,
            _ => StockCategory::High,
        }
    }
    /// The category a [`StockCategory::name`] names.
    pub fn named(name: &str) -> Option<StockCategory> {
        [StockCategory::Low, StockCategory::Medium, StockCategory::High].into_iter().find(|c| c.name() == name)
    }
    pub fn name(&self) -> &'static str {
        match self {
            StockCategory::Low => "Low",
            StockCategory::Medium => "Medium",
            StockCategory::High => "High",
        }
    }
    /// The stock rule before rounding: Low ×1.20, Medium ×1, High ×0.90.
    fn unrounded_price(&self, base: Decimal) -> Decimal {
        match self {
            StockCategory::Low => base * Decimal::new(120, 2),
            StockCategory::Medium => base,
            StockCategory::High => base * Decimal::new(90, 2),
        }
    }
    /// `stock_rule_price`: Low and High are rounded to cents, Medium is the base price itself.
    pub fn stock_rule_price(&self, base: Decimal) -> Decimal {
        match self {
            StockCategory::Medium => base,
            _ => round2(self.unrounded_price(base)),
        }
    }
}

impl ColumnValue for StockCategory {
    const HOLDS: Holds = Holds::Text;
    #[inline]
    fn to_datum(&self, ty: ColumnType) -> Datum {
        self.name().to_owned().into_datum(ty)
    }
    /// `None` for a text that names no category.
    #[inline]
    fn from_datum_ref(datum: &Datum, ty: ColumnType) -> Option<StockCategory> {
        match (datum, ty) {
            (Datum::Text(name), ColumnType::Text) | (Datum::Json(name), ColumnType::Json) => StockCategory::named(name),
            _ => None,
        }
    }
}

/// `COALESCE(clicks_15m, 0) > 30`: the only way clicks reach the price.
pub fn high_demand(clicks_15m: Option<i64>) -> bool {
    clicks_15m.unwrap_or(0) > 30
}

/// `final_price` of `dynamic_pricing_enriched` for a non-NULL base price.
pub fn final_price(
    category: StockCategory,
    base: Decimal,
    high_demand: bool,
    min_competitor_price: Option<Decimal>,
) -> Decimal {
    let rule = category.unrounded_price(base);
    let adjusted = match min_competitor_price {
        Some(min) if base <= min && high_demand => rule * Decimal::new(102, 2),
        Some(min) if rule > min => rule * Decimal::new(99, 2),
        _ => rule,
    };
    round2(adjusted).max(round2(Decimal::new(5, 1) * base))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn stock_categories_follow_the_case_expression() {
        assert_eq!(StockCategory::of(Some(-5)), StockCategory::Low);
        assert_eq!(StockCategory::of(Some(19)), StockCategory::Low);
        assert_eq!(StockCategory::of(Some(20)), StockCategory::Medium);
        assert_eq!(StockCategory::of(Some(50)), StockCategory::Medium);
        assert_eq!(StockCategory::of(Some(51)), StockCategory::High);
        assert_eq!(StockCategory::of(None), StockCategory::High);
    }

    #[test]
    fn a_stock_category_is_written_as_its_name() {
        for category in [StockCategory::Low, StockCategory::Medium, StockCategory::High] {
            let datum = category.to_datum(ColumnType::Text);
            assert_eq!(datum, Datum::Text(category.name().into()));
            assert_eq!(StockCategory::from_datum_ref(&datum, ColumnType::Text), Some(category));
            assert_eq!(StockCategory::from_datum(datum, ColumnType::Text), Ok(category));
        }
        assert_eq!(StockCategory::from_datum_ref(&Datum::Text("low".into()), ColumnType::Text), None);
        assert_eq!(StockCategory::from_datum_ref(&Datum::Null, ColumnType::Text), None);
    }

    #[test]
    fn round2_is_half_away_from_zero() {
        assert_eq!(round2(dec("2.345")), dec("2.35"));
        assert_eq!(round2(dec("-2.345")), dec("-2.35"));
        assert_eq!(round2(dec("2.344")), dec("2.34"));
    }

    #[test]
    fn final_price_branches() {
        let base = dec("100.00");
        // No competitor: the stock rule, Low is +20 %.
        assert_eq!(final_price(StockCategory::Low, base, false, None), dec("120.00"));
        // Demand branch: base at or under the competitor and more than 30 clicks: ×1.02.
        assert_eq!(final_price(StockCategory::Medium, base, high_demand(Some(31)), Some(dec("100.00"))), dec("102.00"));
        assert_eq!(final_price(StockCategory::Medium, base, high_demand(Some(30)), Some(dec("100.00"))), dec("100.00"));
        // Undercut branch: stock rule above the competitor: ×0.99.
        assert_eq!(final_price(StockCategory::Low, base, high_demand(None), Some(dec("110.00"))), dec("118.80"));
        // High is ×0.90, rounded; the floor is half the base price.
        assert_eq!(final_price(StockCategory::High, dec("19.99"), false, None), dec("17.99"));
        assert_eq!(final_price(StockCategory::High, dec("0.01"), false, None), dec("0.01"));
        assert_eq!(StockCategory::High.stock_rule_price(dec("19.99")), dec("17.99"));
        assert_eq!(StockCategory::Medium.stock_rule_price(dec("19.99")), dec("19.99"));
    }
}
