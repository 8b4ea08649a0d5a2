//! Decoding of the `pgoutput` logical replication messages (protocol version 1)
//! that carry row changes. `pgwire-replication` already turns Begin and Commit
//! into events of their own and hands over every other message as raw bytes.
//!
//! Reference: PostgreSQL's "Logical Replication Message Formats".

use std::fmt;

/// A relation's object id upstream: row changes name their table by it.
pub type RelationOid = u32;

/// One column of a [`RelationMessage`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationColumn {
    pub name: String,
    /// Part of the replica identity (the key sent with updates and deletes).
    pub is_key: bool,
    pub type_oid: u32,
    pub type_modifier: i32,
}

/// Describes a table before the first change to it in a session, and again after its schema changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationMessage {
    pub oid: RelationOid,
    pub namespace: String,
    pub name: String,
    /// `d` default (primary key), `n` nothing, `f` full, `i` an index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

/// One column value of a tuple, in PostgreSQL's text output format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TupleValue {
    Null,
    /// A TOASTed value the update did not change: it is not sent again.
    UnchangedToast,
    Text(String),
}

pub type Tuple = Vec<TupleValue>;

/// The old row sent with an update or delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OldTuple {
    /// Only the replica identity's columns are set (REPLICA IDENTITY DEFAULT or INDEX).
    Key(Tuple),
    /// The whole old row (REPLICA IDENTITY FULL).
    Full(Tuple),
}

impl OldTuple {
    pub fn values(&self) -> &Tuple {
        match self {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        }
    }
}

/// A decoded message that matters for mirroring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Relation(RelationMessage),
    Insert {
        relation: RelationOid,
        new: Tuple,
    },
    /// `old` is absent when the replica identity did not change (REPLICA IDENTITY DEFAULT).
    Update {
        relation: RelationOid,
        old: Option<OldTuple>,
        new: Tuple,
    },
    Delete {
        relation: RelationOid,
        old: OldTuple,
    },
    Truncate {
        relations: Vec<RelationOid>,
    },
    /// Type descriptions, origins, logical messages: nothing to mirror.
    Ignored(u8),
}

/// A message that does not follow the format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed pgoutput message: {}", self.0)
    }
}
impl std::error::Error for DecodeError {}

/// Decodes one message (the payload of an XLogData).
pub fn decode(data: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader { data, at: 0 };
    let tag = r.u8()?;
    let message = match tag {
        b'R' => {
            let oid = r.u32()?;
            let namespace = r.string()?;
            let name = r.string()?;
            let replica_identity = r.u8()?;
            let count = r.u16()?;
            let mut columns = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let flags = r.u8()?;
                let name = r.string()?;
                let type_oid = r.u32()?;
                let type_modifier = r.u32()? as i32;
                columns.push(RelationColumn { name, is_key: flags & 1 == 1, type_oid, type_modifier });
            }
            Message::Relation(RelationMessage { oid, namespace, name, replica_identity, columns })
        }
        b'I' => {
            let relation = r.u32()?;
            r.expect(b'N')?;
            Message::Insert { relation, new: r.tuple()? }
        }
        b'U' => {
            let relation = r.u32()?;
            let old = match r.u8()? {
                b'K' => Some(OldTuple::Key(r.tuple_then(b'N')?)),
                b'O' => Some(OldTuple::Full(r.tuple_then(b'N')?)),
                b'N' => None,
                other => return Err(r.unexpected(other, "K, O or N")),
            };
            Message::Update { relation, old, new: r.tuple()? }
        }
        b'D' => {
            let relation = r.u32()?;
            let old = match r.u8()? {
                b'K' => OldTuple::Key(r.tuple()?),
                b'O' => OldTuple::Full(r.tuple()?),
                other => return Err(r.unexpected(other, "K or O")),
            };
            Message::Delete { relation, old }
        }
        b'T' => {
            let count = r.u32()?;
            let _options = r.u8()?;
            let relations = (0..count).map(|_| r.u32()).collect::<Result<_, _>>()?;
            Message::Truncate { relations }
        }
        b'Y' | b'O' | b'M' | b'B' | b'C' => Message::Ignored(tag),
        other => return Err(DecodeError(format!("unknown message type {:?}", other as char))),
    };
    if r.at != data.len() && !matches!(message, Message::Ignored(_)) {
        return Err(DecodeError(format!("{} bytes left over after a {:?} message", data.len() - r.at, tag as char)));
    }
    Ok(message)
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.data.len());
        let end = end.ok_or_else(|| DecodeError(format!("truncated at byte {} (wanted {n} more)", self.at)))?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let rest = &self.data[self.at..];
        let len = rest.iter().position(|&b| b == 0).ok_or_else(|| DecodeError("unterminated string".into()))?;
        let text = String::from_utf8(rest[..len].to_vec()).map_err(|e| DecodeError(format!("string: {e}")))?;
        self.at += len + 1;
        Ok(text)
    }
    fn unexpected(&self, got: u8, want: &str) -> DecodeError {
        DecodeError(format!("expected {want} at byte {}, got {:?}", self.at - 1, got as char))
    }
    fn expect(&mut self, want: u8) -> Result<(), DecodeError> {
        match self.u8()? {
            got if got == want => Ok(()),
            got => Err(self.unexpected(got, &(want as char).to_string())),
        }
    }
    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let count = self.u16()?;
        let mut values = Vec::with_capacity(count as usize);
        for _ in 0..count {
            values.push(match self.u8()? {
                b'n' => TupleValue::Null,
                b'u' => TupleValue::UnchangedToast,
                b't' => {
                    let len = self.u32()? as usize;
                    let bytes = self.take(len)?;
                    TupleValue::Text(String::from_utf8(bytes.to_vec()).map_err(|e| DecodeError(format!("value: {e}")))?)
                }
                b'b' => return Err(DecodeError("binary column values are not requested and not supported".into())),
                other => return Err(self.unexpected(other, "n, u, t or b")),
            });
        }
        Ok(values)
    }
    /// An old tuple, then the tag of the new one.
    fn tuple_then(&mut self, tag: u8) -> Result<Tuple, DecodeError> {
        let tuple = self.tuple()?;
        self.expect(tag)?;
        Ok(tuple)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    fn tuple(out: &mut Vec<u8>, values: &[Option<&str>]) {
        out.extend_from_slice(&(values.len() as u16).to_be_bytes());
        for v in values {
            match v {
                None => out.push(b'n'),
                Some(text) => {
                    out.push(b't');
                    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
                    out.extend_from_slice(text.as_bytes());
                }
            }
        }
    }

    #[test]
    fn relation() {
        let mut m = vec![b'R'];
        m.extend_from_slice(&16385u32.to_be_bytes());
        string(&mut m, "public");
        string(&mut m, "orders");
        m.push(b'd');
        m.extend_from_slice(&2u16.to_be_bytes());
        m.push(1);
        string(&mut m, "order_id");
        m.extend_from_slice(&23u32.to_be_bytes());
        m.extend_from_slice(&(-1i32).to_be_bytes());
        m.push(0);
        string(&mut m, "customer_id");
        m.extend_from_slice(&1043u32.to_be_bytes());
        m.extend_from_slice(&54i32.to_be_bytes());
        let Message::Relation(r) = decode(&m).unwrap() else { panic!() };
        assert_eq!(
            (r.oid, r.namespace.as_str(), r.name.as_str(), r.replica_identity),
            (16385, "public", "orders", b'd')
        );
        assert_eq!(
            r.columns[0],
            RelationColumn { name: "order_id".into(), is_key: true, type_oid: 23, type_modifier: -1 }
        );
        assert!(!r.columns[1].is_key);
        assert_eq!(r.columns[1].type_modifier, 54);
    }

    #[test]
    fn changes() {
        let mut insert = vec![b'I'];
        insert.extend_from_slice(&7u32.to_be_bytes());
        insert.push(b'N');
        tuple(&mut insert, &[Some("1"), None]);
        assert_eq!(
            decode(&insert).unwrap(),
            Message::Insert { relation: 7, new: vec![TupleValue::Text("1".into()), TupleValue::Null] }
        );

        let mut update = vec![b'U'];
        update.extend_from_slice(&7u32.to_be_bytes());
        update.push(b'K');
        tuple(&mut update, &[Some("1"), None]);
        update.push(b'N');
        tuple(&mut update, &[Some("2"), Some("x")]);
        let Message::Update { old: Some(OldTuple::Key(old)), new, .. } = decode(&update).unwrap() else { panic!() };
        assert_eq!(old[0], TupleValue::Text("1".into()));
        assert_eq!(new[1], TupleValue::Text("x".into()));

        let mut delete = vec![b'D'];
        delete.extend_from_slice(&7u32.to_be_bytes());
        delete.push(b'O');
        tuple(&mut delete, &[Some("2"), Some("x")]);
        assert!(matches!(decode(&delete).unwrap(), Message::Delete { old: OldTuple::Full(_), .. }));

        let mut truncate = vec![b'T'];
        truncate.extend_from_slice(&2u32.to_be_bytes());
        truncate.push(0);
        truncate.extend_from_slice(&7u32.to_be_bytes());
        truncate.extend_from_slice(&8u32.to_be_bytes());
        assert_eq!(decode(&truncate).unwrap(), Message::Truncate { relations: vec![7, 8] });
    }

    #[test]
    fn malformed() {
        assert!(decode(&[b'I', 0, 0]).is_err());
        assert!(decode(b"Z").is_err());
        let mut insert = vec![b'I'];
        insert.extend_from_slice(&7u32.to_be_bytes());
        insert.push(b'N');
        tuple(&mut insert, &[Some("1")]);
        insert.push(0);
        assert!(decode(&insert).unwrap_err().0.contains("left over"));
    }
}
