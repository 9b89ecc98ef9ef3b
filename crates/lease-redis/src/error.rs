//! Turning redis errors into lease-store errors that say whether retrying helps.

use redis::{ErrorKind, RedisError, RetryMethod, ServerErrorKind};
use shardwise_lease_core::{StoreError, StoreErrorKind};

/// Classifies a redis error met while doing `what` (to the lease `key`, when known).
pub(crate) fn store_error(err: RedisError, what: &str, key: Option<&str>) -> StoreError {
    let kind = classify(&err);
    let mut error = StoreError::new(kind, format!("{what}: {err}")).with_source(err);
    if let Some(key) = key {
        error = error.with_lease_key(key);
    }
    error
}

fn classify(err: &RedisError) -> StoreErrorKind {
    use StoreErrorKind::*;
    if err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
    {
        return Unavailable;
    }
    match err.kind() {
        // Loading its data set, a failover, a cluster being reconfigured: wait and retry.
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        ) => Unavailable,
        ErrorKind::Server(ServerErrorKind::NoPerm)
        | ErrorKind::Server(ServerErrorKind::CrossSlot)
        | ErrorKind::AuthenticationFailed
        | ErrorKind::InvalidClientConfig => Config,
        // A key of ours holds another type, or a script met a field that is not a number.
        _ if err.code() == Some("WRONGTYPE") => Corrupt,
        _ if err.to_string().contains("not an integer") => Corrupt,
        _ if err.code() == Some("BUSY") => Unavailable,
        _ => match err.retry_method() {
            RetryMethod::Reconnect
            | RetryMethod::RetryImmediately
            | RetryMethod::WaitAndRetry
            | RetryMethod::ReconnectFromInitialConnections => Unavailable,
            _ => Unexpected,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_retryable() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = store_error(RedisError::from(io), "renew", Some("k"));
        assert!(err.is_retryable(), "{err}");
        assert_eq!(err.lease_key(), Some("k"));
    }

    #[test]
    fn client_errors_are_not() {
        let err = RedisError::from((ErrorKind::InvalidClientConfig, "bad"));
        assert_eq!(
            store_error(err, "connect", None).kind(),
            StoreErrorKind::Config
        );
    }
}
