//! The wall clock, as event time, and the newest event a source has taken, which
//! `--max-event-skew` measures new events against.

use std::sync::atomic::{AtomicI64, Ordering};

use diffmart_dataflows::datum::{Datum, Micros, RelationKind, RelationSpec, Row};

/// Now, as event time.
pub fn now_micros() -> Micros {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as Micros).unwrap_or(0)
}

/// The newest event time a source relation has taken, shared by the threads that
/// feed it. An event far ahead of it is refused rather than taken: the views'
/// watermarks and the store's retention follow the newest event, so one event a
/// year ahead would expire the source's whole history and make every later event late.
#[derive(Debug)]
pub struct NewestEvent(AtomicI64);

/// No event yet.
const NO_EVENT: i64 = i64::MIN;

impl NewestEvent {
    /// Starting from what the relation already holds (`None`: nothing).
    pub fn new(newest: Option<Micros>) -> NewestEvent {
        NewestEvent(AtomicI64::new(newest.unwrap_or(NO_EVENT)))
    }

    pub fn get(&self) -> Option<Micros> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&t| t != NO_EVENT)
    }

    /// Takes the rows of one message if none has an event time more than `max_skew`
    /// ahead of the newest event so far, and moves the newest event on to theirs;
    /// otherwise says why not, and the newest event stays. Rows of relations without
    /// event time are always taken. The first event is taken whatever its time.
    pub fn admit(&self, spec: &RelationSpec, rows: &[Row], max_skew: Micros) -> Result<(), String> {
        let RelationKind::Source { event_time_column } = spec.kind else { return Ok(()) };
        let times = rows.iter().filter_map(|row| match row.get(event_time_column) {
            Some(Datum::Timestamp(t)) => Some(*t),
            _ => None,
        });
        let Some(newest_here) = times.max() else { return Ok(()) };
        if let Some(newest) = self.get()
            && newest_here > newest.saturating_add(max_skew)
        {
            return Err(format!(
                "event time {} is more than {} ahead of the newest event of {} ({}); see --max-event-skew",
                format_micros(newest_here),
                format_skew(max_skew),
                spec.name,
                format_micros(newest),
            ));
        }
        self.0.fetch_max(newest_here, Ordering::Relaxed);
        Ok(())
    }
}

fn format_micros(t: Micros) -> String {
    match chrono::DateTime::from_timestamp_micros(t) {
        Some(time) => time.format("%Y-%m-%d %H:%M:%S%.6fZ").to_string(),
        None => format!("{t} µs"),
    }
}

fn format_skew(skew: Micros) -> String {
    let seconds = skew / 1_000_000;
    match seconds {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffmart_dataflows::datum::Record;
    use diffmart_dataflows::retail::WebClick;

    const HOUR: Micros = 3_600_000_000;

    fn click(time: Micros) -> Row {
        let spec = WebClick::spec();
        let RelationKind::Source { event_time_column } = spec.kind else { unreachable!() };
        let mut row: Row = vec![Datum::Null; spec.columns.len()];
        row[event_time_column] = Datum::Timestamp(time);
        row
    }

    #[test]
    fn far_future_events_are_refused_and_do_not_move_the_newest_event() {
        let spec = WebClick::spec();
        let newest = NewestEvent::new(None);
        assert_eq!(newest.admit(spec, &[click(100 * HOUR)], HOUR), Ok(()), "the first event is taken");
        assert_eq!(newest.get(), Some(100 * HOUR));
        assert_eq!(newest.admit(spec, &[click(101 * HOUR)], HOUR), Ok(()), "an hour ahead is not too far");
        let refused = newest.admit(spec, &[click(99 * HOUR), click(10_000 * HOUR)], HOUR).unwrap_err();
        assert!(refused.contains("more than 1h ahead"), "{refused}");
        assert_eq!(newest.get(), Some(101 * HOUR), "a refused event does not move it");
        assert_eq!(newest.admit(spec, &[click(50 * HOUR)], HOUR), Ok(()), "late events are not its business");
        assert_eq!(newest.get(), Some(101 * HOUR));
    }
}
