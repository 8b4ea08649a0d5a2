//! Event time of the casino pipeline: the watermark of `gaming_transactions`, the
//! per-member tumbling windows that open, close and expire with it, and the
//! all-time per-member totals.
//!
//! # The watermark, defined on arrival order
//!
//! Arrival order is logical time (one ingest batch per time); rows within a batch
//! have no order. So the watermark is defined per batch:
//!
//! - after batch `t`, `W(t) = max(transaction_time of every row inserted in batches ≤ t) − 10 s`
//!   (NULL while no row has arrived; retractions never move it);
//! - a row of batch `t` is *late* when `W(t − 1)` exists and its `transaction_time < W(t − 1)`:
//!   every row is judged against the watermark of all earlier batches, then the batch
//!   advances the watermark. Late rows are counted and left out of `member_window_closed`;
//! - a window `[start, end)` is *closed* after batch `t` when `end ≤ W(t)`. No on-time row can
//!   reach a closed window later (it would be older than `end ≤ W`, hence late), so a closed
//!   window never changes;
//! - a window *expires* after batch `t` when `end ≤ W(t) − retention`: its state is dropped and
//!   its rows leave `member_daily_summary` and `member_window_closed`. Rows for an expired
//!   window (necessarily late) are counted and otherwise ignored, so memory stays flat.
//!
//! The answer is the same for any number of workers: every worker sees every batch's
//! maximum (each worker broadcasts the maximum of its share) and folds it in only once
//! the batch is complete, so all workers step through the same watermarks.
//!
//! # Checkpoints
//!
//! Both operators here depend on history (lateness is judged at arrival, totals outlive
//! the retained rows), so both save their state at a checkpoint and re-announce their
//! rows at a restore (see [`crate::checkpoint`]): the member windows under
//! `casino.member_windows`, the watermark under `casino.watermark`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;

use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, VecCollection};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;

use super::GamingTransaction;
use crate::Time;
use crate::checkpoint::{Checkpoints, SavedState};
use crate::datum::{MICROS_PER_SECOND, Micros};
use crate::operators::{ClockedState, run_clocked, split_by_kind};

/// How far the watermark trails the newest transaction time seen.
pub const ALLOWED_LATENESS: Micros = 10 * MICROS_PER_SECOND;

/// The watermark given the newest transaction time seen so far.
pub fn watermark(max_event_time: Option<Micros>) -> Option<Micros> {
    max_event_time.map(|t| t.saturating_sub(ALLOWED_LATENESS))
}

/// Start of the tumbling window of `size` holding `t`; windows are aligned to the epoch
/// (RisingWave's `TUMBLE`, PostgreSQL's `date_bin(size, t, '1970-01-01')`).
pub fn tumble_start(t: Micros, size: Micros) -> Micros {
    t.div_euclid(size) * size
}

/// The aggregates of `member_daily_summary` over some set of transactions:
/// `SUM(CASE WHEN transaction_type = 'bet' THEN amount ELSE 0 END)`, the same for
/// `'win'`, `COUNT(*)` and `MAX(transaction_time)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Totals {
    pub total_spend: Decimal,
    pub total_winnings: Decimal,
    pub transaction_count: i64,
    /// A running maximum: `gaming_transactions` is append-only (a source; SQL cannot
    /// write it), so no retraction ever has to lower it.
    pub last_transaction: Micros,
}

impl Totals {
    fn add(&mut self, tx: &GamingTransaction, diff: isize) {
        let weight = Decimal::from(diff as i64);
        match tx.transaction_type.as_str() {
            "bet" => self.total_spend += tx.amount * weight,
            "win" => self.total_winnings += tx.amount * weight,
            // `cashout` and anything else only count in COUNT(*).
            _ => {}
        }
        if diff > 0 && (self.transaction_count <= 0 || tx.transaction_time > self.last_transaction) {
            self.last_transaction = tx.transaction_time;
        }
        self.transaction_count += diff as i64;
    }

    /// `net_amount`: winnings − bets, the member's gain (negative when they lost).
    pub fn net_amount(&self) -> Decimal {
        self.total_winnings - self.total_spend
    }

    /// These totals as a group of `GROUP BY`: no rows, no group.
    fn group(&self) -> Option<&Totals> {
        (self.transaction_count != 0).then_some(self)
    }
}

/// A row of `member_daily_summary` or `member_window_closed`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberWindow {
    pub member_id: i64,
    pub member_name: Option<String>,
    pub window_start: Micros,
    pub window_end: Micros,
    pub totals: Totals,
}

/// A row of `member_leaderboard`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberLifetime {
    pub member_id: i64,
    pub member_name: Option<String>,
    pub totals: Totals,
}

/// What the member operator emits, as one collection split by view afterwards.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MemberChange {
    DailySummary(MemberWindow),
    WindowClosed(MemberWindow),
    Leaderboard(MemberLifetime),
    /// One per late row (the difference carries the count).
    Late,
}

impl MemberChange {
    /// Which of [`EventTimeViews`]' collections a change goes to (see
    /// [`crate::operators::split_by_kind`]).
    fn kind(&self) -> usize {
        match self {
            MemberChange::DailySummary(_) => 0,
            MemberChange::WindowClosed(_) => 1,
            MemberChange::Leaderboard(_) => 2,
            MemberChange::Late => 3,
        }
    }
}

/// `GROUP BY member_id, member_name`.
type MemberKey = (i64, Option<String>);

/// The exchange route of a member's transactions, and so of its saved state.
fn member_route(member_id: i64) -> u64 {
    member_id.hashed()
}

/// One member's window: all its rows (for the summary) and its on-time rows (for the
/// closed window).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct WindowState {
    all: Totals,
    on_time: Totals,
}

/// The value at `key`, inserted as the default if absent; unlike `entry`, the key is
/// cloned only when it is inserted.
fn get_or_insert_default<'m, V: Default>(map: &'m mut BTreeMap<MemberKey, V>, key: &MemberKey) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.clone(), V::default());
    }
    map.get_mut(key).expect("just made sure")
}

/// The per-worker state machine behind the member views, fed one complete batch at a
/// time in arrival order. It holds the windows not yet expired and one record per
/// member, so memory is bounded by `retention` and the number of members.
#[derive(Clone, Debug)]
pub struct MemberWindows {
    size: Micros,
    retention: Micros,
    max_event_time: Option<Micros>,
    /// By window start, then member.
    windows: BTreeMap<Micros, BTreeMap<MemberKey, WindowState>>,
    lifetime: BTreeMap<MemberKey, Totals>,
}

impl MemberWindows {
    /// Windows of `size` (> 0), dropped `retention` (≥ 0) of event time after they close.
    pub fn new(size: Micros, retention: Micros) -> MemberWindows {
        assert!(size > 0, "the casino window must be positive, got {size}µs");
        MemberWindows {
            size,
            retention: retention.max(0),
            max_event_time: None,
            windows: BTreeMap::new(),
            lifetime: BTreeMap::new(),
        }
    }

    /// Number of (window, member) states held, for tests of memory bounds.
    pub fn window_states(&self) -> usize {
        self.windows.values().map(BTreeMap::len).sum()
    }

    /// Applies one complete batch: `updates` are its rows at this worker, `batch_max`
    /// the newest transaction time inserted by the batch at any worker. Pushes the
    /// resulting changes of every member view to `out`.
    pub fn process(
        &mut self,
        updates: Vec<(GamingTransaction, isize)>,
        batch_max: Option<Micros>,
        out: &mut Vec<(MemberChange, isize)>,
    ) {
        let size = self.size;
        let arrival_watermark = watermark(self.max_event_time);
        // Windows ending at or before this are gone.
        let expired_through = arrival_watermark.map(|w| w.saturating_sub(self.retention));
        // The rows of touched groups before this batch, to emit as retractions.
        let mut members_before: BTreeMap<MemberKey, Option<Totals>> = BTreeMap::new();
        let mut windows_before: BTreeMap<(Micros, MemberKey), Option<Totals>> = BTreeMap::new();
        let mut late: isize = 0;

        // A member's name is a heap string and most transactions are of known members:
        // the key takes the transaction's name (totals never read it), and is copied only
        // where it is new to the batch or to the state.
        for (mut tx, diff) in updates {
            let key: MemberKey = (tx.member_id, tx.member_name.take());
            if !members_before.contains_key(&key) {
                members_before.insert(key.clone(), self.lifetime.get(&key).and_then(Totals::group).cloned());
            }
            get_or_insert_default(&mut self.lifetime, &key).add(&tx, diff);

            let is_late = arrival_watermark.is_some_and(|w| tx.transaction_time < w);
            if is_late {
                late += diff;
            }
            let start = tumble_start(tx.transaction_time, size);
            if expired_through.is_some_and(|e| start.saturating_add(size) <= e) {
                continue;
            }
            let window = get_or_insert_default(self.windows.entry(start).or_default(), &key);
            windows_before.entry((start, key)).or_insert_with(|| window.all.group().cloned());
            window.all.add(&tx, diff);
            if !is_late {
                window.on_time.add(&tx, diff);
            }
        }

        for (key, before) in members_before {
            let after = self.lifetime.get(&key).and_then(Totals::group).cloned();
            if after.is_none() {
                self.lifetime.remove(&key);
            }
            if before != after {
                let row = |totals| MemberLifetime { member_id: key.0, member_name: key.1.clone(), totals };
                out.extend(before.map(|t| (MemberChange::Leaderboard(row(t)), -1)));
                out.extend(after.map(|t| (MemberChange::Leaderboard(row(t)), 1)));
            }
        }
        for ((start, key), before) in windows_before {
            let members = self.windows.get_mut(&start).expect("touched windows exist");
            let state = members.get(&key).expect("touched windows exist");
            let after = state.all.group().cloned();
            if after.is_none() && state.on_time.group().is_none() {
                members.remove(&key);
                if members.is_empty() {
                    self.windows.remove(&start);
                }
            }
            if before != after {
                out.extend(before.map(|t| (MemberChange::DailySummary(window_row(&key, start, size, t)), -1)));
                out.extend(after.map(|t| (MemberChange::DailySummary(window_row(&key, start, size, t)), 1)));
            }
        }
        if late != 0 {
            out.push((MemberChange::Late, late));
        }

        // The batch is in: advance the watermark, close and expire windows.
        self.max_event_time = self.max_event_time.max(batch_max);
        let Some(now) = watermark(self.max_event_time) else { return };
        if arrival_watermark != Some(now) {
            // Windows whose end passed the watermark with this batch: end ∈ (before, now].
            let lower = arrival_watermark.map_or(Bound::Unbounded, |w| Bound::Excluded(w.saturating_sub(size)));
            let upper = Bound::Included(now.saturating_sub(size));
            for (&start, members) in self.windows.range((lower, upper)) {
                for (key, state) in members {
                    if let Some(totals) = state.on_time.group() {
                        out.push((MemberChange::WindowClosed(window_row(key, start, size, totals.clone())), 1));
                    }
                }
            }
        }
        // Expired windows were closed first (retention ≥ 0), so both rows go.
        let horizon = now.saturating_sub(self.retention);
        while let Some(entry) = self.windows.first_entry() {
            if entry.key().saturating_add(size) > horizon {
                break;
            }
            let (start, members) = entry.remove_entry();
            for (key, state) in members {
                if let Some(totals) = state.all.group() {
                    out.push((MemberChange::DailySummary(window_row(&key, start, size, totals.clone())), -1));
                }
                if let Some(totals) = state.on_time.group() {
                    out.push((MemberChange::WindowClosed(window_row(&key, start, size, totals.clone())), -1));
                }
            }
        }
    }
}

fn window_row(key: &MemberKey, start: Micros, size: Micros, totals: Totals) -> MemberWindow {
    MemberWindow {
        member_id: key.0,
        member_name: key.1.clone(),
        window_start: start,
        window_end: start.saturating_add(size),
        totals,
    }
}

/// What the watermark operator learns about one batch.
struct PendingStatus {
    capability: Capability<Time>,
    batch_max: Option<Micros>,
    late: i64,
}

fn pending_status(
    pending: &mut BTreeMap<Time, PendingStatus>,
    time: Time,
    capability: impl FnOnce() -> Capability<Time>,
) -> &mut PendingStatus {
    pending.entry(time).or_insert_with(|| PendingStatus { capability: capability(), batch_max: None, late: 0 })
}

impl ClockedState for MemberWindows {
    type Input = GamingTransaction;
    type Change = MemberChange;
    fn process(
        &mut self,
        batch: Vec<(GamingTransaction, isize)>,
        batch_max: Option<Micros>,
        out: &mut Vec<(MemberChange, isize)>,
    ) {
        MemberWindows::process(self, batch, batch_max, out)
    }
    /// The clock is the same on every worker (every worker folds every batch's maximum):
    /// shared. The rest is one entry per member, on its member's route.
    fn save(&self) -> SavedState {
        let saved_member = |key: &MemberKey, lifetime| SavedMember { key: key.clone(), lifetime, windows: Vec::new() };
        let mut members: BTreeMap<&MemberKey, SavedMember> =
            self.lifetime.iter().map(|(key, totals)| (key, saved_member(key, Some(totals.clone())))).collect();
        for (&start, windows) in &self.windows {
            for (key, window) in windows {
                members.entry(key).or_insert_with(|| saved_member(key, None)).windows.push((start, window.clone()));
            }
        }
        let mut saved = SavedState::default();
        saved.set_shared(&self.max_event_time);
        for member in members.into_values() {
            saved.push_keyed(member_route(member.key.0), &member);
        }
        saved
    }

    /// Announces what `process` had emitted and not retracted: every group of the
    /// leaderboard and of the summary, and the closed windows with on-time rows (a
    /// closed window's on-time rows never change, and it is retracted only as it expires,
    /// which drops its state).
    fn restore(&mut self, saved: &SavedState, out: &mut Vec<(MemberChange, isize)>) {
        self.max_event_time = saved.shared().flatten();
        for member in saved.keyed::<SavedMember>() {
            for (start, window) in member.windows {
                self.windows.entry(start).or_default().insert(member.key.clone(), window);
            }
            if let Some(totals) = member.lifetime {
                self.lifetime.insert(member.key, totals);
            }
        }
        let size = self.size;
        for (key, totals) in &self.lifetime {
            let row = MemberLifetime { member_id: key.0, member_name: key.1.clone(), totals: totals.clone() };
            out.push((MemberChange::Leaderboard(row), 1));
        }
        let closed_through = watermark(self.max_event_time).map(|w| w.saturating_sub(size));
        for (&start, windows) in &self.windows {
            let closed = closed_through.is_some_and(|c| start <= c);
            for (key, window) in windows {
                if let Some(totals) = window.all.group() {
                    out.push((MemberChange::DailySummary(window_row(key, start, size, totals.clone())), 1));
                }
                if let Some(totals) = window.on_time.group().filter(|_| closed) {
                    out.push((MemberChange::WindowClosed(window_row(key, start, size, totals.clone())), 1));
                }
            }
        }
    }
}

/// One member's state in a checkpoint: its all-time totals (`None` when they add up to
/// no rows) and its windows not yet expired, by start.
#[derive(Serialize, Deserialize)]
struct SavedMember {
    key: MemberKey,
    lifetime: Option<Totals>,
    windows: Vec<(Micros, WindowState)>,
}

/// What the watermark operator keeps: the newest transaction time and the late rows so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct WatermarkState {
    max_event_time: Option<Micros>,
    late_total: i64,
}

impl WatermarkState {
    /// The `casino_watermark` row: none until the first transaction.
    fn row(&self) -> Option<(Micros, i64)> {
        watermark(self.max_event_time).map(|w| (w, self.late_total))
    }
}

/// The member views' changes (see [`MemberChange`]), one collection per kind, and
/// the watermark relation `(watermark, late_transactions)`.
pub struct EventTimeViews<'s> {
    pub daily_summary: VecCollection<'s, Time, MemberChange>,
    pub window_closed: VecCollection<'s, Time, MemberChange>,
    pub leaderboard: VecCollection<'s, Time, MemberChange>,
    pub watermark: VecCollection<'s, Time, (Micros, i64)>,
}

/// Runs [`MemberWindows`] over the transactions, keyed by member, with the watermark
/// shared by every worker. Both operators register in `checkpoints`.
pub fn event_time_views<'s>(
    transactions: VecCollection<'s, Time, GamingTransaction>,
    size: Micros,
    retention: Micros,
    checkpoints: &Checkpoints,
) -> EventTimeViews<'s> {
    let key: fn(&GamingTransaction) -> u64 = |tx| member_route(tx.member_id);
    let event_time: fn(&GamingTransaction) -> Micros = |tx| tx.transaction_time;
    let (member_changes, batch_maxima) = run_clocked(
        "CasinoMemberWindows",
        transactions,
        key,
        event_time,
        MemberWindows::new(size, retention),
        checkpoints.slot("casino.member_windows"),
    );

    // One row, on worker 0: the watermark after each batch and the late rows so far.
    // Every input goes to worker 0, so the state is saved under route 0, the route of
    // that exchange: restored on any number of workers, it comes back on one worker
    // alone, and the row is announced once.
    let mut slot = checkpoints.slot("casino.watermark");
    let restored = slot.take_restored();
    let through = restored.as_ref().map(|r| r.through);
    let state: WatermarkState = restored.and_then(|r| r.state.keyed().next()).unwrap_or_default();
    let state = Rc::new(RefCell::new(state));
    let saved = state.clone();
    slot.on_save(move |_through| {
        let mut saved_state = SavedState::default();
        let state = saved.borrow();
        if *state != WatermarkState::default() {
            saved_state.push_keyed(0, &*state);
        }
        saved_state
    });
    let restored_through = move |time: &Time| through.is_some_and(|through| *time <= through);
    let [daily_summary, window_closed, leaderboard, late] = split_by_kind(member_changes, MemberChange::kind);
    let watermark = batch_maxima
        .binary_frontier::<_, CapacityContainerBuilder<Vec<((Micros, i64), Time, isize)>>, _, _, _, _>(
            late.inner,
            Exchange::new(|_: &(Time, Micros)| 0),
            Exchange::new(|_: &(MemberChange, Time, isize)| 0),
            "CasinoWatermark",
            move |capability, _info| {
                let mut pending: BTreeMap<Time, PendingStatus> = BTreeMap::new();
                // The restored row, announced once at the checkpoint's time.
                let mut announce = through.map(|t| capability.delayed(&t));
                move |(maxima, maxima_frontier), (late, late_frontier), output| {
                    if let Some(at) = announce.take()
                        && let Some(row) = state.borrow().row()
                    {
                        output.session(&at).give((row, *at.time(), 1));
                    }
                    maxima.for_each(|cap, data| {
                        for (time, max) in data.drain(..) {
                            if restored_through(&time) {
                                continue;
                            }
                            let status = pending_status(&mut pending, time, || cap.delayed(&time, 0));
                            status.batch_max = status.batch_max.max(Some(max));
                        }
                    });
                    late.for_each(|cap, data| {
                        for (_late, time, diff) in data.drain(..) {
                            if restored_through(&time) {
                                continue;
                            }
                            pending_status(&mut pending, time, || cap.delayed(&time, 0)).late += diff as i64;
                        }
                    });
                    let mut state = state.borrow_mut();
                    while let Some(entry) = pending.first_entry() {
                        let time = *entry.key();
                        if maxima_frontier.less_equal(&time) || late_frontier.less_equal(&time) {
                            break;
                        }
                        let status = entry.remove();
                        let before = state.row();
                        state.max_event_time = state.max_event_time.max(status.batch_max);
                        state.late_total += status.late;
                        let after = state.row();
                        if before != after {
                            let mut session = output.session(&status.capability);
                            if let Some(row) = before {
                                session.give((row, time, -1));
                            }
                            if let Some(row) = after {
                                session.give((row, time, 1));
                            }
                        }
                    }
                }
            },
        )
        .as_collection();

    EventTimeViews { daily_summary, window_closed, leaderboard, watermark }
}

#[cfg(test)]
pub(super) mod tests {
    use differential_dataflow::VecCollection;
    use proptest::prelude::*;

    use super::*;
    use crate::checkpoint::testing::assert_restores_exactly;
    use crate::datum::MICROS_PER_MINUTE;

    const MINUTE: Micros = MICROS_PER_MINUTE;
    const SECOND: Micros = MICROS_PER_SECOND;

    fn tx(member_id: i64, kind: &str, amount: i64, at: Micros) -> (GamingTransaction, isize) {
        let tx = GamingTransaction {
            transaction_id: at,
            member_id,
            member_name: Some(format!("member {member_id}")),
            transaction_type: kind.to_string(),
            amount: Decimal::from(amount),
            game_type: "slot".to_string(),
            transaction_time: at,
        };
        (tx, 1)
    }

    /// Feeds one batch as a single worker would see it.
    fn batch(state: &mut MemberWindows, rows: Vec<(GamingTransaction, isize)>) -> Vec<(MemberChange, isize)> {
        let batch_max = rows.iter().filter(|(_, d)| *d > 0).map(|(t, _)| t.transaction_time).max();
        let mut out = Vec::new();
        state.process(rows, batch_max, &mut out);
        out
    }

    fn closed(changes: &[(MemberChange, isize)]) -> Vec<(Micros, i64, isize)> {
        changes
            .iter()
            .filter_map(|(c, d)| match c {
                MemberChange::WindowClosed(w) => Some((w.window_start, w.totals.transaction_count, *d)),
                _ => None,
            })
            .collect()
    }

    fn late(changes: &[(MemberChange, isize)]) -> isize {
        changes.iter().filter(|(c, _)| matches!(c, MemberChange::Late)).map(|(_, d)| d).sum()
    }

    #[test]
    fn a_window_closes_once_the_watermark_passes_its_end_and_late_rows_stay_out() {
        let mut state = MemberWindows::new(5 * MINUTE, 60 * MINUTE);
        // Window [0, 5m): nothing closes while the newest time is under 5m10s.
        let out = batch(&mut state, vec![tx(1, "bet", 100, MINUTE), tx(1, "win", 40, 4 * MINUTE)]);
        assert!(closed(&out).is_empty());
        let out = batch(&mut state, vec![tx(1, "bet", 10, 5 * MINUTE + 9 * SECOND)]);
        assert!(closed(&out).is_empty());
        // 5m10s: the watermark reaches 5m, the window's end.
        let out = batch(&mut state, vec![tx(2, "bet", 10, 5 * MINUTE + 10 * SECOND)]);
        assert_eq!(closed(&out), vec![(0, 2, 1)]);
        // A row for the closed window is late: the summary takes it, the closed window does not.
        let out = batch(&mut state, vec![tx(1, "bet", 7, 2 * MINUTE)]);
        assert_eq!(late(&out), 1);
        assert!(closed(&out).is_empty());
        let summary: Vec<i64> = out
            .iter()
            .filter_map(|(c, d)| match c {
                MemberChange::DailySummary(w) if *d > 0 => Some(w.totals.transaction_count),
                _ => None,
            })
            .collect();
        assert_eq!(summary, vec![3]);
    }

    #[test]
    fn rows_of_one_batch_are_judged_against_the_earlier_batches_only() {
        let mut state = MemberWindows::new(5 * MINUTE, 60 * MINUTE);
        // In one batch a row far ahead does not make its batch-mates late.
        let out = batch(&mut state, vec![tx(1, "bet", 1, 20 * MINUTE), tx(1, "bet", 1, MINUTE)]);
        assert_eq!(late(&out), 0);
        // ... and the window of the early row closes with that same batch.
        assert_eq!(closed(&out), vec![(0, 1, 1)]);
        // The next batch is judged against 20m − 10s.
        let out = batch(&mut state, vec![tx(1, "bet", 1, 20 * MINUTE - 10 * SECOND), tx(1, "bet", 1, 19 * MINUTE)]);
        assert_eq!(late(&out), 1);
    }

    #[test]
    fn windows_expire_retention_behind_the_watermark_and_state_stays_flat() {
        let mut state = MemberWindows::new(MINUTE, 10 * MINUTE);
        let mut held = Vec::new();
        for second in 0..(6 * 60 * 60) {
            let at = second * SECOND;
            batch(&mut state, vec![tx(second % 7, "bet", 5, at), tx(100 + second % 5, "win", 3, at)]);
            held.push(state.window_states());
        }
        // 12 members over the ~11 windows within retention of the watermark.
        assert!(held.iter().all(|&n| n <= 12 * 12), "state grew: max {}", held.iter().max().unwrap());
        // Expiry retracts what was emitted: an expired window leaves both views.
        let mut state = MemberWindows::new(MINUTE, 2 * MINUTE);
        batch(&mut state, vec![tx(1, "bet", 5, 0)]);
        let out = batch(&mut state, vec![tx(1, "bet", 5, 3 * MINUTE + 10 * SECOND)]);
        let retracted: Vec<&MemberChange> = out.iter().filter(|(_, d)| *d < 0).map(|(c, _)| c).collect();
        assert!(retracted.iter().any(|c| matches!(c, MemberChange::DailySummary(w) if w.window_start == 0)));
        assert!(retracted.iter().any(|c| matches!(c, MemberChange::WindowClosed(w) if w.window_start == 0)));
        // A row for the expired window is counted late and recreates nothing.
        let out = batch(&mut state, vec![tx(1, "bet", 5, 30 * SECOND)]);
        assert_eq!(out.iter().filter(|(c, _)| !matches!(c, MemberChange::Leaderboard(_))).count(), 1);
        assert_eq!(late(&out), 1);
    }

    #[test]
    fn totals_follow_the_case_expressions() {
        let mut totals = Totals::default();
        for (kind, amount, at) in [("bet", 100, 5), ("win", 30, 9), ("cashout", 1000, 7)] {
            totals.add(&tx(1, kind, amount, at).0, 1);
        }
        assert_eq!(totals.total_spend, Decimal::from(100));
        assert_eq!(totals.total_winnings, Decimal::from(30));
        assert_eq!(totals.net_amount(), Decimal::from(-70));
        assert_eq!(totals.transaction_count, 3);
        assert_eq!(totals.last_transaction, 9);
        assert_eq!(tumble_start(-1, 5), -5);
    }

    /// What the event-time operators emit, as one collection.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    enum Emitted {
        Member(MemberChange),
        Watermark(Micros, i64),
    }

    /// The member windows (1-minute windows, 3 minutes of retention) and the watermark.
    fn event_time_outputs<'s>(
        transactions: VecCollection<'s, Time, GamingTransaction>,
        checkpoints: &Checkpoints,
    ) -> VecCollection<'s, Time, Emitted> {
        let views = event_time_views(transactions, MINUTE, 3 * MINUTE, checkpoints);
        let members = views.daily_summary.concat(views.window_closed).concat(views.leaderboard);
        members.map(Emitted::Member).concat(views.watermark.map(|(w, late)| Emitted::Watermark(w, late)))
    }

    /// One generated batch: how far the newest event time jumps (an index into
    /// [`JUMPS`]), its transactions, and which earlier transaction it retracts, if any.
    pub(in crate::casino) type BatchPlan = (usize, Vec<TxPlan>, Option<usize>);
    /// One generated transaction: member, whether it has a name, type, amount, and how
    /// many seconds it is older than the batch's clock (up to 5 minutes: late rows, rows
    /// of expired windows).
    pub(in crate::casino) type TxPlan = (i64, bool, usize, i64, i64);

    /// Jumps of the clock: none, within a window, past a window, past the retention.
    const JUMPS: [Micros; 4] = [0, 15 * SECOND, 2 * MINUTE, 10 * MINUTE];

    pub(in crate::casino) fn batch_plans() -> impl Strategy<Value = Vec<BatchPlan>> {
        let tx = (0..4i64, any::<bool>(), 0..3usize, 1..60i64, 0..300i64);
        prop::collection::vec((0..JUMPS.len(), prop::collection::vec(tx, 0..5), prop::option::of(0..50usize)), 1..10)
    }

    /// The transactions of `plans`, batch by batch, from `start`: the clock jumps, rows
    /// trail it, and a retraction takes back an earlier row still in.
    pub(in crate::casino) fn transactions(plans: &[BatchPlan], start: Micros) -> Vec<Vec<(GamingTransaction, isize)>> {
        let mut clock = start;
        let mut inserted: Vec<GamingTransaction> = Vec::new();
        plans
            .iter()
            .map(|(jump, txs, retract)| {
                clock += JUMPS[*jump];
                let mut batch: Vec<(GamingTransaction, isize)> = txs
                    .iter()
                    .map(|&(member_id, named, kind, amount, back)| {
                        let tx = GamingTransaction {
                            transaction_id: inserted.len() as i64,
                            member_id,
                            member_name: named.then(|| format!("member {member_id}")),
                            transaction_type: ["bet", "win", "cashout"][kind].to_string(),
                            amount: Decimal::from(amount * 10),
                            game_type: ["slot", "poker"][member_id as usize % 2].to_string(),
                            transaction_time: clock - back * SECOND,
                        };
                        inserted.push(tx.clone());
                        (tx, 1)
                    })
                    .collect();
                if let Some(i) = retract.filter(|i| *i < inserted.len()) {
                    batch.push((inserted.remove(i), -1));
                }
                batch
            })
            .collect()
    }

    #[test]
    fn member_windows_and_the_watermark_restore_exactly() {
        let at = |minutes: i64, seconds: i64| 60 * MINUTE + minutes * MINUTE + seconds * SECOND;
        let named = |member, kind, amount, time| tx(member, kind, amount, time);
        let anonymous = |member, kind, amount, time| {
            let (mut tx, diff) = tx(member, kind, amount, time);
            tx.member_name = None;
            (tx, diff)
        };
        let batches = vec![
            vec![named(1, "bet", 100, at(0, 5)), named(2, "win", 40, at(0, 50))],
            // Out of order within the batch, and a second name for member 1.
            vec![named(1, "win", 30, at(1, 30)), anonymous(1, "bet", 20, at(0, 20))],
            // Late: older than the watermark of the batches before.
            vec![named(2, "bet", 5, at(1, 0)), named(3, "cashout", 7, at(1, 40))],
            vec![named(3, "bet", 70, at(2, 5))],
            // A gap past the retention: everything expires; a row for an expired window.
            vec![named(1, "bet", 10, at(12, 0)), named(2, "bet", 10, at(2, 30))],
            vec![],
            vec![anonymous(1, "win", 15, at(12, 30)), named(4, "bet", 9, at(11, 0))],
            vec![named(4, "bet", 1, at(13, 15)), (tx(1, "bet", 10, at(12, 0)).0, -1)],
        ];
        for cut in [0, 1, 2, 4, 5, 7, 8] {
            assert_restores_exactly(event_time_outputs, &batches, cut);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn member_windows_and_the_watermark_restore_exactly_at_any_cut(
            plans in batch_plans(),
            cut in 0..10usize,
        ) {
            let batches = transactions(&plans, 60 * MINUTE);
            assert_restores_exactly(event_time_outputs, &batches, cut.min(batches.len()));
        }
    }
}
