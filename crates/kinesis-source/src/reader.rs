//! One type for a shard reader of either kind, so a pipeline holds one field whichever the
//! application chose.

use crate::batch::Batch;
use crate::error::KinesisError;
use crate::fanout::FanOutReader;
use crate::polling::PollingReader;
use crate::stats::ReaderStats;

/// A shard reader: polling or enhanced fan-out, with the same outward behaviour.
#[derive(Debug)]
pub enum ShardReader {
    /// `GetRecords` polling.
    Polling(PollingReader),
    /// A `SubscribeToShard` subscription.
    FanOut(FanOutReader),
}

impl ShardReader {
    /// The next batch; `None` after the last batch of a closed shard, or after an error that
    /// retrying cannot fix (which is returned once, before the `None`).
    pub async fn next_batch(&mut self) -> Option<Result<Batch, KinesisError>> {
        match self {
            Self::Polling(reader) => reader.next_batch().await,
            Self::FanOut(reader) => reader.next_batch().await,
        }
    }

    /// Records and bytes read but not yet handed out.
    pub fn buffered(&self) -> (usize, usize) {
        match self {
            Self::Polling(reader) => reader.buffered(),
            Self::FanOut(reader) => reader.buffered(),
        }
    }

    /// The reader's call counters (`GetRecords` or `SubscribeToShard`).
    pub fn stats(&self) -> &ReaderStats {
        match self {
            Self::Polling(reader) => reader.stats(),
            Self::FanOut(reader) => reader.stats(),
        }
    }
}

impl From<PollingReader> for ShardReader {
    fn from(reader: PollingReader) -> Self {
        Self::Polling(reader)
    }
}

impl From<FanOutReader> for ShardReader {
    fn from(reader: FanOutReader) -> Self {
        Self::FanOut(reader)
    }
}
