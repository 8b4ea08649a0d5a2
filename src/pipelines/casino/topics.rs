//! The casino's topic (§C): `gaming-transactions`, one JSON object per transaction
//! named like `gaming_transactions`' columns, keyed by member, as its original
//! generator wrote them (Python's `json.dumps`, `transaction_time` as
//! `"YYYY-MM-DD HH:MM:SS"`, UTC).

use diffmart_dataflows::casino::GamingTransaction;
use diffmart_dataflows::datum::Record;

use crate::json::{TimestampForm, python_object};
use crate::sources::kafka::topic::KafkaSource;

pub fn topics() -> Vec<KafkaSource> {
    vec![
        KafkaSource::json("gaming-transactions", GamingTransaction::spec(), "member_id")
            .produced_as(|spec, row| python_object(spec, row, TimestampForm::Seconds)),
    ]
}
