//! Helpers for running the `shardwise` binary against the emulators and servers named by
//! `KINESIS_ENDPOINT`, `DYNAMODB_ENDPOINT`, `DATABASE_URL` and `REDIS_URL` (`./scripts/test`
//! starts what is missing).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use shardwise_tests::Emulator;
pub(crate) use shardwise_tests::StreamDriver;
pub(crate) use shardwise_tests::drivers::unique;

pub(crate) fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run ./scripts/test, which starts the emulators and servers")
    })
}

/// The `shardwise` binary with test credentials and the emulator's Kinesis endpoint in the
/// standard AWS environment variable.
pub(crate) fn shardwise() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardwise"));
    command
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env(
            "RUST_LOG",
            std::env::var("SHARDWISE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null());
    if let Ok(endpoint) = std::env::var("KINESIS_ENDPOINT") {
        command.env("AWS_ENDPOINT_URL_KINESIS", endpoint);
    }
    command
}

/// Runs `shardwise ARGS` to the end.
pub(crate) fn run(args: &[&str]) -> Output {
    shardwise().args(args).output().unwrap()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Sends SIGTERM (or another signal by name) to a child.
pub(crate) fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} failed");
}

/// Waits for a child to exit, killing it after `patience`.
pub(crate) fn wait_exit(child: &mut Child, patience: Duration) -> ExitStatus {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("shardwise did not exit within {patience:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A folder of its own under the system's temporary folder.
pub(crate) fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(&format!("shardwise-cli-{test}")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One output line, as `shardwise consume` writes it.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) data: String,
    pub(crate) partition_key: String,
    pub(crate) shard_id: String,
    pub(crate) sequence_number: String,
    pub(crate) worker: String,
}

/// The records in a `consume` output file. A last line cut short (the process was killed while
/// writing it) is left out: it was never checkpointed.
pub(crate) fn read_lines(path: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line.trim_end()) else {
            assert!(
                !line.ends_with('\n'),
                "line {i} of {} is not JSON: {line}",
                path.display()
            );
            continue;
        };
        let field = |name: &str| value[name].as_str().unwrap_or_default().to_owned();
        for name in [
            "data",
            "partition_key",
            "shard_id",
            "sequence_number",
            "worker",
        ] {
            assert!(value[name].is_string(), "{name} missing in {line}");
        }
        for name in ["sub_sequence_number", "ts_ms"] {
            assert!(value[name].is_u64(), "{name} missing in {line}");
        }
        assert!(value.get("approximate_arrival_ms").is_some(), "{line}");
        lines.push(Line {
            data: field("data"),
            partition_key: field("partition_key"),
            shard_id: field("shard_id"),
            sequence_number: field("sequence_number"),
            worker: field("worker"),
        });
    }
    lines
}

/// Checks that within `lines`, each partition key's records come in the order they were put
/// (data `record-N`, N increasing), ignoring repeats of a record already seen.
pub(crate) fn assert_in_order_per_key(lines: &[Line], who: &str) {
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for line in lines {
        if !seen.insert(line.data.as_str()) {
            continue;
        }
        let n: u64 = line
            .data
            .strip_prefix("record-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected data {:?}", line.data));
        if let Some(previous) = last.insert(line.partition_key.as_str(), n) {
            assert!(
                previous < n,
                "{who}: key {} has record-{n} after record-{previous}",
                line.partition_key
            );
        }
    }
}

/// A new stream of `shards` shards on the Kinesis emulator at `KINESIS_ENDPOINT`, ACTIVE.
pub(crate) async fn create_stream(test: &str, shards: u32) -> Emulator {
    let stream = Emulator::new(test);
    stream.create(shards).await;
    stream
}

/// `shardwise leases --json`, parsed.
pub(crate) fn leases_json(app: &str, leases: &str) -> serde_json::Value {
    let output = run(&["leases", "--app", app, "--leases", leases, "--json"]);
    assert!(
        output.status.success(),
        "leases failed: {}",
        stderr(&output)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Lease key → owner (None when free), from `shardwise leases --json`.
pub(crate) fn owners(app: &str, leases: &str) -> BTreeMap<String, Option<String>> {
    leases_json(app, leases)["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["key"].as_str().unwrap().to_owned(),
                l["owner"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Polls `check` every 200 ms until it is true, failing after `patience`.
pub(crate) fn wait_until(what: &str, patience: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Fails at once when a consumer that should still run has exited (its stderr is inherited, so
/// the reason is in the test's output).
pub(crate) fn assert_running(child: &mut Child, who: &str) {
    if let Some(status) = child.try_wait().unwrap() {
        panic!("{who} exited early with {status}");
    }
}
