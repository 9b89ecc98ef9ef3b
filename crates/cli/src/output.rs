//! Where `consume` writes: one JSON object per user record per line, to stdout or a file.

use std::path::Path;

use base64::Engine;
use serde::Serialize;
use shardwise::UserRecord;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

use crate::position::epoch_ms;

/// How record data is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DataEncoding {
    /// As text; bytes that are not UTF-8 become U+FFFD (use base64 for binary data).
    Utf8,
    /// Standard base64 with padding.
    Base64,
}

/// One output line.
#[derive(Debug, Serialize)]
struct Line<'a> {
    data: String,
    partition_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    explicit_hash_key: Option<&'a str>,
    stream: &'a str,
    shard_id: &'a str,
    sequence_number: &'a str,
    sub_sequence_number: u64,
    approximate_arrival_ms: Option<u64>,
    worker: &'a str,
    ts_ms: u64,
}

/// Appends one line per record to `out`: what a batch becomes before it is written.
pub(crate) fn render_lines(
    out: &mut Vec<u8>,
    records: &[UserRecord],
    stream: &str,
    shard_id: &str,
    worker: &str,
    ts_ms: u64,
    encoding: DataEncoding,
) -> Result<(), serde_json::Error> {
    for record in records {
        let data = match encoding {
            DataEncoding::Utf8 => String::from_utf8_lossy(&record.data).into_owned(),
            DataEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(&record.data),
        };
        let line = Line {
            data,
            partition_key: &record.partition_key,
            explicit_hash_key: record.explicit_hash_key.as_deref(),
            stream,
            shard_id,
            sequence_number: record.sequence_number.as_str(),
            sub_sequence_number: record.sub_sequence_number,
            approximate_arrival_ms: record.approximate_arrival.map(epoch_ms),
            worker,
            ts_ms,
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.push(b'\n');
    }
    Ok(())
}

/// The output stream, shared by every shard's processor; each batch is written whole and
/// flushed before the processor checkpoints it.
pub(crate) struct Output {
    writer: Mutex<Box<dyn AsyncWrite + Send + Unpin>>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output").finish_non_exhaustive()
    }
}

impl Output {
    /// Standard output, or `path` opened for appending (created when missing) — a restarted
    /// consumer adds to what an earlier run wrote.
    pub(crate) async fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let writer: Box<dyn AsyncWrite + Send + Unpin> = match path {
            None => Box::new(tokio::io::stdout()),
            Some(path) if path.as_os_str() == "-" => Box::new(tokio::io::stdout()),
            Some(path) => Box::new(
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await?,
            ),
        };
        Ok(Self {
            writer: Mutex::new(writer),
        })
    }

    /// Writes `bytes` and flushes them, so they are out of this process before a checkpoint.
    pub(crate) async fn write_flushed(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut writer = self.writer.lock().await;
        writer.write_all(bytes).await?;
        writer.flush().await
    }

    /// Flushes whatever is pending (nothing is, after each write; this is for the end).
    pub(crate) async fn flush(&self) -> std::io::Result<()> {
        self.writer.lock().await.flush().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use bytes::Bytes;
    use shardwise::lease::SequenceNumber;

    use super::*;

    fn record(data: &[u8], hash_key: Option<&str>) -> UserRecord {
        UserRecord {
            data: Bytes::copy_from_slice(data),
            partition_key: "customer-\"7\"".into(),
            explicit_hash_key: hash_key.map(Into::into),
            sequence_number: SequenceNumber::new("4959").unwrap(),
            sub_sequence_number: 2,
            aggregated: hash_key.is_some(),
            approximate_arrival: Some(UNIX_EPOCH + Duration::from_millis(1_700)),
        }
    }

    #[test]
    fn one_json_object_per_record() {
        let mut out = Vec::new();
        let records = [record(b"order-1", None), record(&[0xff, 0x00], Some("42"))];
        render_lines(
            &mut out,
            &records,
            "orders",
            "shardId-000000000001",
            "w1",
            99,
            DataEncoding::Utf8,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            serde_json::json!({
                "data": "order-1",
                "partition_key": "customer-\"7\"",
                "stream": "orders",
                "shard_id": "shardId-000000000001",
                "sequence_number": "4959",
                "sub_sequence_number": 2,
                "approximate_arrival_ms": 1700,
                "worker": "w1",
                "ts_ms": 99,
            })
        );
        assert_eq!(lines[1]["explicit_hash_key"], "42");
        assert_eq!(lines[1]["data"], "\u{fffd}\u{0}");
    }

    #[test]
    fn base64_data() {
        let mut out = Vec::new();
        render_lines(
            &mut out,
            &[record(&[0xff, 0x00], None)],
            "orders",
            "s",
            "w",
            0,
            DataEncoding::Base64,
        )
        .unwrap();
        let line: serde_json::Value = serde_json::from_slice(out.trim_ascii_end()).unwrap();
        assert_eq!(line["data"], "/wA=");
    }
}
