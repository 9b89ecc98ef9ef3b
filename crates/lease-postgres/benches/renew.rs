//! Renews 1, 100 and 1,000 held leases against the PostgreSQL at `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and prints round trips and time per renewal
//! round, for `renew_many` (one statement) and for renewing one by one.
//!
//! Two counts per round: the statements the store sent (each one round trip the caller waits
//! for), and every request seen on the wire by a small proxy between the store and the server
//! that reads the frontend protocol (each `Sync` or `Query` message). The wire count also holds
//! the ping sqlx's pool sends when a connection goes back to the pool, in a background task
//! after the caller already has its answer.
//!
//! Run: `cargo bench -p shardwise-lease-postgres`

// A benchmark binary: a failure is a panic with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shardwise_lease_core::{Checkpoint, Lease, LeaseKey, LeaseStore, Race, WorkerId};
use shardwise_lease_postgres::{PostgresConfig, PostgresLeaseStore};
use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ROUNDS: usize = 50;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let upstream = PgConnectOptions::from_str(&url).expect("DATABASE_URL");
    let target = format!("{}:{}", upstream.get_host(), upstream.get_port());
    let round_trips = Arc::new(AtomicU64::new(0));
    let proxy_port = start_proxy(target, round_trips.clone()).await;

    let namespace = format!("bench-{}", std::process::id());
    let config = PostgresConfig::builder(url.as_str(), namespace.as_str())
        .schema("shardwise_bench")
        .build()
        .expect("config");
    let pool = config
        .pool_options()
        .connect_with(upstream.clone().host("127.0.0.1").port(proxy_port))
        .await
        .expect("connect through the proxy");
    let store = PostgresLeaseStore::with_pool(pool, &config);
    store.create_table_if_missing().await.expect("create table");
    store.delete_all_leases().await.expect("clean namespace");
    let me = WorkerId::new("bench-worker").expect("worker id");

    println!(
        "PostgreSQL renewals ({ROUNDS} rounds each, server at {})",
        upstream.get_host()
    );
    println!(
        "{:>7} | {:<10} | {:>16} | {:>15} | {:>13} | {:>13} | {:>12}",
        "leases",
        "method",
        "statements/round",
        "wire reqs/round",
        "median/round",
        "mean/round",
        "per lease"
    );
    let mut held: Vec<(LeaseKey, u64)> = Vec::new();
    for n in [1usize, 100, 1_000] {
        while held.len() < n {
            let key = LeaseKey::new(format!("shardId-{:012}", held.len())).expect("key");
            let lease = Lease::new(key.clone(), Checkpoint::TrimHorizon);
            assert!(
                store
                    .create_if_absent(&lease)
                    .await
                    .expect("create")
                    .is_won()
            );
            let taken = store
                .take(&key, 0, &me)
                .await
                .expect("take")
                .won()
                .expect("won");
            held.push((key, taken.counter));
        }
        // Warm-up: the connection prepares the statement once.
        renew_round(&store, &me, &mut held, true).await;
        renew_round(&store, &me, &mut held, false).await;
        for batch in [true, false] {
            let rounds = if !batch && n == 1_000 { 5 } else { ROUNDS };
            let mut times = Vec::with_capacity(rounds);
            let trips_before = round_trips.load(Ordering::SeqCst);
            let statements_before = store.statements_sent();
            for _ in 0..rounds {
                let started = Instant::now();
                renew_round(&store, &me, &mut held, batch).await;
                times.push(started.elapsed());
            }
            let trips = round_trips.load(Ordering::SeqCst) - trips_before;
            let statements = store.statements_sent() - statements_before;
            times.sort();
            let median = times[times.len() / 2];
            let mean = times.iter().sum::<Duration>() / rounds as u32;
            println!(
                "{:>7} | {:<10} | {:>16} | {:>15} | {:>13?} | {:>13?} | {:>12?}",
                n,
                if batch { "renew_many" } else { "renew each" },
                statements as f64 / rounds as f64,
                trips as f64 / rounds as f64,
                median,
                mean,
                median / n as u32,
            );
        }
    }
    store.delete_all_leases().await.expect("clean up");
    store.close().await;
}

async fn renew_round(
    store: &PostgresLeaseStore,
    me: &WorkerId,
    held: &mut [(LeaseKey, u64)],
    batch: bool,
) {
    let outcomes = if batch {
        store.renew_many(me, held).await
    } else {
        let mut outcomes = Vec::with_capacity(held.len());
        for (key, counter) in held.iter() {
            outcomes.push(store.renew(key, me, *counter).await);
        }
        outcomes
    };
    for ((key, counter), outcome) in held.iter_mut().zip(outcomes) {
        match outcome {
            Ok(Race::Won(new)) => *counter = new,
            other => panic!("renew {key}: {other:?}"),
        }
    }
}

/// A TCP proxy to `target` that counts the client's `Sync` and `Query` messages.
async fn start_proxy(target: String, round_trips: Arc<AtomicU64>) -> u16 {
    let mut listener = None;
    for port in (20_000u16..32_000).step_by(97) {
        if let Ok(bound) = TcpListener::bind(("127.0.0.1", port)).await {
            listener = Some((bound, port));
            break;
        }
    }
    let (listener, port) = listener.expect("a free port for the proxy");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(&target)
                .await
                .expect("connect to PostgreSQL");
            let counter = round_trips.clone();
            tokio::spawn(relay(client, server, counter));
        }
    });
    port
}

async fn relay(client: TcpStream, server: TcpStream, round_trips: Arc<AtomicU64>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    let mut pending: Vec<u8> = Vec::new();
    let mut startup = true;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = match client_read.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if server_write.write_all(&chunk[..read]).await.is_err() {
            return;
        }
        pending.extend_from_slice(&chunk[..read]);
        loop {
            // Startup-phase messages have no type byte: length (4) then a request code.
            let header = if startup { 4 } else { 5 };
            if pending.len() < header {
                break;
            }
            let at = header - 4;
            let length = u32::from_be_bytes(pending[at..at + 4].try_into().unwrap()) as usize;
            let total = at + length;
            if pending.len() < total {
                break;
            }
            if startup {
                let code = u32::from_be_bytes(pending[4..8].try_into().unwrap());
                // SSLRequest / GSSENCRequest are followed by another untyped startup message.
                startup = code == 80_877_103 || code == 80_877_104;
            } else if matches!(pending[0], b'S' | b'Q') {
                round_trips.fetch_add(1, Ordering::SeqCst);
            }
            pending.drain(..total);
        }
    }
}
