//! Shard leases for Kinesis consumers: the lease model, the [`LeaseStore`] contract, lease expiry
//! by local observation, the balancing decision, checkpoint validation, and an in-memory store.
//!
//! A fleet of workers shares a stream's shards through one lease per shard in a shared store.
//! Every write to a lease is a compare-and-set on its counter, so a stale writer always loses,
//! and learns it as a value ([`Race::Lost`]), not as an error. Workers judge a lease expired when
//! they have seen its counter stay unchanged for the lease duration on their own monotonic clock
//! ([`ExpiryTracker`]); no wall clock is stored. What to take or steal is a pure function
//! ([`plan_takes`]), and so is whether a checkpoint is allowed ([`validate_checkpoint`]).
//!
//! This crate knows nothing of AWS or databases. The backends live in `shardwise-lease-dynamodb`,
//! `shardwise-lease-postgres` and `shardwise-lease-redis`; every backend passes the same
//! conformance suite, the `testkit` module (feature `testkit`).

mod balance;
mod checkpoint;
mod error;
mod expiry;
mod hash_range;
mod ids;
mod layer;
mod lease;
mod memory;
mod redact;
mod sequence;
mod store;
mod validate;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use balance::{BalanceConfig, BalanceInput, Candidate, TakePlan, plan_takes};
pub use checkpoint::{Checkpoint, CheckpointUpdate, PendingCheckpoint};
pub use error::{InvalidValue, StoreError, StoreErrorKind};
pub use expiry::ExpiryTracker;
pub use hash_range::HashKeyRange;
pub use ids::{LeaseKey, MAX_LEASE_KEY_BYTES, ShardId, WorkerId};
pub use layer::{Call, Layer, Layered, Operation};
pub use lease::{Lease, sorted_set};
pub use memory::MemoryLeaseStore;
pub use redact::{REDACTED, redact_url};
pub use sequence::{ExtendedSequenceNumber, MAX_SEQUENCE_DIGITS, SequenceNumber};
pub use store::{CorruptLease, LeaseListing, LeaseStore, LeaseStoreExt, Race, validate_handoff};
pub use validate::{CheckpointBounds, CheckpointError, validate_checkpoint};
