//! `SUM(double precision)` as a differential difference type that never drifts.
//!
//! Summing `f64`s as they come and subtracting them when they are retracted leaves
//! rounding residue behind: add `1e16`, add `1.0`, retract `1e16`, and an `f64`
//! accumulator says `0`. A sum maintained under insertions *and* retractions must
//! be exact, so [`FloatSum`] keeps the exact sum of its finite terms as a big
//! fixed-point integer in units of 2⁻¹⁰⁷⁴ (the smallest subnormal), which every
//! finite `f64` is an integer multiple of. Infinities and NaNs are counted apart.
//! Reading the sum rounds the exact value to the nearest `f64` once.
//!
//! PostgreSQL adds in row order with rounding at every step; both answers are
//! within a few ulps of the exact sum unless terms cancel catastrophically, and the
//! exact one does not depend on the order rows arrived in. Differences from
//! PostgreSQL: a finite sum beyond `f64::MAX` reads as ±infinity where PostgreSQL
//! raises "value out of range: overflow", and a sum in the subnormal range may be
//! rounded twice.

use differential_dataflow::difference::{Abelian, IsZero, Monoid, Multiply, Semigroup};
use serde::{Deserialize, Serialize};

/// Bits per digit of the magnitude.
const DIGIT_BITS: u32 = 32;
const DIGIT_BASE: i64 = 1 << DIGIT_BITS;
/// `value = m · 2^(p − 1074)`: `p` of the smallest subnormal is 0.
const UNIT_EXPONENT: i32 = -1074;

/// The exact sum of `terms` non-NULL doubles (see the module documentation).
///
/// Canonical form, so that equal sums are equal values and zero is recognisable:
/// the magnitude's base-2³² digits run from position `low` upwards with no zero
/// digit at either end; zero has no digits and is never negative.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FloatSum {
    /// How many non-NULL terms (finite or not) went in: none means SQL NULL.
    terms: i64,
    nans: i64,
    positive_infinities: i64,
    negative_infinities: i64,
    negative: bool,
    low: u16,
    digits: Vec<u32>,
}

impl FloatSum {
    /// One term of the sum.
    pub fn of(value: f64) -> FloatSum {
        let mut sum = FloatSum { terms: 1, ..FloatSum::default() };
        if value.is_nan() {
            sum.nans = 1;
        } else if value == f64::INFINITY {
            sum.positive_infinities = 1;
        } else if value == f64::NEG_INFINITY {
            sum.negative_infinities = 1;
        } else if value != 0.0 {
            let bits = value.to_bits();
            let exponent_bits = ((bits >> 52) & 0x7ff) as u32;
            let fraction = bits & ((1u64 << 52) - 1);
            // Subnormals have no implicit bit and the exponent of the smallest normals.
            let (mantissa, position) =
                if exponent_bits == 0 { (fraction, 0) } else { (fraction | (1u64 << 52), exponent_bits - 1) };
            let wide = (mantissa as u128) << (position % DIGIT_BITS);
            sum.negative = value < 0.0;
            sum.low = (position / DIGIT_BITS) as u16;
            sum.digits = (0..3).map(|i| (wide >> (i * DIGIT_BITS)) as u32).collect();
            sum.trim();
        }
        sum
    }

    /// The SQL `SUM`: `None` when no term was summed, else the exact sum rounded to the nearest double.
    pub fn total(&self) -> Option<f64> {
        if self.terms <= 0 {
            return None;
        }
        Some(if self.nans > 0 || (self.positive_infinities > 0 && self.negative_infinities > 0) {
            f64::NAN
        } else if self.positive_infinities > 0 {
            f64::INFINITY
        } else if self.negative_infinities > 0 {
            f64::NEG_INFINITY
        } else {
            self.finite_value()
        })
    }

    fn finite_value(&self) -> f64 {
        let Some(top) = self.digits.len().checked_sub(1) else { return 0.0 };
        // The top three digits hold at least 65 significant bits; a sticky bit below them
        // stands for anything further down, so one u128 → f64 conversion rounds correctly.
        let first = top.saturating_sub(2);
        let mut mantissa: u128 = 0;
        for digit in self.digits[first..].iter().rev() {
            mantissa = (mantissa << DIGIT_BITS) | *digit as u128;
        }
        if self.digits[..first].iter().any(|d| *d != 0) {
            mantissa |= 1;
        }
        let exponent = (self.low as i32 + first as i32) * DIGIT_BITS as i32 + UNIT_EXPONENT;
        let magnitude = scale_by_power_of_two(mantissa as f64, exponent);
        if self.negative { -magnitude } else { magnitude }
    }

    /// The finite part as signed digits from position `low`, for adding.
    fn signed_digits(&self, low: usize, len: usize, sign: i64) -> impl Iterator<Item = (usize, i64)> + '_ {
        let sign = if self.negative { -sign } else { sign };
        let offset = self.low as usize - low;
        debug_assert!(offset + self.digits.len() <= len);
        self.digits.iter().enumerate().map(move |(i, d)| (offset + i, sign * *d as i64))
    }

    fn add_finite(&mut self, other: &FloatSum) {
        if other.digits.is_empty() {
            return;
        }
        if self.digits.is_empty() {
            (self.negative, self.low, self.digits) = (other.negative, other.low, other.digits.clone());
            return;
        }
        let low = self.low.min(other.low) as usize;
        let high = (self.low as usize + self.digits.len()).max(other.low as usize + other.digits.len());
        let len = high - low;
        // The sign of the result is not known up front: add as if positive, and if the
        // final carry says the sum is negative, add the negations instead.
        for sign in [1i64, -1] {
            let mut sums = vec![0i64; len];
            for (i, d) in self.signed_digits(low, len, sign).chain(other.signed_digits(low, len, sign)) {
                sums[i] += d;
            }
            let mut digits = Vec::with_capacity(len + 1);
            let mut carry = 0i64;
            for s in sums {
                let v = s + carry;
                digits.push(v.rem_euclid(DIGIT_BASE) as u32);
                carry = v.div_euclid(DIGIT_BASE);
            }
            if carry < 0 {
                continue;
            }
            if carry > 0 {
                digits.push(carry as u32);
            }
            (self.negative, self.low, self.digits) = (sign < 0, low as u16, digits);
            self.trim();
            return;
        }
        unreachable!("a sum or its negation is non-negative");
    }

    /// Restores the canonical form: no zero digits at either end, zero is not negative.
    fn trim(&mut self) {
        while self.digits.last() == Some(&0) {
            self.digits.pop();
        }
        let leading_zeros = self.digits.iter().take_while(|d| **d == 0).count();
        if leading_zeros > 0 {
            self.digits.drain(..leading_zeros);
            self.low += leading_zeros as u16;
        }
        if self.digits.is_empty() {
            self.negative = false;
            self.low = 0;
        }
    }
}

/// `x · 2^exponent`, in steps that neither overflow nor underflow on the way.
fn scale_by_power_of_two(mut x: f64, mut exponent: i32) -> f64 {
    while exponent != 0 && x != 0.0 && x.is_finite() {
        let step = exponent.clamp(-1000, 1000);
        x *= f64::powi(2.0, step);
        exponent -= step;
    }
    x
}

impl IsZero for FloatSum {
    fn is_zero(&self) -> bool {
        self.terms == 0
            && self.nans == 0
            && self.positive_infinities == 0
            && self.negative_infinities == 0
            && self.digits.is_empty()
    }
}

impl Semigroup for FloatSum {
    fn plus_equals(&mut self, rhs: &Self) {
        self.terms += rhs.terms;
        self.nans += rhs.nans;
        self.positive_infinities += rhs.positive_infinities;
        self.negative_infinities += rhs.negative_infinities;
        self.add_finite(rhs);
    }
}

impl Monoid for FloatSum {
    fn zero() -> Self {
        FloatSum::default()
    }
}

impl Abelian for FloatSum {
    fn negate(&mut self) {
        self.terms = -self.terms;
        self.nans = -self.nans;
        self.positive_infinities = -self.positive_infinities;
        self.negative_infinities = -self.negative_infinities;
        if !self.digits.is_empty() {
            self.negative = !self.negative;
        }
    }
}

impl Multiply<isize> for FloatSum {
    type Output = FloatSum;
    fn multiply(mut self, rhs: &isize) -> FloatSum {
        let factor = *rhs as i64;
        self.terms *= factor;
        self.nans *= factor;
        self.positive_infinities *= factor;
        self.negative_infinities *= factor;
        let magnitude = factor.unsigned_abs() as u128;
        let mut carry: u128 = 0;
        for digit in &mut self.digits {
            let v = *digit as u128 * magnitude + carry;
            *digit = v as u32;
            carry = v >> DIGIT_BITS;
        }
        while carry > 0 {
            self.digits.push(carry as u32);
            carry >>= DIGIT_BITS;
        }
        if factor < 0 {
            self.negative = !self.negative;
        }
        self.trim();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum_of(values: &[f64]) -> FloatSum {
        let mut sum = FloatSum::default();
        for v in values {
            sum.plus_equals(&FloatSum::of(*v));
        }
        sum
    }

    #[test]
    fn single_terms_read_back_exactly() {
        for v in [1.0, -1.0, 149.98, 0.1, 1e300, -1e-300, 5e-324, f64::MAX, f64::MIN_POSITIVE, 123456789.123] {
            assert_eq!(FloatSum::of(v).total(), Some(v), "{v}");
        }
        assert_eq!(FloatSum::of(0.0).total(), Some(0.0));
        assert_eq!(FloatSum::default().total(), None);
    }

    #[test]
    fn retractions_leave_no_residue() {
        let mut sum = sum_of(&[1e16, 1.0, 0.1, 0.2]);
        for v in [1e16, 0.1] {
            let mut term = FloatSum::of(v);
            term.negate();
            sum.plus_equals(&term);
        }
        assert_eq!(sum.total(), Some(1.2));
        for v in [1.0, 0.2] {
            sum.plus_equals(&FloatSum::of(v).multiply(&-1));
        }
        assert!(sum.is_zero(), "{sum:?}");
        assert_eq!(sum, FloatSum::default());
    }

    #[test]
    fn the_sum_is_exact_then_rounded_once() {
        // 0.1 + 0.2 rounded once is 0.30000000000000004 as well (the exact sum is above the midpoint).
        assert_eq!(sum_of(&[0.1, 0.2]).total(), Some(0.1 + 0.2));
        // Naive left-to-right summation loses the small terms; the exact sum keeps them.
        let values = [1e20, 1.0, -1e20, 1.0];
        assert_eq!(sum_of(&values).total(), Some(2.0));
        // Order does not matter.
        assert_eq!(sum_of(&[149.98, 164.96, 79.98]), sum_of(&[79.98, 149.98, 164.96]));
        assert_eq!(sum_of(&[149.98, 164.96, 79.98]).total(), Some(394.92));
        assert_eq!(sum_of(&[-5.5, 2.25]).total(), Some(-3.25));
        assert_eq!(sum_of(&[f64::MAX, f64::MAX]).total(), Some(f64::INFINITY));
        assert_eq!(sum_of(&[3.0]).multiply(&4).total(), Some(12.0));
    }

    #[test]
    fn non_finite_terms_follow_sql() {
        assert_eq!(sum_of(&[1.0, f64::INFINITY]).total(), Some(f64::INFINITY));
        assert!(sum_of(&[f64::INFINITY, f64::NEG_INFINITY]).total().unwrap().is_nan());
        assert!(sum_of(&[f64::NAN, 2.0]).total().unwrap().is_nan());
        let mut sum = sum_of(&[f64::NAN, 2.0]);
        sum.plus_equals(&FloatSum::of(f64::NAN).multiply(&-1));
        assert_eq!(sum.total(), Some(2.0));
    }

    #[test]
    fn matches_a_reference_on_many_random_sums() {
        // Integers times a power of two are exact in f64 when small: compare with i128 arithmetic.
        let mut state = 0x2545F4914F6CDD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200 {
            let mut sum = FloatSum::default();
            let mut exact: i128 = 0;
            for _ in 0..50 {
                let n = (next() % 2_000_001) as i64 - 1_000_000;
                let term = n as f64 / 1024.0;
                exact += n as i128;
                if next() % 3 == 0 {
                    sum.plus_equals(&FloatSum::of(term).multiply(&-1));
                    exact -= 2 * n as i128;
                } else {
                    sum.plus_equals(&FloatSum::of(term));
                }
            }
            assert_eq!(sum.finite_value(), exact as f64 / 1024.0);
        }
    }
}
