//! The catalog: every relation the server exposes, by name and by id.

use std::collections::HashMap;

use diffmart_dataflows::datum::{Datum, ReadTimeLookup, RelationKind, RelationSpec, Row};

use crate::compute::RelationId;

/// Inputs first (their ids are also their input indexes), then views.
#[derive(Debug)]
pub struct Catalog {
    relations: Vec<&'static RelationSpec>,
    by_name: HashMap<&'static str, RelationId>,
    inputs: usize,
    /// Per relation: how a view completed at read time is completed.
    lookups: Vec<Option<Lookup>>,
}

/// A [`ReadTimeLookup`] with its lookup view resolved to an id.
#[derive(Clone, Copy, Debug)]
pub struct Lookup {
    pub relation: RelationId,
    pub key_column: usize,
    pub complete: fn(&[Datum], Option<&[Datum]>) -> Row,
}

impl Catalog {
    pub fn new(inputs: Vec<&'static RelationSpec>, views: Vec<&'static RelationSpec>) -> Catalog {
        let input_count = inputs.len();
        let relations: Vec<_> = inputs.into_iter().chain(views).collect();
        let mut by_name = HashMap::new();
        for (id, spec) in relations.iter().enumerate() {
            if by_name.insert(spec.name, id).is_some() {
                panic!("two relations are named {}", spec.name);
            }
        }
        let lookups = vec![None; relations.len()];
        Catalog { relations, by_name, inputs: input_count, lookups }
    }

    /// Every pipeline's relations.
    pub fn all_pipelines() -> Catalog {
        Catalog::new(diffmart_dataflows::input_specs(), diffmart_dataflows::view_specs())
            .with_read_time_lookups(&diffmart_dataflows::read_time_lookups())
    }

    /// Marks views as completed at read time. Panics on a name the catalog lacks:
    /// the pipelines declare them, so that is a bug.
    pub fn with_read_time_lookups(mut self, lookups: &[ReadTimeLookup]) -> Catalog {
        for l in lookups {
            let find = |name: &str| self.id(name).unwrap_or_else(|| panic!("read-time lookup names {name}"));
            let (view, relation) = (find(l.view), find(l.lookup));
            self.lookups[view] = Some(Lookup { relation, key_column: l.key_column, complete: l.complete });
        }
        self
    }

    /// How this view is completed when a snapshot is read, if it is.
    pub fn read_time_lookup(&self, id: RelationId) -> Option<Lookup> {
        self.lookups[id]
    }

    pub fn id(&self, name: &str) -> Option<RelationId> {
        self.by_name.get(name).copied()
    }
    pub fn spec(&self, id: RelationId) -> &'static RelationSpec {
        self.relations[id]
    }
    pub fn lookup(&self, name: &str) -> Option<(RelationId, &'static RelationSpec)> {
        self.id(name).map(|id| (id, self.relations[id]))
    }
    pub fn len(&self) -> usize {
        self.relations.len()
    }
    pub fn is_empty(&self) -> bool {
        self.relations.is_empty()
    }
    pub fn is_input(&self, id: RelationId) -> bool {
        id < self.inputs
    }
    pub fn iter(&self) -> impl Iterator<Item = (RelationId, &'static RelationSpec)> + '_ {
        self.relations.iter().copied().enumerate()
    }
    pub fn of_kind(&self, want: fn(&RelationKind) -> bool) -> impl Iterator<Item = &'static RelationSpec> + '_ {
        self.relations.iter().copied().filter(move |spec| want(&spec.kind))
    }
}
