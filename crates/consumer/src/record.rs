//! What a processor receives: user records (KPL-deaggregated) in batches.

use std::ops::Deref;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use shardwise_lease_core::{ExtendedSequenceNumber, SequenceNumber, ShardId};

/// One user record: a plain Kinesis record, or one sub-record of a KPL aggregate.
///
/// Cloning copies no data and no keys: the sub-records of an aggregate share its partition and
/// explicit hash keys, however many use them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The data (a slice of the Kinesis record's buffer; no copy was made).
    pub data: Bytes,
    /// The partition key (bytes that are not UTF-8 replaced with U+FFFD, as the KCL does).
    pub partition_key: Arc<str>,
    /// The explicit hash key, when the producer set one (KPL aggregates only).
    pub explicit_hash_key: Option<Arc<str>>,
    /// The Kinesis record's sequence number.
    pub sequence_number: SequenceNumber,
    /// The position inside a KPL aggregate (0 for a plain record).
    pub sub_sequence_number: u64,
    /// Whether the record came out of a KPL aggregate.
    pub aggregated: bool,
    /// When Kinesis accepted the Kinesis record.
    pub approximate_arrival: Option<SystemTime>,
}

impl UserRecord {
    /// The record's position, for checkpointing.
    pub fn position(&self) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::new(self.sequence_number.clone(), self.sub_sequence_number)
    }
}

/// The user records of a batch, in order: a shared list, so that handing a batch to the
/// processor again (a retry) copies nothing. Reads as a slice (`len`, `iter`, `last`, indexing,
/// `for record in &batch.records`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Records(Arc<[UserRecord]>);

impl Records {
    /// The records as a slice.
    pub fn as_slice(&self) -> &[UserRecord] {
        &self.0
    }

    /// The records as a vector of their own (a copy of the list; the data is shared).
    pub fn to_vec(&self) -> Vec<UserRecord> {
        self.0.to_vec()
    }
}

impl Deref for Records {
    type Target = [UserRecord];

    fn deref(&self) -> &[UserRecord] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a Records {
    type Item = &'a UserRecord;
    type IntoIter = std::slice::Iter<'a, UserRecord>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl From<Vec<UserRecord>> for Records {
    fn from(records: Vec<UserRecord>) -> Self {
        Self(records.into())
    }
}

/// The records handed to [`ShardProcessor::process_records`](crate::ShardProcessor::process_records).
/// Cloning it copies no record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    /// The stream the records come from, in a multi-stream application; `None` when the
    /// application reads one stream.
    pub stream: Option<shardwise_lease_core::StreamIdentifier>,
    /// The shard the records come from.
    pub shard_id: ShardId,
    /// The user records, in order; never empty. A processor that falls behind gets what was
    /// fetched while it worked in one batch (the responses joined, up to
    /// `PollingConfig::max_records` Kinesis records, or 10,000 with fan-out), so that its time
    /// per batch (a bulk write, a checkpoint) is spent once for all of them.
    pub records: Records,
    /// How far behind the newest record of the shard this batch is, in milliseconds.
    pub millis_behind_latest: Option<i64>,
}
