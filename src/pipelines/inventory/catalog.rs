//! `--catalog`: a catalog file in the original's format (`initial-products.json`: an
//! array of product objects), loaded into `product_updates` before anything else.

use std::path::Path;

use anyhow::Context;
use diffmart_dataflows::datum::{Micros, Record, RelationSpec, Row};
use diffmart_dataflows::inventory::ProductUpdate;
use serde_json::Value;

use super::topics::{product_from_object, product_objects};
use crate::engine::{Engine, Update};

/// Reads a catalog file, every product stamped with `load_time` and its index as arrival.
pub fn load_catalog_file(path: &Path, load_time: Micros) -> anyhow::Result<Vec<ProductUpdate>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the catalog {}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("the catalog {} is not valid JSON", path.display()))?;
    let objects = product_objects(&value).map_err(|e| anyhow::anyhow!("the catalog {}: {e}", path.display()))?;
    objects
        .into_iter()
        .enumerate()
        .map(|(i, object)| {
            product_from_object(object, load_time, i as i64)
                .and_then(|row| ProductUpdate::from_row(&row).map_err(|e| e.to_string()))
                .map_err(|e| anyhow::anyhow!("the catalog {}, product {i}: {e}", path.display()))
        })
        .collect()
}

/// The position logged with a loaded catalog: its file's checksum.
const LOADED: &str = "catalog/loaded";

/// CRC-32 of a catalog file's bytes: what tells one catalog from another across restarts.
pub fn catalog_checksum(path: &Path) -> anyhow::Result<u32> {
    let bytes = std::fs::read(path).with_context(|| format!("reading the catalog {}", path.display()))?;
    Ok(crc32fast::hash(&bytes))
}

/// Loads a catalog file into `product_updates`, whoever else feeds it; returns the
/// products it held (for the generator to order from, see [`held_rows`]).
///
/// An engine whose data directory has this file loaded already only reads it; one
/// that loaded another file refuses it (its products are in the views, and loading
/// a second catalog over them is not what a restart should do).
pub fn load_catalog(engine: &Engine, path: &Path, load_time: Micros) -> anyhow::Result<Vec<ProductUpdate>> {
    let checksum = catalog_checksum(path)?;
    let products = load_catalog_file(path, load_time)?;
    match engine.recovered_positions().get(LOADED) {
        Some(&loaded) if loaded == i64::from(checksum) => {
            tracing::info!(file = %path.display(), "catalog loaded before this restart");
        }
        Some(&loaded) => anyhow::bail!(
            "the catalog {} (CRC-32 {checksum:08x}) is not the one this data directory loaded (CRC-32 {loaded:08x}); \
             give that file, or start on a new --data-dir to load another",
            path.display()
        ),
        None => {
            let id = engine.catalog().id(ProductUpdate::spec().name).context("no relation product_updates")?;
            let updates: Vec<Update> = products.iter().map(|p| Update::insert(id, p.to_row())).collect();
            engine
                .apply_blocking_from(updates, vec![(LOADED.to_string(), i64::from(checksum))])
                .map_err(|e| anyhow::anyhow!("loading the catalog {}: {e}", path.display()))?;
            tracing::info!(products = products.len(), file = %path.display(), "catalog loaded");
        }
    }
    Ok(products)
}

/// A loaded catalog as the rows the simulations continue from (`HeldRows`): the
/// products in `product_updates`, nothing in any other relation.
pub fn held_rows(products: &[ProductUpdate], spec: &RelationSpec) -> Vec<Row> {
    if spec.name == ProductUpdate::spec().name { products.iter().map(Record::to_row).collect() } else { Vec::new() }
}
