//! `shardwise multilang` with the real KCL MultiLang clients, unmodified: amazon-kclpy's
//! sample processor (its source distribution, `KCLPY_DIR`) and a processor written with the npm
//! package aws-kcl (`AWS_KCL_NODE_PATH`), against the Kinesis emulator and a real lease store.
//! `./scripts/test` fetches both clients (without their jars) and starts the servers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use common::*;

const PATIENCE: Duration = Duration::from_secs(120);

/// A KCL client and how to run a processor written with it.
struct Client {
    /// `executableName`.
    executable: String,
    /// The environment the children need (where the client library is).
    env: Vec<(&'static str, String)>,
    /// What the processor writes to stderr before each record's sequence number.
    marker: &'static str,
    /// A `shardwise.leases` URL, or `None` for the KCL's DynamoDB table.
    leases: Option<String>,
    /// What the processor writes to stderr for the third user record of a KPL aggregate.
    third_of_aggregate: &'static str,
}

fn kclpy() -> Client {
    let dir = PathBuf::from(env("KCLPY_DIR"));
    let sample = dir.join("samples/sample_kclpy_app.py");
    assert!(sample.is_file(), "{} is missing", sample.display());
    Client {
        executable: format!("python3 {}", sample.display()),
        env: vec![("PYTHONPATH", dir.display().to_string())],
        marker: "Sequence Number: ",
        leases: None,
        // The sample logs each record's sub-sequence number.
        third_of_aggregate: "Subsequence Number: 2",
    }
}

/// A processor written with aws-kcl as its README shows: it logs each record to stderr and
/// checkpoints each batch, at the shard's end and when asked to shut down.
const NODE_PROCESSOR: &str = r#"
const kcl = require('aws-kcl');
kcl({
  initialize(input, done) { console.error('initialize', input.shardId, input.sequenceNumber); done(); },
  processRecords(input, done) {
    for (const r of input.records) console.error('processed', r.sequenceNumber, Buffer.from(r.data, 'base64').toString());
    if (!input.records.length) return done();
    const last = input.records[input.records.length - 1].sequenceNumber;
    input.checkpointer.checkpoint(last, (err) => { if (err) console.error('checkpoint failed', err); done(); });
  },
  leaseLost(input, done) { console.error('lease lost'); done(); },
  shardEnded(input, done) { input.checkpointer.checkpoint((err) => { console.error('shard ended', err || ''); done(); }); },
  shutdownRequested(input, done) { input.checkpointer.checkpoint((err) => { console.error('shutdown requested', err || ''); done(); }); },
}).run();
"#;

fn aws_kcl(dir: &Path) -> Client {
    std::fs::write(dir.join("processor.js"), NODE_PROCESSOR).unwrap();
    Client {
        executable: "node processor.js".into(),
        env: vec![("NODE_PATH", env("AWS_KCL_NODE_PATH"))],
        marker: "processed ",
        leases: Some(env("DATABASE_URL")),
        third_of_aggregate: " agg-2",
    }
}

/// Writes the daemon's properties file, the way a KCL application writes it.
fn properties(dir: &Path, client: &Client, stream: &str, app: &str, worker: &str) -> PathBuf {
    let mut text = format!(
        "# A MultiLangDaemon properties file\n\
         executableName = {}\n\
         streamName = {stream}\n\
         applicationName = {app}\n\
         AwsCredentialsProvider = DefaultCredentialsProvider\n\
         processingLanguage = test\n\
         initialPositionInStream = TRIM_HORIZON\n\
         regionName = us-east-1\n\
         workerId = {worker}\n\
         failoverTimeMillis = 3000\n\
         shardSyncIntervalMillis = 1000\n\
         parentShardPollIntervalMillis = 200\n\
         retrievalMode = POLLING\n\
         idleTimeBetweenReadsInMillis = 200\n\
         kinesisEndpoint = {}\n\
         dynamoDBEndpoint = {}\n",
        client.executable,
        env("KINESIS_ENDPOINT"),
        env("DYNAMODB_ENDPOINT"),
    );
    if let Some(leases) = &client.leases {
        text.push_str(&format!("shardwise.leases = {leases}\n"));
    }
    let path = dir.join(format!("{worker}.properties"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A daemon process, killed if the test ends without stopping it (a failed assertion).
struct Daemon(Child);

impl std::ops::Deref for Daemon {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts a daemon; its stderr (the logs, the children's stderr among them) goes to a file.
fn daemon(properties: &Path, client: &Client, log: &Path) -> Daemon {
    let mut command = shardwise();
    command
        .args(["multilang", "--properties"])
        .arg(properties)
        .env("RUST_LOG", "warn,shardwise_multilang=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (key, value) in &client.env {
        command.env(key, value);
    }
    Daemon(command.spawn().unwrap())
}

/// Puts records `range` (data `record-N`, six partition keys); each one's shard and sequence
/// number.
async fn put(
    stream: &shardwise_tests::Emulator,
    range: std::ops::Range<usize>,
) -> Vec<(String, String)> {
    let entries: Vec<PutRecordsRequestEntry> = range
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("key-{}", i % 6))
                .data(Blob::new(format!("record-{i}")))
                .build()
                .unwrap()
        })
        .collect();
    let out = stream
        .client
        .put_records()
        .stream_name(&stream.name)
        .set_records(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_record_count(), Some(0));
    out.records()
        .iter()
        .map(|r| {
            (
                r.shard_id().unwrap().to_owned(),
                r.sequence_number().unwrap().to_owned(),
            )
        })
        .collect()
}

fn lease_url(client: &Client, app: &str) -> String {
    client
        .leases
        .clone()
        .unwrap_or_else(|| format!("dynamodb://{app}"))
}

/// The application's leases, by shard.
fn leases(client: &Client, app: &str) -> BTreeMap<String, serde_json::Value> {
    let url = lease_url(client, app);
    let output = run(&[
        "leases",
        "--app",
        app,
        "--leases",
        &url,
        "--dynamodb-endpoint",
        &env("DYNAMODB_ENDPOINT"),
        "--json",
    ]);
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&output.stdout) else {
        return BTreeMap::new();
    };
    value["leases"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| (l["key"].as_str().unwrap_or_default().to_owned(), l.clone()))
        .collect()
}

/// The checkpoint's sequence number (`SEQ/SUB` or a sentinel).
fn checkpoint(lease: &serde_json::Value) -> String {
    let text = lease["checkpoint"].as_str().unwrap_or_default();
    text.split('/').next().unwrap_or_default().to_owned()
}

/// Decimal sequence numbers compared as numbers.
fn at_least(stored: &str, wanted: &str) -> bool {
    stored.chars().all(|c| c.is_ascii_digit()) && (stored.len(), stored) >= (wanted.len(), wanted)
}

/// For each shard, the furthest sequence number its children acknowledged processing (the end
/// of a batch, from the daemon's debug log).
fn acknowledged(logs: &[PathBuf]) -> BTreeMap<String, String> {
    let mut furthest: BTreeMap<String, String> = BTreeMap::new();
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text
            .lines()
            .filter(|l| l.contains("the child processed a batch"))
        {
            let field = |name: &str| -> String {
                line.split(name).nth(1).map_or_else(String::new, |rest| {
                    rest.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                        .collect()
                })
            };
            let (shard, last) = (field(" shard="), field(" last="));
            let entry = furthest.entry(shard).or_default();
            if at_least(&last, entry) {
                *entry = last;
            }
        }
    }
    furthest
}

fn logs_text_of(logs: &[PathBuf]) -> String {
    logs.iter()
        .map(|l| std::fs::read_to_string(l).unwrap_or_default())
        .collect()
}

/// The sequence numbers the children logged as processed.
fn processed(logs: &[PathBuf], marker: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for part in text.split(marker).skip(1) {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty() {
                seen.insert(digits);
            }
        }
    }
    seen
}

/// The scenario both clients go through: every record processed, checkpoints stored, a split
/// (`shardEnded`), a second daemon sharing the shards (a hand-off: `shutdownRequested` then
/// `leaseLost`), and SIGTERM (exit 0, everything checkpointed, leases released).
async fn scenario(test: &str, make_client: impl FnOnce(&Path) -> Client) {
    let dir = temp_dir(test);
    let client = make_client(&dir);
    let stream = create_stream(test, 2).await;
    let app = unique(test);
    let mut put_records = put(&stream, 0..30).await;
    // A KPL aggregate of three user records: the children get them one by one.
    let mut aggregator =
        shardwise_kpl_deagg::Aggregator::new(shardwise_kpl_deagg::AggregatorConfig::new());
    for i in 0..3 {
        let _ = aggregator
            .add("aggregated", None, format!("agg-{i}"))
            .unwrap();
    }
    let aggregate = aggregator.flush().unwrap();
    stream
        .put_raw(&aggregate.partition_key, aggregate.data.to_vec())
        .await;

    let logs = [dir.join("a.log"), dir.join("b.log")];
    let mut a = daemon(
        &properties(&dir, &client, &stream.name, &app, "a"),
        &client,
        &logs[0],
    );
    wait_until(
        "both shards checkpointed by the first daemon",
        PATIENCE,
        || {
            assert_running(&mut a, "daemon a");
            let leases = leases(&client, &app);
            leases.len() == 2 && leases.values().all(|l| checkpoint(l) != "TRIM_HORIZON")
        },
    );

    // A split: the parent's child process gets shardEnded and checkpoints SHARD_END.
    let shards = stream.shards().await;
    let parent = shards[0].clone();
    let middle = parent.hash_range.start + (parent.hash_range.end - parent.hash_range.start) / 2;
    let children = stream.split(&parent.shard_id, middle).await;
    put_records.extend(put(&stream, 30..60).await);
    wait_until(
        "the children of the split shard processed",
        PATIENCE,
        || {
            assert_running(&mut a, "daemon a");
            let leases = leases(&client, &app);
            children.iter().all(|c| {
                leases
                    .get(c)
                    .is_some_and(|l| checkpoint(l) != "TRIM_HORIZON")
            })
        },
    );

    // A second daemon: it gets its share by hand-off.
    let mut b = daemon(
        &properties(&dir, &client, &stream.name, &app, "b"),
        &client,
        &logs[1],
    );
    wait_until("the second daemon holds a lease", PATIENCE, || {
        assert_running(&mut a, "daemon a");
        assert_running(&mut b, "daemon b");
        leases(&client, &app)
            .values()
            .any(|l| l["owner"] == "b" && l["checkpoint_owner"].is_null())
    });
    put_records.extend(put(&stream, 60..90).await);

    // Each shard's last record: once the daemons report their children processed it, stop
    // them; then every checkpoint must have reached it.
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for (shard, sequence) in &put_records {
        let entry = last.entry(shard.clone()).or_default();
        if at_least(sequence, entry) {
            *entry = sequence.clone();
        }
    }
    wait_until("every shard's last record processed", PATIENCE, || {
        assert_running(&mut a, "daemon a");
        assert_running(&mut b, "daemon b");
        let acknowledged = acknowledged(&logs);
        last.iter().all(|(shard, sequence)| {
            acknowledged
                .get(shard)
                .is_some_and(|done| at_least(done, sequence))
        })
    });
    for daemon in [&a, &b] {
        signal(daemon, "TERM");
    }
    for (name, daemon) in [("a", &mut a), ("b", &mut b)] {
        let status = wait_exit(daemon, Duration::from_secs(60));
        assert_eq!(status.code(), Some(0), "daemon {name} after SIGTERM");
    }

    let seen = processed(&logs, client.marker);
    let missing: Vec<&String> = put_records
        .iter()
        .map(|(_, s)| s)
        .filter(|s| !seen.contains(*s))
        .collect();
    assert!(missing.is_empty(), "records never processed: {missing:?}");
    assert!(
        logs_text_of(&logs).contains(client.third_of_aggregate),
        "the aggregate's user records reach the child one by one"
    );
    let leases = leases(&client, &app);
    assert!(
        leases.values().all(|l| l["owner"].is_null()),
        "SIGTERM releases every lease: {leases:?}"
    );
    for (shard, sequence) in &last {
        if let Some(lease) = leases.get(shard) {
            assert!(
                lease["checkpoint"] == "SHARD_END" || checkpoint(lease) == *sequence,
                "{shard} checkpointed at its last record {sequence}: {lease}"
            );
        }
    }
    // The daemon writes no SHARD_END for a child: the split shard's is the child's own.
    assert!(
        children.iter().all(|c| leases.contains_key(c))
            && leases
                .get(&parent.shard_id)
                .is_none_or(|l| l["checkpoint"] == "SHARD_END"),
        "the split shard ended, its children have leases: {leases:?}"
    );
    let logs_text = logs_text_of(&logs);
    assert!(
        !logs_text.contains("ERROR"),
        "no errors in the daemons' logs:\n{logs_text}"
    );
    stream.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kclpy_sample_processor_dynamodb() {
    scenario("ml-kclpy", |_| kclpy()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_kcl_node_processor_postgres() {
    scenario("ml-node", aws_kcl).await;
}
