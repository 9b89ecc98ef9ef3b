//! The three protobuf messages of the KPL aggregation format, written by hand for `prost`.
//!
//! Every `string` field of the `.proto` is declared as `bytes` here: the two are identical on
//! the wire, decoding `bytes` from a [`Bytes`] buffer yields zero-copy slices, and proto2 strings
//! are not UTF-8-checked by the reference consumer (protobuf-java), so we must not reject
//! non-UTF-8 keys at parse time either. Required fields are declared `optional` so that a
//! missing one can be detected (prost does not enforce proto2 `required`).

use bytes::Bytes;

/// `AggregatedRecord`: the body between the magic and the MD5 trailer.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AggregatedRecord {
    /// Field 1, `repeated string`.
    #[prost(bytes = "bytes", repeated, tag = "1")]
    pub(crate) partition_key_table: Vec<Bytes>,
    /// Field 2, `repeated string`.
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub(crate) explicit_hash_key_table: Vec<Bytes>,
    /// Field 3, `repeated Record`.
    #[prost(message, repeated, tag = "3")]
    pub(crate) records: Vec<Record>,
}

/// `Record`: one user record inside an aggregate.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Record {
    /// Field 1, `required uint64`.
    #[prost(uint64, optional, tag = "1")]
    pub(crate) partition_key_index: Option<u64>,
    /// Field 2, `optional uint64`.
    #[prost(uint64, optional, tag = "2")]
    pub(crate) explicit_hash_key_index: Option<u64>,
    /// Field 3, `required bytes`.
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub(crate) data: Option<Bytes>,
    /// Field 4, `repeated Tag` (never written by producers, but must parse).
    #[prost(message, repeated, tag = "4")]
    pub(crate) tags: Vec<Tag>,
}

/// `Tag`: a key/value pair reserved by the format.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Tag {
    /// Field 1, `required string`.
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub(crate) key: Option<Bytes>,
    /// Field 2, `optional string`.
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub(crate) value: Option<Bytes>,
}

impl AggregatedRecord {
    /// Whether every proto2 `required` field is present, as protobuf-java checks on parse.
    pub(crate) fn has_required_fields(&self) -> bool {
        self.records.iter().all(|record| {
            record.partition_key_index.is_some()
                && record.data.is_some()
                && record.tags.iter().all(|tag| tag.key.is_some())
        })
    }
}
