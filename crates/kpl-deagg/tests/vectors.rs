//! Checks against vectors made by an independent implementation, the PyPI `aws-kinesis-agg`
//! aggregator (see `vectors/generate.py`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::json::{Json, base64_decode};
use md5::{Digest, Md5};
use shardwise_kpl_deagg::{
    Aggregator, AggregatorConfig, Deaggregator, Framing, PlainReason, PutRecord, UserRecord,
};

fn vectors() -> Json {
    Json::parse(include_str!("../vectors/vectors.json")).unwrap()
}

fn data_of(spec: &Json) -> Vec<u8> {
    if let Some(b64) = spec.opt("b64") {
        return base64_decode(b64.str());
    }
    let pattern = spec.get("pattern");
    let seed = pattern.get("seed").u64() as usize;
    (0..pattern.get("len").u64() as usize)
        .map(|i| ((i * 31 + seed) % 251) as u8)
        .collect()
}

fn opt_str(value: &Json, key: &str) -> Option<String> {
    value.opt(key).map(|v| v.str().to_owned())
}

/// Aggregates a case's records as the Python aggregator was asked to.
fn aggregate(case: &Json, shortcut: bool) -> Vec<PutRecord> {
    let max_size = case.get("max_size").u64() as usize;
    let config = AggregatorConfig::new()
        .with_max_size(max_size)
        .unwrap()
        .with_single_record_shortcut(shortcut);
    let mut aggregator = Aggregator::new(config);
    let mut puts = Vec::new();
    for record in case.get("records").array() {
        let put = aggregator
            .add(
                record.get("partition_key").str(),
                opt_str(record, "explicit_hash_key").as_deref(),
                data_of(record.get("data")),
            )
            .unwrap();
        puts.extend(put);
    }
    puts.extend(aggregator.flush());
    puts
}

/// Python's aggregate bytes, or (for large ones, stored as length and MD5) ours after checking
/// they match that length and MD5.
fn python_aggregate_bytes(expected: &Json, ours: &PutRecord) -> Bytes {
    let data = expected.get("data");
    if let Some(b64) = data.opt("b64") {
        return Bytes::from(base64_decode(b64.str()));
    }
    assert_eq!(ours.data.len() as u64, data.get("len").u64());
    let digest: String = Md5::digest(&ours.data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(digest, data.get("md5").str());
    ours.data.clone()
}

#[test]
fn aggregation_is_byte_identical_to_python() {
    let vectors = vectors();
    let cases = vectors.get("aggregation").array();
    assert!(cases.len() >= 15);
    for case in cases {
        let name = case.get("name").str();
        let expected = case.get("aggregates").array();
        let ours = aggregate(case, false);
        assert_eq!(ours.len(), expected.len(), "{name}: number of aggregates");
        for (put, want) in ours.iter().zip(expected) {
            assert_eq!(put.partition_key, want.get("partition_key").str(), "{name}");
            assert_eq!(
                put.explicit_hash_key,
                opt_str(want, "explicit_hash_key"),
                "{name}"
            );
            assert_eq!(
                put.user_records as u64,
                want.get("user_records").u64(),
                "{name}"
            );
            assert!(put.aggregated, "{name}");
            assert!(
                put.data.len() <= case.get("max_size").u64() as usize,
                "{name}"
            );
            let python = python_aggregate_bytes(want, put);
            assert!(put.data == python, "{name}: bytes differ");
        }
    }
}

#[test]
fn single_record_shortcut_sends_the_record_itself() {
    let vectors = vectors();
    for case in vectors.get("aggregation").array() {
        let records = case.get("records").array();
        let mut next = 0;
        for put in aggregate(case, true) {
            if put.user_records == 1 {
                let record = &records[next];
                assert!(!put.aggregated);
                assert_eq!(put.partition_key, record.get("partition_key").str());
                assert_eq!(put.data.as_ref(), data_of(record.get("data")).as_slice());
            } else {
                assert!(put.aggregated);
            }
            next += put.user_records;
        }
        assert_eq!(next, records.len());
    }
}

fn check_record(name: &str, got: &UserRecord, want: &Json, sub_sequence_number: u64) {
    assert_eq!(
        got.partition_key(),
        want.get("partition_key").str(),
        "{name}"
    );
    assert_eq!(
        got.explicit_hash_key().map(str::to_owned),
        opt_str(want, "explicit_hash_key"),
        "{name}"
    );
    assert_eq!(
        got.data().as_ref(),
        data_of(want.get("data")).as_slice(),
        "{name}"
    );
    assert_eq!(got.sub_sequence_number(), sub_sequence_number, "{name}");
    assert_eq!(
        got.hash_key(),
        want.get("hash_key").str().parse::<u128>().unwrap(),
        "{name}"
    );
    assert!(got.is_aggregated(), "{name}");
}

#[test]
fn python_aggregates_deaggregate_to_their_user_records() {
    let vectors = vectors();
    let deaggregator = Deaggregator::new();
    for case in vectors.get("aggregation").array() {
        let name = case.get("name").str();
        let records = case.get("records").array();
        let mut next = 0;
        for (want, ours) in case
            .get("aggregates")
            .array()
            .iter()
            .zip(aggregate(case, false))
        {
            let data = python_aggregate_bytes(want, &ours);
            let out = deaggregator.deaggregate(ours.partition_key, data).unwrap();
            assert_eq!(out.report.framing, Framing::Aggregated, "{name}");
            assert_eq!(out.report.dropped(), 0, "{name}");
            for (sub, got) in out.records.iter().enumerate() {
                check_record(name, got, &records[next], sub as u64);
                next += 1;
            }
        }
        assert_eq!(next, records.len(), "{name}: every record comes back");
    }
}

fn framing_name(framing: Framing) -> &'static str {
    match framing {
        Framing::Aggregated => "aggregated",
        Framing::Plain(PlainReason::NoMagic) => "plain:no_magic",
        Framing::Plain(PlainReason::TooShort) => "plain:too_short",
        Framing::Plain(PlainReason::ChecksumMismatch) => "plain:checksum_mismatch",
        Framing::Plain(PlainReason::MalformedProtobuf) => "plain:malformed_protobuf",
        Framing::Plain(PlainReason::MissingRequiredField) => "plain:missing_required_field",
    }
}

#[test]
fn deaggregation_vectors_give_the_kcl_outcome() {
    let vectors = vectors();
    let cases = vectors.get("deaggregation").array();
    assert!(cases.len() >= 25);
    for case in cases {
        let name = case.get("name").str();
        let data = Bytes::from(data_of(case.get("data")));
        let expect = case.get("expect");
        let out = Deaggregator::new()
            .deaggregate("outer", data.clone())
            .unwrap();
        assert_eq!(
            framing_name(out.report.framing),
            expect.get("framing").str(),
            "{name}"
        );
        if out.report.framing == Framing::Aggregated {
            let want = expect.get("records").array();
            assert_eq!(out.records.len(), want.len(), "{name}");
            for (got, want) in out.records.iter().zip(want) {
                check_record(name, got, want, want.get("sub_sequence_number").u64());
            }
            assert_eq!(
                out.report.dropped_invalid as u64,
                expect.get("dropped_invalid").u64(),
                "{name}"
            );
        } else {
            assert_eq!(out.records.len(), 1, "{name}");
            assert_eq!(out.records[0].data(), &data, "{name}");
        }
    }
}
