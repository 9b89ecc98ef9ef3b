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

/// Renews every held lease each renew interval until `stop` fires.
pub(crate) async fn run(ctx: Arc<Context>, grants: Grants, stop: CancellationToken) {
    let metrics = shardwise_metrics::LeaseStoreMetrics::register(
        &ctx.metric_names,
        ctx.config.metrics_level,
        ctx.worker_id.as_str(),
        shardwise_metrics::operation::RENEW_LEASES,
    );
    let interval = ctx.config.renew_interval();
    let mut next = Instant::now() + interval;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(next) => {}
        }
        next += interval;
        renew(&ctx, &snapshot(&grants), &metrics).await;
    }
}

/// One renewal round: one `renew_many`, holding each grant's lock (in key order) so that no
/// checkpoint runs on the same counter meanwhile, bounded by the renew interval. A lease not
/// renewed for two thirds of the lease duration is given up before anyone else may take it.
async fn renew(
    ctx: &Context,
    grants: &[Arc<Grant>],
    metrics: &shardwise_metrics::LeaseStoreMetrics,
) {
    let grants: Vec<&Arc<Grant>> = grants.iter().filter(|g| !g.is_lost()).collect();
    if grants.is_empty() {
        return;
    }
    let mut states = Vec::with_capacity(grants.len());
    for grant in &grants {
        states.push(grant.state.lock().await);
    }
    let batch: Vec<(LeaseKey, u64)> = grants
        .iter()
        .zip(&states)
        .map(|(g, s)| (g.key.clone(), s.counter))
        .collect();
    // The time the request leaves: a renewal that succeeds proves the lease ours from then.
    let sent = Instant::now();
    let outcomes = match tokio::time::timeout(
        ctx.config.renew_interval(),
        ctx.store.renew_many(&ctx.worker_id, &batch),
    )
    .await
    {
        Ok(outcomes) => outcomes
            .into_iter()
            .map(|o| o.map_err(|e| e.to_string()))
            .collect(),
        Err(_) => vec![Err("renewal timed out".to_owned()); batch.len()],
    };
    metrics.time.record(sent.elapsed().as_secs_f64() * 1_000.0);
    let give_up_after = ctx
        .config
        .lease_duration
        .saturating_sub(ctx.config.renew_interval());
    for ((grant, state), outcome) in grants.iter().zip(states.iter_mut()).zip(outcomes) {
        match outcome {
            Ok(Race::Won(counter)) => {
                state.counter = counter;
                state.renewed_at = sent;
            }
            Ok(Race::Lost) => {
                info!(lease = %grant.key, "lease lost at renewal");
                grant.lost.cancel();
            }
            Err(e) => {
                metrics.failures.increment(1);
                if sent.saturating_duration_since(state.renewed_at) >= give_up_after {
                    warn!(lease = %grant.key, error = %e, "lease not renewed in time; stopping its processing");
                    grant.lost.cancel();
                } else {
                    warn!(lease = %grant.key, error = %e, "renewal failed; retrying");
                }
            }
        }
    }
}
