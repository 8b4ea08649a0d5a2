//! The one JSON codec: values (`Datum`) and rows to and from JSON, for every place
//! JSON meets a relation: Kafka sources and sinks, the HTTP API and `diffmart produce`.
//! A pipeline's own formats (other field names, epoch-millisecond timestamps, the
//! original producers' spelling) are thin layers over it in `pipelines/<name>/`.
//!
//! Reading is lenient where producers differ ([`decode`]: numbers or strings for
//! `numeric`, several timestamp forms); writing is one form per reader ([`encode`]).

mod decode;
mod encode;
mod timestamps;

pub use decode::{datum_from_json, parse_object, row_from_fields, row_from_object};
pub use encode::{
    TimestampForm, datum_to_json, datum_to_json_as, python_float, python_object, row_to_object, row_to_object_as,
    timestamp_json,
};
pub use timestamps::parse_timestamp;
