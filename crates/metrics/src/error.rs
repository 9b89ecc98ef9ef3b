//! The crate's error.

/// What can go wrong configuring or installing metrics. None of these is retryable: each is a
/// configuration or installation mistake that the same call would repeat.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The metric-name prefix is not usable in a Prometheus metric name.
    #[error("invalid metrics prefix {prefix:?}: {reason}")]
    InvalidPrefix {
        /// The prefix given.
        prefix: String,
        /// Why it was refused.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid metrics configuration: {0}")]
    InvalidConfig(String),
    /// An exporter that runs background tasks was built outside a Tokio runtime.
    #[error("no Tokio runtime: build and install exporters from inside a Tokio runtime")]
    NoRuntime,
    /// A global recorder was already installed.
    #[error("a global metrics recorder is already installed")]
    RecorderAlreadyInstalled,
    /// The Prometheus exporter could not be built (for example, its address is in use).
    #[cfg(feature = "prometheus")]
    #[error("prometheus exporter: {0}")]
    Prometheus(#[from] metrics_exporter_prometheus::BuildError),
    /// The CloudWatch exporter's background tasks have stopped.
    #[cfg(feature = "cloudwatch")]
    #[error("the CloudWatch exporter has stopped")]
    ExporterStopped,
}
