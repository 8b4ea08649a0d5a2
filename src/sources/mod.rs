//! Sources: where input events come from. Today the embedded generator.

pub mod generator;
pub mod timestamps;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use diffmart_dataflows::datum::{Micros, Record};
use diffmart_dataflows::retail::ProductInventory;

use self::generator::RetailGenerator;
use crate::serving::{Engine, Update};

/// How the embedded generator runs.
#[derive(Clone, Debug)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Event time of the simulated clock's start.
    pub start: Micros,
    /// Events per wall-clock second; `None` follows the simulated clock in real time.
    pub rate: Option<f64>,
    /// Stop after this many events.
    pub events: Option<u64>,
}

/// Largest batch handed to ingest at once when running behind.
const MAX_BATCH: usize = 50_000;

/// Loads the catalog into `product_inventory`, then streams events on a thread.
pub fn spawn_generator(engine: Arc<Engine>, config: GeneratorConfig) -> anyhow::Result<JoinHandle<()>> {
    let inventory = engine.catalog().id(ProductInventory::spec().name).context("product_inventory missing")?;
    let catalog: Vec<Update> =
        RetailGenerator::catalog().iter().map(|p| Update::insert(inventory, p.to_row())).collect();
    engine.apply_blocking(catalog).map_err(|e| anyhow::anyhow!("loading the generator catalog: {e}"))?;
    let ids: Vec<(&'static str, usize)> = engine.catalog().iter().map(|(id, spec)| (spec.name, id)).collect();
    let ingest = engine.ingest();
    std::thread::Builder::new()
        .name("diffmart-generator".into())
        .spawn(move || {
            let relation = |name: &str| {
                ids.iter().find(|(n, _)| *n == name).map(|(_, id)| *id).expect("generator relations exist")
            };
            let mut events = RetailGenerator::new(config.seed, config.start).peekable();
            let wall_start = Instant::now();
            let mut emitted: u64 = 0;
            let limit = config.events.unwrap_or(u64::MAX);
            while emitted < limit {
                let elapsed = wall_start.elapsed();
                let simulated_now = config.start + elapsed.as_micros() as Micros;
                let due = match config.rate {
                    Some(rate) => ((elapsed.as_secs_f64() * rate) as u64).saturating_sub(emitted),
                    None => u64::MAX,
                };
                let mut batch = Vec::new();
                while batch.len() < MAX_BATCH && (batch.len() as u64) < due.min(limit - emitted) {
                    let next = events.peek().expect("the generator never ends");
                    if config.rate.is_none() && next.event_time > simulated_now {
                        break;
                    }
                    let event = events.next().expect("peeked");
                    batch.push(Update::insert(relation(event.relation), event.row));
                }
                emitted += batch.len() as u64;
                if !batch.is_empty() {
                    ingest.send(batch);
                    continue;
                }
                let wait = match config.rate {
                    Some(rate) => {
                        Duration::from_secs_f64(((emitted + 1) as f64 / rate - elapsed.as_secs_f64()).max(0.0))
                    }
                    None => {
                        let next = events.peek().expect("the generator never ends").event_time;
                        Duration::from_micros((next - simulated_now).max(0) as u64)
                    }
                };
                std::thread::sleep(wait.min(Duration::from_millis(100)));
            }
            tracing::info!(events = emitted, "generator finished");
        })
        .context("spawning the generator")
}

/// Now, as event time.
pub fn now_micros() -> Micros {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as Micros).unwrap_or(0)
}
