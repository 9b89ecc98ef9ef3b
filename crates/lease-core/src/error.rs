//! Errors: invalid values, and lease-store faults that say whether retrying can help.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// A value that does not satisfy the lease model's rules (an id, a sequence number, a hash-key
/// range, a checkpoint string read from a store).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct InvalidValue {
    what: &'static str,
    value: String,
    reason: String,
}

impl InvalidValue {
    /// Describes why `value` is not a valid `what`. Long values are shortened in the message.
    pub fn new(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        const SHOWN: usize = 80;
        let value = match value.char_indices().nth(SHOWN) {
            Some((cut, _)) => format!("{}…", &value[..cut]),
            None => value.to_owned(),
        };
        Self {
            what,
            value,
            reason: reason.into(),
        }
    }

    /// What kind of value was expected (for example `"sequence number"`).
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// Why the value was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// The class of a [`StoreError`]; it decides whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store could not be reached or did not answer in time (connection refused or reset,
    /// timeout, server-side 5xx). Retryable.
    Unavailable,
    /// The store refused for lack of capacity (DynamoDB throttling, a full connection pool).
    /// Retryable after a backoff.
    Throttled,
    /// A stored row could not be read as a lease. Retrying does not help; the row needs repair.
    Corrupt,
    /// A checkpoint write would move the stored checkpoint backwards. A caller bug; not retryable.
    CheckpointRegression,
    /// The request itself is invalid (for example a pending checkpoint behind the checkpoint).
    InvalidArgument,
    /// The store is misconfigured (bad table name, missing permissions, missing schema).
    Config,
    /// Anything else the store reported. Not retryable unless the store says otherwise.
    Unexpected,
}

impl StoreErrorKind {
    /// Whether an operation that failed with this kind may succeed when simply retried.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Unavailable | Self::Throttled)
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Unavailable => "lease store unavailable",
            Self::Throttled => "lease store throttled",
            Self::Corrupt => "corrupt lease row",
            Self::CheckpointRegression => "checkpoint would move backwards",
            Self::InvalidArgument => "invalid lease store request",
            Self::Config => "lease store misconfigured",
            Self::Unexpected => "unexpected lease store error",
        }
    }
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// A fault reported by a [`LeaseStore`](crate::LeaseStore).
///
/// Losing a race (someone else changed the lease first) is never an error: it is
/// [`Race::Lost`](crate::Race::Lost). An error means the store could not answer, or the request
/// or a stored row is invalid. [`StoreError::is_retryable`] tells which.
///
/// The error is cheap to clone (its source is shared), so a store that answers a batch in one
/// round trip can report the same fault for every item.
#[derive(Debug, Clone)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    lease_key: Option<String>,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl StoreError {
    /// A new error of `kind` with a human-readable message.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            lease_key: None,
            source: None,
        }
    }

    /// Shorthand for [`StoreErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Unavailable, message)
    }

    /// Shorthand for a [`StoreErrorKind::Corrupt`] row named by its raw key.
    pub fn corrupt(raw_key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Corrupt, message).with_lease_key(raw_key)
    }

    /// Names the lease the error is about.
    pub fn with_lease_key(mut self, key: impl Into<String>) -> Self {
        self.lease_key = Some(key.into());
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The class of the error.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// The lease the error is about, when known (the raw stored key for corrupt rows).
    pub fn lease_key(&self) -> Option<&str> {
        self.lease_key.as_deref()
    }

    /// The message without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(key) = &self.lease_key {
            write!(f, " (lease {key:?})")?;
        }
        Ok(())
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

impl From<InvalidValue> for StoreError {
    fn from(value: InvalidValue) -> Self {
        let message = value.to_string();
        Self::new(StoreErrorKind::InvalidArgument, message).with_source(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_only_for_transient_kinds() {
        let cases = [
            (StoreErrorKind::Unavailable, true),
            (StoreErrorKind::Throttled, true),
            (StoreErrorKind::Corrupt, false),
            (StoreErrorKind::CheckpointRegression, false),
            (StoreErrorKind::InvalidArgument, false),
            (StoreErrorKind::Config, false),
            (StoreErrorKind::Unexpected, false),
        ];
        for (kind, retryable) in cases {
            assert_eq!(
                StoreError::new(kind, "x").is_retryable(),
                retryable,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn display_names_kind_message_and_key() {
        let err = StoreError::corrupt("shardId-1", "leaseCounter is not a number");
        assert_eq!(
            err.to_string(),
            "corrupt lease row: leaseCounter is not a number (lease \"shardId-1\")"
        );
    }

    #[test]
    fn invalid_value_shortens_long_input() {
        let long = "x".repeat(500);
        let err = InvalidValue::new("lease key", &long, "too long");
        assert!(err.to_string().len() < 150, "{err}");
    }
}
