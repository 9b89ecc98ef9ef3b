//! A [`LeaseStore`](shardwise_lease_core::LeaseStore) on PostgreSQL, for Kinesis consumers that
//! already run a PostgreSQL and want no DynamoDB just for leases.
//!
//! # Table layout
//!
//! One table (default `public.shardwise_leases`, both names configurable, validated against
//! `^[a-z_][a-z0-9_]{0,62}$` and always quoted) serves any number of applications: each has a
//! namespace (the application name, or `application/stream`), and the primary key is
//! `(namespace, lease_key)`. [`create_table_if_missing`](shardwise_lease_core::LeaseStore::create_table_if_missing)
//! creates the schema and table when missing.
//!
//! | column | type | holds |
//! | --- | --- | --- |
//! | `namespace` | `TEXT` | application (+ `/stream`) |
//! | `lease_key` | `TEXT COLLATE "C"` | the lease key; byte order, as Rust sorts strings |
//! | `owner` | `TEXT` | the worker holding the lease, `NULL` when free |
//! | `counter` | `BIGINT` | the fencing counter |
//! | `checkpoint`, `checkpoint_sub_sequence` | `TEXT`, `BIGINT` | sequence number or sentinel (the KCL's text form) |
//! | `checkpoint_sequence` | `NUMERIC(130,0)`, generated | the checkpoint as a number, for the "never backwards" check |
//! | `pending_checkpoint`, `pending_checkpoint_sub_sequence`, `pending_checkpoint_state` | `TEXT`, `BIGINT`, `BYTEA` | the prepared checkpoint and its state bytes |
//! | `owner_switches_since_checkpoint` | `BIGINT` | owner changes since the last checkpoint |
//! | `parent_shard_ids`, `child_shard_ids` | `TEXT[]` | sorted shard ids |
//! | `starting_hash_key`, `ending_hash_key` | `NUMERIC(39,0)` | the hash-key range |
//!
//! Counters, sub-sequence numbers and owner-switch counts are `BIGINT`: values above
//! `i64::MAX` are refused as invalid arguments (no real lease comes near).
//!
//! The membership record of workers that heartbeat (`Liveness::Heartbeat` in the consumer) is a
//! second table in the same schema, `shardwise_members (lease_table, namespace, worker,
//! heartbeat)`, shared by every lease table of the schema: one row per worker with its
//! heartbeat counter, and the row whose worker is `''` for the table version. A heartbeat is an
//! upsert (the first) or an `UPDATE … WHERE heartbeat = $n` (the next ones); reading the record
//! is one `SELECT` of the namespace's rows.
//!
//! # Compare-and-set
//!
//! Every write is one statement whose `WHERE` holds the whole condition, so PostgreSQL's row
//! lock makes it atomic (a racing writer re-checks the condition on the new row version and
//! matches nothing): `UPDATE … WHERE namespace = $1 AND lease_key = $2 AND counter = $n
//! [AND owner = $o] … RETURNING …`; `INSERT … ON CONFLICT DO NOTHING RETURNING …`;
//! `DELETE … WHERE counter = $n`. A checkpoint write also requires, in the same `WHERE`, that
//! the new checkpoint is not behind the stored one (compared as numbers); when it writes
//! nothing, one read tells a lost race from a regression, which is reported as
//! [`StoreErrorKind::CheckpointRegression`](shardwise_lease_core::StoreErrorKind::CheckpointRegression).
//! Renewing many leases is one statement, `UPDATE … FROM unnest($keys, $counters) … RETURNING
//! lease_key, counter`: one round trip for any number of leases.
//!
//! # Errors
//!
//! Connection failures, timeouts (including `statement_timeout`), a full pool and server
//! shutdowns are [`Unavailable`](shardwise_lease_core::StoreErrorKind::Unavailable) or
//! `Throttled` (retryable); rows that do not decode are `Corrupt` and name their key;
//! `list()` reports such rows beside the good ones. Missing tables and refused logins are
//! `Config`.
//!
//! # Performance
//!
//! `cargo bench -p shardwise-lease-postgres` renews 1, 100 and 1,000 held leases against the
//! server at `DATABASE_URL`, and counts both the statements sent and the requests seen on the
//! wire by a protocol-aware proxy. Measured on a 2-core machine, PostgreSQL 15 on the same
//! host, other builds running (median of 50 rounds; the one-by-one 1,000 row of 5):
//!
//! | leases | `renew_many` statements | wire requests | time per round | renewing one by one |
//! | --- | --- | --- | --- | --- |
//! | 1 | 1 | 2 | 0.6–3.9 ms | 1 statement, 0.4–4.0 ms |
//! | 100 | 1 | 2 | 4.2 ms | 100 statements, 35–155 ms |
//! | 1,000 | 1 | 2 | 48 ms | 1,000 statements, 312–346 ms |
//!
//! The caller waits for one round trip; the second wire request is the ping sqlx's pool sends
//! when the connection is returned, in a background task after the answer arrived.
//!
//! # TLS
//!
//! With the feature `tls-rustls`, [`PostgresTls`] `Require`, `VerifyCa` and `VerifyFull` are
//! available (rustls with the webpki roots, or [`PostgresConfigBuilder::root_certificate`]).
//! `Require` encrypts without checking the certificate, unless a root certificate is given, which
//! it then checks as `VerifyCa` does (libpq's rule); `VerifyCa` checks that it chains to a
//! trusted root; `VerifyFull` also that it names the host in the URL.
//!
//! rustls needs a process-wide crypto provider (sqlx asks for it with `VerifyCa`): unless TLS is
//! disabled, [`PostgresLeaseStore::connect`] and [`PostgresLeaseStore::with_pool`] install
//! rustls' ring provider when the application has not installed one. An application that wants
//! another provider, or that opens connections of its own pool before `with_pool`, installs
//! one first.
//!
//! ```no_run
//! # #[cfg(feature = "tls-rustls")]
//! # async fn run() -> Result<(), shardwise_lease_core::StoreError> {
//! use shardwise_lease_postgres::{PostgresConfig, PostgresLeaseStore, PostgresTls};
//!
//! let config = PostgresConfig::builder("postgres://app@db.internal/kinesis", "orders-app")
//!     .tls(PostgresTls::VerifyFull)
//!     .root_certificate("/etc/postgresql/tls/ca.pem")
//!     .build()?;
//! let store = PostgresLeaseStore::connect(&config).await?;
//! # Ok(())
//! # }
//! ```

mod config;
mod error;
mod name;
mod row;
mod sql;
mod store;
#[cfg(feature = "tls-rustls")]
mod tls;

pub use config::{
    DEFAULT_SCHEMA, DEFAULT_TABLE, MAX_NAMESPACE_BYTES, PostgresConfig, PostgresConfigBuilder,
    PostgresTls,
};
pub use error::commit_error;
pub use name::SqlIdentifier;
/// The `sqlx` this store is built on: an application's transaction handed to
/// [`PostgresLeaseStore::update_checkpoint_in`] must be of this version.
pub use sqlx;
pub use store::PostgresLeaseStore;
