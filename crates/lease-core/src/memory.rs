//! A lease store in memory: exact contract semantics, for one process, the simulation and tests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::checkpoint::{Checkpoint, CheckpointUpdate};
use crate::error::{StoreError, StoreErrorKind};
use crate::ids::{LeaseKey, ShardId, WorkerId};
use crate::lease::{Lease, sorted_set};
use crate::membership::Membership;
use crate::store::{LeaseListing, LeaseStore, Race, validate_handoff};

/// A [`LeaseStore`] kept in process memory.
///
/// It implements the contract exactly (every write is an atomic compare-and-set under one lock),
/// so it is what the deterministic simulation and unit tests use. Leases live as long as the
/// value: it suits a single-process application that does not need to resume after a restart.
///
/// For tests it can be made unavailable ([`MemoryLeaseStore::set_available`]), and it counts
/// the calls made to it ([`MemoryLeaseStore::calls`]).
///
/// ```
/// # tokio_test_block_on(async {
/// use shardwise_lease_core::{Checkpoint, Lease, LeaseKey, LeaseStore, MemoryLeaseStore, WorkerId};
///
/// let store = MemoryLeaseStore::new();
/// let key = LeaseKey::new("shardId-000000000000")?;
/// let _ = store.create_if_absent(&Lease::new(key.clone(), Checkpoint::TrimHorizon)).await?;
/// let me = WorkerId::new("worker-a")?;
/// let taken = store.take(&key, 0, &me).await?.won().expect("a free lease at counter 0");
/// assert_eq!(taken.counter, 1);
/// assert!(store.renew(&key, &me, 1).await?.is_won());
/// assert!(store.renew(&key, &me, 1).await?.is_lost()); // stale counter: a lost race, not an error
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug)]
pub struct MemoryLeaseStore {
    leases: Mutex<BTreeMap<LeaseKey, Lease>>,
    membership: Mutex<Membership>,
    available: AtomicBool,
    calls: AtomicU64,
}

impl Default for MemoryLeaseStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLeaseStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            leases: Mutex::new(BTreeMap::new()),
            membership: Mutex::new(Membership::default()),
            available: AtomicBool::new(true),
            calls: AtomicU64::new(0),
        }
    }

    /// Makes every later call fail with a retryable [`StoreErrorKind::Unavailable`] error
    /// (`false`) or succeed again (`true`), as a store that goes away and comes back would.
    pub fn set_available(&self, available: bool) {
        self.available.store(available, AtomicOrdering::SeqCst);
    }

    /// How many operations were called so far (each one round trip in a remote store).
    pub fn calls(&self) -> u64 {
        self.calls.load(AtomicOrdering::SeqCst)
    }

    /// How many leases the table holds now (not an operation: not counted, never fails).
    pub fn lease_count(&self) -> usize {
        self.leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Enters one operation: counts it, fails when unavailable, locks the table.
    fn enter(&self) -> Result<MutexGuard<'_, BTreeMap<LeaseKey, Lease>>, StoreError> {
        self.calls.fetch_add(1, AtomicOrdering::SeqCst);
        if !self.available.load(AtomicOrdering::SeqCst) {
            return Err(StoreError::unavailable(
                "in-memory lease store switched off",
            ));
        }
        // A panic while holding the lock cannot leave a lease half-written: every write below
        // replaces whole values, so the data behind a poisoned lock is still consistent.
        Ok(self.leases.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Enters one operation on the membership record.
    fn enter_membership(&self) -> Result<MutexGuard<'_, Membership>, StoreError> {
        drop(self.enter()?);
        // Whole values are replaced under the lock: a poisoned lock holds a consistent record.
        Ok(self
            .membership
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// Applies `change` to the lease at `key` when `condition` holds, incrementing the counter.
    fn write(
        &self,
        key: &LeaseKey,
        condition: impl FnOnce(&Lease) -> bool,
        change: impl FnOnce(&mut Lease) -> Result<(), StoreError>,
    ) -> Result<Race<Lease>, StoreError> {
        let mut leases = self.enter()?;
        let Some(stored) = leases.get_mut(key) else {
            return Ok(Race::Lost);
        };
        if !condition(stored) {
            return Ok(Race::Lost);
        }
        let mut updated = stored.clone();
        change(&mut updated)?;
        updated.counter = stored.counter.saturating_add(1);
        *stored = updated.clone();
        Ok(Race::Won(updated))
    }
}

impl MemoryLeaseStore {
    /// [`LeaseStore::update_checkpoint`] together with the application's `effects`, as one
    /// transaction: `effects` runs, under the store's lock, exactly when the checkpoint is
    /// written, and not at all when the write loses its race or is refused. The in-memory model
    /// of a transactional checkpoint, for the simulation and tests.
    pub fn update_checkpoint_with(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        update: &CheckpointUpdate,
        effects: impl FnOnce(),
    ) -> Result<Race<Lease>, StoreError> {
        update.validate()?;
        self.write(key, held_at(owner, expected_counter), |lease| {
            if update.checkpoint.cmp_progress(&lease.checkpoint).is_lt() {
                return Err(StoreError::new(
                    StoreErrorKind::CheckpointRegression,
                    format!(
                        "checkpoint {} is behind the stored {}",
                        update.checkpoint, lease.checkpoint
                    ),
                )
                .with_lease_key(key.as_str()));
            }
            lease.checkpoint = update.checkpoint.clone();
            lease.pending_checkpoint = update.pending.clone();
            lease.owner_switches_since_checkpoint = 0;
            effects();
            Ok(())
        })
    }
}

fn held_at(holder: &WorkerId, counter: u64) -> impl Fn(&Lease) -> bool + '_ {
    move |lease| lease.counter == counter && lease.is_held_by(holder)
}

#[async_trait]
impl LeaseStore for MemoryLeaseStore {
    async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        self.enter().map(drop)
    }

    async fn list(&self) -> Result<LeaseListing, StoreError> {
        let leases = self.enter()?;
        Ok(LeaseListing {
            leases: leases.values().cloned().collect(),
            corrupt: Vec::new(),
        })
    }

    async fn get(&self, key: &LeaseKey) -> Result<Option<Lease>, StoreError> {
        Ok(self.enter()?.get(key).cloned())
    }

    async fn create_if_absent(&self, lease: &Lease) -> Result<Race<Lease>, StoreError> {
        let mut leases = self.enter()?;
        if leases.contains_key(&lease.key) {
            return Ok(Race::Lost);
        }
        let mut stored = lease.clone();
        stored.parent_shard_ids = sorted_set(stored.parent_shard_ids);
        stored.child_shard_ids = sorted_set(stored.child_shard_ids);
        leases.insert(stored.key.clone(), stored.clone());
        Ok(Race::Won(stored))
    }

    async fn take(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, StoreError> {
        self.write(
            key,
            |lease| lease.counter == expected_counter,
            |lease| {
                if !lease.is_owned_by(new_owner) {
                    lease.owner_switches_since_checkpoint =
                        lease.owner_switches_since_checkpoint.saturating_add(1);
                }
                lease.owner = Some(new_owner.clone());
                lease.checkpoint_owner = None;
                Ok(())
            },
        )
    }

    async fn renew(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<u64>, StoreError> {
        let race = self.write(key, held_at(owner, expected_counter), |_| Ok(()))?;
        Ok(race.map(|lease| lease.counter))
    }

    async fn renew_many(
        &self,
        owner: &WorkerId,
        leases: &[(LeaseKey, u64)],
    ) -> Vec<Result<Race<u64>, StoreError>> {
        // One call, as a one-round-trip store would make.
        let mut table = match self.enter() {
            Ok(table) => table,
            Err(err) => return leases.iter().map(|_| Err(err.clone())).collect(),
        };
        leases
            .iter()
            .map(|(key, counter)| match table.get_mut(key) {
                Some(lease) if held_at(owner, *counter)(lease) => {
                    lease.counter = lease.counter.saturating_add(1);
                    Ok(Race::Won(lease.counter))
                }
                _ => Ok(Race::Lost),
            })
            .collect()
    }

    async fn evict(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<Lease>, StoreError> {
        self.write(key, held_at(owner, expected_counter), |lease| {
            if lease.checkpoint_owner.take().is_none() {
                lease.owner = None;
            }
            Ok(())
        })
    }

    async fn update_checkpoint(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        update: &CheckpointUpdate,
    ) -> Result<Race<Lease>, StoreError> {
        self.update_checkpoint_with(key, owner, expected_counter, update, || ())
    }

    async fn mark_ended(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        children: &[ShardId],
    ) -> Result<Race<Lease>, StoreError> {
        self.write(key, held_at(owner, expected_counter), |lease| {
            lease.checkpoint = Checkpoint::ShardEnd;
            lease.pending_checkpoint = None;
            lease.owner_switches_since_checkpoint = 0;
            lease.child_shard_ids = sorted_set(children.iter().cloned());
            Ok(())
        })
    }

    async fn request_handoff(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        holder: &WorkerId,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, StoreError> {
        validate_handoff(holder, new_owner)?;
        self.write(
            key,
            |lease| {
                lease.counter == expected_counter
                    && lease.is_owned_by(holder)
                    && !lease.is_handing_off()
            },
            |lease| {
                lease.checkpoint_owner = lease.owner.replace(new_owner.clone());
                lease.owner_switches_since_checkpoint =
                    lease.owner_switches_since_checkpoint.saturating_add(1);
                Ok(())
            },
        )
    }

    async fn reset_checkpoint(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        checkpoint: &Checkpoint,
    ) -> Result<Race<Lease>, StoreError> {
        self.write(
            key,
            |lease| lease.counter == expected_counter,
            |lease| {
                lease.owner = None;
                lease.checkpoint_owner = None;
                lease.checkpoint = checkpoint.clone();
                lease.pending_checkpoint = None;
                lease.owner_switches_since_checkpoint = 0;
                Ok(())
            },
        )
    }

    async fn delete(&self, key: &LeaseKey, expected_counter: u64) -> Result<Race<()>, StoreError> {
        let mut leases = self.enter()?;
        match leases.get(key) {
            Some(lease) if lease.counter == expected_counter => {
                leases.remove(key);
                Ok(Race::Won(()))
            }
            _ => Ok(Race::Lost),
        }
    }

    async fn heartbeat(
        &self,
        worker: &WorkerId,
        expected: Option<u64>,
    ) -> Result<Race<u64>, StoreError> {
        let mut membership = self.enter_membership()?;
        let stored = membership.heartbeats.get(worker).copied();
        if expected.is_some() && stored != expected {
            return Ok(Race::Lost);
        }
        let beat = stored.unwrap_or(0).saturating_add(1);
        membership.heartbeats.insert(worker.clone(), beat);
        Ok(Race::Won(beat))
    }

    async fn membership(&self) -> Result<Membership, StoreError> {
        Ok(self.enter_membership()?.clone())
    }

    async fn bump_version(&self) -> Result<u64, StoreError> {
        let mut membership = self.enter_membership()?;
        membership.version = membership.version.saturating_add(1);
        Ok(membership.version)
    }

    async fn leave(
        &self,
        worker: &WorkerId,
        expected_heartbeat: u64,
    ) -> Result<Race<()>, StoreError> {
        let mut membership = self.enter_membership()?;
        if membership.heartbeats.get(worker) != Some(&expected_heartbeat) {
            return Ok(Race::Lost);
        }
        membership.heartbeats.remove(worker);
        Ok(Race::Won(()))
    }
}
