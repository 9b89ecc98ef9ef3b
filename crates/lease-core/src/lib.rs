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
//! # Liveness: per lease, or per worker
//!
//! Workers that renew per lease keep each lease alive by moving its counter. Workers that
//! heartbeat keep one entry of the membership record moving instead
//! ([`LeaseStore::heartbeat`], [`Membership`]), and a lease whose holder is a member is judged by
//! that heartbeat ([`MemberTracker`], [`ExpiryTracker::observe_members`]). The record also holds
//! the table version ([`LeaseStore::bump_version`]): moved by every write that other workers must
//! act on, it tells a worker when its last listing is out of date, so a quiet table is not listed
//! at all. The consumer's `Liveness` setting chooses; both kinds of worker can share a table.
//!
//! # Hand-off: moving a lease between live workers without processing anything twice
//!
//! A worker below its fair share does not take a live worker's lease (that replays whatever the
//! holder processed since its last checkpoint); it asks for it, through the lease row, with no
//! leader. The protocol is the Java KCL 3.x's (`checkpointOwner`), made leaderless:
//!
//! 1. **Request.** The worker that wants the lease writes [`LeaseStore::request_handoff`]:
//!    owner = itself, checkpoint owner = the holder, conditional on the holder owning the lease
//!    at the counter seen and no hand-off pending; the counter goes up by one. Two workers asking
//!    at once: one wins. [`plan_takes`] counts a lease in hand-off for its new owner and never
//!    asks for it again.
//! 2. **The holder learns.** Its next write (renewal or checkpoint) loses its race, because the
//!    counter moved. It reads the lease back: held by it as checkpoint owner, one counter step
//!    on, means a hand-off request (anything else means the lease is lost). It adopts the counter
//!    and keeps renewing; its writes are conditional on holding the lease ([`Lease::holder`]).
//!    A request written as the Java KCL writes it (counter unchanged) is seen in the holder's
//!    next listing instead.
//! 3. **The holder finishes.** Its processor gets `shutdown_requested` with a checkpointer, and
//!    then nothing more for that shard; the call is bounded by the hand-off timeout (30 s, the
//!    KCL's `gracefulLeaseHandoffTimeoutMillis`).
//! 4. **Completion.** The holder gives the lease up with [`LeaseStore::evict`], which during a
//!    hand-off removes the checkpoint owner and leaves the new owner: one conditional write,
//!    counter + 1, the same transfer the KCL makes. A holder shutting down gracefully does the
//!    same, so a shutdown that receives a request completes it.
//! 5. **The new owner starts.** It polls the lease it asked for and takes it (a conditional
//!    take at the counter it read) once no checkpoint owner is left, from the checkpoint the
//!    holder stored last. Nothing the holder processed is processed again.
//!
//! Failure cases:
//! - *The holder dies or freezes mid-hand-off*: its counter stops; the new owner (or anyone)
//!   judges the lease expired after a lease duration, the usual rule, and takes it, which ends
//!   the hand-off. What the holder processed after its last checkpoint is processed again, as
//!   after any death.
//! - *The holder's processor never returns*: the holder hands the lease over at the hand-off
//!   timeout anyway. If it does not (an older KCL worker that ignores `checkpointOwner`, say),
//!   the new owner takes the lease when the hand-off is older than the timeout plus a lease
//!   duration.
//! - *A request racing a renewal, a checkpoint or a release*: one conditional write wins. A
//!   renewal or checkpoint that loses reads the lease back and carries on as in step 2 (a
//!   checkpoint is written again at the new counter). A release that wins frees the lease and
//!   the request loses (the asker takes the free lease in its next round); a release that loses
//!   reads back, finds the request, and completes the hand-off instead.
//! - *The store fails between the steps*: every step is one conditional write, so the lease is
//!   always in one of three states (held, handing off, handed over), whichever write failed;
//!   a write in doubt is settled by reading the lease back before the next one.
//! - *The new owner dies while waiting*: the hand-off completes to a dead owner, whose lease
//!   expires and is taken as any other.
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
mod membership;
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
pub use ids::{LeaseKey, MAX_LEASE_KEY_BYTES, ShardId, StreamIdentifier, WorkerId};
pub use layer::{Call, Layer, Layered, Operation};
pub use lease::{Lease, sorted_set};
pub use membership::{MemberTracker, Membership};
pub use memory::MemoryLeaseStore;
pub use redact::{REDACTED, redact_url};
pub use sequence::{ExtendedSequenceNumber, MAX_SEQUENCE_DIGITS, SequenceNumber};
pub use store::{CorruptLease, LeaseListing, LeaseStore, LeaseStoreExt, Race, validate_handoff};
pub use validate::{CheckpointBounds, CheckpointError, validate_checkpoint};
