//! Placeholder: this pipeline is being written (see the issue); it has no relations yet.

use differential_dataflow::VecCollection;

use crate::datum::{RelationSpec, Row};
use crate::{PipelineConfig, Time};

pub fn input_specs() -> Vec<&'static RelationSpec> {
    Vec::new()
}

pub fn view_specs() -> Vec<&'static RelationSpec> {
    Vec::new()
}

pub fn build_from_rows<'s>(
    _config: &PipelineConfig,
    _inputs: &[VecCollection<'s, Time, Row>],
) -> Vec<VecCollection<'s, Time, Row>> {
    Vec::new()
}
