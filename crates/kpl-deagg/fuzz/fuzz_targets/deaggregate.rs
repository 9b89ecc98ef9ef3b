//! Fuzzes the deaggregator: it must never panic, must keep its books, and must give a malformed
//! record back unchanged.
//!
//! Run from this folder: `cargo +nightly fuzz run deaggregate`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};
use shardwise_kpl_deagg::{
    Bytes, Deaggregator, Framing, HashKeyRange, InvalidSubRecordPolicy, MAGIC,
};

fuzz_target!(|input: &[u8]| {
    let Some((&control, rest)) = input.split_first() else {
        return;
    };
    // Low bits choose how the input is framed, so that most inputs reach the protobuf parser
    // and the sub-record checks instead of stopping at the MD5.
    let data = match control & 0b11 {
        0 => Bytes::copy_from_slice(rest),
        1 => Bytes::from([&MAGIC[..], rest].concat()),
        _ => {
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(rest);
            framed.extend_from_slice(&Md5::digest(rest));
            Bytes::from(framed)
        }
    };
    let policy = match (control >> 2) & 0b11 {
        0 => InvalidSubRecordPolicy::SkipInvalid,
        1 => InvalidSubRecordPolicy::Strict,
        _ => InvalidSubRecordPolicy::KclCompatible,
    };
    let range = if control & 0x10 == 0 {
        HashKeyRange::FULL
    } else {
        HashKeyRange::new(0, u128::MAX / 3).unwrap_or(HashKeyRange::FULL)
    };
    let skip = (control & 0x20 != 0).then_some(u64::from(control >> 6));
    let deaggregator = Deaggregator::new().with_policy(policy).with_hash_key_range(range);
    let mut out = Vec::new();
    let Ok(report) = deaggregator.deaggregate_into("pk", data.clone(), skip, &mut out) else {
        assert!(out.is_empty(), "an error leaves the output untouched");
        return;
    };
    assert_eq!(report.delivered, out.len());
    assert_eq!(
        report.sub_records,
        report.delivered + report.skipped_by_resume + report.dropped_out_of_range + report.dropped_invalid
    );
    if let Framing::Plain(_) = report.framing {
        assert_eq!(report.sub_records, 1);
        if let Some(record) = out.first() {
            assert_eq!(record.data(), &data);
        }
    }
    for record in &out {
        let _ = (record.partition_key(), record.explicit_hash_key(), record.hash_key());
        assert!(skip.is_none_or(|n| record.sub_sequence_number() > n));
    }
});
