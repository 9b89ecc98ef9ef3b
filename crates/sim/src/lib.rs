//! The deterministic fleet simulator: a whole fleet of shardwise workers in one process, under
//! tokio's paused clock, on the in-memory Kinesis and lease store, with workloads and faults
//! drawn from one seed, and invariants checked on the log of every delivery and lease write.
//!
//! A seed replays exactly: every choice comes from it ([`Rng`]), the runtime runs one task at a
//! time on a virtual clock, and the worker's selects are biased, so the same seed makes the same
//! calls in the same order. `shardwise-sim --seed N` replays one seed with its trace;
//! `shardwise-sim --seeds N` runs many and prints figures.
//!
//! What a seed draws ([`Plan`]): 1–4 shards, 1–4 workers, 3–24 partition keys, bursts of
//! records, polling or fan-out, processors that fail, panic, dawdle or never checkpoint; and
//! faults at random times: splits and merges, workers killed, stopped, started again (with the
//! same or a new id) or frozen past their lease (zombies), the lease store down, slow or
//! ambiguous (writes applied but answered with an error), Kinesis throttling, 5xx errors,
//! expired iterators and dropped subscriptions. After the faulty part, a quiet phase: faults
//! off, the planned workers running, every record must be delivered and the fleet balance.
//!
//! The invariants are listed in [`check`].

pub mod check;
pub mod log;
pub mod plan;
mod processor;
pub mod rng;
pub mod run;
pub mod scale;
mod wrap;

pub use plan::{LivenessPlan, Plan, Settings};
pub use rng::Rng;
pub use run::{Outcome, Stats, run};

/// Keeps the simulated processors' panics out of the output (they are part of the workload);
/// any other panic is reported as usual.
pub fn quiet_simulated_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let simulated = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|m| m.starts_with("simulated"));
        if !simulated {
            default(info);
        }
    }));
}

/// What a failing seed prints: the invariants that broke, the plan, the end of the log, and the
/// command that replays it.
pub fn report(outcome: &Outcome) -> String {
    let mut out = String::new();
    for violation in &outcome.violations {
        out.push_str(&format!("VIOLATION {violation}\n"));
    }
    out.push_str(&outcome.plan.to_string());
    let tail = outcome.log.len().saturating_sub(60);
    out.push_str(&format!(
        "last {} of {} events:\n",
        outcome.log.len() - tail,
        outcome.log.len()
    ));
    for entry in &outcome.log[tail..] {
        out.push_str(&format!("  {entry}\n"));
    }
    out.push_str(&format!(
        "replay: cargo run --release -p shardwise-sim -- --seed {} --trace\n",
        outcome.plan.seed
    ));
    out
}
