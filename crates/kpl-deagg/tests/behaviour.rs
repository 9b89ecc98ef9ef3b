//! One test per row of the behaviour table in the crate documentation, plus the neighbouring
//! rules (resume, zero copy, large records, policies).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{Pb, frame, md5_u128};
use shardwise_kpl_deagg::{
    DeaggregateError, Deaggregated, Deaggregator, Framing, HashKeyRange, InvalidSubRecord,
    InvalidSubRecordPolicy, MAGIC, PlainReason, Report, SubRecordDefect, UserRecord,
};

const OUTER_PK: &str = "outer-key";

fn deagg(data: Bytes) -> Deaggregated {
    Deaggregator::new().deaggregate(OUTER_PK, data).unwrap()
}

fn with_policy(
    policy: InvalidSubRecordPolicy,
    data: Bytes,
) -> Result<Deaggregated, DeaggregateError> {
    Deaggregator::new()
        .with_policy(policy)
        .deaggregate(OUTER_PK, data)
}

fn datas(records: &[UserRecord]) -> Vec<&[u8]> {
    records.iter().map(|r| r.data().as_ref()).collect()
}

fn subs(records: &[UserRecord]) -> Vec<u64> {
    records
        .iter()
        .map(UserRecord::sub_sequence_number)
        .collect()
}

fn check_invariant(report: &Report) {
    assert_eq!(
        report.sub_records,
        report.delivered
            + report.skipped_by_resume
            + report.dropped_out_of_range
            + report.dropped_invalid,
        "{report:?}"
    );
}

/// A valid three-record aggregate.
fn three() -> Bytes {
    Pb::new()
        .pk("a")
        .pk("b")
        .rec(0, "r0")
        .rec(1, "r1")
        .rec(0, "r2")
        .frame()
}

/// Asserts the record came through unchanged as one plain record.
fn assert_plain(data: Bytes, reason: PlainReason) {
    let out = deagg(data.clone());
    assert_eq!(out.report.framing, Framing::Plain(reason), "{data:?}");
    assert_eq!(out.report.sub_records, 1);
    assert_eq!(out.report.delivered, 1);
    check_invariant(&out.report);
    let [record] = out.records.as_slice() else {
        panic!("one record expected, got {:?}", out.records)
    };
    assert_eq!(record.data(), &data);
    assert_eq!(record.partition_key(), OUTER_PK);
    assert_eq!(record.explicit_hash_key(), None);
    assert_eq!(record.sub_sequence_number(), 0);
    assert!(!record.is_aggregated());
    assert_eq!(record.hash_key(), md5_u128(OUTER_PK.as_bytes()));
    // Plain records are never an error, whatever the policy.
    let strict = with_policy(InvalidSubRecordPolicy::Strict, data).unwrap();
    assert_eq!(strict.records.len(), 1);
}

#[test]
fn row01_no_magic() {
    let valid = three();
    let mut first_byte_changed = valid.to_vec();
    first_byte_changed[0] ^= 1;
    for data in [
        Bytes::new(),
        Bytes::from_static(&[0xF3]),
        Bytes::copy_from_slice(&MAGIC[..3]),
        Bytes::from_static(b"just some data"),
        Bytes::from_static(&[
            0xF3, 0x89, 0x9A, 0xC3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]),
        Bytes::from(first_byte_changed),
    ] {
        assert_plain(data, PlainReason::NoMagic);
    }
}

#[test]
fn row02_too_short() {
    let empty_body_aggregate = frame(&[]);
    assert_eq!(empty_body_aggregate.len(), 20);
    for data in [
        Bytes::copy_from_slice(&MAGIC),
        Bytes::from([&MAGIC[..], &[7; 10]].concat()),
        Bytes::from([&MAGIC[..], &[0; 16]].concat()),
        empty_body_aggregate,
    ] {
        assert_plain(data, PlainReason::TooShort);
    }
}

#[test]
fn row03_bad_md5() {
    let valid = three();
    assert_eq!(deagg(valid.clone()).report.framing, Framing::Aggregated);
    let mut digest_flipped = valid.to_vec();
    *digest_flipped.last_mut().unwrap() ^= 0x80;
    let mut body_flipped = valid.to_vec();
    body_flipped[6] ^= 0x01;
    let truncated = valid.slice(..valid.len() - 1);
    let mut trailing = valid.to_vec();
    trailing.push(0);
    let truncated_to_21 = valid.slice(..21);
    for data in [
        Bytes::from(digest_flipped),
        Bytes::from(body_flipped),
        truncated,
        Bytes::from(trailing),
        truncated_to_21,
    ] {
        assert_plain(data, PlainReason::ChecksumMismatch);
    }
}

#[test]
fn row04_malformed_protobuf() {
    let bodies: Vec<Vec<u8>> = vec![
        // field 1, length 5, only 2 bytes follow
        vec![0x0a, 0x05, b'a', b'b'],
        // record whose declared length runs past the end
        Pb::new().pk("a").raw(&[0x1a, 0x7f, 0x08, 0x00]).0,
        // a varint longer than 10 bytes
        Pb::new()
            .pk("a")
            .raw(&[0x1a, 0x0d, 0x08])
            .raw(&[0xff; 11])
            .raw(&[0x01])
            .0,
        // truncated varint at the end
        Pb::new().pk("a").raw(&[0x78, 0xff]).0,
        // wire type 7 and 6 do not exist
        Pb::new().pk("a").raw(&[0x7f, 0x00]).0,
        Pb::new().pk("a").raw(&[0x7e, 0x00]).0,
        // field number 0
        Pb::new().pk("a").raw(&[0x00, 0x00]).0,
        Pb::new().pk("a").raw(&[0x02, 0x00]).0,
        // an end-group with no start-group
        Pb::new().pk("a").rec(0, "x").raw(&[0x7c]).0,
        // garbage inside a record
        Pb::new()
            .pk("a")
            .bytes(3, &[0x08, 0x00, 0x1a, 0x05, b'x'])
            .0,
    ];
    for body in bodies {
        assert_plain(frame(&body), PlainReason::MalformedProtobuf);
    }
}

#[test]
fn row05_missing_required_field() {
    let tag_without_key = Pb::new().bytes(2, b"value").0;
    let record_with_bad_tag = Pb::new()
        .uint(1, 0)
        .bytes(3, b"x")
        .bytes(4, &tag_without_key)
        .0;
    let bodies: Vec<Vec<u8>> = vec![
        // no partition_key_index
        Pb::new().pk("a").record(None, None, Some(b"x")).0,
        // no data
        Pb::new().pk("a").record(Some(0), None, None).0,
        // a tag without a key
        Pb::new().pk("a").bytes(3, &record_with_bad_tag).0,
        // a valid record first does not help: the parse fails as a whole
        Pb::new().pk("a").rec(0, "ok").record(Some(0), None, None).0,
    ];
    for body in bodies {
        assert_plain(frame(&body), PlainReason::MissingRequiredField);
    }
}

/// Checks one invalid sub-record at position 2 of 4 under all three policies.
fn assert_invalid_third(data: Bytes, defect: SubRecordDefect) {
    let invalid = InvalidSubRecord {
        sub_sequence_number: 2,
        defect,
    };

    let kcl = deagg(data.clone());
    assert_eq!(kcl.report.framing, Framing::Aggregated);
    assert_eq!(datas(&kcl.records), [&b"r0"[..], b"r1"]);
    assert_eq!(kcl.report.delivered, 2);
    assert_eq!(
        kcl.report.dropped_invalid, 2,
        "the invalid one and the one after"
    );
    assert_eq!(kcl.report.first_invalid, Some(invalid));
    assert!(kcl.report.lost_data());
    check_invariant(&kcl.report);

    let skip = with_policy(InvalidSubRecordPolicy::SkipInvalid, data.clone()).unwrap();
    assert_eq!(datas(&skip.records), [&b"r0"[..], b"r1", b"r3"]);
    assert_eq!(subs(&skip.records), [0, 1, 3]);
    assert_eq!(skip.report.dropped_invalid, 1);
    assert_eq!(skip.report.first_invalid, Some(invalid));
    check_invariant(&skip.report);

    let strict = with_policy(InvalidSubRecordPolicy::Strict, data);
    assert_eq!(strict, Err(DeaggregateError::InvalidSubRecord(invalid)));
}

#[test]
fn row06_partition_key_index_out_of_range() {
    let data = Pb::new()
        .pk("a")
        .rec(0, "r0")
        .rec(0, "r1")
        .rec(5, "r2")
        .rec(0, "r3")
        .frame();
    assert_invalid_third(
        data,
        SubRecordDefect::PartitionKeyIndexOutOfRange {
            index: 5,
            table_len: 1,
        },
    );
    // The KCL casts indices to a 32-bit int, so 2^32 would read entry 0; here it is out of range.
    let data = Pb::new()
        .pk("a")
        .rec(0, "r0")
        .rec(0, "r1")
        .rec(1 << 32, "r2")
        .rec(0, "r3")
        .frame();
    assert_invalid_third(
        data,
        SubRecordDefect::PartitionKeyIndexOutOfRange {
            index: 1 << 32,
            table_len: 1,
        },
    );
}

#[test]
fn row07_explicit_hash_key_index_out_of_range() {
    let ehk_record = |pb: Pb, index| pb.record(Some(0), Some(index), Some(b"r2"));
    let with_table = ehk_record(Pb::new().pk("a").ehk("7").rec(0, "r0").rec(0, "r1"), 1)
        .rec(0, "r3")
        .frame();
    assert_invalid_third(
        with_table,
        SubRecordDefect::ExplicitHashKeyIndexOutOfRange {
            index: 1,
            table_len: 1,
        },
    );
    let without_table = ehk_record(Pb::new().pk("a").rec(0, "r0").rec(0, "r1"), 0)
        .rec(0, "r3")
        .frame();
    assert_invalid_third(
        without_table,
        SubRecordDefect::ExplicitHashKeyIndexOutOfRange {
            index: 0,
            table_len: 0,
        },
    );
}

#[test]
fn row08_explicit_hash_key_not_decimal() {
    for bad in ["abc", "", "1.5", " 1", "1e9", "0x10", "+", "\u{0663}"] {
        let data = Pb::new()
            .pk("a")
            .ehk("12")
            .ehk(bad)
            .record(Some(0), Some(0), Some(b"r0"))
            .rec(0, "r1")
            .record(Some(0), Some(1), Some(b"r2"))
            .rec(0, "r3")
            .frame();
        assert_invalid_third(data, SubRecordDefect::ExplicitHashKeyNotDecimal);
    }
}

#[test]
fn row09_explicit_hash_key_out_of_range() {
    for bad in [
        "-1",
        "340282366920938463463374607431768211456",
        "99999999999999999999999999999999999999999999",
    ] {
        let data = Pb::new()
            .pk("a")
            .ehk(bad)
            .rec(0, "r0")
            .rec(0, "r1")
            .record(Some(0), Some(0), Some(b"r2"))
            .rec(0, "r3")
            .frame();
        let invalid = InvalidSubRecord {
            sub_sequence_number: 2,
            defect: SubRecordDefect::ExplicitHashKeyOutOfRange,
        };
        // The KCL sees a hash key outside the shard and drops the whole aggregate.
        let kcl = deagg(data.clone());
        assert!(kcl.records.is_empty());
        assert_eq!(kcl.report.dropped_invalid, 4);
        assert_eq!(kcl.report.first_invalid, Some(invalid));
        check_invariant(&kcl.report);

        let skip = with_policy(InvalidSubRecordPolicy::SkipInvalid, data.clone()).unwrap();
        assert_eq!(subs(&skip.records), [0, 1, 3]);
        assert_eq!(skip.report.dropped_invalid, 1);
        check_invariant(&skip.report);

        let strict = with_policy(InvalidSubRecordPolicy::Strict, data);
        assert_eq!(strict, Err(DeaggregateError::InvalidSubRecord(invalid)));
    }
    // The largest hash key is fine, and so are leading zeros and "-0".
    let data = Pb::new()
        .pk("a")
        .ehk("340282366920938463463374607431768211455")
        .ehk("-0")
        .ehk("0042")
        .record(Some(0), Some(0), Some(b"max"))
        .record(Some(0), Some(1), Some(b"zero"))
        .record(Some(0), Some(2), Some(b"42"))
        .frame();
    let out = deagg(data);
    let hash_keys: Vec<u128> = out.records.iter().map(UserRecord::hash_key).collect();
    assert_eq!(hash_keys, [u128::MAX, 0, 42]);
    assert_eq!(out.records[2].explicit_hash_key(), Some("0042"));
}

#[test]
fn row10_empty_record_list() {
    let data = Pb::new().pk("a").pk("b").frame();
    let out = deagg(data.clone());
    assert!(out.records.is_empty());
    assert_eq!(out.report.framing, Framing::Aggregated);
    assert_eq!(out.report.sub_records, 0);
    assert_eq!(out.report.dropped(), 0);
    check_invariant(&out.report);
    assert!(
        with_policy(InvalidSubRecordPolicy::Strict, data)
            .unwrap()
            .records
            .is_empty()
    );
}

#[test]
fn row11_tolerated_variations() {
    let tag = Pb::new().bytes(1, b"k").bytes(2, b"v").0;
    let record_with_tag_and_repeats = Pb::new()
        .uint(1, 1)
        .uint(1, 0) // repeated scalar: last wins
        .bytes(3, b"old")
        .bytes(4, &tag)
        .uint(99, 5) // unknown varint field
        .bytes(3, b"r1") // repeated data: last wins
        .0;
    let data = Pb::new()
        .rec(1, "r0") // records before the tables
        .pk("a")
        .bytes(3, &record_with_tag_and_repeats)
        .uint(15, 12345) // unknown fields of every wire type
        .tag(16, 1)
        .raw(&[1, 2, 3, 4, 5, 6, 7, 8])
        .tag(17, 5)
        .raw(&[1, 2, 3, 4])
        .bytes(18, b"unknown")
        .tag(19, 3) // an unknown group, with a nested one
        .uint(1, 1)
        .tag(2, 3)
        .tag(2, 4)
        .tag(19, 4)
        .pk("b")
        .frame();
    let out = deagg(data);
    assert_eq!(out.report.framing, Framing::Aggregated);
    assert_eq!(datas(&out.records), [&b"r0"[..], b"r1"]);
    let keys: Vec<String> = out
        .records
        .iter()
        .map(|r| r.partition_key().into_owned())
        .collect();
    assert_eq!(keys, ["b", "a"]);
}

#[test]
fn row12_non_utf8_partition_key() {
    let data = Pb::new().bytes(1, b"a\xffb").rec(0, "r0").frame();
    let out = deagg(data);
    let [record] = out.records.as_slice() else {
        panic!("one record expected")
    };
    assert_eq!(record.partition_key(), "a\u{fffd}b");
    assert_eq!(record.partition_key_bytes().as_ref(), b"a\xffb");
    assert_eq!(record.hash_key(), md5_u128("a\u{fffd}b".as_bytes()));
}

#[test]
fn row13_hash_key_range_all_or_none() {
    let keys = ["alpha", "bravo", "charlie"];
    let hashes: Vec<u128> = keys.iter().map(|k| md5_u128(k.as_bytes())).collect();
    let (low, high) = (*hashes.iter().min().unwrap(), *hashes.iter().max().unwrap());
    let data = Pb::new()
        .pk(keys[0])
        .pk(keys[1])
        .pk(keys[2])
        .rec(0, "r0")
        .rec(1, "r1")
        .rec(2, "r2")
        .frame();
    for policy in [
        InvalidSubRecordPolicy::KclCompatible,
        InvalidSubRecordPolicy::SkipInvalid,
        InvalidSubRecordPolicy::Strict,
    ] {
        let deaggregator = Deaggregator::new().with_policy(policy);
        // Inclusive bounds exactly around the hash keys: everything stays.
        let all_in = deaggregator.with_hash_key_range(HashKeyRange::new(low, high).unwrap());
        let out = all_in.deaggregate(OUTER_PK, data.clone()).unwrap();
        assert_eq!(out.records.len(), 3);
        let computed: Vec<u128> = out.records.iter().map(UserRecord::hash_key).collect();
        assert_eq!(computed, hashes);
        // Hash keys computed up front for filtering do not make records unequal.
        assert_eq!(out.records, deagg(data.clone()).records);
        // One key outside: the whole aggregate goes.
        for range in [
            HashKeyRange::new(low + 1, high).unwrap(),
            HashKeyRange::new(low, high - 1).unwrap(),
        ] {
            let out = deaggregator
                .with_hash_key_range(range)
                .deaggregate(OUTER_PK, data.clone())
                .unwrap();
            assert!(out.records.is_empty(), "{policy:?} {range}");
            assert_eq!(out.report.dropped_out_of_range, 3);
            check_invariant(&out.report);
        }
    }
    // An explicit hash key decides, not the partition key.
    let data = Pb::new()
        .pk("alpha")
        .ehk("5")
        .record(Some(0), Some(0), Some(b"r0"))
        .frame();
    let out = Deaggregator::new()
        .with_hash_key_range(HashKeyRange::new(5, 5).unwrap())
        .deaggregate(OUTER_PK, data)
        .unwrap();
    assert_eq!(out.records.len(), 1);
    // With invalid sub-records too, SkipInvalid counts each kind.
    let data = Pb::new().pk("alpha").rec(0, "r0").rec(9, "bad").frame();
    let out = Deaggregator::new()
        .with_policy(InvalidSubRecordPolicy::SkipInvalid)
        .with_hash_key_range(HashKeyRange::new(0, 0).unwrap())
        .deaggregate(OUTER_PK, data)
        .unwrap();
    assert_eq!(
        (out.report.dropped_out_of_range, out.report.dropped_invalid),
        (1, 1)
    );
}

#[test]
fn row14_plain_records_never_filtered() {
    let hash = md5_u128(OUTER_PK.as_bytes());
    let excluding = if hash == 0 {
        HashKeyRange::new(1, u128::MAX).unwrap()
    } else {
        HashKeyRange::new(0, hash - 1).unwrap()
    };
    let out = Deaggregator::new()
        .with_hash_key_range(excluding)
        .deaggregate(OUTER_PK, Bytes::from_static(b"plain"))
        .unwrap();
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.report.dropped_out_of_range, 0);
}

#[test]
fn wrong_wire_type_for_a_known_field_is_malformed_here() {
    // protobuf-java would skip this as an unknown field; see the documented differences.
    let body = Pb::new().uint(1, 5).rec(0, "r0").pk("a").0;
    assert_plain(frame(&body), PlainReason::MalformedProtobuf);
}

#[test]
fn valid_aggregate_fields() {
    let data = Pb::new()
        .pk("a")
        .pk("b")
        .ehk("12345")
        .rec(0, "r0")
        .record(Some(1), Some(0), Some(b"r1"))
        .frame();
    let out = deagg(data);
    assert_eq!(out.report.framing, Framing::Aggregated);
    assert_eq!(out.report.delivered, 2);
    let [first, second] = out.records.as_slice() else {
        panic!("two records expected")
    };
    assert_eq!(
        (first.partition_key(), first.explicit_hash_key()),
        ("a".into(), None)
    );
    assert_eq!(first.hash_key(), md5_u128(b"a"));
    assert_eq!(
        (second.partition_key(), second.explicit_hash_key()),
        ("b".into(), Some("12345"))
    );
    assert_eq!(second.hash_key(), 12345);
    assert!(first.is_aggregated() && second.is_aggregated());
    assert_eq!(subs(&out.records), [0, 1]);
}

#[test]
fn data_and_keys_are_slices_of_the_input() {
    let data = three();
    let range = data.as_ptr() as usize..data.as_ptr() as usize + data.len();
    for record in deagg(data.clone()).records {
        assert!(range.contains(&(record.data().as_ptr() as usize)));
        assert!(range.contains(&(record.partition_key_bytes().as_ptr() as usize)));
    }
}

#[test]
fn resume_skips_through_a_sub_sequence_number() {
    let data = Pb::new()
        .pk("a")
        .rec(0, "r0")
        .rec(0, "r1")
        .rec(0, "r2")
        .rec(0, "r3")
        .rec(0, "r4")
        .frame();
    let deaggregator = Deaggregator::new();
    let out = deaggregator
        .deaggregate_resuming(OUTER_PK, data.clone(), 2)
        .unwrap();
    assert_eq!(subs(&out.records), [3, 4]);
    assert_eq!(out.report.skipped_by_resume, 3);
    check_invariant(&out.report);
    let out = deaggregator
        .deaggregate_resuming(OUTER_PK, data.clone(), u64::MAX)
        .unwrap();
    assert!(out.records.is_empty());
    assert_eq!(out.report.skipped_by_resume, 5);
    // Range filtering is decided over the whole aggregate first.
    let out = deaggregator
        .with_hash_key_range(HashKeyRange::new(0, 0).unwrap())
        .deaggregate_resuming(OUTER_PK, data, 2)
        .unwrap();
    assert_eq!(
        (
            out.report.skipped_by_resume,
            out.report.dropped_out_of_range
        ),
        (0, 5)
    );
    // In KCL mode an invalid sub-record after the resume point: skipped ones are not lost.
    let data = Pb::new()
        .pk("a")
        .rec(0, "r0")
        .rec(0, "r1")
        .rec(3, "bad")
        .rec(0, "r3")
        .frame();
    let out = deaggregator
        .deaggregate_resuming(OUTER_PK, data, 0)
        .unwrap();
    assert_eq!(subs(&out.records), [1]);
    assert_eq!(
        (out.report.skipped_by_resume, out.report.dropped_invalid),
        (1, 2)
    );
    check_invariant(&out.report);
}

#[test]
fn deaggregate_into_appends_and_leaves_out_untouched_on_error() {
    let deaggregator = Deaggregator::new().with_policy(InvalidSubRecordPolicy::Strict);
    let mut out = Vec::new();
    deaggregator
        .deaggregate_into(OUTER_PK, three(), None, &mut out)
        .unwrap();
    deaggregator
        .deaggregate_into(OUTER_PK, three(), Some(0), &mut out)
        .unwrap();
    assert_eq!(subs(&out), [0, 1, 2, 1, 2]);
    let bad = Pb::new().pk("a").rec(0, "r0").rec(1, "r1").frame();
    assert!(
        deaggregator
            .deaggregate_into(OUTER_PK, bad, None, &mut out)
            .is_err()
    );
    assert_eq!(out.len(), 5);
}

#[test]
fn records_larger_than_ten_mib() {
    let big = vec![0xAB_u8; 11 * 1024 * 1024];
    let data = Pb::new()
        .pk("big")
        .bytes(3, &Pb::new().uint(1, 0).bytes(3, &big).0)
        .frame();
    let out = deagg(data);
    assert_eq!(out.report.framing, Framing::Aggregated);
    assert_eq!(out.records[0].data().len(), big.len());
}
