//! Turning sqlx errors into lease-store errors that say whether retrying helps.

use shardwise_lease_core::{StoreError, StoreErrorKind};

/// Classifies a sqlx error met while doing `what` (to the lease `key`, when known).
pub(crate) fn store_error(err: sqlx::Error, what: &str, key: Option<&str>) -> StoreError {
    let kind = classify(&err);
    let mut error = StoreError::new(kind, format!("{what}: {err}")).with_source(err);
    if let Some(key) = key {
        error = error.with_lease_key(key);
    }
    error
}

/// A failed `COMMIT` of a transaction that held a fenced checkpoint: whether it was applied is
/// unknown, whatever the error says.
pub fn commit_error(err: sqlx::Error) -> StoreError {
    store_error(err, "commit the transaction", None)
}

fn classify(err: &sqlx::Error) -> StoreErrorKind {
    use StoreErrorKind::*;
    match err {
        // The server went away, refused, or did not answer in time; a new connection may work.
        sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed | sqlx::Error::PoolTimedOut => Unavailable,
        sqlx::Error::PoolClosed => Unavailable,
        sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => Config,
        sqlx::Error::Database(db) => db.code().map_or(Unexpected, |code| by_sqlstate(&code)),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. } => Corrupt,
        sqlx::Error::Encode(_) | sqlx::Error::InvalidArgument(_) => InvalidArgument,
        sqlx::Error::TypeNotFound { .. } => Config,
        _ => Unexpected,
    }
}

/// The SQLSTATE classes that matter here (PostgreSQL manual, appendix A).
fn by_sqlstate(code: &str) -> StoreErrorKind {
    use StoreErrorKind::*;
    match code {
        // statement_timeout or a cancel request; lock_not_available.
        "57014" | "55P03" => Unavailable,
        // admin_shutdown, crash_shutdown, cannot_connect_now (starting up or shutting down).
        "57P01" | "57P02" | "57P03" => Unavailable,
        // serialization_failure, deadlock_detected: the transaction may succeed when re-run.
        "40001" | "40P01" => Unavailable,
        // undefined table or schema, insufficient privilege, invalid authorization.
        "42P01" | "3F000" | "42501" | "28000" | "28P01" => Config,
        _ => match code.get(..2) {
            // connection_exception.
            Some("08") => Unavailable,
            // insufficient_resources (too many connections, out of memory or disk).
            Some("53") => Throttled,
            // data_exception: a stored value that does not fit what the statement expects.
            Some("22") => Corrupt,
            _ => Unexpected,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_table() {
        use StoreErrorKind::*;
        let cases = [
            ("57014", Unavailable),
            ("57P01", Unavailable),
            ("08006", Unavailable),
            ("40001", Unavailable),
            ("53300", Throttled),
            ("42P01", Config),
            ("28P01", Config),
            ("22P02", Corrupt),
            ("23505", Unexpected),
        ];
        for (code, kind) in cases {
            assert_eq!(by_sqlstate(code), kind, "{code}");
        }
    }

    #[test]
    fn io_errors_are_retryable() {
        let err = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let err = store_error(err, "renew", Some("shardId-1"));
        assert!(err.is_retryable(), "{err}");
        assert_eq!(err.lease_key(), Some("shardId-1"));
        assert!(store_error(sqlx::Error::PoolTimedOut, "get", None).is_retryable());
    }
}
