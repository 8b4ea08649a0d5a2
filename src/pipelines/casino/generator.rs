//! A deterministic stand-in for the casino demo's transaction generator (seed 003).
//!
//! The demo's FastAPI service sent `gaming-transactions` at 5 bets per second: a
//! member (one of 100, ids 1001–1100) places a bet on a game (slot 40 %, blackjack
//! 25 %, roulette 20 %, poker 15 %), and with the game's win probability (slot .45,
//! blackjack .48, roulette .47, poker .46; members 1051–1070 win only 35 % as often)
//! a win follows a few seconds later. Bet sizes are a share of the game's range
//! (slot 10–500, blackjack 25–1000, roulette 10–500, poker 50–2000) that depends on
//! the player: high rollers (1001–1005) 50–100 % of the top, the unlucky 30–60 %,
//! everyone else 10–30 %. A win pays the bet times `(1 − house edge) / win probability`
//! (house edges 8 %, 2 %, 5.3 %, 5 %), so the casino keeps its edge on average.
//!
//! Like the retail generator this is a simulation on an event-time clock: nothing
//! sleeps or reads a clock, the same seed and start give the same rows, and rows come
//! out in event-time order. Times have whole seconds, as the topic's
//! `"YYYY-MM-DD HH:MM:SS"` strings do.

use std::collections::BTreeMap;

use diffmart_dataflows::casino::GamingTransaction;
use diffmart_dataflows::datum::{MICROS_PER_SECOND, Micros, Record};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

use crate::sources::simulation::{GeneratedEvent, Simulation};

/// Bets per second of event time, as the demo's default.
pub const DEFAULT_BETS_PER_SECOND: f64 = 5.0;

pub const FIRST_MEMBER: i64 = 1001;
pub const MEMBER_COUNT: i64 = 100;
const HIGH_ROLLERS: std::ops::RangeInclusive<i64> = 1001..=1005;
const UNLUCKY: std::ops::RangeInclusive<i64> = 1051..=1070;
/// How often an unlucky member wins, relative to everyone else.
const UNLUCKY_WIN_FACTOR: f64 = 0.35;

const FIRST_NAMES: [&str; 10] = ["James", "Maria", "Chen", "Aisha", "Liam", "Sofia", "Kenji", "Olga", "Diego", "Priya"];
const LAST_NAMES: [&str; 10] =
    ["Smith", "Garcia", "Wang", "Okafor", "Murphy", "Rossi", "Tanaka", "Ivanova", "Lopez", "Patel"];

struct Game {
    name: &'static str,
    /// Share of bets, in percent.
    weight: u32,
    /// Bet range in cents.
    min_cents: i64,
    max_cents: i64,
    win_probability: f64,
    house_edge: f64,
}

const GAMES: [Game; 4] = [
    Game { name: "slot", weight: 40, min_cents: 1_000, max_cents: 50_000, win_probability: 0.45, house_edge: 0.08 },
    Game {
        name: "blackjack",
        weight: 25,
        min_cents: 2_500,
        max_cents: 100_000,
        win_probability: 0.48,
        house_edge: 0.02,
    },
    Game {
        name: "roulette",
        weight: 20,
        min_cents: 1_000,
        max_cents: 50_000,
        win_probability: 0.47,
        house_edge: 0.053,
    },
    Game { name: "poker", weight: 15, min_cents: 5_000, max_cents: 200_000, win_probability: 0.46, house_edge: 0.05 },
];

/// The name of member `member_id` (1001–1100).
pub fn member_name(member_id: i64) -> String {
    let index = (member_id - FIRST_MEMBER).rem_euclid(MEMBER_COUNT) as usize;
    format!("{} {}", FIRST_NAMES[index % 10], LAST_NAMES[index / 10])
}

/// An infinite, deterministic stream of `gaming_transactions` rows in event-time order.
pub struct CasinoGenerator {
    rng: StdRng,
    /// Exact simulated time of the next bet.
    next_bet_at: Micros,
    bet_interval: Micros,
    /// Wins announced by earlier bets, by (time, transaction id).
    pending_wins: BTreeMap<(Micros, i64), GamingTransaction>,
    next_transaction_id: i64,
}

impl CasinoGenerator {
    /// The demo's 5 bets per second, starting at `start`.
    pub fn new(seed: u64, start: Micros) -> CasinoGenerator {
        CasinoGenerator::with_rate(seed, start, DEFAULT_BETS_PER_SECOND)
    }

    pub fn with_rate(seed: u64, start: Micros, bets_per_second: f64) -> CasinoGenerator {
        assert!(bets_per_second.is_finite() && bets_per_second > 0.0, "bets per second must be positive");
        CasinoGenerator {
            rng: StdRng::seed_from_u64(seed),
            next_bet_at: start,
            bet_interval: ((MICROS_PER_SECOND as f64 / bets_per_second).round() as Micros).max(1),
            pending_wins: BTreeMap::new(),
            next_transaction_id: 1,
        }
    }

    /// This pipeline's part of the embedded generator: no catalog, just the stream.
    pub fn simulation(seed: u64, start: Micros) -> Simulation {
        Simulation { bootstrap: Vec::new(), events: Box::new(CasinoGenerator::new(seed, start)) }
    }

    fn take_id(&mut self) -> i64 {
        let id = self.next_transaction_id;
        self.next_transaction_id += 1;
        id
    }

    /// Places the next bet, and schedules its win if the member wins.
    fn bet(&mut self, at: Micros) -> GamingTransaction {
        let member_id = FIRST_MEMBER + self.rng.random_range(0..MEMBER_COUNT);
        let ticket = self.rng.random_range(0..GAMES.iter().map(|g| g.weight).sum::<u32>());
        let mut game = &GAMES[0];
        let mut below = 0;
        for candidate in &GAMES {
            below += candidate.weight;
            if ticket < below {
                game = candidate;
                break;
            }
        }
        let (low, high) = if HIGH_ROLLERS.contains(&member_id) {
            (0.5, 1.0)
        } else if UNLUCKY.contains(&member_id) {
            (0.3, 0.6)
        } else {
            (0.1, 0.3)
        };
        let share = self.rng.random_range(low..high);
        let bet_cents = ((game.max_cents as f64 * share).round() as i64).clamp(game.min_cents, game.max_cents);
        let bet = self.row(member_id, "bet", bet_cents, game.name, at);

        let win_probability =
            game.win_probability * if UNLUCKY.contains(&member_id) { UNLUCKY_WIN_FACTOR } else { 1.0 };
        if self.rng.random_bool(win_probability) {
            let payout = (1.0 - game.house_edge) / game.win_probability;
            let win_cents = (bet_cents as f64 * payout).round() as i64;
            let delay = self.rng.random_range(1..=5) * MICROS_PER_SECOND;
            let win = self.row(member_id, "win", win_cents, game.name, at + delay);
            self.pending_wins.insert((at + delay, win.transaction_id), win);
        }
        bet
    }

    fn row(&mut self, member_id: i64, kind: &str, cents: i64, game: &str, at: Micros) -> GamingTransaction {
        GamingTransaction {
            transaction_id: self.take_id(),
            member_id,
            member_name: Some(member_name(member_id)),
            transaction_type: kind.to_string(),
            amount: Decimal::new(cents, 2),
            game_type: game.to_string(),
            // Whole seconds, like the topic's timestamps.
            transaction_time: at.div_euclid(MICROS_PER_SECOND) * MICROS_PER_SECOND,
        }
    }
}

impl Iterator for CasinoGenerator {
    type Item = GeneratedEvent;

    fn next(&mut self) -> Option<GeneratedEvent> {
        let win_due = self.pending_wins.first_key_value().is_some_and(|(&(at, _), _)| at <= self.next_bet_at);
        let tx = if win_due {
            self.pending_wins.pop_first().expect("a win is due").1
        } else {
            let at = self.next_bet_at;
            self.next_bet_at += self.bet_interval;
            self.bet(at)
        };
        Some(GeneratedEvent {
            relation: GamingTransaction::spec().name,
            event_time: tx.transaction_time,
            row: tx.to_row(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const START: Micros = 1_748_779_200 * MICROS_PER_SECOND; // 2025-06-01 12:00:00

    fn take(seed: u64, n: usize) -> Vec<GamingTransaction> {
        CasinoGenerator::new(seed, START).take(n).map(|e| GamingTransaction::from_row(&e.row).unwrap()).collect()
    }

    #[test]
    fn same_seed_same_rows_and_times_never_go_back() {
        let a = take(7, 2_000);
        assert_eq!(a, take(7, 2_000));
        assert_ne!(a, take(8, 2_000));
        assert!(a.windows(2).all(|w| w[0].transaction_time <= w[1].transaction_time));
        assert!(a.iter().all(|t| t.transaction_time % MICROS_PER_SECOND == 0));
        let mut ids: Vec<i64> = a.iter().map(|t| t.transaction_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), a.len(), "transaction ids are unique");
    }

    #[test]
    fn the_mix_follows_the_demo() {
        let rows = take(1, 60_000);
        let bets: Vec<&GamingTransaction> = rows.iter().filter(|t| t.transaction_type == "bet").collect();
        // 5 bets per second of event time.
        let span = (bets.last().unwrap().transaction_time - bets[0].transaction_time) / MICROS_PER_SECOND;
        let rate = bets.len() as f64 / span as f64;
        assert!((4.9..5.1).contains(&rate), "bet rate {rate}");
        let mut by_game: HashMap<&str, usize> = HashMap::new();
        for bet in &bets {
            *by_game.entry(bet.game_type.as_str()).or_default() += 1;
            let game = GAMES.iter().find(|g| g.name == bet.game_type).unwrap();
            let cents = (bet.amount * Decimal::from(100)).trunc();
            assert!(cents >= Decimal::from(game.min_cents) && cents <= Decimal::from(game.max_cents));
            assert!((FIRST_MEMBER..FIRST_MEMBER + MEMBER_COUNT).contains(&bet.member_id));
            assert_eq!(bet.member_name.as_deref(), Some(member_name(bet.member_id).as_str()));
        }
        for game in &GAMES {
            let share = by_game[game.name] as f64 / bets.len() as f64;
            assert!((share - game.weight as f64 / 100.0).abs() < 0.02, "{}: {share}", game.name);
        }
        // Wins per bet: about the game's probability, a third of it for the unlucky.
        let win_rate = |members: &dyn Fn(i64) -> bool| {
            let bets = bets.iter().filter(|t| members(t.member_id)).count() as f64;
            let wins = rows.iter().filter(|t| t.transaction_type == "win" && members(t.member_id)).count() as f64;
            wins / bets
        };
        let lucky = win_rate(&|m| !UNLUCKY.contains(&m));
        let unlucky = win_rate(&|m| UNLUCKY.contains(&m));
        assert!((0.43..0.49).contains(&lucky), "win rate {lucky}");
        assert!((0.13..0.19).contains(&unlucky), "unlucky win rate {unlucky}");
        // The house keeps its edge.
        let total = |kind: &str| rows.iter().filter(|t| t.transaction_type == kind).map(|t| t.amount).sum::<Decimal>();
        assert!(total("win") < total("bet"));
    }

    #[test]
    fn names_are_distinct() {
        let names: std::collections::HashSet<String> =
            (FIRST_MEMBER..FIRST_MEMBER + MEMBER_COUNT).map(member_name).collect();
        assert_eq!(names.len(), MEMBER_COUNT as usize);
    }
}
