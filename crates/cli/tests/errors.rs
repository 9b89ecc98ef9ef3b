//! User mistakes: each gives a clear message on stderr, no stack trace, and its exit code
//! (2 usage, 3 not found, 4 unreachable, 5 refused). Also `--help` on every command.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Output;

use common::*;

fn assert_fails(args: &[&str], code: i32, message: &str) {
    let output = run(args);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(code), "{args:?}: {text}");
    assert!(
        text.contains(message),
        "{args:?}: expected {message:?} in {text}"
    );
    assert!(!text.contains("panicked"), "{args:?}: {text}");
    assert!(!text.contains("RUST_BACKTRACE"), "{args:?}: {text}");
    assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
}

#[test]
fn help_on_every_command() {
    for command in [
        &["--help"][..],
        &["consume", "--help"],
        &["leases", "--help"],
        &["reset", "--help"],
        &["delete-leases", "--help"],
        &["demo", "--help"],
    ] {
        let output = run(command);
        assert!(output.status.success(), "{command:?}");
        let text = stdout(&output);
        assert!(text.contains("Usage: shardwise"), "{command:?}: {text}");
        assert!(text.contains("Example"), "{command:?} has examples: {text}");
    }
}

#[test]
fn usage_mistakes_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "consume",
                "--stream",
                "s",
                "--app",
                "a",
                "--leases",
                "mysql://db",
            ],
            "unknown scheme \"mysql\"",
        ),
        (
            &["leases", "--app", "a", "--leases", "orders"],
            "is not a URL",
        ),
        (
            &[
                "consume",
                "--stream",
                "s",
                "--app",
                "a",
                "--leases",
                "memory://",
                "--from",
                "at-timestamp:2024-13-01T00:00:00Z",
            ],
            "not an RFC 3339 timestamp",
        ),
        (
            &[
                "consume",
                "--stream",
                "s",
                "--app",
                "a",
                "--leases",
                "memory://",
                "--from",
                "yesterday",
            ],
            "not a start position",
        ),
        (
            &[
                "reset",
                "--app",
                "a",
                "--leases",
                "redis://127.0.0.1:1",
                "--shard",
                "s",
                "--to",
                "12x",
            ],
            "neither trim-horizon, latest nor a sequence number",
        ),
        (
            &["leases", "--app", "a", "--leases", "memory://"],
            "memory:// leases live inside one",
        ),
        (
            &[
                "leases",
                "--app",
                "bad prefix!",
                "--leases",
                "redis://127.0.0.1:1",
            ],
            "invalid key prefix",
        ),
        (
            &["consume", "--stream", "s", "--app", "a"],
            "give --leases URL, SHARDWISE_LEASES or --leases-file",
        ),
        (&["frobnicate"], "unrecognized subcommand"),
    ];
    for (args, message) in cases {
        assert_fails(args, 2, message);
    }
}

#[test]
fn unreachable_store_exits_4() {
    assert_fails(
        &["leases", "--app", "a", "--leases", "redis://127.0.0.1:1"],
        4,
        "lease store unavailable",
    );
    assert_fails(
        &[
            "delete-leases",
            "--app",
            "a",
            "--leases",
            "redis://127.0.0.1:1",
            "--yes",
        ],
        4,
        "lease store unavailable",
    );
}

#[test]
fn unreachable_kinesis_exits_4() {
    assert_fails(
        &[
            "consume",
            "--stream",
            "s",
            "--app",
            "a",
            "--leases",
            "memory://",
            "--kinesis-endpoint",
            "http://127.0.0.1:1",
        ],
        4,
        "Connection refused",
    );
}

#[test]
fn bad_ca_file_exits_2() {
    let dir = temp_dir("ca");
    let path = dir.join("not-a-ca.pem");
    std::fs::write(&path, "hello").unwrap();
    let path = path.to_string_lossy().into_owned();
    assert_fails(
        &[
            "consume",
            "--stream",
            "s",
            "--app",
            "a",
            "--leases",
            "memory://",
            "--ca-file",
            &path,
        ],
        2,
        "no certificate in it",
    );
    assert_fails(
        &[
            "consume",
            "--stream",
            "s",
            "--app",
            "a",
            "--leases",
            "memory://",
            "--ca-file",
            "/nonexistent/ca.pem",
        ],
        2,
        "--ca-file /nonexistent/ca.pem",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_stream_exits_3() {
    let _ = env("KINESIS_ENDPOINT");
    let name = unique("cli-missing");
    assert_fails(
        &[
            "consume",
            "--stream",
            &name,
            "--app",
            "a",
            "--leases",
            "memory://",
        ],
        3,
        &format!("stream {name} not found"),
    );
    assert_fails(
        &[
            "leases",
            "--app",
            "a",
            "--leases",
            &env("REDIS_URL"),
            "--stream",
            &name,
        ],
        3,
        &format!("stream {name} not found"),
    );
}

#[test]
fn missing_lease_exits_3() {
    let app = unique("cli-nolease");
    assert_fails(
        &[
            "reset",
            "--app",
            &app,
            "--leases",
            &env("REDIS_URL"),
            "--shard",
            "shardId-000000000000",
            "--to",
            "latest",
        ],
        3,
        "no lease for shard shardId-000000000000",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_with_unreachable_store_exits_4() {
    let stream = create_stream("cli-nostore", 1).await;
    assert_fails(
        &[
            "consume",
            "--stream",
            &stream.name,
            "--app",
            "a",
            "--leases",
            "redis://127.0.0.1:1",
        ],
        4,
        "lease store unavailable",
    );
    stream.delete().await;
}

#[test]
fn passwords_stay_out_of_messages() {
    let output = run(&[
        "leases",
        "--app",
        "a",
        "--leases",
        "redis://:s3cret@127.0.0.1:1",
    ]);
    assert_eq!(output.status.code(), Some(4));
    let text = stderr(&output);
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn demo_counts_everything() {
    let output = run(&["demo"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("produced 3500 user records, processed 3500 distinct")
            && last.ends_with("missing 0"),
        "{last}"
    );
}

/// A password given to the CLI never shows on stderr or stdout (debug logs included), however
/// it is given and whatever goes wrong: a mistyped or unknown scheme, a password holding `/`, a
/// `password=` option, a URL where clap expects no argument, an unreachable server; and the URL
/// can come from SHARDWISE_LEASES or --leases-file instead of the command line (`ps`).
#[test]
fn secrets_never_reach_stderr_or_logs() {
    const SECRET: &str = "Sup3rSecret";
    let dir = std::env::temp_dir().join(unique("cli-secret"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("leases-url");
    std::fs::write(&file, format!("postgres://app:{SECRET}@127.0.0.1:1/db\n")).unwrap();
    let file = file.to_string_lossy().into_owned();
    let urls = [
        format!("postgress://app:{SECRET}@127.0.0.1:1/db"),
        format!("mysql://app:{SECRET}@127.0.0.1:1/db"),
        format!("postgres://app:pa/{SECRET}@127.0.0.1:1/db"),
        format!("postgres://app@127.0.0.1:1/db?sslmode=disable&password={SECRET}"),
        format!("redis://:{SECRET}@127.0.0.1:1"),
        format!("redis://:pa/{SECRET}@127.0.0.1:1"),
        SECRET.to_owned(),
    ];
    let mut runs: Vec<(String, Output)> = Vec::new();
    for url in &urls {
        let args = ["leases", "--app", "a", "--leases", url.as_str()];
        let output = shardwise()
            .args(args)
            .env("RUST_LOG", "debug")
            .output()
            .unwrap();
        runs.push((format!("--leases {url}"), output));
    }
    let positional = format!("postgres://app:{SECRET}@127.0.0.1:1/db");
    runs.push((
        "a URL where none is expected".into(),
        shardwise()
            .args(["leases", "--app", "a", positional.as_str()])
            .output()
            .unwrap(),
    ));
    let from_env = shardwise()
        .args(["leases", "--app", "a"])
        .env("SHARDWISE_LEASES", &positional)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(from_env.status.code(), Some(4), "{}", stderr(&from_env));
    assert!(
        stderr(&from_env).contains("127.0.0.1:1"),
        "{}",
        stderr(&from_env)
    );
    runs.push(("SHARDWISE_LEASES".into(), from_env));
    runs.push((
        "--help with SHARDWISE_LEASES set".into(),
        shardwise()
            .args(["leases", "--help"])
            .env("SHARDWISE_LEASES", &positional)
            .output()
            .unwrap(),
    ));
    let from_file = shardwise()
        .args(["leases", "--app", "a", "--leases-file", file.as_str()])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(from_file.status.code(), Some(4), "{}", stderr(&from_file));
    assert!(
        stderr(&from_file).contains("127.0.0.1:1"),
        "{}",
        stderr(&from_file)
    );
    runs.push(("--leases-file".into(), from_file));
    for (how, output) in &runs {
        let (err, out) = (stderr(output), stdout(output));
        assert!(!err.contains(SECRET), "{how}: the secret on stderr: {err}");
        assert!(!out.contains(SECRET), "{how}: the secret on stdout: {out}");
        assert!(!err.contains("panicked"), "{how}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
