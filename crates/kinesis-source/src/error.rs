//! Kinesis errors, classified by what the reader should do about them.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// The class of a [`KinesisError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KinesisErrorKind {
    /// The shard's read (or the account's control-plane) limit was exceeded. Back off, retry.
    Throttled,
    /// The shard iterator is older than five minutes. Get a new one from the last position.
    ExpiredIterator,
    /// A `ListShards` pagination token is older than five minutes. Start the listing again.
    ExpiredNextToken,
    /// The stream, shard or consumer does not exist (yet).
    ResourceNotFound,
    /// The resource is busy: another subscription to the same shard is active, or the consumer
    /// is not ACTIVE yet. Retry after about five seconds.
    ResourceInUse,
    /// The request was refused as invalid. A bug or misconfiguration; retrying does not help.
    InvalidArgument,
    /// The service could not be reached or failed (timeouts, connection errors, 5xx).
    Unavailable,
    /// Access was denied or the request was not authorised.
    AccessDenied,
    /// Anything else.
    Other,
}

impl KinesisErrorKind {
    /// Whether the same call may succeed when retried (after a pause).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Throttled | Self::ResourceInUse | Self::Unavailable
        )
    }
}

/// An error from a Kinesis call.
#[derive(Debug, Clone)]
pub struct KinesisError {
    kind: KinesisErrorKind,
    message: String,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl KinesisError {
    /// A new error.
    pub fn new(kind: KinesisErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The class of the error.
    pub fn kind(&self) -> KinesisErrorKind {
        self.kind
    }

    /// Whether retrying (after a pause) may help.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for KinesisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl StdError for KinesisError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}
