//! A server restart in the middle of a run, on a Redis instance (append-only file on) this test starts and stops
//! itself (its own directory and port): while it is down every operation fails with a
//! retryable error; after it is back everything succeeds and no lease or checkpoint was lost
//! or duplicated.

mod support;

use std::time::{Duration, Instant};

use shardwise_lease_core::{
    Checkpoint, CheckpointUpdate, Lease, LeaseKey, LeaseStore, Race, SequenceNumber, StoreError,
    WorkerId,
};
use shardwise_lease_redis::{RedisConfig, RedisLeaseStore};
use support::server::{RedisInstance, free_port};

fn checkpoint(n: u64) -> Checkpoint {
    let text = format!("49590338271490256608559692538361571095921575989136{n:06}");
    Checkpoint::at(
        SequenceNumber::new(&text).unwrap_or_else(|e| panic!("{e}")),
        0,
    )
}

fn assert_retryable<T: std::fmt::Debug>(what: &str, outcome: Result<T, StoreError>) {
    match outcome {
        Err(e) => assert!(
            e.is_retryable(),
            "{what} while down: not retryable: {e} ({:?})",
            e.kind()
        ),
        Ok(value) => panic!("{what} while down: succeeded with {value:?}"),
    }
}

/// Retries `op` on retryable errors for up to 30 s (the connection manager reconnects).
async fn eventually<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match op().await {
            Ok(value) => return value,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{what} after restart: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_loses_nothing() {
    let mut server = RedisInstance::new(free_port());
    server.start();
    let config = RedisConfig::builder(server.url(), "restart-test")
        .response_timeout(Duration::from_secs(1))
        .connection_timeout(Duration::from_secs(1))
        .reconnect_attempts(1)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let store = RedisLeaseStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .create_table_if_missing()
        .await
        .unwrap_or_else(|e| panic!("reach the server: {e}"));

    let me = WorkerId::new("worker-a").unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<LeaseKey> = (0..10)
        .map(|i| LeaseKey::new(format!("shardId-{i:012}")).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let lease = Lease::new(key.clone(), Checkpoint::TrimHorizon);
        assert!(
            store
                .create_if_absent(&lease)
                .await
                .is_ok_and(|r| r.is_won())
        );
        let taken = match store.take(key, 0, &me).await {
            Ok(Race::Won(lease)) => lease,
            other => panic!("take {key}: {other:?}"),
        };
        if i % 2 == 0 {
            let update = CheckpointUpdate::commit(checkpoint(i as u64));
            let written = store
                .update_checkpoint(key, &me, taken.counter, &update)
                .await;
            assert!(written.is_ok_and(|r| r.is_won()), "checkpoint {key}");
        }
    }
    let before = store.list().await.unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(before.leases.len(), keys.len());

    server.stop();
    let held: Vec<(LeaseKey, u64)> = before
        .leases
        .iter()
        .map(|l| (l.key.clone(), l.counter))
        .collect();
    let first = &before.leases[0];
    assert_retryable("list", store.list().await);
    assert_retryable("get", store.get(&first.key).await);
    assert_retryable("renew", store.renew(&first.key, &me, first.counter).await);
    assert_retryable("take", store.take(&first.key, first.counter, &me).await);
    let update = CheckpointUpdate::commit(checkpoint(500));
    assert_retryable(
        "checkpoint",
        store
            .update_checkpoint(&first.key, &me, first.counter, &update)
            .await,
    );
    let extra = Lease::new(
        LeaseKey::new("shardId-new").unwrap_or_else(|e| panic!("{e}")),
        Checkpoint::TrimHorizon,
    );
    assert_retryable("create", store.create_if_absent(&extra).await);
    for outcome in store.renew_many(&me, &held).await {
        assert_retryable("renew_many", outcome);
    }

    server.start();
    let after = eventually("list", || store.list()).await;
    assert_eq!(
        after, before,
        "every lease and checkpoint survived the restart unchanged"
    );

    // The worker carries on: one renewal round and a checkpoint succeed, exactly once each.
    let outcomes = eventually("renew_many", || async {
        let outcomes = store.renew_many(&me, &held).await;
        outcomes.into_iter().collect::<Result<Vec<_>, _>>()
    })
    .await;
    let expected: Vec<Race<u64>> = held.iter().map(|(_, c)| Race::Won(c + 1)).collect();
    assert_eq!(outcomes, expected);
    let key = &keys[0];
    let update = CheckpointUpdate::commit(checkpoint(600));
    let written = eventually("checkpoint", || {
        store.update_checkpoint(key, &me, held[0].1 + 1, &update)
    })
    .await;
    assert!(written.is_won());
    let last = eventually("list", || store.list()).await;
    assert_eq!(last.leases.len(), keys.len(), "no lease duplicated or lost");
    assert_eq!(last.leases[0].checkpoint, checkpoint(600));
    assert_eq!(last.leases[0].counter, held[0].1 + 2);
}
