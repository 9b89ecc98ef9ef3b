//! Values of the `operation` label on lease-store metrics, one per `LeaseStore` call, named in
//! the KCL's style (`RenewLease`, `ListLeases`, ...).

/// Creating the lease table or schema when missing.
pub const CREATE_TABLE: &str = "CreateTable";
/// Listing every lease.
pub const LIST_LEASES: &str = "ListLeases";
/// Reading one lease.
pub const GET_LEASE: &str = "GetLease";
/// Creating a lease if absent.
pub const CREATE_LEASE: &str = "CreateLease";
/// Taking a lease.
pub const TAKE_LEASE: &str = "TakeLease";
/// Renewing one lease.
pub const RENEW_LEASE: &str = "RenewLease";
/// Renewing many leases in one call.
pub const RENEW_LEASES: &str = "RenewLeases";
/// Releasing (evicting) a lease.
pub const EVICT_LEASE: &str = "EvictLease";
/// Writing a checkpoint.
pub const UPDATE_CHECKPOINT: &str = "UpdateCheckpoint";
/// Marking a shard ended with its children.
pub const MARK_SHARD_ENDED: &str = "MarkShardEnded";
/// Deleting a lease.
pub const DELETE_LEASE: &str = "DeleteLease";

/// Every operation name above.
pub const ALL: [&str; 11] = [
    CREATE_TABLE,
    LIST_LEASES,
    GET_LEASE,
    CREATE_LEASE,
    TAKE_LEASE,
    RENEW_LEASE,
    RENEW_LEASES,
    EVICT_LEASE,
    UPDATE_CHECKPOINT,
    MARK_SHARD_ENDED,
    DELETE_LEASE,
];
