//! Run-time control of the embedded generator: pause, resume, change the rate, and
//! what it has done so far. The original casino demo's generator had this as a
//! small HTTP service (`/start`, `/stop`, `/rate`, `/rate/{n}`, `/status`);
//! `src/http/generator.rs` serves this handle the same way.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use diffmart_dataflows::datum::Micros;

/// How fast the generator emits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// The demos' natural rates: the simulated clock follows the wall clock.
    Natural,
    /// This many events per wall-clock second, whatever their event times.
    Fixed(f64),
}

impl Pace {
    pub fn from_rate(rate: Option<f64>) -> Pace {
        rate.map_or(Pace::Natural, Pace::Fixed)
    }

    pub fn rate(self) -> Option<f64> {
        match self {
            Pace::Natural => None,
            Pace::Fixed(rate) => Some(rate),
        }
    }
}

/// What the generator should be doing. Every change bumps `revision`, so the
/// generator knows to re-anchor its pacing (no burst to "catch up" after a pause).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Setting {
    pub running: bool,
    pub pace: Pace,
    pub revision: u64,
}

/// Shared between the generator thread and whoever controls it.
#[derive(Debug)]
pub struct GeneratorControl {
    setting: Mutex<Setting>,
    changed: Condvar,
    emitted: AtomicU64,
    event_time: AtomicI64,
    finished: AtomicBool,
    limit: Option<u64>,
}

/// The generator's state, as `/generator/status` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorState {
    pub running: bool,
    pub finished: bool,
    pub pace: Pace,
    pub emitted: u64,
    pub limit: Option<u64>,
    /// Event time of the newest emitted event (the simulated clock).
    pub event_time: Option<Micros>,
}

impl GeneratorControl {
    pub fn new(pace: Pace, limit: Option<u64>) -> GeneratorControl {
        GeneratorControl {
            setting: Mutex::new(Setting { running: true, pace, revision: 0 }),
            changed: Condvar::new(),
            emitted: AtomicU64::new(0),
            event_time: AtomicI64::new(Micros::MIN),
            finished: AtomicBool::new(false),
            limit,
        }
    }

    /// Resumes (or keeps) emitting.
    pub fn start(&self) {
        self.change(|s| s.running = true);
    }

    /// Pauses: no events until [`GeneratorControl::start`]. The simulation resumes
    /// where it stopped (the same events, in the same order).
    pub fn stop(&self) {
        self.change(|s| s.running = false);
    }

    /// Sets the pace; a fixed rate must be a positive, finite number of events per second.
    pub fn set_pace(&self, pace: Pace) -> Result<(), String> {
        if let Pace::Fixed(rate) = pace
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(format!("the rate must be a positive number of events per second, got {rate}"));
        }
        self.change(|s| s.pace = pace);
        Ok(())
    }

    pub fn state(&self) -> GeneratorState {
        let setting = self.setting();
        let event_time = self.event_time.load(Ordering::Acquire);
        GeneratorState {
            running: setting.running && !self.finished.load(Ordering::Acquire),
            finished: self.finished.load(Ordering::Acquire),
            pace: setting.pace,
            emitted: self.emitted.load(Ordering::Acquire),
            limit: self.limit,
            event_time: (event_time != Micros::MIN).then_some(event_time),
        }
    }

    fn change(&self, edit: impl FnOnce(&mut Setting)) {
        let mut setting = self.setting.lock().unwrap();
        edit(&mut setting);
        setting.revision += 1;
        self.changed.notify_all();
    }

    /// The current setting (for the generator thread, once per loop).
    pub(super) fn setting(&self) -> Setting {
        *self.setting.lock().unwrap()
    }

    /// Sleeps up to `timeout`, or until the setting changes from `seen`.
    pub(super) fn wait(&self, seen: u64, timeout: Duration) {
        let setting = self.setting.lock().unwrap();
        if setting.revision == seen {
            let _ = self.changed.wait_timeout_while(setting, timeout, |s| s.revision == seen);
        }
    }

    pub(super) fn record(&self, emitted: u64, event_time: Micros) {
        self.emitted.store(emitted, Ordering::Release);
        self.event_time.store(event_time, Ordering::Release);
    }

    pub(super) fn finish(&self) {
        self.finished.store(true, Ordering::Release);
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_bump_the_revision_and_bad_rates_are_refused() {
        let control = GeneratorControl::new(Pace::Natural, None);
        assert_eq!(control.setting().revision, 0);
        control.stop();
        assert!(!control.state().running);
        control.start();
        assert!(control.state().running);
        assert_eq!(control.setting().revision, 2);
        assert!(control.set_pace(Pace::Fixed(0.0)).is_err());
        assert!(control.set_pace(Pace::Fixed(f64::NAN)).is_err());
        assert_eq!(control.setting().revision, 2, "a refused change changes nothing");
        control.set_pace(Pace::Fixed(10.0)).unwrap();
        assert_eq!(control.state().pace, Pace::Fixed(10.0));
        assert_eq!(control.state().event_time, None);
    }
}
