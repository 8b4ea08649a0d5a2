//! The wall clock, as event time.

use diffmart_dataflows::datum::Micros;

/// Now, as event time.
pub fn now_micros() -> Micros {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as Micros).unwrap_or(0)
}
