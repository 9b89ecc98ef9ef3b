//! Configuration: where the server is, which table and namespace, pool and timeouts, TLS.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use shardwise_lease_core::{REDACTED, StoreError, StoreErrorKind, redact_url};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::name::SqlIdentifier;

/// The default schema, `public`.
pub const DEFAULT_SCHEMA: &str = "public";
/// The default table, `shardwise_leases`.
pub const DEFAULT_TABLE: &str = "shardwise_leases";
/// Longest namespace accepted, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 256;

/// Whether and how to use TLS. Anything but [`PostgresTls::Disable`] and
/// [`PostgresTls::Prefer`] needs the crate feature `tls-rustls`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum PostgresTls {
    /// Plain connections only.
    Disable,
    /// TLS when the server offers it (and the feature is on), plain otherwise.
    Prefer,
    /// TLS only. Without a root certificate any certificate is accepted; with one
    /// ([`PostgresConfigBuilder::root_certificate`]) the certificate must be issued by it, as
    /// with [`PostgresTls::VerifyCa`] (libpq's rule; sqlx alone would not check it).
    Require,
    /// TLS only; the certificate must be issued by a trusted authority.
    VerifyCa,
    /// TLS only; trusted certificate whose name matches the host.
    VerifyFull,
}

impl PostgresTls {
    fn ssl_mode(self) -> PgSslMode {
        match self {
            Self::Disable => PgSslMode::Disable,
            Self::Prefer => PgSslMode::Prefer,
            Self::Require => PgSslMode::Require,
            Self::VerifyCa => PgSslMode::VerifyCa,
            Self::VerifyFull => PgSslMode::VerifyFull,
        }
    }

    fn needs_tls(self) -> bool {
        matches!(self, Self::Require | Self::VerifyCa | Self::VerifyFull)
    }
}

/// Everything [`PostgresLeaseStore::connect`](crate::PostgresLeaseStore::connect) needs. Made
/// with [`PostgresConfig::builder`]; every name is validated there, before anything is sent.
///
/// `Debug` never shows the password (neither the one in the URL nor a separate one).
///
/// ```
/// use std::time::Duration;
/// use shardwise_lease_postgres::PostgresConfig;
///
/// let config = PostgresConfig::builder("postgres://app:s3cret@db.internal/kinesis", "orders-app")
///     .stream("orders")
///     .schema("leases")
///     .table("shard_leases")
///     .max_connections(4)
///     .statement_timeout(Duration::from_secs(2))
///     .build()?;
/// assert_eq!(config.namespace(), "orders-app/orders");
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), shardwise_lease_core::StoreError>(())
/// ```
#[derive(Clone)]
pub struct PostgresConfig {
    url: String,
    password: Option<String>,
    schema: SqlIdentifier,
    table: SqlIdentifier,
    namespace: String,
    pool: PoolSettings,
    statement_timeout: Duration,
    tls: Option<PostgresTls>,
    root_certificate: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug)]
struct PoolSettings {
    max_connections: u32,
    min_connections: u32,
    acquire_timeout: Duration,
    idle_timeout: Option<Duration>,
    test_before_acquire: bool,
}

impl PostgresConfig {
    /// Starts a configuration for the server at `url` (`postgres://user[:password]@host[:port]/db`,
    /// options such as `sslmode` allowed) and the application `application`, whose leases live
    /// in their own namespace of the table.
    pub fn builder(
        url: impl Into<String>,
        application: impl Into<String>,
    ) -> PostgresConfigBuilder {
        PostgresConfigBuilder {
            url: url.into(),
            password: None,
            schema: DEFAULT_SCHEMA.to_owned(),
            table: DEFAULT_TABLE.to_owned(),
            application: application.into(),
            stream: None,
            pool: PoolSettings {
                max_connections: 10,
                min_connections: 0,
                acquire_timeout: Duration::from_secs(5),
                idle_timeout: Some(Duration::from_secs(600)),
                test_before_acquire: false,
            },
            statement_timeout: Duration::from_secs(5),
            tls: None,
            root_certificate: None,
        }
    }

    /// The schema holding the lease table.
    pub fn schema(&self) -> &SqlIdentifier {
        &self.schema
    }

    /// The lease table.
    pub fn table(&self) -> &SqlIdentifier {
        &self.table
    }

    /// The value of the namespace column for this application's leases: the application name,
    /// or `application/stream`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The server-side statement timeout.
    pub fn statement_timeout(&self) -> Duration {
        self.statement_timeout
    }

    /// The connection options for sqlx (password included; never log them).
    pub(crate) fn connect_options(&self) -> Result<PgConnectOptions, StoreError> {
        let mut options = PgConnectOptions::from_str(&self.url).map_err(|e| {
            // sqlx's parse errors do not echo the URL, so the password stays out of the message.
            StoreError::new(
                StoreErrorKind::Config,
                format!("invalid PostgreSQL URL {}: {e}", redact_url(&self.url)),
            )
        })?;
        if let Some(password) = &self.password {
            options = options.password(password);
        }
        if let Some(tls) = self.tls {
            options = options.ssl_mode(tls.ssl_mode());
        }
        if let Some(path) = &self.root_certificate {
            options = options.ssl_root_cert(path);
            // libpq's rule: a root certificate given with `require` (here or in the URL) is
            // checked, as with `verify-ca`.
            if matches!(options.get_ssl_mode(), PgSslMode::Require) {
                options = options.ssl_mode(PgSslMode::VerifyCa);
            }
        }
        let timeout_ms = self.statement_timeout.as_millis().to_string();
        Ok(options
            .application_name("shardwise")
            .options([("statement_timeout", timeout_ms.as_str())]))
    }

    /// The pool settings as sqlx pool options, for building a pool of one's own to hand to
    /// [`PostgresLeaseStore::with_pool`](crate::PostgresLeaseStore::with_pool).
    pub fn pool_options(&self) -> sqlx::postgres::PgPoolOptions {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(self.pool.max_connections)
            .min_connections(self.pool.min_connections)
            .acquire_timeout(self.pool.acquire_timeout)
            .idle_timeout(self.pool.idle_timeout)
            .test_before_acquire(self.pool.test_before_acquire)
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("namespace", &self.namespace)
            .field("max_connections", &self.pool.max_connections)
            .field("min_connections", &self.pool.min_connections)
            .field("acquire_timeout", &self.pool.acquire_timeout)
            .field("idle_timeout", &self.pool.idle_timeout)
            .field("test_before_acquire", &self.pool.test_before_acquire)
            .field("statement_timeout", &self.statement_timeout)
            .field("tls", &self.tls)
            .field("root_certificate", &self.root_certificate)
            .finish()
    }
}

/// Builds a [`PostgresConfig`]; [`PostgresConfigBuilder::build`] validates every setting.
#[derive(Clone)]
#[must_use = "call build() to get the configuration"]
pub struct PostgresConfigBuilder {
    url: String,
    password: Option<String>,
    schema: String,
    table: String,
    application: String,
    stream: Option<String>,
    pool: PoolSettings,
    statement_timeout: Duration,
    tls: Option<PostgresTls>,
    root_certificate: Option<PathBuf>,
}

impl fmt::Debug for PostgresConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfigBuilder")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("application", &self.application)
            .field("stream", &self.stream)
            .field("pool", &self.pool)
            .field("statement_timeout", &self.statement_timeout)
            .field("tls", &self.tls)
            .field("root_certificate", &self.root_certificate)
            .finish()
    }
}

impl PostgresConfigBuilder {
    /// The password, when it is not in the URL (it wins over one there).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The schema holding the lease table (default [`DEFAULT_SCHEMA`]); created when missing.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The lease table (default [`DEFAULT_TABLE`]); created when missing.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The stream, for an application that keeps one namespace per stream it reads.
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }

    /// Most connections the pool opens (default 10; at least 1).
    pub fn max_connections(mut self, max: u32) -> Self {
        self.pool.max_connections = max;
        self
    }

    /// Connections the pool keeps open even when idle (default 0).
    pub fn min_connections(mut self, min: u32) -> Self {
        self.pool.min_connections = min;
        self
    }

    /// How long an operation waits for a connection (default 5 s); past it the operation
    /// fails with a retryable error.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.pool.acquire_timeout = timeout;
        self
    }

    /// How long an idle connection is kept (default 10 minutes; `None` keeps it).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.pool.idle_timeout = timeout;
        self
    }

    /// Whether to ping a pooled connection before every use (default off: it costs one more
    /// round trip per operation; a broken connection fails one operation with a retryable error
    /// instead and is then replaced).
    pub fn test_before_acquire(mut self, test: bool) -> Self {
        self.pool.test_before_acquire = test;
        self
    }

    /// The server-side `statement_timeout` of every connection (default 5 s; at least 1 ms).
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// The TLS mode (default: what the URL's `sslmode` says, else [`PostgresTls::Prefer`]).
    pub fn tls(mut self, tls: PostgresTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// A PEM file with the certificate authority to trust for the server's certificate, in
    /// addition to the built-in (webpki) roots; checked with [`PostgresTls::Require`] (which it
    /// turns into [`PostgresTls::VerifyCa`], as libpq does), [`PostgresTls::VerifyCa`] and
    /// [`PostgresTls::VerifyFull`], ignored by [`PostgresTls::Prefer`]. The file is read when a
    /// connection is opened, not by [`build`](Self::build).
    pub fn root_certificate(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_certificate = Some(path.into());
        self
    }

    /// Validates every setting. Errors are of kind [`StoreErrorKind::Config`].
    pub fn build(self) -> Result<PostgresConfig, StoreError> {
        let schema = SqlIdentifier::new("schema name", &self.schema)?;
        let table = SqlIdentifier::new("table name", &self.table)?;
        let namespace = namespace(&self.application, self.stream.as_deref())?;
        let config_error = |message: &str| Err(StoreError::new(StoreErrorKind::Config, message));
        if self.pool.max_connections == 0 {
            return config_error("max_connections must be at least 1");
        }
        if self.pool.min_connections > self.pool.max_connections {
            return config_error("min_connections must not exceed max_connections");
        }
        if self.statement_timeout.as_millis() == 0 {
            return config_error("statement_timeout must be at least 1 ms");
        }
        if self.tls.is_some_and(PostgresTls::needs_tls) && !cfg!(feature = "tls-rustls") {
            return config_error("TLS was required but the crate feature `tls-rustls` is off");
        }
        let config = PostgresConfig {
            url: self.url,
            password: self.password,
            schema,
            table,
            namespace,
            pool: self.pool,
            statement_timeout: self.statement_timeout,
            tls: self.tls,
            root_certificate: self.root_certificate,
        };
        // Parse the URL now, so a bad one is reported by `build`, not by the first operation.
        config.connect_options()?;
        Ok(config)
    }
}

fn namespace(application: &str, stream: Option<&str>) -> Result<String, StoreError> {
    let invalid = |what: &str, value: &str, why: &str| {
        Err(StoreError::new(
            StoreErrorKind::Config,
            format!("invalid {what} {value:?}: {why}"),
        ))
    };
    for (what, value) in [
        ("application name", Some(application)),
        ("stream name", stream),
    ] {
        let Some(value) = value else { continue };
        if value.is_empty() {
            return invalid(what, value, "must not be empty");
        }
        if value.chars().any(char::is_control) {
            return invalid(what, value, "must not contain control characters");
        }
        if value.contains('/') {
            return invalid(what, value, "must not contain '/'");
        }
    }
    let namespace = match stream {
        Some(stream) => format!("{application}/{stream}"),
        None => application.to_owned(),
    };
    if namespace.len() > MAX_NAMESPACE_BYTES {
        return invalid(
            "namespace",
            &namespace,
            &format!("longer than {MAX_NAMESPACE_BYTES} bytes"),
        );
    }
    Ok(namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        assert_eq!(namespace("app", None).ok(), Some("app".to_owned()));
        assert_eq!(namespace("app", Some("s")).ok(), Some("app/s".to_owned()));
        for (app, stream) in [("", None), ("a/b", None), ("a", Some("")), ("a\n", None)] {
            assert!(namespace(app, stream).is_err(), "{app:?} {stream:?}");
        }
    }
}
