//! A [`LeaseStore`](shardwise_lease_core::LeaseStore) on Redis, for Kinesis consumers that
//! already run a Redis and want no DynamoDB just for leases.
//!
//! # Key layout
//!
//! Every key of one application starts with its [`KeyPrefix`] in braces, the Redis Cluster hash
//! tag, so they all live in one slot and one Lua script may touch several of them:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{prefix}:lease:<lease key>` | hash | one lease (fields below) |
//! | `{prefix}:leases` | sorted set, all scores 0 | every lease key, in byte order |
//! | `{prefix}:members` | hash | each heartbeating worker's heartbeat counter, and the table version in the field `""` |
//!
//! Lease hash fields: `key`, `owner` (absent when free), `counter`, `cp` and `cp_sub` (the
//! checkpoint in the KCL's text form and its sub-sequence number), `pend`, `pend_sub`,
//! `pend_state` (the prepared checkpoint), `switches`, `parents` and `children` (sorted shard
//! ids, comma-separated), `hk_start` and `hk_end` (the hash-key range, decimal).
//!
//! Listing reads the index page by page (`ZRANGEBYLEX … LIMIT`, 1,000 keys) and each page's
//! hashes with one script: no `KEYS`, no `SCAN`, and the result is sorted by key.
//!
//! # Compare-and-set
//!
//! Every write is one Lua script (compiled once per store with [`redis::Script`]: sent with
//! `EVALSHA`, loaded again on `NOSCRIPT`, for example after a restart), so the check of counter
//! and owner and the write happen atomically on the server. The counter is incremented with
//! `HINCRBY` (exact 64-bit integers; values above `i64::MAX` are refused). A checkpoint write
//! compares the new checkpoint with the stored one inside the script, numerically (longer
//! decimal is larger; equal lengths compare byte by byte, then the sub-sequence number), and
//! answers a regression without writing anything. Renewing many leases is one script call for
//! any number of leases: one round trip.
//!
//! # Errors
//!
//! Connection failures and timeouts, a server loading its data or failing over are
//! [`Unavailable`](shardwise_lease_core::StoreErrorKind::Unavailable) (retryable); the
//! connection manager reconnects on the next operation. A hash that does not decode, or a key
//! of the wrong type, is `Corrupt` and named; `list()` reports such hashes beside the good ones.
//!
//! # Performance
//!
//! `cargo bench -p shardwise-lease-redis` renews 1, 100 and 1,000 held leases against the
//! server at `REDIS_URL` and counts round trips twice: the commands the store sent and the
//! script calls the server executed (`INFO commandstats`). Measured on a 2-core machine,
//! Redis 7.0 on the same host (median of 50 rounds; the one-by-one 1,000 row of 5):
//!
//! | leases | `renew_many` round trips | time per round | renewing one by one |
//! | --- | --- | --- | --- |
//! | 1 | 1 | 52 µs | 1 round trip, 49 µs |
//! | 100 | 1 | 0.27 ms | 100 round trips, 4.7 ms |
//! | 1,000 | 1 | 3.1 ms | 1,000 round trips, 47.5 ms |
//!
//! # TLS
//!
//! With the feature `tls-rustls`, `rediss://` URLs connect over TLS (rustls). The server's
//! certificate must chain to one of the platform's root certificates or, for a server with a
//! private CA, to one given to [`RedisConfigBuilder`]'s `root_certificate_pem` (those then
//! replace the platform's roots). The host name in the URL must match the certificate. Without
//! the feature a `rediss://` URL is a configuration error.
//!
//! rustls needs a process-wide crypto provider: when the application has not installed one, the
//! first TLS configuration installs rustls' ring provider.
//!
//! ```no_run
//! # #[cfg(feature = "tls-rustls")]
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use shardwise_lease_redis::RedisConfig;
//!
//! let config = RedisConfig::builder("rediss://redis.internal:6380", "orders-app")
//!     .root_certificate_pem(std::fs::read("/etc/redis/tls/ca.pem")?)
//!     .build()?;
//! # Ok(())
//! # }
//! ```

mod config;
mod error;
mod fields;
mod prefix;
mod scripts;
mod store;
#[cfg(feature = "tls-rustls")]
mod tls;

pub use config::{RedisConfig, RedisConfigBuilder};
pub use prefix::{KeyPrefix, MAX_PREFIX_BYTES};
pub use store::RedisLeaseStore;
