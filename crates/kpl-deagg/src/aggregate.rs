//! Aggregation: packing user records into KPL aggregates, byte-identical to the reference Python
//! aggregator (`aws-kinesis-agg`) for the same input.

use std::collections::HashMap;

use bytes::Bytes;
use md5::{Digest, Md5};

use crate::deaggregate::{DIGEST_SIZE, MAGIC};
use crate::hash_key::parse_explicit_hash_key;

/// The default maximum size of one aggregate in bytes (1 MiB, the default Kinesis record limit).
pub const DEFAULT_MAX_AGGREGATE_SIZE: usize = 1024 * 1024;

/// The largest configurable aggregate (10 MiB, the largest record a stream can be raised to).
pub const MAX_AGGREGATE_SIZE: usize = 10 * 1024 * 1024;

/// The smallest configurable aggregate (the KPL's lower bound for `AggregationMaxSize`).
pub const MIN_AGGREGATE_SIZE: usize = 64;

/// Magic and MD5 trailer around the protobuf body.
const OVERHEAD: usize = MAGIC.len() + DIGEST_SIZE;

/// Settings of an [`Aggregator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AggregatorConfig {
    max_size: usize,
    single_record_shortcut: bool,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl AggregatorConfig {
    /// 1 MiB aggregates, single-record shortcut on.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            max_size: DEFAULT_MAX_AGGREGATE_SIZE,
            single_record_shortcut: true,
        }
    }

    /// Sets the maximum size of an aggregate in bytes, magic and MD5 included; it must lie in
    /// [`MIN_AGGREGATE_SIZE`]`..=`[`MAX_AGGREGATE_SIZE`]. Keep it at or below the stream's
    /// maximum record size minus the longest partition key, since Kinesis counts the partition
    /// key too.
    ///
    /// # Errors
    /// [`AggregateError::InvalidMaxSize`] outside the bounds.
    pub const fn with_max_size(mut self, max_size: usize) -> Result<Self, AggregateError> {
        if max_size < MIN_AGGREGATE_SIZE || max_size > MAX_AGGREGATE_SIZE {
            return Err(AggregateError::InvalidMaxSize(max_size));
        }
        self.max_size = max_size;
        Ok(self)
    }

    /// Whether a batch holding a single user record is sent as that record itself (its data,
    /// partition key and explicit hash key) rather than as a one-record aggregate. The KPL
    /// always does this; the Python aggregator never does (turn it off to match its bytes).
    /// Either form deaggregates to the same user record.
    #[must_use]
    pub const fn with_single_record_shortcut(mut self, enabled: bool) -> Self {
        self.single_record_shortcut = enabled;
        self
    }

    /// The maximum size of an aggregate in bytes.
    #[must_use]
    pub const fn max_size(&self) -> usize {
        self.max_size
    }

    /// Whether the single-record shortcut is on.
    #[must_use]
    pub const fn single_record_shortcut(&self) -> bool {
        self.single_record_shortcut
    }
}

/// Why aggregation failed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateError {
    /// [`AggregatorConfig::with_max_size`] was given a size outside the bounds.
    #[error(
        "maximum aggregate size {0} is outside {MIN_AGGREGATE_SIZE}..={MAX_AGGREGATE_SIZE} bytes"
    )]
    InvalidMaxSize(usize),
    /// The user record would not fit in an aggregate even on its own; nothing was added. Put it
    /// to Kinesis directly, or raise the maximum size.
    #[error(
        "a user record needs {size} bytes as an aggregate, more than the maximum of {max_size}"
    )]
    RecordTooLarge {
        /// The size of an aggregate holding only this record.
        size: usize,
        /// The configured maximum.
        max_size: usize,
    },
    /// The explicit hash key is not a decimal integer below 2^128; nothing was added.
    #[error("explicit hash key {0:?} is not a decimal integer below 2^128")]
    InvalidExplicitHashKey(String),
}

impl AggregateError {
    /// Whether trying again with the same input could help: never.
    #[must_use]
    pub const fn is_retryable(&self) -> bool {
        false
    }
}

/// One record ready for `PutRecord`/`PutRecords`: an aggregate, or a single user record sent
/// as itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutRecord {
    /// The partition key to put with: the first user record's (as the Python aggregator does).
    pub partition_key: String,
    /// The explicit hash key to put with: the first user record's, if it had one.
    pub explicit_hash_key: Option<String>,
    /// The record's data: magic, protobuf body and MD5, or the single user record's data.
    pub data: Bytes,
    /// How many user records it carries.
    pub user_records: usize,
    /// Whether `data` is an aggregate (`false` for the single-record shortcut).
    pub aggregated: bool,
}

/// Packs user records into aggregates of at most the configured size.
///
/// Records are kept in the order added; keys are deduplicated into the key tables in first-use
/// order; when a record does not fit, the aggregate so far is returned and the record starts the
/// next one. The bytes are identical to those of the Python `aws-kinesis-agg` aggregator given
/// the same records (as `bytes`; see the vectors' generator for a quirk of its `str` input).
///
/// ```
/// use bytes::Bytes;
/// use shardwise_kpl_deagg::{Aggregator, AggregatorConfig, Deaggregator};
///
/// let mut aggregator = Aggregator::new(AggregatorConfig::new());
/// for i in 0..3 {
///     assert!(aggregator.add(&format!("key-{i}"), None, format!("record {i}"))?.is_none());
/// }
/// let put = aggregator.flush().expect("three records are pending");
/// assert!(put.aggregated && put.user_records == 3);
///
/// let out = Deaggregator::new().deaggregate(put.partition_key, put.data).unwrap();
/// assert_eq!(out.records[2].data(), &Bytes::from("record 2"));
/// # Ok::<(), shardwise_kpl_deagg::AggregateError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Aggregator {
    config: AggregatorConfig,
    partition_keys: KeyTable,
    explicit_hash_keys: KeyTable,
    records: Vec<PendingRecord>,
    /// Exact size of the protobuf body the pending records encode to.
    body_len: usize,
    /// The outer keys: those of the first pending record.
    first_keys: Option<(String, Option<String>)>,
}

#[derive(Debug, Clone)]
struct PendingRecord {
    partition_key_index: u64,
    explicit_hash_key_index: Option<u64>,
    data: Bytes,
}

/// A key table: entries in first-use order, and their indices.
#[derive(Debug, Clone, Default)]
struct KeyTable {
    entries: Vec<String>,
    indices: HashMap<String, u64>,
}

impl KeyTable {
    fn get(&self, key: &str) -> Option<u64> {
        self.indices.get(key).copied()
    }

    fn next_index(&self) -> u64 {
        self.entries.len() as u64
    }

    fn insert(&mut self, key: &str) -> u64 {
        if let Some(index) = self.get(key) {
            return index;
        }
        let index = self.next_index();
        self.entries.push(key.to_owned());
        self.indices.insert(key.to_owned(), index);
        index
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.indices.clear();
    }
}

impl Aggregator {
    /// An empty aggregator.
    #[must_use]
    pub fn new(config: AggregatorConfig) -> Self {
        Self {
            config,
            partition_keys: KeyTable::default(),
            explicit_hash_keys: KeyTable::default(),
            records: Vec::new(),
            body_len: 0,
            first_keys: None,
        }
    }

    /// The settings.
    #[must_use]
    pub const fn config(&self) -> &AggregatorConfig {
        &self.config
    }

    /// How many user records are pending.
    #[must_use]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no user record is pending.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The exact size in bytes of the aggregate the pending records would make (0 when empty).
    #[must_use]
    pub fn size_bytes(&self) -> usize {
        if self.records.is_empty() {
            0
        } else {
            OVERHEAD + self.body_len
        }
    }

    /// Adds a user record. Returns the completed aggregate when this record did not fit in the
    /// pending one (the record then starts the next aggregate), otherwise `None`.
    ///
    /// `data` is anything convertible into [`Bytes`]; it is copied only when the aggregate is
    /// built.
    ///
    /// # Errors
    /// [`AggregateError::InvalidExplicitHashKey`] and [`AggregateError::RecordTooLarge`]; the
    /// aggregator is unchanged then.
    pub fn add(
        &mut self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data: impl Into<Bytes>,
    ) -> Result<Option<PutRecord>, AggregateError> {
        let data = data.into();
        if let Some(key) = explicit_hash_key
            && parse_explicit_hash_key(key.as_bytes()).is_err()
        {
            return Err(AggregateError::InvalidExplicitHashKey(key.to_owned()));
        }
        let alone = self.added_size(partition_key, explicit_hash_key, data.len(), true);
        if OVERHEAD + alone > self.config.max_size {
            return Err(AggregateError::RecordTooLarge {
                size: OVERHEAD + alone,
                max_size: self.config.max_size,
            });
        }
        let mut completed = None;
        let mut added = self.added_size(partition_key, explicit_hash_key, data.len(), false);
        if !self.records.is_empty() && OVERHEAD + self.body_len + added > self.config.max_size {
            completed = self.flush();
            added = alone;
        }
        let partition_key_index = self.partition_keys.insert(partition_key);
        let explicit_hash_key_index =
            explicit_hash_key.map(|key| self.explicit_hash_keys.insert(key));
        self.records.push(PendingRecord {
            partition_key_index,
            explicit_hash_key_index,
            data,
        });
        self.body_len += added;
        if self.first_keys.is_none() {
            self.first_keys = Some((
                partition_key.to_owned(),
                explicit_hash_key.map(str::to_owned),
            ));
        }
        Ok(completed)
    }

    /// Returns the pending records as one [`PutRecord`] (an aggregate, or the record itself when
    /// only one is pending and the shortcut is on) and empties the aggregator; `None` when
    /// nothing is pending.
    pub fn flush(&mut self) -> Option<PutRecord> {
        let (partition_key, explicit_hash_key) = self.first_keys.take()?;
        let user_records = self.records.len();
        let put = if user_records == 1 && self.config.single_record_shortcut {
            PutRecord {
                partition_key,
                explicit_hash_key,
                data: self
                    .records
                    .pop()
                    .map(|record| record.data)
                    .unwrap_or_default(),
                user_records,
                aggregated: false,
            }
        } else {
            PutRecord {
                partition_key,
                explicit_hash_key,
                data: self.encode(),
                user_records,
                aggregated: true,
            }
        };
        self.records.clear();
        self.partition_keys.clear();
        self.explicit_hash_keys.clear();
        self.body_len = 0;
        Some(put)
    }

    /// How many bytes the body grows by when this record is added (to the pending aggregate, or
    /// to an empty one when `fresh`): new key-table entries plus the encoded `Record`.
    fn added_size(
        &self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data_len: usize,
        fresh: bool,
    ) -> usize {
        let mut size = 0;
        let mut index_of = |table: &KeyTable, key: &str| match table.get(key).filter(|_| !fresh) {
            Some(index) => index,
            None => {
                size += field_len(key.len());
                if fresh { 0 } else { table.next_index() }
            }
        };
        let partition_key_index = index_of(&self.partition_keys, partition_key);
        let explicit_hash_key_index =
            explicit_hash_key.map(|key| index_of(&self.explicit_hash_keys, key));
        let record = record_len(partition_key_index, explicit_hash_key_index, data_len);
        size + 1 + varint_len(record as u64) + record
    }

    /// Magic, body, MD5: the aggregate's bytes.
    fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(OVERHEAD + self.body_len);
        out.extend_from_slice(&MAGIC);
        for key in &self.partition_keys.entries {
            put_len_field(&mut out, 0x0a, key.as_bytes());
        }
        for key in &self.explicit_hash_keys.entries {
            put_len_field(&mut out, 0x12, key.as_bytes());
        }
        for record in &self.records {
            out.push(0x1a);
            put_varint(
                &mut out,
                record_len(
                    record.partition_key_index,
                    record.explicit_hash_key_index,
                    record.data.len(),
                ) as u64,
            );
            out.push(0x08);
            put_varint(&mut out, record.partition_key_index);
            if let Some(index) = record.explicit_hash_key_index {
                out.push(0x10);
                put_varint(&mut out, index);
            }
            put_len_field(&mut out, 0x1a, &record.data);
        }
        let digest = Md5::digest(out.get(MAGIC.len()..).unwrap_or_default());
        out.extend_from_slice(&digest);
        debug_assert_eq!(out.len(), OVERHEAD + self.body_len);
        Bytes::from(out)
    }
}

/// The encoded length of a `Record` message's fields.
fn record_len(
    partition_key_index: u64,
    explicit_hash_key_index: Option<u64>,
    data_len: usize,
) -> usize {
    1 + varint_len(partition_key_index)
        + explicit_hash_key_index.map_or(0, |index| 1 + varint_len(index))
        + field_len(data_len)
}

/// The encoded length of a length-delimited field with a one-byte tag.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn varint_len(value: u64) -> usize {
    // 7 bits per byte; zero still takes one byte.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_len_field(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths() {
        let cases = [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::MAX, 10),
        ];
        for (value, len) in cases {
            assert_eq!(varint_len(value), len, "{value}");
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), len, "{value}");
        }
    }

    #[test]
    fn size_accounting_is_exact() {
        let mut aggregator =
            Aggregator::new(AggregatorConfig::new().with_single_record_shortcut(false));
        for i in 0..300_u32 {
            let key = format!("k{}", i % 150);
            let ehk = (i % 3 == 0).then(|| (u128::from(i) * 1_000_003).to_string());
            aggregator
                .add(&key, ehk.as_deref(), vec![0_u8; (i as usize * 7) % 200])
                .unwrap();
            let expected = aggregator.size_bytes();
            let encoded = aggregator.encode();
            assert_eq!(encoded.len(), expected);
        }
    }

    #[test]
    fn max_size_bounds() {
        assert!(
            AggregatorConfig::new()
                .with_max_size(MIN_AGGREGATE_SIZE - 1)
                .is_err()
        );
        assert!(
            AggregatorConfig::new()
                .with_max_size(MAX_AGGREGATE_SIZE + 1)
                .is_err()
        );
        assert!(
            AggregatorConfig::new()
                .with_max_size(MAX_AGGREGATE_SIZE)
                .is_ok()
        );
    }
}
