//! A deterministic stand-in for the e-commerce pipeline's users (seed 001).
//!
//! The seed ships no simulator, only `insert_test_data.sql`: 7 sessions that walk a
//! shop's funnel (landing page → product list → product pages → cart → checkout →
//! purchase), each step one to three minutes after the previous one, with the
//! referrers, page URLs and `event_data` shapes used here. This module turns those
//! sessions into a session state machine on a simulated clock:
//!
//! - sessions arrive as a Poisson process (one every [`MEAN_SESSION_GAP_SECONDS`] on
//!   average), each for a user of the catalog on that user's device, entering
//!   from a search engine or social network (or directly: a NULL referrer);
//! - every step draws the next state from the current one ([`Step::next`], the
//!   probabilities are in its match arms), so sessions bounce, browse, abandon carts
//!   and checkouts, or buy, like the seed's seven;
//! - a purchase's `total_amount` is the cart's value (prices × quantities) and its
//!   `item_count` the cart's quantity, as in the seed data.
//!
//! Concurrent sessions are merged by event time (a heap of their next steps), so
//! the stream is in event-time order. Nothing sleeps or reads a clock: the same seed
//! and start always give the same events.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use diffmart_dataflows::datum::{F64, MICROS_PER_SECOND, Micros, Record, parse_json};
use diffmart_dataflows::ecommerce::{Product, User, UserEvent};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::sources::simulation::{GeneratedEvent, Simulation};

/// Mean time between two sessions' arrivals.
pub const MEAN_SESSION_GAP_SECONDS: f64 = 20.0;

/// Starts every id the generator makes (products, users, sessions, events): the
/// seed's own ids (`P001`, `U001`, `E001`…) and whatever else a user loads stay
/// free, so a user's rows never collide with the generator's, and the generator's
/// rows never replace a user's (a key someone else wrote first is skipped anyway).
pub const ID_PREFIX: &str = "G-";
const MICROS_PER_DAY: Micros = 24 * 3600 * MICROS_PER_SECOND;

/// The seed's ten products: id, name, category, price in cents, inventory, age in days.
const PRODUCTS: [(&str, &str, &str, i64, i32, i64); 10] = [
    ("P001", "Premium Wireless Headphones", "Electronics", 12999, 500, 30),
    ("P002", "Smartphone Fast Charger", "Electronics", 2499, 1000, 60),
    ("P003", "Ultra HD Smart TV 55\"", "Electronics", 69999, 200, 90),
    ("P004", "Memory Foam Pillow", "Home & Kitchen", 3999, 800, 45),
    ("P005", "Stainless Steel Water Bottle", "Sports & Outdoors", 1999, 1500, 75),
    ("P006", "Organic Cotton T-Shirt", "Clothing", 2999, 1200, 15),
    ("P007", "Bluetooth Smart Speaker", "Electronics", 8999, 600, 20),
    ("P008", "Ergonomic Office Chair", "Furniture", 19999, 300, 40),
    ("P009", "Fitness Tracker Watch", "Electronics", 7999, 750, 25),
    ("P010", "Cast Iron Skillet", "Home & Kitchen", 3499, 400, 35),
];
/// How often each product is looked at, relative to the others (cheap things more).
const PRODUCT_WEIGHTS: [u32; 10] = [12, 14, 5, 9, 13, 11, 9, 4, 10, 8];

/// The seed's ten users: id, email, country, city, device.
const SEED_USERS: [(&str, &str, &str, &str, &str); 10] = [
    ("U001", "john.doe@example.com", "United States", "New York", "mobile"),
    ("U002", "jane.smith@example.com", "United Kingdom", "London", "desktop"),
    ("U003", "michael.brown@example.com", "Canada", "Toronto", "tablet"),
    ("U004", "emily.jones@example.com", "Australia", "Sydney", "mobile"),
    ("U005", "david.wilson@example.com", "United States", "Los Angeles", "desktop"),
    ("U006", "sarah.lee@example.com", "United States", "Chicago", "mobile"),
    ("U007", "james.taylor@example.com", "United Kingdom", "Manchester", "desktop"),
    ("U008", "olivia.martin@example.com", "Canada", "Vancouver", "tablet"),
    ("U009", "william.anderson@example.com", "Australia", "Melbourne", "mobile"),
    ("U010", "sophia.garcia@example.com", "United States", "Miami", "desktop"),
];
/// Users beyond the seed's, made up from these lists by their number.
const USER_COUNT: usize = 200;
const CITIES: [(&str, &str); 10] = [
    ("United States", "New York"),
    ("United Kingdom", "London"),
    ("Canada", "Toronto"),
    ("Australia", "Sydney"),
    ("United States", "Los Angeles"),
    ("United States", "Chicago"),
    ("United Kingdom", "Manchester"),
    ("Canada", "Vancouver"),
    ("Australia", "Melbourne"),
    ("United States", "Miami"),
];
const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];
/// Where sessions come from; `None` is a direct visit (NULL referrer).
const REFERRERS: [(Option<&str>, u32); 6] = [
    (Some("https://google.com"), 40),
    (Some("https://bing.com"), 12),
    (Some("https://facebook.com"), 12),
    (Some("https://instagram.com"), 10),
    (Some("https://twitter.com"), 8),
    (None, 18),
];
const PAYMENT_METHODS: [&str; 2] = ["credit_card", "paypal"];

const HOME: &str = "https://example.com/home";
const PRODUCT_LIST: &str = "https://example.com/products";
const CART: &str = "https://example.com/cart";
const CHECKOUT: &str = "https://example.com/checkout";
const CONFIRMATION: &str = "https://example.com/order-confirmation";

/// Where a session is, which decides what it can do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Arrived on the home page or the product list.
    Landed {
        on_list: bool,
    },
    /// Looking at the product list.
    Browsing,
    /// On a product's page.
    Viewing(usize),
    /// Just put the viewed product in the cart.
    Added(usize),
    /// On the cart page.
    InCart,
    CheckedOut,
}

/// What a session does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    ShowList,
    View(usize),
    AddToCart(usize),
    RemoveFromCart,
    ShowCart,
    Checkout,
    Purchase,
    Leave,
}

impl Step {
    /// The next action, drawn with the probabilities of the match arms.
    fn next(self, rng: &mut StdRng, cart_items: i32) -> Action {
        let roll: f64 = rng.random();
        let product = |rng: &mut StdRng| pick_weighted(rng, &PRODUCT_WEIGHTS);
        match self {
            // Bounce 15 %; from the home page most go to the list, some straight to a product.
            Step::Landed { on_list } => match roll {
                r if r < 0.15 => Action::Leave,
                r if r < 0.70 && !on_list => Action::ShowList,
                _ => Action::View(product(rng)),
            },
            Step::Browsing => match roll {
                r if r < 0.75 => Action::View(product(rng)),
                _ => Action::Leave,
            },
            Step::Viewing(p) => match roll {
                r if r < 0.45 => Action::AddToCart(p),
                r if r < 0.75 => Action::View(product(rng)),
                r if r < 0.85 && cart_items > 0 => Action::ShowCart,
                _ => Action::Leave,
            },
            Step::Added(_) => match roll {
                r if r < 0.35 => Action::View(product(rng)),
                r if r < 0.75 => Action::ShowCart,
                r if r < 0.90 => Action::Checkout,
                _ => Action::Leave,
            },
            Step::InCart => match roll {
                r if r < 0.10 && cart_items > 0 => Action::RemoveFromCart,
                r if r < 0.70 => Action::Checkout,
                _ => Action::Leave,
            },
            Step::CheckedOut => match roll {
                r if r < 0.85 => Action::Purchase,
                _ => Action::Leave,
            },
        }
    }
}

struct Session {
    id: String,
    user: usize,
    step: Step,
    /// The page of the previous event, the referrer of the next one.
    page: String,
    /// Products in the cart with their quantities.
    cart: Vec<(usize, i32)>,
}

impl Session {
    fn items(&self) -> i32 {
        self.cart.iter().map(|(_, q)| q).sum()
    }
    fn value_cents(&self) -> i64 {
        self.cart.iter().map(|(p, q)| PRODUCTS[*p].3 * i64::from(*q)).sum()
    }
}

/// An infinite, deterministic stream of `user_events` rows in event-time order.
pub struct EcommerceGenerator {
    rng: StdRng,
    next_arrival: Micros,
    /// Sessions in progress by the time of their next step; the sequence number breaks ties.
    due: BinaryHeap<Reverse<(Micros, u64, usize)>>,
    sessions: Vec<Option<Session>>,
    free_slots: Vec<usize>,
    sequence: u64,
    next_session: u64,
    next_event: u64,
    next_order: u64,
}

/// The e-commerce catalog and event stream, for the embedded generator.
pub fn simulation(seed: u64, start: Micros) -> Simulation {
    let bootstrap = EcommerceGenerator::catalog(start);
    Simulation { bootstrap, events: Box::new(EcommerceGenerator::new(seed, start)) }
}

impl EcommerceGenerator {
    /// The first session arrives at `start`.
    pub fn new(seed: u64, start: Micros) -> EcommerceGenerator {
        EcommerceGenerator {
            rng: StdRng::seed_from_u64(seed),
            next_arrival: start,
            due: BinaryHeap::new(),
            sessions: Vec::new(),
            free_slots: Vec::new(),
            sequence: 0,
            next_session: 1,
            next_event: 1,
            next_order: 1,
        }
    }

    /// The `products` and `users` rows to load before any event, dated back from `start`.
    pub fn catalog(start: Micros) -> Vec<GeneratedEvent> {
        let products = PRODUCTS.iter().map(|&(id, name, category, cents, inventory, age_days)| Product {
            product_id: product_id(id),
            name: Some(name.into()),
            category: Some(category.into()),
            price: Some(F64::new(cents as f64 / 100.0)),
            inventory_count: Some(inventory),
            created_at: Some(start - age_days * MICROS_PER_DAY),
            is_active: Some(true),
        });
        let users = (0..USER_COUNT).map(|i| {
            let (email, country, city, device) = match SEED_USERS.get(i) {
                Some(&(_, email, country, city, device)) => (email.to_string(), country, city, device),
                None => {
                    let (country, city) = CITIES[i % CITIES.len()];
                    (format!("user{:03}@example.com", i + 1), country, city, DEVICES[(i * 7) % DEVICES.len()])
                }
            };
            User {
                user_id: user_id(i),
                email: Some(email),
                country: Some(country.into()),
                city: Some(city.into()),
                device_type: Some(device.into()),
                created_at: Some(start - (100 - (i as i64 % 90)) * MICROS_PER_DAY),
                last_login: Some(start - (i as i64 % 48) * 3600 * MICROS_PER_SECOND),
            }
        });
        let event = |relation, row| GeneratedEvent { relation, row, event_time: start };
        products
            .map(|p| event(Product::spec().name, p.to_row()))
            .chain(users.map(|u| event(User::spec().name, u.to_row())))
            .collect()
    }

    fn schedule(&mut self, at: Micros, slot: usize) {
        self.sequence += 1;
        self.due.push(Reverse((at, self.sequence, slot)));
    }

    /// One to three minutes, as between the seed's events.
    fn think_time(&mut self) -> Micros {
        self.rng.random_range(60 * MICROS_PER_SECOND..=180 * MICROS_PER_SECOND)
    }

    /// A new session and its landing pageview.
    fn arrive(&mut self, at: Micros) -> UserEvent {
        // Exponential gaps: a Poisson process of arrivals.
        let uniform: f64 = self.rng.random_range(f64::EPSILON..1.0);
        self.next_arrival = at + (-uniform.ln() * MEAN_SESSION_GAP_SECONDS * MICROS_PER_SECOND as f64) as Micros;
        let user = self.rng.random_range(0..USER_COUNT);
        let on_list = self.rng.random_bool(0.3);
        let referrer = REFERRERS[pick_weighted(&mut self.rng, &REFERRERS.map(|(_, w)| w))].0;
        let page = if on_list { PRODUCT_LIST } else { HOME };
        let session = Session {
            id: format!("{ID_PREFIX}S{:07}", self.next_session),
            user,
            step: Step::Landed { on_list },
            page: page.into(),
            cart: Vec::new(),
        };
        self.next_session += 1;
        let scroll = self.rng.random_range(20..=100);
        let event = self.event(&session, "pageview", None, page, referrer.map(String::from), at, scroll_data(scroll));
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.sessions.push(None);
            self.sessions.len() - 1
        });
        self.sessions[slot] = Some(session);
        let next = at + self.think_time();
        self.schedule(next, slot);
        event
    }

    /// The next step of the session in `slot`; `None` when it leaves without an event.
    fn advance(&mut self, at: Micros, slot: usize) -> Option<UserEvent> {
        let mut session = self.sessions[slot].take().expect("a scheduled session exists");
        let action = session.step.next(&mut self.rng, session.items());
        let previous = Some(session.page.clone());
        let event = match action {
            Action::Leave => None,
            Action::ShowList => {
                session.step = Step::Browsing;
                let data = scroll_data(self.rng.random_range(20..=100));
                Some(self.event(&session, "pageview", None, PRODUCT_LIST, previous, at, data))
            }
            Action::View(p) => {
                session.step = Step::Viewing(p);
                let data = format!("{{\"view_duration\": {}}}", self.rng.random_range(10..=120));
                Some(self.event(&session, "product_view", Some(p), &product_page(p), previous, at, data))
            }
            Action::AddToCart(p) => {
                session.step = Step::Added(p);
                let quantity = if self.rng.random_bool(0.8) { 1 } else { 2 };
                session.cart.push((p, quantity));
                // The seed's add_to_cart events have no referrer.
                let data = format!("{{\"quantity\": {quantity}}}");
                Some(self.event(&session, "add_to_cart", Some(p), &product_page(p), None, at, data))
            }
            Action::RemoveFromCart => {
                let (p, quantity) = session.cart.remove(self.rng.random_range(0..session.cart.len()));
                let data = format!("{{\"quantity\": {quantity}}}");
                Some(self.event(&session, "remove_from_cart", Some(p), CART, previous, at, data))
            }
            Action::ShowCart => {
                session.step = Step::InCart;
                Some(self.event(&session, "pageview", None, CART, previous, at, "{}".into()))
            }
            Action::Checkout if session.cart.is_empty() => None,
            Action::Checkout => {
                session.step = Step::CheckedOut;
                let data = format!(
                    "{{\"cart_value\": {}, \"item_count\": {}}}",
                    dollars(session.value_cents()),
                    session.items()
                );
                Some(self.event(&session, "checkout", None, CHECKOUT, Some(CART.into()), at, data))
            }
            Action::Purchase => {
                let payment = PAYMENT_METHODS[self.rng.random_range(0..PAYMENT_METHODS.len())];
                let data = format!(
                    "{{\"order_id\": \"ORD{:06}\", \"total_amount\": {}, \"item_count\": {}, \"payment_method\": \"{payment}\"}}",
                    self.next_order,
                    dollars(session.value_cents()),
                    session.items()
                );
                self.next_order += 1;
                let event = self.event(&session, "purchase", None, CONFIRMATION, Some(CHECKOUT.into()), at, data);
                // A purchase ends the session.
                self.free_slots.push(slot);
                return Some(event);
            }
        };
        match event {
            Some(event) => {
                session.page = event.page_url.clone().unwrap_or_default();
                self.sessions[slot] = Some(session);
                let next = at + self.think_time();
                self.schedule(next, slot);
                Some(event)
            }
            None => {
                self.free_slots.push(slot);
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        session: &Session,
        event_type: &str,
        product: Option<usize>,
        page: &str,
        referrer: Option<String>,
        at: Micros,
        data: String,
    ) -> UserEvent {
        let event_id = format!("{ID_PREFIX}E{:09}", self.next_event);
        self.next_event += 1;
        let device = SEED_USERS.get(session.user).map_or(DEVICES[(session.user * 7) % DEVICES.len()], |u| u.4);
        UserEvent {
            event_id,
            user_id: Some(user_id(session.user)),
            session_id: Some(session.id.clone()),
            event_type: Some(event_type.into()),
            product_id: product.map(|p| product_id(PRODUCTS[p].0)),
            page_url: Some(page.into()),
            referrer_url: referrer,
            device_type: Some(device.into()),
            event_time: Some(at),
            event_data: Some(parse_json(&data).expect("the generator writes valid JSON")),
        }
    }
}

impl Iterator for EcommerceGenerator {
    type Item = GeneratedEvent;

    fn next(&mut self) -> Option<GeneratedEvent> {
        loop {
            let event = match self.due.peek() {
                Some(Reverse((at, _, _))) if *at < self.next_arrival => {
                    let Reverse((at, _, slot)) = self.due.pop().expect("peeked");
                    match self.advance(at, slot) {
                        Some(event) => event,
                        None => continue,
                    }
                }
                _ => self.arrive(self.next_arrival),
            };
            let event_time = event.event_time.expect("generated events have a time");
            return Some(GeneratedEvent { relation: UserEvent::spec().name, row: event.to_row(), event_time });
        }
    }
}

fn user_id(index: usize) -> String {
    format!("{ID_PREFIX}U{:03}", index + 1)
}

/// The generator's id of the seed's product `seed_id`.
fn product_id(seed_id: &str) -> String {
    format!("{ID_PREFIX}{seed_id}")
}

fn product_page(p: usize) -> String {
    format!("https://example.com/products/{}", product_id(PRODUCTS[p].0))
}

fn scroll_data(depth: u32) -> String {
    format!("{{\"scroll_depth\": {depth}}}")
}

/// Cents as a JSON number of dollars with two decimals (`149.98`).
fn dollars(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// An index drawn with probability proportional to its integer weight.
fn pick_weighted(rng: &mut StdRng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut roll = rng.random_range(0..total);
    for (i, w) in weights.iter().enumerate() {
        if roll < *w {
            return i;
        }
        roll -= w;
    }
    unreachable!("the roll is below the total")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use diffmart_dataflows::datum::validate_row;

    use super::*;

    const START: Micros = 1_748_779_200 * MICROS_PER_SECOND; // 2025-06-01T12:00:00Z

    fn events(seed: u64, n: usize) -> Vec<UserEvent> {
        EcommerceGenerator::new(seed, START).take(n).map(|e| UserEvent::from_row(&e.row).unwrap()).collect()
    }

    #[test]
    fn deterministic_ordered_and_valid() {
        let a: Vec<GeneratedEvent> = EcommerceGenerator::new(7, START).take(5_000).collect();
        let b: Vec<GeneratedEvent> = EcommerceGenerator::new(7, START).take(5_000).collect();
        assert_eq!(a, b);
        assert_ne!(a, EcommerceGenerator::new(8, START).take(5_000).collect::<Vec<_>>());
        assert!(a.windows(2).all(|w| w[0].event_time <= w[1].event_time), "event-time order");
        for e in &a {
            validate_row(UserEvent::spec(), &e.row).unwrap();
        }
        for e in EcommerceGenerator::catalog(START) {
            let spec = if e.relation == "products" { Product::spec() } else { User::spec() };
            validate_row(spec, &e.row).unwrap();
        }
    }

    #[test]
    fn sessions_walk_the_funnel_in_order() {
        let mut by_session: HashMap<String, Vec<UserEvent>> = HashMap::new();
        for e in events(3, 20_000) {
            by_session.entry(e.session_id.clone().unwrap()).or_default().push(e);
        }
        let mut purchases = 0;
        let mut bounced = 0;
        for events in by_session.values() {
            assert_eq!(events[0].event_type.as_deref(), Some("pageview"), "sessions land on a page");
            let types: Vec<&str> = events.iter().map(|e| e.event_type.as_deref().unwrap()).collect();
            if let Some(i) = types.iter().position(|t| *t == "purchase") {
                purchases += 1;
                assert_eq!(i, types.len() - 1, "a purchase ends its session");
                assert_eq!(types[i - 1], "checkout");
                assert!(types.contains(&"add_to_cart"));
                let data: serde_json::Value = serde_json::from_str(events[i].event_data.as_deref().unwrap()).unwrap();
                let checkout: serde_json::Value =
                    serde_json::from_str(events[i - 1].event_data.as_deref().unwrap()).unwrap();
                assert_eq!(data["total_amount"], checkout["cart_value"]);
                assert!(data["item_count"].as_i64().unwrap() >= 1);
            }
            if types.len() == 1 {
                bounced += 1;
            }
            assert!(events.iter().all(|e| e.user_id == events[0].user_id && e.device_type == events[0].device_type));
        }
        let sessions = by_session.len();
        assert!(purchases * 20 > sessions && purchases * 3 < sessions, "{purchases} purchases in {sessions} sessions");
        assert!(bounced * 20 > sessions, "{bounced} bounces in {sessions} sessions");
    }

    #[test]
    fn sessions_arrive_at_the_configured_rate() {
        let one_day: Vec<UserEvent> = EcommerceGenerator::new(1, START)
            .take_while(|e| e.event_time < START + MICROS_PER_DAY)
            .map(|e| UserEvent::from_row(&e.row).unwrap())
            .collect();
        let sessions = one_day.iter().filter_map(|e| e.session_id.clone()).collect::<std::collections::HashSet<_>>();
        let expected = 86_400.0 / MEAN_SESSION_GAP_SECONDS;
        assert!((sessions.len() as f64 - expected).abs() < expected * 0.05, "{} sessions", sessions.len());
    }
}
