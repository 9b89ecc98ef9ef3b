//! The reader scenarios against a real Kinesis emulator process (kinesis-local, started by
//! `./scripts/test`; any endpoint in `KINESIS_ENDPOINT`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::scenarios;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_every_record_in_order() {
    scenarios::reads_every_record_in_order(&common::emulator()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_merge_mid_read() {
    scenarios::split_and_merge_mid_read(&common::emulator()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_positions() {
    scenarios::start_positions(&common::emulator()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_shards_across_pages() {
    scenarios::lists_shards_across_pages(&common::emulator()).await;
}
