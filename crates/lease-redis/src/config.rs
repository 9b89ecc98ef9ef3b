//! Configuration: where the server is, the key prefix, timeouts, reconnects and TLS trust.

use std::fmt;
use std::time::Duration;

use redis::IntoConnectionInfo;
use shardwise_lease_core::{REDACTED, StoreError, StoreErrorKind, redact_url};

use crate::prefix::KeyPrefix;

/// Everything [`RedisLeaseStore::connect`](crate::RedisLeaseStore::connect) needs. Made with
/// [`RedisConfig::builder`]; the prefix is validated there, before anything is sent.
///
/// `Debug` never shows the password (neither the one in the URL nor a separate one).
///
/// ```
/// use std::time::Duration;
/// use shardwise_lease_redis::RedisConfig;
///
/// let config = RedisConfig::builder("redis://:s3cret@cache.internal:6379/0", "orders-app")
///     .response_timeout(Duration::from_secs(1))
///     .build()?;
/// assert_eq!(config.prefix().as_str(), "orders-app");
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), shardwise_lease_core::StoreError>(())
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    url: String,
    password: Option<String>,
    prefix: KeyPrefix,
    connection_timeout: Duration,
    response_timeout: Duration,
    reconnect_attempts: usize,
    #[cfg(feature = "tls-rustls")]
    root_certificate_pem: Option<Vec<u8>>,
}

impl RedisConfig {
    /// Starts a configuration for the server at `url` (`redis://[user][:password]@host[:port][/db]`,
    /// or `rediss://` for TLS with the feature `tls-rustls`) with the key prefix `prefix`
    /// (usually the application name; see [`KeyPrefix`] for the rule).
    pub fn builder(url: impl Into<String>, prefix: impl Into<String>) -> RedisConfigBuilder {
        RedisConfigBuilder {
            url: url.into(),
            password: None,
            prefix: prefix.into(),
            connection_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            reconnect_attempts: 3,
            #[cfg(feature = "tls-rustls")]
            root_certificate_pem: None,
        }
    }

    /// The prefix of every key.
    pub fn prefix(&self) -> &KeyPrefix {
        &self.prefix
    }

    /// How long one operation waits for its answer.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    pub(crate) fn client(&self) -> Result<redis::Client, StoreError> {
        let config_error = |e: redis::RedisError| {
            // The URL is shown redacted; redis' parse errors do not echo it.
            StoreError::new(
                StoreErrorKind::Config,
                format!("invalid Redis URL {}: {e}", redact_url(&self.url)),
            )
        };
        let mut info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(config_error)?;
        if let Some(password) = &self.password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        #[cfg(feature = "tls-rustls")]
        if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            crate::tls::ensure_crypto_provider();
            if let Some(pem) = &self.root_certificate_pem {
                crate::tls::check_root_certificates(pem)?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                };
                return redis::Client::build_with_tls(info, certificates).map_err(|e| {
                    StoreError::new(
                        StoreErrorKind::Config,
                        format!("invalid root certificate PEM: {e}"),
                    )
                });
            }
        } else if self.root_certificate_pem.is_some() {
            return Err(StoreError::new(
                StoreErrorKind::Config,
                format!(
                    "a root certificate is set, but {} is no TLS URL: use rediss://",
                    redact_url(&self.url)
                ),
            ));
        }
        redis::Client::open(info).map_err(config_error)
    }

    pub(crate) fn manager_config(&self) -> redis::aio::ConnectionManagerConfig {
        redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connection_timeout))
            .set_response_timeout(Some(self.response_timeout))
            .set_number_of_retries(self.reconnect_attempts)
            .set_max_delay(Duration::from_millis(500))
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("RedisConfig");
        debug
            .field("url", &redact_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("prefix", &self.prefix)
            .field("connection_timeout", &self.connection_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("reconnect_attempts", &self.reconnect_attempts);
        #[cfg(feature = "tls-rustls")]
        debug.field(
            "root_certificate_pem",
            &self
                .root_certificate_pem
                .as_ref()
                .map(|pem| format!("{} bytes", pem.len())),
        );
        debug.finish()
    }
}

/// Builds a [`RedisConfig`]; [`RedisConfigBuilder::build`] validates every setting.
#[derive(Clone)]
#[must_use = "call build() to get the configuration"]
pub struct RedisConfigBuilder {
    url: String,
    password: Option<String>,
    prefix: String,
    connection_timeout: Duration,
    response_timeout: Duration,
    reconnect_attempts: usize,
    #[cfg(feature = "tls-rustls")]
    root_certificate_pem: Option<Vec<u8>>,
}

impl fmt::Debug for RedisConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfigBuilder")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisConfigBuilder {
    /// The password, when it is not in the URL (it wins over one there).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// How long connecting may take (default 2 s).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long one operation waits for its answer (default 2 s); past it the operation fails
    /// with a retryable error.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How often the connection manager tries to reconnect after losing the connection before
    /// the operation that noticed fails (default 3); later operations reconnect again.
    pub fn reconnect_attempts(mut self, attempts: usize) -> Self {
        self.reconnect_attempts = attempts;
        self
    }

    /// Trusts the certificate authorities in `pem` (one or more PEM `CERTIFICATE` blocks, the
    /// contents of a `ca.pem` file) for a `rediss://` server, for example one whose certificate
    /// comes from a private CA. They are trusted *instead of* the platform's root certificates
    /// (the redis crate's rule): put every CA the server's certificate may chain to in `pem`.
    /// The server's name (or IP address) must still match its certificate.
    ///
    /// Needs the feature `tls-rustls`. [`build`](Self::build) fails with
    /// [`StoreErrorKind::Config`] when `pem` holds no certificate or one that does not parse, and
    /// when the URL is not `rediss://`.
    ///
    /// ```no_run
    /// use shardwise_lease_redis::RedisConfig;
    ///
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = std::fs::read("/etc/redis/tls/ca.pem")?;
    /// let config = RedisConfig::builder("rediss://cache.internal:6380", "orders-app")
    ///     .root_certificate_pem(ca)
    ///     .build()?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tls-rustls")]
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificate_pem = Some(pem.into());
        self
    }

    /// Validates every setting. Errors are of kind [`StoreErrorKind::Config`].
    pub fn build(self) -> Result<RedisConfig, StoreError> {
        let prefix = KeyPrefix::new(&self.prefix)?;
        if self.response_timeout.is_zero() || self.connection_timeout.is_zero() {
            return Err(StoreError::new(
                StoreErrorKind::Config,
                "timeouts must be above zero",
            ));
        }
        let config = RedisConfig {
            url: self.url,
            password: self.password,
            prefix,
            connection_timeout: self.connection_timeout,
            response_timeout: self.response_timeout,
            reconnect_attempts: self.reconnect_attempts,
            #[cfg(feature = "tls-rustls")]
            root_certificate_pem: self.root_certificate_pem,
        };
        // Parse the URL (and any root certificate) now, so a bad one is reported by `build`.
        config.client()?;
        Ok(config)
    }
}
