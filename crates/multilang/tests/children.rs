//! The protocol's failure cases with real child processes (small Python scripts that speak the
//! protocol, each misbehaving one way) over the in-memory Kinesis and lease store: a child that
//! crashes, one that never answers, one that asks for checkpoints it may not have, one that
//! prints to stdout. Nothing is lost in any of them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shardwise::kinesis::testkit::InMemoryKinesis;
use shardwise::lease::{LeaseStore, MemoryLeaseStore};
use shardwise::{Consumer, ConsumerConfig, InitialPosition};
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
for line in sys.stdin:
    message = json.loads(line)
    action = message["action"]
    if action == "initialize" and mode == "checkpoint-early":
        checkpoint(None)
    if action == "processRecords":
        records = message["records"]
        if mode == "crash" and first_time("crashed"):
            sys.exit(3)
        if mode == "hang" and first_time("hung"):
            time.sleep(3600)
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
    if action in ("shardEnded", "shutdownRequested"):
        checkpoint(None)
    send({"action": "status", "responseFor": action})
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

/// One shard with 30 records, one worker whose children run `CHILD` in `mode`, until every
/// record was processed and checkpointed, then a graceful stop.
async fn run(mode: &str, response_timeout: Option<Duration>) -> Run {
    let dir = temp_dir(mode);
    std::fs::write(dir.join("child.py"), CHILD).unwrap();
    let kinesis = Arc::new(InMemoryKinesis::new());
    kinesis.create_stream("s", 1);
    let mut sequences = Vec::new();
    for i in 0..30 {
        let (_, sequence) = kinesis.put("s", &format!("k{i}"), format!("r{i}")).unwrap();
        sequences.push(sequence);
    }
    let store = Arc::new(MemoryLeaseStore::new());
    let mut command =
        ChildCommand::from_executable_name(&format!("python3 child.py {mode} {}", dir.display()));
    command.working_dir = Some(dir.clone());
    command.response_timeout = response_timeout;
    let config = ConsumerConfig {
        initial_position: InitialPosition::TrimHorizon,
        lease_duration: Duration::from_secs(2),
        take_interval: Duration::from_millis(500),
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
    let last = sequences.last().cloned().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let leases = store.list().await.unwrap().leases;
        let done = leases
            .first()
            .is_some_and(|l| l.checkpoint.to_string().starts_with(&format!("{last}/")));
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
    let run = run("crash", None).await;
    run.assert_nothing_lost();
    assert_eq!(
        lines(&run.dir, "pids").len(),
        2,
        "a second child after the crash"
    );
    run.assert_children_gone();
}

/// A child that never answers: killed after the response timeout, the shard retried by a new
/// child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_never_answers() {
    let run = run("hang", Some(Duration::from_secs(2))).await;
    run.assert_nothing_lost();
    assert_eq!(
        lines(&run.dir, "pids").len(),
        2,
        "a second child after the hang"
    );
    run.assert_children_gone();
}

/// Checkpoints the child may not have: beyond what it was given, not a number, a negative
/// sub-sequence number. Each is refused with the KCL's exception name; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_asks_for_checkpoints_it_never_saw() {
    let run = run("bad-checkpoints", None).await;
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
    let run = run("chatty", None).await;
    run.assert_nothing_lost();
    assert_eq!(lines(&run.dir, "pids").len(), 1, "one child did it all");
    run.assert_children_gone();
}

/// A checkpoint asked for during `initialize` is refused with `InvalidStateException`, as the
/// KCL refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_checkpoint_during_initialize() {
    let run = run("checkpoint-early", None).await;
    run.assert_nothing_lost();
    let answers = lines(&run.dir, "answers");
    assert_eq!(
        answers.first().map(String::as_str),
        Some("None InvalidStateException"),
        "{answers:?}"
    );
}
