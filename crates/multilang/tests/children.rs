//! The protocol's failure cases with real child processes (small Python scripts that speak the
//! protocol, each misbehaving one way) over the in-memory Kinesis and lease store: a child that
//! crashes, one that never answers, one that asks for checkpoints it may not have, one that
//! prints to stdout. Nothing is lost in any of them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shardwise::kinesis::PollingConfig;
use shardwise::kinesis::testkit::InMemoryKinesis;
use shardwise::lease::{LeaseStore, MemoryLeaseStore};
use shardwise::{Consumer, ConsumerConfig, InitialPosition, Retrieval};
use shardwise_multilang::{ChildCommand, MultiLangFactory};
use tokio_util::sync::CancellationToken;

/// A child speaking the protocol. It logs each record's sequence number to `processed` and
/// checkpoints each batch at its last record; `mode` makes it misbehave once (the first child to
/// reach the point does, marked by a file).
const CHILD: &str = r#"
import json, os, sys, time
mode, out = sys.argv[1], sys.argv[2]
def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()
def note(path, text):
    with open(os.path.join(out, path), "a") as f:
        f.write(text + "\n")
def first_time(name):
    marker = os.path.join(out, name)
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False
def checkpoint(sequence, sub=None):
    send({"action": "checkpoint", "sequenceNumber": sequence, "subSequenceNumber": sub})
    while True:
        line = sys.stdin.readline()
        if line.strip():
            answer = json.loads(line)
            note("answers", "%s %s" % (sequence, answer["error"]))
            return answer["error"]
note("pids", str(os.getpid()))
pending_flood = False
for line in sys.stdin:
    message = json.loads(line)
    action = message["action"]
    if action == "initialize":
        shard = message["shardId"]
    if action == "initialize" and mode == "checkpoint-early":
        checkpoint(None)
    if action == "processRecords":
        records = message["records"]
        if mode == "crash" and first_time("crashed"):
            sys.exit(3)
        if mode == "hang" and first_time("hung"):
            time.sleep(3600)
        if mode == "flood" and first_time("flooded"):
            pending_flood = True
        if mode == "chatty":
            print("plain text from the child")
            print("{not json")
            print(json.dumps({"action": "somethingElse"}))
            print("")
        if mode == "bad-checkpoints" and first_time("asked"):
            checkpoint("9" * 60)
            checkpoint("not-a-number")
            checkpoint(records[-1]["sequenceNumber"], -1)
        for record in records:
            note("processed", record["sequenceNumber"])
        checkpoint(records[-1]["sequenceNumber"], records[-1]["subSequenceNumber"])
    if action == "shardEnded" and mode == "forget-shard-end" and first_time("forgot"):
        pass
    elif action in ("shardEnded", "shutdownRequested"):
        if checkpoint(None) is None and action == "shardEnded":
            note("ended", shard)
    send({"action": "status", "responseFor": action})
    if pending_flood:
        # Far more than a pipe holds, written between two exchanges.
        for i in range(20000):
            print("flooding stdout between exchanges, line %d" % i)
        sys.stdout.flush()
        pending_flood = False
"#;

struct Run {
    dir: PathBuf,
    sequences: Vec<String>,
}

fn temp_dir(test: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("shardwise-multilang-{test}-{nanos}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn lines(dir: &Path, file: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// One shard with 30 records (and, with `split`, a split and 10 more records in its
/// children), one worker reading 10 records a call whose children run `CHILD` in `mode`, until
/// every shard's last record is checkpointed (or its end), then a graceful stop.
async fn run(mode: &str, response_timeout: Option<Duration>, split: bool) -> Run {
    let dir = temp_dir(mode);
    std::fs::write(dir.join("child.py"), CHILD).unwrap();
    let kinesis = Arc::new(InMemoryKinesis::new());
    kinesis.create_stream("s", 1);
    let mut put = Vec::new();
    // Flooding needs messages larger than a pipe holds (64 KiB): 10 records of 10 KB.
    let size = if mode == "flood" { 10_000 } else { 0 };
    for i in 0..30 {
        let data = format!("r{i}{}", "x".repeat(size));
        put.push(kinesis.put("s", &format!("k{i}"), data).unwrap());
    }
    if split {
        kinesis
            .split_shard("s", "shardId-000000000000", u128::MAX / 2)
            .unwrap();
        for i in 30..40 {
            put.push(kinesis.put("s", &format!("k{i}"), format!("r{i}")).unwrap());
        }
    }
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for (shard, sequence) in &put {
        last.insert(shard.clone(), sequence.clone());
    }
    let store = Arc::new(MemoryLeaseStore::new());
    let mut command =
        ChildCommand::from_executable_name(&format!("python3 child.py {mode} {}", dir.display()));
    command.working_dir = Some(dir.clone());
    command.response_timeout = response_timeout;
    let polling = PollingConfig {
        max_records: 10,
        ..PollingConfig::default()
    };
    let config = ConsumerConfig {
        initial_position: InitialPosition::TrimHorizon,
        lease_duration: Duration::from_secs(4),
        take_interval: Duration::from_millis(500),
        shard_sync_interval: Duration::from_millis(500),
        retrieval: Retrieval::Polling(polling),
        ..ConsumerConfig::default()
    };
    let consumer = Consumer::builder()
        .stream("s")
        .kinesis(kinesis.clone())
        .lease_store(store.clone())
        .config(config)
        .processor(MultiLangFactory::new(command))
        .build()
        .unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { consumer.run(stop).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let leases = store.list().await.unwrap().leases;
        let done = last.iter().all(|(shard, sequence)| {
            leases.iter().any(|l| {
                l.key.as_str() == shard
                    && (l.checkpoint.is_shard_end()
                        || l.checkpoint
                            .to_string()
                            .starts_with(&format!("{sequence}/")))
            })
        });
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{mode}: not every record checkpointed: {leases:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    task.await.unwrap().unwrap();
    let sequences = put.into_iter().map(|(_, sequence)| sequence).collect();
    Run { dir, sequences }
}

impl Run {
    fn assert_nothing_lost(&self) {
        let processed: BTreeSet<String> = lines(&self.dir, "processed").into_iter().collect();
        let missing: Vec<&String> = self
            .sequences
            .iter()
            .filter(|s| !processed.contains(*s))
            .collect();
        assert!(missing.is_empty(), "never processed: {missing:?}");
    }

    /// Every child that was started has exited.
    fn assert_children_gone(&self) {
        for pid in lines(&self.dir, "pids") {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let alive = !stat.is_empty() && !stat.contains(") Z ");
            assert!(!alive, "child {pid} still runs");
        }
    }
}

/// A child that exits in the middle of a batch: the shard is given up, a new child processes
/// the batch again from the last checkpoint, nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_crashes() {
    let run = run("crash", None, false).await;
    run.assert_nothing_lost();
    assert!(
        lines(&run.dir, "pids").len() >= 2,
        "a second child after the crash"
    );
    run.assert_children_gone();
}

/// A child that never answers: killed after the response timeout, the shard retried by a new
/// child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_never_answers() {
    let run = run("hang", Some(Duration::from_secs(2)), false).await;
    run.assert_nothing_lost();
    assert!(
        lines(&run.dir, "pids").len() >= 2,
        "a second child after the hang"
    );
    run.assert_children_gone();
}

/// Checkpoints the child may not have: beyond what it was given, not a number, a negative
/// sub-sequence number. Each is refused with the KCL's exception name; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_asks_for_checkpoints_it_never_saw() {
    let run = run("bad-checkpoints", None, false).await;
    run.assert_nothing_lost();
    let answers = lines(&run.dir, "answers");
    let nines = "9".repeat(60);
    for refused in [nines.as_str(), "not-a-number"] {
        assert!(
            answers
                .iter()
                .any(|a| a == &format!("{refused} IllegalArgumentException")),
            "{refused} refused: {answers:?}"
        );
    }
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.ends_with("IllegalArgumentException"))
            .count(),
        3,
        "the negative sub-sequence number too: {answers:?}"
    );
    assert!(
        answers.iter().filter(|a| a.ends_with(" None")).count() >= 2,
        "the good checkpoints stored: {answers:?}"
    );
}

/// A child that prints to stdout (text, broken JSON, unknown actions, blank lines): all
/// skipped, every record processed by the one child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_prints_to_stdout() {
    let run = run("chatty", None, false).await;
    run.assert_nothing_lost();
    assert_eq!(lines(&run.dir, "pids").len(), 1, "one child did it all");
    run.assert_children_gone();
}

/// A checkpoint asked for during `initialize` is refused with `InvalidStateException`, as the
/// KCL refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_checkpoint_during_initialize() {
    let run = run("checkpoint-early", None, false).await;
    run.assert_nothing_lost();
    let answers = lines(&run.dir, "answers");
    assert_eq!(
        answers.first().map(String::as_str),
        Some("None InvalidStateException"),
        "{answers:?}"
    );
}

/// A child that writes far more than a pipe holds to stdout between two exchanges: the daemon
/// keeps reading, the child never blocks, the next batches go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_floods_stdout_between_exchanges() {
    let run = run("flood", None, false).await;
    run.assert_nothing_lost();
    assert_eq!(lines(&run.dir, "pids").len(), 1, "one child did it all");
    run.assert_children_gone();
}

/// A child that answers `shardEnded` without checkpointing the shard's end: the shard is not
/// finished for it (the KCL's rule); the next child finishes it, and the children of the
/// split are read after that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_does_not_checkpoint_the_end_of_its_shard() {
    let run = run("forget-shard-end", None, true).await;
    run.assert_nothing_lost();
    assert!(run.dir.join("forgot").exists(), "the first child forgot");
    assert_eq!(
        lines(&run.dir, "ended"),
        ["shardId-000000000000"],
        "a later child of the split shard checkpointed its end"
    );
}
