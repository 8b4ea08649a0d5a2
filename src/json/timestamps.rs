//! Timestamps in the forms the original producers write: what a JSON string
//! holding a timestamp may look like.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use diffmart_dataflows::datum::Micros;

/// Accepts RFC 3339 (`2025-01-02T03:04:05.123Z`, `…+02:00`), the producers'
/// `2025-01-02 03:04:05Z`, and zone-less `2025-01-02 03:04:05[.ffffff]` or
/// `2025-01-02`, both taken as UTC.
pub fn parse_timestamp(text: &str) -> Result<Micros, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_micros());
    }
    let zoneless = text.strip_suffix('Z').unwrap_or(text);
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(zoneless, format) {
            return Ok(t.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_micros());
    }
    Err(format!("invalid timestamp {text:?}: expected RFC 3339 or \"YYYY-MM-DD HH:MM:SS\" (UTC)"))
}

#[cfg(test)]
mod tests {
    use super::parse_timestamp;

    #[test]
    fn accepts_the_producers_formats() {
        let expected = 1_735_787_045_000_000; // 2025-01-02 03:04:05 UTC
        assert_eq!(parse_timestamp("2025-01-02 03:04:05Z"), Ok(expected));
        assert_eq!(parse_timestamp("2025-01-02 03:04:05"), Ok(expected));
        assert_eq!(parse_timestamp("2025-01-02T03:04:05Z"), Ok(expected));
        assert_eq!(parse_timestamp("2025-01-02T05:04:05+02:00"), Ok(expected));
        assert_eq!(parse_timestamp("2025-01-02 03:04:05.5"), Ok(expected + 500_000));
        assert!(parse_timestamp("yesterday").is_err());
    }
}
