//! What a processor receives: user records (KPL-deaggregated) in batches.

use std::time::SystemTime;

use bytes::Bytes;
use shardwise_lease_core::{ExtendedSequenceNumber, SequenceNumber, ShardId};

/// One user record: a plain Kinesis record, or one sub-record of a KPL aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The data (a slice of the Kinesis record's buffer; no copy was made).
    pub data: Bytes,
    /// The partition key.
    pub partition_key: String,
    /// The explicit hash key, when the producer set one (KPL aggregates only).
    pub explicit_hash_key: Option<String>,
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

/// The records handed to [`ShardProcessor::process_records`](crate::ShardProcessor::process_records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    /// The shard the records come from.
    pub shard_id: ShardId,
    /// The user records, in order; never empty.
    pub records: Vec<UserRecord>,
    /// How far behind the newest record of the shard this batch is, in milliseconds.
    pub millis_behind_latest: Option<i64>,
}
