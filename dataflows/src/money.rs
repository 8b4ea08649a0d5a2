//! `SUM(numeric)` as a differential difference type.

use differential_dataflow::difference::{Abelian, IsZero, Monoid, Multiply, Semigroup};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A numeric sum and how many non-NULL terms went into it. Used as the
/// difference of a collection (`explode` + `count`), it keeps an exact running
/// `SUM` in one record per key, and `terms` tells "no terms" (SQL NULL) from 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MoneySum {
    terms: i64,
    sum: Decimal,
}

impl MoneySum {
    pub fn new(term: Decimal) -> MoneySum {
        MoneySum { terms: 1, sum: term }
    }
    /// `terms` non-NULL terms that add up to `sum`.
    pub fn of(terms: i64, sum: Decimal) -> MoneySum {
        MoneySum { terms, sum }
    }
    /// The SQL `SUM`: `None` when no term was summed.
    pub fn total(&self) -> Option<Decimal> {
        (self.terms > 0).then_some(self.sum)
    }
}

impl IsZero for MoneySum {
    fn is_zero(&self) -> bool {
        self.terms == 0 && self.sum.is_zero()
    }
}
impl Semigroup for MoneySum {
    fn plus_equals(&mut self, rhs: &Self) {
        self.terms += rhs.terms;
        self.sum += rhs.sum;
    }
}
impl Monoid for MoneySum {
    fn zero() -> Self {
        MoneySum::default()
    }
}
impl Abelian for MoneySum {
    fn negate(&mut self) {
        self.terms = -self.terms;
        self.sum = -self.sum;
    }
}
impl Multiply<isize> for MoneySum {
    type Output = MoneySum;
    fn multiply(self, rhs: &isize) -> MoneySum {
        MoneySum { terms: self.terms * *rhs as i64, sum: self.sum * Decimal::from(*rhs) }
    }
}
