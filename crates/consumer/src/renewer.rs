//! The renewer: its own task, on its own timer, so that nothing the coordinator does (a long
//! shard sync, a big take round, shutdown) ever delays a renewal.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use shardwise_lease_core::{LeaseKey, Race};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::context::Context;
use crate::grant::Grant;

/// The grants the worker holds, shared by the coordinator (adds and removes) and the renewer.
pub(crate) type Grants = Arc<Mutex<BTreeMap<LeaseKey, Arc<Grant>>>>;

pub(crate) fn snapshot(grants: &Grants) -> Vec<Arc<Grant>> {
    grants
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .cloned()
        .collect()
}

/// Renews every held lease (or, with heartbeats, the worker's heartbeat) each renew interval
/// until `stop` fires. With heartbeats the worker makes the first one itself
/// ([`first_heartbeat`]) before it takes any lease.
pub(crate) async fn run(ctx: Arc<Context>, grants: Grants, stop: CancellationToken) {
    let metrics = shardwise_metrics::LeaseStoreMetrics::register(
        &ctx.metric_names,
        ctx.config.metrics_level,
        ctx.worker_id.as_str(),
        shardwise_metrics::operation::RENEW_LEASES,
    );
    let interval = ctx.config.renew_interval();
    let heartbeat = ctx.config.liveness == crate::Liveness::Heartbeat;
    let mut next = Instant::now() + interval;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(next) => {}
        }
        next += interval;
        if heartbeat {
            beat(&ctx, &snapshot(&grants), &metrics).await;
        } else {
            renew(&ctx, &snapshot(&grants), &metrics).await;
        }
    }
}

/// The worker's first heartbeat, before its first take round (a failure is logged; the
/// renewer tries again every renew interval, and no lease is taken until one succeeds).
pub(crate) async fn first_heartbeat(ctx: &Context) {
    let sent = Instant::now();
    match ctx.store.heartbeat(&ctx.worker_id, None).await {
        Ok(Race::Won(heartbeat)) => ctx.beat.succeeded(heartbeat, sent),
        Ok(Race::Lost) => warn!("the first heartbeat lost a race it cannot lose; retrying"),
        Err(e) => warn!(error = %e, "the first heartbeat failed; retrying"),
    }
}

/// One heartbeat at the counter this worker last wrote (afresh when it has none): `Won` with
/// the new counter, `Lost` when another process moved it. A lost race after heartbeats in doubt
/// (failed in a way that may have applied them) that shows no more steps than there were such
/// heartbeats is this worker's own writes: adopted, and tried again.
async fn heartbeat(ctx: &Context) -> Result<Race<u64>, shardwise_lease_core::StoreError> {
    if ctx.beat.has_yielded() {
        // Another process with this id won a heartbeat race: it keeps the id while its
        // heartbeat moves (this one was most likely frozen and replaced).
        let stored = ctx.store.membership().await?;
        let read = stored.heartbeats.get(&ctx.worker_id).copied();
        if !ctx
            .beat
            .may_rejoin(read, Instant::now(), ctx.config.lease_duration)
        {
            return Ok(Race::Lost);
        }
        info!("the other process with this worker id is gone; heartbeating again");
    }
    let expected = ctx.beat.last().map(|(heartbeat, _)| heartbeat);
    let outcome = ctx.store.heartbeat(&ctx.worker_id, expected).await?;
    let doubts = ctx.beat.in_doubt();
    let (Race::Lost, Some(expected), true) = (&outcome, expected, doubts > 0) else {
        return Ok(outcome);
    };
    let stored = ctx.store.membership().await?;
    match stored.heartbeats.get(&ctx.worker_id) {
        // As many steps as heartbeats in doubt, at most: ours, applied without an answer.
        Some(&ours) if ours > expected && ours - expected <= doubts => {
            ctx.store.heartbeat(&ctx.worker_id, Some(ours)).await
        }
        _ => Ok(Race::Lost),
    }
}

/// One heartbeat: when it succeeds, every lease held is renewed from the time it was sent;
/// when it fails, every lease not renewed for two thirds of the lease duration is given up
/// before any other worker may judge this one dead. A heartbeat whose answer comes close to a
/// lease duration after the previous one was sent (the process was frozen, or its calls hung)
/// renews nothing: another worker may have judged this one dead by then and be taking its
/// leases in a round already under way, which no read of the leases can rule out. Every lease
/// is given up (released, and taken again by whoever is first) instead.
async fn beat(
    ctx: &Context,
    grants: &[Arc<Grant>],
    metrics: &shardwise_metrics::LeaseStoreMetrics,
) {
    let sent = Instant::now();
    let outcome = heartbeat(ctx).await;
    metrics.time.record(sent.elapsed().as_secs_f64() * 1_000.0);
    let give_up_after = ctx.config.give_up_after();
    match outcome {
        Ok(Race::Won(heartbeat)) => {
            let previous = ctx.beat.last().map(|(_, at)| at);
            ctx.beat.succeeded(heartbeat, sent);
            // Applied before its answer came: no other worker can have judged this one dead
            // before a lease duration after the previous heartbeat was sent. A twelfth of the
            // lease duration is kept as a margin for clocks and timers.
            let answered = Instant::now();
            let lease_duration = ctx.config.lease_duration;
            let late = previous.is_none_or(|at| {
                answered.saturating_duration_since(at) >= lease_duration - lease_duration / 12
            });
            let held: Vec<_> = grants.iter().filter(|g| !g.is_lost()).collect();
            if late && !held.is_empty() {
                warn!(
                    leases = held.len(),
                    "a heartbeat succeeded too late to keep the leases (the process was frozen or the store slow); giving them up"
                );
            }
            for grant in held {
                if late {
                    grant.lost.cancel();
                    continue;
                }
                let mut state = grant.state();
                state.renewed_at = state.renewed_at.max(sent);
            }
        }
        // Another process with this worker id heartbeats (it replaced this one while it was
        // frozen, say): every lease it took is its own now. Stop all processing here; the next
        // heartbeat starts afresh, and leases recorded as this worker's are taken again.
        Ok(Race::Lost) => {
            let lost = grants.iter().filter(|g| !g.is_lost()).count();
            if !ctx.beat.has_yielded() {
                warn!(
                    leases = lost,
                    "another process with this worker id moved its heartbeat; stopping every shard of this one until that process is gone"
                );
                ctx.beat.lost(sent);
            }
            for grant in grants {
                grant.lost.cancel();
            }
        }
        Err(e) => {
            if e.is_retryable() {
                ctx.beat.set_in_doubt();
            }
            metrics.failures.increment(1);
            for grant in grants.iter().filter(|g| !g.is_lost()) {
                give_up_if_late(grant, sent, give_up_after, &e.to_string());
            }
        }
    }
}

/// One renewal round: one `renew_many` for every grant whose turn to write is free, bounded by
/// the store timeout. A renewal that loses its race reads its lease back: it is lost, or another
/// worker asked for it (the grant then hands it over, see [`Grant::reread`]). A grant with a checkpoint in flight is skipped (the checkpoint, when it
/// succeeds, renews the lease too); nothing here waits for another write. A lease not renewed
/// for two thirds of the lease duration is given up before anyone else may take it.
async fn renew(
    ctx: &Context,
    grants: &[Arc<Grant>],
    metrics: &shardwise_metrics::LeaseStoreMetrics,
) {
    let mut turns = Vec::with_capacity(grants.len());
    let mut busy = Vec::new();
    for grant in grants.iter().filter(|g| !g.is_lost()) {
        match grant.writing.try_lock() {
            Ok(turn) => turns.push((grant, turn)),
            Err(_) => busy.push(grant),
        }
    }
    let give_up_after = ctx.config.give_up_after();
    // The time the request leaves: a renewal that succeeds proves the lease ours from then.
    let sent = Instant::now();
    for grant in busy {
        if sent.saturating_duration_since(grant.state().renewed_at) >= give_up_after {
            warn!(lease = %grant.key, "lease not renewed in time (a write kept it busy); stopping its processing");
            grant.lost.cancel();
        }
    }
    // Counters in doubt after a write that may have been applied: read before renewing.
    let settled = futures_util::future::join_all(
        turns
            .iter()
            .map(|(grant, _)| grant.settle_doubt(ctx.store.as_ref(), &ctx.worker_id)),
    )
    .await;
    let mut ready = Vec::with_capacity(turns.len());
    for ((grant, turn), settled) in turns.into_iter().zip(settled) {
        match settled {
            Ok(()) if !grant.is_lost() => ready.push((grant, turn)),
            Ok(()) => info!(lease = %grant.key, "lease lost (found after a write in doubt)"),
            Err(e) => {
                metrics.failures.increment(1);
                give_up_if_late(grant, sent, give_up_after, &e.to_string());
            }
        }
    }
    let turns = ready;
    if turns.is_empty() {
        return;
    }
    let renewal = Renewal {
        ctx,
        metrics,
        sent,
        give_up_after,
    };
    let beaten = renewal.renew(turns).await;
    // Lost, or asked for by another worker: the lease read back tells.
    let reread = futures_util::future::join_all(
        beaten
            .iter()
            .map(|(grant, _)| grant.reread(ctx.store.as_ref(), &ctx.worker_id)),
    )
    .await;
    let mut asked = Vec::new();
    for ((grant, turn), reread) in beaten.into_iter().zip(reread) {
        match reread {
            // Asked for by another worker: renewed again at once, at the counter adopted, so
            // that the hand-off does not cost the lease a renewal.
            Ok(true) => asked.push((grant, turn)),
            Ok(false) => info!(lease = %grant.key, "lease lost at renewal"),
            Err(e) => {
                metrics.failures.increment(1);
                give_up_if_late(grant, sent, give_up_after, &e.to_string());
            }
        }
    }
    for (grant, _turn) in renewal.renew(asked).await {
        info!(lease = %grant.key, "lease lost at renewal");
        grant.lost.cancel();
    }
}

/// One round's renewals, sent at `sent`.
struct Renewal<'a> {
    ctx: &'a Context,
    metrics: &'a shardwise_metrics::LeaseStoreMetrics,
    sent: Instant,
    give_up_after: std::time::Duration,
}

impl Renewal<'_> {
    /// One `renew_many` of `turns` (each grant with its turn to write, held throughout):
    /// records what won and what failed; returns those that lost their race.
    async fn renew<'g, T>(&self, turns: Vec<(&'g Arc<Grant>, T)>) -> Vec<(&'g Arc<Grant>, T)> {
        if turns.is_empty() {
            return turns;
        }
        let batch: Vec<(LeaseKey, u64)> = turns
            .iter()
            .map(|(g, _)| (g.key.clone(), g.state().counter))
            .collect();
        // Bounded by the store timeout, like every store call of the worker.
        let outcomes = self.ctx.store.renew_many(&self.ctx.worker_id, &batch).await;
        self.metrics
            .time
            .record(self.sent.elapsed().as_secs_f64() * 1_000.0);
        let mut lost = Vec::new();
        for ((grant, turn), outcome) in turns.into_iter().zip(outcomes) {
            match outcome {
                Ok(Race::Won(counter)) => {
                    let mut state = grant.state();
                    state.counter = counter;
                    state.renewed_at = self.sent;
                }
                Ok(Race::Lost) => lost.push((grant, turn)),
                Err(e) => {
                    self.metrics.failures.increment(1);
                    grant.failed_write(&e, None);
                    give_up_if_late(grant, self.sent, self.give_up_after, &e.to_string());
                }
            }
        }
        lost
    }
}

/// After a failed renewal (or a failure to settle a doubt): a lease not renewed for
/// `give_up_after` stops being processed, before anyone else may take it.
fn give_up_if_late(grant: &Grant, sent: Instant, give_up_after: std::time::Duration, error: &str) {
    let renewed_at = grant.state().renewed_at;
    if sent.saturating_duration_since(renewed_at) >= give_up_after {
        warn!(lease = %grant.key, error, "lease not renewed in time; stopping its processing");
        grant.lost.cancel();
    } else {
        warn!(lease = %grant.key, error, "renewal failed; retrying");
    }
}
