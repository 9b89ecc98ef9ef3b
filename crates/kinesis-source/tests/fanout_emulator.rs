//! Enhanced fan-out end to end against a real Kinesis emulator process over HTTP/2 with TLS
//! (kinesis-local, started by `./scripts/test`: `KINESIS_TLS_ENDPOINT`, CA in `KINESIS_CA_PEM`).
//!
//! kinesis-local never sends `ChildShards` in `SubscribeToShard` events (a closed shard just keeps
//! sending empty events until the 5-minute cut), so the fan-out shard end is covered only against
//! the in-memory Kinesis (`tests/fanout_memory.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::fanout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_before_and_after_subscribing() {
    fanout::reads_before_and_after_subscribing(&common::emulator_tls()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribes_without_loss_or_duplicates() {
    fanout::resubscribes_without_loss_or_duplicates(&common::emulator_tls()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_subscription_waits_for_the_first() {
    fanout::a_second_subscription_waits_for_the_first(&common::emulator_tls()).await;
}
