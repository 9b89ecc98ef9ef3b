//! `shardwise consume` processes against the Kinesis emulator (`KINESIS_ENDPOINT`) with real
//! lease stores (`REDIS_URL`, `DATABASE_URL`, `DYNAMODB_ENDPOINT`). The emulator takes a few
//! hundred records a second, so the workloads are small.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;

const PATIENCE: Duration = Duration::from_secs(120);

fn spawn_consumer(
    stream: &str,
    app: &str,
    leases: &str,
    worker: &str,
    output: &std::path::Path,
    extra: &[&str],
) -> Child {
    shardwise()
        .args([
            "consume",
            "--stream",
            stream,
            "--app",
            app,
            "--leases",
            leases,
            "--from",
            "trim-horizon",
            "--worker-id",
            worker,
            "--lease-duration",
            "3",
            "--output",
        ])
        .arg(output)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Three processes share a stream; one is killed with SIGKILL mid-run; the other two finish:
/// together they wrote every record, and each wrote each partition key's records in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_one_killed_redis() {
    three_processes_one_killed("cli-kill", env("REDIS_URL"), &[]).await;
}

/// The same with `--liveness heartbeat`: the killed process's heartbeat stands still, and its
/// shards move on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_one_killed_heartbeat_postgres() {
    three_processes_one_killed(
        "cli-kill-hb",
        env("DATABASE_URL"),
        &["--liveness", "heartbeat"],
    )
    .await;
}

async fn three_processes_one_killed(tag: &str, leases: String, extra: &[&str]) {
    let stream = create_stream(tag, 4).await;
    let app = unique(tag);
    let dir = temp_dir(tag);
    let outputs: Vec<_> = (0..3).map(|i| dir.join(format!("w{i}.jsonl"))).collect();
    const KEYS: usize = 12;
    stream.put(0..200, KEYS).await;

    // w0 starts alone and takes every shard; w1 and w2 join and steal their share; then w0 is
    // killed while holding leases it checkpointed.
    let spawn = |i: usize| {
        spawn_consumer(
            &stream.name,
            &app,
            &leases,
            &format!("w{i}"),
            &outputs[i],
            &[&["--quiet"], extra].concat(),
        )
    };
    let mut children: Vec<Child> = vec![spawn(0)];
    wait_until("w0 to write records", PATIENCE, || {
        assert_running(&mut children[0], "w0");
        !read_lines(&outputs[0]).is_empty()
    });
    children.push(spawn(1));
    children.push(spawn(2));
    wait_until("w1 and w2 to hold leases", PATIENCE, || {
        for (i, child) in children.iter_mut().enumerate() {
            assert_running(child, &format!("w{i}"));
        }
        let owners = owners(&app, &leases);
        ["w1", "w2"]
            .iter()
            .all(|w| owners.values().any(|o| o.as_deref() == Some(*w)))
    });
    let w0_held = owners(&app, &leases)
        .values()
        .filter(|o| o.as_deref() == Some("w0"))
        .count();
    assert!(w0_held >= 1, "w0 holds leases when it is killed");
    children[0].kill().unwrap();
    let _ = children[0].wait();
    println!("w0 killed while holding {w0_held} leases");
    stream.put(200..400, KEYS).await;

    let wanted: HashSet<String> = (0..400).map(|i| format!("record-{i}")).collect();
    let union = || -> HashSet<String> {
        outputs
            .iter()
            .flat_map(|o| read_lines(o))
            .map(|l| l.data)
            .collect()
    };
    wait_until("every record in the union of the outputs", PATIENCE, || {
        for child in &mut children[1..] {
            assert_running(child, "a survivor");
        }
        union().is_superset(&wanted)
    });

    for child in &children[1..] {
        signal(child, "TERM");
    }
    for child in &mut children[1..] {
        let status = wait_exit(child, Duration::from_secs(60));
        assert!(status.success(), "a consumer exited with {status}");
    }
    assert_eq!(union().difference(&wanted).count(), 0, "nothing unexpected");
    for (i, output) in outputs.iter().enumerate() {
        let lines = read_lines(output);
        assert!(
            lines.iter().all(|l| l.worker == format!("w{i}")),
            "w{i} labels its lines"
        );
        assert_in_order_per_key(&lines, &format!("w{i}"));
    }
    // The survivors released everything when they stopped.
    assert!(
        owners(&app, &leases).values().all(Option::is_none),
        "leases still held: {:?}",
        owners(&app, &leases)
    );
    let deleted = run(&["delete-leases", "--app", &app, "--leases", &leases, "--yes"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    stream.delete().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGTERM: the process checkpoints, releases its leases (seen with `shardwise leases`) and
/// exits 0. Then the operator commands on the same leases: reset (refused while held, done once
/// free), lag, and delete-leases (refused without a terminal or --yes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_leases_then_reset_and_delete_postgres() {
    let stream = create_stream("cli-term", 2).await;
    let app = unique("cli-term");
    let leases = env("DATABASE_URL");
    let dir = temp_dir("term");
    let output = dir.join("out.jsonl");
    stream.put(0..40, 4).await;
    let mut child = spawn_consumer(&stream.name, &app, &leases, "solo", &output, &[]);
    wait_until("all 40 records written", PATIENCE, || {
        assert_running(&mut child, "solo");
        read_lines(&output).len() >= 40
    });
    wait_until("both leases held by solo", PATIENCE, || {
        let owners = owners(&app, &leases);
        owners.len() == 2 && owners.values().all(|o| o.as_deref() == Some("solo"))
    });
    let shard = owners(&app, &leases).into_keys().next().unwrap();

    // Held: reset refuses without --force.
    let refused = run(&[
        "reset",
        "--app",
        &app,
        "--leases",
        &leases,
        "--shard",
        &shard,
        "--to",
        "trim-horizon",
    ]);
    assert_eq!(refused.status.code(), Some(5), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("held by worker solo"),
        "{}",
        stderr(&refused)
    );

    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "exit code after SIGTERM");
    let listing = leases_json(&app, &leases);
    for lease in listing["leases"].as_array().unwrap() {
        assert!(lease["owner"].is_null(), "released: {lease}");
        assert_eq!(lease["state"], "free");
        let checkpoint = lease["checkpoint"].as_str().unwrap();
        assert!(
            checkpoint.bytes().all(|b| b.is_ascii_digit()),
            "checkpointed at a record: {lease}"
        );
    }

    // Lag: every record is processed, so nothing is behind.
    let table = run(&[
        "leases",
        "--app",
        &app,
        "--leases",
        &leases,
        "--stream",
        &stream.name,
    ]);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = stdout(&table);
    assert!(text.starts_with("KEY"), "{text}");
    assert!(text.lines().next().unwrap().ends_with("LAG"), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");

    // Free: reset works, and the checkpoint is back at the trim horizon.
    let reset = run(&[
        "reset",
        "--app",
        &app,
        "--leases",
        &leases,
        "--shard",
        &shard,
        "--to",
        "trim-horizon",
    ]);
    assert!(reset.status.success(), "{}", stderr(&reset));
    let listing = leases_json(&app, &leases);
    let lease = listing["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["key"] == shard.as_str())
        .unwrap()
        .clone();
    assert_eq!(lease["checkpoint"], "TRIM_HORIZON");

    // No terminal and no --yes: refused, nothing deleted.
    let refused = run(&["delete-leases", "--app", &app, "--leases", &leases]);
    assert_eq!(refused.status.code(), Some(5));
    assert!(
        stderr(&refused).contains("pass --yes"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(owners(&app, &leases).len(), 2);
    let deleted = run(&["delete-leases", "--app", &app, "--leases", &leases, "--yes"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert!(
        stdout(&deleted).contains("deleted 2 leases"),
        "{}",
        stdout(&deleted)
    );
    assert!(owners(&app, &leases).is_empty());
    stream.delete().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// DynamoDB leases through `--dynamodb-endpoint`, records to stdout, SIGINT: exit 0, leases
/// released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_with_dynamodb_leases_to_stdout() {
    let stream = create_stream("cli-ddb", 1).await;
    let app = unique("cli-ddb");
    let leases = format!("dynamodb://{app}");
    let endpoint = env("DYNAMODB_ENDPOINT");
    stream.put(0..20, 3).await;
    let mut child = shardwise()
        .args([
            "consume",
            "--stream",
            &stream.name,
            "--app",
            &app,
            "--leases",
            &leases,
            "--dynamodb-endpoint",
            &endpoint,
            "--from",
            "trim-horizon",
            "--data",
            "base64",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let listed = |json: bool| {
        let mut args = vec!["leases", "--app", &app, "--leases", &leases];
        args.extend(["--dynamodb-endpoint", &endpoint]);
        if json {
            args.push("--json");
        }
        run(&args)
    };
    wait_until("the lease checkpointed past 20 records", PATIENCE, || {
        assert_running(&mut child, "the consumer");
        let out = listed(true);
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            return false;
        };
        value["leases"]
            .as_array()
            .is_some_and(|l| l.len() == 1 && l[0]["checkpoint"] != "TRIM_HORIZON")
    });
    signal(&child, "INT");
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let output = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(0));
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 20);
    assert_eq!(lines[0]["data"], "cmVjb3JkLTA=", "record-0 in base64");
    let value: serde_json::Value = serde_json::from_slice(&listed(true).stdout).unwrap();
    assert!(value["leases"][0]["owner"].is_null(), "released: {value}");
    stream.delete().await;
}

/// Enhanced fan-out over HTTP/2 with TLS, the emulator's test CA trusted through `--ca-file`
/// (`KINESIS_TLS_ENDPOINT`, `KINESIS_CA_PEM`), SIGTERM: every record, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_tls_with_ca_file_redis() {
    let stream = create_stream("cli-efo", 2).await;
    let app = unique("cli-efo");
    let leases = env("REDIS_URL");
    let dir = temp_dir("efo");
    let output = dir.join("out.jsonl");
    stream.put(0..30, 5).await;
    let endpoint = env("KINESIS_TLS_ENDPOINT");
    let ca = env("KINESIS_CA_PEM");
    let mut child = spawn_consumer(
        &stream.name,
        &app,
        &leases,
        "efo",
        &output,
        &[
            "--fanout",
            "--kinesis-endpoint",
            &endpoint,
            "--ca-file",
            &ca,
        ],
    );
    wait_until("all 30 records written", PATIENCE, || {
        assert_running(&mut child, "the fan-out consumer");
        read_lines(&output).len() >= 30
    });
    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(0));
    let lines = read_lines(&output);
    let distinct: HashSet<&str> = lines.iter().map(|l| l.data.as_str()).collect();
    assert_eq!(distinct.len(), 30);
    assert_in_order_per_key(&lines, "efo");
    assert!(owners(&app, &leases).values().all(Option::is_none));
    let deleted = run(&["delete-leases", "--app", &app, "--leases", &leases, "--yes"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    stream.delete().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two `--stream`s make one multi-stream application: every record of both, each line naming
/// its stream, leases keyed as the KCL's multi-stream mode keys them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_streams_postgres() {
    let (a, b) = (
        create_stream("cli-multi-a", 1).await,
        create_stream("cli-multi-b", 1).await,
    );
    let app = unique("cli-multi");
    let leases = env("DATABASE_URL");
    a.put(0..10, 3).await;
    b.put(0..10, 3).await;
    let mut child = shardwise()
        .args([
            "consume",
            "--stream",
            &a.name,
            "--stream",
            &b.name,
            "--app",
            &app,
            "--leases",
            &leases,
            "--from",
            "trim-horizon",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let listed = || run(&["leases", "--app", &app, "--leases", &leases, "--json"]);
    wait_until("both leases checkpointed", PATIENCE, || {
        assert_running(&mut child, "the consumer");
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&listed().stdout) else {
            return false;
        };
        value["leases"].as_array().is_some_and(|l| {
            l.len() == 2 && l.iter().all(|lease| lease["checkpoint"] != "TRIM_HORIZON")
        })
    });
    let value: serde_json::Value = serde_json::from_slice(&listed().stdout).unwrap();
    let streams: HashSet<&str> = value["leases"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["stream"].as_str())
        .collect();
    assert_eq!(streams, HashSet::from([a.name.as_str(), b.name.as_str()]));
    signal(&child, "INT");
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let output = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut seen = HashSet::new();
    for line in stdout(&output).lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        let stream = line["stream"].as_str().unwrap().to_owned();
        let data = line["data"].as_str().unwrap().to_owned();
        assert!(seen.insert((stream, data)), "{line} twice");
    }
    assert_eq!(seen.len(), 20, "ten records of each stream");

    // `reset --stream` picks the stream's lease of that shard.
    let reset = run(&[
        "reset",
        "--app",
        &app,
        "--leases",
        &leases,
        "--shard",
        "shardId-000000000000",
        "--stream",
        &a.name,
        "--to",
        "trim-horizon",
    ]);
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    let value: serde_json::Value = serde_json::from_slice(&listed().stdout).unwrap();
    for lease in value["leases"].as_array().unwrap() {
        let reset = lease["checkpoint"] == "TRIM_HORIZON";
        assert_eq!(reset, lease["stream"] == a.name.as_str(), "{lease}");
    }
    a.delete().await;
    b.delete().await;
}

/// `--stream-prefix` with `--stream-tag`: of the streams named with the prefix, only those
/// carrying the tag (with its value) are consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_by_prefix_and_tag_redis() {
    let prefix = unique("cli-tag");
    let mut streams = Vec::new();
    for (suffix, tag) in [("a", Some("pay")), ("b", Some("search")), ("c", None)] {
        let mut stream = shardwise_tests::Emulator::new("unused");
        stream.name = format!("{prefix}-{suffix}");
        stream.create(1).await;
        if let Some(team) = tag {
            stream.tag("team", Some(team)).await;
        }
        stream.put(0..5, 2).await;
        streams.push(stream);
    }
    let app = unique("cli-tag");
    let leases = env("REDIS_URL");
    let mut child = shardwise()
        .args([
            "consume",
            "--stream-prefix",
            &prefix,
            "--stream-tag",
            "team=pay",
            "--app",
            &app,
            "--leases",
            &leases,
            "--from",
            "trim-horizon",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_until("the tagged stream's lease checkpointed", PATIENCE, || {
        assert_running(&mut child, "the consumer");
        leases_json(&app, &leases)["leases"]
            .as_array()
            .is_some_and(|l| l.iter().any(|lease| lease["checkpoint"] != "TRIM_HORIZON"))
    });
    signal(&child, "INT");
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let output = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut seen = HashSet::new();
    for line in stdout(&output).lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        let stream = line["stream"].as_str().unwrap().to_owned();
        let data = line["data"].as_str().unwrap().to_owned();
        assert!(seen.insert((stream, data)), "{line} twice");
    }
    let read: HashSet<&str> = seen.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(read, HashSet::from([streams[0].name.as_str()]));
    assert_eq!(seen.len(), 5, "every record of the tagged stream");
    let value = leases_json(&app, &leases);
    assert_eq!(value["leases"].as_array().map(Vec::len), Some(1));
    for stream in &streams {
        stream.delete().await;
    }
}

/// `reset` and `delete-leases` tell workers that heartbeat that the table changed (they list it
/// only when its version moves), and leave a table without heartbeating workers as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_and_delete_move_the_table_version_postgres() {
    use shardwise::lease::postgres::{PostgresConfig, PostgresLeaseStore};
    use shardwise::lease::{Checkpoint, Lease, LeaseKey, LeaseStore, WorkerId};
    let app = unique("cli-version");
    let leases = env("DATABASE_URL");
    let config = PostgresConfig::builder(leases.as_str(), app.as_str())
        .build()
        .unwrap();
    let store = PostgresLeaseStore::connect(&config).await.unwrap();
    store.create_table_if_missing().await.unwrap();
    let key = LeaseKey::new("shardId-000000000000").unwrap();
    let created = store
        .create_if_absent(&Lease::new(key.clone(), Checkpoint::Latest))
        .await
        .unwrap();
    assert!(created.is_won());
    let reset = |to: &str| {
        run(&[
            "reset",
            "--app",
            &app,
            "--leases",
            &leases,
            "--shard",
            key.as_str(),
            "--to",
            to,
        ])
    };
    let done = reset("trim-horizon");
    assert!(done.status.success(), "{}", stderr(&done));
    assert_eq!(
        store.membership().await.unwrap().version,
        0,
        "no worker heartbeats: the membership is left alone"
    );
    let worker = WorkerId::new("w1").unwrap();
    assert!(store.heartbeat(&worker, None).await.unwrap().is_won());
    let done = reset("latest");
    assert!(done.status.success(), "{}", stderr(&done));
    assert_eq!(
        store.membership().await.unwrap().version,
        1,
        "reset announced"
    );
    let done = run(&["delete-leases", "--app", &app, "--leases", &leases, "--yes"]);
    assert!(done.status.success(), "{}", stderr(&done));
    let membership = store.membership().await.unwrap();
    assert_eq!(membership.version, 2, "deletion announced");
    assert!(store.leave(&worker, 1).await.unwrap().is_won());
}
