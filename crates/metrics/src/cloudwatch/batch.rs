//! Aggregated values, CloudWatch's limits, and cutting data into `PutMetricData` requests.
//! Pure: no I/O, no clock.

use std::sync::Arc;

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};
use metrics::Unit;

/// Metric data items per `PutMetricData` request.
pub const MAX_DATA_PER_REQUEST: usize = 1_000;
/// Size of one `PutMetricData` request.
pub const MAX_REQUEST_BYTES: usize = 1_000_000;
/// Dimensions per metric.
pub const MAX_DIMENSIONS: usize = 30;
/// Distinct values (with their counts) in one metric data item.
pub const MAX_VALUES_PER_DATUM: usize = 150;
/// Length of a metric name or a dimension name.
pub const MAX_NAME_LEN: usize = 255;
/// Length of a dimension value.
pub const MAX_DIMENSION_VALUE_LEN: usize = 1_024;

/// The largest magnitude CloudWatch accepts, 2^360.
const MAX_MAGNITUDE: f64 = f64::from_bits((1023 + 360) << 52);
/// The smallest non-zero magnitude CloudWatch accepts, 2^-360; smaller values become 0.
const MIN_MAGNITUDE: f64 = f64::from_bits((1023 - 360) << 52);

/// The size budget used for one request: the estimate below is generous, and a margin covers
/// the request's own fields.
const REQUEST_BUDGET: usize = MAX_REQUEST_BYTES - 16_384;

/// One metric data item, before conversion to the SDK's type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Datum {
    pub(crate) name: Arc<str>,
    pub(crate) dimensions: Arc<[(String, String)]>,
    pub(crate) unit: Option<Unit>,
    pub(crate) value: Value,
}

/// What one item carries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// One value (a counter's increase, a gauge nobody set this interval).
    Single(f64),
    /// Statistics of the values a gauge was set to during the interval.
    Stats {
        count: f64,
        sum: f64,
        min: f64,
        max: f64,
    },
    /// Distinct values and how often each was seen; at most [`MAX_VALUES_PER_DATUM`].
    Distribution(Vec<(f64, f64)>),
}

/// A value CloudWatch accepts as is, after [`normalise`].
pub(crate) fn normalise(value: f64) -> Option<f64> {
    if !value.is_finite() || value.abs() > MAX_MAGNITUDE {
        None
    } else if value.abs() < MIN_MAGNITUDE {
        Some(0.0)
    } else {
        Some(value)
    }
}

/// Rounds to three significant digits so that a histogram's distinct values stay few
/// (at most 900 per power of ten) while percentiles stay within 0.5 %.
pub(crate) fn round_to_3_significant(value: f64) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return 0.0;
    }
    let exponent = value.abs().log10().floor() as i32 - 2;
    let scale = 10f64.powi(exponent);
    let rounded = (value / scale).round() * scale;
    // Normalising again keeps a value near the limits within them.
    normalise(rounded).unwrap_or(0.0)
}

/// Splits a distribution into items of at most [`MAX_VALUES_PER_DATUM`] values each.
pub(crate) fn distribution_data(
    name: &Arc<str>,
    dimensions: &Arc<[(String, String)]>,
    unit: Option<Unit>,
    values: &[(f64, f64)],
) -> Vec<Datum> {
    values
        .chunks(MAX_VALUES_PER_DATUM)
        .map(|chunk| Datum {
            name: Arc::clone(name),
            dimensions: Arc::clone(dimensions),
            unit,
            value: Value::Distribution(chunk.to_vec()),
        })
        .collect()
}

/// A generous estimate of the bytes `datum` adds to a request: twice what the SDK's CBOR
/// encoding takes (field names, headers, 9 bytes per number), so that a request stays within
/// [`MAX_REQUEST_BYTES`] with room to spare.
pub(crate) fn estimated_size(datum: &Datum) -> usize {
    // Field names and item headers of one datum, and of one dimension.
    const PER_DATUM: usize = 96;
    const PER_DIMENSION: usize = 16;
    // A CBOR double is 9 bytes; a distribution carries a value and a count for each entry.
    const PER_NUMBER: usize = 10;
    let dimensions: usize = datum
        .dimensions
        .iter()
        .map(|(k, v)| PER_DIMENSION + k.len() + v.len())
        .sum();
    let numbers = match &datum.value {
        Value::Single(_) => 1,
        Value::Stats { .. } => 4 + 4,
        Value::Distribution(v) => 2 * v.len() + 2,
    };
    2 * (PER_DATUM + datum.name.len() + dimensions + PER_NUMBER * numbers)
}

/// Cuts `data` into requests of at most [`MAX_DATA_PER_REQUEST`] items and about
/// [`MAX_REQUEST_BYTES`], keeping the order.
pub(crate) fn requests(data: Vec<Datum>) -> Vec<Vec<Datum>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for datum in data {
        let size = estimated_size(&datum);
        if !current.is_empty()
            && (current.len() == MAX_DATA_PER_REQUEST || bytes + size > REQUEST_BUDGET)
        {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(datum);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The CloudWatch unit for a `metrics` unit; `None` for nanoseconds, which CloudWatch lacks.
pub(crate) fn standard_unit(unit: Unit) -> Option<StandardUnit> {
    Some(match unit {
        Unit::Count => StandardUnit::Count,
        Unit::Percent => StandardUnit::Percent,
        Unit::Seconds => StandardUnit::Seconds,
        Unit::Milliseconds => StandardUnit::Milliseconds,
        Unit::Microseconds => StandardUnit::Microseconds,
        Unit::Nanoseconds => return None,
        Unit::Tebibytes => StandardUnit::Terabytes,
        Unit::Gibibytes => StandardUnit::Gigabytes,
        Unit::Mebibytes => StandardUnit::Megabytes,
        Unit::Kibibytes => StandardUnit::Kilobytes,
        Unit::Bytes => StandardUnit::Bytes,
        Unit::TerabitsPerSecond => StandardUnit::TerabitsSecond,
        Unit::GigabitsPerSecond => StandardUnit::GigabitsSecond,
        Unit::MegabitsPerSecond => StandardUnit::MegabitsSecond,
        Unit::KilobitsPerSecond => StandardUnit::KilobitsSecond,
        Unit::BitsPerSecond => StandardUnit::BitsSecond,
        Unit::CountPerSecond => StandardUnit::CountSecond,
    })
}

/// The SDK's item for `datum`, stamped with `timestamp`.
pub(crate) fn to_sdk(datum: &Datum, timestamp: DateTime, storage_resolution: i32) -> MetricDatum {
    let dimensions = datum
        .dimensions
        .iter()
        .map(|(name, value)| Dimension::builder().name(name).value(value).build())
        .collect();
    let builder = MetricDatum::builder()
        .metric_name(&*datum.name)
        .set_dimensions(Some(dimensions))
        .timestamp(timestamp)
        .storage_resolution(storage_resolution)
        .set_unit(datum.unit.and_then(standard_unit));
    match &datum.value {
        Value::Single(v) => builder.value(*v),
        Value::Stats {
            count,
            sum,
            min,
            max,
        } => builder.statistic_values(
            StatisticSet::builder()
                .sample_count(*count)
                .sum(*sum)
                .minimum(*min)
                .maximum(*max)
                .build(),
        ),
        Value::Distribution(pairs) => builder
            .set_values(Some(pairs.iter().map(|(v, _)| *v).collect()))
            .set_counts(Some(pairs.iter().map(|(_, c)| *c).collect())),
    }
    .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datum(name: &str, value: Value) -> Datum {
        Datum {
            name: Arc::from(name),
            dimensions: Arc::from(vec![(
                "ShardId".to_owned(),
                "shardId-000000000000".to_owned(),
            )]),
            unit: Some(Unit::Count),
            value,
        }
    }

    #[test]
    fn normalising_values() {
        let cases: &[(f64, Option<f64>)] = &[
            (1.5, Some(1.5)),
            (-3.0, Some(-3.0)),
            (0.0, Some(0.0)),
            (1e-200, Some(0.0)),
            (1e100, Some(1e100)),
            (1e200, None),
            (-1e200, None),
            (f64::NAN, None),
            (f64::INFINITY, None),
            (f64::NEG_INFINITY, None),
        ];
        for (input, want) in cases {
            assert_eq!(normalise(*input), *want, "{input}");
        }
        assert_eq!(2f64.powi(360), MAX_MAGNITUDE);
        assert_eq!(2f64.powi(-360), MIN_MAGNITUDE);
    }

    #[test]
    fn rounding_keeps_three_significant_digits() {
        let cases: &[(f64, f64)] = &[
            (0.0, 0.0),
            (3.0, 3.0),
            (12.345, 12.3),
            (12.35001, 12.4),
            (999.6, 1000.0),
            (123_456.0, 123_000.0),
            (-0.012_345, -0.0123),
        ];
        for (input, want) in cases {
            let got = round_to_3_significant(*input);
            assert!(
                (got - want).abs() <= want.abs() * 1e-12,
                "{input}: {got} != {want}"
            );
        }
    }

    #[test]
    fn rounding_bounds_distinct_values_per_decade() {
        let distinct: std::collections::HashSet<u64> = (0..100_000)
            .map(|i| round_to_3_significant(10.0 + i as f64 * 0.0009).to_bits())
            .collect();
        // 100..=999 times 0.1, and 100 itself where the last inputs round up.
        assert!(distinct.len() <= 901, "{}", distinct.len());
    }

    #[test]
    fn requests_respect_the_item_limit() {
        let cases: &[(usize, &[usize])] = &[
            (0, &[]),
            (1, &[1]),
            (1_000, &[1_000]),
            (1_001, &[1_000, 1]),
            (2_500, &[1_000, 1_000, 500]),
        ];
        for (n, want) in cases {
            let data = (0..*n)
                .map(|i| datum("RecordsProcessed", Value::Single(i as f64)))
                .collect();
            let sizes: Vec<_> = requests(data).iter().map(Vec::len).collect();
            assert_eq!(sizes, *want, "{n} items");
        }
    }

    #[test]
    fn requests_respect_the_size_limit() {
        // Full distributions with 30 long dimensions: about 14 KB each by the estimate.
        let dims: Vec<_> = (0..MAX_DIMENSIONS)
            .map(|i| (format!("d{i}"), "v".repeat(100)))
            .collect();
        let big = Datum {
            name: Arc::from("RecordProcessor.processRecords"),
            dimensions: Arc::from(dims),
            unit: Some(Unit::Milliseconds),
            value: Value::Distribution((0..150).map(|i| (i as f64, 1.0)).collect()),
        };
        let data = vec![big; 300];
        let batches = requests(data);
        assert!(batches.len() > 1);
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 300);
        for batch in &batches {
            let bytes: usize = batch.iter().map(estimated_size).sum();
            assert!(bytes <= MAX_REQUEST_BYTES, "{bytes}");
            assert!(batch.len() <= MAX_DATA_PER_REQUEST);
        }
    }

    #[test]
    fn distributions_are_split_at_150_values() {
        let name: Arc<str> = Arc::from("LeaseStore.Time");
        let dims: Arc<[(String, String)]> = Arc::from(Vec::new());
        let values: Vec<_> = (0..301).map(|i| (i as f64, 2.0)).collect();
        let data = distribution_data(&name, &dims, Some(Unit::Milliseconds), &values);
        let lens: Vec<_> = data
            .iter()
            .map(|d| match &d.value {
                Value::Distribution(v) => v.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(lens, [150, 150, 1]);
    }

    #[test]
    fn sdk_items_carry_every_field() {
        let ts = DateTime::from_secs(1_700_000_000);
        let single = to_sdk(&datum("RecordsProcessed", Value::Single(7.0)), ts, 60);
        assert_eq!(single.metric_name(), Some("RecordsProcessed"));
        assert_eq!(single.value(), Some(7.0));
        assert_eq!(single.unit(), Some(&StandardUnit::Count));
        assert_eq!(single.storage_resolution(), Some(60));
        assert_eq!(single.dimensions()[0].name(), Some("ShardId"));

        let stats = to_sdk(
            &datum(
                "MillisBehindLatest",
                Value::Stats {
                    count: 2.0,
                    sum: 30.0,
                    min: 10.0,
                    max: 20.0,
                },
            ),
            ts,
            1,
        );
        let set = stats.statistic_values().unwrap();
        assert_eq!((set.sample_count(), set.maximum()), (Some(2.0), Some(20.0)));

        let dist = to_sdk(
            &datum("x", Value::Distribution(vec![(1.0, 3.0), (2.0, 4.0)])),
            ts,
            60,
        );
        assert_eq!(dist.values(), [1.0, 2.0]);
        assert_eq!(dist.counts(), [3.0, 4.0]);
    }
}
