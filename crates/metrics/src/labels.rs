//! Label keys, the metrics level, and the label sets each level attaches.

use std::fmt;
use std::str::FromStr;

use metrics::Label;

/// Label key: the stream name.
pub const STREAM: &str = "stream";
/// Label key: the shard id.
pub const SHARD: &str = "shard";
/// Label key: the worker id.
pub const WORKER: &str = "worker";
/// Label key: the lease-store operation (one of the [`operation`](crate::operation) names).
pub const OPERATION: &str = "operation";

/// How much detail the library's metrics carry, as in the KCL's `MetricsLevel`.
///
/// Per-shard labels multiply series by the shard count; on large streams choose
/// [`Summary`](Self::Summary). The default is [`Detailed`](Self::Detailed), like the KCL's.
///
/// ```
/// use shardwise_metrics::MetricsLevel;
///
/// let level: MetricsLevel = "summary".parse()?;
/// assert_eq!(level, MetricsLevel::Summary);
/// assert_eq!(level.to_string(), "summary");
/// # Ok::<(), shardwise_metrics::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum MetricsLevel {
    /// The library records no metrics at all.
    None,
    /// Per-stream and per-worker series: the `shard` label is left off, so shards of one stream
    /// on one worker add up into one series.
    Summary,
    /// Every label, including `shard`.
    #[default]
    Detailed,
}

impl MetricsLevel {
    /// Whether anything is recorded at this level.
    pub fn is_enabled(self) -> bool {
        self != MetricsLevel::None
    }

    /// The lower-case name: `none`, `summary` or `detailed`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricsLevel::None => "none",
            MetricsLevel::Summary => "summary",
            MetricsLevel::Detailed => "detailed",
        }
    }
}

impl fmt::Display for MetricsLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MetricsLevel {
    type Err = crate::Error;

    /// Parses `none`, `summary` or `detailed`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(MetricsLevel::None),
            "summary" => Ok(MetricsLevel::Summary),
            "detailed" => Ok(MetricsLevel::Detailed),
            _ => Err(crate::Error::InvalidConfig(format!(
                "unknown metrics level {s:?}: expected none, summary or detailed"
            ))),
        }
    }
}

/// Which labels a metric is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// stream, shard, worker
    Shard,
    /// worker
    Worker,
    /// worker, operation
    Operation,
}

impl Scope {
    pub(crate) fn label_keys(self) -> &'static [&'static str] {
        match self {
            Scope::Shard => &[STREAM, SHARD, WORKER],
            Scope::Worker => &[WORKER],
            Scope::Operation => &[WORKER, OPERATION],
        }
    }
}

/// The labels to attach to one series at a given [`MetricsLevel`]. Pure: no recorder is touched.
///
/// Each constructor returns `None` at [`MetricsLevel::None`]: record nothing then.
///
/// ```
/// use shardwise_metrics::{Labels, MetricsLevel};
///
/// let detailed = Labels::for_shard(MetricsLevel::Detailed, "orders", "shardId-000000000001", "w-1").unwrap();
/// assert_eq!(detailed.get("shard"), Some("shardId-000000000001"));
///
/// let summary = Labels::for_shard(MetricsLevel::Summary, "orders", "shardId-000000000001", "w-1").unwrap();
/// assert_eq!(summary.get("shard"), None);
/// assert_eq!(summary.get("stream"), Some("orders"));
///
/// assert!(Labels::for_shard(MetricsLevel::None, "orders", "shardId-000000000001", "w-1").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Labels for a per-shard metric: `stream`, `shard`, `worker` when detailed; `stream`,
    /// `worker` at summary.
    pub fn for_shard(
        level: MetricsLevel,
        stream: &str,
        shard: &str,
        worker: &str,
    ) -> Option<Labels> {
        match level {
            MetricsLevel::None => None,
            MetricsLevel::Summary => {
                Some(Labels::from_pairs(&[(STREAM, stream), (WORKER, worker)]))
            }
            MetricsLevel::Detailed => Some(Labels::from_pairs(&[
                (STREAM, stream),
                (SHARD, shard),
                (WORKER, worker),
            ])),
        }
    }

    /// Labels for a per-worker metric (lease counts): `worker` at summary and detailed.
    pub fn for_worker(level: MetricsLevel, worker: &str) -> Option<Labels> {
        level
            .is_enabled()
            .then(|| Labels::from_pairs(&[(WORKER, worker)]))
    }

    /// Labels for a lease-store call: `worker` and `operation` at summary and detailed.
    pub fn for_operation(level: MetricsLevel, worker: &str, operation: &str) -> Option<Labels> {
        level
            .is_enabled()
            .then(|| Labels::from_pairs(&[(WORKER, worker), (OPERATION, operation)]))
    }

    fn from_pairs(pairs: &[(&'static str, &str)]) -> Labels {
        Labels(
            pairs
                .iter()
                .map(|(key, value)| Label::new(*key, (*value).to_owned()))
                .collect(),
        )
    }

    /// The value of label `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|l| l.key() == key).map(Label::value)
    }

    /// The labels, in a fixed order (stream, shard, worker, operation).
    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// The labels as `(key, value)` pairs.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|l| (l.key(), l.value()))
    }

    /// The labels, to build a [`metrics::Key`] with.
    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Pairs = &'static [(&'static str, &'static str)];

    fn pairs(labels: Option<Labels>) -> Option<Vec<(String, String)>> {
        labels.map(|l| {
            l.pairs()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
    }

    fn expected(p: Option<Pairs>) -> Option<Vec<(String, String)>> {
        p.map(|p| {
            p.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        })
    }

    #[test]
    fn shard_labels_by_level() {
        let cases: &[(MetricsLevel, Option<Pairs>)] = &[
            (MetricsLevel::None, None),
            (
                MetricsLevel::Summary,
                Some(&[("stream", "s"), ("worker", "w")]),
            ),
            (
                MetricsLevel::Detailed,
                Some(&[("stream", "s"), ("shard", "shardId-1"), ("worker", "w")]),
            ),
        ];
        for (level, want) in cases {
            assert_eq!(
                pairs(Labels::for_shard(*level, "s", "shardId-1", "w")),
                expected(*want),
                "{level}"
            );
        }
    }

    #[test]
    fn worker_labels_by_level() {
        let cases: &[(MetricsLevel, Option<Pairs>)] = &[
            (MetricsLevel::None, None),
            (MetricsLevel::Summary, Some(&[("worker", "w")])),
            (MetricsLevel::Detailed, Some(&[("worker", "w")])),
        ];
        for (level, want) in cases {
            assert_eq!(
                pairs(Labels::for_worker(*level, "w")),
                expected(*want),
                "{level}"
            );
        }
    }

    #[test]
    fn operation_labels_by_level() {
        let cases: &[(MetricsLevel, Option<Pairs>)] = &[
            (MetricsLevel::None, None),
            (
                MetricsLevel::Summary,
                Some(&[("worker", "w"), ("operation", "RenewLease")]),
            ),
            (
                MetricsLevel::Detailed,
                Some(&[("worker", "w"), ("operation", "RenewLease")]),
            ),
        ];
        for (level, want) in cases {
            assert_eq!(
                pairs(Labels::for_operation(*level, "w", "RenewLease")),
                expected(*want),
                "{level}"
            );
        }
    }

    #[test]
    fn detailed_labels_are_the_scope_keys() {
        for scope in [Scope::Shard, Scope::Worker, Scope::Operation] {
            let labels = match scope {
                Scope::Shard => Labels::for_shard(MetricsLevel::Detailed, "s", "h", "w"),
                Scope::Worker => Labels::for_worker(MetricsLevel::Detailed, "w"),
                Scope::Operation => Labels::for_operation(MetricsLevel::Detailed, "w", "o"),
            };
            let keys: Vec<_> = labels
                .iter()
                .flat_map(|l| l.pairs().map(|(k, _)| k.to_owned()))
                .collect();
            assert_eq!(keys, scope.label_keys(), "{scope:?}");
        }
    }

    #[test]
    fn levels_parse_and_print() {
        for level in [
            MetricsLevel::None,
            MetricsLevel::Summary,
            MetricsLevel::Detailed,
        ] {
            assert_eq!(level.as_str().parse::<MetricsLevel>().ok(), Some(level));
            assert_eq!(
                level.as_str().to_uppercase().parse::<MetricsLevel>().ok(),
                Some(level)
            );
        }
        assert!("verbose".parse::<MetricsLevel>().is_err());
        assert_eq!(MetricsLevel::default(), MetricsLevel::Detailed);
    }
}
