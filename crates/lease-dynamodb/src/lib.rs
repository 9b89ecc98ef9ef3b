//! Kinesis shard leases in DynamoDB, on the Java KCL 2.x lease table layout.
//!
//! [`DynamoDbLeaseStore`] implements [`LeaseStore`](shardwise_lease_core::LeaseStore) on a table
//! whose rows the Java KCL 2.x reads and writes too: partition key `leaseKey` and the attributes
//! `leaseOwner`, `leaseCounter`, `checkpoint`, `checkpointSubSequenceNumber`,
//! `ownerSwitchesSinceCheckpoint`, `pendingCheckpoint`, `pendingCheckpointSubSequenceNumber`,
//! `pendingCheckpointState`, `parentShardId` (string set), `childShardIds`, `startingHashKey`
//! and `endingHashKey`, with the KCL's types. Rows with attributes added by KCL 3.x read without
//! error; KCL 3.5 rows that are not leases are ignored.
//!
//! Build it from an [`aws_types::SdkConfig`] or a ready [`aws_sdk_dynamodb::Client`]; the library
//! never loads AWS configuration itself.

mod error;
mod item;
mod store;
mod table;

/// A write of a DynamoDB transaction: what [`DynamoDbLeaseStore::transact_checkpoint`] takes.
pub use aws_sdk_dynamodb::types::TransactWriteItem;
pub use store::{
    DynamoDbLeaseStore, MAX_TRANSACTION_ITEMS, OPERATION_ATTEMPT_TIMEOUT, OPERATION_TIMEOUT,
    Transacted,
};
pub use table::{Billing, TableName, TableOptions};
