//! The recording side: a `metrics::Recorder` that aggregates in memory. Recording is an atomic
//! add (counters) or a short, uncontended lock that never spans I/O (gauges, histograms); the
//! publisher only swaps aggregates out. Everything is bounded: series by `max_series`, the
//! distinct values of a histogram per interval by `max_values_per_series`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

use super::batch::{
    self, Datum, MAX_DIMENSION_VALUE_LEN, MAX_DIMENSIONS, MAX_NAME_LEN, Value, normalise,
};
use super::stats::Counters;
use crate::labels::{OPERATION, SHARD, STREAM, WORKER};
use crate::names::MetricNames;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain numbers behind, still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The CloudWatch dimension name for a label key: the KCL's names for ours.
pub(crate) fn dimension_name(label: &str) -> &str {
    match label {
        STREAM => "StreamId",
        SHARD => "ShardId",
        WORKER => "WorkerIdentifier",
        OPERATION => "Operation",
        other => other,
    }
}

struct CounterCell {
    total: AtomicU64,
    published: AtomicU64,
}

impl CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        self.total.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.total.fetch_max(value, Ordering::Relaxed);
    }
}

impl CounterCell {
    fn take_increase(&self) -> u64 {
        let total = self.total.load(Ordering::Relaxed);
        let before = self.published.swap(total, Ordering::Relaxed);
        total.wrapping_sub(before)
    }
}

#[derive(Default)]
struct GaugeState {
    current: f64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

struct GaugeCell {
    state: Mutex<GaugeState>,
    counters: Arc<Counters>,
}

impl GaugeCell {
    fn update(&self, f: impl FnOnce(f64) -> f64) {
        let mut s = lock(&self.state);
        let Some(value) = normalise(f(s.current)) else {
            drop(s);
            self.counters
                .rejected_values
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        s.current = value;
        if s.count == 0 {
            s.min = value;
            s.max = value;
            s.sum = 0.0;
        }
        s.count += 1;
        s.sum += value;
        s.min = s.min.min(value);
        s.max = s.max.max(value);
    }

    /// The interval's statistics, or the standing value when nobody set it; `true` when it was set.
    fn take(&self) -> (Value, bool) {
        let mut s = lock(&self.state);
        if s.count == 0 {
            return (Value::Single(s.current), false);
        }
        let value = match normalise(s.sum) {
            Some(sum) => Value::Stats {
                count: s.count as f64,
                sum,
                min: s.min,
                max: s.max,
            },
            None => Value::Single(s.current),
        };
        s.count = 0;
        (value, true)
    }
}

impl GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

struct HistogramCell {
    // f64 bits of a rounded value -> how often it was seen this interval.
    values: Mutex<HashMap<u64, u64>>,
    max_values: usize,
    counters: Arc<Counters>,
}

impl HistogramCell {
    fn add(&self, value: f64, count: u64) {
        let Some(value) = normalise(value) else {
            self.counters
                .rejected_values
                .fetch_add(count, Ordering::Relaxed);
            return;
        };
        // -0.0 and 0.0 are one value.
        let rounded = batch::round_to_3_significant(value) + 0.0;
        let mut values = lock(&self.values);
        let len = values.len();
        match values.entry(rounded.to_bits()) {
            Entry::Occupied(mut e) => *e.get_mut() += count,
            Entry::Vacant(e) if len < self.max_values => {
                e.insert(count);
            }
            Entry::Vacant(_) => {
                drop(values);
                self.counters
                    .dropped_samples
                    .fetch_add(count, Ordering::Relaxed);
            }
        }
    }

    fn take(&self) -> Vec<(f64, f64)> {
        let values = std::mem::take(&mut *lock(&self.values));
        let mut pairs: Vec<_> = values
            .into_iter()
            .map(|(bits, count)| (f64::from_bits(bits), count as f64))
            .collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        pairs
    }
}

impl HistogramFn for HistogramCell {
    fn record(&self, value: f64) {
        self.add(value, 1);
    }

    fn record_many(&self, value: f64, count: usize) {
        self.add(value, count as u64);
    }
}

enum Cell {
    Counter(Arc<CounterCell>),
    Gauge(Arc<GaugeCell>),
    Histogram(Arc<HistogramCell>),
}

impl Cell {
    /// Whether a handle outside the registry still points at the cell.
    fn has_handles(&self) -> bool {
        match self {
            Cell::Counter(c) => Arc::strong_count(c) > 1,
            Cell::Gauge(g) => Arc::strong_count(g) > 1,
            Cell::Histogram(h) => Arc::strong_count(h) > 1,
        }
    }
}

struct Series {
    name: Arc<str>,
    dimensions: Arc<[(String, String)]>,
    table_unit: Option<Unit>,
    cell: Cell,
}

impl Series {
    /// Appends this interval's data; `true` when anything was recorded this interval.
    fn take(&self, unit: Option<Unit>, out: &mut Vec<Datum>) -> bool {
        let datum = |value| Datum {
            name: Arc::clone(&self.name),
            dimensions: Arc::clone(&self.dimensions),
            unit,
            value,
        };
        match &self.cell {
            Cell::Counter(c) => {
                let increase = c.take_increase();
                out.push(datum(Value::Single(increase as f64)));
                increase > 0
            }
            Cell::Gauge(g) => {
                let (value, updated) = g.take();
                out.push(datum(value));
                updated
            }
            Cell::Histogram(h) => {
                let values = h.take();
                out.extend(batch::distribution_data(
                    &self.name,
                    &self.dimensions,
                    unit,
                    &values,
                ));
                !values.is_empty()
            }
        }
    }
}

/// Limits on what the registry keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RegistryLimits {
    pub(crate) max_series: usize,
    pub(crate) max_values_per_series: usize,
}

pub(crate) struct Registry {
    series: RwLock<HashMap<Key, Arc<Series>>>,
    units: RwLock<HashMap<String, Unit>>,
    names: MetricNames,
    limits: RegistryLimits,
    counters: Arc<Counters>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Registry {
    pub(crate) fn new(names: MetricNames, limits: RegistryLimits, counters: Arc<Counters>) -> Self {
        Registry {
            series: RwLock::new(HashMap::new()),
            units: RwLock::new(HashMap::new()),
            names,
            limits,
            counters,
        }
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>) {
        if let Some(unit) = unit {
            self.units
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.as_str().to_owned(), unit);
        }
    }

    fn cell(&self, key: &Key, kind: Kind) -> Option<Arc<Series>> {
        let found = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned();
        let series = match found {
            Some(series) => series,
            None => {
                let mut map = self.series.write().unwrap_or_else(PoisonError::into_inner);
                match map.get(key) {
                    Some(series) => Arc::clone(series),
                    None if map.len() >= self.limits.max_series => {
                        self.counters
                            .rejected_series
                            .fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                    None => {
                        let series = Arc::new(self.new_series(key, kind)?);
                        map.insert(key.clone(), Arc::clone(&series));
                        series
                    }
                }
            }
        };
        let same_kind = matches!(
            (&series.cell, kind),
            (Cell::Counter(_), Kind::Counter)
                | (Cell::Gauge(_), Kind::Gauge)
                | (Cell::Histogram(_), Kind::Histogram)
        );
        if same_kind {
            Some(series)
        } else {
            self.counters
                .rejected_series
                .fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    fn new_series(&self, key: &Key, kind: Kind) -> Option<Series> {
        let metric = self.names.metric(key.name());
        let name = metric.map_or(key.name(), |m| m.kcl_name());
        let dimensions: Vec<(String, String)> = key
            .labels()
            // CloudWatch refuses empty dimension values; such a label says nothing anyway.
            .filter(|l| !l.value().is_empty())
            .map(|l| (dimension_name(l.key()).to_owned(), l.value().to_owned()))
            .collect();
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && dimensions.len() <= MAX_DIMENSIONS
            && dimensions.iter().all(|(k, v)| {
                !k.is_empty() && k.len() <= MAX_NAME_LEN && v.len() <= MAX_DIMENSION_VALUE_LEN
            });
        if !valid {
            self.counters
                .rejected_series
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                metric = key.name(),
                "metric not published to CloudWatch: name or dimensions exceed CloudWatch's limits"
            );
            return None;
        }
        let cell = match kind {
            Kind::Counter => Cell::Counter(Arc::new(CounterCell {
                total: AtomicU64::new(0),
                published: AtomicU64::new(0),
            })),
            Kind::Gauge => Cell::Gauge(Arc::new(GaugeCell {
                state: Mutex::new(GaugeState::default()),
                counters: Arc::clone(&self.counters),
            })),
            Kind::Histogram => Cell::Histogram(Arc::new(HistogramCell {
                values: Mutex::new(HashMap::new()),
                max_values: self.limits.max_values_per_series,
                counters: Arc::clone(&self.counters),
            })),
        };
        Some(Series {
            name: Arc::from(name),
            dimensions: Arc::from(dimensions),
            table_unit: metric.map(|m| m.unit()),
            cell,
        })
    }

    /// Swaps out everything recorded since the last call, and forgets series that nobody holds
    /// a handle to and that saw nothing this interval.
    pub(crate) fn collect(&self) -> Vec<Datum> {
        let units = self
            .units
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let unit_of =
            |key: &Key, series: &Series| units.get(key.name()).copied().or(series.table_unit);
        let mut out = Vec::new();
        let mut idle = Vec::new();
        {
            let map = self.series.read().unwrap_or_else(PoisonError::into_inner);
            out.reserve(map.len());
            for (key, series) in map.iter() {
                let active = series.take(unit_of(key, series), &mut out);
                if !active && !series.cell.has_handles() {
                    idle.push(key.clone());
                }
            }
        }
        if !idle.is_empty() {
            let mut map = self.series.write().unwrap_or_else(PoisonError::into_inner);
            for key in idle {
                // Checked again under the write lock: nobody can clone a handle meanwhile.
                if let Some(series) = map.get(&key)
                    && !series.cell.has_handles()
                {
                    // A handle dropped since the first pass may have recorded first.
                    let mut last = Vec::new();
                    if series.take(unit_of(&key, series), &mut last) {
                        out.extend(last);
                    }
                    map.remove(&key);
                }
            }
        }
        out
    }

    pub(crate) fn series_count(&self) -> usize {
        self.series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The CloudWatch exporter's [`Recorder`]: install it with [`metrics::set_global_recorder`] (or
/// let [`install`](super::install) do it), or wrap it in layers first.
#[derive(Clone)]
pub struct CloudWatchRecorder {
    pub(crate) registry: Arc<Registry>,
}

impl std::fmt::Debug for CloudWatchRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudWatchRecorder")
            .field("series", &self.registry.series_count())
            .finish_non_exhaustive()
    }
}

impl Recorder for CloudWatchRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.registry.describe(key, unit);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.registry.describe(key, unit);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.registry.describe(key, unit);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match self
            .registry
            .cell(key, Kind::Counter)
            .map(|s| match &s.cell {
                Cell::Counter(c) => Some(Arc::clone(c)),
                _ => None,
            }) {
            Some(Some(c)) => Counter::from_arc(c),
            _ => Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        match self.registry.cell(key, Kind::Gauge).map(|s| match &s.cell {
            Cell::Gauge(g) => Some(Arc::clone(g)),
            _ => None,
        }) {
            Some(Some(g)) => Gauge::from_arc(g),
            _ => Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match self
            .registry
            .cell(key, Kind::Histogram)
            .map(|s| match &s.cell {
                Cell::Histogram(h) => Some(Arc::clone(h)),
                _ => None,
            }) {
            Some(Some(h)) => Histogram::from_arc(h),
            _ => Histogram::noop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use metrics::Label;

    use super::*;
    use crate::Metric;

    fn recorder(max_series: usize, max_values: usize) -> (CloudWatchRecorder, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let registry = Registry::new(
            MetricNames::default(),
            RegistryLimits {
                max_series,
                max_values_per_series: max_values,
            },
            Arc::clone(&counters),
        );
        (
            CloudWatchRecorder {
                registry: Arc::new(registry),
            },
            counters,
        )
    }

    fn key(name: &str, labels: &[(&'static str, &'static str)]) -> Key {
        Key::from_parts(
            name.to_owned(),
            labels
                .iter()
                .map(|(k, v)| Label::new(*k, *v))
                .collect::<Vec<_>>(),
        )
    }

    static META: Metadata<'static> = Metadata::new("t", metrics::Level::INFO, None);

    fn by_name(data: &[Datum], name: &str) -> Vec<Value> {
        data.iter()
            .filter(|d| &*d.name == name)
            .map(|d| d.value.clone())
            .collect()
    }

    #[test]
    fn counters_publish_increases_under_kcl_names_and_dimensions() {
        let (r, _) = recorder(100, 100);
        let names = MetricNames::default();
        let k = key(
            names.name(Metric::RecordsProcessed),
            &[("stream", "s"), ("shard", "shardId-1"), ("worker", "w")],
        );
        let c = r.register_counter(&k, &META);
        c.increment(5);
        c.increment(2);
        let data = r.registry.collect();
        assert_eq!(by_name(&data, "RecordsProcessed"), [Value::Single(7.0)]);
        let d = &data[0];
        assert_eq!(d.unit, Some(Unit::Count));
        let dims: Vec<_> = d.dimensions.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(dims, ["StreamId", "ShardId", "WorkerIdentifier"]);
        c.increment(1);
        assert_eq!(
            by_name(&r.registry.collect(), "RecordsProcessed"),
            [Value::Single(1.0)]
        );
        // Still held: published as zero rather than forgotten.
        assert_eq!(
            by_name(&r.registry.collect(), "RecordsProcessed"),
            [Value::Single(0.0)]
        );
    }

    #[test]
    fn gauges_publish_statistics_then_their_standing_value() {
        let (r, _) = recorder(100, 100);
        let g = r.register_gauge(&key("shardwise_millis_behind_latest", &[]), &META);
        g.set(30.0);
        g.set(10.0);
        g.set(20.0);
        assert_eq!(
            by_name(&r.registry.collect(), "MillisBehindLatest"),
            [Value::Stats {
                count: 3.0,
                sum: 60.0,
                min: 10.0,
                max: 30.0
            }]
        );
        assert_eq!(
            by_name(&r.registry.collect(), "MillisBehindLatest"),
            [Value::Single(20.0)]
        );
    }

    #[test]
    fn histograms_publish_distributions_and_drop_beyond_the_cap() {
        let (r, counters) = recorder(100, 3);
        let h = r.register_histogram(&key("custom_ms", &[]), &META);
        for v in [1.0, 1.0, 2.0, 3.0, 4.0, 5.0, f64::NAN] {
            h.record(v);
        }
        assert_eq!(
            by_name(&r.registry.collect(), "custom_ms"),
            [Value::Distribution(vec![
                (1.0, 2.0),
                (2.0, 1.0),
                (3.0, 1.0)
            ])]
        );
        assert_eq!(counters.dropped_samples.load(Ordering::Relaxed), 2);
        assert_eq!(counters.rejected_values.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn series_beyond_the_cap_or_limits_are_refused_and_counted() {
        let (r, counters) = recorder(2, 10);
        r.register_counter(&key("a", &[]), &META).increment(1);
        r.register_counter(&key("b", &[]), &META).increment(1);
        r.register_counter(&key("c", &[]), &META).increment(1);
        r.register_gauge(&key("a", &[]), &META).set(1.0);
        let long = "x".repeat(256);
        r.register_counter(&Key::from_name(long), &META)
            .increment(1);
        assert_eq!(counters.rejected_series.load(Ordering::Relaxed), 3);
        assert_eq!(r.registry.series_count(), 2);
    }

    #[test]
    fn too_many_dimensions_are_refused() {
        let (r, counters) = recorder(100, 10);
        let labels: Vec<Label> = (0..31).map(|i| Label::new(format!("k{i}"), "v")).collect();
        r.register_counter(&Key::from_parts("many", labels), &META)
            .increment(1);
        assert_eq!(counters.rejected_series.load(Ordering::Relaxed), 1);
        assert_eq!(r.registry.series_count(), 0);
    }

    #[test]
    fn idle_series_without_handles_are_forgotten_after_publishing() {
        let (r, _) = recorder(100, 10);
        r.register_counter(&key("once", &[]), &META).increment(4);
        assert_eq!(by_name(&r.registry.collect(), "once"), [Value::Single(4.0)]);
        assert_eq!(r.registry.series_count(), 1);
        assert_eq!(by_name(&r.registry.collect(), "once"), [Value::Single(0.0)]);
        assert_eq!(r.registry.series_count(), 0);
    }

    #[test]
    fn described_units_win_for_foreign_metrics() {
        let (r, _) = recorder(100, 10);
        r.describe_histogram(KeyName::from("app_latency"), Some(Unit::Seconds), "".into());
        r.register_histogram(&key("app_latency", &[]), &META)
            .record(0.25);
        let data = r.registry.collect();
        assert_eq!(data[0].unit, Some(Unit::Seconds));
    }
}
