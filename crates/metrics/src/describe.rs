//! Registering units and descriptions with whatever recorder the application installed.

use metrics::SharedString;

use crate::metric::{Metric, MetricKind};
use crate::names::MetricNames;

/// Registers the unit and description of every metric with the current recorder (the global
/// one, or a local one set with [`metrics::with_local_recorder`]). Exporters use them for
/// `# HELP` lines (Prometheus) and units (CloudWatch). Call it once, after installing a
/// recorder; without one it does nothing.
///
/// ```
/// use shardwise_metrics::{describe, MetricNames};
///
/// let names = MetricNames::new("orders")?;
/// describe(&names);
/// # Ok::<(), shardwise_metrics::Error>(())
/// ```
pub fn describe(names: &MetricNames) {
    metrics::with_recorder(|recorder| {
        for metric in Metric::ALL {
            let key = names.key_name(metric);
            let unit = Some(metric.unit());
            let description = SharedString::const_str(metric.description());
            match metric.kind() {
                MetricKind::Counter => recorder.describe_counter(key, unit, description),
                MetricKind::Gauge => recorder.describe_gauge(key, unit, description),
                MetricKind::Histogram => recorder.describe_histogram(key, unit, description),
            }
        }
    });
}
