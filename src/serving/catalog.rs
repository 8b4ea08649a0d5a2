//! The catalog: every relation the server exposes, by name and by id.

use std::collections::HashMap;

use diffmart_dataflows::datum::{RelationKind, RelationSpec};

use crate::compute::RelationId;

/// Inputs first (their ids are also their input indexes), then views.
#[derive(Debug)]
pub struct Catalog {
    relations: Vec<&'static RelationSpec>,
    by_name: HashMap<&'static str, RelationId>,
    inputs: usize,
}

impl Catalog {
    pub fn new(inputs: Vec<&'static RelationSpec>, views: Vec<&'static RelationSpec>) -> Catalog {
        let input_count = inputs.len();
        let relations: Vec<_> = inputs.into_iter().chain(views).collect();
        let by_name = relations.iter().enumerate().map(|(id, spec)| (spec.name, id)).collect();
        Catalog { relations, by_name, inputs: input_count }
    }

    /// Every pipeline's relations.
    pub fn all_pipelines() -> Catalog {
        Catalog::new(diffmart_dataflows::input_specs(), diffmart_dataflows::view_specs())
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
