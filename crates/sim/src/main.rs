//! `shardwise-sim`: run the fleet simulator.
//!
//! - `shardwise-sim --seed N [--trace]`: one seed; prints its plan, figures and any broken
//!   invariant (with `--trace`, every event).
//! - `shardwise-sim --seeds N [--from K]`: seeds K..K+N; prints seeds per second, faults by
//!   kind and the run's figures; stops at the first failing seed and prints how to replay it.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use shardwise_sim::{Settings, quiet_simulated_panics, report, run};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| -> Option<u64> {
        let at = args.iter().position(|a| a == name)?;
        args.get(at + 1)?.parse().ok()
    };
    quiet_simulated_panics();
    // The workers' logs, when asked for (`SHARDWISE_SIM_LOG=debug`), on the virtual clock's
    // events' order.
    if let Ok(filter) = std::env::var("SHARDWISE_SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .without_time()
            .try_init();
    }
    if let Some(shards) = value("--idle-memory") {
        // One worker holding SHARDS idle shards: its process's resident memory.
        let Ok(shards) = u32::try_from(shards) else {
            eprintln!("--idle-memory takes a shard count");
            return ExitCode::from(2);
        };
        return match shardwise_sim::scale::idle_worker_memory(shards) {
            Ok((rss, peak)) => {
                println!(
                    "one worker holding {shards} idle shards: RSS {:.1} MB, peak {:.1} MB",
                    rss as f64 / 1e6,
                    peak as f64 / 1e6
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(at) = args.iter().position(|a| a == "--scale") {
        // --scale SHARDSxWORKERS[,…]: the scale table, beside the KCL 2.x model.
        let sizes = args
            .get(at + 1)
            .map_or("100x10,1000x10,1000x100", String::as_str);
        println!(
            "| shards × workers | model | rows read/s | writes/s | store calls/s per worker | recovery of a killed worker | balance after a join |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        for size in sizes.split(',') {
            let Some((Ok(shards), Ok(workers))) = size
                .split_once('x')
                .map(|(s, w)| (s.parse::<u32>(), w.parse::<usize>()))
            else {
                eprintln!("--scale takes SHARDSxWORKERS[,...], not {size:?}");
                return ExitCode::from(2);
            };
            let started = Instant::now();
            let row = |model: &str, f: &shardwise_sim::scale::ScaleFigures| {
                println!(
                    "| {} × {} | {model} | {:.0} | {:.0} | {:.1} | {:.0} s | {} |",
                    f.shards,
                    f.workers,
                    f.rows_read_per_second,
                    f.writes_per_second,
                    f.calls_per_worker_second,
                    f.recovery.as_secs_f64(),
                    f.balance_after_join.map_or_else(
                        || "over 1 h".to_owned(),
                        |d| format!("{:.0} s", d.as_secs_f64())
                    )
                );
            };
            for (model, liveness) in [
                (
                    "shardwise, per-lease renewals",
                    shardwise::Liveness::PerLease,
                ),
                ("shardwise, heartbeats", shardwise::Liveness::Heartbeat),
            ] {
                match shardwise_sim::scale::measure(shards, workers, liveness) {
                    Ok(figures) => row(model, &figures),
                    Err(e) => println!("| {shards} × {workers} | {model} | failed: {e} |"),
                }
            }
            row(
                "KCL 2.x",
                &shardwise_sim::scale::kcl2_model(shards, workers),
            );
            eprintln!(
                "{size}: measured in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        return ExitCode::SUCCESS;
    }
    let mut settings = Settings::default();
    if let Some(at) = args.iter().position(|a| a == "--fleet") {
        // --fleet SHARDSxWORKERS: every seed on a fleet of that size.
        let Some((Ok(shards), Ok(workers))) = args
            .get(at + 1)
            .and_then(|size| size.split_once('x'))
            .map(|(s, w)| (s.parse::<u32>(), w.parse::<usize>()))
        else {
            eprintln!("--fleet takes SHARDSxWORKERS");
            return ExitCode::from(2);
        };
        if shards == 0 || workers == 0 {
            eprintln!("--fleet takes at least one shard and one worker");
            return ExitCode::from(2);
        }
        settings.fleet = Some((shards, workers));
    }
    if let Some(seed) = value("--seed") {
        let outcome = run(seed, settings);
        if args.iter().any(|a| a == "--trace") {
            for entry in &outcome.log {
                println!("{entry}");
            }
        }
        print!("{}", outcome.plan);
        println!(
            "{} records, {} deliveries, caught up {:.1}s after faults stopped, {:.0}s of virtual time",
            outcome.stats.records,
            outcome.stats.deliveries,
            outcome.stats.catch_up.as_secs_f64(),
            outcome.stats.virtual_time.as_secs_f64()
        );
        if outcome.violations.is_empty() {
            println!("seed {seed}: every invariant holds");
            return ExitCode::SUCCESS;
        }
        eprint!("{}", report(&outcome));
        return ExitCode::FAILURE;
    }
    let Some(count) = value("--seeds") else {
        eprintln!(
            "usage: shardwise-sim [--fleet SHARDSxWORKERS] --seed N [--trace] | --seeds N [--from K]"
        );
        return ExitCode::from(2);
    };
    let from = value("--from").unwrap_or(0);
    let started = Instant::now();
    let mut faults: BTreeMap<String, usize> = BTreeMap::new();
    let (mut records, mut deliveries) = (0, 0);
    let mut checked = shardwise_sim::check::Checked::default();
    let (mut slowest_catch_up, mut slowest_balance) = (0.0_f64, 0.0_f64);
    for seed in from..from + count {
        let outcome = run(seed, settings);
        for step in &outcome.plan.steps {
            let kind = format!("{:?}", step.action);
            let kind = kind.split([' ', '{']).next().unwrap_or_default().to_owned();
            *faults.entry(kind).or_default() += 1;
        }
        records += outcome.stats.records;
        checked += shardwise_sim::check::checked(&outcome.log);
        deliveries += outcome.stats.deliveries;
        slowest_catch_up = slowest_catch_up.max(outcome.stats.catch_up.as_secs_f64());
        slowest_balance = slowest_balance.max(outcome.stats.balance.as_secs_f64());
        if !outcome.violations.is_empty() {
            eprint!("{}", report(&outcome));
            return ExitCode::FAILURE;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{count} seeds from {from} in {elapsed:.1}s ({:.1} seeds/s): every invariant held",
        count as f64 / elapsed
    );
    println!(
        "{records} records put, {deliveries} deliveries ({:.1}% repeats); after faults stopped, every record processed within {slowest_catch_up:.1}s and the fleet balanced {slowest_balance:.1}s later (slowest seeds)",
        100.0 * (deliveries as f64 - records as f64) / records.max(1) as f64
    );
    println!("steps by kind: {faults:?}");
    println!(
        "checked: {} lease writes (fencing, checkpoint order), {} batches (within the lease), {} repeated records (after the checkpoint), {} child shards (after their parents)",
        checked.writes, checked.batches, checked.repeats, checked.children
    );
    println!(
        "hand-offs: {} asked for, {} handed over by their holder, {} struck mid-way (holder killed or frozen, store down or losing answers)",
        checked.handoffs, checked.handed_over, checked.struck
    );
    println!(
        "transactional checkpoints: {} commits fenced off by the store, {} applied with their answer lost, {} failed with an answer that did not say so; no record's effects twice",
        checked.fenced_commits, checked.lost_commit_answers, checked.unknown_failed_commits
    );
    ExitCode::SUCCESS
}
