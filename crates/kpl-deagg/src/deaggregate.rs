//! Deaggregation: one Kinesis record in, its user records out, with a report of what was dropped.

use bytes::Bytes;
use md5::{Digest, Md5};
use prost::Message;

use crate::hash_key::{
    ExplicitHashKeyError, HashKeyRange, hash_key_of_raw_partition_key, parse_explicit_hash_key,
};
use crate::proto;
use crate::record::UserRecord;
use crate::report::{Framing, InvalidSubRecord, PlainReason, Report, SubRecordDefect};

/// The four bytes every KPL aggregate starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// The size of the MD5 trailer that ends every KPL aggregate.
pub const DIGEST_SIZE: usize = 16;

/// What to do with the sub-records of an aggregate whose key-table index is out of range or whose
/// explicit hash key is not a decimal integer below 2^128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InvalidSubRecordPolicy {
    /// Deliver exactly what the KCL delivers: the sub-records before the first invalid one; the
    /// invalid one and all after it are dropped (an explicit hash key outside `0..2^128` drops the
    /// whole aggregate, because the KCL treats it as a hash key outside the shard). Unlike the
    /// KCL, the loss is reported in [`Report::dropped_invalid`] and [`Report::first_invalid`].
    #[default]
    KclCompatible,
    /// Deliver every valid sub-record and drop only the invalid ones (reported). Delivers more
    /// than the KCL when an invalid sub-record is followed by valid ones; sub-sequence numbers
    /// stay the positions in the aggregate either way, so checkpoints are compatible.
    SkipInvalid,
    /// Return [`DeaggregateError::InvalidSubRecord`] and deliver nothing from that Kinesis record.
    Strict,
}

/// Deaggregation failed under [`InvalidSubRecordPolicy::Strict`]. Other policies never fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum DeaggregateError {
    /// The aggregate holds an invalid sub-record.
    #[error("invalid sub-record in a KPL aggregate: {0}")]
    InvalidSubRecord(InvalidSubRecord),
}

impl DeaggregateError {
    /// Whether trying again could help: never, the record's bytes will not change.
    #[must_use]
    pub const fn is_retryable(&self) -> bool {
        false
    }
}

/// The user records of one Kinesis record and the report of what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deaggregated {
    /// The user records delivered, in order.
    pub records: Vec<UserRecord>,
    /// What was delivered, skipped and dropped.
    pub report: Report,
}

/// Splits Kinesis records into user records, KCL-compatibly.
///
/// A value type: cheap to copy, holds only the shard's hash-key range and the
/// [`InvalidSubRecordPolicy`]. See the [crate documentation](crate) for the behaviour on every
/// kind of malformed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Deaggregator {
    range: HashKeyRange,
    policy: InvalidSubRecordPolicy,
}

impl Deaggregator {
    /// A deaggregator with no hash-key-range filter and the KCL-compatible policy.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            range: HashKeyRange::FULL,
            policy: InvalidSubRecordPolicy::KclCompatible,
        }
    }

    /// Filters by the hash-key range of the shard being read: an aggregate that holds any
    /// sub-record whose hash key is outside `range` is dropped whole (the KCL rule; see the
    /// [crate documentation](crate#hash-key-range-filtering)). Plain records are never filtered.
    #[must_use]
    pub const fn with_hash_key_range(mut self, range: HashKeyRange) -> Self {
        self.range = range;
        self
    }

    /// Sets what happens to invalid sub-records.
    #[must_use]
    pub const fn with_policy(mut self, policy: InvalidSubRecordPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The hash-key range filtered by.
    #[must_use]
    pub const fn hash_key_range(&self) -> HashKeyRange {
        self.range
    }

    /// The policy for invalid sub-records.
    #[must_use]
    pub const fn policy(&self) -> InvalidSubRecordPolicy {
        self.policy
    }

    /// Deaggregates one Kinesis record given its partition key and data.
    ///
    /// The partition key is only used when the record is not an aggregate; it is taken as
    /// anything that converts into [`Bytes`] without copying (`String`, `Vec<u8>`, `Bytes`,
    /// `&'static str`).
    ///
    /// # Errors
    /// Only under [`InvalidSubRecordPolicy::Strict`], when an aggregate holds an invalid
    /// sub-record.
    pub fn deaggregate(
        &self,
        partition_key: impl Into<Bytes>,
        data: Bytes,
    ) -> Result<Deaggregated, DeaggregateError> {
        let mut records = Vec::new();
        let report = self.deaggregate_into(partition_key, data, None, &mut records)?;
        Ok(Deaggregated { records, report })
    }

    /// Like [`Deaggregator::deaggregate`], for the Kinesis record a checkpoint points into:
    /// sub-records whose sub-sequence number is `<= skip_through` are left out (they were
    /// processed before the checkpoint). A plain record has sub-sequence number 0 and is
    /// therefore skipped. Use [`crate::ResumePoint`] to decide per Kinesis record.
    ///
    /// Validity and the hash-key-range rule are decided over the whole aggregate first, as the
    /// KCL does, so resuming never changes which sub-records are dropped.
    ///
    /// # Errors
    /// As [`Deaggregator::deaggregate`].
    pub fn deaggregate_resuming(
        &self,
        partition_key: impl Into<Bytes>,
        data: Bytes,
        skip_through: u64,
    ) -> Result<Deaggregated, DeaggregateError> {
        let mut records = Vec::new();
        let report =
            self.deaggregate_into(partition_key, data, Some(skip_through), &mut records)?;
        Ok(Deaggregated { records, report })
    }

    /// The general form: appends the user records to `out` (reusing its allocation) and returns
    /// the report. `skip_through` is as in [`Deaggregator::deaggregate_resuming`]; `None` skips
    /// nothing. On error `out` is left as it was.
    ///
    /// # Errors
    /// As [`Deaggregator::deaggregate`].
    pub fn deaggregate_into(
        &self,
        partition_key: impl Into<Bytes>,
        data: Bytes,
        skip_through: Option<u64>,
        out: &mut Vec<UserRecord>,
    ) -> Result<Report, DeaggregateError> {
        match unpack(&data) {
            Ok(message) => self.expand(message, skip_through, out),
            Err(reason) => Ok(pass_through(
                partition_key.into(),
                data,
                reason,
                skip_through,
                out,
            )),
        }
    }

    fn expand(
        &self,
        message: proto::AggregatedRecord,
        skip_through: Option<u64>,
        out: &mut Vec<UserRecord>,
    ) -> Result<Report, DeaggregateError> {
        let proto::AggregatedRecord {
            mut partition_key_table,
            explicit_hash_key_table,
            records,
        } = message;
        let total = records.len();
        let mut report = Report::new(Framing::Aggregated, total);
        let start = out.len();
        out.reserve(total);
        // The position of the last sub-record using each partition key, so that the key can be
        // moved out of the table there instead of cloned (saves a reference-count round trip).
        let mut last_use = vec![usize::MAX; partition_key_table.len()];
        for (position, record) in records.iter().enumerate() {
            let slot = record
                .partition_key_index
                .and_then(|index| usize::try_from(index).ok())
                .and_then(|index| last_use.get_mut(index));
            if let Some(slot) = slot {
                *slot = position;
            }
        }
        let compute_hash_keys = !self.range.is_full();
        let mut tables = Tables {
            partition_key_hashes: vec![None; partition_key_table.len()],
            partition_keys: &mut partition_key_table,
            last_use: &last_use,
            explicit_hash_keys: &explicit_hash_key_table,
            parsed_explicit_hash_keys: vec![None; explicit_hash_key_table.len()],
            compute_hash_keys,
        };
        let mut out_of_range = false;
        let mut skipped = 0_usize;

        for (position, record) in records.into_iter().enumerate() {
            let sub_sequence_number = position as u64;
            let keys = match tables.resolve(position, &record) {
                Ok(keys) => keys,
                Err(defect) => {
                    let invalid = InvalidSubRecord {
                        sub_sequence_number,
                        defect,
                    };
                    report.first_invalid.get_or_insert(invalid);
                    match self.policy {
                        InvalidSubRecordPolicy::Strict => {
                            out.truncate(start);
                            return Err(DeaggregateError::InvalidSubRecord(invalid));
                        }
                        InvalidSubRecordPolicy::SkipInvalid => {
                            report.dropped_invalid += 1;
                            continue;
                        }
                        InvalidSubRecordPolicy::KclCompatible => {
                            if defect == SubRecordDefect::ExplicitHashKeyOutOfRange {
                                // The KCL sees a hash key outside the shard: nothing survives.
                                out.truncate(start);
                                skipped = 0;
                                report.dropped_invalid = total;
                            } else {
                                report.dropped_invalid = total - position;
                            }
                            break;
                        }
                    }
                }
            };
            if let Some(hash_key) = keys.hash_key
                && !self.range.contains(hash_key)
            {
                out_of_range = true;
                if self.policy == InvalidSubRecordPolicy::KclCompatible {
                    break;
                }
            }
            if out_of_range {
                // Keep scanning only so that Strict and SkipInvalid see every invalid sub-record.
                continue;
            }
            if skip_through.is_some_and(|last_done| sub_sequence_number <= last_done) {
                skipped += 1;
                continue;
            }
            out.push(UserRecord {
                partition_key: keys.partition_key,
                explicit_hash_key: keys.explicit_hash_key,
                hash_key: keys.hash_key,
                // Presence was checked by `has_required_fields` before expanding.
                data: record.data.unwrap_or_default(),
                sub_sequence_number,
                aggregated: true,
            });
        }

        if out_of_range {
            out.truncate(start);
            report.dropped_out_of_range = total - report.dropped_invalid;
        } else {
            report.skipped_by_resume = skipped;
            report.delivered = out.len() - start;
        }
        Ok(report)
    }
}

/// Checks the framing (magic, length, MD5) and parses the body, as `AggregatorUtil` does.
fn unpack(data: &Bytes) -> Result<proto::AggregatedRecord, PlainReason> {
    if data.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(PlainReason::NoMagic);
    }
    let body_end = match data.len().checked_sub(DIGEST_SIZE) {
        Some(end) if end > MAGIC.len() => end,
        _ => return Err(PlainReason::TooShort),
    };
    let body = data.slice(MAGIC.len()..body_end);
    let digest = Md5::digest(&body);
    if data.get(body_end..) != Some(digest.as_slice()) {
        return Err(PlainReason::ChecksumMismatch);
    }
    let message =
        proto::AggregatedRecord::decode(body).map_err(|_| PlainReason::MalformedProtobuf)?;
    if !message.has_required_fields() {
        return Err(PlainReason::MissingRequiredField);
    }
    Ok(message)
}

/// Delivers a record that is not an aggregate unchanged, as the KCL does.
fn pass_through(
    partition_key: Bytes,
    data: Bytes,
    reason: PlainReason,
    skip_through: Option<u64>,
    out: &mut Vec<UserRecord>,
) -> Report {
    let mut report = Report::new(Framing::Plain(reason), 1);
    if skip_through.is_some() {
        // A plain record is sub-record 0, which is `<=` any resume point.
        report.skipped_by_resume = 1;
    } else {
        out.push(UserRecord {
            partition_key,
            explicit_hash_key: None,
            hash_key: None,
            data,
            sub_sequence_number: 0,
            aggregated: false,
        });
        report.delivered = 1;
    }
    report
}

/// The key tables of one aggregate, with explicit hash keys parsed and partition keys hashed once
/// per table entry: however many sub-records use a key, and however long it is, the work per
/// aggregate stays proportional to its size.
struct Tables<'a> {
    partition_keys: &'a mut [Bytes],
    /// For each partition key, the position of the last sub-record that uses it.
    last_use: &'a [usize],
    /// For each partition key, its hash key once computed.
    partition_key_hashes: Vec<Option<u128>>,
    explicit_hash_keys: &'a [Bytes],
    parsed_explicit_hash_keys: Vec<Option<Result<u128, ExplicitHashKeyError>>>,
    compute_hash_keys: bool,
}

/// The keys of one valid sub-record.
struct ResolvedKeys {
    partition_key: Bytes,
    explicit_hash_key: Option<Bytes>,
    /// Known when the record has an explicit hash key or hash keys are needed for filtering.
    hash_key: Option<u128>,
}

impl Tables<'_> {
    /// Looks up a sub-record's keys in the order the KCL does: partition key index, explicit hash
    /// key index, explicit hash key value.
    fn resolve(
        &mut self,
        position: usize,
        record: &proto::Record,
    ) -> Result<ResolvedKeys, SubRecordDefect> {
        // Presence was checked by `has_required_fields` before expanding.
        let index = record.partition_key_index.unwrap_or_default();
        let table_len = self.partition_keys.len();
        let slot = usize::try_from(index).ok().and_then(|i| {
            let last = self.last_use.get(i).is_some_and(|&last| last == position);
            Some((i, self.partition_keys.get_mut(i)?, last))
        });
        let (key_index, partition_key) = match slot {
            Some((i, key, true)) => (i, std::mem::take(key)),
            Some((i, key, false)) => (i, key.clone()),
            None => {
                return Err(SubRecordDefect::PartitionKeyIndexOutOfRange { index, table_len });
            }
        };
        let (explicit_hash_key, hash_key) = match record.explicit_hash_key_index {
            None => (None, None),
            Some(index) => {
                let explicit_hash_keys = self.explicit_hash_keys;
                let entry = usize::try_from(index).ok().and_then(|i| {
                    Some((
                        explicit_hash_keys.get(i)?,
                        self.parsed_explicit_hash_keys.get_mut(i)?,
                    ))
                });
                let Some((text, cache)) = entry else {
                    return Err(SubRecordDefect::ExplicitHashKeyIndexOutOfRange {
                        index,
                        table_len: explicit_hash_keys.len(),
                    });
                };
                let value = cache
                    .get_or_insert_with(|| parse_explicit_hash_key(text))
                    .map_err(|error| match error {
                        ExplicitHashKeyError::NotDecimal => {
                            SubRecordDefect::ExplicitHashKeyNotDecimal
                        }
                        ExplicitHashKeyError::OutOfRange => {
                            SubRecordDefect::ExplicitHashKeyOutOfRange
                        }
                    })?;
                (Some(text.clone()), Some(value))
            }
        };
        let hash_key = match hash_key {
            None if self.compute_hash_keys => {
                let cached = self.partition_key_hashes.get_mut(key_index).map(|cached| {
                    *cached.get_or_insert_with(|| hash_key_of_raw_partition_key(&partition_key))
                });
                Some(cached.unwrap_or_else(|| hash_key_of_raw_partition_key(&partition_key)))
            }
            known => known,
        };
        Ok(ResolvedKeys {
            partition_key,
            explicit_hash_key,
            hash_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash_key::{HASHED, hash_key_of_partition_key};

    /// A valid aggregate anyone allowed to put records can write: one huge partition key and
    /// tens of thousands of empty sub-records that all use it.
    fn one_huge_key(key_len: usize, sub_records: usize) -> (Bytes, Bytes) {
        let key = Bytes::from(vec![b'k'; key_len]);
        let message = proto::AggregatedRecord {
            partition_key_table: vec![key.clone()],
            explicit_hash_key_table: Vec::new(),
            records: (0..sub_records)
                .map(|_| proto::Record {
                    partition_key_index: Some(0),
                    explicit_hash_key_index: None,
                    data: Some(Bytes::new()),
                    tags: Vec::new(),
                })
                .collect(),
        };
        let body = message.encode_to_vec();
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(&body);
        data.extend_from_slice(&Md5::digest(&body));
        (key, data.into())
    }

    #[test]
    fn a_key_shared_by_every_sub_record_is_hashed_once() {
        let (key, data) = one_huge_key(600_000, 70_000);
        assert!(data.len() <= 1024 * 1024, "{} bytes", data.len());
        let hash = hash_key_of_partition_key(&key);
        let range = HashKeyRange::new(hash, hash).unwrap();
        HASHED.with(|hashed| hashed.set(0));
        let out = Deaggregator::new()
            .with_policy(InvalidSubRecordPolicy::SkipInvalid)
            .with_hash_key_range(range)
            .deaggregate("outer", data)
            .unwrap();
        assert_eq!(out.records.len(), 70_000);
        assert_eq!(
            HASHED.with(std::cell::Cell::get),
            1,
            "hashed once per table entry"
        );
        assert!(
            out.records.iter().all(|r| r.partition_key_bytes().as_ptr()
                == out.records[0].partition_key_bytes().as_ptr()),
            "every sub-record shares the key"
        );
    }
}
