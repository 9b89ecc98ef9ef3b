//! One seed, run: the world (in-memory Kinesis and lease store), the fleet built with the public
//! `Consumer` builder, the plan's steps at their times, then a quiet phase without faults in
//! which every record must be delivered and the fleet must balance.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardwise::kinesis::testkit::{Fault, InMemoryKinesis};
use shardwise::kinesis::{PollingConfig, StreamId, list_all_shards};
use shardwise::lease::{LeaseStore, MemoryLeaseStore};
use shardwise::{Consumer, ConsumerConfig, InitialPosition, Liveness, Retrieval, StreamConfig};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::check;
use crate::log::{Entry, Event, Log};
use crate::plan::{Action, LivenessPlan, Plan, Reading, Settings, Strike};
use crate::processor::Factory;
use crate::rng::Rng;
use crate::wrap::{Gate, Latency, SimKinesis, SimStore, StoreFaults};

/// The stream of a single-stream plan; a multi-stream plan's are `sim-0`, `sim-1`, ….
const STREAM: &str = "sim";

/// The streams of `plan`.
fn stream_names(plan: &Plan) -> Vec<String> {
    if plan.streams <= 1 {
        vec![STREAM.to_owned()]
    } else {
        (0..plan.streams).map(|i| format!("{STREAM}-{i}")).collect()
    }
}

/// What a run found.
#[derive(Debug)]
pub struct Outcome {
    /// The plan that ran.
    pub plan: Plan,
    /// Every invariant that broke, with what broke it.
    pub violations: Vec<String>,
    /// The log.
    pub log: Vec<Entry>,
    /// Figures of the run.
    pub stats: Stats,
}

/// Figures of one run.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Records put.
    pub records: usize,
    /// Records handed to processors, repeats included.
    pub deliveries: usize,
    /// From the start of the quiet phase until every record was processed.
    pub catch_up: Duration,
    /// From then until the fleet was balanced.
    pub balance: Duration,
    /// Virtual time the run took.
    pub virtual_time: Duration,
}

/// Runs `seed` with `settings`.
pub fn run(seed: u64, settings: Settings) -> Outcome {
    let plan = Plan::draw(seed, settings);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(simulate(plan)),
        Err(e) => Outcome {
            plan,
            violations: vec![format!("no runtime: {e}")],
            log: Vec::new(),
            stats: Stats::default(),
        },
    }
}

/// A worker slot: the same place in the fleet across kills and restarts.
struct Slot {
    id: String,
    incarnation: u32,
    gate: Arc<Gate>,
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

impl Slot {
    /// Whether its worker runs (it may have ended by itself, when the store was down as it
    /// started).
    fn is_running(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|(_, task)| !task.is_finished())
    }
}

struct World {
    plan: Plan,
    log: Log,
    kinesis: Arc<InMemoryKinesis>,
    store: Arc<MemoryLeaseStore>,
    faults: Arc<StoreFaults>,
    latency: Arc<Latency>,
    faults_on: Arc<AtomicBool>,
    processor_rng: Arc<Mutex<Rng>>,
    slots: Vec<Slot>,
    /// Old processes replaced while frozen, still running beside their replacements.
    zombies: Vec<(CancellationToken, JoinHandle<()>)>,
    put: usize,
}

/// How long the quiet phase may take to process every record, derived from the configuration
/// (`L` the lease duration, `T` the take interval, `B` the reader's longest backoff):
/// - a dead, frozen or replaced worker's leases expire after `L` and are taken at the next take
///   round: `L + T`;
/// - a shard released after failures cools down for `L` before it is taken back: `L`;
/// - a pipeline in a retry pause (1 s, then 2 s) or a reader backing off waits at most `3 s + B`;
/// - a lease that failed to renew while the store was down is given up and taken again: `L`;
/// - each generation of resharding waits for its parents' `SHARD_END`, seen at the next parent
///   poll or take round: `T` per reshard.
///
/// So `3L + T + 3 s + B + (reshards + 1) T`; with `L` = 3 s that is about 26 s plus 1.5 s per
/// reshard. The slowest of 100,000 seeds took 10.9 s.
/// How long a worker asked for a lease lets its processor finish: two lease durations.
pub(crate) fn handoff_timeout(plan: &Plan) -> Duration {
    plan.settings.lease_duration * 2
}

/// How often a worker that heartbeats lists every lease however quiet the table: eight lease
/// durations.
fn full_listing_interval(plan: &Plan) -> Duration {
    plan.settings.lease_duration * 8
}

/// What lost version increments may add to a bound: a change whose increment was lost is seen
/// at the next full listing (only workers that heartbeat skip listings).
fn lost_increments(plan: &Plan) -> Duration {
    if plan.lost_bumps > 0.0 && plan.liveness != LivenessPlan::PerLease {
        full_listing_interval(plan)
    } else {
        Duration::ZERO
    }
}

fn catch_up_bound(plan: &Plan, reshards: usize) -> Duration {
    let lease = plan.settings.lease_duration;
    let take = lease / 2;
    let backoff = PollingConfig::default().backoff_max;
    lease * 3
        + take
        + Duration::from_secs(3)
        + backoff
        + take * (reshards as u32 + 1)
        + lost_increments(plan)
}

/// How long the fleet may take to balance once every record is processed: each worker steals
/// at most one lease per take round, so one round per lease to move, and a lease duration for
/// a stolen lease's pipeline to end: `(leases + 1) T + L`.
fn balance_bound(plan: &Plan, leases: usize) -> Duration {
    let lease = plan.settings.lease_duration;
    (lease / 2) * (leases as u32 + 1) + lease + lost_increments(plan)
}

async fn simulate(plan: Plan) -> Outcome {
    let log = Log::new();
    let kinesis = Arc::new(InMemoryKinesis::new());
    // A fixed wall clock: stream creation times are part of multi-stream lease keys, and so of
    // every decision that orders keys; a seed must replay exactly.
    kinesis.set_clock(std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600));
    for stream in stream_names(&plan) {
        kinesis.create_stream(&stream, plan.shards);
    }
    let mut rng = Rng::new(plan.seed ^ 0xA5A5_5A5A_0F0F_F0F0);
    let mut world = World {
        log: log.clone(),
        kinesis,
        store: Arc::new(MemoryLeaseStore::new()),
        faults: Arc::new({
            let faults = StoreFaults::new(rng.fork());
            faults.lose_bumps(plan.lost_bumps);
            faults
        }),
        latency: Arc::new(Latency::new(rng.fork())),
        faults_on: Arc::new(AtomicBool::new(true)),
        processor_rng: Arc::new(Mutex::new(rng.fork())),
        slots: (0..plan.slots)
            .map(|i| Slot {
                id: format!("w{i}"),
                incarnation: 0,
                gate: Arc::default(),
                running: None,
            })
            .collect(),
        zombies: Vec::new(),
        put: 0,
        plan,
    };
    let start = Instant::now();
    let mut violations = Vec::new();
    for worker in 0..world.plan.workers {
        world.start(worker, false).await;
    }
    let steps = world.plan.steps.clone();
    for step in steps {
        tokio::time::sleep_until(start + step.at).await;
        world.apply(&step.action).await;
    }
    tokio::time::sleep_until(start + world.plan.settings.chaos).await;

    // The quiet phase: no more faults; the planned workers run, the zombies are gone.
    for (_, zombie) in world.zombies.drain(..) {
        zombie.abort();
        let _ = zombie.await;
    }
    world.faults.stop();
    world.kinesis.clear_faults();
    world.faults_on.store(false, Ordering::SeqCst);
    for slot in &world.slots {
        slot.gate.freeze_until(Instant::now());
    }
    for worker in 0..world.plan.workers {
        if !world.slots[worker].is_running() {
            world.slots[worker].running = None;
            world.start(worker, false).await;
        }
    }
    log.push(Event::Note("quiet: faults off".into()));
    let quiet = Instant::now();
    let records = world.put;
    let reshards = log
        .entries()
        .iter()
        .filter(|e| matches!(e.event, Event::Resharded { .. }))
        .count();
    let catch_up_bound = catch_up_bound(&world.plan, reshards);
    let all_delivered = || check::undelivered(&log.entries(), records) == 0;
    while !all_delivered() && quiet.elapsed() < catch_up_bound {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let catch_up = quiet.elapsed();
    let mut balance = Duration::ZERO;
    if !all_delivered() {
        violations.push(format!(
            "liveness: {} of {records} records still unprocessed {:?} after faults stopped (bound {:?})",
            check::undelivered(&log.entries(), records),
            catch_up,
            catch_up_bound
        ));
    } else {
        let balanced = Instant::now();
        let leases = world.store.list().await.map_or(0, |l| l.leases.len());
        let balance_bound = balance_bound(&world.plan, leases);
        loop {
            let (spread, holdings) = world.spread().await;
            if spread <= 1 {
                balance = balanced.elapsed();
                break;
            }
            if balanced.elapsed() >= balance_bound {
                violations.push(format!(
                    "liveness: leases per worker still differ by {spread} {:?} after every record was processed (bound {balance_bound:?}): {holdings:?}",
                    balanced.elapsed()
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    world.stop_all().await;
    let entries = log.entries();
    violations.extend(check::all(&world.plan, &entries));
    let stats = Stats {
        records,
        deliveries: entries
            .iter()
            .map(|e| match &e.event {
                Event::Delivered { ids, .. } => ids.len(),
                _ => 0,
            })
            .sum(),
        catch_up,
        balance,
        virtual_time: start.elapsed(),
    };
    Outcome {
        plan: world.plan,
        violations,
        log: entries,
        stats,
    }
}

impl World {
    fn config(&self, slot: usize) -> ConsumerConfig {
        let lease = self.plan.settings.lease_duration;
        let retrieval = match self.plan.reading {
            Reading::Polling => Retrieval::Polling(PollingConfig {
                idle_time_between_reads: Duration::from_millis(500),
                ..PollingConfig::default()
            }),
            Reading::FanOut => Retrieval::fan_out(),
        };
        ConsumerConfig {
            initial_position: InitialPosition::TrimHorizon,
            lease_duration: lease,
            take_interval: lease / 2,
            shard_sync_interval: lease * 2,
            parent_poll_interval: Duration::from_millis(200),
            retrieval,
            shutdown_timeout: lease * 2,
            handoff_timeout: handoff_timeout(&self.plan),
            liveness: match self.plan.liveness {
                LivenessPlan::PerLease => Liveness::PerLease,
                LivenessPlan::Heartbeat => Liveness::Heartbeat,
                LivenessPlan::Mixed if slot.is_multiple_of(2) => Liveness::Heartbeat,
                LivenessPlan::Mixed => Liveness::PerLease,
            },
            full_listing_interval: full_listing_interval(&self.plan),
            prefetch_memory: self.plan.prefetch_memory,
            ..ConsumerConfig::default()
        }
    }

    /// Starts the worker of `slot` unless it runs: the same id again, or a new one.
    async fn start(&mut self, slot: usize, new_id: bool) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        if s.is_running() {
            return;
        }
        s.incarnation += 1;
        if new_id {
            s.id = format!("w{slot}-{}", s.incarnation);
        }
        let id = s.id.clone();
        // Who did what, in the log: the worker id and which process of it (two may share an id
        // after a zombie's replacement).
        let process = format!("{id}#{}", s.incarnation);
        let gate = s.gate.clone();
        let sim_store = Arc::new(SimStore::new(
            self.store.clone(),
            &process,
            self.log.clone(),
            self.faults.clone(),
            gate.clone(),
            self.latency.clone(),
        ));
        let store: Arc<dyn LeaseStore> = sim_store.clone();
        let factory = Factory {
            worker: process.clone(),
            log: self.log.clone(),
            behaviour: self.plan.processors,
            rng: self.processor_rng.clone(),
            faults_on: self.faults_on.clone(),
            gate: gate.clone(),
            lease_duration: self.plan.settings.lease_duration,
            transactional: self.plan.transactional.then_some(sim_store),
        };
        let builder = Consumer::builder().application_name("sim");
        let builder = if self.plan.streams <= 1 {
            builder.stream(STREAM)
        } else {
            builder.streams(
                stream_names(&self.plan)
                    .into_iter()
                    .map(|s| StreamConfig::new(s, InitialPosition::TrimHorizon))
                    .collect::<Vec<_>>(),
            )
        };
        let consumer = builder
            .kinesis(Arc::new(SimKinesis::new(
                self.kinesis.clone(),
                gate,
                self.latency.clone(),
            )))
            .lease_store(store)
            .worker_id(id.as_str())
            .config(self.config(slot))
            .processor(factory)
            .build();
        let consumer = match consumer {
            Ok(consumer) => consumer,
            Err(e) => {
                self.log.push(Event::Note(format!("{id} not built: {e}")));
                return;
            }
        };
        let stop = CancellationToken::new();
        let log = self.log.clone();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                if let Err(e) = consumer.run(stop).await {
                    log.push(Event::Note(format!("{id} ended: {e}")));
                }
            }
        });
        if let Some(s) = self.slots.get_mut(slot) {
            s.running = Some((stop, task));
        }
    }

    async fn apply(&mut self, action: &Action) {
        self.log.push(Event::Step(format!("{action:?}")));
        let now = Instant::now();
        match action {
            Action::Put { first, count } => {
                let streams = stream_names(&self.plan);
                for id in *first..first + count {
                    let key_index = id % self.plan.keys;
                    let key = format!("k{key_index}");
                    // A partition key always goes to the same stream.
                    let stream = &streams[key_index % streams.len()];
                    match self
                        .kinesis
                        .put(stream, &key, format!("r{id}").into_bytes())
                    {
                        Ok((shard, sequence)) => {
                            self.log.push(Event::Put {
                                id,
                                key,
                                shard,
                                sequence,
                            });
                            self.put = self.put.max(id + 1);
                        }
                        Err(e) => self.log.push(Event::Note(format!("put r{id} failed: {e}"))),
                    }
                }
            }
            Action::Split { pick } => {
                let stream = self.pick_stream(*pick);
                let open = self.open_shards(&stream).await;
                if let Some(shard) = open.get(pick % open.len().max(1)) {
                    let middle = shard.1 + (shard.2 - shard.1) / 2;
                    match self.kinesis.split_shard(&stream, &shard.0, middle) {
                        Ok(children) => self.log.push(Event::Resharded {
                            children: children.to_vec(),
                            parents: vec![shard.0.clone()],
                        }),
                        Err(e) => self.log.push(Event::Note(format!("split failed: {e}"))),
                    }
                }
            }
            Action::Merge { pick } => {
                let stream = self.pick_stream(*pick);
                let open = self.open_shards(&stream).await;
                let i = pick % open.len().max(1);
                if let (Some(a), Some(b)) = (open.get(i), open.get(i + 1))
                    && a.2.checked_add(1) == Some(b.1)
                {
                    match self.kinesis.merge_shards(&stream, &a.0, &b.0) {
                        Ok(child) => {
                            self.log.push(Event::Resharded {
                                children: vec![child],
                                parents: vec![a.0.clone(), b.0.clone()],
                            });
                        }
                        Err(e) => self.log.push(Event::Note(format!("merge failed: {e}"))),
                    }
                }
            }
            Action::Kill { worker } => {
                if let Some((_, task)) = self.slots.get_mut(*worker).and_then(|s| s.running.take())
                {
                    task.abort();
                    let _ = task.await;
                }
            }
            Action::Stop { worker } => {
                if let Some((stop, task)) =
                    self.slots.get_mut(*worker).and_then(|s| s.running.take())
                {
                    stop.cancel();
                    // The process exits before it can be started again.
                    let _ = task.await;
                }
            }
            Action::Start { worker, new_id } => self.start(*worker, *new_id).await,
            Action::Zombie { worker, for_ } => {
                let replaced = self.slots.get_mut(*worker).and_then(|slot| {
                    let running = slot.running.take()?;
                    slot.gate.freeze_until(now + *for_);
                    slot.gate = Arc::default();
                    Some(running)
                });
                if let Some(zombie) = replaced {
                    self.zombies.push(zombie);
                    self.start(*worker, false).await;
                }
            }
            Action::MuteHeartbeat { worker, for_ } => {
                if let Some(slot) = self.slots.get(*worker) {
                    slot.gate.mute_until(now + *for_);
                }
            }
            Action::Freeze { worker, for_ } => {
                if let Some(slot) = self.slots.get(*worker) {
                    slot.gate.freeze_until(now + *for_);
                }
            }
            Action::StoreDown { for_ } => self.faults.down_until(now + *for_),
            Action::StoreSlow { for_, delay } => self.faults.slow_until(now + *for_, *delay),
            Action::StoreAmbiguous { for_ } => self.faults.ambiguous_until(now + *for_),
            Action::Throttle { times } => self.kinesis.inject(Fault::ThrottleGetRecords {
                shard_id: None,
                times: *times,
            }),
            Action::ServiceErrors { times } => {
                self.kinesis.inject(Fault::ServiceErrors { times: *times })
            }
            Action::ExpireIterators => self.kinesis.inject(Fault::ExpireIterators),
            Action::DropSubscriptions => self
                .kinesis
                .inject(Fault::DropSubscriptions { shard_id: None }),
            Action::AtHandoff { strike, for_ } => self.strike_handoff(*strike, *for_).await,
        }
    }

    /// Waits up to two lease durations for a lease in hand-off, then strikes its holder or the
    /// store.
    async fn strike_handoff(&mut self, strike: Strike, for_: Duration) {
        let deadline = Instant::now() + self.plan.settings.lease_duration * 2;
        let holder = loop {
            let listing = self.store.list().await.unwrap_or_default();
            if let Some(holder) = listing
                .leases
                .iter()
                .find_map(|l| l.checkpoint_owner.clone())
            {
                break holder.to_string();
            }
            if Instant::now() >= deadline {
                self.log
                    .push(Event::Note("no hand-off to strike".to_owned()));
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.log.push(Event::Note(format!(
            "strike {strike:?} for_: {for_:?} during a hand-off held by {holder}"
        )));
        let now = Instant::now();
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.id == holder && s.is_running());
        match (strike, slot) {
            (Strike::KillHolder, Some(slot)) => {
                if let Some((_, task)) = slot.running.take() {
                    task.abort();
                    let _ = task.await;
                }
            }
            (Strike::FreezeHolder, Some(slot)) => slot.gate.freeze_until(now + for_),
            (Strike::KillHolder | Strike::FreezeHolder, None) => {}
            (Strike::StoreDown, _) => self.faults.down_until(now + for_),
            (Strike::StoreAmbiguous, _) => self.faults.ambiguous_until(now + for_),
        }
    }

    /// The stream a split or merge drawn as `pick` resharded.
    fn pick_stream(&self, pick: usize) -> String {
        let streams = stream_names(&self.plan);
        streams[(pick / 3) % streams.len()].clone()
    }

    async fn all_shards(&self, stream: &str) -> Vec<shardwise::kinesis::Shard> {
        list_all_shards(
            self.kinesis.as_ref(),
            &StreamId::Name(stream.into()),
            None,
            None,
        )
        .await
        .unwrap_or_default()
    }

    /// The open shards of `stream` as (id, first hash key, last hash key), in hash-key order.
    async fn open_shards(&self, stream: &str) -> Vec<(String, u128, u128)> {
        let mut open: Vec<(String, u128, u128)> = self
            .all_shards(stream)
            .await
            .into_iter()
            .filter(|s| !s.is_closed())
            .map(|s| (s.shard_id, s.hash_range.start, s.hash_range.end))
            .collect();
        open.sort_by_key(|s| s.1);
        open
    }

    /// Leases of unfinished shards per running worker: the most minus the fewest, and the
    /// holdings (`-` for leases nobody holds).
    async fn spread(&self) -> (usize, BTreeMap<String, usize>) {
        let running: Vec<&str> = self
            .slots
            .iter()
            .filter(|s| s.is_running())
            .map(|s| s.id.as_str())
            .collect();
        let mut held: BTreeMap<&str, usize> = running.iter().map(|id| (*id, 0)).collect();
        // (Leases are owned by worker ids; processes of one id count together.)
        let mut free = 0;
        for lease in self
            .store
            .list()
            .await
            .map(|l| l.leases)
            .unwrap_or_default()
            .iter()
            .filter(|l| !l.is_ended())
        {
            match lease.owner.as_ref().and_then(|o| held.get_mut(o.as_str())) {
                Some(count) => *count += 1,
                None => free += 1,
            }
        }
        let most = held.values().copied().max().unwrap_or(0);
        let fewest = held.values().copied().min().unwrap_or(0);
        let mut holdings: BTreeMap<String, usize> =
            held.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        if free > 0 {
            holdings.insert("-".into(), free);
        }
        // A lease nobody holds counts against balance too.
        ((most - fewest).max(usize::from(free > 0) * 2), holdings)
    }

    async fn stop_all(&mut self) {
        for (stop, zombie) in self.zombies.drain(..) {
            stop.cancel();
            let _ = zombie.await;
        }
        for slot in &mut self.slots {
            if let Some((stop, task)) = slot.running.take() {
                stop.cancel();
                let _ = task.await;
            }
        }
    }
}
