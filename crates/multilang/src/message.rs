//! The messages of the MultiLang protocol, one JSON object per line each way, exactly as the
//! KCL's MultiLangDaemon writes and reads them.

use base64::Engine;
use serde_json::{Value, json};
use shardwise::UserRecord;
use shardwise::lease::Checkpoint;
use std::time::UNIX_EPOCH;

/// The actions the daemon sends.
pub(crate) const INITIALIZE: &str = "initialize";
pub(crate) const PROCESS_RECORDS: &str = "processRecords";
pub(crate) const LEASE_LOST: &str = "leaseLost";
pub(crate) const SHARD_ENDED: &str = "shardEnded";
pub(crate) const SHUTDOWN_REQUESTED: &str = "shutdownRequested";

/// `initialize`: the shard and where processing resumes, as the lease stores it (a start
/// sentinel such as `TRIM_HORIZON` with sub-sequence 0, as the KCL sends it).
pub(crate) fn initialize(shard_id: &str, checkpoint: &Checkpoint) -> String {
    let (sequence, sub_sequence) = match checkpoint {
        Checkpoint::At(position) => (
            json!(position.sequence.as_str()),
            json!(position.sub_sequence),
        ),
        // Stored as (sequence, -1): resume at that record.
        Checkpoint::Before(sequence) => (json!(sequence.as_str()), json!(-1)),
        other => (json!(other.to_string()), json!(0)),
    };
    json!({
        "action": INITIALIZE,
        "shardId": shard_id,
        "sequenceNumber": sequence,
        "subSequenceNumber": sub_sequence,
    })
    .to_string()
}

/// `processRecords`: the batch's user records (KPL aggregates already taken apart), their data
/// in base64, and how far behind the shard's newest record the batch is.
pub(crate) fn process_records(records: &[UserRecord], millis_behind_latest: Option<i64>) -> String {
    let base64 = base64::engine::general_purpose::STANDARD;
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "action": "record",
                "data": base64.encode(&r.data),
                "partitionKey": &*r.partition_key,
                "sequenceNumber": r.sequence_number.as_str(),
                "subSequenceNumber": r.sub_sequence_number,
                // kclpy cannot read a null here (the KCL would send one); Kinesis always sets
                // it, so 0 only ever stands for "unknown".
                "approximateArrivalTimestamp": r
                    .approximate_arrival
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            })
        })
        .collect();
    json!({
        "action": PROCESS_RECORDS,
        "records": records,
        "millisBehindLatest": millis_behind_latest,
    })
    .to_string()
}

/// A message with nothing but its action (`leaseLost`, `shardEnded`, `shutdownRequested`).
pub(crate) fn bare(action: &str) -> String {
    json!({ "action": action }).to_string()
}

/// The answer to a checkpoint request: the position asked for, echoed as it came, and the
/// simple name of the KCL exception that stopped it (`null` when it was stored).
pub(crate) fn checkpoint_answer(request: &CheckpointRequest, error: Option<&str>) -> String {
    json!({
        "action": "checkpoint",
        "sequenceNumber": request.sequence_number,
        "subSequenceNumber": request.sub_sequence_number,
        "error": error,
    })
    .to_string()
}

/// A checkpoint the child asks for, as it came.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CheckpointRequest {
    /// `null` (everything delivered, or `SHARD_END` at the end of a shard) or a sequence number.
    pub(crate) sequence_number: Value,
    /// `null`, missing (the Node client never sends it) or a number.
    pub(crate) sub_sequence_number: Value,
}

/// What a line from the child's stdout says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FromChild {
    /// `{"action":"status","responseFor":ACTION}`: the child is done with ACTION.
    Status(String),
    /// `{"action":"checkpoint",...}`: the child asks for a checkpoint and waits for the answer.
    Checkpoint(CheckpointRequest),
    /// Not a message of the protocol: a blank line, text the child printed, JSON that is no
    /// message the daemon acts on. The KCL skips these, and so does this daemon.
    Other,
}

/// Reads one line of the child's stdout.
pub(crate) fn parse(line: &[u8]) -> FromChild {
    let Ok(Value::Object(mut message)) = serde_json::from_slice::<Value>(line) else {
        return FromChild::Other;
    };
    match message.get("action").and_then(Value::as_str) {
        Some("status") => match message.remove("responseFor") {
            Some(Value::String(action)) => FromChild::Status(action),
            _ => FromChild::Other,
        },
        Some("checkpoint") => FromChild::Checkpoint(CheckpointRequest {
            sequence_number: message.remove("sequenceNumber").unwrap_or(Value::Null),
            sub_sequence_number: message.remove("subSequenceNumber").unwrap_or(Value::Null),
        }),
        _ => FromChild::Other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bytes_like::record;

    mod bytes_like {
        use shardwise::UserRecord;
        use shardwise::lease::SequenceNumber;
        use std::time::{Duration, UNIX_EPOCH};

        pub(super) fn record(data: &[u8], sequence: &str, sub: u64) -> UserRecord {
            UserRecord {
                data: data.to_vec().into(),
                partition_key: "pk".into(),
                explicit_hash_key: None,
                sequence_number: SequenceNumber::new(sequence).unwrap(),
                sub_sequence_number: sub,
                aggregated: sub > 0,
                approximate_arrival: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            }
        }
    }

    fn value(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn initialize_keeps_null_keys_and_sends_sentinels_as_the_kcl_does() {
        assert_eq!(
            value(&initialize("shardId-1", &Checkpoint::TrimHorizon)),
            json!({"action": "initialize", "shardId": "shardId-1",
                   "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0})
        );
        let at = Checkpoint::at(shardwise::lease::SequenceNumber::new("42").unwrap(), 3);
        assert_eq!(
            value(&initialize("shardId-1", &at))["sequenceNumber"],
            json!("42")
        );
        assert_eq!(
            value(&initialize("shardId-1", &at))["subSequenceNumber"],
            json!(3)
        );
    }

    #[test]
    fn records_carry_every_key_kclpy_reads() {
        let text = process_records(&[record(b"hello", "49", 2)], Some(1500));
        assert_eq!(
            value(&text),
            json!({"action": "processRecords", "millisBehindLatest": 1500, "records": [{
                "action": "record", "data": "aGVsbG8=", "partitionKey": "pk",
                "sequenceNumber": "49", "subSequenceNumber": 2,
                "approximateArrivalTimestamp": 1_700_000_000_123_u64}]})
        );
        assert!(!text.contains('\n'), "one line");
        assert_eq!(
            value(&process_records(&[], None))["millisBehindLatest"],
            Value::Null,
            "present even when null"
        );
    }

    #[test]
    fn child_lines() {
        assert_eq!(
            parse(br#"{"action":"status","responseFor":"initialize"}"#),
            FromChild::Status("initialize".into())
        );
        assert_eq!(
            parse(br#"{"action":"checkpoint","sequenceNumber":"7"}"#),
            FromChild::Checkpoint(CheckpointRequest {
                sequence_number: json!("7"),
                sub_sequence_number: Value::Null
            }),
            "the Node client leaves the sub-sequence number out"
        );
        for other in [
            &b""[..],
            b"   ",
            b"Encountered shutdown exception, skipping checkpoint",
            b"[1, 2]",
            br#"{"action":"shutdown"}"#,
            br#"{"action":"status"}"#,
            b"\xff\xfe",
        ] {
            assert_eq!(parse(other), FromChild::Other, "{other:?}");
        }
    }

    #[test]
    fn checkpoint_answers_echo_the_request() {
        let request = CheckpointRequest {
            sequence_number: json!("7"),
            sub_sequence_number: Value::Null,
        };
        assert_eq!(
            value(&checkpoint_answer(&request, None)),
            json!({"action": "checkpoint", "sequenceNumber": "7", "subSequenceNumber": null, "error": null})
        );
        assert_eq!(
            value(&checkpoint_answer(&request, Some("ShutdownException")))["error"],
            json!("ShutdownException")
        );
    }
}
