//! A lease as a Redis hash: the fields written, and reading a hash back as a [`Lease`].
//!
//! | field | holds |
//! | --- | --- |
//! | `key` | the lease key |
//! | `owner` | the worker holding it (absent when free); during a hand-off, the worker it goes to |
//! | `cp_owner` | during a hand-off, the worker still holding it (absent otherwise) |
//! | `counter` | the fencing counter, decimal (`HINCRBY` keeps it exact) |
//! | `cp`, `cp_sub` | checkpoint text (sequence number or sentinel) and sub-sequence number |
//! | `pend`, `pend_sub`, `pend_state` | the prepared checkpoint and its state bytes (absent when none) |
//! | `switches` | owner switches since the last checkpoint |
//! | `parents`, `children` | sorted shard ids, comma-separated (shard ids never hold a comma) |
//! | `hk_start`, `hk_end` | the hash-key range, decimal (absent when unknown) |

use std::collections::HashMap;

use shardwise_lease_core::{
    Checkpoint, CorruptLease, HashKeyRange, Lease, LeaseKey, PendingCheckpoint, ShardId, WorkerId,
    sorted_set,
};

/// The field/value pairs that store `lease` (its parent and child ids sorted).
pub(crate) fn encode(lease: &Lease) -> Vec<(&'static str, Vec<u8>)> {
    let text = |s: &str| s.as_bytes().to_vec();
    let mut fields = vec![
        ("key", text(lease.key.as_str())),
        ("counter", lease.counter.to_string().into_bytes()),
        ("cp", text(lease.checkpoint.stored_text())),
        (
            "cp_sub",
            lease
                .checkpoint
                .stored_sub_sequence()
                .to_string()
                .into_bytes(),
        ),
        (
            "switches",
            lease
                .owner_switches_since_checkpoint
                .to_string()
                .into_bytes(),
        ),
        ("parents", shard_list(&lease.parent_shard_ids).into_bytes()),
        ("children", shard_list(&lease.child_shard_ids).into_bytes()),
    ];
    if let Some(owner) = &lease.owner {
        fields.push(("owner", text(owner.as_str())));
    }
    if let Some(holder) = &lease.checkpoint_owner {
        fields.push(("cp_owner", text(holder.as_str())));
    }
    if let Some(pending) = &lease.pending_checkpoint {
        fields.push(("pend", text(pending.position.stored_text())));
        fields.push((
            "pend_sub",
            pending
                .position
                .stored_sub_sequence()
                .to_string()
                .into_bytes(),
        ));
        if let Some(state) = &pending.state {
            fields.push(("pend_state", state.clone()));
        }
    }
    if let Some(range) = &lease.hash_key_range {
        fields.push(("hk_start", range.start().to_string().into_bytes()));
        fields.push(("hk_end", range.end().to_string().into_bytes()));
    }
    fields
}

/// Shard ids sorted, de-duplicated and joined with commas.
pub(crate) fn shard_list(ids: &[ShardId]) -> String {
    let ids: Vec<String> = sorted_set(ids.iter().cloned())
        .into_iter()
        .map(|id| id.as_str().to_owned())
        .collect();
    ids.join(",")
}

/// Reads a hash given as a flat field/value list. `raw_key` names the row in a report.
pub(crate) fn decode(raw_key: &str, flat: Vec<Vec<u8>>) -> Result<Lease, CorruptLease> {
    let corrupt = |reason: String| CorruptLease {
        raw_key: raw_key.to_owned(),
        reason,
    };
    if let [marker, kind] = flat.as_slice()
        && marker.as_slice() == b"!type"
    {
        let kind = String::from_utf8_lossy(kind);
        return Err(corrupt(format!("the key holds a {kind}, not a hash")));
    }
    if !flat.len().is_multiple_of(2) {
        return Err(corrupt("odd number of hash elements".to_owned()));
    }
    let mut fields: HashMap<String, Vec<u8>> = HashMap::with_capacity(flat.len() / 2);
    let mut items = flat.into_iter();
    while let (Some(name), Some(value)) = (items.next(), items.next()) {
        fields.insert(String::from_utf8_lossy(&name).into_owned(), value);
    }
    let text = |name: &str| -> Result<Option<String>, CorruptLease> {
        fields
            .get(name)
            .map(|v| {
                String::from_utf8(v.clone())
                    .map_err(|_| corrupt(format!("field {name} is not UTF-8")))
            })
            .transpose()
    };
    let required = |name: &str| -> Result<String, CorruptLease> {
        text(name)?.ok_or_else(|| corrupt(format!("field {name} is missing")))
    };
    let number = |name: &str, value: &str| -> Result<u64, CorruptLease> {
        value
            .parse::<u64>()
            .map_err(|_| corrupt(format!("field {name} is not a number: {value:?}")))
    };
    // Sub-sequence numbers may be -1 (before a record).
    let sub_sequence = |name: &str, value: &str| -> Result<i128, CorruptLease> {
        value
            .parse::<i128>()
            .map_err(|_| corrupt(format!("field {name} is not a number: {value:?}")))
    };
    let key = LeaseKey::new(required("key")?).map_err(|e| corrupt(e.to_string()))?;
    let owner = text("owner")?
        .map(WorkerId::new)
        .transpose()
        .map_err(|e| corrupt(e.to_string()))?;
    let checkpoint_owner = text("cp_owner")?
        .map(WorkerId::new)
        .transpose()
        .map_err(|e| corrupt(format!("field cp_owner: {e}")))?;
    let counter = number("counter", &required("counter")?)?;
    let cp_sub = sub_sequence("cp_sub", &required("cp_sub")?)?;
    let checkpoint =
        Checkpoint::from_stored(&required("cp")?, cp_sub).map_err(|e| corrupt(e.to_string()))?;
    let pending_checkpoint = match text("pend")? {
        Some(pending) => {
            let sub = sub_sequence("pend_sub", &required("pend_sub")?)?;
            let position = Checkpoint::from_stored(&pending, sub)
                .map_err(|e| corrupt(format!("pending {e}")))?;
            Some(PendingCheckpoint::new(
                position,
                fields.get("pend_state").cloned(),
            ))
        }
        None if fields.contains_key("pend_state") => {
            return Err(corrupt("pend_state without pend".to_owned()));
        }
        None => None,
    };
    let owner_switches_since_checkpoint = number("switches", &required("switches")?)?;
    let shard_ids = |name: &str| -> Result<Vec<ShardId>, CorruptLease> {
        let list = required(name)?;
        let ids = list
            .split(',')
            .filter(|id| !id.is_empty())
            .map(ShardId::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(format!("field {name}: {e}")))?;
        Ok(sorted_set(ids))
    };
    let parent_shard_ids = shard_ids("parents")?;
    let child_shard_ids = shard_ids("children")?;
    let hash_key_range = match (text("hk_start")?, text("hk_end")?) {
        (Some(start), Some(end)) => {
            Some(HashKeyRange::from_decimal(&start, &end).map_err(|e| corrupt(e.to_string()))?)
        }
        (None, None) => None,
        _ => return Err(corrupt("only one of hk_start and hk_end is set".to_owned())),
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

#[cfg(test)]
mod tests {
    use super::*;
    use shardwise_lease_core::SequenceNumber;

    fn flat(fields: Vec<(&'static str, Vec<u8>)>) -> Vec<Vec<u8>> {
        fields
            .into_iter()
            .flat_map(|(n, v)| [n.as_bytes().to_vec(), v])
            .collect()
    }

    #[test]
    fn round_trip() -> Result<(), Box<dyn std::error::Error>> {
        let lease = Lease {
            owner: Some(WorkerId::new("w")?),
            counter: 7,
            pending_checkpoint: Some(PendingCheckpoint::new(
                Checkpoint::at(SequenceNumber::new("12")?, 3),
                Some(vec![0, 255]),
            )),
            parent_shard_ids: vec![ShardId::new("a")?, ShardId::new("b")?],
            hash_key_range: Some(HashKeyRange::FULL),
            ..Lease::new(
                LeaseKey::new("k, with comma")?,
                Checkpoint::at(SequenceNumber::new("10")?, 1),
            )
        };
        let back = decode("k", flat(encode(&lease)));
        assert_eq!(back, Ok(lease));
        Ok(())
    }

    #[test]
    fn corrupt_hashes_are_named() {
        let cases: Vec<Vec<(&'static str, Vec<u8>)>> = vec![
            vec![("key", b"k".to_vec())],
            vec![
                ("key", b"k".to_vec()),
                ("counter", b"-1".to_vec()),
                ("cp", b"LATEST".to_vec()),
                ("cp_sub", b"0".to_vec()),
                ("switches", b"0".to_vec()),
                ("parents", b"".to_vec()),
                ("children", b"".to_vec()),
            ],
        ];
        for case in cases {
            let err = decode("raw", flat(case));
            assert!(err.as_ref().is_err_and(|c| c.raw_key == "raw"), "{err:?}");
        }
    }
}
