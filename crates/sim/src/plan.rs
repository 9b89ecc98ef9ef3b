//! What one seed runs: the stream, the fleet, the records put, and the faults, each at its time.
//! Drawn from the seed before the run starts, so the plan itself is printed and replayed.

use std::fmt;
use std::time::Duration;

use crate::rng::Rng;

/// Settings every run shares.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The workers' lease duration.
    pub lease_duration: Duration,
    /// How long the faulty part of a run lasts.
    pub chaos: Duration,
    /// A fleet of this many shards and worker slots (all started), instead of the 1 to 4 of
    /// each that seeds draw: the same faults, on a fleet at scale.
    pub fleet: Option<(u32, usize)>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(3),
            chaos: Duration::from_secs(60),
            fleet: None,
        }
    }
}

/// How records are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// `GetRecords`.
    Polling,
    /// `SubscribeToShard`.
    FanOut,
}

/// How the fleet's workers show they are alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivenessPlan {
    /// Every worker renews each lease.
    PerLease,
    /// Every worker heartbeats.
    Heartbeat,
    /// Even slots heartbeat, odd slots renew per lease (a fleet switching modes).
    Mixed,
}

/// What a processor does with a batch, drawn per call.
#[derive(Debug, Clone, Copy)]
pub struct Processors {
    /// Chance that a call returns an error.
    pub fail: f64,
    /// Chance that a call panics.
    pub panic: f64,
    /// Chance that a call takes a while (up to a lease duration).
    pub slow: f64,
    /// Chance that a processor never checkpoints (the worker still writes SHARD_END for it).
    pub never_checkpoints: f64,
    /// Chance that a call gives the shard up (`GiveUpShard`: no retry, the lease released).
    pub give_up: f64,
}

/// One thing that happens during a run. (Each variant's text says what its fields are.)
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Action {
    /// Records `first..first + count`, each with partition key `k{id % keys}`.
    Put { first: usize, count: usize },
    /// Splits the open shard at `pick % open shards` in the middle of its range.
    Split { pick: usize },
    /// Merges the open shard at `pick % open shards` with its right neighbour, when it has one.
    Merge { pick: usize },
    /// Aborts a worker (no shutdown, no release), as a killed process.
    Kill { worker: usize },
    /// Stops a worker gracefully, as a rolling deploy does.
    Stop { worker: usize },
    /// Starts a worker that is not running (again), with a fresh incarnation of its id, or a new
    /// id.
    Start { worker: usize, new_id: bool },
    /// The worker's heartbeats fail (and only they) for a while: its pipelines run on, and it
    /// must stop them before other workers judge it dead and take its leases.
    MuteHeartbeat { worker: usize, for_: Duration },
    /// Freezes a worker's every call to the store, Kinesis and its processors (a long GC pause,
    /// a suspended VM), then lets it go on: a zombie that must not act on leases it lost.
    Freeze { worker: usize, for_: Duration },
    /// Freezes a worker and starts a new process with the same id in its place (a suspended
    /// VM replaced by its orchestrator); after `for_` the old process wakes up and goes on
    /// beside the new one, a zombie whose leases are fenced only by their counters.
    Zombie { worker: usize, for_: Duration },
    /// The lease store refuses every call for a while.
    StoreDown { for_: Duration },
    /// The lease store answers late (longer than the renew interval) for a while.
    StoreSlow { for_: Duration, delay: Duration },
    /// For a while, some writes are applied but answered with an error.
    StoreAmbiguous { for_: Duration },
    /// Kinesis throttles the next calls.
    Throttle { times: u32 },
    /// Kinesis answers the next calls with 5xx errors.
    ServiceErrors { times: u32 },
    /// Every shard iterator expires.
    ExpireIterators,
    /// Every fan-out subscription drops.
    DropSubscriptions,
    /// Waits (up to two lease durations) until a lease is being handed over, then strikes.
    AtHandoff {
        /// What strikes.
        strike: Strike,
        /// For how long (a freeze, a store fault).
        for_: Duration,
    },
}

/// What strikes a hand-off in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strike {
    /// The holder's process is killed.
    KillHolder,
    /// The holder freezes (for longer than a lease duration).
    FreezeHolder,
    /// The lease store goes down.
    StoreDown,
    /// The store applies writes but loses the answers.
    StoreAmbiguous,
}

/// An action at a time of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// When, from the start.
    pub at: Duration,
    /// What.
    pub action: Action,
}

/// Everything a seed runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The seed.
    pub seed: u64,
    /// Shared settings.
    pub settings: Settings,
    /// Shards at the start.
    pub shards: u32,
    /// Workers running at the start (more may start later).
    pub workers: usize,
    /// Distinct partition keys.
    pub keys: usize,
    /// How records are read.
    pub reading: Reading,
    /// Processor behaviour while faults are on.
    pub processors: Processors,
    /// The steps, in time order.
    pub steps: Vec<Step>,
    /// Records put in all.
    pub records: usize,
    /// How many streams the application reads: 1 is a single-stream application (lease keys
    /// are shard ids); more make a multi-stream one (each of `shards` shards, keys routed to a
    /// stream by partition key).
    pub streams: u32,
    /// Worker slots (ids `w0`…): workers that run at the start, or may start later.
    pub slots: usize,
    /// How workers show they are alive.
    pub liveness: LivenessPlan,
    /// Chance that a table-version increment is lost (answered but not applied).
    pub lost_bumps: f64,
    /// Whether processors commit their effects with transactional checkpoints
    /// (`Checkpointer::commit`): each record's effects must then be applied exactly once.
    pub transactional: bool,
    /// Each worker's `prefetch_memory`.
    pub prefetch_memory: usize,
}

/// Most workers a plan uses (ids `w0`…).
pub const MAX_WORKERS: usize = 4;

impl Plan {
    /// The plan of `seed`.
    pub fn draw(seed: u64, settings: Settings) -> Self {
        let mut rng = Rng::new(seed);
        let drawn = (
            rng.between(1, 4) as u32,
            rng.between(1, MAX_WORKERS as u64) as usize,
        );
        let (shards, workers, slots) = match settings.fleet {
            Some((shards, workers)) => (shards, workers, workers),
            None => (drawn.0, drawn.1, MAX_WORKERS),
        };
        let keys = rng.between(3, 24) as usize;
        let reading = if rng.chance(0.25) {
            Reading::FanOut
        } else {
            Reading::Polling
        };
        let calm = rng.chance(0.15);
        let processors = if calm {
            Processors {
                fail: 0.0,
                panic: 0.0,
                slow: 0.0,
                never_checkpoints: 0.0,
                give_up: 0.0,
            }
        } else {
            Processors {
                fail: [0.0, 0.05, 0.2][rng.below(3) as usize],
                panic: [0.0, 0.0, 0.02][rng.below(3) as usize],
                slow: [0.0, 0.05, 0.2][rng.below(3) as usize],
                never_checkpoints: [0.0, 0.0, 0.3][rng.below(3) as usize],
                give_up: [0.0, 0.02, 0.1][rng.below(3) as usize],
            }
        };
        let lease = settings.lease_duration;
        let chaos_ms = settings.chaos.as_millis() as u64;
        let mut steps = Vec::new();
        let mut records = 0;
        // Records in bursts over the whole faulty part.
        let bursts = rng.between(3, 12);
        for _ in 0..bursts {
            let count = rng.between(5, 60) as usize;
            let at = Duration::from_millis(rng.below(chaos_ms));
            steps.push(Step {
                at,
                action: Action::Put {
                    first: records,
                    count,
                },
            });
            records += count;
        }
        if !calm {
            let faults = rng.between(1, 10);
            for _ in 0..faults {
                let at = Duration::from_millis(rng.below(chaos_ms));
                let worker = rng.below(slots as u64) as usize;
                let pause = Duration::from_millis(rng.between(100, 3 * lease.as_millis() as u64));
                let action = match rng.below(14) {
                    0 | 1 => Action::Split {
                        pick: rng.below(8) as usize,
                    },
                    2 => Action::Merge {
                        pick: rng.below(8) as usize,
                    },
                    3 => Action::Kill { worker },
                    4 => Action::Stop { worker },
                    5 => Action::Start {
                        worker,
                        new_id: rng.chance(0.3),
                    },
                    6 => Action::Freeze {
                        worker,
                        for_: lease + pause,
                    },
                    7 => Action::StoreDown { for_: pause },
                    8 => Action::StoreSlow {
                        for_: pause,
                        delay: lease / 3
                            + Duration::from_millis(rng.below(lease.as_millis() as u64)),
                    },
                    9 => Action::StoreAmbiguous { for_: pause },
                    10 => Action::Throttle {
                        times: rng.between(1, 20) as u32,
                    },
                    11 => Action::ServiceErrors {
                        times: rng.between(1, 20) as u32,
                    },
                    12 => Action::Zombie {
                        worker,
                        for_: lease + pause,
                    },
                    _ if rng.chance(0.5) => Action::ExpireIterators,
                    _ => Action::DropSubscriptions,
                };
                // A kill or a stop is followed by a start of the same worker, sometimes.
                let restart =
                    matches!(action, Action::Kill { .. } | Action::Stop { .. }) && rng.chance(0.7);
                let starts = matches!(action, Action::Start { .. });
                steps.push(Step { at, action });
                let mut started_at = starts.then_some(at);
                if restart {
                    steps.push(Step {
                        at: at + pause,
                        action: Action::Start {
                            worker,
                            new_id: rng.chance(0.3),
                        },
                    });
                    started_at = Some(at + pause);
                }
                // A worker that starts makes leases move by hand-off: strike one, sometimes.
                if let Some(at) = started_at
                    && rng.chance(0.5)
                {
                    let strike = [
                        Strike::KillHolder,
                        Strike::FreezeHolder,
                        Strike::StoreDown,
                        Strike::StoreAmbiguous,
                    ][rng.below(4) as usize];
                    steps.push(Step {
                        at,
                        action: Action::AtHandoff {
                            strike,
                            for_: lease + pause,
                        },
                    });
                }
            }
        }
        // Stable: steps drawn for the same instant keep their drawing order.
        steps.sort_by_key(|s| s.at);
        // Drawn last, so that the rest of a seed's plan is what it was before streams were.
        let streams = if rng.chance(0.3) {
            rng.between(2, 3) as u32
        } else {
            1
        };
        // Drawn after the streams, for the same reason.
        let liveness = [
            LivenessPlan::PerLease,
            LivenessPlan::Heartbeat,
            LivenessPlan::Heartbeat,
            LivenessPlan::Mixed,
        ][rng.below(4) as usize];
        let lost_bumps = [0.0, 0.1, 0.5][rng.below(3) as usize];
        if liveness != LivenessPlan::PerLease && !calm {
            for _ in 0..rng.below(3) {
                let at = Duration::from_millis(rng.below(chaos_ms));
                let worker = rng.below(slots as u64) as usize;
                let for_ = Duration::from_millis(rng.between(100, 3 * lease.as_millis() as u64));
                steps.push(Step {
                    at,
                    action: Action::MuteHeartbeat { worker, for_ },
                });
            }
            steps.sort_by_key(|s| s.at);
        }
        // Drawn last, for the same reason.
        let transactional = rng.chance(0.5);
        // Half the seeds give the workers' readers a prefetch budget of a few dozen records, so
        // that they wait on it, share it and join batches behind slow processors.
        let prefetch_memory = if rng.chance(0.5) {
            rng.between(64, 2_048) as usize
        } else {
            shardwise::ConsumerConfig::default().prefetch_memory
        };
        Self {
            seed,
            settings,
            shards,
            workers,
            keys,
            reading,
            processors,
            steps,
            records,
            streams,
            slots,
            liveness,
            lost_bumps,
            transactional,
            prefetch_memory,
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} stream(s) of {} shards, {} workers, {} keys, {} records, {:?}, {:?} (lost version increments {}), {} checkpoints, prefetch_memory {} B, processors {:?}",
            self.seed,
            self.streams,
            self.shards,
            self.workers,
            self.keys,
            self.records,
            self.reading,
            self.liveness,
            self.lost_bumps,
            if self.transactional {
                "transactional"
            } else {
                "plain"
            },
            self.prefetch_memory,
            self.processors
        )?;
        for step in &self.steps {
            writeln!(f, "  {:>8.3}s {:?}", step.at.as_secs_f64(), step.action)?;
        }
        Ok(())
    }
}
