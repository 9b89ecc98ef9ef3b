//! The invariants, checked on the log of a run.
//!
//! 1. Every record put is processed at least once (handed to a processor whose
//!    `process_records` returned `Ok`), and for every partition key the records are first
//!    processed in the order they were put (across workers, and across parent and child shards).
//! 2. A stored checkpoint never moves backwards.
//! 3. Fencing: every lease write that succeeded was made by the lease's holder at the counter
//!    it expected (a take: at the counter it expected); and no batch is handed to a processor
//!    later than a lease duration after its worker's last successful write of that lease (by
//!    then the worker must know it may have lost it).
//! 4. A child shard's records are delivered only after each parent's `SHARD_END`.
//! 5. Repeats only where a lease moved: a record processed again by a worker is after the
//!    checkpoint the lease held when that worker took it (after a hand-off too: the worker
//!    that asked takes the lease once its holder has handed it over). So what a kill, a freeze, a steal, a
//!    store failure or a failed batch repeats is never more than the records after the last
//!    successful checkpoint, and a graceful hand-over, whose checkpoint covers everything
//!    processed, repeats nothing.
//!
//! 6. A worker that gave a lease up (released it, or handed it over) delivers no more of its
//!    shard's records until it takes the lease again.
//!
//! 7. A lease being handed over is taken only when its holder has written nothing for a lease
//!    duration, or the hand-off is older than the hand-off timeout plus a lease duration; and
//!    only when a fault explains it: a hand-off with nothing in its way completes.
//! 8. A hand-off that completed repeats nothing its holder processed, unless a fault explains
//!    it or the seed's processors may skip checkpoints.
//!
//! Liveness (every record delivered, then the fleet balanced, within bounds once faults stop) is
//! checked while the run goes on, in [`crate::run`].

use std::collections::{BTreeMap, BTreeSet};

use crate::log::{Entry, Event, Write};
use crate::plan::Plan;

/// The worker id of a process in the log (`w1#2` is the second process of worker `w1`).
fn worker_id(process: &str) -> &str {
    process.split('#').next().unwrap_or(process)
}

/// How many of the records `0..records` no processor has processed.
pub fn undelivered(log: &[Entry], records: usize) -> usize {
    let mut seen = vec![false; records];
    for entry in log {
        if let Event::Processed { ids, .. } = &entry.event {
            for id in ids {
                if let Some(s) = seen.get_mut(*id) {
                    *s = true;
                }
            }
        }
    }
    seen.iter().filter(|s| !**s).count()
}

/// How much a run gave the invariants to check.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checked {
    /// Lease writes checked for fencing and checkpoint order.
    pub writes: usize,
    /// Batches checked against their worker's lease.
    pub batches: usize,
    /// Records processed again, each checked against the checkpoint of its lease's taking.
    pub repeats: usize,
    /// Child shards checked to start after their parents ended.
    pub children: usize,
    /// Hand-offs asked for.
    pub handoffs: usize,
    /// Hand-offs completed by their holder.
    pub handed_over: usize,
    /// Hand-offs struck by a fault while in progress.
    pub struck: usize,
    /// Transactional commits refused by the store's fence (nothing applied).
    pub fenced_commits: usize,
    /// Transactional commits applied whose answer was lost.
    pub lost_commit_answers: usize,
    /// Transactional commits that failed with an answer that did not say so.
    pub unknown_failed_commits: usize,
}

impl std::ops::AddAssign for Checked {
    fn add_assign(&mut self, other: Self) {
        self.writes += other.writes;
        self.batches += other.batches;
        self.repeats += other.repeats;
        self.children += other.children;
        self.handoffs += other.handoffs;
        self.handed_over += other.handed_over;
        self.struck += other.struck;
        self.fenced_commits += other.fenced_commits;
        self.lost_commit_answers += other.lost_commit_answers;
        self.unknown_failed_commits += other.unknown_failed_commits;
    }
}

/// What `log` gave the invariants to check.
pub fn checked(log: &[Entry]) -> Checked {
    let mut checked = Checked::default();
    let mut processed = BTreeSet::new();
    for entry in log {
        match &entry.event {
            Event::Wrote { write, before, .. } => {
                checked.writes += 1;
                match write {
                    Write::RequestHandoff => checked.handoffs += 1,
                    Write::Evict
                        if before
                            .as_ref()
                            .is_some_and(|b| b.checkpoint_owner.is_some()) =>
                    {
                        checked.handed_over += 1
                    }
                    _ => {}
                }
            }
            Event::Delivered { .. } => checked.batches += 1,
            Event::Processed { ids, .. } => {
                checked.repeats += ids.iter().filter(|id| !processed.insert(**id)).count();
            }
            Event::Resharded { children, .. } => checked.children += children.len(),
            Event::Note(note) if note.starts_with("strike ") => checked.struck += 1,
            Event::Note(note) if note.ends_with(" commit fenced off") => {
                checked.fenced_commits += 1
            }
            Event::Note(note) if note.ends_with(" commit answer lost") => {
                checked.lost_commit_answers += 1
            }
            Event::Note(note) if note.ends_with(" commit lost before it was applied") => {
                checked.unknown_failed_commits += 1
            }
            _ => {}
        }
    }
    checked
}

/// Every invariant on `log`; the messages of those that broke.
pub fn all(plan: &Plan, log: &[Entry]) -> Vec<String> {
    let mut broken = Vec::new();
    broken.extend(delivered_in_order(log));
    broken.extend(checkpoints_forward(log));
    broken.extend(fenced_writes(log));
    broken.extend(deliveries_within_lease(plan, log));
    broken.extend(parents_first(log));
    broken.extend(repeats_after_the_checkpoint(log));
    broken.extend(nothing_after_release(log));
    broken.extend(handoffs_wait_for_the_holder(plan, log));
    broken.extend(handoffs_repeat_nothing(plan, log));
    if plan.transactional {
        broken.extend(effects_exactly_once(log));
    }
    broken
}

/// With transactional checkpoints a record's effects are committed with the checkpoint that
/// covers them (a `Processed` entry is logged by the commit itself): no record twice, whatever
/// crashes, freezes, steals or lost answers happened. (That none is missing, the run's end
/// checks.)
fn effects_exactly_once(log: &[Entry]) -> Vec<String> {
    let mut committed: BTreeMap<usize, String> = BTreeMap::new();
    let mut broken = Vec::new();
    for entry in log {
        if let Event::Processed { worker, shard, ids } = &entry.event {
            for id in ids {
                if let Some(first) = committed.insert(*id, format!("{worker} on {shard}")) {
                    broken.push(format!(
                        "r{id} committed twice: by {first}, then by {worker} on {shard} at {entry}"
                    ));
                }
            }
        }
    }
    broken
}

/// How long a fault lasts, from its text (`for_: 10.075s`); zero when it does not say.
fn lasting(text: &str) -> std::time::Duration {
    let Some(token) = text
        .split("for_: ")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ', '}']).next())
    else {
        return std::time::Duration::ZERO;
    };
    // `Duration`'s `Debug`: `10.075s`, `812ms`, `5µs`, `7ns`.
    let (number, scale) = if let Some(n) = token.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = token.strip_suffix("µs") {
        (n, 1e-6)
    } else if let Some(n) = token.strip_suffix("ns") {
        (n, 1e-9)
    } else if let Some(n) = token.strip_suffix('s') {
        (n, 1.0)
    } else {
        return std::time::Duration::ZERO;
    };
    number
        .parse::<f64>()
        .ok()
        .and_then(|n| std::time::Duration::try_from_secs_f64(n * scale).ok())
        .unwrap_or_default()
}

/// The faults that explain a hand-off that did not go as planned: a worker killed, stopped or
/// replaced stays gone (a worker that just started may ask it for a lease before it has
/// watched the lease long enough to see it expired); a freeze or a store fault explains what
/// follows it (until it ends) for four lease durations.
struct Disruptions {
    gone: BTreeSet<String>,
    at: Vec<std::time::Duration>,
    window: std::time::Duration,
}

impl Disruptions {
    const GONE: [&str; 3] = ["Kill", "Stop", "Zombie"];
    const WHILE: [&str; 7] = [
        "lost version increment",
        "Freeze",
        "MuteHeartbeat",
        "StoreDown",
        "StoreSlow",
        "StoreAmbiguous",
        "AtHandoff",
    ];

    fn new(plan: &Plan) -> Self {
        Self {
            gone: BTreeSet::new(),
            at: Vec::new(),
            window: plan.settings.lease_duration * 4,
        }
    }

    /// Notes `entry` when it is a fault; whether it was.
    fn note(&mut self, entry: &Entry) -> bool {
        match &entry.event {
            // Steps name workers by slot (`Kill { worker: 0 }`).
            Event::Step(step) if Self::GONE.iter().any(|d| step.starts_with(d)) => {
                if let Some(slot) = step.split("worker: ").nth(1) {
                    self.gone
                        .insert(slot.chars().take_while(char::is_ascii_digit).collect());
                }
                true
            }
            // Until the fault ends: `for_: 10.075s` in the step (or the strike it became).
            Event::Step(text) | Event::Note(text)
                if Self::WHILE.iter().any(|d| text.starts_with(d))
                    || text.starts_with("strike ") =>
            {
                self.at.push(entry.at + lasting(text));
                true
            }
            Event::Note(note) if note.starts_with("quiet") => {
                self.at.push(entry.at);
                true
            }
            _ => false,
        }
    }

    /// Whether a fault explains trouble with a hand-off from `holder` asked for at `asked`.
    fn explain(&self, holder: &str, asked: std::time::Duration) -> bool {
        // Workers are named `w{slot}` or `w{slot}-{n}`.
        let slot = holder
            .trim_start_matches('w')
            .split('-')
            .next()
            .unwrap_or_default();
        let since = asked.saturating_sub(self.window);
        self.gone.contains(slot) || self.at.iter().any(|at| *at >= since)
    }
}

/// A lease being handed over is taken (ending the hand-off) only when its holder has written
/// nothing for a lease duration (it is gone), or the hand-off is older than the hand-off
/// timeout plus a lease duration; and only when a fault explains it: a hand-off with nothing
/// in its way completes.
fn handoffs_wait_for_the_holder(plan: &Plan, log: &[Entry]) -> Vec<String> {
    let lease = plan.settings.lease_duration;
    let give_up = crate::run::handoff_timeout(plan) + lease;
    let mut broken = Vec::new();
    let mut asked: BTreeMap<&str, std::time::Duration> = BTreeMap::new();
    // The last successful write of each lease by each worker id.
    let mut last_write: BTreeMap<(&str, &str), std::time::Duration> = BTreeMap::new();
    // The last heartbeat of each worker id: a holder that heartbeats is not silent.
    let mut last_beat: BTreeMap<&str, std::time::Duration> = BTreeMap::new();
    let mut faults = Disruptions::new(plan);
    for entry in log {
        if faults.note(entry) {
            continue;
        }
        if let Event::Beat { worker } = &entry.event {
            last_beat.insert(worker_id(worker), entry.at);
            continue;
        }
        let Event::Wrote {
            worker,
            write,
            key,
            before,
            ..
        } = &entry.event
        else {
            continue;
        };
        if *write == Write::RequestHandoff {
            asked.insert(key, entry.at);
        }
        if *write == Write::Take
            && let Some(holder) = before.as_ref().and_then(|b| b.checkpoint_owner.as_deref())
        {
            let wrote = last_write.get(&(holder, key.as_str())).copied();
            // A holder that heartbeats is alive by its heartbeat alone (its checkpoints do not
            // renew its leases); any other by its writes of the lease.
            let proof = last_beat.get(holder).copied().or(wrote);
            let silent = proof.is_none_or(|at| entry.at.saturating_sub(at) >= lease);
            let requested = asked.get(key.as_str()).copied();
            // Two processes of the taker's id (a zombie and its replacement) are one worker to
            // the lease: one may act on the other's request.
            if faults.explain(worker_id(worker), requested.unwrap_or(entry.at)) {
                last_write.insert((worker_id(worker), key), entry.at);
                continue;
            }
            let late = requested.is_some_and(|at| entry.at.saturating_sub(at) >= give_up);
            let explained = faults.explain(holder, requested.unwrap_or(entry.at));
            if !(silent || late) || !explained {
                broken.push(format!(
                    "hand-off: {worker} took {key} at {:.3}s from {holder}, who wrote to it {:.3}s before{}",
                    entry.at.as_secs_f64(),
                    wrote.map_or(f64::NAN, |at| (entry.at - at).as_secs_f64()),
                    if explained { "" } else { ", with no fault to explain why the hand-off did not complete" }
                ));
            }
        }
        last_write.insert((worker_id(worker), key), entry.at);
    }
    broken
}

/// A hand-off that completed repeats nothing: the worker that takes the lease its holder
/// handed over processes no record the holder processed while it held the lease, unless a
/// fault explains it or the seed's processors may skip checkpoints.
fn handoffs_repeat_nothing(plan: &Plan, log: &[Entry]) -> Vec<String> {
    if plan.processors.never_checkpoints > 0.0 {
        return Vec::new();
    }
    let mut broken = Vec::new();
    let mut faults = Disruptions::new(plan);
    let mut asked: BTreeMap<&str, std::time::Duration> = BTreeMap::new();
    // What each process processed of each shard since it last took the lease.
    let mut grant_work: BTreeMap<(&str, &str), BTreeSet<usize>> = BTreeMap::new();
    // Leases just handed over, by key: (holder, what it processed, new owner).
    let mut handed: BTreeMap<&str, (&str, BTreeSet<usize>, &str)> = BTreeMap::new();
    // Grants that began with a completed hand-off, by (process, shard). (Two processes of one
    // worker id, a zombie and its replacement, are two holders the lease cannot tell apart:
    // their slot's `Zombie` step explains what they repeat.)
    type Handed<'a> = (&'a str, BTreeSet<usize>, std::time::Duration);
    let mut graceful: BTreeMap<(&str, &str), Handed<'_>> = BTreeMap::new();
    for entry in log {
        if faults.note(entry) {
            continue;
        }
        match &entry.event {
            Event::Wrote {
                worker,
                write,
                key,
                before,
                after,
                ..
            } => {
                let completed = handed.remove(key.as_str());
                match write {
                    Write::RequestHandoff => {
                        asked.insert(key, entry.at);
                    }
                    Write::Evict => {
                        let work = grant_work
                            .remove(&(worker.as_str(), key.as_str()))
                            .unwrap_or_default();
                        if let (Some(holder), Some(owner)) = (
                            before.as_ref().and_then(|b| b.checkpoint_owner.as_deref()),
                            after.as_ref().and_then(|a| a.owner.as_deref()),
                        ) {
                            handed.insert(key, (holder, work, owner));
                        }
                    }
                    Write::Take => {
                        grant_work.insert((worker, key), BTreeSet::new());
                        graceful.remove(&(worker.as_str(), key.as_str()));
                        if let Some((holder, work, owner)) = completed
                            && owner == worker_id(worker)
                        {
                            let at = asked.get(key.as_str()).copied().unwrap_or(entry.at);
                            graceful.insert((worker, key), (holder, work, at));
                        }
                    }
                    _ => {}
                }
            }
            Event::Processed { worker, shard, ids } => {
                if let Some(work) = grant_work.get_mut(&(worker.as_str(), shard.as_str())) {
                    work.extend(ids.iter().copied());
                }
                let Some((holder, work, asked)) = graceful.get(&(worker.as_str(), shard.as_str()))
                else {
                    continue;
                };
                if faults.explain(holder, *asked) || faults.explain(worker_id(worker), *asked) {
                    continue;
                }
                for id in ids.iter().filter(|id| work.contains(id)) {
                    broken.push(format!(
                        "hand-off: {worker} processed r{id} of {shard} again at {:.3}s, after {holder} processed it and handed the lease over with no fault in the way",
                        entry.at.as_secs_f64()
                    ));
                }
            }
            _ => {}
        }
    }
    broken
}

/// A worker that gave a lease up (released it, or handed it over) delivers no more of its
/// shard's records until it takes the lease again.
fn nothing_after_release(log: &[Entry]) -> Vec<String> {
    let mut broken = Vec::new();
    let mut released: BTreeSet<(&str, &str)> = BTreeSet::new();
    for entry in log {
        match &entry.event {
            Event::Wrote {
                worker, write, key, ..
            } => match write {
                Write::Evict => {
                    released.insert((worker, key));
                }
                Write::Take => {
                    released.remove(&(worker.as_str(), key.as_str()));
                }
                _ => {}
            },
            Event::Delivered { worker, shard, ids }
                if released.contains(&(worker.as_str(), shard.as_str())) =>
            {
                broken.push(format!(
                    "release: {worker} got {} records of {shard} at {:.3}s after giving its lease up",
                    ids.len(),
                    entry.at.as_secs_f64()
                ));
            }
            _ => {}
        }
    }
    broken
}

fn delivered_in_order(log: &[Entry]) -> Vec<String> {
    let mut broken = Vec::new();
    // Each record's key and its place in put order.
    let mut keys: BTreeMap<usize, (String, usize)> = BTreeMap::new();
    for entry in log {
        if let Event::Put { id, key, .. } = &entry.event {
            let order = keys.len();
            keys.insert(*id, (key.clone(), order));
        }
    }
    let mut first_seen = BTreeSet::new();
    // The last record of each key delivered for the first time.
    let mut last_of_key: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for entry in log {
        let Event::Processed { ids, shard, worker } = &entry.event else {
            continue;
        };
        for id in ids {
            if !first_seen.insert(*id) {
                continue;
            }
            let Some((key, order)) = keys.get(id) else {
                broken.push(format!(
                    "{worker} got r{id} of {shard}, which was never put"
                ));
                continue;
            };
            if let Some((last, last_order)) = last_of_key.insert(key, (*id, *order))
                && last_order > *order
            {
                broken.push(format!(
                    "order: key {key}: r{id} first processed at {:.3}s after r{last}, which was put later",
                    entry.at.as_secs_f64()
                ));
            }
        }
    }
    for (id, (key, _)) in &keys {
        if !first_seen.contains(id) {
            broken.push(format!("loss: r{id} (key {key}) was never processed"));
        }
    }
    broken
}

fn checkpoints_forward(log: &[Entry]) -> Vec<String> {
    log.iter()
        .filter_map(|entry| match &entry.event {
            Event::Wrote {
                worker,
                write: Write::Checkpoint | Write::MarkEnded,
                key,
                before: Some(before),
                after: Some(after),
                ..
            } if after.checkpoint.cmp_progress(&before.checkpoint).is_lt() => Some(format!(
                "checkpoint of {key} moved back from {} to {} by {worker} at {:.3}s",
                before.checkpoint,
                after.checkpoint,
                entry.at.as_secs_f64()
            )),
            _ => None,
        })
        .collect()
}

fn fenced_writes(log: &[Entry]) -> Vec<String> {
    let mut broken = Vec::new();
    for entry in log {
        let Event::Wrote {
            worker,
            write,
            key,
            expected: Some(expected),
            before,
            ..
        } = &entry.event
        else {
            continue;
        };
        let Some(before) = before else {
            broken.push(format!(
                "fencing: {worker} {write:?} of {key} at {:.3}s succeeded on a missing lease",
                entry.at.as_secs_f64()
            ));
            continue;
        };
        let needs_ownership = matches!(
            write,
            Write::Renew | Write::Evict | Write::Checkpoint | Write::MarkEnded
        );
        let owner_ok = !needs_ownership || before.holder() == Some(worker_id(worker));
        if before.counter != *expected || !owner_ok {
            broken.push(format!(
                "fencing: {worker} {write:?} of {key} at {:.3}s succeeded expecting counter {expected}, but the lease was {:?}@{}",
                entry.at.as_secs_f64(),
                before.owner,
                before.counter
            ));
        }
    }
    broken
}

fn deliveries_within_lease(plan: &Plan, log: &[Entry]) -> Vec<String> {
    let lease = plan.settings.lease_duration;
    let mut broken = Vec::new();
    // The time of each worker's last successful write of each lease.
    let mut last_write: BTreeMap<(&str, &str), std::time::Duration> = BTreeMap::new();
    // With heartbeats: each process's last heartbeat, and who took each lease last. A process
    // that heartbeats holds the leases it took, until another process takes them.
    let mut last_beat: BTreeMap<&str, std::time::Duration> = BTreeMap::new();
    let mut taker: BTreeMap<&str, &str> = BTreeMap::new();
    // The process whose release let the last taker in, when the take followed one: a lease
    // handed on by a process of the holder's own id (a zombie's replacement, which cannot tell
    // it apart from itself) is the known hazard of two processes with one id, accepted for
    // heartbeats as the per-lease rule accepts it (the holder learns at its next heartbeat).
    let mut released_by: BTreeMap<&str, &str> = BTreeMap::new();
    let mut let_in_by: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    for entry in log {
        match &entry.event {
            Event::Beat { worker } => {
                last_beat.insert(worker, entry.at);
            }
            Event::Wrote {
                worker,
                write: Write::Evict,
                key,
                ..
            } => {
                released_by.insert(key, worker);
            }
            Event::Wrote {
                worker,
                write: write @ (Write::Take | Write::Renew | Write::Checkpoint | Write::MarkEnded),
                key,
                ..
            } => {
                last_write.insert((worker, key), entry.at);
                if *write == Write::Take {
                    taker.insert(key, worker);
                    let_in_by.insert(key, released_by.remove(key.as_str()));
                }
            }
            Event::Delivered { worker, shard, ids } => {
                // By worker id: a process replaced by another with its id (a zombie) is
                // fenced by counters and its own lost heartbeat, as with renewals.
                let sibling_let_in = let_in_by
                    .get(shard.as_str())
                    .copied()
                    .flatten()
                    .is_some_and(|by| by != worker && worker_id(by) == worker_id(worker));
                let beating = (taker.get(shard.as_str()).map(|t| worker_id(t))
                    == Some(worker_id(worker))
                    || sibling_let_in)
                    && last_beat
                        .get(worker.as_str())
                        .is_some_and(|at| entry.at < *at + lease);
                match last_write.get(&(worker.as_str(), shard.as_str())) {
                    _ if beating => {}
                    Some(at) if entry.at < *at + lease => {}
                    Some(at) => broken.push(format!(
                        "fencing: {worker} got {} records of {shard} at {:.3}s, {:.3}s after its last write of the lease (lease duration {lease:?})",
                        ids.len(),
                        entry.at.as_secs_f64(),
                        (entry.at - *at).as_secs_f64()
                    )),
                    None => broken.push(format!(
                        "fencing: {worker} got {} records of {shard} at {:.3}s without ever holding the lease",
                        ids.len(),
                        entry.at.as_secs_f64()
                    )),
                }
            }
            _ => {}
        }
    }
    broken
}

fn parents_first(log: &[Entry]) -> Vec<String> {
    let mut broken = Vec::new();
    let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut ended: BTreeSet<&str> = BTreeSet::new();
    let mut started: BTreeSet<&str> = BTreeSet::new();
    for entry in log {
        match &entry.event {
            Event::Resharded {
                children,
                parents: of,
            } => {
                for child in children {
                    parents.insert(child, of.iter().map(String::as_str).collect());
                }
            }
            Event::Wrote {
                write: Write::MarkEnded,
                key,
                ..
            } => {
                ended.insert(key);
            }
            Event::Delivered { shard, worker, .. } => {
                if !started.insert(shard) {
                    continue;
                }
                for parent in parents.get(shard.as_str()).into_iter().flatten() {
                    if !ended.contains(parent) {
                        broken.push(format!(
                            "parents first: {worker} got records of {shard} at {:.3}s before its parent {parent} reached SHARD_END",
                            entry.at.as_secs_f64()
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    broken
}

fn repeats_after_the_checkpoint(log: &[Entry]) -> Vec<String> {
    use shardwise::lease::{Checkpoint, SequenceNumber};
    let mut broken = Vec::new();
    let mut positions: BTreeMap<usize, SequenceNumber> = BTreeMap::new();
    // The checkpoint each worker's grant of each lease started from.
    let mut taken_at: BTreeMap<(&str, &str), &Checkpoint> = BTreeMap::new();
    let mut processed = BTreeSet::new();
    for entry in log {
        match &entry.event {
            Event::Put { id, sequence, .. } => {
                if let Ok(sequence) = SequenceNumber::new(sequence) {
                    positions.insert(*id, sequence);
                }
            }
            Event::Wrote {
                worker,
                write: Write::Take,
                key,
                after: Some(after),
                ..
            } => {
                taken_at.insert((worker, key), &after.checkpoint);
            }
            Event::Processed { worker, shard, ids } => {
                let start = taken_at.get(&(worker.as_str(), shard.as_str()));
                for id in ids {
                    if processed.insert(*id) {
                        continue;
                    }
                    let (Some(start), Some(at)) = (start, positions.get(id)) else {
                        continue;
                    };
                    let covered = match start {
                        Checkpoint::TrimHorizon | Checkpoint::Latest | Checkpoint::AtTimestamp => {
                            false
                        }
                        Checkpoint::Before(first) => at < first,
                        Checkpoint::At(position) => *at <= position.sequence,
                        Checkpoint::ShardEnd => true,
                    };
                    if covered {
                        broken.push(format!(
                            "repeat: {worker} processed r{id} of {shard} again at {:.3}s, though the checkpoint {start} it took the lease at covered it",
                            entry.at.as_secs_f64()
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    broken
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::lasting;

    #[test]
    fn fault_durations_are_read_from_their_text() {
        assert_eq!(
            lasting("Freeze { worker: 1, for_: 10.075s }"),
            Duration::from_millis(10_075)
        );
        assert_eq!(
            lasting("StoreDown { for_: 812ms }"),
            Duration::from_millis(812)
        );
        assert_eq!(
            lasting("strike StoreDown for_: 3.5s during a hand-off held by w0"),
            Duration::from_millis(3_500)
        );
        assert_eq!(lasting("Kill { worker: 0 }"), Duration::ZERO);
    }
}
