//! Prometheus: serve `/metrics` over HTTP with `metrics-exporter-prometheus`.
//!
//! Only the exporter's HTTP listener is compiled (no push gateway, so no HTTP client or TLS
//! stack). The listener answers every path, `/metrics` included. It binds
//! [`DEFAULT_LISTEN`] (loopback) unless told otherwise: exposing metrics beyond the host is a
//! choice the application makes by configuring an address.
//!
//! ```no_run
//! use shardwise_metrics::prometheus::{self, PrometheusConfig};
//! use shardwise_metrics::{describe, MetricNames};
//!
//! # async fn run() -> Result<(), shardwise_metrics::Error> {
//! let config = PrometheusConfig::builder().listen(([0, 0, 0, 0], 9464)).build()?;
//! let handle = prometheus::install(&config)?;
//! describe(&MetricNames::default());
//! println!("{}", handle.render());
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use metrics_util::MetricKindMask;

use crate::Error;

/// Where the listener binds by default: loopback, the port registered for the OpenTelemetry
/// Prometheus exporter.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

/// Default histogram bucket bounds, in milliseconds, for every metric whose name ends in
/// `_milliseconds`.
pub const DEFAULT_BUCKETS_MS: [f64; 15] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0,
    30_000.0, 60_000.0,
];

/// Settings of the Prometheus exporter. Made with [`PrometheusConfig::builder`]; the default
/// listens on [`DEFAULT_LISTEN`].
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusConfig {
    listen: SocketAddr,
    buckets_ms: Vec<f64>,
    idle_timeout: Option<Duration>,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            listen: DEFAULT_LISTEN,
            buckets_ms: DEFAULT_BUCKETS_MS.to_vec(),
            idle_timeout: None,
        }
    }
}

impl PrometheusConfig {
    /// Starts from the defaults.
    pub fn builder() -> PrometheusConfigBuilder {
        PrometheusConfigBuilder {
            config: PrometheusConfig::default(),
        }
    }

    /// The address the listener binds.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The histogram bucket bounds, in milliseconds.
    pub fn buckets_ms(&self) -> &[f64] {
        &self.buckets_ms
    }

    /// How long a series may go without updates before it is removed, if ever.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }
}

/// Builds a [`PrometheusConfig`].
#[derive(Debug, Clone)]
pub struct PrometheusConfigBuilder {
    config: PrometheusConfig,
}

impl PrometheusConfigBuilder {
    /// The address to serve on; port 0 is refused because the bound port could not be learned.
    pub fn listen(mut self, addr: impl Into<SocketAddr>) -> Self {
        self.config.listen = addr.into();
        self
    }

    /// Histogram bucket bounds in milliseconds: finite, strictly increasing, at least one.
    pub fn buckets_ms(mut self, bounds: &[f64]) -> Self {
        self.config.buckets_ms = bounds.to_vec();
        self
    }

    /// Removes series not updated for this long (for example per-shard gauges of shards this
    /// worker no longer holds). `None`, the default, keeps every series.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<PrometheusConfig, Error> {
        let config = self.config;
        if config.listen.port() == 0 {
            return Err(Error::InvalidConfig(
                "the Prometheus listen port must not be 0".to_owned(),
            ));
        }
        let b = &config.buckets_ms;
        if b.is_empty() || b.iter().any(|v| !v.is_finite()) || b.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::InvalidConfig(format!(
                "histogram buckets must be finite and strictly increasing, got {b:?}"
            )));
        }
        if config.idle_timeout == Some(Duration::ZERO) {
            return Err(Error::InvalidConfig(
                "the idle timeout must be positive".to_owned(),
            ));
        }
        Ok(config)
    }
}

/// The exporter's builder with `config` applied, for applications that compose recorders
/// themselves (layers, fan-out). [`install`] covers the usual case.
pub fn builder(config: &PrometheusConfig) -> Result<PrometheusBuilder, Error> {
    let builder = PrometheusBuilder::new()
        .with_http_listener(config.listen)
        .set_buckets_for_metric(
            Matcher::Suffix("_milliseconds".to_owned()),
            &config.buckets_ms,
        )?;
    Ok(match config.idle_timeout {
        Some(timeout) => builder.idle_timeout(MetricKindMask::ALL, Some(timeout)),
        None => builder,
    })
}

/// Binds the listener, starts serving on the current Tokio runtime and installs the exporter
/// as the global recorder. Returns a handle that renders the exposition text directly.
///
/// Call it from inside a Tokio runtime, once, at start-up.
///
/// # Errors
///
/// [`Error::NoRuntime`] outside a Tokio runtime, [`Error::Prometheus`] when the address cannot
/// be bound, [`Error::RecorderAlreadyInstalled`] when a global recorder exists (then nothing
/// keeps serving).
pub fn install(config: &PrometheusConfig) -> Result<PrometheusHandle, Error> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
    let (recorder, exporter) = {
        let _entered = runtime.enter();
        builder(config)?.build()?
    };
    let handle = recorder.handle();
    let listen = config.listen;
    let serving = runtime.spawn(async move {
        if let Err(e) = exporter.await {
            tracing::warn!(%listen, error = ?e, "the Prometheus listener stopped");
        }
    });
    if metrics::set_global_recorder(recorder).is_err() {
        serving.abort();
        return Err(Error::RecorderAlreadyInstalled);
    }
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_loopback() {
        let config = PrometheusConfig::builder().build().unwrap();
        assert!(config.listen().ip().is_loopback());
        assert_eq!(config.listen().port(), 9464);
        assert_eq!(config.idle_timeout(), None);
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = [
            PrometheusConfig::builder().listen(([127, 0, 0, 1], 0)),
            PrometheusConfig::builder().buckets_ms(&[]),
            PrometheusConfig::builder().buckets_ms(&[1.0, 1.0]),
            PrometheusConfig::builder().buckets_ms(&[5.0, 1.0]),
            PrometheusConfig::builder().buckets_ms(&[1.0, f64::INFINITY]),
            PrometheusConfig::builder().idle_timeout(Some(Duration::ZERO)),
        ];
        for builder in bad {
            let shown = format!("{builder:?}");
            assert!(builder.build().is_err(), "{shown}");
        }
    }
}
