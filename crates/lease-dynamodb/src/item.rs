//! The KCL 2.x lease item: attribute names and types, and conversion to and from [`Lease`].

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use shardwise_lease_core::{
    Checkpoint, CorruptLease, HashKeyRange, Lease, LeaseKey, PendingCheckpoint, ShardId, WorkerId,
    sorted_set,
};

/// Attribute names exactly as the Java KCL 2.x serializer writes them.
pub(crate) mod attr {
    pub(crate) const LEASE_KEY: &str = "leaseKey";
    pub(crate) const LEASE_OWNER: &str = "leaseOwner";
    pub(crate) const LEASE_COUNTER: &str = "leaseCounter";
    pub(crate) const CHECKPOINT: &str = "checkpoint";
    pub(crate) const CHECKPOINT_SUB: &str = "checkpointSubSequenceNumber";
    pub(crate) const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
    pub(crate) const PENDING: &str = "pendingCheckpoint";
    pub(crate) const PENDING_SUB: &str = "pendingCheckpointSubSequenceNumber";
    pub(crate) const PENDING_STATE: &str = "pendingCheckpointState";
    pub(crate) const PARENTS: &str = "parentShardId";
    pub(crate) const CHILDREN: &str = "childShardIds";
    pub(crate) const STARTING_HASH_KEY: &str = "startingHashKey";
    pub(crate) const ENDING_HASH_KEY: &str = "endingHashKey";
    /// KCL multi-stream leases: the stream identifier (`account:name:epoch`) of the key.
    pub(crate) const STREAM_NAME: &str = "streamName";
    /// KCL multi-stream leases: the shard id of the key.
    pub(crate) const SHARD_ID: &str = "shardId";
    /// KCL 3.x: the worker still holding a lease whose hand-off to `leaseOwner` is pending.
    pub(crate) const CHECKPOINT_OWNER: &str = "checkpointOwner";
    /// KCL 3.5: the kind of row; rows of another kind than `LEASE` are not leases.
    pub(crate) const ENTITY_TYPE: &str = "entityType";
}

/// A row of the lease table.
#[allow(clippy::large_enum_variant)] // built and consumed at once, never stored
pub(crate) enum Row {
    Lease(Lease),
    /// A KCL 3.5 row of another kind (leader, migration, worker metrics): never touched.
    NotALease,
}

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn ss(ids: &[ShardId]) -> AttributeValue {
    AttributeValue::Ss(ids.iter().map(|id| id.as_str().to_owned()).collect())
}

/// The raw key of an item, for error messages.
pub(crate) fn raw_key(item: &Item) -> String {
    match item.get(attr::LEASE_KEY) {
        Some(AttributeValue::S(key)) => key.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// Reads an item. Unknown attributes (KCL 3.x `throughputKBps`, …) are
/// ignored; so is a `pendingCheckpointState` that is not binary (a KCL serializer quirk writes
/// a number there).
pub(crate) fn parse(item: &Item) -> Result<Row, CorruptLease> {
    let corrupt = |reason: String| CorruptLease {
        raw_key: raw_key(item),
        reason,
    };
    if let Some(kind) = item.get(attr::ENTITY_TYPE) {
        match kind {
            AttributeValue::S(kind) if kind == "LEASE" => {}
            _ => return Ok(Row::NotALease),
        }
    }
    let text = |name: &str| -> Result<Option<&String>, CorruptLease> {
        match item.get(name) {
            None => Ok(None),
            Some(AttributeValue::S(value)) => Ok(Some(value)),
            Some(_) => Err(corrupt(format!("{name} is not a string"))),
        }
    };
    let number = |name: &str| -> Result<Option<u64>, CorruptLease> {
        match item.get(name) {
            None => Ok(None),
            Some(AttributeValue::N(value)) => value
                .parse::<u64>()
                .map(Some)
                .map_err(|_| corrupt(format!("{name} {value:?} is not a non-negative integer"))),
            Some(_) => Err(corrupt(format!("{name} is not a number"))),
        }
    };
    // Sub-sequence numbers may be -1 (before a record).
    let sub_sequence = |name: &str| -> Result<i128, CorruptLease> {
        match item.get(name) {
            None => Ok(0),
            Some(AttributeValue::N(value)) => value
                .parse::<i128>()
                .map_err(|_| corrupt(format!("{name} {value:?} is not an integer"))),
            Some(_) => Err(corrupt(format!("{name} is not a number"))),
        }
    };
    let shard_set = |name: &str| -> Result<Vec<ShardId>, CorruptLease> {
        match item.get(name) {
            None => Ok(Vec::new()),
            Some(AttributeValue::Ss(ids)) => {
                let parsed: Result<Vec<ShardId>, _> = ids.iter().map(ShardId::new).collect();
                parsed
                    .map(sorted_set)
                    .map_err(|e| corrupt(format!("{name}: {e}")))
            }
            Some(_) => Err(corrupt(format!("{name} is not a string set"))),
        }
    };

    let key =
        text(attr::LEASE_KEY)?.ok_or_else(|| corrupt(format!("{} is missing", attr::LEASE_KEY)))?;
    let key = LeaseKey::new(key.as_str()).map_err(|e| corrupt(e.to_string()))?;
    // A multi-stream row names its stream and shard twice, as the KCL writes it: both must
    // agree with the key, or the KCL and shardwise would act on different shards.
    let (stream_name, shard_id) = (text(attr::STREAM_NAME)?, text(attr::SHARD_ID)?);
    if stream_name.is_some() || shard_id.is_some() {
        let agrees = key.stream_shard().is_some_and(|(stream, shard)| {
            stream_name.is_some_and(|s| *s == stream.to_string())
                && shard_id.is_some_and(|s| s.as_str() == shard.as_str())
        });
        if !agrees {
            return Err(corrupt(format!(
                "{} {stream_name:?} and {} {shard_id:?} do not match the lease key",
                attr::STREAM_NAME,
                attr::SHARD_ID
            )));
        }
    }
    let owner = text(attr::LEASE_OWNER)?
        .map(|o| WorkerId::new(o.as_str()))
        .transpose()
        .map_err(|e| corrupt(e.to_string()))?;
    let checkpoint_owner = text(attr::CHECKPOINT_OWNER)?
        .map(|o| WorkerId::new(o.as_str()))
        .transpose()
        .map_err(|e| corrupt(format!("{}: {e}", attr::CHECKPOINT_OWNER)))?;
    let counter = number(attr::LEASE_COUNTER)?
        .ok_or_else(|| corrupt(format!("{} is missing", attr::LEASE_COUNTER)))?;
    let checkpoint_text = text(attr::CHECKPOINT)?
        .ok_or_else(|| corrupt(format!("{} is missing", attr::CHECKPOINT)))?;
    let checkpoint = Checkpoint::from_stored(checkpoint_text, sub_sequence(attr::CHECKPOINT_SUB)?)
        .map_err(|e| corrupt(e.to_string()))?;
    let pending_checkpoint = match text(attr::PENDING)? {
        None => None,
        Some(pending) => {
            let position = Checkpoint::from_stored(pending, sub_sequence(attr::PENDING_SUB)?)
                .map_err(|e| corrupt(format!("pending {e}")))?;
            let state = match item.get(attr::PENDING_STATE) {
                Some(AttributeValue::B(bytes)) => Some(bytes.as_ref().to_vec()),
                _ => None,
            };
            Some(PendingCheckpoint::new(position, state))
        }
    };
    let hash_key_range = match (text(attr::STARTING_HASH_KEY)?, text(attr::ENDING_HASH_KEY)?) {
        (Some(start), Some(end)) => {
            Some(HashKeyRange::from_decimal(start, end).map_err(|e| corrupt(e.to_string()))?)
        }
        (None, None) => None,
        _ => {
            return Err(corrupt(
                "only one of startingHashKey and endingHashKey is set".into(),
            ));
        }
    };
    Ok(Row::Lease(Lease {
        key,
        owner,
        counter,
        checkpoint_owner,
        checkpoint,
        pending_checkpoint,
        owner_switches_since_checkpoint: number(attr::OWNER_SWITCHES)?.unwrap_or(0),
        parent_shard_ids: shard_set(attr::PARENTS)?,
        child_shard_ids: shard_set(attr::CHILDREN)?,
        hash_key_range,
    }))
}

/// Reads an item that must be a lease (the result of a write to a lease row).
pub(crate) fn parse_lease(item: &Item) -> Result<Lease, shardwise_lease_core::StoreError> {
    match parse(item) {
        Ok(Row::Lease(lease)) => Ok(lease),
        Ok(Row::NotALease) => Err(shardwise_lease_core::StoreError::corrupt(
            raw_key(item),
            "the row is not a lease (entityType)",
        )),
        Err(corrupt) => Err(shardwise_lease_core::StoreError::corrupt(
            corrupt.raw_key,
            corrupt.reason,
        )),
    }
}

/// The full item for a new lease, with the KCL's attribute types. Absent values are left out
/// (DynamoDB has no empty sets).
pub(crate) fn item(lease: &Lease) -> Item {
    let mut item = Item::new();
    item.insert(attr::LEASE_KEY.into(), s(lease.key.as_str()));
    if let Some((stream, shard)) = lease.key.stream_shard() {
        item.insert(attr::STREAM_NAME.into(), s(stream.to_string()));
        item.insert(attr::SHARD_ID.into(), s(shard.as_str()));
    }
    if let Some(owner) = &lease.owner {
        item.insert(attr::LEASE_OWNER.into(), s(owner.as_str()));
    }
    item.insert(attr::LEASE_COUNTER.into(), n(lease.counter));
    if let Some(holder) = &lease.checkpoint_owner {
        item.insert(attr::CHECKPOINT_OWNER.into(), s(holder.as_str()));
    }
    item.insert(attr::CHECKPOINT.into(), s(lease.checkpoint.stored_text()));
    item.insert(
        attr::CHECKPOINT_SUB.into(),
        n(lease.checkpoint.stored_sub_sequence()),
    );
    item.insert(
        attr::OWNER_SWITCHES.into(),
        n(lease.owner_switches_since_checkpoint),
    );
    if let Some(pending) = &lease.pending_checkpoint {
        item.extend(pending_attributes(pending));
    }
    if !lease.parent_shard_ids.is_empty() {
        item.insert(attr::PARENTS.into(), ss(&lease.parent_shard_ids));
    }
    if !lease.child_shard_ids.is_empty() {
        item.insert(attr::CHILDREN.into(), ss(&lease.child_shard_ids));
    }
    if let Some(range) = &lease.hash_key_range {
        item.insert(attr::STARTING_HASH_KEY.into(), s(range.start().to_string()));
        item.insert(attr::ENDING_HASH_KEY.into(), s(range.end().to_string()));
    }
    item
}

/// The attributes of a pending checkpoint (the state only when there is one).
pub(crate) fn pending_attributes(pending: &PendingCheckpoint) -> Vec<(String, AttributeValue)> {
    let mut attributes = vec![
        (attr::PENDING.to_owned(), s(pending.position.stored_text())),
        (
            attr::PENDING_SUB.to_owned(),
            n(pending.position.stored_sub_sequence()),
        ),
    ];
    if let Some(state) = &pending.state {
        attributes.push((
            attr::PENDING_STATE.to_owned(),
            AttributeValue::B(Blob::new(state.clone())),
        ));
    }
    attributes
}
