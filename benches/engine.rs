//! Micro-benchmarks of the engine's hot paths (`cargo bench`); `diffmart bench`
//! measures the whole engine end to end.
//!
//! - `generator`: producing the merged events of every pipeline's simulation;
//! - `compute`: one logical time of 1,000 retail events through the dataflows
//!   (1 worker), from hand-over to the sink's published batch;
//! - `store`: publishing 1,000 source rows onto 1,000,000 retained ones, until visible;
//! - `arrow`: converting a 100,000-row relation to Arrow, as the first SELECT on
//!   each new snapshot does.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use diffmart::compute::{Compute, ComputeConfig, InputBatch, OutputBatch, RelationId};
use diffmart::engine::{Catalog, Store, arrow};
use diffmart::pipelines::retail::generator::RetailGenerator;
use diffmart::pipelines::simulations;
use diffmart::sources::{GeneratorConfig, MergedEvents, nothing_held};
use diffmart_dataflows::datum::{Micros, Record, Row};
use diffmart_dataflows::retail::{ProductInventory, WebClick};

const START: Micros = 1_748_736_000_000_000;

fn generator(c: &mut Criterion) {
    let mut group = c.benchmark_group("generator");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("all_pipelines_10k_events", |b| {
        b.iter(|| {
            let config = GeneratorConfig { seed: 1, start: START, rate: None, events: None };
            let events = MergedEvents::new(simulations(&config, &nothing_held).into_iter().map(|s| s.events));
            black_box(events.take(10_000).count())
        })
    });
    group.finish();
}

/// Retail events as compute's input updates.
fn retail_updates(catalog: &Catalog, events: &mut RetailGenerator, n: usize) -> Vec<(RelationId, Row, isize)> {
    events.by_ref().take(n).map(|e| (catalog.id(e.relation).expect("retail relation"), e.row, 1)).collect()
}

/// Receives published batches until everything before `upper` is out.
fn wait_published(outputs: &Receiver<OutputBatch>, upper: u64) {
    while let Ok(batch) = outputs.recv() {
        if batch.upper.is_none_or(|u| u >= upper) {
            return;
        }
    }
    panic!("compute shut down");
}

fn compute(c: &mut Criterion) {
    let catalog = Catalog::all_pipelines();
    let (outputs_tx, outputs) = std::sync::mpsc::channel();
    let compute = Compute::start(&ComputeConfig::default(), outputs_tx).expect("compute starts");
    let inventory = catalog.id(ProductInventory::spec().name).unwrap();
    let products = RetailGenerator::catalog().iter().map(|p| (inventory, p.to_row(), 1)).collect();
    compute.send(InputBatch { time: 0, updates: products });
    let mut events = RetailGenerator::new(1, START);
    // Some history first, so the arrangements are not empty.
    let mut time = 1;
    for _ in 0..100 {
        compute.send(InputBatch { time, updates: retail_updates(&catalog, &mut events, 1000) });
        time += 1;
    }
    wait_published(&outputs, time);
    let mut group = c.benchmark_group("compute");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("retail_1000_events_per_time", |b| {
        b.iter_batched(
            || retail_updates(&catalog, &mut events, 1000),
            |updates| {
                compute.send(InputBatch { time, updates });
                time += 1;
                wait_published(&outputs, time);
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A store on its own thread, and the sender compute would publish through.
fn store_with_clicks(retained: usize) -> (Arc<Store>, Sender<OutputBatch>, RelationId) {
    let catalog = Catalog::all_pipelines();
    let clicks = catalog.id(WebClick::spec().name).unwrap();
    // A retention far longer than the clicks span, so every row stays.
    let store = Store::new(&catalog, Micros::MAX / 4);
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let store = store.clone();
        let (_no_inputs, inputs) = std::sync::mpsc::channel();
        std::thread::spawn(move || store.apply_outputs(rx, inputs));
    }
    let changes = (0..retained)
        .map(|i| {
            let click = WebClick {
                event_time: START + i as Micros * 1000,
                product_id: (i % 20) as i32 + 1,
                event_type: "view".into(),
            };
            (clicks, click.to_row(), 1)
        })
        .collect();
    tx.send(OutputBatch { upper: Some(1), changes }).unwrap();
    assert!(store.wait_visible_blocking(0));
    (store, tx, clicks)
}

fn store(c: &mut Criterion) {
    let retained = 1_000_000;
    let (store, publish, clicks) = store_with_clicks(retained);
    // Read by the setup, advanced by the routine: criterion holds both closures.
    let upper = std::cell::Cell::new(1u64);
    let mut next = retained as Micros;
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("publish_1000_rows_onto_1m", |b| {
        b.iter_batched(
            || {
                let changes = (0..1000)
                    .map(|_| {
                        next += 1;
                        let click =
                            WebClick { event_time: START + next * 1000, product_id: 1, event_type: "view".into() };
                        (clicks, click.to_row(), 1)
                    })
                    .collect();
                OutputBatch { upper: Some(upper.get() + 1), changes }
            },
            |batch| {
                publish.send(batch).unwrap();
                assert!(store.wait_visible_blocking(upper.get()));
                upper.set(upper.get() + 1);
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn arrow_conversion(c: &mut Criterion) {
    let (store, _publish, clicks) = store_with_clicks(100_000);
    let snapshot = store.snapshot();
    let spec = Catalog::all_pipelines().spec(clicks);
    let mut group = c.benchmark_group("arrow");
    group.throughput(Throughput::Elements(100_000));
    group.bench_function("web_clicks_100k_rows", |b| {
        b.iter(|| black_box(arrow::to_batch(spec, snapshot.relation(clicks))))
    });
    group.finish();
}

fn config() -> Criterion {
    // Short runs: the development machine has 2 cores, shared.
    Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = generator, compute, store, arrow_conversion }
criterion_main!(benches);
