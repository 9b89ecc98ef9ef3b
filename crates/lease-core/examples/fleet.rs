//! Three workers share twelve shard leases through the in-memory store, using the real expiry
//! tracker, balancing decision and compare-and-set writes. A fourth worker joins, then one worker
//! dies without releasing its leases, and the survivors take them over once they expire.
//!
//! Run: `cargo run -p shardwise-lease-core --example fleet`

use std::collections::{BTreeMap, HashSet};
use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use shardwise_lease_core::{
    BalanceConfig, BalanceInput, Checkpoint, ExpiryTracker, Lease, LeaseKey, LeaseStore,
    MemoryLeaseStore, Race, WorkerId, plan_takes,
};

const LEASE_DURATION: Duration = Duration::from_millis(600);

struct Worker {
    id: WorkerId,
    tracker: ExpiryTracker,
    held: BTreeMap<LeaseKey, u64>,
    alive: bool,
}

impl Worker {
    fn new(name: &str) -> Result<Self, Box<dyn Error>> {
        Ok(Self {
            id: WorkerId::new(name)?,
            tracker: ExpiryTracker::new(),
            held: BTreeMap::new(),
            alive: true,
        })
    }

    /// One coordination round: renew what it holds, then list, observe, and take or steal.
    async fn round(&mut self, store: &dyn LeaseStore) -> Result<(), Box<dyn Error>> {
        let batch: Vec<(LeaseKey, u64)> = self.held.iter().map(|(k, c)| (k.clone(), *c)).collect();
        for ((key, _), outcome) in batch.iter().zip(store.renew_many(&self.id, &batch).await) {
            match outcome? {
                Race::Won(counter) => {
                    self.held.insert(key.clone(), counter);
                }
                Race::Lost => {
                    println!("  {} lost {key}", self.id);
                    self.held.remove(key);
                }
            }
        }
        let listing = store.list().await?;
        let now = tokio::time::Instant::now().into_std();
        self.tracker.observe_all(&listing.leases, now);
        let expired = self.tracker.expired_keys(now, LEASE_DURATION);
        let held: HashSet<LeaseKey> = self.held.keys().cloned().collect();
        let plan = plan_takes(BalanceInput {
            leases: &listing.leases,
            expired: &expired,
            me: &self.id,
            held: &held,
            config: &BalanceConfig::default(),
        });
        for candidate in plan.take.iter().chain(&plan.steal) {
            if let Race::Won(lease) = store
                .take(&candidate.key, candidate.counter, &self.id)
                .await?
            {
                let how = if plan.steal.contains(candidate) {
                    "stole"
                } else {
                    "took"
                };
                let from = candidate
                    .owner
                    .as_ref()
                    .map_or("nobody".to_owned(), |o| o.to_string());
                println!("  {} {how} {} from {from}", self.id, lease.key);
                self.held.insert(lease.key, lease.counter);
            }
        }
        Ok(())
    }
}

async fn show(store: &dyn LeaseStore) -> Result<(), Box<dyn Error>> {
    let mut by_owner: BTreeMap<String, usize> = BTreeMap::new();
    for lease in store.list().await?.leases {
        *by_owner
            .entry(lease.owner.map_or("(free)".into(), |o| o.to_string()))
            .or_default() += 1;
    }
    println!("  holdings: {by_owner:?}");
    Ok(())
}

async fn run_rounds(
    store: &Arc<MemoryLeaseStore>,
    workers: &mut [Worker],
    rounds: usize,
) -> Result<(), Box<dyn Error>> {
    for _ in 0..rounds {
        for worker in workers.iter_mut().filter(|w| w.alive) {
            worker.round(store.as_ref()).await?;
        }
        tokio::time::sleep(LEASE_DURATION / 3).await;
    }
    show(store.as_ref()).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let store = Arc::new(MemoryLeaseStore::new());
    for i in 0..12 {
        let key = LeaseKey::new(format!("shardId-{i:012}"))?;
        let _ = store
            .create_if_absent(&Lease::new(key, Checkpoint::TrimHorizon))
            .await?;
    }
    let mut workers = vec![
        Worker::new("worker-a")?,
        Worker::new("worker-b")?,
        Worker::new("worker-c")?,
    ];

    println!("three workers start on 12 free leases");
    run_rounds(&store, &mut workers, 4).await?;

    println!("worker-d joins: it steals toward a fair share of 3");
    workers.push(Worker::new("worker-d")?);
    run_rounds(&store, &mut workers, 8).await?;

    println!("worker-b dies without releasing; the others take its leases once they expire");
    workers[1].alive = false;
    run_rounds(&store, &mut workers, 8).await?;

    let held: usize = workers
        .iter()
        .filter(|w| w.alive)
        .map(|w| w.held.len())
        .sum();
    println!(
        "done: {held} of 12 leases held by the 3 live workers, {} store calls",
        store.calls()
    );
    Ok(())
}
