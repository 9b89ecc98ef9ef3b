//! The worker: shard sync, lease coordination (renew, take, steal, release) and one pipeline per
//! held shard.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use shardwise_lease_core::{
    BalanceConfig, BalanceInput, Candidate, ExpiryTracker, LeaseKey, Race, plan_takes,
};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::context::{Context, millis};
use crate::grant::Grant;
use crate::pipeline::{self, PipelineEnd};

/// The worker's own metrics.
struct Metrics {
    leases: shardwise_metrics::WorkerMetrics,
    list: shardwise_metrics::LeaseStoreMetrics,
    take: shardwise_metrics::LeaseStoreMetrics,
}

impl Metrics {
    fn new(ctx: &Context) -> Self {
        use shardwise_metrics::{LeaseStoreMetrics, operation};
        let (names, level, worker) = (
            &ctx.metric_names,
            ctx.config.metrics_level,
            ctx.worker_id.as_str(),
        );
        Self {
            leases: ctx.worker_metrics.clone(),
            list: LeaseStoreMetrics::register(names, level, worker, operation::LIST_LEASES),
            take: LeaseStoreMetrics::register(names, level, worker, operation::TAKE_LEASE),
        }
    }
}

struct Held {
    grant: Arc<Grant>,
}

/// A lease this worker asked another worker to hand over.
struct Awaiting {
    /// When it was asked for.
    since: Instant,
    /// The counter last seen, and since when: a holder that stops renewing is gone.
    counter: u64,
    changed: Instant,
}

/// One shard sync of every stream, logged.
async fn sync_shards(ctx: &Context) {
    for scope in ctx.streams.scopes() {
        if !ctx.streams.is_current(ctx.kinesis.as_ref(), &scope).await {
            continue;
        }
        match crate::shard_sync::sync(ctx.kinesis.as_ref(), ctx.store.as_ref(), &scope).await {
            Ok(created) if created > 0 => {
                info!(stream = scope.name(), created, "shard sync created leases")
            }
            Ok(_) => {}
            Err(e) => {
                warn!(stream = scope.name(), error = %e, "shard sync failed; retrying at the next interval")
            }
        }
    }
}

/// The lease coordinator's state.
pub(crate) struct Worker {
    ctx: Arc<Context>,
    held: BTreeMap<LeaseKey, Held>,
    /// The grants of `held`, shared with the renewer.
    grants: crate::renewer::Grants,
    pipelines: JoinSet<(LeaseKey, u64, PipelineEnd)>,
    tracker: ExpiryTracker,
    /// Leases this worker released after failures: not taken back before this time.
    cooling: BTreeMap<LeaseKey, Instant>,
    /// Leases asked for, until they are handed over (or the hand-off ends otherwise).
    awaiting: BTreeMap<LeaseKey, Awaiting>,
    /// Streams with leases that the tracker no longer names, and since when this worker has
    /// seen them so.
    former: BTreeMap<shardwise_lease_core::StreamIdentifier, Instant>,
    metrics: Metrics,
    /// Take rounds done. The first round only takes free or expired leases: a worker that just
    /// started does not steal from workers that may have just started too (their first batch
    /// would be replayed).
    rounds: u64,
}

impl Worker {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        Self {
            metrics: Metrics::new(&ctx),
            ctx,
            held: BTreeMap::new(),
            grants: Default::default(),
            pipelines: JoinSet::new(),
            tracker: ExpiryTracker::new(),
            cooling: BTreeMap::new(),
            awaiting: BTreeMap::new(),
            former: BTreeMap::new(),
            rounds: 0,
        }
    }

    /// Runs until `cancel` fires, then shuts down gracefully.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let config = self.ctx.config.clone();
        let renewer_stop = CancellationToken::new();
        // Aborted if this future is dropped (the worker killed), like the pipelines in the
        // JoinSet: nothing renews the leases of a worker that is gone.
        let renewer = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(crate::renewer::run(
            self.ctx.clone(),
            self.grants.clone(),
            renewer_stop.clone(),
        )));
        // The first shard sync runs before the first take round (leases exist at once, so the
        // first records flow within a second); later ones run in their own task, so that a slow
        // ListShards never delays taking leases.
        let ctx = &self.ctx;
        ctx.streams
            .refresh(ctx.kinesis.as_ref(), &ctx.config, &ctx.application)
            .await;
        sync_shards(ctx).await;
        let syncer = tokio_util::task::AbortOnDropHandle::new(tokio::spawn({
            let (ctx, stop) = (self.ctx.clone(), cancel.clone());
            async move {
                let mut next_sync = Instant::now() + ctx.config.shard_sync_interval;
                let mut next_tracking = Instant::now() + ctx.config.stream_tracker_interval;
                loop {
                    tokio::select! {
                        biased;
                        () = stop.cancelled() => return,
                        // A multi-stream application asks its tracker, then syncs at once, so
                        // that a new stream gets leases within one tracker interval.
                        () = tokio::time::sleep_until(next_tracking), if ctx.streams.is_multi() => {
                            ctx.streams
                                .refresh(ctx.kinesis.as_ref(), &ctx.config, &ctx.application)
                                .await;
                            next_tracking = Instant::now() + ctx.config.stream_tracker_interval;
                        }
                        () = tokio::time::sleep_until(next_sync) => {}
                    }
                    sync_shards(&ctx).await;
                    next_sync = Instant::now() + ctx.config.shard_sync_interval;
                }
            }
        }));
        let mut next_take = Instant::now();
        let mut next_poll = Instant::now();
        loop {
            if Instant::now() >= next_take {
                self.take().await;
                next_take = Instant::now() + config.take_interval;
            }
            if Instant::now() >= next_poll {
                self.poll_handoffs().await;
                next_poll = Instant::now() + config.parent_poll_interval;
            }
            // Biased, here and in every select of the worker: which of several ready branches
            // runs is then a function of the state, so that a simulated run replays exactly.
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                Some(done) = self.pipelines.join_next(), if !self.pipelines.is_empty() => self.reap(done).await,
                () = tokio::time::sleep_until(next_poll), if !self.awaiting.is_empty() => {}
                () = tokio::time::sleep_until(next_take) => {}
            }
        }
        drop(syncer);
        // The renewer keeps the leases until every pipeline has had its chance to checkpoint
        // and every lease is released.
        self.shut_down().await;
        renewer_stop.cancel();
        let _ = renewer.await;
    }

    /// Lists leases, observes counters, and takes or steals what the balancing decision says.
    async fn take(&mut self) {
        let started = Instant::now();
        let listed = self.ctx.store.list().await;
        self.metrics.list.time.record(millis(started));
        let listing = match listed {
            Ok(listing) => listing,
            Err(e) => {
                self.metrics.list.failures.increment(1);
                warn!(error = %e, "listing leases failed");
                return;
            }
        };
        let now = Instant::now();
        // A held lease that the listing shows with another holder was taken (we took every
        // held lease before this listing was read): stop its processing now rather than at the
        // next renewal, to keep the window for replays short. One that another worker asked
        // for is handed over (a request that left the counter alone, as the Java KCL 3.x
        // writes it, shows only here).
        let me = &self.ctx.worker_id;
        for lease in &listing.leases {
            let Some(held) = self.held.get(&lease.key) else {
                continue;
            };
            if held.grant.is_lost() {
                continue;
            }
            if self.ctx.streams.scope_of(&lease.key).is_none() && !held.grant.stop.is_cancelled() {
                info!(lease = %lease.key, "its stream is no longer consumed; releasing the lease");
                held.grant.stop.cancel();
            }
            if !lease.is_held_by(me) {
                info!(lease = %lease.key, owner = ?lease.owner, "lease taken by another worker");
                held.grant.lost.cancel();
            } else if lease.checkpoint_owner.as_ref() == Some(me) {
                held.grant.asked_in_listing(lease);
            }
        }
        // A lease asked of this worker that it does not run (an earlier process with the same
        // id held it, or it was asked for one just handed to it, before it started): handed on
        // at once, with nothing to checkpoint, rather than after a lease duration.
        for lease in &listing.leases {
            if lease.checkpoint_owner.as_ref() == Some(me) && !self.held.contains_key(&lease.key) {
                match self.ctx.store.evict(&lease.key, me, lease.counter).await {
                    Ok(Race::Won(_)) => {
                        info!(lease = %lease.key, to = ?lease.owner, "a lease asked of this worker, which does not run it, handed on")
                    }
                    Ok(Race::Lost) => {}
                    Err(e) => debug!(lease = %lease.key, error = %e, "handing on a lease failed"),
                }
            }
        }
        self.forget_former_streams(&listing.leases).await;
        self.tracker.observe_all(&listing.leases, now.into_std());
        self.cooling.retain(|_, until| *until > now);
        let mut expired = self
            .tracker
            .expired_keys(now.into_std(), self.ctx.config.lease_duration);
        // Leases in cooldown are not offered (we just gave them up after failures).
        expired.retain(|k| !self.cooling.contains_key(k));
        let held: HashSet<LeaseKey> = self.held.keys().cloned().collect();
        // Only the leases of the streams consumed now count and are taken.
        let leases: Vec<_> = listing
            .leases
            .iter()
            .filter(|l| !self.cooling.contains_key(&l.key))
            .filter(|l| self.ctx.streams.scope_of(&l.key).is_some())
            .cloned()
            .collect();
        let config = BalanceConfig {
            max_leases_per_worker: self.ctx.config.max_leases_per_worker,
            max_leases_to_steal_at_one_time: self.ctx.config.max_leases_to_steal_at_one_time,
        };
        let mut plan = plan_takes(BalanceInput {
            leases: &leases,
            expired: &expired,
            me: &self.ctx.worker_id,
            held: &held,
            config: &config,
        });
        self.rounds += 1;
        if self.rounds == 1 {
            plan.steal.clear();
        }
        // A key whose pipeline still runs here (lost, not yet reaped) is never taken again
        // until it is reaped: two pipelines of one shard must not run in one worker.
        plan.take.retain(|c| !self.held.contains_key(&c.key));
        plan.steal
            .retain(|c| !self.held.contains_key(&c.key) && !self.awaiting.contains_key(&c.key));
        self.metrics
            .leases
            .total_leases
            .set(plan.total_leases as f64);
        self.metrics.leases.num_workers.set(plan.workers as f64);
        self.metrics
            .leases
            .expired_leases
            .set(plan.available as f64);
        for candidate in &plan.take {
            let handing = listing
                .leases
                .iter()
                .any(|l| l.key == candidate.key && l.is_handing_off());
            self.take_lease(&candidate.key, candidate.counter, handing)
                .await;
        }
        for candidate in &plan.steal {
            self.request_handoff(candidate).await;
        }
    }

    /// Deletes the free leases of streams the tracker no longer names, once gone as long as
    /// [`FormerStreams`](crate::FormerStreams) says (measured from when this worker first saw
    /// them untracked). Deletes are conditional: a lease someone still writes is left for the
    /// next round.
    async fn forget_former_streams(&mut self, leases: &[shardwise_lease_core::Lease]) {
        use crate::config::FormerStreams;
        if !self.ctx.streams.is_multi() {
            return;
        }
        let now = Instant::now();
        let mut untracked = std::collections::BTreeSet::new();
        for lease in leases {
            if let Some((stream, _)) = lease.key.stream_shard()
                && self.ctx.streams.scope_of(&lease.key).is_none()
            {
                untracked.insert(stream);
            }
        }
        self.former.retain(|stream, _| untracked.contains(stream));
        for stream in &untracked {
            self.former.entry(stream.clone()).or_insert(now);
        }
        let due = |stream: &shardwise_lease_core::StreamIdentifier, since: Instant| {
            let gone = now.saturating_duration_since(since);
            match &self.ctx.config.former_streams {
                FormerStreams::Keep => false,
                FormerStreams::DeleteAfter(after) => gone >= *after,
                FormerStreams::DeleteListedAfter(listed, after) => {
                    gone >= *after && listed.contains(stream)
                }
            }
        };
        for lease in leases.iter().filter(|l| l.owner.is_none()) {
            let Some((stream, _)) = lease.key.stream_shard() else {
                continue;
            };
            let Some(since) = self.former.get(&stream).copied() else {
                continue;
            };
            if due(&stream, since)
                && let Ok(Race::Won(())) = self.ctx.store.delete(&lease.key, lease.counter).await
            {
                info!(lease = %lease.key, "lease of a former stream deleted");
            }
        }
    }

    /// Takes a lease at `counter` and starts its pipeline. `handing`: the lease is in a
    /// hand-off, whose holder is gone (or too late).
    async fn take_lease(&mut self, key: &LeaseKey, counter: u64, handing: bool) {
        let started = Instant::now();
        let taken = self.ctx.store.take(key, counter, &self.ctx.worker_id).await;
        self.metrics.take.time.record(millis(started));
        let awaited = self.awaiting.remove(key);
        match taken {
            Ok(Race::Won(lease)) => {
                self.metrics.leases.taken_leases.increment(1);
                if let Some(awaited) = &awaited {
                    let metrics = &self.metrics.leases;
                    metrics.stolen_leases.increment(1);
                    if handing {
                        metrics.handoffs_timed_out.increment(1);
                    } else {
                        metrics.handoffs_completed.increment(1);
                    }
                    metrics.handoff_time.record(millis(awaited.since));
                }
                self.tracker.observe(&lease, Instant::now().into_std());
                let Some(grant) = Grant::for_lease(&lease) else {
                    warn!(lease = %lease.key, "lease key is not a shard id; releasing it");
                    let _ = self
                        .ctx
                        .store
                        .evict(&lease.key, &self.ctx.worker_id, lease.counter)
                        .await;
                    return;
                };
                info!(lease = %lease.key, handed_over = awaited.is_some() && !handing, "lease taken");
                self.start_pipeline(Arc::new(grant));
            }
            Ok(Race::Lost) => {
                debug!(lease = %key, "another worker took the lease first")
            }
            Err(e) => {
                self.metrics.take.failures.increment(1);
                warn!(lease = %key, error = %e, "taking the lease failed");
            }
        }
    }

    /// Asks the holder of a live worker's lease to hand it over; the lease is taken once the
    /// holder has let its processor checkpoint and given it up ([`Worker::poll_handoffs`]).
    async fn request_handoff(&mut self, candidate: &Candidate) {
        let Some(holder) = &candidate.owner else {
            return;
        };
        let started = Instant::now();
        let asked = self
            .ctx
            .store
            .request_handoff(
                &candidate.key,
                candidate.counter,
                holder,
                &self.ctx.worker_id,
            )
            .await;
        self.metrics.take.time.record(millis(started));
        match asked {
            Ok(Race::Won(lease)) => {
                self.metrics.leases.handoffs_requested.increment(1);
                info!(lease = %lease.key, from = %holder, "asked for a hand-off");
                let now = Instant::now();
                self.awaiting.insert(
                    lease.key,
                    Awaiting {
                        since: started,
                        counter: lease.counter,
                        changed: now,
                    },
                );
            }
            Ok(Race::Lost) => {
                debug!(lease = %candidate.key, "the lease changed before the hand-off request")
            }
            Err(e) => {
                self.metrics.take.failures.increment(1);
                warn!(lease = %candidate.key, error = %e, "asking for a hand-off failed");
            }
        }
    }

    /// Looks at every lease asked for: takes it once its holder has handed it over, or when
    /// the holder is gone (its counter unchanged for a lease duration, the usual expiry rule) or
    /// has not finished within the hand-off timeout plus a lease duration.
    async fn poll_handoffs(&mut self) {
        let keys: Vec<LeaseKey> = self.awaiting.keys().cloned().collect();
        let config = &self.ctx.config;
        let (lease_duration, give_up) = (
            config.lease_duration,
            config.handoff_timeout.saturating_add(config.lease_duration),
        );
        for key in keys {
            let lease = match self.ctx.store.get(&key).await {
                Ok(Some(lease)) if lease.is_owned_by(&self.ctx.worker_id) => lease,
                Ok(_) => {
                    info!(lease = %key, "a lease asked for went elsewhere");
                    self.awaiting.remove(&key);
                    continue;
                }
                Err(e) => {
                    debug!(lease = %key, error = %e, "reading a lease asked for failed");
                    continue;
                }
            };
            if !lease.is_handing_off() {
                self.take_lease(&key, lease.counter, false).await;
                continue;
            }
            let now = Instant::now();
            let Some(awaited) = self.awaiting.get_mut(&key) else {
                continue;
            };
            if awaited.counter != lease.counter {
                awaited.counter = lease.counter;
                awaited.changed = now;
            }
            let gone = now.saturating_duration_since(awaited.changed) >= lease_duration;
            let late = now.saturating_duration_since(awaited.since) >= give_up;
            if gone || late {
                warn!(lease = %key, holder = ?lease.checkpoint_owner, gone, "the hand-off did not complete; taking the lease");
                self.take_lease(&key, lease.counter, true).await;
            }
        }
    }

    fn start_pipeline(&mut self, grant: Arc<Grant>) {
        let stop = grant.stop.clone();
        let key = grant.key.clone();
        let token = grant.token;
        let span = info_span!("shard", shard = %grant.shard_id, worker = %self.ctx.worker_id);
        let future = pipeline::run(self.ctx.clone(), grant.clone(), stop.clone());
        // A panic anywhere in the pipeline (the processor factory included) ends it as a
        // failure, so its lease is released and the shard retried, never left held and idle.
        let future = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(future));
        self.pipelines.spawn(
            async move {
                let end = future.await.unwrap_or_else(|_| {
                    warn!("a shard pipeline panicked; its lease is released");
                    PipelineEnd::Failed
                });
                (key, token, end)
            }
            .instrument(span),
        );
        self.grants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(grant.key.clone(), grant.clone());
        self.held.insert(grant.key.clone(), Held { grant });
        self.metrics
            .leases
            .current_leases
            .set(self.held.len() as f64);
    }

    /// A pipeline finished: settle its lease.
    async fn reap(&mut self, done: Result<(LeaseKey, u64, PipelineEnd), tokio::task::JoinError>) {
        let Ok((key, token, end)) = done else {
            // Pipelines catch their panics: a join error is an abort at shutdown, whose leases
            // `shut_down` releases.
            return;
        };
        let Some(held) = self.held.get(&key) else {
            return;
        };
        if held.grant.token != token {
            return;
        }
        let Some(held) = self.held.remove(&key) else {
            return;
        };
        self.grants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&key);
        self.metrics
            .leases
            .current_leases
            .set(self.held.len() as f64);
        match end {
            PipelineEnd::LeaseLost => self.metrics.leases.lost_leases.increment(1),
            PipelineEnd::ShardEnded | PipelineEnd::ShutDown => self.release(&held.grant).await,
            PipelineEnd::Failed => {
                self.release(&held.grant).await;
                self.cooling
                    .insert(key, Instant::now() + self.ctx.config.lease_duration);
            }
        }
    }

    /// Gives a lease back so another worker can take it at once: to nobody, or during a
    /// hand-off to the worker that asked for it.
    async fn release(&self, grant: &Grant) {
        let _turn = grant.writing.lock().await;
        if grant.is_lost() {
            return;
        }
        let (store, me) = (self.ctx.store.as_ref(), &self.ctx.worker_id);
        // A counter in doubt that cannot be settled is tried as it is: at worst the release
        // loses its race and the lease expires.
        let _ = grant.settle_doubt(store, me).await;
        for attempt in 0..2 {
            if grant.is_lost() {
                return;
            }
            let counter = grant.state().counter;
            match store.evict(&grant.key, me, counter).await {
                Ok(Race::Won(lease)) => {
                    grant.lost.cancel();
                    match &lease.owner {
                        Some(to) => info!(lease = %grant.key, to = %to, "lease handed over"),
                        None => debug!(lease = %grant.key, "lease released"),
                    }
                    return;
                }
                // Asked for meanwhile? Read back, the release is tried once more.
                Ok(Race::Lost) if attempt == 0 => {
                    if !matches!(grant.reread(store, me).await, Ok(true)) {
                        break;
                    }
                }
                Ok(Race::Lost) => break,
                Err(e) => {
                    warn!(lease = %grant.key, error = %e, "releasing the lease failed; it will expire");
                    break;
                }
            }
        }
        grant.lost.cancel();
    }

    /// Graceful shutdown: every pipeline gets `shutdown_requested` (bounded by the shutdown
    /// timeout), then every lease is released so other workers take it at once.
    async fn shut_down(mut self) {
        info!(leases = self.held.len(), "worker shutting down");
        for held in self.held.values() {
            held.grant.stop.cancel();
        }
        let deadline = Instant::now() + self.ctx.config.shutdown_timeout;
        while !self.pipelines.is_empty() {
            match tokio::time::timeout_at(deadline, self.pipelines.join_next()).await {
                Ok(Some(done)) => self.reap(done).await,
                Ok(None) => break,
                Err(_) => {
                    warn!("processors did not finish within the shutdown timeout");
                    self.pipelines.abort_all();
                    break;
                }
            }
        }
        let remaining: Vec<Arc<Grant>> = std::mem::take(&mut self.held)
            .into_values()
            .map(|h| h.grant)
            .collect();
        self.grants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        for grant in remaining {
            self.release(&grant).await;
        }
        info!("worker stopped");
    }
}
