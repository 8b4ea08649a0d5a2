//! The state machine's rules, event by event.

use super::*;

const T0: Micros = 1_748_779_200_000_000;
const MINUTE: Micros = MICROS_PER_MINUTE;

/// A retained row comes back exactly as it was emitted, so its retraction cancels it.
#[test]
fn retained_rows_round_trip() {
    let changes = [
        InventoryChange::Event(InventoryEvent {
            product_id: "P1".into(),
            product_name: "Name — ünïcode".into(),
            event_type: event_type::PRICE_CHANGED.into(),
            previous_inventory: -3,
            current_inventory: i32::MAX,
            previous_price: F64::new(0.1 + 0.2),
            current_price: F64::new(-1e300),
            event_time: Micros::MIN,
            change_reason: String::new(),
        }),
        InventoryChange::Alert(InventoryAlert {
            alert_type: alert_type::LOW_STOCK.into(),
            product_id: "P2".into(),
            message: "x".repeat(300),
            severity: severity::CRITICAL.into(),
            alert_time: T0,
        }),
        InventoryChange::Rejection(Rejection {
            kind: RejectionKind::Order,
            order_id: Some("O1".into()),
            product_id: None,
            reason: "quantity must be positive".into(),
            event_time: -1,
        }),
    ];
    for change in changes {
        let back = RetainedRow::new(&change).change();
        assert_eq!(back, change);
        assert_eq!(format!("{back:?}"), format!("{change:?}"));
    }
}

fn product(id: &str, inventory: i32, price: f64, at: Micros) -> InventoryInput {
    InventoryInput::Update(ProductUpdate {
        product_id: Some(id.into()),
        name: Some(format!("Name of {id}")),
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
        arrival: at,
    })
}

fn order(id: &str, product: &str, quantity: i32, at: Micros) -> InventoryInput {
    InventoryInput::Order(OrderEvent {
        order_id: Some(id.into()),
        product_id: Some(product.into()),
        quantity: Some(quantity),
        order_time: at,
        arrival: at,
    })
}

/// One batch through a book; the changes it emits.
fn run(book: &mut InventoryBook, inputs: Vec<InventoryInput>) -> Vec<(InventoryChange, isize)> {
    let max = inputs
        .iter()
        .map(|i| match i {
            InventoryInput::Update(u) => u.update_time,
            InventoryInput::Order(o) => o.order_time,
        })
        .max();
    let mut out = Vec::new();
    book.process(inputs.into_iter().map(|i| (i, 1)).collect(), max, &mut out);
    out
}

fn events(changes: &[(InventoryChange, isize)]) -> Vec<(String, i32, i32, String)> {
    changes
        .iter()
        .filter_map(|(c, d)| match c {
            InventoryChange::Event(e) if *d > 0 => {
                Some((e.event_type.clone(), e.previous_inventory, e.current_inventory, e.change_reason.clone()))
            }
            _ => None,
        })
        .collect()
}

fn alerts(changes: &[(InventoryChange, isize)]) -> Vec<(String, String)> {
    changes
        .iter()
        .filter_map(|(c, d)| match c {
            InventoryChange::Alert(a) if *d > 0 => Some((a.alert_type.clone(), a.severity.clone())),
            _ => None,
        })
        .collect()
}

fn kinds(changes: &[(InventoryChange, isize)]) -> Vec<String> {
    events(changes).into_iter().map(|e| e.0).collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

#[test]
fn first_sighting_adds_the_product_with_its_stock_alert() {
    let mut book = InventoryBook::new(24 * 60 * MINUTE);
    let out = run(&mut book, vec![product("A", 20, 10.0, T0), product("B", 0, 5.0, T0), product("C", 5, 1.0, T0)]);
    let mut added = events(&out);
    added.sort();
    assert_eq!(
        added.iter().map(|e| (e.0.as_str(), e.1, e.2)).collect::<Vec<_>>(),
        vec![("PRODUCT_ADDED", 0, 0), ("PRODUCT_ADDED", 0, 5), ("PRODUCT_ADDED", 0, 20)]
    );
    let mut raised = alerts(&out);
    raised.sort();
    assert_eq!(raised, vec![pair("LOW_STOCK", "CRITICAL"), pair("OUT_OF_STOCK", "CRITICAL")]);
    let prices: Vec<(f64, f64)> = out
        .iter()
        .filter_map(|(c, _)| match c {
            InventoryChange::Event(e) if e.product_id == "A" => Some((e.previous_price.get(), e.current_price.get())),
            _ => None,
        })
        .collect();
    assert_eq!(prices, vec![(0.0, 10.0)]);
}

#[test]
fn updates_follow_the_table() {
    let mut book = InventoryBook::new(24 * 60 * MINUTE);
    run(&mut book, vec![product("A", 20, 100.0, T0)]);
    let step = |book: &mut InventoryBook, inventory, price, minute| {
        run(book, vec![product("A", inventory, price, T0 + minute * MINUTE)])
    };
    let out = step(&mut book, 15, 100.0, 1);
    assert_eq!(kinds(&out), vec!["INVENTORY_DECREASED"]);
    assert!(alerts(&out).is_empty());
    let out = step(&mut book, 7, 100.0, 2);
    assert_eq!((kinds(&out), alerts(&out)), (vec!["INVENTORY_DECREASED".into()], vec![pair("LOW_STOCK", "WARNING")]));
    let out = step(&mut book, 9, 100.0, 3);
    assert_eq!((kinds(&out), alerts(&out)), (vec!["INVENTORY_INCREASED".into()], vec![pair("LOW_STOCK", "WARNING")]));
    let out = step(&mut book, 5, 100.0, 4);
    assert_eq!(alerts(&out), vec![pair("LOW_STOCK", "CRITICAL")]);
    let out = step(&mut book, 0, 100.0, 5);
    assert_eq!((kinds(&out), alerts(&out)), (vec!["OUT_OF_STOCK".into()], vec![pair("OUT_OF_STOCK", "CRITICAL")]));
    let out = step(&mut book, 3, 100.0, 6);
    assert_eq!((kinds(&out), alerts(&out)), (vec!["BACK_IN_STOCK".into()], vec![]));
    let out = step(&mut book, 30, 100.0, 7);
    assert_eq!((kinds(&out), alerts(&out)), (vec!["INVENTORY_INCREASED".into()], vec![]));
    // Prices: 0.01 is no change; a 5 % drop is a change; a 10 % drop alerts.
    let out = step(&mut book, 30, 99.995, 8);
    assert!(kinds(&out).is_empty() && alerts(&out).is_empty(), "{out:?}");
    let out = step(&mut book, 30, 95.0, 9);
    assert_eq!((kinds(&out), alerts(&out)), (vec!["PRICE_CHANGED".into()], vec![]));
    let out = step(&mut book, 30, 85.5, 10);
    assert_eq!((kinds(&out), alerts(&out)), (vec!["PRICE_CHANGED".into()], vec![pair("PRICE_DROP", "INFO")]));
    let out = step(&mut book, 30, 120.0, 11);
    assert_eq!((kinds(&out), alerts(&out)), (vec!["PRICE_CHANGED".into()], vec![]));
    // Both at once: the inventory event, then the price event.
    let out = step(&mut book, 8, 60.0, 12);
    assert_eq!(kinds(&out), vec!["INVENTORY_DECREASED", "PRICE_CHANGED"]);
    assert_eq!(alerts(&out), vec![pair("LOW_STOCK", "WARNING"), pair("PRICE_DROP", "INFO")]);
}

#[test]
fn a_no_op_update_emits_no_event_or_alert() {
    let mut book = InventoryBook::new(24 * 60 * MINUTE);
    run(&mut book, vec![product("A", 20, 100.0, T0)]);
    let out = run(&mut book, vec![product("A", 20, 100.005, T0 + MINUTE)]);
    assert!(events(&out).is_empty() && alerts(&out).is_empty(), "{out:?}");
}

#[test]
fn orders_deduct_clamp_and_reject() {
    let mut book = InventoryBook::new(24 * 60 * MINUTE);
    run(&mut book, vec![product("A", 17, 10.0, T0)]);
    let out = run(&mut book, vec![order("o1", "A", 2, T0 + 1)]);
    assert_eq!(events(&out), vec![("INVENTORY_DECREASED".into(), 17, 15, "Order o1: 2 units sold".into())]);
    assert!(alerts(&out).is_empty());
    let out = run(&mut book, vec![order("o2", "A", 9, T0 + 2)]);
    assert_eq!(alerts(&out), vec![pair("LOW_STOCK", "WARNING")]);
    let out = run(&mut book, vec![order("o3", "A", 6, T0 + 3)]);
    assert_eq!(events(&out), vec![("INVENTORY_DECREASED".into(), 6, 0, "Order o3: 6 units sold".into())]);
    assert_eq!(alerts(&out), vec![pair("OUT_OF_STOCK", "CRITICAL")]);
    run(&mut book, vec![product("A", 4, 10.0, T0 + 4)]);
    let out = run(&mut book, vec![order("o4", "A", 10, T0 + 5)]);
    assert_eq!(
        events(&out),
        vec![("OUT_OF_STOCK".into(), 4, 0, "Order o4: Insufficient inventory (ordered: 10, available: 4)".into())]
    );
    assert_eq!(alerts(&out), vec![pair("OUT_OF_STOCK", "CRITICAL")]);
    let out =
        run(&mut book, vec![order("o5", "nope", 1, T0 + 6), order("", "A", 1, T0 + 6), order("o6", "A", 0, T0 + 6)]);
    let reasons: Vec<String> = out
        .iter()
        .filter_map(|(c, _)| match c {
            InventoryChange::Rejection(r) => Some(r.reason.clone()),
            _ => None,
        })
        .collect();
    // Product by product (A, then nope); within A, equal times and arrivals fall back to
    // the row, so the empty order id first.
    assert_eq!(
        reasons,
        vec!["Order without orderId", "Order o6: quantity must be positive, got 0", "Unknown product nope"]
    );
    let counted: isize =
        out.iter().filter(|(c, _)| matches!(c, InventoryChange::Rejected(RejectionKind::Order))).map(|(_, d)| d).sum();
    assert_eq!(counted, 3);
    assert!(events(&out).is_empty());
}

#[test]
fn inventory_current_is_replaced_once_per_batch() {
    let mut book = InventoryBook::new(24 * 60 * MINUTE);
    let out = run(&mut book, vec![product("A", 20, 10.0, T0), order("o1", "A", 3, T0), order("o2", "A", 4, T0)]);
    let current: Vec<(i32, isize)> = out
        .iter()
        .filter_map(|(c, d)| match c {
            InventoryChange::Current(p) => Some((p.inventory, *d)),
            _ => None,
        })
        .collect();
    assert_eq!(current, vec![(13, 1)]);
    let out = run(&mut book, vec![order("o3", "A", 13, T0 + MINUTE)]);
    let current: Vec<(i32, String, isize)> = out
        .iter()
        .filter_map(|(c, d)| match c {
            InventoryChange::Current(p) => Some((p.inventory, p.status.clone(), *d)),
            _ => None,
        })
        .collect();
    assert_eq!(current, vec![(13, "IN_STOCK".into(), -1), (0, "OUT_OF_STOCK".into(), 1)]);
}

#[test]
fn stale_after_an_hour_of_clock_once_until_the_next_update() {
    let mut book = InventoryBook::new(24 * 60 * MINUTE);
    run(&mut book, vec![product("A", 20, 10.0, T0), product("B", 20, 10.0, T0 + 30 * MINUTE)]);
    assert!(kinds(&run(&mut book, vec![order("o1", "B", 1, T0 + 59 * MINUTE)])).iter().all(|k| k != "STALE_INVENTORY"));
    let out = run(&mut book, vec![order("o2", "B", 1, T0 + 60 * MINUTE)]);
    let stale: Vec<(String, Micros)> = out
        .iter()
        .filter_map(|(c, _)| match c {
            InventoryChange::Event(e) if e.event_type == "STALE_INVENTORY" => {
                Some((e.product_id.clone(), e.event_time))
            }
            _ => None,
        })
        .collect();
    assert_eq!(stale, vec![("A".into(), T0 + 60 * MINUTE)]);
    // Reported once; an update re-arms it.
    let out = run(&mut book, vec![order("o3", "B", 1, T0 + 100 * MINUTE)]);
    assert_eq!(kinds(&out), vec!["INVENTORY_DECREASED"]);
    run(&mut book, vec![product("A", 21, 10.0, T0 + 101 * MINUTE)]);
    let out = run(&mut book, vec![order("o4", "B", 1, T0 + 161 * MINUTE)]);
    let stale: Vec<String> = out
        .iter()
        .filter_map(|(c, _)| match c {
            InventoryChange::Event(e) if e.event_type == "STALE_INVENTORY" => Some(e.product_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(stale, vec!["A".to_string()]);
}

#[test]
fn retention_retracts_old_rows_and_memory_stays_flat() {
    let retention = 10 * MINUTE;
    let mut book = InventoryBook::new(retention);
    let mut live: HashMap<InventoryChange, isize> = HashMap::new();
    for (change, diff) in run(&mut book, vec![product("A", 1_000_000, 10.0, T0)]) {
        *live.entry(change).or_default() += diff;
    }
    let mut held = Vec::new();
    for second in 1..(3 * 60 * 60) {
        let at = T0 + second * 1_000_000;
        for (change, diff) in run(&mut book, vec![order(&format!("o{second}"), "A", 1, at)]) {
            *live.entry(change).or_default() += diff;
        }
        held.push(book.retained_rows());
    }
    live.retain(|_, d| *d != 0);
    assert!(live.values().all(|d| *d == 1), "nothing retracted twice");
    // One event per second, kept for 10 minutes (plus the batch at the edge).
    assert!(held.iter().all(|&n| n <= 601 + 1), "max {}", held.iter().max().unwrap());
    let events_live = live.keys().filter(|c| matches!(c, InventoryChange::Event(_))).count();
    assert!((600..=601).contains(&events_live), "{events_live}");
}

#[test]
fn the_two_streams_merge_by_event_time_and_keep_their_own_order() {
    let mut u1 = product("A", 1, 1.0, T0 + 5);
    let mut u2 = product("A", 2, 1.0, T0 + 1);
    if let (InventoryInput::Update(a), InventoryInput::Update(b)) = (&mut u1, &mut u2) {
        a.arrival = 10;
        b.arrival = 11; // later in its partition, although its time is earlier
    }
    let mut o1 = order("o1", "A", 1, T0 + 3);
    if let InventoryInput::Order(o) = &mut o1 {
        o.arrival = 3;
    }
    let merged = arrival_order(vec![(u2.clone(), 1), (o1.clone(), 1), (u1.clone(), 1)]);
    assert_eq!(merged, vec![o1, u1, u2]);
}

/// `input` at position `arrival` of its source.
fn arriving(mut input: InventoryInput, arrival: i64) -> InventoryInput {
    match &mut input {
        InventoryInput::Update(u) => u.arrival = arrival,
        InventoryInput::Order(o) => o.arrival = arrival,
    }
    input
}

#[test]
fn each_product_merges_its_own_inputs_only() {
    // B's update arrives first among the updates but is the newest: it must not hold
    // back A's older update, which A's order then follows and sells from.
    let b = arriving(product("B", 5, 1.0, T0 + 10), 1);
    let a = arriving(product("A", 5, 1.0, T0), 2);
    let sold = arriving(order("o1", "A", 2, T0 + 5), 1);
    let batch = vec![(b.clone(), 1), (sold.clone(), 1), (a.clone(), 1)];
    assert_eq!(arrival_order(batch), vec![a.clone(), sold.clone(), b.clone()]);
    let changes = run(&mut InventoryBook::new(60 * MINUTE), vec![b, sold, a]);
    let a_now = changes.iter().find_map(|(change, _)| match change {
        InventoryChange::Current(product) if product.product_id == "A" => Some(product.inventory),
        _ => None,
    });
    assert_eq!(a_now, Some(3));
}
