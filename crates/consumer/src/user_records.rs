//! From Kinesis records to user records: KPL deaggregation, the lease's hash-key range, and the
//! sub-records a checkpoint inside an aggregate already covers.

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
                    partition_key: record.partition_key,
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
        for part in parts.drain(..) {
            out.push(UserRecord {
                partition_key: part.partition_key().into_owned(),
                explicit_hash_key: part.explicit_hash_key().map(str::to_owned),
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
