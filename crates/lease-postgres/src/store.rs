//! The `LeaseStore` on PostgreSQL.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use shardwise_lease_core::{
    Checkpoint, CheckpointUpdate, Lease, LeaseKey, LeaseListing, LeaseStore, Membership, Race,
    ShardId, StoreError, StoreErrorKind, WorkerId,
};
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::{AssertSqlSafe, Row};

use crate::config::PostgresConfig;
use crate::error::store_error;
use crate::row::{decode, decode_one, progress, sub_sequence, to_bigint};
use crate::sql::Statements;

/// A [`LeaseStore`] on PostgreSQL: one row per lease in a table shared by any number of
/// applications, each in its own namespace.
///
/// Every conditional write is one `UPDATE … WHERE counter = $n [AND owner = $o] … RETURNING`
/// (or `INSERT … ON CONFLICT DO NOTHING`, `DELETE … WHERE counter = $n`), so the row lock taken
/// by the statement makes it an atomic compare-and-set; [`LeaseStore::renew_many`] is one
/// statement for any number of leases. See the crate documentation for the table layout.
///
/// ```no_run
/// # async fn run() -> Result<(), shardwise_lease_core::StoreError> {
/// use shardwise_lease_core::LeaseStore;
/// use shardwise_lease_postgres::{PostgresConfig, PostgresLeaseStore};
///
/// let config = PostgresConfig::builder("postgres://app@127.0.0.1/kinesis", "orders-app").build()?;
/// let store = PostgresLeaseStore::connect(&config).await?;
/// store.create_table_if_missing().await?;
/// let listing = store.list().await?;
/// println!("{} leases", listing.leases.len());
/// # Ok(())
/// # }
/// ```
pub struct PostgresLeaseStore {
    pool: PgPool,
    namespace: String,
    table: String,
    sql: Statements,
    statements_sent: AtomicU64,
}

impl fmt::Debug for PostgresLeaseStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The pool's options hold the password; show only what identifies the leases.
        f.debug_struct("PostgresLeaseStore")
            .field("table", &self.table)
            .field("namespace", &self.namespace)
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl PostgresLeaseStore {
    /// Makes a store for `config`. Connections are opened on first use, so this does not
    /// contact the server: call [`LeaseStore::create_table_if_missing`] to check it is there.
    /// Must run inside a Tokio runtime (the pool runs background tasks on it).
    pub async fn connect(config: &PostgresConfig) -> Result<Self, StoreError> {
        let options = config.connect_options()?;
        let pool = config.pool_options().connect_lazy_with(options);
        Ok(Self::with_pool(pool, config))
    }

    /// Makes a store on an existing pool (its connection settings are the caller's; the
    /// statement timeout and pool settings of `config` are not applied).
    pub fn with_pool(pool: PgPool, config: &PostgresConfig) -> Self {
        // Before the pool's first connection (`connect` comes here too).
        #[cfg(feature = "tls-rustls")]
        crate::tls::ensure_crypto_provider(pool.connect_options().get_ssl_mode());
        Self {
            pool,
            namespace: config.namespace().to_owned(),
            table: format!("{}.{}", config.schema(), config.table()),
            sql: Statements::new(config.schema(), config.table()),
            statements_sent: AtomicU64::new(0),
        }
    }

    /// The namespace column's value for this store's leases.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// How many statements this store has sent (each is one round trip to the server once
    /// the connection has prepared it). For benchmarks and diagnostics.
    pub fn statements_sent(&self) -> u64 {
        self.statements_sent.load(Ordering::Relaxed)
    }

    /// Deletes every lease of this store's namespace, whatever its state, and returns how many
    /// there were. Meant for an operator removing an application, and for tests cleaning up;
    /// workers never call it.
    pub async fn delete_all_leases(&self) -> Result<u64, StoreError> {
        let done = self
            .query(&self.sql.delete_namespace)
            .bind(&self.namespace)
            .execute(&self.pool)
            .await
            .map_err(|e| store_error(e, "delete every lease of the namespace", None))?;
        self.query(&self.sql.delete_namespace_members)
            .bind(&self.sql.table_name)
            .bind(&self.namespace)
            .execute(&self.pool)
            .await
            .map_err(|e| store_error(e, "delete the namespace's membership", None))?;
        Ok(done.rows_affected())
    }

    /// Increments the membership row of `worker` (`""` for the table version).
    async fn increment_member(&self, worker: &str, what: &str) -> Result<u64, StoreError> {
        let value: i64 = self
            .query(&self.sql.heartbeat)
            .bind(&self.sql.table_name)
            .bind(&self.namespace)
            .bind(worker)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| store_error(e, what, None))?
            .try_get(0)
            .map_err(|e| store_error(e, what, None))?;
        u64::try_from(value).map_err(|_| {
            StoreError::new(
                StoreErrorKind::Corrupt,
                format!("{what}: negative counter {value}"),
            )
        })
    }

    /// The statement of [`LeaseStore::update_checkpoint`]; `None` when the expected counter
    /// can never be stored (the write always loses).
    fn checkpoint_query<'q>(
        &self,
        key: &'q LeaseKey,
        owner: &'q WorkerId,
        expected_counter: u64,
        update: &CheckpointUpdate,
    ) -> Result<Option<PgQuery<'q>>, StoreError> {
        update.validate()?;
        let Some(counter) = expected(expected_counter) else {
            return Ok(None);
        };
        let with_key = |e: StoreError| e.with_lease_key(key.as_str());
        let (rank, sequence, compared_sub) = progress(&update.checkpoint).map_err(with_key)?;
        let sub = sub_sequence(&update.checkpoint).map_err(with_key)?;
        let pending = update.pending.as_ref();
        let pending_sub = pending
            .map(|p| sub_sequence(&p.position))
            .transpose()
            .map_err(with_key)?;
        Ok(Some(
            self.query(&self.sql.update_checkpoint)
                .bind(self.namespace.clone())
                .bind(key.as_str())
                .bind(owner.as_str())
                .bind(counter)
                .bind(update.checkpoint.stored_text().to_owned())
                .bind(sub)
                .bind(pending.map(|p| p.position.stored_text().to_owned()))
                .bind(pending_sub)
                .bind(pending.and_then(|p| p.state.clone()))
                .bind(rank)
                .bind(sequence)
                .bind(compared_sub),
        ))
    }

    /// [`LeaseStore::update_checkpoint`] on `conn`, a connection in a transaction the caller
    /// opened on the database that holds the lease table: the checkpoint commits or rolls back
    /// with the caller's own writes, and the lease's row stays locked until then. Returns the
    /// lease's new counter, or [`Race::Lost`] when the lease is not held by `owner` at
    /// `expected_counter` or the checkpoint would move backwards (nothing written; the
    /// transaction can go on). This is what makes exactly-once effects possible: see
    /// `shardwise::Checkpointer::commit`.
    pub async fn update_checkpoint_in(
        &self,
        conn: &mut PgConnection,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        update: &CheckpointUpdate,
    ) -> Result<Race<u64>, StoreError> {
        let Some(query) = self.checkpoint_query(key, owner, expected_counter, update)? else {
            return Ok(Race::Lost);
        };
        let row = query.fetch_optional(&mut *conn).await.map_err(|e| {
            store_error(e, "update checkpoint in a transaction", Some(key.as_str()))
        })?;
        match row {
            Some(row) => Ok(Race::Won(decode_one(&row)?.counter)),
            None => Ok(Race::Lost),
        }
    }

    /// Reads the lease on `conn`, a connection in a transaction the caller opened, and locks
    /// its row until that transaction ends (`SELECT … FOR UPDATE`): no other worker can write
    /// the lease meanwhile. `None` when there is no such lease.
    pub async fn lock_lease_in(
        &self,
        conn: &mut PgConnection,
        key: &LeaseKey,
    ) -> Result<Option<Lease>, StoreError> {
        let row = self
            .query(&self.sql.get_for_update)
            .bind(self.namespace.clone())
            .bind(key.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| store_error(e, "lock lease", Some(key.as_str())))?;
        row.as_ref().map(decode_one).transpose()
    }

    /// Closes the pool's connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn query<'q>(
        &self,
        sql: &str,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        self.statements_sent.fetch_add(1, Ordering::Relaxed);
        // Safe: the statements are fixed text plus the validated, quoted schema and table
        // names (see `Statements::new`); every value travels as a bind parameter.
        sqlx::query(AssertSqlSafe(sql.to_owned()))
    }

    async fn fetch_lease(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
        what: &str,
        key: &LeaseKey,
    ) -> Result<Race<Lease>, StoreError> {
        let row = query
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error(e, what, Some(key.as_str())))?;
        match row {
            Some(row) => Ok(Race::Won(decode_one(&row)?)),
            None => Ok(Race::Lost),
        }
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// A counter the caller expects; one above `i64::MAX` can never be stored, so it always loses.
fn expected(counter: u64) -> Option<i64> {
    i64::try_from(counter).ok()
}

fn shard_texts(ids: &[ShardId]) -> Vec<String> {
    shardwise_lease_core::sorted_set(ids.iter().cloned())
        .into_iter()
        .map(|id| id.as_str().to_owned())
        .collect()
}

#[async_trait]
impl LeaseStore for PostgresLeaseStore {
    async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        let what = "create the lease table";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| store_error(e, what, None))?;
        self.query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(&self.sql.lock_key)
            .execute(&mut *tx)
            .await
            .map_err(|e| store_error(e, what, None))?;
        for statement in [
            &self.sql.create_schema,
            &self.sql.create_table,
            &self.sql.create_members,
        ] {
            self.query(statement)
                .execute(&mut *tx)
                .await
                .map_err(|e| store_error(e, what, None))?;
        }
        // A table made before hand-offs gets their column, once.
        let has_column = self
            .query(&self.sql.has_checkpoint_owner)
            .bind(&self.sql.schema_name)
            .bind(&self.sql.table_name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| store_error(e, what, None))?;
        if has_column.is_none() {
            self.query(&self.sql.add_checkpoint_owner)
                .execute(&mut *tx)
                .await
                .map_err(|e| store_error(e, what, None))?;
        }
        tx.commit().await.map_err(|e| store_error(e, what, None))
    }

    async fn list(&self) -> Result<LeaseListing, StoreError> {
        let rows: Vec<PgRow> = self
            .query(&self.sql.list)
            .bind(&self.namespace)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| store_error(e, "list leases", None))?;
        let mut listing = LeaseListing::default();
        for row in &rows {
            match decode(row) {
                Ok(lease) => listing.leases.push(lease),
                Err(corrupt) => listing.corrupt.push(corrupt),
            }
        }
        // Already in key order (the key column sorts bytewise, as `str` does).
        Ok(listing)
    }

    async fn get(&self, key: &LeaseKey) -> Result<Option<Lease>, StoreError> {
        let row = self
            .query(&self.sql.get)
            .bind(&self.namespace)
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error(e, "get lease", Some(key.as_str())))?;
        row.as_ref().map(decode_one).transpose()
    }

    async fn create_if_absent(&self, lease: &Lease) -> Result<Race<Lease>, StoreError> {
        let key = lease.key.as_str();
        let with_key = |e: StoreError| e.with_lease_key(key);
        let counter = to_bigint("counter", lease.counter).map_err(with_key)?;
        let switches = to_bigint(
            "owner_switches_since_checkpoint",
            lease.owner_switches_since_checkpoint,
        )
        .map_err(with_key)?;
        let sub = sub_sequence(&lease.checkpoint).map_err(with_key)?;
        let pending = lease.pending_checkpoint.as_ref();
        let pending_sub = pending
            .map(|p| sub_sequence(&p.position))
            .transpose()
            .map_err(with_key)?;
        let range = lease.hash_key_range;
        let query = self
            .query(&self.sql.create_if_absent)
            .bind(&self.namespace)
            .bind(key)
            .bind(lease.owner.as_ref().map(|o| o.as_str().to_owned()))
            .bind(counter)
            .bind(lease.checkpoint.stored_text().to_owned())
            .bind(sub)
            .bind(pending.map(|p| p.position.stored_text().to_owned()))
            .bind(pending_sub)
            .bind(pending.and_then(|p| p.state.clone()))
            .bind(switches)
            .bind(shard_texts(&lease.parent_shard_ids))
            .bind(shard_texts(&lease.child_shard_ids))
            .bind(range.map(|r| r.start().to_string()))
            .bind(range.map(|r| r.end().to_string()))
            .bind(
                lease
                    .checkpoint_owner
                    .as_ref()
                    .map(|o| o.as_str().to_owned()),
            );
        self.fetch_lease(query, "create lease", &lease.key).await
    }

    async fn take(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, StoreError> {
        let Some(counter) = expected(expected_counter) else {
            return Ok(Race::Lost);
        };
        let query = self
            .query(&self.sql.take)
            .bind(&self.namespace)
            .bind(key.as_str())
            .bind(new_owner.as_str())
            .bind(counter);
        self.fetch_lease(query, "take lease", key).await
    }

    async fn renew(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<u64>, StoreError> {
        let Some(counter) = expected(expected_counter) else {
            return Ok(Race::Lost);
        };
        let row = self
            .query(&self.sql.renew)
            .bind(&self.namespace)
            .bind(key.as_str())
            .bind(owner.as_str())
            .bind(counter)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error(e, "renew lease", Some(key.as_str())))?;
        let Some(row) = row else {
            return Ok(Race::Lost);
        };
        let counter: i64 = row
            .try_get(0)
            .map_err(|e| store_error(e, "renew lease", Some(key.as_str())))?;
        // The row matched a non-negative expected counter, so the new one is positive.
        Ok(Race::Won(counter.unsigned_abs()))
    }

    async fn renew_many(
        &self,
        owner: &WorkerId,
        leases: &[(LeaseKey, u64)],
    ) -> Vec<Result<Race<u64>, StoreError>> {
        // Counters that cannot be stored cannot match; they are left out of the statement and
        // lose below.
        let (keys, counters): (Vec<String>, Vec<i64>) = leases
            .iter()
            .filter_map(|(key, counter)| Some((key.as_str().to_owned(), expected(*counter)?)))
            .unzip();
        if keys.is_empty() {
            return leases.iter().map(|_| Ok(Race::Lost)).collect();
        }
        let rows = self
            .query(&self.sql.renew_many)
            .bind(&self.namespace)
            .bind(keys)
            .bind(counters)
            .bind(owner.as_str())
            .fetch_all(&self.pool)
            .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                let err = store_error(e, "renew leases", None);
                return leases.iter().map(|_| Err(err.clone())).collect();
            }
        };
        // One row per renewed lease: its key and new counter. A key listed twice is renewed at
        // most once; the first entry whose counter matches wins.
        let mut renewed: HashMap<String, i64> = HashMap::with_capacity(rows.len());
        for row in &rows {
            match (row.try_get::<String, _>(0), row.try_get::<i64, _>(1)) {
                (Ok(key), Ok(counter)) => {
                    renewed.insert(key, counter);
                }
                (Err(e), _) | (_, Err(e)) => {
                    let err = store_error(e, "renew leases", None);
                    return leases.iter().map(|_| Err(err.clone())).collect();
                }
            }
        }
        leases
            .iter()
            .map(|(key, counter)| {
                let new = renewed.get(key.as_str()).copied();
                match new {
                    Some(new) if expected(*counter).map(|c| c + 1) == Some(new) => {
                        renewed.remove(key.as_str());
                        Ok(Race::Won(new.unsigned_abs()))
                    }
                    _ => Ok(Race::Lost),
                }
            })
            .collect()
    }

    async fn evict(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<Lease>, StoreError> {
        let Some(counter) = expected(expected_counter) else {
            return Ok(Race::Lost);
        };
        let query = self
            .query(&self.sql.evict)
            .bind(&self.namespace)
            .bind(key.as_str())
            .bind(owner.as_str())
            .bind(counter);
        self.fetch_lease(query, "evict lease", key).await
    }

    async fn update_checkpoint(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        update: &CheckpointUpdate,
    ) -> Result<Race<Lease>, StoreError> {
        let Some(query) = self.checkpoint_query(key, owner, expected_counter, update)? else {
            return Ok(Race::Lost);
        };
        let outcome = self.fetch_lease(query, "update checkpoint", key).await?;
        if outcome.is_won() {
            return Ok(outcome);
        }
        // Nothing written: the lease moved on, or the checkpoint would go backwards. Read once
        // to tell which; the write itself was already conditional on both.
        match self.get(key).await? {
            Some(stored)
                if stored.counter == expected_counter
                    && stored.is_held_by(owner)
                    && update.checkpoint.cmp_progress(&stored.checkpoint).is_lt() =>
            {
                Err(StoreError::new(
                    StoreErrorKind::CheckpointRegression,
                    format!(
                        "checkpoint {} is behind the stored {}",
                        update.checkpoint, stored.checkpoint
                    ),
                )
                .with_lease_key(key.as_str()))
            }
            _ => Ok(Race::Lost),
        }
    }

    async fn mark_ended(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        children: &[ShardId],
    ) -> Result<Race<Lease>, StoreError> {
        let Some(counter) = expected(expected_counter) else {
            return Ok(Race::Lost);
        };
        let query = self
            .query(&self.sql.mark_ended)
            .bind(&self.namespace)
            .bind(key.as_str())
            .bind(owner.as_str())
            .bind(counter)
            .bind(shard_texts(children));
        self.fetch_lease(query, "mark shard ended", key).await
    }

    async fn request_handoff(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        holder: &WorkerId,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, StoreError> {
        shardwise_lease_core::validate_handoff(holder, new_owner)?;
        let Some(counter) = expected(expected_counter) else {
            return Ok(Race::Lost);
        };
        let query = self
            .query(&self.sql.request_handoff)
            .bind(&self.namespace)
            .bind(key.as_str())
            .bind(holder.as_str())
            .bind(new_owner.as_str())
            .bind(counter);
        self.fetch_lease(query, "request a lease hand-off", key)
            .await
    }

    async fn reset_checkpoint(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        checkpoint: &Checkpoint,
    ) -> Result<Race<Lease>, StoreError> {
        let Some(counter) = expected(expected_counter) else {
            return Ok(Race::Lost);
        };
        let sub = sub_sequence(checkpoint).map_err(|e| e.with_lease_key(key.as_str()))?;
        let query = self
            .query(&self.sql.reset_checkpoint)
            .bind(&self.namespace)
            .bind(key.as_str())
            .bind(counter)
            .bind(checkpoint.stored_text().to_owned())
            .bind(sub);
        self.fetch_lease(query, "reset checkpoint", key).await
    }

    async fn delete(&self, key: &LeaseKey, expected_counter: u64) -> Result<Race<()>, StoreError> {
        let Some(counter) = expected(expected_counter) else {
            return Ok(Race::Lost);
        };
        let done = self
            .query(&self.sql.delete)
            .bind(&self.namespace)
            .bind(key.as_str())
            .bind(counter)
            .execute(&self.pool)
            .await
            .map_err(|e| store_error(e, "delete lease", Some(key.as_str())))?;
        Ok(if done.rows_affected() == 1 {
            Race::Won(())
        } else {
            Race::Lost
        })
    }

    async fn heartbeat(
        &self,
        worker: &WorkerId,
        expected: Option<u64>,
    ) -> Result<Race<u64>, StoreError> {
        let what = "heartbeat";
        let Some(expected) = expected else {
            return self
                .increment_member(worker.as_str(), what)
                .await
                .map(Race::Won);
        };
        let Some(expected) = self::expected(expected) else {
            return Ok(Race::Lost);
        };
        let row = self
            .query(&self.sql.heartbeat_at)
            .bind(&self.sql.table_name)
            .bind(&self.namespace)
            .bind(worker.as_str())
            .bind(expected)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error(e, what, None))?;
        let Some(row) = row else {
            return Ok(Race::Lost);
        };
        let value: i64 = row.try_get(0).map_err(|e| store_error(e, what, None))?;
        u64::try_from(value).map(Race::Won).map_err(|_| {
            StoreError::new(
                StoreErrorKind::Corrupt,
                format!("{what}: negative counter {value}"),
            )
        })
    }

    async fn membership(&self) -> Result<Membership, StoreError> {
        let what = "read the membership";
        let rows: Vec<PgRow> = self
            .query(&self.sql.membership)
            .bind(&self.sql.table_name)
            .bind(&self.namespace)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| store_error(e, what, None))?;
        let mut membership = Membership::default();
        for row in &rows {
            let worker: String = row.try_get(0).map_err(|e| store_error(e, what, None))?;
            let value: i64 = row.try_get(1).map_err(|e| store_error(e, what, None))?;
            let corrupt = |reason: String| {
                StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!("membership row {worker:?}: {reason}"),
                )
            };
            let value =
                u64::try_from(value).map_err(|_| corrupt(format!("negative counter {value}")))?;
            if worker.is_empty() {
                membership.version = value;
            } else {
                let id = WorkerId::new(worker.as_str()).map_err(|e| corrupt(e.to_string()))?;
                membership.heartbeats.insert(id, value);
            }
        }
        Ok(membership)
    }

    async fn bump_version(&self) -> Result<u64, StoreError> {
        self.increment_member("", "bump the table version").await
    }

    async fn leave(
        &self,
        worker: &WorkerId,
        expected_heartbeat: u64,
    ) -> Result<Race<()>, StoreError> {
        let Some(heartbeat) = expected(expected_heartbeat) else {
            return Ok(Race::Lost);
        };
        let done = self
            .query(&self.sql.leave)
            .bind(&self.sql.table_name)
            .bind(&self.namespace)
            .bind(worker.as_str())
            .bind(heartbeat)
            .execute(&self.pool)
            .await
            .map_err(|e| store_error(e, "leave the membership", None))?;
        Ok(if done.rows_affected() == 1 {
            Race::Won(())
        } else {
            Race::Lost
        })
    }
}
