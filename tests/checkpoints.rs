//! Checkpoints: an engine restarted from a checkpoint and the log after it shows
//! exactly what an engine that never stopped shows, in every relation, and goes on
//! showing it as more comes in (so expiry schedules, late decisions, running bases and
//! state machines came back exactly, not only the rows of the moment).
//!
//! The workload is the generator's events of every pipeline with neighbouring batches
//! swapped (events late and out of order across logical times), table rows deleted
//! along the way, and a retention short enough that state expires during the run.
//!
//! Run: `cargo test --release --test checkpoints`.

mod support;

use std::path::Path;

use diffmart::compute::ComputeConfig;
use diffmart::engine::{Catalog, DataDir, Engine, Update};
use diffmart::sources::{GeneratorConfig, MergedEvents, nothing_held};
use diffmart_dataflows::datum::{MICROS_PER_MINUTE, RelationKind, Row};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::engine_contents as contents;

fn assert_same(reference: &Engine, restored: &Engine, when: &str) {
    let (expected, found) = (contents(reference), contents(restored));
    let differ: Vec<String> = expected
        .iter()
        .filter(|(name, rows)| found[*name] != **rows)
        .map(|(name, rows)| format!("{name} ({} rows expected, {} found)", rows.len(), found[name].len()))
        .collect();
    assert!(differ.is_empty(), "{when}: these relations differ from the uninterrupted run: {differ:?}");
}

/// The pipelines' options of both engines: a short retention, so state expires.
fn config(workers: usize) -> ComputeConfig {
    let mut config = ComputeConfig { workers, ..ComputeConfig::default() };
    config.pipelines.retention = 3 * MICROS_PER_MINUTE;
    config
}

/// An engine on `dir`; `checkpoint_at_stop` as [`DataDir::with_checkpoint_at_stop`].
fn start_on(dir: &Path, workers: usize, checkpoint_at_stop: bool) -> std::sync::Arc<Engine> {
    let data_dir = DataDir::open(dir, &Catalog::all_pipelines()).expect("the data directory opens");
    Engine::start_with(&config(workers), Some(data_dir.with_checkpoint_at_stop(checkpoint_at_stop)))
        .expect("the engine starts")
}

/// The times of the checkpoints in `dir`.
fn checkpoint_times(dir: &Path) -> Vec<u64> {
    let mut times: Vec<u64> = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_prefix("ckpt-")?.strip_suffix(".bin")?.parse().ok())
        .collect();
    times.sort_unstable();
    times
}

/// The workload: the generators' bootstrap, then their events in batches of 60 with
/// about a third of neighbouring batches swapped.
fn workload(catalog: &Catalog) -> Vec<Vec<Update>> {
    let generator = GeneratorConfig { seed: 23, start: 1_748_779_200_000_000, rate: None, events: None };
    let simulations = diffmart::pipelines::simulations(&generator, &nothing_held);
    let update = |relation: &str, row: Row| {
        let (id, spec) = catalog.lookup(relation).expect("a generated relation exists");
        match spec.kind {
            RelationKind::Table { .. } => Update::insert_if_absent(id, row),
            _ => Update::insert(id, row),
        }
    };
    let mut batches =
        vec![simulations.iter().flat_map(|s| &s.bootstrap).map(|e| update(e.relation, e.row.clone())).collect()];
    let events: Vec<_> = MergedEvents::new(simulations.into_iter().map(|s| s.events)).take(15_000).collect();
    batches.extend(events.chunks(60).map(|chunk| chunk.iter().map(|e| update(e.relation, e.row.clone())).collect()));
    let mut rng = StdRng::seed_from_u64(23);
    for i in 2..batches.len() {
        if rng.random_bool(0.3) {
            batches.swap(i - 1, i);
        }
    }
    batches
}

/// Applies `batch` to every engine; every 10th batch also deletes one table row (the
/// same in each), so tables retract rows the views had joined.
fn apply(engines: &[&Engine], batch: &[Update], index: usize, rng: &mut StdRng) {
    for engine in engines {
        engine.apply_blocking(batch.to_vec()).expect("the batch applies");
    }
    if index % 10 != 9 {
        return;
    }
    let catalog = engines[0].catalog();
    let tables: Vec<_> = catalog
        .iter()
        .filter(|(id, spec)| catalog.is_input(*id) && matches!(spec.kind, RelationKind::Table { .. }))
        .map(|(id, _)| id)
        .collect();
    let table = tables[rng.random_range(0..tables.len())];
    let snapshot = engines[0].snapshot();
    let rows = snapshot.relation(table);
    let keys: Vec<Row> = rows.rows().filter_map(|row| rows.primary_key_of(&row)).collect();
    if keys.is_empty() {
        return;
    }
    let key = keys[rng.random_range(0..keys.len())].clone();
    for engine in engines {
        engine.apply_blocking(vec![Update::delete_key(table, key.clone())]).expect("the delete applies");
    }
}

fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("log")).unwrap().count()
}

/// Two checkpoints along the way, a stop without a checkpoint, a start from the second
/// checkpoint and the log after it (on `restore_workers`), then more batches: equal to
/// the uninterrupted run after the restart and after the rest; then a stop that takes
/// a checkpoint, and a start from it alone.
fn restart_from_a_checkpoint_equals_the_uninterrupted_run(workers: usize, restore_workers: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let reference = Engine::start(&config(workers)).expect("the reference starts");
    let engine = start_on(&dir, workers, false);
    let batches = workload(engine.catalog());
    let mut rng = StdRng::seed_from_u64(7);
    let (first, second, restart) = (batches.len() / 4, batches.len() / 2, batches.len() * 3 / 5);
    let mut checkpoints = Vec::new();
    for (index, batch) in batches[..restart].iter().enumerate() {
        apply(&[&reference, &engine], batch, index, &mut rng);
        if index == first || index == second {
            checkpoints.push(engine.checkpoint_now().expect("the checkpoint is taken"));
        }
    }
    assert!(checkpoints[0] < checkpoints[1], "{checkpoints:?}");
    assert_eq!(checkpoint_times(&dir), [checkpoints[1]], "only the newest checkpoint stays");
    assert_eq!(segments(&dir), 1, "the log the checkpoint covers is deleted");
    assert_same(&reference, &engine, "before the restart");
    engine.shut_down();
    drop(engine);

    assert_eq!(checkpoint_times(&dir), [checkpoints[1]], "a stop without a checkpoint takes none");
    let engine = start_on(&dir, restore_workers, true);
    assert_same(&reference, &engine, "after the restart");
    for (index, batch) in batches.iter().enumerate().skip(restart) {
        apply(&[&reference, &engine], batch, index, &mut rng);
    }
    assert_same(&reference, &engine, "after the rest of the batches");

    // And once more, from the checkpoint the stop takes.
    engine.shut_down();
    drop(engine);
    let at_stop = checkpoint_times(&dir);
    assert!(at_stop.len() == 1 && at_stop[0] > checkpoints[1], "the stop takes a checkpoint: {at_stop:?}");
    assert_eq!(segments(&dir), 1, "the log the checkpoint covers is deleted");
    let engine = start_on(&dir, workers, true);
    assert_same(&reference, &engine, "after a restart from the stop's checkpoint");
}

#[test]
fn one_worker() {
    restart_from_a_checkpoint_equals_the_uninterrupted_run(1, 1);
}

#[test]
fn two_workers() {
    restart_from_a_checkpoint_equals_the_uninterrupted_run(2, 2);
}

#[test]
fn one_worker_then_two() {
    restart_from_a_checkpoint_equals_the_uninterrupted_run(1, 2);
}

/// A checkpoint that cannot be used stops start-up with an error naming the file: one
/// taken with other pipeline options, one with a byte flipped, one cut short. The same
/// file whole starts.
#[test]
fn an_unusable_checkpoint_stops_start_up_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let engine = start_on(&dir, 1, false);
    let batches = workload(engine.catalog());
    let mut rng = StdRng::seed_from_u64(5);
    for (index, batch) in batches[..40].iter().enumerate() {
        apply(&[&engine], batch, index, &mut rng);
    }
    let through = engine.checkpoint_now().expect("the checkpoint is taken");
    engine.shut_down();
    drop(engine);
    let path = dir.join("checkpoints").join(format!("ckpt-{through:020}.bin"));
    let whole = std::fs::read(&path).unwrap();
    let start_error = |config: &ComputeConfig| {
        let data_dir = DataDir::open(&dir, &Catalog::all_pipelines()).expect("the data directory opens");
        match Engine::start_with(config, Some(data_dir)) {
            Ok(_) => panic!("started on an unusable checkpoint"),
            Err(e) => format!("{e:#}"),
        }
    };

    let mut other_options = config(1);
    other_options.pipelines.retention *= 2;
    let refused = start_error(&other_options);
    assert!(refused.contains(&path.display().to_string()) && refused.contains("pipeline options"), "{refused}");

    let mut flipped = whole.clone();
    flipped[whole.len() / 2] ^= 0x40;
    std::fs::write(&path, &flipped).unwrap();
    let refused = start_error(&config(1));
    assert!(refused.contains(&path.display().to_string()) && refused.contains("checksum"), "{refused}");

    std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
    let refused = start_error(&config(1));
    assert!(refused.contains(&path.display().to_string()), "{refused}");

    std::fs::write(&path, &whole).unwrap();
    drop(start_on(&dir, 1, false));
}
