//! Checkpoints of the inventory pipeline: the product books, and every view, restored
//! from a checkpoint equal a straight run after every later batch; and the books give
//! the same answer on one worker as on two.

use proptest::prelude::*;

use super::*;
use crate::checkpoint::testing::{
    Accumulated, PipelineUnderTest, assert_pipeline_restores_exactly, assert_restores_exactly, straight_and_restored,
};
use crate::datum::{MICROS_PER_MINUTE, Row};

const T0: Micros = 1_748_779_200_000_000;
const MINUTE: Micros = MICROS_PER_MINUTE;
/// Shorter than the staleness hour, so rows expire before and after products go stale.
const RETENTION: Micros = 30 * MINUTE;

fn config() -> PipelineConfig {
    PipelineConfig { retention: RETENTION, ..PipelineConfig::default() }
}

/// The books' output but the `Rejected` markers, which the count's tap restores.
fn books<'s>(inputs: Coll<'s, InventoryInput>, checkpoints: &Checkpoints) -> Coll<'s, InventoryChange> {
    product_states(inputs, RETENTION, checkpoints).filter(|change| !matches!(change, InventoryChange::Rejected(_)))
}

fn update(
    id: Option<&str>,
    name: Option<&str>,
    inventory: i32,
    price: f64,
    at: Micros,
    arrival: i64,
) -> InventoryInput {
    InventoryInput::Update(ProductUpdate {
        product_id: id.map(str::to_string),
        name: name.map(str::to_string),
        description: None,
        price: F64::new(price),
        category: Some("Toys".into()),
        brand: None,
        image_url: None,
        inventory,
        tags: None,
        rating: None,
        review_count: None,
        update_time: at,
        arrival,
    })
}

fn order(id: Option<&str>, product: Option<&str>, quantity: i32, at: Micros, arrival: i64) -> InventoryInput {
    InventoryInput::Order(OrderEvent {
        order_id: id.map(str::to_string),
        product_id: product.map(str::to_string),
        quantity: Some(quantity),
        order_time: at,
        arrival,
    })
}

/// The pipeline's input rows: product updates are input 0, orders input 1.
fn rows(batches: &[Vec<(InventoryInput, isize)>]) -> Vec<Vec<(usize, Row, isize)>> {
    let row = |(input, diff): &(InventoryInput, isize)| match input {
        InventoryInput::Update(update) => (0, update.to_row(), *diff),
        InventoryInput::Order(order) => (1, order.to_row(), *diff),
    };
    batches.iter().map(|batch| batch.iter().map(row).collect()).collect()
}

/// Several products; rejections (no name, no order id, unknown product, quantity 0);
/// late updates and orders, and a batch all behind the clock (the clock holds); a gap
/// past staleness, then one past retention, then rows of two clocks of which the
/// older expires first; a duplicated update; an empty batch. In the second batch the
/// updates' arrival order disagrees with event time across products: P1's update arrives
/// first and is newer than P2's, which P2's order o8 must still follow.
fn history() -> Vec<Vec<(InventoryInput, isize)>> {
    let (p1, p2, p3) = (Some("P1"), Some("P2"), Some("P3"));
    let at = |minutes: i64| T0 + minutes * MINUTE;
    vec![
        vec![
            (update(p1, Some("One"), 20, 10.0, at(0), 1), 1),
            (update(p2, Some("Two"), 3, 5.0, at(0), 2), 1),
            (order(Some("o1"), p3, 1, at(0), 1), 1),
            (update(p3, None, 4, 1.0, at(0), 3), 1),
        ],
        vec![
            (order(None, p2, 1, at(4), 3), 1),
            (order(Some("o2"), p1, 15, at(5), 4), 1),
            (order(Some("o8"), p2, 1, at(-5), 2), 1),
            (update(p2, Some("Two"), 0, 4.0, at(-10), 4), 1),
            (update(p1, Some("One"), 21, 10.0, at(6), 1), 1),
        ],
        // Clock 70: P1 and P2 go stale.
        vec![(update(p3, Some("Three"), 12, 0.1 + 0.2, at(70), 5), 1)],
        // A late order re-arms P1, stale again at once.
        vec![(order(Some("o4"), p1, 1, at(2), 4), 1), (order(Some("o3"), p3, 20, at(75), 5), 1)],
        // All behind the clock (75): P1's deadline moves to 70, stale at the clock.
        vec![(update(p1, Some("One"), 6, 10.0, at(10), 6), 1)],
        vec![(order(Some("o6"), p2, 0, at(150), 6), 1), (order(Some("o5"), Some(""), 1, at(200), 7), 1)],
        vec![(update(p1, Some("One"), 8, 9.0, at(215), 7), 2)],
        vec![],
        // Horizon 210: the rows of clock 200 expire, those of clock 215 stay.
        vec![(order(Some("o7"), p2, 2, at(239), 8), 1), (update(p2, Some("Two"), 30, 5.0, at(240), 8), 1)],
    ]
}

#[test]
fn the_books_restore_exactly_at_every_cut() {
    let batches = history();
    for cut in 0..=batches.len() {
        assert_restores_exactly(books, &batches, cut);
    }
}

#[test]
fn every_view_restores_exactly_at_every_cut() {
    let batches = rows(&history());
    for cut in 0..=batches.len() {
        assert_pipeline_restores_exactly(&pipeline(), &batches, cut);
    }
}

/// One generated input: `product` picks a valid id or a missing or empty one; `broken`
/// invalidates a few (no name or order id, negative inventory or price, quantity ≤ 0);
/// `offset` dates it around its batch's clock, late by up to 100 minutes.
fn input() -> impl Strategy<Value = (InventoryInput, isize)> {
    let prices = [10.0, 9.0, 10.005, 0.1 + 0.2, 25.5, 0.0];
    (any::<bool>(), 0..10usize, 0..25i32, 0..prices.len(), -100..=5i64, 0..10u8, 0..40i64, 1..=2isize).prop_map(
        move |(is_order, product, amount, price, offset, broken, arrival, copies)| {
            let id = ["P0", "P1", "P2", "P0", "P1", "P2", "P9", "", " "].get(product).copied();
            let at = offset * MINUTE;
            let input = if is_order {
                let order_id = (broken != 0).then_some("o");
                let quantity = if broken == 1 { -amount % 2 } else { amount % 12 + 1 };
                order(order_id, id, quantity, at, arrival)
            } else {
                let name = (broken != 0).then_some("Name");
                let inventory = if broken == 1 { -1 } else { amount };
                let price = if broken == 2 { -1.0 } else { prices[price] };
                update(id, name, inventory, price, at, arrival)
            };
            (input, if copies == 2 && arrival % 4 == 0 { 2 } else { 1 })
        },
    )
}

/// Batches whose clocks step by 0 to 200 minutes (past staleness and retention), each
/// input dated relative to its batch's step. Within a batch as across batches, each
/// source's arrival order is unrelated to event time.
fn histories() -> impl Strategy<Value = Vec<Vec<(InventoryInput, isize)>>> {
    let step = prop::sample::select(vec![0, 1, 5, 10, 20, 25, 61, 200]);
    prop::collection::vec((step, prop::collection::vec(input(), 0..6)), 1..9).prop_map(|batches| {
        let mut clock = T0;
        batches
            .into_iter()
            .map(|(step, inputs)| {
                clock += step * MINUTE;
                inputs.into_iter().map(|(input, diff)| (shifted(input, clock), diff)).collect()
            })
            .collect()
    })
}

/// `input` dated `by` later.
fn shifted(input: InventoryInput, by: Micros) -> InventoryInput {
    match input {
        InventoryInput::Update(update) => {
            InventoryInput::Update(ProductUpdate { update_time: update.update_time + by, ..update })
        }
        InventoryInput::Order(order) => {
            InventoryInput::Order(OrderEvent { order_time: order.order_time + by, ..order })
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn the_books_restore_exactly(batches in histories(), cut in 0..10usize) {
        assert_restores_exactly(books, &batches, cut % (batches.len() + 1));
    }

    #[test]
    fn every_view_restores_exactly(batches in histories(), cut in 0..10usize) {
        let cut = cut % (batches.len() + 1);
        assert_pipeline_restores_exactly(&pipeline(), &rows(&batches), cut);
    }

    #[test]
    fn one_worker_and_two_agree(batches in histories()) {
        prop_assert_eq!(books_on(1, &batches), books_on(2, &batches));
    }
}

/// The books' accumulated output after each batch, run straight through on `workers` workers.
fn books_on(workers: usize, batches: &[Vec<(InventoryInput, isize)>]) -> Accumulated<InventoryChange> {
    straight_and_restored(books, batches, 0, workers, workers).0
}

/// Two products that two workers hold apart. The updates arrive A's first although B's
/// is older, and B's order lies between them in event time: B's order follows B's
/// update (it sells from it) wherever A's update is held.
#[test]
fn one_worker_and_two_agree_when_arrival_disagrees_with_event_time() {
    let (a, b) = (Some("P1"), Some("P2"));
    assert_ne!(product_route(a) % 2, product_route(b) % 2, "two workers hold the products apart");
    let at = |minutes: i64| T0 + minutes * MINUTE;
    let batches = vec![vec![
        (update(a, Some("A"), 20, 10.0, at(10), 1), 1),
        (update(b, Some("B"), 20, 10.0, at(0), 2), 1),
        (order(Some("o1"), b, 5, at(5), 1), 1),
    ]];
    let one = books_on(1, &batches);
    assert_eq!(one, books_on(2, &batches));
    let b_now = one[1].iter().find_map(|(change, _)| match change {
        InventoryChange::Current(product) if product.product_id == "P2" => Some(product.inventory),
        _ => None,
    });
    assert_eq!(b_now, Some(15));
}

/// The inventory pipeline, as the server builds it.
fn pipeline() -> PipelineUnderTest {
    PipelineUnderTest { input_specs: input_specs(), build, config: config() }
}
