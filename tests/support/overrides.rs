//! A client of the HTTP override routes for recovery tests: it sets (`POST /override`)
//! and removes (`DELETE /override/{id}`) price overrides until the server is killed,
//! and knows which of its requests were acknowledged.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

use super::server::admin_request;

#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    pub price: f64,
    pub reason: String,
}

pub type Overrides = BTreeMap<String, Override>;

/// `price_overrides` as diffmart holds it.
pub async fn price_overrides(client: &Client) -> Overrides {
    let sql = "SELECT product_id, override_price, reason FROM price_overrides";
    let rows = client.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter().map(|r| (r.get(0), Override { price: r.get(1), reason: r.get(2) })).collect()
}

/// One HTTP client's overrides over all rounds: those it knows are set, and its random choices.
pub struct OverrideWriter {
    /// Names this writer in the reasons it writes.
    pub name: String,
    /// The products it overrides.
    pub products: Vec<String>,
    /// Every acknowledged request applied.
    pub overrides: Overrides,
    pub acknowledged: u64,
    admin_key: String,
    rng: StdRng,
}

impl OverrideWriter {
    pub fn new(name: &str, products: Vec<String>, admin_key: &str, seed: u64) -> OverrideWriter {
        OverrideWriter {
            name: name.to_string(),
            products,
            overrides: Overrides::new(),
            acknowledged: 0,
            admin_key: admin_key.to_string(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Sets or removes overrides over HTTP until the server goes away. Returns the
    /// writer and the overrides it would have had the request in flight been applied.
    pub async fn write_until_killed(mut self, http_port: u16, round: usize) -> (OverrideWriter, Option<Overrides>) {
        for step in 0.. {
            let product = self.products.choose(&mut self.rng).expect("a writer has products").clone();
            let mut after = self.overrides.clone();
            let (method, path, body) = if after.contains_key(&product) && self.rng.random_bool(0.3) {
                after.remove(&product);
                ("DELETE", format!("/override/{product}"), String::new())
            } else {
                let set = Override {
                    price: self.rng.random_range(1..100_000) as f64 / 100.0,
                    reason: format!("r{round}{}s{step}", self.name),
                };
                let body =
                    serde_json::json!({"product_id": product, "override_price": set.price, "reason": set.reason});
                after.insert(product, set);
                ("POST", "/override".to_string(), body.to_string())
            };
            match admin_request(&self.admin_key, http_port, method, &path, &body).await {
                Ok((200, _)) => {
                    self.overrides = after;
                    self.acknowledged += 1;
                }
                Ok((status, answer)) => panic!("{method} {path} {body}: {status} {answer}"),
                Err(_) => return (self, Some(after)),
            }
        }
        unreachable!("a writer writes until the server goes away")
    }

    /// This writer's overrides among `table`'s.
    pub fn own(&self, table: &Overrides) -> Overrides {
        table.iter().filter(|(k, _)| self.products.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}
