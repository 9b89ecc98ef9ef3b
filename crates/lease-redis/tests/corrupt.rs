//! Corrupt hashes: `list` reports them beside the good leases, `get` names them in an error.

mod support;

use shardwise_lease_core::{Checkpoint, Lease, LeaseKey, LeaseStore, StoreErrorKind};

#[tokio::test]
async fn corrupt_hashes_do_not_hide_the_good_ones() {
    let store = support::prefixed_store("corrupt_hashes").await;
    for i in [1, 3] {
        let key = LeaseKey::new(format!("shardId-{i}")).unwrap_or_else(|e| panic!("{e}"));
        let created = store
            .create_if_absent(&Lease::new(key, Checkpoint::TrimHorizon))
            .await;
        assert!(created.is_ok_and(|r| r.is_won()));
    }
    let client = redis::Client::open(support::redis_url()).unwrap_or_else(|e| panic!("{e}"));
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let prefix = store.store.prefix().as_str().to_owned();
    let index = format!("{{{prefix}}}:leases");
    // shardId-0: a checkpoint that is no sequence number; shardId-2: a string, not a hash.
    let () = redis::pipe()
        .hset_multiple(
            format!("{{{prefix}}}:lease:shardId-0"),
            &[
                ("key", "shardId-0"),
                ("counter", "1"),
                ("cp", "garbage"),
                ("cp_sub", "0"),
                ("switches", "0"),
                ("parents", ""),
                ("children", ""),
            ],
        )
        .ignore()
        .set(format!("{{{prefix}}}:lease:shardId-2"), "not a hash")
        .ignore()
        .zadd(&index, "shardId-0", 0)
        .ignore()
        .zadd(&index, "shardId-2", 0)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("write corrupt keys: {e}"));

    let listing = store.list().await;
    let key0 = LeaseKey::new("shardId-0").unwrap_or_else(|e| panic!("{e}"));
    let got = store.get(&key0).await;
    // The string key is not in the cleanup's reach as a lease hash; remove it by hand.
    let () = redis::cmd("DEL")
        .arg(format!("{{{prefix}}}:lease:shardId-2"))
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let listing = listing.unwrap_or_else(|e| panic!("list: {e}"));
    let good: Vec<&str> = listing.leases.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(good, ["shardId-1", "shardId-3"]);
    let bad: Vec<&str> = listing.corrupt.iter().map(|c| c.raw_key.as_str()).collect();
    assert_eq!(bad, ["shardId-0", "shardId-2"], "{:?}", listing.corrupt);
    assert!(
        listing.corrupt[0].reason.contains("checkpoint"),
        "{}",
        listing.corrupt[0]
    );
    assert!(
        listing.corrupt[1].reason.contains("not a hash"),
        "{}",
        listing.corrupt[1]
    );
    match got {
        Err(e) => {
            assert_eq!(e.kind(), StoreErrorKind::Corrupt, "{e}");
            assert_eq!(e.lease_key(), Some("shardId-0"));
        }
        Ok(lease) => panic!("corrupt hash read as {lease:?}"),
    }
}
