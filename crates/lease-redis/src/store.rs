//! The `LeaseStore` on Redis.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{FromRedisValue, Script, ScriptInvocation};
use shardwise_lease_core::{
    Checkpoint, CheckpointUpdate, Lease, LeaseKey, LeaseListing, LeaseStore, Membership, Race,
    ShardId, StoreError, StoreErrorKind, WorkerId,
};

use crate::config::RedisConfig;
use crate::error::store_error;
use crate::fields::{decode, encode, shard_list};
use crate::prefix::KeyPrefix;
use crate::scripts::Scripts;

/// Leases read per page by [`LeaseStore::list`].
const LIST_PAGE: usize = 1_000;

/// A [`LeaseStore`] on Redis: one hash per lease, a sorted set indexing the keys, every
/// compare-and-set one Lua script, [`LeaseStore::renew_many`] one script call for any number of
/// leases. See the crate documentation for the key layout.
///
/// ```no_run
/// # async fn run() -> Result<(), shardwise_lease_core::StoreError> {
/// use shardwise_lease_core::LeaseStore;
/// use shardwise_lease_redis::{RedisConfig, RedisLeaseStore};
///
/// let config = RedisConfig::builder("redis://127.0.0.1:6379", "orders-app").build()?;
/// let store = RedisLeaseStore::connect(&config).await?;
/// let listing = store.list().await?;
/// println!("{} leases", listing.leases.len());
/// # Ok(())
/// # }
/// ```
pub struct RedisLeaseStore {
    connection: ConnectionManager,
    prefix: KeyPrefix,
    scripts: Scripts,
    calls: AtomicU64,
}

impl fmt::Debug for RedisLeaseStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection holds the password; show only what identifies the leases.
        f.debug_struct("RedisLeaseStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

enum Written {
    Won(Vec<Vec<u8>>),
    Lost,
    Regression { stored: String, sub: String },
}

impl RedisLeaseStore {
    /// Makes a store for `config`. The connection is opened on first use and re-opened after
    /// it breaks, so this does not contact the server. Must run inside a Tokio runtime.
    pub async fn connect(config: &RedisConfig) -> Result<Self, StoreError> {
        let client = config.client()?;
        let connection = ConnectionManager::new_lazy_with_config(client, config.manager_config())
            .map_err(|e| store_error(e, "set up the connection", None))?;
        Ok(Self {
            connection,
            prefix: config.prefix().clone(),
            scripts: Scripts::new(),
            calls: AtomicU64::new(0),
        })
    }

    /// The prefix of this store's keys.
    pub fn prefix(&self) -> &KeyPrefix {
        &self.prefix
    }

    /// How many commands (script calls and others) this store has sent; each is one round trip
    /// (plus one `SCRIPT LOAD` the first time a script meets a server that does not know it).
    pub fn commands_sent(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Deletes every lease under this store's prefix, whatever its state, and returns how many
    /// there were. Meant for an operator removing an application, and for tests cleaning up.
    pub async fn delete_all_leases(&self) -> Result<u64, StoreError> {
        let what = "delete every lease under the prefix";
        let mut deleted = 0;
        loop {
            let keys = self.index_page("-", what).await?;
            if keys.is_empty() {
                self.calls.fetch_add(1, Ordering::Relaxed);
                let mut conn = self.connection.clone();
                let () = redis::cmd("DEL")
                    .arg(self.prefix.members_key())
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| store_error(e, what, None))?;
                return Ok(deleted);
            }
            let mut hashes: Vec<String> = keys.iter().map(|k| self.prefix.lease_key(k)).collect();
            hashes.push(self.prefix.index_key());
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut conn = self.connection.clone();
            // Deletes this page's hashes and, with the index last, the index as a whole once it
            // is the final page (ZREM of the page keeps later pages reachable otherwise).
            let mut pipe = redis::pipe();
            pipe.atomic();
            pipe.del(&hashes[..hashes.len() - 1]);
            pipe.zrem(self.prefix.index_key(), &keys);
            let () = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| store_error(e, what, None))?;
            deleted += keys.len() as u64;
        }
    }

    async fn index_page(&self, after: &str, what: &str) -> Result<Vec<String>, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.connection.clone();
        redis::cmd("ZRANGEBYLEX")
            .arg(self.prefix.index_key())
            .arg(after)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(LIST_PAGE)
            .query_async(&mut conn)
            .await
            .map_err(|e| store_error(e, what, None))
    }

    /// Increments the membership field `field` (`""` for the table version).
    async fn increment_member(&self, field: &str, what: &str) -> Result<u64, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.connection.clone();
        let value: i64 = redis::cmd("HINCRBY")
            .arg(self.prefix.members_key())
            .arg(field)
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(|e| store_error(e, what, None))?;
        u64::try_from(value).map_err(|_| {
            StoreError::new(
                StoreErrorKind::Corrupt,
                format!("{what}: negative counter {value}"),
            )
        })
    }

    async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
        what: &str,
        key: Option<&LeaseKey>,
    ) -> Result<T, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.connection.clone();
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| store_error(e, what, key.map(LeaseKey::as_str)))
    }

    /// Runs a write script on one lease and reads its `{'won', …}` / `{'lost'}` answer.
    async fn write(
        &self,
        script: &Script,
        key: &LeaseKey,
        args: &[Vec<u8>],
        what: &str,
    ) -> Result<Written, StoreError> {
        let mut invocation = script.key(self.prefix.lease_key(key.as_str()));
        // Creating a lease also adds it to the index.
        if std::ptr::eq(script, &self.scripts.create) {
            invocation.key(self.prefix.index_key());
        }
        for arg in args {
            invocation.arg(arg.as_slice());
        }
        let mut reply: Vec<Vec<u8>> = self.invoke(&invocation, what, Some(key)).await?;
        let tag = if reply.is_empty() {
            Vec::new()
        } else {
            reply.remove(0)
        };
        match tag.as_slice() {
            b"won" => Ok(Written::Won(reply)),
            b"lost" => Ok(Written::Lost),
            b"regression" if reply.len() == 2 => Ok(Written::Regression {
                stored: String::from_utf8_lossy(&reply[0]).into_owned(),
                sub: String::from_utf8_lossy(&reply[1]).into_owned(),
            }),
            other => Err(StoreError::new(
                StoreErrorKind::Unexpected,
                format!(
                    "{what}: unexpected script answer {:?}",
                    String::from_utf8_lossy(other)
                ),
            )
            .with_lease_key(key.as_str())),
        }
    }

    async fn write_lease(
        &self,
        script: &Script,
        key: &LeaseKey,
        args: &[Vec<u8>],
        what: &str,
    ) -> Result<Race<Lease>, StoreError> {
        match self.write(script, key, args, what).await? {
            Written::Won(flat) => decode(key.as_str(), flat)
                .map(Race::Won)
                .map_err(|c| StoreError::corrupt(c.raw_key, c.reason)),
            Written::Lost => Ok(Race::Lost),
            Written::Regression { .. } => Err(StoreError::new(
                StoreErrorKind::Unexpected,
                format!("{what}: unexpected regression answer"),
            )),
        }
    }
}

fn bytes(text: impl ToString) -> Vec<u8> {
    text.to_string().into_bytes()
}

#[async_trait]
impl LeaseStore for RedisLeaseStore {
    async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        // Keys are created with the first lease; check that the server answers.
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.connection.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(|e| store_error(e, "reach the server", None))
    }

    async fn list(&self) -> Result<LeaseListing, StoreError> {
        let what = "list leases";
        let mut listing = LeaseListing::default();
        let mut after = "-".to_owned();
        loop {
            let keys = self.index_page(&after, what).await?;
            let Some(last) = keys.last() else {
                break;
            };
            after = format!("({last}");
            let mut invocation = self.scripts.read.prepare_invoke();
            for key in &keys {
                invocation.key(self.prefix.lease_key(key));
            }
            let hashes: Vec<Vec<Vec<u8>>> = self.invoke(&invocation, what, None).await?;
            for (key, flat) in keys.iter().zip(hashes) {
                // Deleted between reading the index and the hashes: no longer a lease.
                if flat.is_empty() {
                    continue;
                }
                match decode(key, flat) {
                    Ok(lease) if lease.key.as_str() == key => listing.leases.push(lease),
                    Ok(lease) => listing.corrupt.push(shardwise_lease_core::CorruptLease {
                        raw_key: key.clone(),
                        reason: format!("the hash holds the key {:?}", lease.key.as_str()),
                    }),
                    Err(corrupt) => listing.corrupt.push(corrupt),
                }
            }
            if keys.len() < LIST_PAGE {
                break;
            }
        }
        Ok(listing)
    }

    async fn get(&self, key: &LeaseKey) -> Result<Option<Lease>, StoreError> {
        let invocation = self.scripts.read.key(self.prefix.lease_key(key.as_str()));
        let mut hashes: Vec<Vec<Vec<u8>>> =
            self.invoke(&invocation, "get lease", Some(key)).await?;
        match hashes.pop() {
            Some(flat) if !flat.is_empty() => decode(key.as_str(), flat)
                .map(Some)
                .map_err(|c| StoreError::corrupt(c.raw_key, c.reason)),
            _ => Ok(None),
        }
    }

    async fn create_if_absent(&self, lease: &Lease) -> Result<Race<Lease>, StoreError> {
        if i64::try_from(lease.counter).is_err()
            || i64::try_from(lease.owner_switches_since_checkpoint).is_err()
        {
            // HINCRBY works on signed 64-bit integers.
            return Err(StoreError::new(
                StoreErrorKind::InvalidArgument,
                format!("counters above {} cannot be stored", i64::MAX),
            )
            .with_lease_key(lease.key.as_str()));
        }
        let mut args = vec![bytes(lease.key.as_str())];
        for (name, value) in encode(lease) {
            args.push(name.as_bytes().to_vec());
            args.push(value);
        }
        self.write_lease(&self.scripts.create, &lease.key, &args, "create lease")
            .await
    }

    async fn take(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, StoreError> {
        let args = [bytes(expected_counter), bytes(new_owner.as_str())];
        self.write_lease(&self.scripts.take, key, &args, "take lease")
            .await
    }

    async fn renew(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<u64>, StoreError> {
        let mut invocation = self.scripts.renew.key(self.prefix.lease_key(key.as_str()));
        invocation.arg(expected_counter).arg(owner.as_str());
        let counter: Option<u64> = self.invoke(&invocation, "renew lease", Some(key)).await?;
        Ok(counter.map_or(Race::Lost, Race::Won))
    }

    async fn renew_many(
        &self,
        owner: &WorkerId,
        leases: &[(LeaseKey, u64)],
    ) -> Vec<Result<Race<u64>, StoreError>> {
        if leases.is_empty() {
            return Vec::new();
        }
        let mut invocation = self.scripts.renew_many.prepare_invoke();
        invocation.arg(owner.as_str());
        for (key, counter) in leases {
            invocation.key(self.prefix.lease_key(key.as_str()));
            invocation.arg(*counter);
        }
        let counters: Result<Vec<i64>, StoreError> =
            self.invoke(&invocation, "renew leases", None).await;
        match counters {
            Ok(counters) if counters.len() == leases.len() => counters
                .into_iter()
                .map(|c| Ok(u64::try_from(c).map_or(Race::Lost, Race::Won)))
                .collect(),
            Ok(counters) => {
                let err = StoreError::new(
                    StoreErrorKind::Unexpected,
                    format!(
                        "renew leases: {} answers for {} leases",
                        counters.len(),
                        leases.len()
                    ),
                );
                leases.iter().map(|_| Err(err.clone())).collect()
            }
            Err(err) => leases.iter().map(|_| Err(err.clone())).collect(),
        }
    }

    async fn evict(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<Lease>, StoreError> {
        let args = [bytes(expected_counter), bytes(owner.as_str())];
        self.write_lease(&self.scripts.evict, key, &args, "evict lease")
            .await
    }

    async fn update_checkpoint(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        update: &CheckpointUpdate,
    ) -> Result<Race<Lease>, StoreError> {
        update.validate()?;
        let pending = update.pending.as_ref();
        let state = pending.and_then(|p| p.state.clone());
        let args = [
            bytes(expected_counter),
            bytes(owner.as_str()),
            bytes(update.checkpoint.stored_text()),
            bytes(update.checkpoint.stored_sub_sequence()),
            pending.map_or_else(Vec::new, |p| bytes(p.position.stored_text())),
            pending.map_or_else(Vec::new, |p| bytes(p.position.stored_sub_sequence())),
            state.clone().unwrap_or_default(),
            bytes(if pending.is_some() { "1" } else { "0" }),
            bytes(if state.is_some() { "1" } else { "0" }),
        ];
        let what = "update checkpoint";
        match self
            .write(&self.scripts.checkpoint, key, &args, what)
            .await?
        {
            Written::Won(flat) => decode(key.as_str(), flat)
                .map(Race::Won)
                .map_err(|c| StoreError::corrupt(c.raw_key, c.reason)),
            Written::Lost => Ok(Race::Lost),
            Written::Regression { stored, sub } => Err(StoreError::new(
                StoreErrorKind::CheckpointRegression,
                format!(
                    "checkpoint {} is behind the stored {stored}/{sub}",
                    update.checkpoint
                ),
            )
            .with_lease_key(key.as_str())),
        }
    }

    async fn mark_ended(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        children: &[ShardId],
    ) -> Result<Race<Lease>, StoreError> {
        let args = [
            bytes(expected_counter),
            bytes(owner.as_str()),
            bytes(shard_list(children)),
        ];
        self.write_lease(&self.scripts.mark_ended, key, &args, "mark shard ended")
            .await
    }

    async fn request_handoff(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        holder: &WorkerId,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, StoreError> {
        shardwise_lease_core::validate_handoff(holder, new_owner)?;
        let args = [
            bytes(expected_counter),
            bytes(holder.as_str()),
            bytes(new_owner.as_str()),
        ];
        self.write_lease(
            &self.scripts.request_handoff,
            key,
            &args,
            "request a lease hand-off",
        )
        .await
    }

    async fn reset_checkpoint(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        checkpoint: &Checkpoint,
    ) -> Result<Race<Lease>, StoreError> {
        let args = [
            bytes(expected_counter),
            bytes(checkpoint.stored_text()),
            bytes(checkpoint.stored_sub_sequence()),
        ];
        self.write_lease(
            &self.scripts.reset_checkpoint,
            key,
            &args,
            "reset checkpoint",
        )
        .await
    }

    async fn delete(&self, key: &LeaseKey, expected_counter: u64) -> Result<Race<()>, StoreError> {
        let mut invocation = self.scripts.delete.key(self.prefix.lease_key(key.as_str()));
        invocation
            .key(self.prefix.index_key())
            .arg(expected_counter)
            .arg(key.as_str());
        let deleted: i64 = self.invoke(&invocation, "delete lease", Some(key)).await?;
        Ok(if deleted == 1 {
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
        let Some(expected) = expected else {
            return self
                .increment_member(worker.as_str(), "heartbeat")
                .await
                .map(Race::Won);
        };
        let mut invocation = self.scripts.heartbeat_at.key(self.prefix.members_key());
        invocation.arg(worker.as_str()).arg(expected);
        let beat: i64 = self.invoke(&invocation, "heartbeat", None).await?;
        Ok(u64::try_from(beat).map_or(Race::Lost, Race::Won))
    }

    async fn membership(&self) -> Result<Membership, StoreError> {
        let what = "read the membership";
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.connection.clone();
        let fields: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.prefix.members_key())
            .query_async(&mut conn)
            .await
            .map_err(|e| store_error(e, what, None))?;
        let mut membership = Membership::default();
        for (field, value) in fields {
            let corrupt = |reason: &str| {
                StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!(
                        "membership field {:?}: {reason}",
                        String::from_utf8_lossy(&field)
                    ),
                )
            };
            let value: u64 = std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| corrupt("not a counter"))?;
            if field.is_empty() {
                membership.version = value;
                continue;
            }
            let worker = String::from_utf8(field.clone()).map_err(|_| corrupt("not UTF-8"))?;
            let worker = WorkerId::new(worker).map_err(|e| corrupt(&e.to_string()))?;
            membership.heartbeats.insert(worker, value);
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
        let mut invocation = self.scripts.leave.key(self.prefix.members_key());
        invocation.arg(worker.as_str()).arg(expected_heartbeat);
        let removed: i64 = self
            .invoke(&invocation, "leave the membership", None)
            .await?;
        Ok(if removed == 1 {
            Race::Won(())
        } else {
            Race::Lost
        })
    }
}
