//! Lease rows: the columns, the values written, and reading a row back as a [`Lease`].

use shardwise_lease_core::{
    Checkpoint, CorruptLease, HashKeyRange, Lease, LeaseKey, PendingCheckpoint, ShardId,
    StoreError, StoreErrorKind, WorkerId, sorted_set,
};
use sqlx::Row;
use sqlx::postgres::PgRow;

/// The columns every statement returning leases selects, in the order [`decode`] reads them.
/// Hash keys are `NUMERIC(39,0)` and read as text.
pub(crate) const COLUMNS: &str = "lease_key, owner, counter, checkpoint_owner, checkpoint, checkpoint_sub_sequence, \
     pending_checkpoint, pending_checkpoint_sub_sequence, pending_checkpoint_state, \
     owner_switches_since_checkpoint, parent_shard_ids, child_shard_ids, \
     starting_hash_key::text AS starting_hash_key, ending_hash_key::text AS ending_hash_key";

/// Reads a row selected with [`COLUMNS`]; a row that is not a valid lease is reported with its
/// raw key and the first problem found.
pub(crate) fn decode(row: &PgRow) -> Result<Lease, CorruptLease> {
    let raw_key: String = row.try_get("lease_key").unwrap_or_default();
    let corrupt = |reason: String| CorruptLease {
        raw_key: raw_key.clone(),
        reason,
    };
    macro_rules! column {
        ($name:literal) => {
            row.try_get($name)
                .map_err(|e| corrupt(format!("column {}: {e}", $name)))?
        };
    }
    let key = LeaseKey::new(raw_key.as_str()).map_err(|e| corrupt(e.to_string()))?;
    let owner: Option<String> = column!("owner");
    let owner = owner
        .map(WorkerId::new)
        .transpose()
        .map_err(|e| corrupt(e.to_string()))?;
    let checkpoint_owner: Option<String> = column!("checkpoint_owner");
    let checkpoint_owner = checkpoint_owner
        .map(WorkerId::new)
        .transpose()
        .map_err(|e| corrupt(format!("checkpoint_owner: {e}")))?;
    let counter: i64 = column!("counter");
    let counter = unsigned("counter", counter).map_err(&corrupt)?;
    let checkpoint: String = column!("checkpoint");
    let checkpoint_sub: i64 = column!("checkpoint_sub_sequence");
    let checkpoint = Checkpoint::from_stored(&checkpoint, i128::from(checkpoint_sub))
        .map_err(|e| corrupt(e.to_string()))?;
    let pending: Option<String> = column!("pending_checkpoint");
    let pending_sub: Option<i64> = column!("pending_checkpoint_sub_sequence");
    let pending_state: Option<Vec<u8>> = column!("pending_checkpoint_state");
    let pending_checkpoint = match (pending, pending_state) {
        (Some(text), state) => {
            let sub = i128::from(pending_sub.unwrap_or_default());
            let position =
                Checkpoint::from_stored(&text, sub).map_err(|e| corrupt(format!("pending {e}")))?;
            Some(PendingCheckpoint::new(position, state))
        }
        (None, Some(_)) => {
            return Err(corrupt(
                "pending_checkpoint_state without a pending_checkpoint".to_owned(),
            ));
        }
        (None, None) => None,
    };
    let switches: i64 = column!("owner_switches_since_checkpoint");
    let owner_switches_since_checkpoint =
        unsigned("owner_switches_since_checkpoint", switches).map_err(&corrupt)?;
    let parents: Vec<String> = column!("parent_shard_ids");
    let children: Vec<String> = column!("child_shard_ids");
    let shard_ids = |ids: Vec<String>| -> Result<Vec<ShardId>, CorruptLease> {
        let ids = ids
            .into_iter()
            .map(ShardId::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(sorted_set(ids))
    };
    let parent_shard_ids = shard_ids(parents)?;
    let child_shard_ids = shard_ids(children)?;
    let start: Option<String> = column!("starting_hash_key");
    let end: Option<String> = column!("ending_hash_key");
    let hash_key_range = match (start, end) {
        (Some(start), Some(end)) => {
            Some(HashKeyRange::from_decimal(&start, &end).map_err(|e| corrupt(e.to_string()))?)
        }
        (None, None) => None,
        _ => {
            return Err(corrupt(
                "only one of starting_hash_key and ending_hash_key is set".to_owned(),
            ));
        }
    };
    Ok(Lease {
        key,
        owner,
        counter,
        checkpoint_owner,
        checkpoint,
        pending_checkpoint,
        owner_switches_since_checkpoint,
        parent_shard_ids,
        child_shard_ids,
        hash_key_range,
    })
}

/// [`decode`] for a single-row read, as an error of kind `Corrupt`.
pub(crate) fn decode_one(row: &PgRow) -> Result<Lease, StoreError> {
    decode(row).map_err(|c| StoreError::corrupt(c.raw_key, c.reason))
}

fn unsigned(column: &str, value: i64) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("column {column}: negative value {value}"))
}

/// A `u64` as the `BIGINT` it is stored in; larger values are refused as invalid requests.
pub(crate) fn to_bigint(what: &str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::new(
            StoreErrorKind::InvalidArgument,
            format!(
                "{what} {value} is above the largest storable value {}",
                i64::MAX
            ),
        )
    })
}

/// A checkpoint's stored sub-sequence number (-1 before a record) as the `BIGINT` it is stored
/// in; larger values are refused as invalid requests.
pub(crate) fn sub_sequence(checkpoint: &Checkpoint) -> Result<i64, StoreError> {
    let value = checkpoint.stored_sub_sequence();
    i64::try_from(value).map_err(|_| {
        StoreError::new(
            StoreErrorKind::InvalidArgument,
            format!(
                "sub-sequence number {value} is above the largest storable value {}",
                i64::MAX
            ),
        )
    })
}

/// How far a checkpoint has come, in the form the progress condition compares in SQL:
/// (0 start sentinel | 1 position | 2 shard end, sequence number as decimal text, sub-sequence,
/// -1 before a record).
pub(crate) fn progress(checkpoint: &Checkpoint) -> Result<(i32, Option<String>, i64), StoreError> {
    Ok(match checkpoint {
        Checkpoint::TrimHorizon | Checkpoint::Latest | Checkpoint::AtTimestamp => (0, None, 0),
        Checkpoint::Before(_) | Checkpoint::At(_) => (
            1,
            Some(checkpoint.stored_text().to_owned()),
            sub_sequence(checkpoint)?,
        ),
        Checkpoint::ShardEnd => (2, None, 0),
    })
}
