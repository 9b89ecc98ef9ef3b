//! What happened to one Kinesis record during deaggregation, in numbers a caller can count.

use std::fmt;

/// How a Kinesis record was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// A valid KPL aggregate (magic, protobuf body, matching MD5, all required fields).
    Aggregated,
    /// Not an aggregate: the record was delivered unchanged as one user record, as the KCL does.
    Plain(PlainReason),
}

/// Why a Kinesis record was treated as a plain record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlainReason {
    /// Shorter than 4 bytes, or the first 4 bytes are not the KPL magic `F3 89 9A C2`. The usual
    /// case for records not written by the KPL.
    NoMagic,
    /// Starts with the magic but is at most 20 bytes long (magic + MD5), so it has no body.
    TooShort,
    /// The MD5 trailer does not match the body (corrupt, truncated or with trailing bytes).
    ChecksumMismatch,
    /// The body is not a valid protobuf `AggregatedRecord`.
    MalformedProtobuf,
    /// The body parses, but a proto2 `required` field is missing somewhere
    /// (`Record.partition_key_index`, `Record.data` or `Tag.key`).
    MissingRequiredField,
}

impl PlainReason {
    /// Whether the record looked like an aggregate (it carried the magic) and yet was passed
    /// through: a sign of corruption or of data that merely starts with the magic.
    #[must_use]
    pub const fn had_magic(self) -> bool {
        !matches!(self, Self::NoMagic)
    }
}

/// What is wrong with one sub-record of an otherwise valid aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SubRecordDefect {
    /// `partition_key_index` does not point into the partition key table.
    #[error("partition key index {index} is outside the table of {table_len} keys")]
    PartitionKeyIndexOutOfRange {
        /// The index found.
        index: u64,
        /// The number of entries in the table.
        table_len: usize,
    },
    /// `explicit_hash_key_index` is present but does not point into the explicit hash key table.
    #[error("explicit hash key index {index} is outside the table of {table_len} keys")]
    ExplicitHashKeyIndexOutOfRange {
        /// The index found.
        index: u64,
        /// The number of entries in the table.
        table_len: usize,
    },
    /// The explicit hash key is not a decimal integer.
    #[error("explicit hash key is not a decimal integer")]
    ExplicitHashKeyNotDecimal,
    /// The explicit hash key is a decimal integer, but negative or not below 2^128.
    #[error("explicit hash key is outside 0..2^128")]
    ExplicitHashKeyOutOfRange,
}

/// The first invalid sub-record of an aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InvalidSubRecord {
    /// Its position in the aggregate (its sub-sequence number).
    pub sub_sequence_number: u64,
    /// What is wrong with it.
    pub defect: SubRecordDefect,
}

impl fmt::Display for InvalidSubRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sub-record {}: {}",
            self.sub_sequence_number, self.defect
        )
    }
}

/// The outcome of deaggregating one Kinesis record.
///
/// Always `sub_records == delivered + skipped_by_resume + dropped_out_of_range + dropped_invalid`.
/// A plain record counts as one sub-record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Report {
    /// Whether the record was an aggregate, and if not, why.
    pub framing: Framing,
    /// Sub-records in the aggregate (1 for a plain record, 0 for an aggregate with an empty
    /// record list).
    pub sub_records: usize,
    /// User records delivered.
    pub delivered: usize,
    /// Sub-records at or before the resume point, left out on purpose.
    pub skipped_by_resume: usize,
    /// Sub-records dropped because the aggregate holds a hash key outside the shard's range
    /// (the KCL's all-or-none rule: these are duplicates the KPL re-sent to the right shard).
    pub dropped_out_of_range: usize,
    /// Sub-records lost because of invalid sub-records: the invalid ones themselves and, under
    /// [`crate::InvalidSubRecordPolicy::KclCompatible`], everything the KCL discards with them.
    pub dropped_invalid: usize,
    /// The first invalid sub-record, if any.
    pub first_invalid: Option<InvalidSubRecord>,
}

impl Report {
    pub(crate) const fn new(framing: Framing, sub_records: usize) -> Self {
        Self {
            framing,
            sub_records,
            delivered: 0,
            skipped_by_resume: 0,
            dropped_out_of_range: 0,
            dropped_invalid: 0,
            first_invalid: None,
        }
    }

    /// Sub-records not delivered for a reason other than the resume point.
    #[must_use]
    pub const fn dropped(&self) -> usize {
        self.dropped_out_of_range + self.dropped_invalid
    }

    /// Whether data was lost because of invalid input (the case the KCL only logs).
    #[must_use]
    pub const fn lost_data(&self) -> bool {
        self.dropped_invalid > 0
    }
}

/// Running totals over many [`Report`]s, for metrics.
///
/// ```
/// use bytes::Bytes;
/// use shardwise_kpl_deagg::{Deaggregator, Tally};
///
/// let mut tally = Tally::default();
/// let out = Deaggregator::new().deaggregate("pk", Bytes::from_static(b"plain data"))?;
/// tally.add(&out.report);
/// assert_eq!((tally.kinesis_records, tally.plain_records, tally.delivered), (1, 1, 1));
/// # Ok::<(), shardwise_kpl_deagg::DeaggregateError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Tally {
    /// Kinesis records seen.
    pub kinesis_records: u64,
    /// Of those, records passed through as plain records.
    pub plain_records: u64,
    /// Of those, plain records that carried the KPL magic (likely corrupt aggregates).
    pub plain_with_magic: u64,
    /// Sub-records seen (plain records count one).
    pub sub_records: u64,
    /// User records delivered.
    pub delivered: u64,
    /// Sub-records skipped at or before a resume point.
    pub skipped_by_resume: u64,
    /// Sub-records dropped by the hash-key-range rule.
    pub dropped_out_of_range: u64,
    /// Sub-records lost to invalid sub-records.
    pub dropped_invalid: u64,
}

impl Tally {
    /// Adds one report to the totals.
    pub fn add(&mut self, report: &Report) {
        self.kinesis_records += 1;
        if let Framing::Plain(reason) = report.framing {
            self.plain_records += 1;
            if reason.had_magic() {
                self.plain_with_magic += 1;
            }
        }
        self.sub_records += report.sub_records as u64;
        self.delivered += report.delivered as u64;
        self.skipped_by_resume += report.skipped_by_resume as u64;
        self.dropped_out_of_range += report.dropped_out_of_range as u64;
        self.dropped_invalid += report.dropped_invalid as u64;
    }
}
