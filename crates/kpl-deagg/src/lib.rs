//! Zero-copy deaggregation (and aggregation) of Kinesis Producer Library (KPL) aggregated
//! records, behaving like the Java Kinesis Client Library (KCL) on every input, valid or not.
//!
//! The KPL packs many *user records* into one Kinesis record: the magic `F3 89 9A C2`, a protobuf
//! `AggregatedRecord` (tables of partition keys and explicit hash keys, then the records), and
//! the MD5 of the protobuf bytes. A consumer must unpack them exactly as the KCL does, or records
//! are lost or duplicated. This crate does that with four dependencies (`prost`, `bytes`,
//! `md-5`, `thiserror`), nothing async and nothing AWS.
//!
//! ```
//! use shardwise_kpl_deagg::{Aggregator, AggregatorConfig, Deaggregator};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A producer packs user records into one Kinesis record (an aggregate)...
//! let mut aggregator = Aggregator::new(AggregatorConfig::new());
//! aggregator.add("alice", None, "hello")?;
//! aggregator.add("bob", None, "hi")?;
//! let put = aggregator.flush().ok_or("nothing pending")?;
//! // ...and a consumer splits it again: zero-copy, with a report of anything dropped.
//! let out = Deaggregator::new().deaggregate(put.partition_key, put.data)?;
//! for r in &out.records {
//!     let (key, n) = (r.partition_key(), r.sub_sequence_number());
//!     println!("{key} #{n}: {:?}", r.data());
//! }
//! assert_eq!(out.report.delivered, 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Deaggregation
//!
//! [`Deaggregator::deaggregate`] takes one Kinesis record (partition key and data as [`Bytes`])
//! and returns its [`UserRecord`]s with a [`Report`]. Each user record's data and keys are slices
//! of the input buffer: nothing is copied, whatever the record size (nothing assumes 1 MiB; 10 MiB
//! records work the same). A user record carries its partition key, its explicit hash key (if
//! any), its data, its sub-sequence number (its position in the aggregate, 0 for a plain record),
//! whether it came from an aggregate, and its 128-bit hash key ([`UserRecord::hash_key`]: the
//! explicit hash key, or the MD5 of the partition key as a big-endian integer, computed only when
//! asked for unless range filtering needed it).
//!
//! A record that is not a valid aggregate is delivered unchanged as a single user record, as the
//! KCL does; the [`Report`] says why ([`PlainReason`]). Sum reports with a [`Tally`] for metrics.
//!
//! ## Behaviour on every kind of input
//!
//! "KCL" is `AggregatorUtil.deaggregate` of the KCL 2.x/3.x (1.x is the same). Each row has a
//! test of the same name in `tests/behaviour.rs`.
//!
//! | # | input | KCL | this crate | [`Report`] | test |
//! | --- | --- | --- | --- | --- | --- |
//! | 1 | shorter than 4 bytes, or not starting with the magic | plain record, unchanged | same | `Plain(NoMagic)` | `row01_no_magic` |
//! | 2 | magic, but 20 bytes or fewer in all (no room for a body besides the MD5; includes a well-formed aggregate of an empty body) | plain record | same | `Plain(TooShort)` | `row02_too_short` |
//! | 3 | magic, MD5 trailer does not match the body: corrupt digest, flipped bit, truncated record, trailing bytes | plain record | same | `Plain(ChecksumMismatch)` | `row03_bad_md5` |
//! | 4 | magic, MD5 right, body is not a protobuf message: truncated field, length past the end, over-long varint, wire type 6 or 7, field number 0, stray end-group | plain record | same | `Plain(MalformedProtobuf)` | `row04_malformed_protobuf` |
//! | 5 | magic, MD5 right, a proto2 `required` field missing (`Record.partition_key_index`, `Record.data`, `Tag.key`) | plain record | same | `Plain(MissingRequiredField)` | `row05_missing_required_field` |
//! | 6 | a sub-record's partition key index is outside the partition key table | sub-records before it delivered, it and **all after it silently lost** (error log only) | [`InvalidSubRecordPolicy::KclCompatible`] (default): same records, the loss counted in `dropped_invalid` and described in `first_invalid`; `SkipInvalid`: only the invalid sub-record dropped; `Strict`: [`DeaggregateError`] | `dropped_invalid`, `first_invalid` | `row06_partition_key_index_out_of_range` |
//! | 7 | an explicit hash key index is present and outside its table (also: no table at all) | as row 6 | as row 6 | as row 6 | `row07_explicit_hash_key_index_out_of_range` |
//! | 8 | an explicit hash key that is not a decimal integer (`abc`, empty, `1.5`, ` 1`) | as row 6 | as row 6 | as row 6 | `row08_explicit_hash_key_not_decimal` |
//! | 9 | an explicit hash key that is decimal but negative or not below 2^128 | the whole aggregate dropped (it counts as a hash key outside the shard, even with no shard filter) | `KclCompatible`: whole aggregate dropped, counted in `dropped_invalid`; `SkipInvalid`: only that sub-record; `Strict`: error | as row 6 | `row09_explicit_hash_key_out_of_range` |
//! | 10 | a valid aggregate with an empty record list | nothing delivered | same | `Aggregated`, `sub_records == 0` | `row10_empty_record_list` |
//! | 11 | unknown fields (also groups), tags, fields out of order, a scalar repeated (last wins) | ignored, normal deaggregation | same | `Aggregated` | `row11_tolerated_variations` |
//! | 12 | a partition key that is not UTF-8 | decoded with U+FFFD replacement; hash key from the decoded text | same ([`UserRecord::partition_key`]); raw bytes in [`UserRecord::partition_key_bytes`] | `Aggregated` | `row12_non_utf8_partition_key` |
//! | 13 | shard filter: any sub-record's hash key outside the shard's range | the whole aggregate dropped | same, see below | `dropped_out_of_range` | `row13_hash_key_range_all_or_none` |
//! | 14 | shard filter: a plain record whose hash key is outside the range | delivered | same | `Plain(..)` | `row14_plain_records_never_filtered` |
//!
//! Known, deliberate differences from the KCL, all on inputs no producer writes:
//! * A key-table index of 2^32 or more: the KCL truncates it to a 32-bit `int`, so 2^32 reads
//!   entry 0 (a wrong key) and 2^31 fails; here any index past the table is out of range (rows 6
//!   and 7).
//! * A known field sent with the wrong wire type (for example `partition_key_table` as a varint):
//!   protobuf-java skips it as an unknown field, `prost` rejects the body, so the record is
//!   delivered plain (row 4) where the KCL might deaggregate the rest.
//! * An explicit hash key written with non-ASCII Unicode digits, which Java's `BigInteger`
//!   accepts, is not decimal here (row 8).
//!
//! Work is proportional to the record's size whatever it holds: keys are shared by the
//! sub-records that use them, explicit hash keys parsed and partition keys hashed once per table
//! entry, so an aggregate of one huge key and tens of thousands of sub-records costs no more than
//! its size suggests (the KCL hashes the key again for every sub-record). Unit test
//! `a_key_shared_by_every_sub_record_is_hashed_once`.
//!
//! Under [`InvalidSubRecordPolicy::Strict`] only rows 6–9 are errors: in rows 1–5 the data is
//! delivered unchanged and in rows 10 and 13 nothing is lost that a producer meant to deliver.
//!
//! ## Hash-key-range filtering
//!
//! After a shard splits, an aggregate written to the parent may hold sub-records whose hash keys
//! belong to a child. The KPL re-sends such user records to the right shard, so the copies in the
//! misplaced aggregate are duplicates. The KCL therefore drops an aggregate **whole** as soon as
//! one sub-record's hash key is outside the shard's range, keeping all or none of it; it never
//! filters plain records. [`Deaggregator::with_hash_key_range`] applies the same rule and reports
//! the dropped sub-records in [`Report::dropped_out_of_range`]. Caution (as for the KCL):
//! aggregates built without the KPL's shard map, for example by the Python or Node aggregators,
//! are not re-sent, so the rule loses their data; filter only streams written by the KPL.
//!
//! ## Resuming inside an aggregate
//!
//! A checkpoint is (sequence number, sub-sequence number). Reading resumes `AT_SEQUENCE_NUMBER`,
//! so the first Kinesis record read is the checkpointed one and its sub-records up to the
//! checkpoint must be skipped: [`Deaggregator::deaggregate_resuming`] skips sub-records whose
//! index is `<= skip_through`. Sequence numbers have up to 129 decimal digits, more than any
//! integer type holds; [`ResumePoint`] compares them as text and tells, per Kinesis record, what
//! to skip. Validity and range filtering are decided over the whole aggregate before skipping.
//!
//! # Aggregation
//!
//! [`Aggregator`] builds aggregates byte-identical to the Python `aws-kinesis-agg` aggregator
//! for the same input, at most [`AggregatorConfig::max_size`] bytes each (1 MiB by default, up to
//! 10 MiB), and by default sends a lone user record as itself, as the KPL does
//! ([`AggregatorConfig::with_single_record_shortcut`]).

mod aggregate;
mod deaggregate;
mod hash_key;
mod proto;
mod record;
mod report;
mod resume;

pub use bytes::Bytes;

pub use crate::aggregate::{
    AggregateError, Aggregator, AggregatorConfig, DEFAULT_MAX_AGGREGATE_SIZE, MAX_AGGREGATE_SIZE,
    MIN_AGGREGATE_SIZE, PutRecord,
};
pub use crate::deaggregate::{
    DIGEST_SIZE, DeaggregateError, Deaggregated, Deaggregator, InvalidSubRecordPolicy, MAGIC,
};
pub use crate::hash_key::{
    ExplicitHashKeyError, HashKeyRange, HashKeyRangeParseError, InvalidHashKeyRange,
    hash_key_of_partition_key, parse_explicit_hash_key,
};
pub use crate::record::UserRecord;
pub use crate::report::{Framing, InvalidSubRecord, PlainReason, Report, SubRecordDefect, Tally};
pub use crate::resume::{InvalidSequenceNumber, ResumePoint, compare_sequence_numbers};
