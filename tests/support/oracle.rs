//! The loop every oracle test shares: apply one batch to PostgreSQL and to diffmart,
//! then compare every view row for row, and on a mismatch save the history as SQL.

use std::fmt::Write as _;
use std::sync::Arc;

use diffmart::engine::{Engine, Snapshot, Update};
use diffmart_dataflows::datum::RelationSpec;

/// The views one oracle compares, and what the comparisons saw so far.
pub struct OracleViews {
    views: Vec<(&'static str, usize, &'static RelationSpec)>,
    key_columns: fn(&str) -> usize,
    /// Each view's size at the last comparison.
    pub sizes: Vec<usize>,
    /// Each view's largest size.
    pub largest: Vec<usize>,
    /// Comparisons at which a view had fewer rows than at the one before.
    pub shrinks: usize,
}

impl OracleViews {
    /// `key_columns(view)`: how many leading columns identify a row, for the diff report.
    pub fn new(engine: &Engine, names: &[&'static str], key_columns: fn(&str) -> usize) -> OracleViews {
        let views: Vec<_> = names
            .iter()
            .map(|&name| {
                let (id, spec) = engine.catalog().lookup(name).unwrap_or_else(|| panic!("diffmart has no view {name}"));
                (name, id, spec)
            })
            .collect();
        let n = views.len();
        OracleViews { views, key_columns, sizes: vec![0; n], largest: vec![0; n], shrinks: 0 }
    }

    /// Compares every view of `snapshot` with PostgreSQL's; returns one line per mismatch.
    pub async fn compare(&mut self, client: &tokio_postgres::Client, snapshot: &Snapshot) -> Vec<String> {
        let mut failures = Vec::new();
        for (i, (name, id, spec)) in self.views.iter().enumerate() {
            let expected = super::pg_canonical_rows(client, spec).await;
            let actual = super::canonical_rows(&snapshot.rows(*id));
            let columns: Vec<&str> = spec.columns.iter().map(|c| c.name).collect();
            let keys = (self.key_columns)(name);
            if let Some(diff) = super::multiset_diff(&columns, keys, &expected, &actual, "postgres", "diffmart", 15) {
                failures.push(format!("view {name}: {diff}"));
            }
            if expected.len() < self.sizes[i] {
                self.shrinks += 1;
            }
            self.sizes[i] = expected.len();
            self.largest[i] = self.largest[i].max(expected.len());
        }
        failures
    }
}

/// One batch, as SQL for PostgreSQL and as updates for diffmart.
pub struct Batch<'a> {
    /// Which oracle, seed and batch this is, for messages ("retail oracle: seed 3, workers 2, batch 7 of 40").
    pub label: &'a str,
    pub sql: &'a str,
    pub updates: Vec<Update>,
}

/// Applies `batch` in one transaction to PostgreSQL and at one logical time to diffmart
/// (an empty batch too), and appends it to `script`, the history so far.
pub async fn apply_batch(client: &tokio_postgres::Client, engine: &Arc<Engine>, batch: Batch<'_>, script: &mut String) {
    let Batch { label, sql, updates } = batch;
    let _ = write!(script, "\n-- {label}\nBEGIN;\n{sql}COMMIT;\n");
    client
        .batch_execute(&format!("BEGIN;\n{sql}COMMIT;"))
        .await
        .unwrap_or_else(|e| panic!("{label}: PostgreSQL rejected the batch: {e:?}"));
    engine.apply(updates).await.unwrap_or_else(|e| panic!("{label}: diffmart rejected the batch: {e}"));
}

/// Fails the test with the mismatches, saving the history up to this batch as a SQL
/// script (to `file_stem`.sql in the temp dir) that replays it in PostgreSQL.
pub fn fail_with_history(label: &str, file_stem: &str, failures: &[String], script: &str, batch_sql: &str) -> ! {
    let path = std::env::temp_dir().join(format!("{}.sql", file_stem.replace([' ', '='], "_")));
    let saved = match std::fs::write(&path, script) {
        Ok(()) => format!("the history up to this batch, as PostgreSQL SQL: {}", path.display()),
        Err(e) => format!("could not save the history to {}: {e}", path.display()),
    };
    let shown: String = batch_sql.lines().take(40).map(|l| format!("    {l}\n")).collect();
    let more = batch_sql.lines().count().saturating_sub(40);
    panic!(
        "{label}: mismatch\n{}\n{saved}\nlast batch ({} statements):\n{shown}{}",
        failures.join("\n"),
        batch_sql.lines().count(),
        if more > 0 { format!("    ... and {more} more\n") } else { String::new() }
    );
}
