//! CloudWatch: a [`metrics::Recorder`] that aggregates in memory and publishes with
//! `PutMetricData`.
//!
//! # How it works
//!
//! - Recording never waits on the network. Counters are atomic adds; gauges and histograms take
//!   a short lock of their own series that the publisher holds only to swap the aggregate out.
//! - Every `flush_interval` the collector swaps all aggregates out: counters publish their
//!   increase, gauges the statistics (count, sum, min, max) of the values set during the interval
//!   (or their standing value), histograms their distinct values with counts (rounded to three
//!   significant digits, so CloudWatch can compute percentiles) in items of at most 150 values.
//! - Data are cut into requests within CloudWatch's `PutMetricData` limits (1,000 items,
//!   1 MB, 30 dimensions per metric, 150 values per item, values within ±2^360) and queued
//!   for a sender task. The queue holds `max_buffered_requests`; when CloudWatch is slow or
//!   failing, further requests are dropped and counted in [`CloudWatchStats`], never waited on.
//! - Memory is bounded: at most `max_series` series and `max_values_per_series` distinct
//!   histogram values per series per interval; the excess is counted, not kept.
//! - Series nobody holds a handle to and that saw nothing during an interval are forgotten.
//! - Metric names are the KCL's (`RecordsProcessed`, `MillisBehindLatest`, ...), labels become
//!   the KCL's dimensions (`StreamId`, `ShardId`, `WorkerIdentifier`, `Operation`); metrics that
//!   are not shardwise's keep their own names and label keys.
//!
//! # Why not `metrics_cloudwatch`
//!
//! The crate `metrics_cloudwatch` (5.0, `metrics` 0.24, `aws-sdk-cloudwatch` 1) is maintained
//! and was evaluated first. It does not fit: every recorded value travels through a channel to
//! one aggregating task, so the hot path pays a channel send per increment and a full channel
//! silently discards values without counting them; it exposes no counters of what it dropped
//! or failed to send; shutdown and flushing are driven by a future and a stream rather than an
//! awaitable handle; it logs with `log` instead of `tracing`; and it would not map our names
//! and labels to the KCL's. This module is written for shardwise instead.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use shardwise_metrics::cloudwatch::{self, CloudWatchConfig};
//! use shardwise_metrics::{describe, MetricNames};
//!
//! # async fn run(client: aws_sdk_cloudwatch::Client) -> Result<(), shardwise_metrics::Error> {
//! // `client` comes from the application's `aws_config::load_defaults(..)`.
//! let config = CloudWatchConfig::builder("orders-consumer")
//!     .flush_interval(Duration::from_secs(30))
//!     .build()?;
//! let exporter = cloudwatch::install(client, config)?;
//! describe(&MetricNames::default());
//!
//! // ... run the worker ...
//!
//! let stats = tokio::time::timeout(Duration::from_secs(10), exporter.shutdown()).await;
//! # let _ = stats;
//! # Ok(()) }
//! ```

mod batch;
mod publisher;
mod registry;
mod stats;

use std::sync::Arc;
use std::time::Duration;

pub use batch::{
    MAX_DATA_PER_REQUEST, MAX_DIMENSION_VALUE_LEN, MAX_DIMENSIONS, MAX_NAME_LEN, MAX_REQUEST_BYTES,
    MAX_VALUES_PER_DATUM,
};
pub use publisher::CloudWatchHandle;
pub use registry::CloudWatchRecorder;
pub use stats::CloudWatchStats;

use crate::Error;
use crate::names::MetricNames;

/// Settings of the CloudWatch exporter, made with [`CloudWatchConfig::builder`].
#[derive(Debug, Clone)]
pub struct CloudWatchConfig {
    namespace: String,
    names: MetricNames,
    flush_interval: Duration,
    high_resolution: bool,
    request_timeout: Duration,
    max_buffered_requests: usize,
    max_series: usize,
    max_values_per_series: usize,
}

impl CloudWatchConfig {
    /// Starts a configuration publishing into `namespace` (the KCL uses the application name).
    ///
    /// Defaults: flush every 30 s, standard (one-minute) resolution, 10 s per request, 20
    /// requests buffered, 10,000 series, 1,000 distinct histogram values per series per interval,
    /// names with the default prefix.
    pub fn builder(namespace: impl Into<String>) -> CloudWatchConfigBuilder {
        CloudWatchConfigBuilder {
            config: CloudWatchConfig {
                namespace: namespace.into(),
                names: MetricNames::default(),
                flush_interval: Duration::from_secs(30),
                high_resolution: false,
                request_timeout: Duration::from_secs(10),
                max_buffered_requests: 20,
                max_series: 10_000,
                max_values_per_series: 1_000,
            },
        }
    }

    /// The CloudWatch namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// How often data are published.
    pub fn flush_interval(&self) -> Duration {
        self.flush_interval
    }
}

/// Builds a [`CloudWatchConfig`].
#[derive(Debug, Clone)]
pub struct CloudWatchConfigBuilder {
    config: CloudWatchConfig,
}

impl CloudWatchConfigBuilder {
    /// The names the facade records under (the same [`MetricNames`] it was given), so they can
    /// be mapped back to the KCL's names.
    pub fn names(mut self, names: MetricNames) -> Self {
        self.config.names = names;
        self
    }

    /// How often to publish (at least 1 s).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.config.flush_interval = interval;
        self
    }

    /// Publish with one-second storage resolution (high-resolution metrics, charged more).
    pub fn high_resolution(mut self, enabled: bool) -> Self {
        self.config.high_resolution = enabled;
        self
    }

    /// How long one `PutMetricData` request may take, the SDK's retries included.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// How many requests may wait for the sender before new ones are dropped (at least 1).
    pub fn max_buffered_requests(mut self, n: usize) -> Self {
        self.config.max_buffered_requests = n;
        self
    }

    /// How many series are kept (at least 1); further series are not recorded.
    pub fn max_series(mut self, n: usize) -> Self {
        self.config.max_series = n;
        self
    }

    /// How many distinct values a histogram keeps per interval (at least 1).
    pub fn max_values_per_series(mut self, n: usize) -> Self {
        self.config.max_values_per_series = n;
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<CloudWatchConfig, Error> {
        let c = self.config;
        let invalid = |why: String| Err(Error::InvalidConfig(why));
        let ns = &c.namespace;
        if ns.trim().is_empty() || ns.len() > 255 {
            return invalid(format!(
                "CloudWatch namespace {ns:?} must have 1 to 255 characters"
            ));
        }
        if ns.starts_with("AWS/") {
            return invalid(format!(
                "CloudWatch namespace {ns:?} must not start with \"AWS/\""
            ));
        }
        if ns.chars().any(|ch| ch.is_control()) {
            return invalid(format!(
                "CloudWatch namespace {ns:?} contains control characters"
            ));
        }
        if c.flush_interval < Duration::from_secs(1) {
            return invalid("the flush interval must be at least 1 s".to_owned());
        }
        if c.request_timeout.is_zero() {
            return invalid("the request timeout must be positive".to_owned());
        }
        if c.max_buffered_requests == 0 || c.max_series == 0 || c.max_values_per_series == 0 {
            return invalid(
                "max_buffered_requests, max_series and max_values_per_series must be positive"
                    .to_owned(),
            );
        }
        Ok(c)
    }
}

/// Makes the recorder and starts publishing on the current Tokio runtime. The recorder is not
/// installed: install it with [`metrics::set_global_recorder`], possibly after wrapping it.
///
/// # Errors
///
/// [`Error::NoRuntime`] outside a Tokio runtime.
pub fn build(
    client: aws_sdk_cloudwatch::Client,
    config: CloudWatchConfig,
) -> Result<(CloudWatchRecorder, CloudWatchHandle), Error> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
    let counters = Arc::new(stats::Counters::default());
    let registry = Arc::new(registry::Registry::new(
        config.names,
        registry::RegistryLimits {
            max_series: config.max_series,
            max_values_per_series: config.max_values_per_series,
        },
        Arc::clone(&counters),
    ));
    let handle = publisher::spawn(
        &runtime,
        client,
        Arc::clone(&registry),
        counters,
        publisher::Settings {
            namespace: config.namespace,
            flush_interval: config.flush_interval,
            storage_resolution: if config.high_resolution { 1 } else { 60 },
            request_timeout: config.request_timeout,
            max_buffered_requests: config.max_buffered_requests,
        },
    );
    Ok((CloudWatchRecorder { registry }, handle))
}

/// [`build`], then installs the recorder as the global one.
///
/// # Errors
///
/// [`Error::NoRuntime`] outside a Tokio runtime; [`Error::RecorderAlreadyInstalled`] when a
/// global recorder exists (the exporter is stopped again).
pub fn install(
    client: aws_sdk_cloudwatch::Client,
    config: CloudWatchConfig,
) -> Result<CloudWatchHandle, Error> {
    let (recorder, handle) = build(client, config)?;
    metrics::set_global_recorder(recorder).map_err(|_| Error::RecorderAlreadyInstalled)?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused() {
        let ok = || CloudWatchConfig::builder("app");
        let bad = [
            CloudWatchConfig::builder(""),
            CloudWatchConfig::builder("  "),
            CloudWatchConfig::builder("AWS/Kinesis"),
            CloudWatchConfig::builder("a".repeat(256)),
            CloudWatchConfig::builder("a\nb"),
            ok().flush_interval(Duration::from_millis(10)),
            ok().request_timeout(Duration::ZERO),
            ok().max_buffered_requests(0),
            ok().max_series(0),
            ok().max_values_per_series(0),
        ];
        for builder in bad {
            let shown = format!("{builder:?}");
            assert!(builder.build().is_err(), "{shown}");
        }
        let config = ok().build().unwrap();
        assert_eq!(config.namespace(), "app");
        assert_eq!(config.flush_interval(), Duration::from_secs(30));
    }
}
