//! One user record as delivered by the deaggregator.

use std::borrow::Cow;

use bytes::Bytes;

use crate::hash_key::hash_key_of_raw_partition_key;

/// A user record: either one sub-record of a KPL aggregate or a plain Kinesis record passed
/// through unchanged.
///
/// The data and the keys are slices of the Kinesis record's buffer; nothing is copied.
///
/// Two records are equal when their keys, data, sub-sequence number and origin are.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub(crate) partition_key: Bytes,
    pub(crate) explicit_hash_key: Option<Bytes>,
    /// Known when the record has an explicit hash key or the deaggregator had to compute it for
    /// range filtering; otherwise computed on demand by [`UserRecord::hash_key`].
    pub(crate) hash_key: Option<u128>,
    pub(crate) data: Bytes,
    pub(crate) sub_sequence_number: u64,
    pub(crate) aggregated: bool,
}

impl PartialEq for UserRecord {
    fn eq(&self, other: &Self) -> bool {
        // `hash_key` is a cache derived from the keys: whether it was filled in does not matter.
        self.partition_key == other.partition_key
            && self.explicit_hash_key == other.explicit_hash_key
            && self.data == other.data
            && self.sub_sequence_number == other.sub_sequence_number
            && self.aggregated == other.aggregated
    }
}

impl Eq for UserRecord {}

impl UserRecord {
    /// The partition key as text. Bytes that are not UTF-8 are replaced with U+FFFD, as the KCL
    /// (Java) does; the result borrows from the record unless a replacement was needed.
    #[must_use]
    pub fn partition_key(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.partition_key)
    }

    /// The partition key exactly as it was on the wire.
    #[must_use]
    pub fn partition_key_bytes(&self) -> &Bytes {
        &self.partition_key
    }

    /// The explicit hash key of a sub-record that has one, as the decimal text the producer wrote
    /// (for example with leading zeros). Always `None` for a plain record: `GetRecords` does not
    /// return the explicit hash key a record was put with.
    #[must_use]
    pub fn explicit_hash_key(&self) -> Option<&str> {
        // Only set after `parse_explicit_hash_key` accepted it, so it is ASCII.
        self.explicit_hash_key
            .as_deref()
            .and_then(|text| std::str::from_utf8(text).ok())
    }

    /// The explicit hash key exactly as it was on the wire (an optional sign and ASCII digits).
    #[must_use]
    pub fn explicit_hash_key_bytes(&self) -> Option<&Bytes> {
        self.explicit_hash_key.as_ref()
    }

    /// The 128-bit hash key that places this record on a shard: the explicit hash key if the
    /// record has one, otherwise the MD5 of the partition key read as a big-endian integer (for a
    /// plain record, of the Kinesis record's partition key). Computed on first need: the
    /// deaggregator only computes it up front when it filters by a hash-key range.
    #[must_use]
    pub fn hash_key(&self) -> u128 {
        match self.hash_key {
            Some(known) => known,
            None => hash_key_of_raw_partition_key(&self.partition_key),
        }
    }

    /// The record's data: a slice of the Kinesis record's data.
    #[must_use]
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Takes the data out of the record.
    #[must_use]
    pub fn into_data(self) -> Bytes {
        self.data
    }

    /// The position of this sub-record in its aggregate (0 for a plain record): with the Kinesis
    /// sequence number it forms the record's extended sequence number, used for checkpoints.
    #[must_use]
    pub const fn sub_sequence_number(&self) -> u64 {
        self.sub_sequence_number
    }

    /// Whether the record came out of a KPL aggregate (`false` for a plain record).
    #[must_use]
    pub const fn is_aggregated(&self) -> bool {
        self.aggregated
    }
}
