//! PostgreSQL's `numeric` division, for `AVG(bigint)`.
//!
//! `AVG` of a `bigint` column is `numeric` in PostgreSQL: the sum divided by the
//! count, rounded (half away from zero) to a scale PostgreSQL picks so that the
//! quotient has at least 16 significant digits (`select_div_scale` in
//! `numeric.c`). Comparisons such as `event_count > avg_count * 3` see that rounded
//! value, so diffmart reproduces it digit for digit instead of using a double.

use rust_decimal::Decimal;

/// `NUMERIC_MIN_SIG_DIGITS` in PostgreSQL.
const MIN_SIGNIFICANT_DIGITS: i32 = 16;
/// PostgreSQL's numeric digits are base 10000 (`DEC_DIGITS` = 4 decimal digits).
const DECIMAL_DIGITS_PER_DIGIT: i32 = 4;
/// Largest scale a `Decimal` holds.
const MAX_DECIMAL_SCALE: u32 = 28;

/// Weight (position of the first base-10000 digit) and that first digit of an integer.
fn weight_and_first_digit(x: i128) -> (i32, i128) {
    let mut magnitude = x.abs();
    if magnitude == 0 {
        return (0, 0);
    }
    let mut weight = 0;
    while magnitude >= 10_000 {
        magnitude /= 10_000;
        weight += 1;
    }
    (weight, magnitude)
}

/// The result scale of `numerator / denominator` for integers (display scale 0).
pub fn division_scale(numerator: i128, denominator: i128) -> u32 {
    let (weight1, first1) = weight_and_first_digit(numerator);
    let (weight2, first2) = weight_and_first_digit(denominator);
    // With equal first digits PostgreSQL cannot tell and assumes the quotient is below 1.
    let quotient_weight = weight1 - weight2 - i32::from(first1 <= first2);
    (MIN_SIGNIFICANT_DIGITS - quotient_weight * DECIMAL_DIGITS_PER_DIGIT).max(0) as u32
}

/// `numerator::numeric / denominator::numeric` as PostgreSQL computes it: the exact
/// quotient rounded half away from zero to [`division_scale`] places, keeping that
/// scale (`1.5000000000000000`). `None` when the denominator is 0.
pub fn divide_integers(numerator: i128, denominator: i128) -> Option<Decimal> {
    if denominator == 0 {
        return None;
    }
    let scale = division_scale(numerator, denominator).min(MAX_DECIMAL_SCALE);
    let exact = 10i128
        .checked_pow(scale)
        .and_then(|power| numerator.checked_mul(power))
        .map(|scaled| {
            let (quotient, remainder) = (scaled / denominator, scaled % denominator);
            // Half away from zero: round the magnitude up when the remainder is at least half.
            let away = remainder.unsigned_abs() * 2 >= denominator.unsigned_abs();
            let negative = (scaled < 0) != (denominator < 0);
            quotient + if away { if negative { -1 } else { 1 } } else { 0 }
        })
        .and_then(|mantissa| Decimal::try_from_i128_with_scale(mantissa, scale).ok());
    // Beyond i128 (sums near i64::MAX): Decimal's own division, rounded the same way.
    exact.or_else(|| {
        let quotient = Decimal::from_i128_with_scale(numerator, 0)
            .checked_div(Decimal::from_i128_with_scale(denominator, 0))?
            .round_dp_with_strategy(scale, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        let mut quotient = quotient;
        quotient.rescale(scale);
        Some(quotient)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn averages_match_postgres() {
        // SELECT avg(x) FROM (VALUES (1), (2)) v(x)  →  1.5000000000000000
        let avg = divide_integers(3, 2).unwrap();
        assert_eq!(avg, dec("1.5"));
        assert_eq!(avg.scale(), 16);
        // avg of (1,1,2) → 1.3333333333333333
        assert_eq!(divide_integers(4, 3).unwrap(), dec("1.3333333333333333"));
        // avg of (1) → 1.00000000000000000000 (equal first digits: scale 20)
        assert_eq!(divide_integers(1, 1).unwrap().scale(), 20);
        // avg of (2, 2, 3) → 2.3333333333333333 ; 7/3 → 2.3333333333333333
        assert_eq!(divide_integers(7, 3).unwrap(), dec("2.3333333333333333"));
        // 2/3 → 0.66666666666666666667 (quotient below 1: 20 places, rounded up)
        assert_eq!(divide_integers(2, 3).unwrap(), dec("0.66666666666666666667"));
        // 50000 / 3 → 16666.666666666667 (weight 1: 12 places)
        assert_eq!(divide_integers(50_000, 3).unwrap(), dec("16666.666666666667"));
        // Negative numerators round away from zero too.
        assert_eq!(divide_integers(-2, 3).unwrap(), dec("-0.66666666666666666667"));
        assert_eq!(divide_integers(1, 0), None);
        assert_eq!(divide_integers(0, 5).unwrap(), Decimal::ZERO);
    }
}
