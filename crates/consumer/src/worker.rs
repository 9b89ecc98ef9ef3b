//! The worker: shard sync, lease coordination (renew, take, steal, release) and one pipeline per
//! held shard.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use shardwise_lease_core::{
    BalanceConfig, BalanceInput, Candidate, ExpiryTracker, LeaseKey, Race, WorkerId, plan_takes,
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
    /// When the table version was last moved for it: moved again every two take intervals
    /// while the holder has not reacted, in case the increment was lost.
    bumped: Instant,
}

/// One shard sync of every stream, logged.
async fn sync_shards(ctx: &Context) {
    for scope in ctx.streams.scopes() {
        if !ctx.streams.is_current(ctx.kinesis.as_ref(), &scope).await {
            continue;
        }
        match crate::shard_sync::sync(ctx.kinesis.as_ref(), ctx.store.as_ref(), &scope).await {
            Ok(created) if created > 0 => {
                info!(stream = scope.name(), created, "shard sync created leases");
                ctx.bump_version().await;
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
    /// What the last listing was made under (with heartbeats, a round lists only when this no
    /// longer holds).
    listed: Option<Listed>,
    /// Leases were released since the table version was last moved.
    released: bool,
    /// Whether the last read of the membership record worked.
    members_fresh: bool,
}

/// What a listing saw beyond the leases: whether a later round can trust it.
struct Listed {
    /// The table version read before the listing.
    version: u64,
    /// The members alive then.
    alive: BTreeSet<WorkerId>,
    /// The streams consumed then.
    scopes: Vec<String>,
    /// When the next full listing is due however quiet the table.
    next_full: Instant,
    /// Whether the listing left work that needs another look: a plan not carried out in full,
    /// leases held by workers that are not live members (their counters must be watched).
    unsettled: bool,
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
            listed: None,
            released: false,
            members_fresh: false,
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
                    if ctx.beat.syncs_shards() {
                        sync_shards(&ctx).await;
                    }
                    next_sync = Instant::now() + ctx.config.shard_sync_interval;
                }
            }
        }));
        if self.heartbeats() {
            crate::renewer::first_heartbeat(&self.ctx).await;
        }
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
            if std::mem::take(&mut self.released) {
                self.ctx.bump_version().await;
            }
        }
        drop(syncer);
        // The renewer keeps the leases until every pipeline has had its chance to checkpoint
        // and every lease is released.
        let ctx = self.ctx.clone();
        self.shut_down().await;
        renewer_stop.cancel();
        let _ = renewer.await;
        if ctx.config.liveness == crate::Liveness::Heartbeat
            && let Some((heartbeat, _)) = ctx.beat.last()
        {
            match ctx.store.leave(&ctx.worker_id, heartbeat).await {
                Ok(Race::Won(())) => debug!("left the membership"),
                Ok(Race::Lost) => {}
                Err(e) => {
                    debug!(error = %e, "leaving the membership failed; other workers forget this worker once it is silent")
                }
            }
        }
    }

    /// With heartbeats, no lease is taken unless the heartbeat is recent: the lease would be
    /// given up at once, and others may already judge this worker dead.
    fn may_take(&self, now: Instant) -> bool {
        let recent = self.ctx.config.give_up_after();
        !self.heartbeats()
            || self
                .ctx
                .beat
                .last()
                .is_some_and(|(_, sent)| now.saturating_duration_since(sent) < recent)
    }

    /// Whether this worker heartbeats instead of renewing each lease.
    fn heartbeats(&self) -> bool {
        self.ctx.config.liveness == crate::Liveness::Heartbeat
    }

    /// Reads the membership record before a take round: observes the heartbeats, and decides
    /// whether this worker's writes move the table version. `None` when it could not be read
    /// (the round does not go on).
    async fn read_membership(&mut self) -> Option<u64> {
        let me = &self.ctx.worker_id;
        let membership = match self.ctx.store.membership().await {
            Ok(membership) => membership,
            // No round without it, whatever this worker's own mode: what it last read may be
            // old (it was frozen, say), and a member it saw dead may be back under its id.
            Err(e) => {
                self.metrics.list.failures.increment(1);
                self.members_fresh = false;
                warn!(error = %e, "reading the membership failed; no lease is taken this round");
                return None;
            }
        };
        self.members_fresh = true;
        // Observed when the answer came: a heartbeat is judged from then.
        self.tracker.observe_members(
            &membership,
            Instant::now().into_std(),
            self.ctx.config.lease_duration,
        );
        self.ctx
            .beat
            .set_bumps(self.heartbeats() || !membership.heartbeats.is_empty());
        // Renewing per lease, an entry under this worker's id is a former process's, which
        // heartbeated: left alone it would soon make this worker's leases look dead.
        if !self.heartbeats()
            && let Some(heartbeat) = membership.heartbeats.get(me)
            && let Err(e) = self.ctx.store.leave(me, *heartbeat).await
        {
            warn!(error = %e, "removing a former heartbeat of this worker id failed");
        }
        Some(membership.version)
    }

    /// With heartbeats: whether this round must list the leases.
    fn needs_listing(&self, version: u64, alive: &BTreeSet<WorkerId>, now: Instant) -> bool {
        let Some(listed) = &self.listed else {
            return true;
        };
        !self.heartbeats()
            || self.rounds < 2
            || listed.unsettled
            || listed.version != version
            || &listed.alive != alive
            || now >= listed.next_full
            || !self.cooling.is_empty()
            || !self.former.is_empty()
            || !self.awaiting.is_empty()
            || listed.scopes != self.scope_names()
    }

    fn scope_names(&self) -> Vec<String> {
        self.ctx
            .streams
            .scopes()
            .iter()
            .map(|s| s.name().to_owned())
            .collect()
    }

    /// When the next full listing is due: the full-listing interval, shortened by up to a
    /// twentieth by a hash of the worker id, so that workers started together spread their
    /// listings.
    fn next_full_listing(&self, now: Instant) -> Instant {
        use std::hash::{Hash, Hasher};
        let interval = self.ctx.config.full_listing_interval;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.ctx.worker_id.hash(&mut hasher);
        self.rounds.hash(&mut hasher);
        let spread = interval / 20;
        let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX).max(1);
        now + interval - std::time::Duration::from_nanos(hasher.finish() % nanos)
    }

    /// With heartbeats: forgets members silent for three lease durations that the listing
    /// shows holding nothing (their leases were taken long ago).
    async fn forget_dead_members(&self, leases: &[shardwise_lease_core::Lease], now: Instant) {
        if !self.heartbeats() {
            return;
        }
        let silent = self
            .tracker
            .members()
            .silent(now.into_std(), self.ctx.config.lease_duration * 3);
        for (worker, heartbeat) in silent {
            if worker == self.ctx.worker_id || leases.iter().any(|l| l.is_held_by(&worker)) {
                continue;
            }
            match self.ctx.store.leave(&worker, heartbeat).await {
                Ok(Race::Won(())) => info!(worker = %worker, "a silent member forgotten"),
                Ok(Race::Lost) => {}
                Err(e) => debug!(worker = %worker, error = %e, "forgetting a silent member failed"),
            }
        }
    }

    /// Lists leases, observes counters, and takes or steals what the balancing decision says.
    /// With heartbeats, first reads the membership record, and lists only when something
    /// changed since the last listing.
    async fn take(&mut self) {
        let started = Instant::now();
        if !self.may_take(started) {
            debug!("no recent heartbeat; taking nothing this round");
            return;
        }
        if self.ctx.beat.owed() {
            self.ctx.bump_version().await;
        }
        let Some(version) = self.read_membership().await else {
            return;
        };
        let alive = self
            .tracker
            .members()
            .alive(started.into_std(), self.ctx.config.lease_duration);
        // One worker syncs shards: the live member with the lowest id (any worker until the
        // membership is known; two at once for a moment is harmless, as every write of a sync
        // is conditional). A shard's children do not wait for it: the pipeline that ends the
        // shard creates their leases.
        self.ctx.beat.set_syncs_shards(
            !self.heartbeats() || alive.first().is_none_or(|w| w == &self.ctx.worker_id),
        );
        if !self.needs_listing(version, &alive, started) {
            return;
        }
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
        let ctx = self.ctx.clone();
        let me = &ctx.worker_id;
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
        // With heartbeats no renewal finds a row that is gone (deleted by an operator): a held
        // lease missing from the listing, and not corrupt, is read once more, and stopped when
        // it is really gone.
        if self.heartbeats() {
            let listed: HashSet<&LeaseKey> = listing.leases.iter().map(|l| &l.key).collect();
            let corrupt: HashSet<&str> =
                listing.corrupt.iter().map(|c| c.raw_key.as_str()).collect();
            let missing: Vec<Arc<Grant>> = self
                .held
                .values()
                .filter(|h| !h.grant.is_lost())
                .filter(|h| {
                    !listed.contains(&h.grant.key) && !corrupt.contains(h.grant.key.as_str())
                })
                .map(|h| h.grant.clone())
                .collect();
            for grant in missing {
                if let Ok(None) = self.ctx.store.get(&grant.key).await {
                    warn!(lease = %grant.key, "the lease row is gone (deleted); stopping its processing");
                    grant.lost.cancel();
                }
            }
        }
        // With heartbeats no renewal finds a request that moved the counter: a held lease
        // listed past the grant's counter is read back, in its turn to write (a write in
        // flight reads it back itself when it loses).
        if self.heartbeats() {
            let changed: Vec<Arc<Grant>> = listing
                .leases
                .iter()
                .filter_map(|lease| {
                    let held = self.held.get(&lease.key)?;
                    (!held.grant.is_lost() && lease.counter > held.grant.state().counter)
                        .then(|| held.grant.clone())
                })
                .collect();
            for grant in changed {
                let Ok(_turn) = grant.writing.try_lock() else {
                    continue;
                };
                match grant.reread(self.ctx.store.as_ref(), me).await {
                    Ok(true) => {}
                    Ok(false) => info!(lease = %grant.key, "lease lost (found in a listing)"),
                    Err(e) => {
                        debug!(lease = %grant.key, error = %e, "reading a changed lease failed")
                    }
                }
            }
        }
        // A lease asked of this worker that it does not run (an earlier process with the same
        // id held it, or it was asked for one just handed to it, before it started): handed on
        // at once, with nothing to checkpoint, rather than after a lease duration.
        let mut changed = false;
        for lease in &listing.leases {
            if lease.checkpoint_owner.as_ref() == Some(me) && !self.held.contains_key(&lease.key) {
                match self.ctx.store.evict(&lease.key, me, lease.counter).await {
                    Ok(Race::Won(_)) => {
                        changed = true;
                        info!(lease = %lease.key, to = ?lease.owner, "a lease asked of this worker, which does not run it, handed on")
                    }
                    Ok(Race::Lost) => {}
                    Err(e) => debug!(lease = %lease.key, error = %e, "handing on a lease failed"),
                }
            }
        }
        changed |= self.forget_former_streams(&listing.leases).await;
        self.forget_dead_members(&listing.leases, now).await;
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
        // Whatever keeps it from acting now (the first round, a lease still running here or
        // already asked for), a decision to act is looked at again next round.
        let wanted = !plan.is_empty();
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
        // Leases of workers that are not live members: renewed per lease (their counters must
        // be watched) or left by dead members (to be taken).
        let unwatched = listing
            .leases
            .iter()
            .any(|l| !l.is_ended() && l.holder().is_some_and(|h| h != me && !alive.contains(h)));
        self.listed = Some(Listed {
            version,
            alive,
            scopes: self.scope_names(),
            next_full: self.next_full_listing(now),
            unsettled: wanted || unwatched,
        });
        for candidate in &plan.take {
            let handing = listing
                .leases
                .iter()
                .any(|l| l.key == candidate.key && l.is_handing_off());
            changed |= self
                .take_lease(&candidate.key, candidate.counter, handing)
                .await;
        }
        for candidate in &plan.steal {
            changed |= self.request_handoff(candidate).await;
        }
        if changed {
            self.ctx.bump_version().await;
        }
    }

    /// Deletes the free leases of streams the tracker no longer names, once gone as long as
    /// [`FormerStreams`](crate::FormerStreams) says (measured from when this worker first saw
    /// them untracked). Deletes are conditional: a lease someone still writes is left for the
    /// next round.
    async fn forget_former_streams(&mut self, leases: &[shardwise_lease_core::Lease]) -> bool {
        use crate::config::FormerStreams;
        if !self.ctx.streams.is_multi() {
            return false;
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
        let mut deleted = false;
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
                deleted = true;
                info!(lease = %lease.key, "lease of a former stream deleted");
            }
        }
        deleted
    }

    /// Takes a lease at `counter` and starts its pipeline. `handing`: the lease is in a
    /// hand-off, whose holder is gone (or too late).
    /// Returns whether the lease changed (taken, or released at once).
    async fn take_lease(&mut self, key: &LeaseKey, counter: u64, handing: bool) -> bool {
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
                    return true;
                };
                let grant = if self.heartbeats() {
                    // Held from the last heartbeat that succeeded (the take is recent enough,
                    // see `take`), not from the take: only heartbeats keep it.
                    let grant = grant.renewed_by_heartbeat();
                    if let Some((_, sent)) = self.ctx.beat.last() {
                        grant.state().renewed_at = sent;
                    }
                    grant
                } else {
                    grant
                };
                info!(lease = %lease.key, handed_over = awaited.is_some() && !handing, "lease taken");
                self.start_pipeline(Arc::new(grant));
                true
            }
            Ok(Race::Lost) => {
                debug!(lease = %key, "another worker took the lease first");
                false
            }
            Err(e) => {
                self.metrics.take.failures.increment(1);
                warn!(lease = %key, error = %e, "taking the lease failed");
                false
            }
        }
    }

    /// Asks the holder of a live worker's lease to hand it over; the lease is taken once the
    /// holder has let its processor checkpoint and given it up ([`Worker::poll_handoffs`]).
    /// Returns whether the request was written.
    async fn request_handoff(&mut self, candidate: &Candidate) -> bool {
        let Some(holder) = &candidate.owner else {
            return false;
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
                        bumped: now,
                    },
                );
                true
            }
            Ok(Race::Lost) => {
                debug!(lease = %candidate.key, "the lease changed before the hand-off request");
                false
            }
            Err(e) => {
                self.metrics.take.failures.increment(1);
                warn!(lease = %candidate.key, error = %e, "asking for a hand-off failed");
                false
            }
        }
    }

    /// Looks at every lease asked for: takes it once its holder has handed it over, or when
    /// the holder is gone (its counter unchanged for a lease duration, the usual expiry rule) or
    /// has not finished within the hand-off timeout plus a lease duration.
    async fn poll_handoffs(&mut self) {
        // Taking needs what a take round needs: with heartbeats a recent heartbeat, and in any
        // mode a membership read that worked (a holder judged by an old read may be back).
        if !self.may_take(Instant::now()) || !self.members_fresh {
            return;
        }
        let keys: Vec<LeaseKey> = self.awaiting.keys().cloned().collect();
        let config = &self.ctx.config;
        let (lease_duration, give_up, rebump) = (
            config.lease_duration,
            config.handoff_timeout.saturating_add(config.lease_duration),
            config.take_interval * 2,
        );
        let mut changed = false;
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
                changed |= self.take_lease(&key, lease.counter, false).await;
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
            // A holder that is a member is gone when its heartbeat stopped (it does not renew
            // the lease itself); any other when the lease's counter stopped.
            // A live member is never hurried: it knows the protocol and hands over within its
            // hand-off timeout once it learns of the request (the version is moved again until
            // it does); taking the lease from it would have both process the shard until it
            // next lists. Only a worker that is not a member (a Java KCL worker, which may
            // ignore the request) is taken from when late.
            let members = self.tracker.members();
            let (gone, late) = match &lease.checkpoint_owner {
                Some(holder) if members.is_member(holder) => (
                    !members.is_alive(holder, now.into_std(), lease_duration),
                    false,
                ),
                _ => (
                    now.saturating_duration_since(awaited.changed) >= lease_duration,
                    now.saturating_duration_since(awaited.since) >= give_up,
                ),
            };
            if !gone && !late && now.saturating_duration_since(awaited.bumped) >= rebump {
                awaited.bumped = now;
                changed = true;
            }
            if gone || late {
                warn!(lease = %key, holder = ?lease.checkpoint_owner, gone, "the hand-off did not complete; taking the lease");
                changed |= self.take_lease(&key, lease.counter, true).await;
            }
        }
        if changed {
            self.ctx.bump_version().await;
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
        if end == PipelineEnd::LeaseLost {
            self.metrics.leases.lost_leases.increment(1);
        }
        if end == PipelineEnd::LeaseLost || held.grant.is_lost() {
            // However the pipeline ended (a shutdown or a hand-off can race the loss).
            if self.heartbeats() {
                self.hand_back(&held.grant).await;
            }
            return;
        }
        self.release(&held.grant).await;
        self.released = true;
        if end == PipelineEnd::Failed {
            self.cooling
                .insert(key, Instant::now() + self.ctx.config.lease_duration);
        }
    }

    /// With heartbeats, a lease this worker stopped processing because its heartbeat failed
    /// (or came too late) may still be recorded as its own, and its heartbeat, once it works
    /// again, would keep it alive for every other worker with nobody processing it. It is
    /// released at the counter the grant knows (if nobody took it meanwhile; otherwise the
    /// write loses, which is fine), and the next round lists the table.
    async fn hand_back(&mut self, grant: &Grant) {
        let counter = grant.state().counter;
        match self
            .ctx
            .store
            .evict(&grant.key, &self.ctx.worker_id, counter)
            .await
        {
            Ok(Race::Won(_)) => {
                info!(lease = %grant.key, "a lease this worker stopped processing released");
                self.released = true;
            }
            Ok(Race::Lost) => {}
            Err(e) => debug!(lease = %grant.key, error = %e, "releasing a lost lease failed"),
        }
        self.listed = None;
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

    /// At shutdown: the leases this worker asked for are handed over to it by their holders
    /// (which may be finishing right now), and nobody would run them. Each is released once
    /// handed over, waiting for the holders at most a lease duration (within the shutdown
    /// deadline); one still in hand-off after that expires as a dead worker's lease.
    async fn release_awaited(&mut self, deadline: Instant) {
        let deadline = deadline.min(Instant::now() + self.ctx.config.lease_duration);
        let me = self.ctx.worker_id.clone();
        while !self.awaiting.is_empty() {
            let keys: Vec<LeaseKey> = self.awaiting.keys().cloned().collect();
            for key in keys {
                let lease = match self.ctx.store.get(&key).await {
                    Ok(Some(lease)) if lease.is_owned_by(&me) => lease,
                    Ok(_) => {
                        self.awaiting.remove(&key);
                        continue;
                    }
                    Err(_) => continue,
                };
                if lease.is_handing_off() {
                    continue;
                }
                if let Ok(Race::Won(_)) = self.ctx.store.evict(&key, &me, lease.counter).await {
                    debug!(lease = %key, "a lease handed over to this worker released at shutdown");
                    self.released = true;
                }
                self.awaiting.remove(&key);
            }
            if self.awaiting.is_empty() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(self.ctx.config.parent_poll_interval).await;
        }
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
            self.released = true;
        }
        self.release_awaited(deadline).await;
        if self.released {
            self.ctx.bump_version().await;
        }
        info!("worker stopped");
    }
}
