//! The simulator as CI runs it: a fixed set of seeds, each replayable with
//! `cargo run --release -p shardwise-sim -- --seed N --trace`.

use shardwise_sim::{Settings, quiet_simulated_panics, report, run};

/// Seeds 0..SEEDS must all hold every invariant. 1,000 seeds take about 13 s: the three
/// deliberate breakages of the library (fencing, parents first, the shutdown checkpoint) are each
/// caught within them (seeds 15, 0 and 726).
const SEEDS: u64 = 1_000;

#[test]
fn every_invariant_holds_for_the_ci_seeds() {
    quiet_simulated_panics();
    let mut failures = Vec::new();
    for seed in 0..SEEDS {
        let outcome = run(seed, Settings::default());
        if !outcome.violations.is_empty() {
            failures.push(report(&outcome));
        }
    }
    assert!(
        failures.is_empty(),
        "{} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_seed_replays_exactly() {
    quiet_simulated_panics();
    // 2 and 7 read several streams (stream creation times, in lease keys, come from the
    // in-memory Kinesis's clock, which the simulation fixes).
    for seed in [2, 3, 7, 17] {
        let first: Vec<String> = run(seed, Settings::default())
            .log
            .iter()
            .map(ToString::to_string)
            .collect();
        let second: Vec<String> = run(seed, Settings::default())
            .log
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(first, second, "seed {seed} ran differently twice");
    }
}

/// The same faults on fleets at scale (every worker slot started): 1,000 shards over 50
/// workers, and 100 over 10, each liveness mode drawn as in the small seeds.
#[test]
fn every_invariant_holds_on_fleets_at_scale() {
    quiet_simulated_panics();
    let mut failures = Vec::new();
    for (fleet, seeds) in [((1_000, 50), 0..2), ((100, 10), 0..20)] {
        let settings = Settings {
            fleet: Some(fleet),
            ..Settings::default()
        };
        for seed in seeds {
            let outcome = run(seed, settings);
            assert_eq!(outcome.plan.slots, fleet.1);
            if !outcome.violations.is_empty() {
                failures.push(report(&outcome));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Seeds beyond the CI range that once found a defect (heartbeats: a hand-off behind a lost
/// version increment, a late heartbeat, a stale membership after a failed read, a heartbeat
/// unchanged across a rejoin, a plan filtered to nothing, a zombie's hand-on, several
/// heartbeats in doubt taken for another process's): each must keep holding.
#[test]
fn seeds_that_once_failed_hold() {
    quiet_simulated_panics();
    let failures: Vec<String> = [18_158, 19_536, 20_195, 47_028, 47_915, 55_834, 63_106]
        .into_iter()
        .map(|seed| run(seed, Settings::default()))
        .filter(|outcome| !outcome.violations.is_empty())
        .map(|outcome| report(&outcome))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
