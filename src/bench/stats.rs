//! Order statistics of latency samples.

use serde::{Deserialize, Serialize};

/// Median, 99th percentile and maximum, in milliseconds, of `samples` measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub samples: u64,
    pub median: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    /// From samples in microseconds.
    pub fn of_micros(mut samples: Vec<u32>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let ms = |v: u32| v as f64 / 1e3;
        Latency {
            samples: samples.len() as u64,
            median: ms(nearest_rank(&samples, 0.5)),
            p99: ms(nearest_rank(&samples, 0.99)),
            max: ms(*samples.last().expect("not empty")),
        }
    }

    /// From durations.
    pub fn of_durations(samples: &[std::time::Duration]) -> Latency {
        Latency::of_micros(samples.iter().map(|d| d.as_micros().min(u32::MAX as u128) as u32).collect())
    }
}

/// The nearest-rank percentile of sorted samples: the smallest value with at
/// least `q` of the samples at or below it.
fn nearest_rank(sorted: &[u32], q: f64) -> u32 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::Latency;

    #[test]
    fn percentiles_by_nearest_rank() {
        let l = Latency::of_micros((1..=1000).rev().map(|v| v * 1000).collect());
        assert_eq!(l, Latency { samples: 1000, median: 500.0, p99: 990.0, max: 1000.0 });
        let one = Latency::of_micros(vec![2500]);
        assert_eq!((one.median, one.p99, one.max), (2.5, 2.5, 2.5));
        assert_eq!(Latency::of_micros(Vec::new()).samples, 0);
    }
}
