//! Interoperability with the Java KCL's lease table, corrupt rows, call counts and table
//! creation, against a real DynamoDB emulator process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue as Av, BillingMode};
use shardwise_lease_core::{
    Checkpoint, CheckpointUpdate, HashKeyRange, Lease, LeaseKey, LeaseStore, PendingCheckpoint,
    Race, SequenceNumber, ShardId, StoreErrorKind, WorkerId,
};
use shardwise_lease_dynamodb::{Billing, DynamoDbLeaseStore, TableOptions};

type Item = HashMap<String, Av>;

fn s(v: &str) -> Av {
    Av::S(v.to_owned())
}
fn n(v: &str) -> Av {
    Av::N(v.to_owned())
}
fn ss(v: &[&str]) -> Av {
    Av::Ss(v.iter().map(|x| (*x).to_owned()).collect())
}
fn item(pairs: &[(&str, Av)]) -> Item {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}
fn key(k: &str) -> LeaseKey {
    LeaseKey::new(k).unwrap()
}
fn shard(k: &str) -> ShardId {
    ShardId::new(k).unwrap()
}
fn worker(w: &str) -> WorkerId {
    WorkerId::new(w).unwrap()
}

const SEQ: &str = "49590338271490256608559692538361571095921575989136588898";
const END_KEY: &str = "340282366920938463463374607431768211455";

async fn put(client: &Client, table: &str, row: Item) {
    client
        .put_item()
        .table_name(table)
        .set_item(Some(row))
        .send()
        .await
        .unwrap();
}

async fn raw(client: &Client, table: &str, k: &str) -> Item {
    client
        .get_item()
        .table_name(table)
        .key("leaseKey", s(k))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap_or_else(|| panic!("row {k} missing"))
}

/// Rows shaped exactly as the Java KCL 2.x (and 3.x) serializer writes them.
fn kcl_rows() -> Vec<Item> {
    vec![
        // A plain 2.x lease, owned, checkpointed mid-stream.
        item(&[
            ("leaseKey", s("shardId-000000000000")),
            ("leaseOwner", s("kcl-worker-1")),
            ("leaseCounter", n("1234")),
            ("checkpoint", s(SEQ)),
            ("checkpointSubSequenceNumber", n("0")),
            ("ownerSwitchesSinceCheckpoint", n("0")),
            ("startingHashKey", s("0")),
            (
                "endingHashKey",
                s("170141183460469231731687303715884105727"),
            ),
        ]),
        // A merge child: two parents, not yet started, unowned.
        item(&[
            ("leaseKey", s("shardId-000000000005")),
            ("leaseCounter", n("0")),
            ("checkpoint", s("TRIM_HORIZON")),
            ("checkpointSubSequenceNumber", n("0")),
            ("ownerSwitchesSinceCheckpoint", n("0")),
            (
                "parentShardId",
                ss(&["shardId-000000000003", "shardId-000000000004"]),
            ),
            ("startingHashKey", s("0")),
            ("endingHashKey", s(END_KEY)),
        ]),
        // A parent that reached SHARD_END, with its children recorded.
        item(&[
            ("leaseKey", s("shardId-000000000003")),
            ("leaseOwner", s("kcl-worker-2")),
            ("leaseCounter", n("77")),
            ("checkpoint", s("SHARD_END")),
            ("checkpointSubSequenceNumber", n("0")),
            ("ownerSwitchesSinceCheckpoint", n("2")),
            ("childShardIds", ss(&["shardId-000000000005"])),
            ("startingHashKey", s("0")),
            (
                "endingHashKey",
                s("170141183460469231731687303715884105727"),
            ),
        ]),
        // A prepared (two-phase) checkpoint with application state.
        item(&[
            ("leaseKey", s("shardId-000000000001")),
            ("leaseOwner", s("kcl-worker-1")),
            ("leaseCounter", n("9")),
            (
                "checkpoint",
                s("49590338271490256608559692538361571095921575989136588000"),
            ),
            ("checkpointSubSequenceNumber", n("3")),
            ("ownerSwitchesSinceCheckpoint", n("1")),
            ("pendingCheckpoint", s(SEQ)),
            ("pendingCheckpointSubSequenceNumber", n("5")),
            (
                "pendingCheckpointState",
                Av::B(Blob::new(b"app-state".to_vec())),
            ),
            (
                "startingHashKey",
                s("170141183460469231731687303715884105728"),
            ),
            ("endingHashKey", s(END_KEY)),
        ]),
        // A KCL 3.x row: graceful-handoff marker, throughput, entity type.
        item(&[
            ("leaseKey", s("shardId-000000000002")),
            ("leaseOwner", s("kcl3-new-owner")),
            ("checkpointOwner", s("kcl3-old-owner")),
            ("leaseCounter", n("15")),
            ("checkpoint", s("LATEST")),
            ("checkpointSubSequenceNumber", n("0")),
            ("ownerSwitchesSinceCheckpoint", n("4")),
            ("throughputKBps", n("12.75")),
            ("entityType", s("LEASE")),
            ("startingHashKey", s("0")),
            ("endingHashKey", s(END_KEY)),
        ]),
        // A KCL 3.5 single-table row that is not a lease.
        item(&[
            ("leaseKey", s("Leader")),
            ("entityType", s("LEADER")),
            ("leaseOwner", s("kcl3-leader")),
            ("leaseCounter", n("3")),
            ("leaderLockData", s("opaque")),
        ]),
        // The create-path quirk: a number under pendingCheckpointState.
        item(&[
            ("leaseKey", s("shardId-000000000006")),
            ("leaseCounter", n("0")),
            ("checkpoint", s("TRIM_HORIZON")),
            ("checkpointSubSequenceNumber", n("0")),
            ("ownerSwitchesSinceCheckpoint", n("0")),
            ("pendingCheckpointState", n("0")),
        ]),
    ]
}

#[tokio::test]
async fn reads_takes_renews_and_checkpoints_kcl_rows() {
    let store = common::fresh_store("interop").await;
    let table = store.table_name().as_str().to_owned();
    let client = store.client().clone();
    for row in kcl_rows() {
        put(&client, &table, row).await;
    }
    let leader_before = raw(&client, &table, "Leader").await;

    let listing = store.list().await.unwrap();
    assert!(listing.corrupt.is_empty(), "{:?}", listing.corrupt);
    let keys: Vec<&str> = listing.leases.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "shardId-000000000000",
            "shardId-000000000001",
            "shardId-000000000002",
            "shardId-000000000003",
            "shardId-000000000005",
            "shardId-000000000006"
        ],
        "every lease row, and not the Leader row"
    );
    let by_key = |k: &str| {
        listing
            .leases
            .iter()
            .find(|l| l.key.as_str() == k)
            .unwrap()
            .clone()
    };

    let plain = by_key("shardId-000000000000");
    assert_eq!(plain.owner, Some(worker("kcl-worker-1")));
    assert_eq!(plain.counter, 1234);
    assert_eq!(
        plain.checkpoint,
        Checkpoint::at(SequenceNumber::new(SEQ).unwrap(), 0)
    );
    assert_eq!(
        plain.hash_key_range,
        Some(HashKeyRange::new(0, u128::MAX / 2).unwrap())
    );

    let merge_child = by_key("shardId-000000000005");
    assert_eq!(
        merge_child.parent_shard_ids,
        vec![shard("shardId-000000000003"), shard("shardId-000000000004")]
    );
    assert_eq!(merge_child.owner, None);

    let ended = by_key("shardId-000000000003");
    assert!(ended.is_ended());
    assert_eq!(ended.child_shard_ids, vec![shard("shardId-000000000005")]);

    let prepared = by_key("shardId-000000000001");
    assert_eq!(
        prepared.pending_checkpoint,
        Some(PendingCheckpoint::new(
            Checkpoint::at(SequenceNumber::new(SEQ).unwrap(), 5),
            Some(b"app-state".to_vec())
        ))
    );
    assert_eq!(prepared.checkpoint.stored_sub_sequence(), 3);
    assert_eq!(
        by_key("shardId-000000000006").pending_checkpoint,
        None,
        "the numeric quirk is ignored"
    );

    // Take the KCL 3.x row: the handoff marker goes, unknown attributes stay, types are the KCL's.
    let kcl3 = by_key("shardId-000000000002");
    let me = worker("shardwise-1");
    let taken = store
        .take(&kcl3.key, kcl3.counter, &me)
        .await
        .unwrap()
        .won()
        .unwrap();
    assert_eq!(taken.owner_switches_since_checkpoint, 5);
    let counter = store
        .renew(&kcl3.key, &me, taken.counter)
        .await
        .unwrap()
        .won()
        .unwrap();
    let position = Checkpoint::at(SequenceNumber::new(SEQ).unwrap(), 2);
    let pending = PendingCheckpoint::new(
        Checkpoint::at(SequenceNumber::new(SEQ).unwrap(), 9),
        Some(vec![1, 2, 3]),
    );
    let update = CheckpointUpdate::prepare(position.clone(), pending);
    let after = store
        .update_checkpoint(&kcl3.key, &me, counter, &update)
        .await
        .unwrap()
        .won()
        .unwrap();
    assert_eq!(after.checkpoint, position);

    let row = raw(&client, &table, "shardId-000000000002").await;
    assert!(
        !row.contains_key("checkpointOwner"),
        "take removes the KCL 3.x handoff marker"
    );
    assert_eq!(
        row.get("throughputKBps"),
        Some(&n("12.75")),
        "unknown attributes are kept"
    );
    assert_eq!(row.get("entityType"), Some(&s("LEASE")));
    assert_eq!(row.get("leaseOwner"), Some(&s("shardwise-1")));
    assert_eq!(
        row.get("leaseCounter"),
        Some(&n(&after.counter.to_string()))
    );
    assert_eq!(row.get("checkpoint"), Some(&s(SEQ)));
    assert_eq!(row.get("checkpointSubSequenceNumber"), Some(&n("2")));
    assert_eq!(row.get("ownerSwitchesSinceCheckpoint"), Some(&n("0")));
    assert_eq!(row.get("pendingCheckpoint"), Some(&s(SEQ)));
    assert_eq!(row.get("pendingCheckpointSubSequenceNumber"), Some(&n("9")));
    assert_eq!(
        row.get("pendingCheckpointState"),
        Some(&Av::B(Blob::new(vec![1, 2, 3])))
    );
    assert_eq!(row.get("startingHashKey"), Some(&s("0")));
    assert_eq!(row.get("endingHashKey"), Some(&s(END_KEY)));

    // Mark the merge child's parent lineage: end a lease and check the string set type.
    let child = store
        .take(&merge_child.key, merge_child.counter, &me)
        .await
        .unwrap()
        .won()
        .unwrap();
    let children = [shard("shardId-000000000008"), shard("shardId-000000000007")];
    store
        .mark_ended(&child.key, &me, child.counter, &children)
        .await
        .unwrap()
        .won()
        .unwrap();
    let row = raw(&client, &table, "shardId-000000000005").await;
    assert_eq!(row.get("checkpoint"), Some(&s("SHARD_END")));
    match row.get("childShardIds") {
        Some(Av::Ss(ids)) => {
            let mut ids = ids.clone();
            ids.sort();
            assert_eq!(ids, ["shardId-000000000007", "shardId-000000000008"]);
        }
        other => panic!("childShardIds must be a string set, found {other:?}"),
    }
    assert!(
        matches!(row.get("parentShardId"), Some(Av::Ss(p)) if p.len() == 2),
        "parents kept as a set"
    );

    // The non-lease row was never touched, and cannot be read or written as a lease.
    assert_eq!(raw(&client, &table, "Leader").await, leader_before);
    assert_eq!(store.get(&key("Leader")).await.unwrap(), None);
    assert!(
        store.take(&key("Leader"), 3, &me).await.unwrap().is_lost(),
        "the Leader row is not a lease"
    );
    assert!(store.delete(&key("Leader"), 3).await.unwrap().is_lost());
    assert!(
        store
            .renew(&key("Leader"), &worker("kcl3-leader"), 3)
            .await
            .unwrap()
            .is_lost()
    );
    assert_eq!(
        raw(&client, &table, "Leader").await.get("leaseOwner"),
        Some(&s("kcl3-leader"))
    );
}

#[tokio::test]
async fn corrupt_rows_are_named_and_do_not_hide_the_rest() {
    let store = common::fresh_store("corrupt").await;
    let table = store.table_name().as_str().to_owned();
    let client = store.client().clone();
    let good = Lease::new(key("shardId-000000000000"), Checkpoint::TrimHorizon);
    assert!(store.create_if_absent(&good).await.unwrap().is_won());
    let base = |k: &str| {
        item(&[
            ("leaseKey", s(k)),
            ("leaseCounter", n("1")),
            ("checkpoint", s("TRIM_HORIZON")),
            ("checkpointSubSequenceNumber", n("0")),
        ])
    };
    let mut counter_text = base("bad-counter");
    counter_text.insert("leaseCounter".into(), s("abc"));
    let mut checkpoint_garbage = base("bad-checkpoint");
    checkpoint_garbage.insert("checkpoint".into(), s("not-a-number"));
    let mut parents_wrong_type = base("bad-parents");
    parents_wrong_type.insert("parentShardId".into(), s("shardId-000000000001"));
    let mut no_counter = base("no-counter");
    no_counter.remove("leaseCounter");
    for row in [
        counter_text,
        checkpoint_garbage,
        parents_wrong_type,
        no_counter,
    ] {
        put(&client, &table, row).await;
    }

    let listing = store.list().await.unwrap();
    assert_eq!(listing.leases, vec![good], "the good row is still usable");
    let mut named: Vec<&str> = listing.corrupt.iter().map(|c| c.raw_key.as_str()).collect();
    named.sort();
    assert_eq!(
        named,
        ["bad-checkpoint", "bad-counter", "bad-parents", "no-counter"]
    );
    for corrupt in &listing.corrupt {
        assert!(!corrupt.reason.is_empty());
    }
    let err = store.get(&key("bad-counter")).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt);
    assert_eq!(err.lease_key(), Some("bad-counter"));
    assert!(err.to_string().contains("leaseCounter"), "{err}");
}

#[tokio::test]
async fn calls_per_operation() {
    let log = common::CallLog::default();
    let store = DynamoDbLeaseStore::new(
        common::client_with(Some(log.clone())),
        common::unique_table("calls"),
    )
    .unwrap();
    store.create_table_if_missing().await.unwrap();
    store.create_table_if_missing().await.unwrap();
    log.take();
    let me = worker("w");
    let mut held = Vec::new();
    for i in 0..10 {
        let lease = Lease::new(key(&format!("shardId-{i:012}")), Checkpoint::TrimHorizon);
        assert!(store.create_if_absent(&lease).await.unwrap().is_won());
        held.push(store.take(&lease.key, 0, &me).await.unwrap().won().unwrap());
    }
    assert_eq!(log.take().len(), 20, "create and take: one call each");

    let batch: Vec<(LeaseKey, u64)> = held.iter().map(|l| (l.key.clone(), l.counter)).collect();
    let outcomes = store.renew_many(&me, &batch).await;
    assert!(outcomes.iter().all(|o| matches!(o, Ok(Race::Won(_)))));
    let calls = log.take();
    assert_eq!(calls.len(), 10, "renewing 10 leases: {calls:?}");
    assert!(calls.iter().all(|c| c == "UpdateItem"), "{calls:?}");

    let k = &held[0].key;
    let update = CheckpointUpdate::commit(Checkpoint::at(SequenceNumber::new("5").unwrap(), 0));
    assert!(
        store
            .update_checkpoint(k, &me, held[0].counter + 1, &update)
            .await
            .unwrap()
            .is_won()
    );
    assert_eq!(log.take(), ["UpdateItem"], "checkpoint: one call");
    let _ = store.list().await.unwrap();
    assert_eq!(log.take(), ["Scan"], "list of a small table: one call");
    let _ = store.get(k).await.unwrap();
    assert_eq!(log.take(), ["GetItem"]);
}

#[tokio::test]
async fn creates_provisioned_tables_with_tags_once() {
    let log = common::CallLog::default();
    let client = common::client_with(Some(log.clone()));
    let name = common::unique_table("provisioned");
    let options = TableOptions {
        billing: Billing::Provisioned { read: 5, write: 7 },
        tags: vec![("team".into(), "streaming".into())],
        deletion_protection: true,
        ..TableOptions::default()
    };
    let store = DynamoDbLeaseStore::new(client.clone(), name.clone())
        .unwrap()
        .with_table_options(options);
    store.create_table_if_missing().await.unwrap();
    // Tags go with CreateTable (so tag-on-create policies hold). dynalite accepts them there but
    // does not keep them, so the request itself is checked.
    let sent = log.take_with_bodies();
    let create = sent
        .iter()
        .find(|(op, _)| op == "CreateTable")
        .expect("a CreateTable call");
    assert!(
        create
            .1
            .contains(r#""Tags":[{"Key":"team","Value":"streaming"}]"#),
        "{}",
        create.1
    );
    let description = client
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .unwrap();
    let table = description.table().unwrap();
    let throughput = table.provisioned_throughput().unwrap();
    assert_eq!(
        (
            throughput.read_capacity_units(),
            throughput.write_capacity_units()
        ),
        (Some(5), Some(7))
    );
    assert_ne!(
        table.billing_mode_summary().and_then(|b| b.billing_mode()),
        Some(&BillingMode::PayPerRequest)
    );
    log.take();
    store.create_table_if_missing().await.unwrap();
    assert_eq!(
        log.take(),
        ["DescribeTable"],
        "an existing table costs one DescribeTable"
    );
}

#[tokio::test]
async fn a_store_that_is_down_gives_retryable_errors() {
    // Nothing listens on port 9 of loopback (discard service, never run here).
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "t", "t", None, None, "static",
        ))
        .endpoint_url("http://127.0.0.1:9")
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .build();
    let store = DynamoDbLeaseStore::new(Client::from_conf(config), "unreachable-table").unwrap();
    let err = store.list().await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
    let err = store.renew(&key("k"), &worker("w"), 1).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[test]
fn bad_table_names_are_refused_before_any_call() {
    let client = common::client_with(None);
    for bad in ["x", "has space", "semi;colon", "quote\"s"] {
        let err = DynamoDbLeaseStore::new(client.clone(), bad).unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Config, "{bad}");
    }
}

/// A shard read from `LATEST` is pinned to its first record as `checkpoint` = its sequence
/// number and `checkpointSubSequenceNumber` = -1: the Java KCL parses both (a `String` and a
/// `long`), resumes `AT_SEQUENCE_NUMBER` there and keeps the record, since (seq, 0) > (seq, -1).
#[tokio::test]
async fn a_checkpoint_before_a_record_is_stored_as_the_kcl_reads_it() {
    let store = common::fresh_store("before").await;
    let table = store.table_name().as_str().to_owned();
    let k = key("shardId-000000000000");
    let me = worker("w");
    let lease = Lease::new(k.clone(), Checkpoint::Latest);
    assert!(store.create_if_absent(&lease).await.unwrap().is_won());
    let held = store
        .take(&k, lease.counter, &me)
        .await
        .unwrap()
        .won()
        .unwrap();
    let before = Checkpoint::Before(SequenceNumber::new(SEQ).unwrap());
    let pinned = store
        .update_checkpoint(
            &k,
            &me,
            held.counter,
            &CheckpointUpdate::commit(before.clone()),
        )
        .await
        .unwrap()
        .won()
        .unwrap();
    assert_eq!(pinned.checkpoint, before);
    let row = raw(store.client(), &table, k.as_str()).await;
    assert_eq!(row.get("checkpoint"), Some(&s(SEQ)));
    assert_eq!(row.get("checkpointSubSequenceNumber"), Some(&n("-1")));
}

/// A row in the middle of a KCL 3.x graceful hand-off, written as the KCL's assigner writes it
/// (`leaseOwner` the new owner, `checkpointOwner` the old one, the counter not incremented),
/// reads as a hand-off to shardwise: the old owner holds it, renews and checkpoints it, and its
/// release hands it over exactly as the KCL's transfer does. And a hand-off that shardwise asks
/// for is stored with the KCL's attributes.
#[tokio::test]
async fn a_row_mid_handoff_reads_the_same_to_both() {
    let store = common::fresh_store("handoff").await;
    let table = store.table_name().as_str().to_owned();
    let client = store.client().clone();
    let (old, new) = (worker("old-owner"), worker("new-owner"));
    put(
        &client,
        &table,
        item(&[
            ("leaseKey", s("shardId-000000000002")),
            ("leaseOwner", s("new-owner")),
            ("checkpointOwner", s("old-owner")),
            ("leaseCounter", n("15")),
            ("checkpoint", s(SEQ)),
            ("checkpointSubSequenceNumber", n("0")),
            ("ownerSwitchesSinceCheckpoint", n("1")),
            ("throughputKBps", n("3.5")),
            ("entityType", s("LEASE")),
        ]),
    )
    .await;
    let k = key("shardId-000000000002");
    let lease = store.get(&k).await.unwrap().unwrap();
    assert_eq!(lease.owner.as_ref(), Some(&new));
    assert_eq!(lease.checkpoint_owner.as_ref(), Some(&old));
    assert!(lease.is_held_by(&old) && lease.is_handing_off());

    assert!(
        store.renew(&k, &new, 15).await.unwrap().is_lost(),
        "the new owner cannot renew before the transfer"
    );
    let renewed = store.renew(&k, &old, 15).await.unwrap().won().unwrap();
    let later = format!("{}9", &SEQ[..SEQ.len() - 1]);
    let checkpointed = store
        .update_checkpoint(
            &k,
            &old,
            renewed,
            &CheckpointUpdate::commit(Checkpoint::at(SequenceNumber::new(&later).unwrap(), 0)),
        )
        .await
        .unwrap()
        .won()
        .unwrap();
    let done = store
        .evict(&k, &old, checkpointed.counter)
        .await
        .unwrap()
        .won()
        .unwrap();
    assert_eq!(
        (done.owner.as_ref(), done.checkpoint_owner.as_ref()),
        (Some(&new), None)
    );
    let row = raw(&client, &table, k.as_str()).await;
    assert_eq!(row.get("leaseOwner"), Some(&s("new-owner")));
    assert!(
        !row.contains_key("checkpointOwner"),
        "the transfer removes checkpointOwner"
    );
    assert_eq!(row.get("leaseCounter"), Some(&n("18")));
    assert_eq!(row.get("checkpoint"), Some(&s(&later)));
    assert_eq!(
        row.get("throughputKBps"),
        Some(&n("3.5")),
        "KCL attributes are kept"
    );

    // shardwise asks for it back: stored as the KCL's assigner stores a hand-off.
    let asked = store
        .request_handoff(&k, done.counter, &new, &old)
        .await
        .unwrap()
        .won()
        .unwrap();
    let row = raw(&client, &table, k.as_str()).await;
    assert_eq!(row.get("leaseOwner"), Some(&s("old-owner")));
    assert_eq!(row.get("checkpointOwner"), Some(&s("new-owner")));
    assert_eq!(
        row.get("leaseCounter"),
        Some(&n(&asked.counter.to_string()))
    );
}

/// Rows of a Java KCL multi-stream application, as its serializer writes them (the key
/// `account:stream:epoch:shard`, plus `streamName` and `shardId`): read with their stream and
/// shard, taken, renewed and checkpointed; a lease shardwise creates for a stream's shard is
/// written the same way; a row whose attributes disagree with its key is reported corrupt.
#[tokio::test]
async fn multi_stream_rows_read_and_write_as_the_kcl_does() {
    let store = common::fresh_store("multi").await;
    let table = store.table_name().as_str().to_owned();
    let client = store.client().clone();
    let kcl_key = "123456789012:orders:1700000000:shardId-000000000001";
    put(
        &client,
        &table,
        item(&[
            ("leaseKey", s(kcl_key)),
            ("streamName", s("123456789012:orders:1700000000")),
            ("shardId", s("shardId-000000000001")),
            ("leaseOwner", s("java-worker")),
            ("leaseCounter", n("8")),
            ("checkpoint", s(SEQ)),
            ("checkpointSubSequenceNumber", n("0")),
            ("ownerSwitchesSinceCheckpoint", n("0")),
            ("startingHashKey", s("0")),
            ("endingHashKey", s(END_KEY)),
        ]),
    )
    .await;
    put(
        &client,
        &table,
        item(&[
            (
                "leaseKey",
                s("123456789012:orders:1700000000:shardId-000000000002"),
            ),
            ("streamName", s("123456789012:payments:1700000000")),
            ("shardId", s("shardId-000000000002")),
            ("leaseCounter", n("0")),
            ("checkpoint", s("TRIM_HORIZON")),
            ("checkpointSubSequenceNumber", n("0")),
            ("ownerSwitchesSinceCheckpoint", n("0")),
        ]),
    )
    .await;
    let listing = store.list().await.unwrap();
    assert_eq!(listing.leases.len(), 1);
    assert_eq!(
        listing.corrupt.len(),
        1,
        "the row whose streamName disagrees"
    );
    assert!(
        listing.corrupt[0].reason.contains("streamName"),
        "{}",
        listing.corrupt[0].reason
    );
    let lease = &listing.leases[0];
    let (stream, shard_id) = lease.key.stream_shard().unwrap();
    assert_eq!(stream.to_string(), "123456789012:orders:1700000000");
    assert_eq!(shard_id.as_str(), "shardId-000000000001");

    let me = worker("shardwise-worker");
    let taken = store.take(&lease.key, 8, &me).await.unwrap().won().unwrap();
    let renewed = store.renew(&lease.key, &me, taken.counter).await.unwrap();
    let counter = renewed.won().unwrap();
    let later = format!("{}9", &SEQ[..SEQ.len() - 1]);
    let update = CheckpointUpdate::commit(Checkpoint::at(SequenceNumber::new(&later).unwrap(), 0));
    let checkpointed = store
        .update_checkpoint(&lease.key, &me, counter, &update)
        .await
        .unwrap();
    assert!(checkpointed.is_won());
    let row = raw(&client, &table, kcl_key).await;
    assert_eq!(
        row.get("streamName"),
        Some(&s("123456789012:orders:1700000000"))
    );
    assert_eq!(row.get("shardId"), Some(&s("shardId-000000000001")));
    assert_eq!(row.get("checkpoint"), Some(&s(&later)));

    // A lease shardwise creates for a stream's shard carries the KCL's attributes.
    let stream =
        shardwise_lease_core::StreamIdentifier::parse("123456789012:payments:1700000001").unwrap();
    let key = LeaseKey::for_stream_shard(&stream, &shard("shardId-000000000007"));
    assert!(
        store
            .create_if_absent(&Lease::new(key.clone(), Checkpoint::TrimHorizon))
            .await
            .unwrap()
            .is_won()
    );
    let row = raw(&client, &table, key.as_str()).await;
    assert_eq!(
        row.get("leaseKey"),
        Some(&s("123456789012:payments:1700000001:shardId-000000000007"))
    );
    assert_eq!(
        row.get("streamName"),
        Some(&s("123456789012:payments:1700000001"))
    );
    assert_eq!(row.get("shardId"), Some(&s("shardId-000000000007")));
    let read = store.get(&key).await.unwrap().unwrap();
    assert_eq!(read.key, key);
}
