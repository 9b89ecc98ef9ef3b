//! Which leases a worker should take or steal: a pure decision over what it has seen.
//!
//! The rule is the KCL's count-based balancing. Leases of ended shards do not count and are
//! never taken. A worker aims for a fair share, `ceil(leases / workers)` capped by
//! `max_leases_per_worker`. It first takes leases that are free or expired; only when there are
//! none does it steal (asks for a hand-off), at most `max_leases_to_steal_at_one_time` per
//! round, most loaded workers first: from each worker what it holds over the fair share, and
//! one lease from each worker at the fair share (above the floor share) while this worker needs
//! two or more, so that a fleet of equal workers makes room for a newcomer in one round.
//!
//! Among free or expired leases, those whose parent shards are all finished come first (a child
//! cannot start before its parents end). Ties are broken deterministically: workers by id, leases by a hash of (this worker, lease
//! key). The hash differs from worker to worker, so workers racing for the same free leases
//! mostly pick different ones.

use std::collections::{BTreeMap, HashSet};

use crate::ids::{LeaseKey, WorkerId};
use crate::lease::Lease;

/// The knobs of the balancing decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceConfig {
    /// Most leases one worker holds (default: no limit).
    pub max_leases_per_worker: usize,
    /// Most leases one worker asks for per balancing round (default: as many as it needs to
    /// reach its share; the KCL's default is 1, which made sense when a steal replayed the
    /// holder's work, and a hand-off does not).
    pub max_leases_to_steal_at_one_time: usize,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        Self {
            max_leases_per_worker: usize::MAX,
            max_leases_to_steal_at_one_time: usize::MAX,
        }
    }
}

/// What the decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct BalanceInput<'a> {
    /// Every lease from the latest listing.
    pub leases: &'a [Lease],
    /// The leases this worker judges expired (see [`ExpiryTracker`](crate::ExpiryTracker)).
    pub expired: &'a HashSet<LeaseKey>,
    /// This worker.
    pub me: &'a WorkerId,
    /// The leases this worker actually runs. A lease recorded as `me`'s but not held (left by an
    /// earlier process with the same id) is free to take at once.
    pub held: &'a HashSet<LeaseKey>,
    /// The knobs.
    pub config: &'a BalanceConfig,
}

/// A lease the worker should try to take, with the counter to compare against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The lease.
    pub key: LeaseKey,
    /// The counter seen in the listing; the take is conditional on it.
    pub counter: u64,
    /// The owner recorded when it was seen (`None` when free).
    pub owner: Option<WorkerId>,
}

impl Candidate {
    fn of(lease: &Lease) -> Self {
        Self {
            key: lease.key.clone(),
            counter: lease.counter,
            owner: lease.owner.clone(),
        }
    }
}

/// The decision, and the figures behind it (for metrics and logs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TakePlan {
    /// Free or expired leases to take.
    pub take: Vec<Candidate>,
    /// Leases to ask the most loaded worker to hand over (empty whenever `take` is not): a
    /// live worker's lease is not taken but asked for
    /// ([`LeaseStore::request_handoff`](crate::LeaseStore::request_handoff)), so that nothing
    /// it is processing is processed twice.
    pub steal: Vec<Candidate>,
    /// Leases that count: every lease of a shard that has not ended.
    pub total_leases: usize,
    /// Live workers seen, this one included.
    pub workers: usize,
    /// The fair share this worker aims for.
    pub target: usize,
    /// Leases this worker holds.
    pub held: usize,
    /// Free or expired leases seen.
    pub available: usize,
}

impl TakePlan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.take.is_empty() && self.steal.is_empty()
    }
}

/// Decides which leases this worker should take or steal now.
pub fn plan_takes(input: BalanceInput<'_>) -> TakePlan {
    let BalanceInput {
        leases,
        expired,
        me,
        held,
        config,
    } = input;
    let mut mine = 0usize;
    let mut available: Vec<&Lease> = Vec::new();
    // Each other worker's load, and the leases that may be asked of it.
    let mut by_worker: BTreeMap<&WorkerId, (usize, Vec<&Lease>)> = BTreeMap::new();
    let mut total_leases = 0usize;

    for lease in leases.iter().filter(|l| !l.is_ended()) {
        total_leases += 1;
        if lease.is_handing_off() {
            // Going to its owner: it counts as the owner's, and cannot be asked for again.
            // Expired, its holder is gone, and anyone may take it.
            match &lease.owner {
                _ if expired.contains(&lease.key) => available.push(lease),
                Some(owner) if owner == me => mine += 1,
                Some(owner) => by_worker.entry(owner).or_default().0 += 1,
                None => available.push(lease),
            }
            continue;
        }
        match &lease.owner {
            Some(owner) if owner == me && held.contains(&lease.key) => mine += 1,
            Some(owner) if owner == me => available.push(lease),
            Some(_) if expired.contains(&lease.key) => available.push(lease),
            Some(owner) => {
                let load = by_worker.entry(owner).or_default();
                load.0 += 1;
                load.1.push(lease);
            }
            None => available.push(lease),
        }
    }

    by_worker.remove(me);
    let workers = by_worker.len() + 1;
    let target = total_leases
        .div_ceil(workers)
        .min(config.max_leases_per_worker);
    let mut plan = TakePlan {
        total_leases,
        workers,
        target,
        held: mine,
        available: available.len(),
        ..TakePlan::default()
    };
    let needed = target.saturating_sub(mine);
    if needed == 0 {
        return plan;
    }

    if !available.is_empty() {
        // Leases whose parents are done first: a child waits for its parents, and under a
        // `max_leases_per_worker` cap a worker holding only waiting children would block them.
        let active: HashSet<&str> = leases
            .iter()
            .filter(|l| !l.is_ended())
            .map(|l| l.key.as_str())
            .collect();
        let waits = |lease: &Lease| {
            lease
                .parent_shard_ids
                .iter()
                .any(|p| active.contains(p.as_str()))
        };
        available.sort_by_key(|lease| (waits(lease), tie_break(me, &lease.key), &lease.key));
        plan.take = available
            .into_iter()
            .take(needed)
            .map(Candidate::of)
            .collect();
        return plan;
    }

    // Workers by load, most loaded first; among equals, the smallest id. Each gives what it
    // holds over the target; a worker at the target (above the floor share) gives one, while
    // this worker needs two or more, so that a fleet of equal workers makes room for a newcomer
    // in one round without the last lease bouncing between two workers at the target.
    let mut victims: Vec<(&WorkerId, usize, Vec<&Lease>)> = by_worker
        .into_iter()
        .map(|(worker, (load, leases))| (worker, load, leases))
        .collect();
    victims.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let floor = total_leases / workers;
    let mut budget = needed.min(config.max_leases_to_steal_at_one_time);
    for (_, load, leases) in victims {
        if budget == 0 {
            break;
        }
        let over = load.saturating_sub(target);
        // While this worker would still need two or more, counting what it already asked for.
        let at_target_gives =
            over == 0 && load == target && load > floor && needed - plan.steal.len() >= 2;
        let give = if over > 0 {
            over.min(budget)
        } else if at_target_gives {
            1
        } else {
            0
        };
        // Leases already being handed over cannot be asked for: a worker may have fewer to give.
        let give = give.min(leases.len());
        let mut leases = leases;
        leases.sort_by_key(|lease| (tie_break(me, &lease.key), &lease.key));
        plan.steal
            .extend(leases.into_iter().take(give).map(Candidate::of));
        budget -= give;
    }
    plan
}

/// FNV-1a over (worker, key): stable across processes and Rust versions.
fn tie_break(me: &WorkerId, key: &LeaseKey) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = me.as_str().bytes().chain([0u8]).chain(key.as_str().bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Checkpoint;

    /// A compact lease table: each entry is (key, owner or "-", ended?).
    fn table(rows: &[(&str, &str, bool)]) -> Vec<Lease> {
        rows.iter()
            .map(|(key, owner, ended)| {
                let cp = if *ended {
                    Checkpoint::ShardEnd
                } else {
                    Checkpoint::TrimHorizon
                };
                let mut lease = Lease::new(LeaseKey::new(*key).unwrap(), cp);
                lease.owner = (*owner != "-").then(|| WorkerId::new(*owner).unwrap());
                lease.counter = 7;
                lease
            })
            .collect()
    }

    /// `n` leases named `{prefix}{i}` owned by `owner`.
    fn owned(prefix: &str, n: usize, owner: &str) -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("{prefix}{i}"), owner.to_owned()))
            .collect()
    }

    struct Case {
        name: &'static str,
        leases: Vec<Lease>,
        expired: &'static [&'static str],
        held: &'static [&'static str],
        config: BalanceConfig,
        take: usize,
        steal: usize,
        /// When set: the owner every stolen lease must come from.
        steal_from: Option<&'static str>,
        /// When set: the first lease planned to take.
        take_first: Option<&'static str>,
        target: usize,
        workers: usize,
    }

    fn case(name: &'static str, leases: Vec<Lease>) -> Case {
        Case {
            name,
            leases,
            expired: &[],
            held: &[],
            config: BalanceConfig::default(),
            take: 0,
            steal: 0,
            steal_from: None,
            take_first: None,
            target: 0,
            workers: 1,
        }
    }

    /// Marks leases as being handed off: each (key, holder) keeps its owner as the worker it
    /// goes to, with `holder` as the checkpoint owner.
    fn handing(mut leases: Vec<Lease>, pending: &[(&str, &str)]) -> Vec<Lease> {
        for (key, holder) in pending {
            let lease = leases.iter_mut().find(|l| l.key.as_str() == *key).unwrap();
            lease.checkpoint_owner = Some(WorkerId::new(*holder).unwrap());
        }
        leases
    }

    fn with_parents(mut leases: Vec<Lease>, links: &[(&str, &str)]) -> Vec<Lease> {
        for (child, parent) in links {
            let lease = leases
                .iter_mut()
                .find(|l| l.key.as_str() == *child)
                .unwrap();
            lease
                .parent_shard_ids
                .push(crate::ShardId::new(*parent).unwrap());
        }
        leases
    }

    fn rows(spec: Vec<(String, String)>) -> Vec<Lease> {
        let borrowed: Vec<(&str, &str, bool)> = spec
            .iter()
            .map(|(k, o)| (k.as_str(), o.as_str(), false))
            .collect();
        table(&borrowed)
    }

    #[allow(clippy::vec_init_then_push)] // one case per statement reads best as a table
    fn cases() -> Vec<Case> {
        let mut all = Vec::new();
        all.push(case("empty table", vec![]));
        all.push(Case {
            take: 4,
            target: 4,
            ..case(
                "all free, alone",
                table(&[
                    ("a", "-", false),
                    ("b", "-", false),
                    ("c", "-", false),
                    ("d", "-", false),
                ]),
            )
        });
        all.push(Case {
            take: 2,
            target: 2,
            workers: 2,
            ..case(
                "half free, one other live worker",
                table(&[
                    ("a", "w2", false),
                    ("b", "-", false),
                    ("c", "-", false),
                    ("d", "-", false),
                ]),
            )
        });
        all.push(Case {
            expired: &["a", "b"],
            held: &["c", "d"],
            take: 2,
            target: 4,
            workers: 1,
            ..case(
                "one worker dead: its expired leases are taken",
                table(&[
                    ("a", "w2", false),
                    ("b", "w2", false),
                    ("c", "me", false),
                    ("d", "me", false),
                ]),
            )
        });
        all.push(Case {
            steal: 2,
            target: 3,
            workers: 4,
            ..case(
                "new worker joins a balanced fleet of 3 on 9: one from each of two",
                rows(
                    [
                        owned("a", 3, "w1"),
                        owned("b", 3, "w2"),
                        owned("c", 3, "w3"),
                    ]
                    .concat(),
                ),
            )
        });
        all.push(Case {
            steal: 1,
            steal_from: Some("w1"),
            target: 2,
            workers: 4,
            ..case(
                "new worker, fleet at target, needs 2: steals 1",
                rows(
                    [
                        owned("a", 2, "w1"),
                        owned("b", 2, "w2"),
                        owned("c", 2, "w3"),
                    ]
                    .concat(),
                ),
            )
        });
        all.push(Case {
            steal: 2,
            steal_from: Some("w2"),
            target: 2,
            workers: 4,
            ..case(
                "uneven counts: steal from the most loaded",
                rows(
                    [
                        owned("a", 2, "w1"),
                        owned("b", 5, "w2"),
                        owned("c", 1, "w3"),
                    ]
                    .concat(),
                ),
            )
        });
        all.push(Case {
            config: BalanceConfig {
                max_leases_to_steal_at_one_time: 1,
                ..BalanceConfig::default()
            },
            steal: 1,
            steal_from: Some("w1"),
            target: 4,
            workers: 3,
            ..case(
                "tie for most loaded: smallest worker id",
                rows(
                    [
                        owned("a", 5, "w1"),
                        owned("b", 5, "w2"),
                        owned("c", 0, "w3"),
                    ]
                    .concat(),
                ),
            )
        });
        all.push(Case {
            config: BalanceConfig {
                max_leases_to_steal_at_one_time: 3,
                ..BalanceConfig::default()
            },
            steal: 3,
            steal_from: Some("w1"),
            target: 4,
            workers: 2,
            ..case(
                "steal cap above 1: steal up to the excess",
                rows(owned("a", 8, "w1")),
            )
        });
        all.push(Case {
            config: BalanceConfig {
                max_leases_to_steal_at_one_time: 1,
                ..BalanceConfig::default()
            },
            steal: 1,
            steal_from: Some("w1"),
            target: 4,
            workers: 2,
            ..case(
                "default steal cap is one per round",
                rows(owned("a", 8, "w1")),
            )
        });
        all.push(Case {
            held: &["m0", "m1"],
            target: 3,
            workers: 3,
            ..case(
                "balanced within one: no steal (3,3,2)",
                rows(
                    [
                        owned("a", 3, "w1"),
                        owned("b", 3, "w2"),
                        owned("m", 2, "me"),
                    ]
                    .concat(),
                ),
            )
        });
        all.push(Case {
            held: &["m0", "m1", "m2"],
            target: 3,
            workers: 3,
            ..case(
                "at target: nothing to do",
                rows(
                    [
                        owned("a", 3, "w1"),
                        owned("b", 2, "w2"),
                        owned("m", 3, "me"),
                    ]
                    .concat(),
                ),
            )
        });
        all.push(Case {
            config: BalanceConfig {
                max_leases_per_worker: 2,
                ..BalanceConfig::default()
            },
            take: 2,
            target: 2,
            ..case(
                "max leases per worker caps takes",
                table(&[
                    ("a", "-", false),
                    ("b", "-", false),
                    ("c", "-", false),
                    ("d", "-", false),
                ]),
            )
        });
        all.push(Case {
            config: BalanceConfig {
                max_leases_per_worker: 2,
                ..BalanceConfig::default()
            },
            held: &["m0", "m1"],
            target: 2,
            workers: 2,
            ..case(
                "max leases reached: no steal even when others hold many",
                rows([owned("a", 10, "w1"), owned("m", 2, "me")].concat()),
            )
        });
        all.push(Case {
            take: 1,
            target: 1,
            ..case(
                "ended shards never count nor get taken",
                table(&[("a", "-", true), ("b", "w2", true), ("c", "-", false)]),
            )
        });
        all.push(Case {
            expired: &["a"],
            take: 0,
            target: 0,
            ..case(
                "only ended leases, even expired",
                table(&[("a", "w2", true), ("b", "-", true)]),
            )
        });
        all.push(Case {
            take: 2,
            target: 2,
            ..case(
                "leases recorded as mine but not held are taken at once",
                table(&[("a", "me", false), ("b", "me", false)]),
            )
        });
        all.push(Case {
            held: &["a"],
            take: 0,
            steal: 1,
            steal_from: Some("w2"),
            target: 2,
            workers: 2,
            ..case(
                "more workers' leases than mine: steal one",
                table(&[
                    ("a", "me", false),
                    ("b", "w2", false),
                    ("c", "w2", false),
                    ("d", "w2", false),
                ]),
            )
        });
        all.push(Case {
            target: 1,
            workers: 3,
            ..case(
                "more workers than leases: idle worker takes nothing",
                table(&[("a", "w1", false), ("b", "w2", false)]),
            )
        });
        all.push(Case {
            expired: &["a"],
            take: 1,
            target: 2,
            workers: 2,
            ..case(
                "expired leases first, no steal in the same round",
                table(&[("a", "w1", false), ("b", "w2", false), ("c", "w2", false)]),
            )
        });
        all.push(Case {
            held: &["c"],
            target: 2,
            workers: 2,
            ..case(
                "a lease being handed to me counts as mine: no more asking",
                handing(
                    table(&[
                        ("a", "w2", false),
                        ("b", "w2", false),
                        ("c", "me", false),
                        ("d", "me", false),
                    ]),
                    &[("d", "w2")],
                ),
            )
        });
        all.push(Case {
            held: &["m0"],
            steal: 1,
            steal_from: Some("w1"),
            target: 3,
            workers: 4,
            ..case(
                "needing 2, one from a worker over the target: none from one at it (1,4,3,2)",
                rows(
                    [
                        owned("m", 1, "me"),
                        owned("a", 4, "w1"),
                        owned("b", 3, "w2"),
                        owned("c", 2, "w3"),
                    ]
                    .concat(),
                ),
            )
        });
        all.push(Case {
            steal: 1,
            steal_from: Some("w1"),
            target: 2,
            workers: 4,
            ..case(
                "leases being handed over are never asked for again; they count for their new owner (w2 has nothing to give, w1 gives one)",
                handing(
                    rows([owned("a", 2, "w1"), owned("b", 3, "w2"), owned("c", 1, "w3")].concat()),
                    &[("b0", "w1"), ("b1", "w1"), ("b2", "w1")],
                ),
            )
        });
        all.push(Case {
            expired: &["b"],
            take: 1,
            take_first: Some("b"),
            target: 2,
            workers: 2,
            ..case(
                "a hand-off whose holder died: the expired lease is taken by anyone",
                handing(
                    table(&[("a", "w2", false), ("b", "w3", false), ("c", "w2", false)]),
                    &[("b", "w2")],
                ),
            )
        });
        all
    }

    #[test]
    fn balancing_table() {
        let me = WorkerId::new("me").unwrap();
        for c in cases() {
            let expired: HashSet<LeaseKey> = c
                .expired
                .iter()
                .map(|k| LeaseKey::new(*k).unwrap())
                .collect();
            let held: HashSet<LeaseKey> =
                c.held.iter().map(|k| LeaseKey::new(*k).unwrap()).collect();
            let plan = plan_takes(BalanceInput {
                leases: &c.leases,
                expired: &expired,
                me: &me,
                held: &held,
                config: &c.config,
            });
            assert_eq!(plan.take.len(), c.take, "{}: take {:?}", c.name, plan);
            assert_eq!(plan.steal.len(), c.steal, "{}: steal {:?}", c.name, plan);
            assert_eq!(plan.target, c.target, "{}: target", c.name);
            assert_eq!(plan.workers, c.workers, "{}: workers", c.name);
            if let Some(first) = c.take_first {
                assert_eq!(
                    plan.take.first().map(|t| t.key.as_str()),
                    Some(first),
                    "{}: first take",
                    c.name
                );
            }
            if let Some(from) = c.steal_from {
                for s in &plan.steal {
                    assert_eq!(
                        s.owner.as_ref().map(WorkerId::as_str),
                        Some(from),
                        "{}",
                        c.name
                    );
                }
            }
            for t in plan.take.iter().chain(&plan.steal) {
                let lease = c.leases.iter().find(|l| l.key == t.key).unwrap();
                assert!(!lease.is_ended(), "{}: planned an ended lease", c.name);
                assert_eq!(t.counter, lease.counter, "{}: counter", c.name);
                assert!(!held.contains(&t.key), "{}: planned a held lease", c.name);
            }
        }
    }

    #[test]
    fn parents_are_taken_before_their_waiting_children() {
        let leases = with_parents(
            table(&[
                ("c1", "-", false),
                ("c2", "-", false),
                ("p", "-", false),
                ("q", "w9", true),
            ]),
            &[("c1", "p"), ("c2", "p"), ("p", "q")],
        );
        let none = HashSet::new();
        let config = BalanceConfig {
            max_leases_per_worker: 1,
            ..BalanceConfig::default()
        };
        for i in 0..20 {
            let me = WorkerId::new(format!("worker-{i}")).unwrap();
            let plan = plan_takes(BalanceInput {
                leases: &leases,
                expired: &none,
                me: &me,
                held: &none,
                config: &config,
            });
            assert_eq!(plan.take.len(), 1);
            assert_eq!(
                plan.take[0].key.as_str(),
                "p",
                "{me}: the parent (whose own parent ended) first"
            );
        }
    }

    #[test]
    fn decision_is_deterministic_and_spreads_workers() {
        let leases = table(&[
            ("a", "-", false),
            ("b", "-", false),
            ("c", "-", false),
            ("d", "-", false),
            ("e", "-", false),
            ("f", "-", false),
        ]);
        let none = HashSet::new();
        let config = BalanceConfig {
            max_leases_per_worker: 1,
            ..BalanceConfig::default()
        };
        let pick = |name: &str| {
            let me = WorkerId::new(name).unwrap();
            plan_takes(BalanceInput {
                leases: &leases,
                expired: &none,
                me: &me,
                held: &none,
                config: &config,
            })
            .take
        };
        assert_eq!(pick("w1"), pick("w1"));
        let firsts: HashSet<LeaseKey> = (0..8)
            .map(|i| pick(&format!("worker-{i}"))[0].key.clone())
            .collect();
        assert!(firsts.len() > 1, "all workers picked the same lease first");
    }

    /// Repeated rounds of every worker planning and applying its plan converge to a fair split.
    #[test]
    fn fleet_converges_to_fair_share() {
        for (n_leases, n_workers) in [(8usize, 3usize), (9, 4), (1, 3), (16, 5), (100, 10)] {
            let mut leases = table(&[]);
            for i in 0..n_leases {
                leases.extend(table(&[(&format!("s{i}"), "-", false)]));
            }
            let workers: Vec<WorkerId> = (0..n_workers)
                .map(|i| WorkerId::new(format!("w{i}")).unwrap())
                .collect();
            let none = HashSet::new();
            let config = BalanceConfig::default();
            for _round in 0..200 {
                let mut changed = false;
                for me in &workers {
                    let held: HashSet<LeaseKey> = leases
                        .iter()
                        .filter(|l| l.is_owned_by(me))
                        .map(|l| l.key.clone())
                        .collect();
                    let plan = plan_takes(BalanceInput {
                        leases: &leases,
                        expired: &none,
                        me,
                        held: &held,
                        config: &config,
                    });
                    for c in plan.take.iter().chain(&plan.steal) {
                        let lease = leases.iter_mut().find(|l| l.key == c.key).unwrap();
                        lease.owner = Some(me.clone());
                        lease.counter += 1;
                        changed = true;
                    }
                }
                if !changed {
                    break;
                }
            }
            let fair = n_leases.div_ceil(n_workers);
            let counts: Vec<usize> = workers
                .iter()
                .map(|w| leases.iter().filter(|l| l.is_owned_by(w)).count())
                .collect();
            assert_eq!(
                counts.iter().sum::<usize>(),
                n_leases,
                "{n_leases}/{n_workers}: every lease owned"
            );
            assert!(
                counts.iter().all(|&c| c <= fair),
                "{n_leases}/{n_workers}: {counts:?} above fair share {fair}"
            );
            let floor = n_leases / n_workers;
            assert!(
                counts.iter().all(|&c| c + 1 >= floor),
                "{n_leases}/{n_workers}: {counts:?} too far below {floor}"
            );
        }
    }
}
