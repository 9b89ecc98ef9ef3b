//! What a reader hands to the processor: the records of one `GetRecords` response or one
//! fan-out event.

use crate::api::{ChildShard, Record};

/// Records read from a shard in one `GetRecords` call or one `SubscribeToShard` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The records, in sequence order (possibly none: a caught-up shard).
    pub records: Vec<Record>,
    /// How far behind the shard's newest record this batch is.
    pub millis_behind_latest: Option<i64>,
    /// Set on the last batch of a closed shard: the shards it was split or merged into.
    pub child_shards: Option<Vec<ChildShard>>,
}

impl Batch {
    /// Whether this is the last batch of a closed shard.
    pub fn is_shard_end(&self) -> bool {
        self.child_shards.is_some()
    }

    /// The sequence number to resume after (the last record's), if the batch has records.
    pub fn resume_after(&self) -> Option<&str> {
        self.records.last().map(|r| r.sequence_number.as_str())
    }

    /// The largest record's bytes (data and partition key), if the batch has records.
    pub(crate) fn largest_record(&self) -> Option<usize> {
        self.records
            .iter()
            .map(|r| r.data.len() + r.partition_key.len())
            .max()
    }

    /// The bytes the batch holds (data and partition keys), as counted against the prefetch
    /// bound.
    pub(crate) fn bytes(&self) -> usize {
        self.records
            .iter()
            .map(|r| r.data.len() + r.partition_key.len())
            .sum()
    }
}
