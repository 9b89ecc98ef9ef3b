//! From Kinesis records to user records: KPL deaggregation, the lease's hash-key range, and the
//! sub-records a checkpoint inside an aggregate already covers.
//!
//! The work per Kinesis record is proportional to its size, whatever it holds: the sub-records of
//! an aggregate share its keys (each table entry is converted to text once, and hashed once by the
//! deaggregator), so a hostile aggregate of one huge key and tens of thousands of empty
//! sub-records costs a few times its size, not a copy of the key per sub-record.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use shardwise_kinesis_source::Record;
use shardwise_kpl_deagg::{
    Deaggregator, HashKeyRange as DeaggRange, InvalidSubRecordPolicy, MAGIC,
};
use shardwise_lease_core::{HashKeyRange, SequenceNumber};
use tracing::debug;

use crate::record::UserRecord;

/// The deaggregator for a lease: every valid sub-record is delivered and what is dropped is
/// counted (never the KCL's silent loss of the rest of an aggregate); sub-records outside the
/// lease's hash-key range are dropped.
pub(crate) fn deaggregator(range: Option<HashKeyRange>) -> Deaggregator {
    let d = Deaggregator::new().with_policy(InvalidSubRecordPolicy::SkipInvalid);
    match range.and_then(|r| DeaggRange::new(r.start(), r.end()).ok()) {
        Some(range) => d.with_hash_key_range(range),
        None => d,
    }
}

/// Deaggregates a batch into user records, skipping what a checkpoint inside the first record
/// already covers. A plain record (no KPL magic) is moved as it is, without a copy.
pub(crate) fn user_records(
    deaggregator: &Deaggregator,
    records: Vec<Record>,
    resume: &mut Option<(SequenceNumber, u64)>,
    metrics: &shardwise_metrics::ShardMetrics,
) -> Result<Vec<UserRecord>, String> {
    let mut out = Vec::with_capacity(records.len());
    let mut parts = Vec::new();
    for record in records {
        let sequence = SequenceNumber::new(&record.sequence_number).map_err(|e| e.to_string())?;
        let skip_through = match resume.take() {
            Some((at, sub)) if at == sequence => Some(sub),
            Some(other) if sequence < other.0 => {
                *resume = Some(other);
                continue;
            }
            _ => None,
        };
        if !record.data.starts_with(&MAGIC) {
            // A plain record is sub-record 0, which any resume point inside it covers.
            if skip_through.is_none() {
                out.push(UserRecord {
                    partition_key: record.partition_key.into(),
                    explicit_hash_key: None,
                    sub_sequence_number: 0,
                    aggregated: false,
                    data: record.data,
                    sequence_number: sequence,
                    approximate_arrival: record.approximate_arrival,
                });
            }
            continue;
        }
        parts.clear();
        let report = deaggregator
            .deaggregate_into(record.partition_key, record.data, skip_through, &mut parts)
            .map_err(|e| e.to_string())?;
        if report.framing == shardwise_kpl_deagg::Framing::Aggregated {
            metrics
                .kpl_records_deaggregated
                .increment(report.delivered as u64);
        }
        let dropped = (report.dropped_invalid + report.dropped_out_of_range) as u64;
        metrics.kpl_records_dropped.increment(dropped);
        if dropped > 0 {
            debug!(
                sequence = %sequence,
                dropped_invalid = report.dropped_invalid,
                dropped_out_of_range = report.dropped_out_of_range,
                "KPL sub-records dropped"
            );
        }
        let mut keys = SharedKeys::default();
        out.reserve(parts.len());
        for part in parts.drain(..) {
            out.push(UserRecord {
                partition_key: keys.text(part.partition_key_bytes()),
                explicit_hash_key: part.explicit_hash_key_bytes().map(|raw| keys.text(raw)),
                sub_sequence_number: part.sub_sequence_number(),
                aggregated: part.is_aggregated(),
                data: part.into_data(),
                sequence_number: sequence.clone(),
                approximate_arrival: record.approximate_arrival,
            });
        }
    }
    Ok(out)
}

/// The keys of one aggregate as text, converted once per table entry: the sub-records that use
/// an entry get slices of the same buffer, so the buffer's address and length name the entry.
#[derive(Default)]
struct SharedKeys(HashMap<(usize, usize), Arc<str>>);

impl SharedKeys {
    fn text(&mut self, raw: &Bytes) -> Arc<str> {
        self.0
            .entry((raw.as_ptr() as usize, raw.len()))
            .or_insert_with(|| String::from_utf8_lossy(raw).into())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    use md5::{Digest, Md5};

    use super::*;

    thread_local! {
        static COUNTING: Cell<bool> = const { Cell::new(false) };
        static ALLOCATED: Cell<usize> = const { Cell::new(0) };
    }

    fn count(bytes: usize) {
        // `try_with`: allocations happen while a thread's locals are torn down, too.
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = ALLOCATED.try_with(|total| total.set(total.get() + bytes));
        }
    }

    /// The system allocator, counting what this thread allocates while `COUNTING` is set.
    struct Counting;

    // SAFETY: every method passes its arguments unchanged to the system allocator and returns
    // its answer, so each upholds `GlobalAlloc`'s contract exactly as `System` does. The
    // counting before it only touches thread-locals with constant initialisers and no
    // destructors, which neither allocate nor re-enter the allocator.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count(layout.size());
            // SAFETY: the caller's guarantees for `alloc` are passed on unchanged.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count(layout.size());
            // SAFETY: as for `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation here is).
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count(new_size);
            // SAFETY: as for `dealloc`; the caller's guarantees on `new_size` are passed on.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// A valid aggregate anyone allowed to put records can write: one huge partition key and
    /// tens of thousands of empty sub-records that all use it. Protobuf written by hand.
    fn one_huge_key(key_len: usize, sub_records: usize) -> Bytes {
        fn field(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
            out.push(tag);
            let mut len = payload.len();
            while len >= 0x80 {
                out.push((len as u8) | 0x80);
                len >>= 7;
            }
            out.push(len as u8);
            out.extend_from_slice(payload);
        }
        let mut body = Vec::new();
        field(&mut body, 0x0A, &vec![b'k'; key_len]); // partition_key_table
        // Record { partition_key_index: 0, data: "" }
        let record = [0x08, 0x00, 0x1A, 0x00];
        for _ in 0..sub_records {
            field(&mut body, 0x1A, &record); // records
        }
        let mut data = shardwise_kpl_deagg::MAGIC.to_vec();
        data.extend_from_slice(&body);
        data.extend_from_slice(&Md5::digest(&body));
        data.into()
    }

    /// The review's hostile record: 1 MiB, a 600 KB key, 70,000 sub-records. Copying the key
    /// into each user record allocated 42 GB and killed the worker. Shared, the key is converted
    /// once, and each sub-record costs its own structs however small it is on the wire (the
    /// decoded protobuf record, the deaggregator's record and the user record: about 600 bytes
    /// allocated for each of these 6-byte sub-records): about 41 MB in all, linear in the size.
    #[test]
    fn a_hostile_aggregate_costs_a_small_multiple_of_its_size() {
        let data = one_huge_key(600_000, 70_000);
        assert!(data.len() <= 1024 * 1024, "{} bytes", data.len());
        let size = data.len();
        let record = Record {
            sequence_number: "49000000000000000000000000000000000000000000000000000001".into(),
            partition_key: "outer".into(),
            data,
            approximate_arrival: None,
        };
        let names = shardwise_metrics::MetricNames::new("test").unwrap();
        let metrics = shardwise_metrics::ShardMetrics::register(
            &names,
            shardwise_metrics::MetricsLevel::default(),
            "s",
            "shardId-0",
            "w",
        );
        // A range filter, so that every sub-record's hash key is needed too.
        let range = HashKeyRange::new(0, u128::MAX - 1).unwrap();
        let deaggregator = deaggregator(Some(range));
        ALLOCATED.with(|total| total.set(0));
        COUNTING.with(|on| on.set(true));
        let out = user_records(&deaggregator, vec![record], &mut None, &metrics);
        COUNTING.with(|on| on.set(false));
        let allocated = ALLOCATED.with(Cell::get);
        let out = out.unwrap();
        assert_eq!(out.len(), 70_000);
        assert!(
            out.iter()
                .all(|r| Arc::ptr_eq(&r.partition_key, &out[0].partition_key))
        );
        println!(
            "{size} bytes in, {allocated} bytes allocated ({:.1} times)",
            allocated as f64 / size as f64
        );
        assert!(
            allocated <= 48 * size,
            "{allocated} bytes allocated for a record of {size}"
        );
    }
}
