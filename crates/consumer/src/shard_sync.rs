//! Shard sync: a lease for every shard that needs one, and cleanup of finished leases.

use std::collections::{HashMap, HashSet};

use shardwise_kinesis_source::{ChildShard, KinesisApi, KinesisError, Shard, list_all_shards};
use shardwise_lease_core::{
    Checkpoint, HashKeyRange, Lease, LeaseKey, LeaseStore, Race, ShardId, StoreError,
};
use tracing::{debug, info, warn};

use crate::config::InitialPosition;
use crate::streams::Scope;

/// A sync failed: listing shards or writing leases.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    #[error("listing shards: {0}")]
    Kinesis(#[from] KinesisError),
    #[error("lease store: {0}")]
    Store(#[from] StoreError),
}

fn start_checkpoint(position: InitialPosition) -> Checkpoint {
    match position {
        InitialPosition::TrimHorizon => Checkpoint::TrimHorizon,
        InitialPosition::Latest => Checkpoint::Latest,
        InitialPosition::AtTimestamp(_) => Checkpoint::AtTimestamp,
    }
}

/// Where a shard whose parent has a lease starts: right after its parent's data, which is its
/// trim horizon; with `AT_TIMESTAMP` at the timestamp (the KCL's rule), which is the same place
/// unless the parent closed before the timestamp, when the child's older records are skipped too.
fn descendant_checkpoint(initial: InitialPosition) -> Checkpoint {
    match initial {
        InitialPosition::AtTimestamp(_) => Checkpoint::AtTimestamp,
        InitialPosition::TrimHorizon | InitialPosition::Latest => Checkpoint::TrimHorizon,
    }
}

fn range(r: shardwise_kinesis_source::HashRange) -> Option<HashKeyRange> {
    HashKeyRange::new(r.start, r.end).ok()
}

fn ids(names: impl IntoIterator<Item = String>) -> Vec<ShardId> {
    names
        .into_iter()
        .filter_map(|n| ShardId::new(n).ok())
        .collect()
}

/// Which shards get a lease, and where each starts.
///
/// - A shard whose parent has (or gets, in this same sync) a lease continues its parent's data
///   after the parent ends: at its trim horizon, or at the timestamp with `AT_TIMESTAMP`.
/// - Any other shard (a root: no parent, or its parents aged out) starts at the initial
///   position. With `LATEST`, closed roots get no lease: their data is older than the position,
///   and their children become roots of their own. With `AT_TIMESTAMP`, closed roots get a lease
///   too (as in the KCL: the shard may have closed after the timestamp, with records to read);
///   one that closed before it is read once and finished.
pub(crate) fn plan_leases(
    shards: &[Shard],
    existing: &HashSet<LeaseKey>,
    initial: InitialPosition,
    key_of: impl Fn(&ShardId) -> LeaseKey,
) -> Vec<Lease> {
    let by_id: HashMap<&str, &Shard> = shards.iter().map(|s| (s.shard_id.as_str(), s)).collect();
    // The shards that have (or get, in this sync) a lease.
    let mut leased: HashSet<String> = shards
        .iter()
        .filter(|s| {
            ShardId::new(s.shard_id.as_str()).is_ok_and(|id| existing.contains(&key_of(&id)))
        })
        .map(|s| s.shard_id.clone())
        .collect();
    let mut planned = Vec::new();
    // Parents before children: shard ids grow as shards are created, so id order works.
    let mut ordered: Vec<&Shard> = shards.iter().collect();
    ordered.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
    for shard in ordered {
        if leased.contains(&shard.shard_id) {
            continue;
        }
        let parents = shard.parents();
        let parent_leased = parents
            .iter()
            .any(|p| by_id.contains_key(p.as_str()) && leased.contains(p));
        let checkpoint = if parent_leased {
            descendant_checkpoint(initial)
        } else if shard.is_closed() && initial == InitialPosition::Latest {
            continue;
        } else {
            start_checkpoint(initial)
        };
        let Ok(id) = ShardId::new(shard.shard_id.as_str()) else {
            continue;
        };
        let mut lease = Lease::new(key_of(&id), checkpoint).with_parents(ids(parents));
        lease.hash_key_range = range(shard.hash_range);
        leased.insert(shard.shard_id.clone());
        planned.push(lease);
    }
    planned
}

/// Lists `scope`'s shards and creates the leases that are missing; deletes finished leases of
/// the stream whose shard has aged out and whose children have all started. Returns the number
/// created.
pub(crate) async fn sync(
    kinesis: &dyn KinesisApi,
    store: &dyn LeaseStore,
    scope: &Scope,
) -> Result<usize, SyncError> {
    let shards = list_all_shards(kinesis, &scope.stream, None, None).await?;
    let listing = store.list().await?;
    for corrupt in &listing.corrupt {
        warn!(%corrupt, "a lease row cannot be read; it is left alone");
    }
    let existing: HashSet<LeaseKey> = listing.leases.iter().map(|l| l.key.clone()).collect();
    let mut created = 0;
    for lease in plan_leases(&shards, &existing, scope.initial_position, |shard| {
        scope.key(shard)
    }) {
        if store.create_if_absent(&lease).await?.is_won() {
            debug!(lease = %lease.key, checkpoint = %lease.checkpoint, "lease created");
            created += 1;
        }
    }
    // Cleanup: an ended lease of this stream whose shard is no longer listed (its data aged
    // out) and whose children all have leases that started.
    let listed: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
    let by_key: HashMap<&str, &Lease> =
        listing.leases.iter().map(|l| (l.key.as_str(), l)).collect();
    for lease in listing.leases.iter().filter(|l| l.is_ended()) {
        let Some(shard) = scope.shard_of(&lease.key) else {
            continue;
        };
        if listed.contains(shard.as_str()) {
            continue;
        }
        let children_started = lease.child_shard_ids.iter().all(|c| {
            by_key
                .get(scope.key(c).as_str())
                .is_some_and(|child| !child.checkpoint.is_start())
        });
        if children_started && let Race::Won(()) = store.delete(&lease.key, lease.counter).await? {
            info!(lease = %lease.key, "finished lease deleted");
        }
    }
    Ok(created)
}

/// Creates a child's lease, from the `ChildShards` its closed parent `ended` reported. The
/// child of a merge is created only once its other parent has a lease: a child treats a missing
/// parent lease as finished (its shard aged out), so a child created first could start before
/// that parent was read. The other parent creates the child when it ends, or shard sync does
/// (parents first). `Ok(false)` when nothing was created.
pub(crate) async fn create_child_lease(
    store: &dyn LeaseStore,
    scope: &Scope,
    ended: &ShardId,
    child: &ChildShard,
) -> Result<bool, StoreError> {
    for parent in child.parent_shards.iter().filter(|p| *p != ended.as_str()) {
        if store
            .get(&scope.key(&ShardId::new(parent.as_str())?))
            .await?
            .is_none()
        {
            debug!(child = %child.shard_id, parent = %parent, "the child's other parent has no lease yet; the child's lease waits for it");
            return Ok(false);
        }
    }
    let key = scope.key(&ShardId::new(child.shard_id.as_str())?);
    let mut lease = Lease::new(key, descendant_checkpoint(scope.initial_position))
        .with_parents(ids(child.parent_shards.iter().cloned()));
    lease.hash_key_range = range(child.hash_range);
    Ok(store.create_if_absent(&lease).await?.is_won())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardwise_kinesis_source::HashRange;

    fn shard(id: &str, parent: Option<&str>, adjacent: Option<&str>, closed: bool) -> Shard {
        Shard {
            shard_id: id.into(),
            parent_shard_id: parent.map(Into::into),
            adjacent_parent_shard_id: adjacent.map(Into::into),
            hash_range: HashRange {
                start: 0,
                end: u128::MAX,
            },
            starting_sequence_number: "1".into(),
            ending_sequence_number: closed.then(|| "9".into()),
        }
    }

    fn plan(
        shards: &[Shard],
        existing: &[&str],
        initial: InitialPosition,
    ) -> Vec<(String, Checkpoint)> {
        let existing: HashSet<LeaseKey> = existing
            .iter()
            .map(|k| LeaseKey::new(*k).unwrap())
            .collect();
        plan_leases(shards, &existing, initial, |shard| LeaseKey::from(shard))
            .into_iter()
            .map(|l| (l.key.as_str().to_owned(), l.checkpoint))
            .collect()
    }

    #[test]
    fn lease_planning_table() {
        use Checkpoint::{AtTimestamp, Latest, TrimHorizon};
        let at = InitialPosition::AtTimestamp(std::time::UNIX_EPOCH);
        let split = [
            shard("s0", None, None, true),
            shard("s1", Some("s0"), None, false),
            shard("s2", Some("s0"), None, false),
        ];
        let merge = [
            shard("s0", None, None, true),
            shard("s1", None, None, true),
            shard("s2", Some("s0"), Some("s1"), false),
        ];
        type Case<'a> = (
            &'a str,
            &'a [Shard],
            Vec<&'a str>,
            InitialPosition,
            Vec<(&'a str, Checkpoint)>,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "open roots at LATEST",
                &split[1..],
                vec![],
                InitialPosition::Latest,
                vec![("s1", Latest), ("s2", Latest)],
            ),
            (
                "TRIM_HORIZON: parent then children",
                &split,
                vec![],
                InitialPosition::TrimHorizon,
                vec![
                    ("s0", TrimHorizon),
                    ("s1", TrimHorizon),
                    ("s2", TrimHorizon),
                ],
            ),
            (
                "LATEST: closed root skipped, children are roots",
                &split,
                vec![],
                InitialPosition::Latest,
                vec![("s1", Latest), ("s2", Latest)],
            ),
            (
                "parent already leased: children at TRIM_HORIZON",
                &split,
                vec!["s0"],
                InitialPosition::Latest,
                vec![("s1", TrimHorizon), ("s2", TrimHorizon)],
            ),
            (
                "merge child after leased parents",
                &merge,
                vec!["s0", "s1"],
                InitialPosition::Latest,
                vec![("s2", TrimHorizon)],
            ),
            (
                "AT_TIMESTAMP: the closed root too, its children at the timestamp",
                &split,
                vec![],
                at,
                vec![
                    ("s0", AtTimestamp),
                    ("s1", AtTimestamp),
                    ("s2", AtTimestamp),
                ],
            ),
            (
                "AT_TIMESTAMP: both closed roots of a merge, the child at the timestamp",
                &merge,
                vec![],
                at,
                vec![
                    ("s0", AtTimestamp),
                    ("s1", AtTimestamp),
                    ("s2", AtTimestamp),
                ],
            ),
            (
                "AT_TIMESTAMP: a leased parent's children at the timestamp",
                &split,
                vec!["s0"],
                at,
                vec![("s1", AtTimestamp), ("s2", AtTimestamp)],
            ),
            (
                "nothing missing",
                &split,
                vec!["s0", "s1", "s2"],
                InitialPosition::TrimHorizon,
                vec![],
            ),
        ];
        for (name, shards, existing, initial, expected) in cases {
            let expected: Vec<(String, Checkpoint)> = expected
                .into_iter()
                .map(|(k, c)| (k.to_owned(), c))
                .collect();
            assert_eq!(plan(shards, &existing, initial), expected, "{name}");
        }
    }
}

#[cfg(test)]
mod child_tests {
    use shardwise_kinesis_source::HashRange;
    use shardwise_lease_core::MemoryLeaseStore;

    use super::*;

    fn child() -> ChildShard {
        ChildShard {
            shard_id: "shardId-6".into(),
            parent_shards: vec!["shardId-1".into(), "shardId-5".into()],
            hash_range: HashRange {
                start: 0,
                end: u128::MAX,
            },
        }
    }

    fn scope() -> Scope {
        Scope {
            stream: shardwise_kinesis_source::StreamId::Name("s".into()),
            identifier: None,
            initial_position: InitialPosition::TrimHorizon,
            consumer_arn: None,
        }
    }

    /// A merge whose other parent has no lease yet (it is itself a child whose lease its own
    /// parent has not created): the child's lease waits, or the child would start first (a
    /// missing parent lease counts as finished).
    #[tokio::test]
    async fn a_merge_child_waits_for_its_other_parents_lease() {
        let store = MemoryLeaseStore::new();
        let ended = Lease::new(LeaseKey::new("shardId-1").unwrap(), Checkpoint::ShardEnd);
        assert!(store.create_if_absent(&ended).await.unwrap().is_won());
        let parent = ShardId::new("shardId-1").unwrap();
        let child = child();
        let scope = scope();
        let created = create_child_lease(&store, &scope, &parent, &child);
        assert!(!created.await.unwrap(), "not created");
        assert!(
            store
                .get(&LeaseKey::new("shardId-6").unwrap())
                .await
                .unwrap()
                .is_none()
        );

        let other = Lease::new(LeaseKey::new("shardId-5").unwrap(), Checkpoint::TrimHorizon);
        assert!(store.create_if_absent(&other).await.unwrap().is_won());
        let parent = ShardId::new("shardId-5").unwrap();
        let created = create_child_lease(&store, &scope, &parent, &child);
        assert!(
            created.await.unwrap(),
            "created once both parents have leases"
        );
    }
}
