//! The scale measurement on a small fleet: the figures it prints are the protocol's cost.

use std::time::Duration;

use shardwise::Liveness;
use shardwise_sim::scale::{kcl2_model, measure};

/// 100 shards, 10 workers, 10 s leases: every worker lists the table every take interval
/// (5 s) and renews each lease every third of the lease duration, a killed worker's leases
/// move within a lease duration and a take interval, and a joining worker has its share
/// within a few take rounds.
#[test]
fn a_hundred_shards_over_ten_workers() {
    let figures = measure(100, 10, Liveness::PerLease).unwrap_or_else(|e| panic!("{e}"));
    // 10 workers × 100 rows / 5 s, plus the hand-off and parent polls' reads.
    assert!(
        (200.0..260.0).contains(&figures.rows_read_per_second),
        "{figures:?}"
    );
    // 100 leases renewed every 3.33 s.
    assert!(
        (29.0..32.0).contains(&figures.writes_per_second),
        "{figures:?}"
    );
    assert!(figures.recovery <= Duration::from_secs(16), "{figures:?}");
    // A joining worker asks every worker above the new share at once: a few take rounds,
    // not one round per lease (51 s when it asked only the most loaded worker).
    assert!(
        figures
            .balance_after_join
            .is_some_and(|d| d <= Duration::from_secs(20)),
        "{figures:?}"
    );
    let kcl = kcl2_model(100, 10);
    assert_eq!(kcl.rows_read_per_second, 50.0);
    assert_eq!(kcl.balance_after_join, Some(Duration::from_secs(180)));
}

/// One worker holding 1,000 idle shards stays well under 200 MB of resident memory (about
/// 35 MB, the in-memory Kinesis and store included). Each test runs in a process of its own
/// under nextest, so the figure is this worker's.
#[test]
fn a_thousand_idle_shards_in_one_worker() {
    let (rss, peak) =
        shardwise_sim::scale::idle_worker_memory(1_000).unwrap_or_else(|e| panic!("{e}"));
    assert!(rss > 0, "VmRSS read");
    assert!(peak < 200_000_000, "peak RSS {peak} bytes");
}

/// The same fleet with heartbeats: each worker reads the membership record every take round
/// and writes one heartbeat every renew interval; the leases are listed only by the worker
/// that syncs shards (every minute) and by each worker's full listing (every 10 minutes).
/// Failover and joins are as fast as with per-lease renewals.
#[test]
fn a_hundred_shards_over_ten_workers_with_heartbeats() {
    let figures = measure(100, 10, Liveness::Heartbeat).unwrap_or_else(|e| panic!("{e}"));
    // 2 membership rows/s, 100 rows a minute for the shard sync, 10 × 100 rows per ~10 min.
    assert!(
        (3.0..8.0).contains(&figures.rows_read_per_second),
        "{figures:?}"
    );
    // 10 heartbeats every 3.33 s, and no renewal.
    assert!(
        (2.9..3.2).contains(&figures.writes_per_second),
        "{figures:?}"
    );
    assert!(figures.recovery <= Duration::from_secs(16), "{figures:?}");
    assert!(
        figures
            .balance_after_join
            .is_some_and(|d| d <= Duration::from_secs(20)),
        "{figures:?}"
    );
}
