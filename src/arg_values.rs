//! Parsers for command-line values the server, `produce` and `bench` share.

use diffmart_dataflows::datum::Micros;

/// `key=value` (librdkafka properties).
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// `90s`, `15m`, `24h`, `7d`, or a sum of them such as `1h30m`.
pub fn parse_duration(text: &str) -> Result<Micros, String> {
    let invalid = || format!("invalid duration {text:?}: use a number with s, m, h or d, e.g. 24h or 1h30m");
    let mut total: Micros = 0;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: Micros = match c {
            's' => 1_000_000,
            'm' => 60_000_000,
            'h' => 3_600_000_000,
            'd' => 86_400_000_000,
            _ => return Err(invalid()),
        };
        let amount: Micros = digits.parse().map_err(|_| invalid())?;
        total = amount.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(invalid)?;
        digits.clear();
    }
    if !digits.is_empty() || total <= 0 {
        return Err(invalid());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(86_400_000_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000_000));
        assert_eq!(parse_duration("90s"), Ok(90_000_000));
        assert!(parse_duration("24").is_err());
        assert!(parse_duration("0h").is_err());
        assert!(parse_duration("1w").is_err());
    }
}
