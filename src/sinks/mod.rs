//! Sinks: relations' changes leaving diffmart, fed by the store's change feed
//! (`Store::subscribe`: a snapshot, then every change batch in order).

pub mod kafka;
