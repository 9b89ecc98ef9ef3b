//! The names the facade records under: `{prefix}_{base_name}`, built once.

use std::sync::Arc;

use metrics::{Key, KeyName};

use crate::Error;
use crate::metric::Metric;

/// The prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "shardwise";

/// The longest prefix accepted.
pub const MAX_PREFIX_LEN: usize = 64;

/// The names every metric is recorded under, for one prefix: `{prefix}_{base_name}`
/// (`shardwise_records_processed_total` by default), or the bare base name when the prefix is
/// empty. The same names reach every exporter; the CloudWatch exporter maps them back to the
/// KCL's names with [`MetricNames::metric`].
///
/// A prefix is empty, or an ASCII letter or `_` followed by ASCII letters, digits and `_`, at
/// most [`MAX_PREFIX_LEN`] long, so every name is a valid Prometheus metric name.
///
/// ```
/// use shardwise_metrics::{Metric, MetricNames};
///
/// let names = MetricNames::new("orders_app")?;
/// assert_eq!(names.name(Metric::MillisBehindLatest), "orders_app_millis_behind_latest");
/// assert_eq!(MetricNames::default().name(Metric::RecordsProcessed), "shardwise_records_processed_total");
/// assert!(MetricNames::new("orders-app").is_err());
/// # Ok::<(), shardwise_metrics::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricNames {
    prefix: Arc<str>,
    names: Arc<[Arc<str>]>,
}

impl MetricNames {
    /// Names with `prefix`, validated.
    pub fn new(prefix: &str) -> Result<MetricNames, Error> {
        validate_prefix(prefix)?;
        let names = Metric::ALL
            .iter()
            .map(|m| {
                if prefix.is_empty() {
                    Arc::from(m.base_name())
                } else {
                    Arc::from(format!("{prefix}_{}", m.base_name()))
                }
            })
            .collect();
        Ok(MetricNames {
            prefix: Arc::from(prefix),
            names,
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full name `metric` is recorded under.
    pub fn name(&self, metric: Metric) -> &str {
        &self.names[metric as usize]
    }

    /// The full name as a [`KeyName`], cheap to clone.
    pub fn key_name(&self, metric: Metric) -> KeyName {
        KeyName::from(Arc::clone(&self.names[metric as usize]))
    }

    /// The key for `metric` with `labels`.
    pub fn key(&self, metric: Metric, labels: Vec<metrics::Label>) -> Key {
        Key::from_parts(self.key_name(metric), labels)
    }

    /// The metric recorded under the full name `name`, if it is one of ours.
    pub fn metric(&self, name: &str) -> Option<Metric> {
        Metric::ALL
            .iter()
            .copied()
            .find(|m| &*self.names[*m as usize] == name)
    }
}

impl Default for MetricNames {
    /// Names with [`DEFAULT_PREFIX`].
    fn default() -> Self {
        let names = Metric::ALL
            .iter()
            .map(|m| Arc::from(format!("{DEFAULT_PREFIX}_{}", m.base_name())))
            .collect();
        MetricNames {
            prefix: Arc::from(DEFAULT_PREFIX),
            names,
        }
    }
}

fn validate_prefix(prefix: &str) -> Result<(), Error> {
    let invalid = |why: &str| Error::InvalidPrefix {
        prefix: prefix.to_owned(),
        reason: why.to_owned(),
    };
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(invalid("longer than 64 characters"));
    }
    let mut chars = prefix.chars();
    if let Some(first) = chars.next()
        && !(first.is_ascii_alphabetic() || first == '_')
    {
        return Err(invalid("must start with an ASCII letter or '_'"));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(invalid("only ASCII letters, digits and '_' are allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let cases: &[(&str, Option<&str>)] = &[
            ("shardwise", Some("shardwise_records_processed_total")),
            ("", Some("records_processed_total")),
            ("_x1", Some("_x1_records_processed_total")),
            ("App_2", Some("App_2_records_processed_total")),
            ("1app", None),
            ("my-app", None),
            ("my app", None),
            ("my.app", None),
            ("é", None),
        ];
        for (prefix, want) in cases {
            let got = MetricNames::new(prefix)
                .ok()
                .map(|n| n.name(Metric::RecordsProcessed).to_owned());
            assert_eq!(got.as_deref(), *want, "{prefix:?}");
        }
        assert!(MetricNames::new(&"a".repeat(64)).is_ok());
        assert!(MetricNames::new(&"a".repeat(65)).is_err());
    }

    #[test]
    fn default_is_the_default_prefix() {
        assert_eq!(
            MetricNames::default(),
            MetricNames::new(DEFAULT_PREFIX).unwrap()
        );
    }

    #[test]
    fn full_names_map_back() {
        let names = MetricNames::new("p").unwrap();
        for metric in Metric::ALL {
            assert_eq!(names.metric(names.name(metric)), Some(metric));
            assert_eq!(names.key_name(metric).as_str(), names.name(metric));
        }
        assert_eq!(names.metric("records_processed_total"), None);
    }
}
