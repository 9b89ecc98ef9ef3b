//! `LeaseStore` on DynamoDB: every write a conditional write, as the KCL does it.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ReturnValue, TransactWriteItem, Update,
};
use futures_util::stream::{self, StreamExt};
use shardwise_lease_core::{
    Checkpoint, CheckpointUpdate, Lease, LeaseKey, LeaseListing, LeaseStore, Membership, Race,
    ShardId, StoreError, StoreErrorKind, WorkerId,
};

use crate::error::{Failure, classify, fault};
use crate::item::{self, Item, Row, attr, n, s, ss};
use crate::table::{self, TableName, TableOptions};

/// Every write's condition starts here: the row is a lease (KCL 3.5 keeps other kinds of rows in
/// the same table, which must never be touched).
const IS_LEASE: &str = "(attribute_not_exists(entityType) OR entityType = :lease_type)";

/// The writer holds the lease: it is the checkpoint owner of a lease being handed off, or the
/// owner of one that is not.
/// (AND binds tighter than OR, so no inner parentheses: each level of them costs the DynamoDB
/// emulators' expression parsers dearly, see `not_behind`.)
const HELD_BY_OWNER: &str =
    "(checkpointOwner = :owner OR attribute_not_exists(checkpointOwner) AND leaseOwner = :owner)";

/// The key of the membership item: one item in the lease table, of `entityType`
/// [`MEMBERSHIP_TYPE`] (so that lease listings, and KCL 3.5 workers, skip it), holding the table
/// version in `version` and each worker's heartbeat in an attribute `hb:<worker id>`. No shard
/// id or stream-qualified lease key starts with `__`.
const MEMBERSHIP_KEY: &str = "__shardwise_membership";
const MEMBERSHIP_TYPE: &str = "SHARDWISE_MEMBERSHIP";
const VERSION_ATTR: &str = "version";
const HEARTBEAT_PREFIX: &str = "hb:";

/// The parts of a checkpoint's conditional update, for an `UpdateItem` or a transaction's
/// `Update`.
struct CheckpointWrite {
    expression: String,
    condition: String,
    values: HashMap<String, AttributeValue>,
}

impl CheckpointWrite {
    /// The update of `update`, on condition that `owner` holds the lease at `expected_counter`
    /// and that the checkpoint does not move backwards.
    fn new(
        owner: &WorkerId,
        expected_counter: u64,
        update: &CheckpointUpdate,
    ) -> Result<Self, StoreError> {
        update.validate()?;
        let mut set = vec![
            "leaseCounter = :next",
            "checkpoint = :checkpoint",
            "checkpointSubSequenceNumber = :checkpoint_sub",
            "ownerSwitchesSinceCheckpoint = :zero",
        ];
        let mut remove = Vec::new();
        let mut values: HashMap<String, AttributeValue> = [
            (":expected", n(expected_counter)),
            (":next", n(expected_counter.saturating_add(1))),
            (":lease_type", s("LEASE")),
            (":owner", s(owner.as_str())),
            (":checkpoint", s(update.checkpoint.stored_text())),
            (
                ":checkpoint_sub",
                n(update.checkpoint.stored_sub_sequence()),
            ),
            (":zero", n(0)),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        match &update.pending {
            Some(pending) => {
                set.push("pendingCheckpoint = :pending");
                set.push("pendingCheckpointSubSequenceNumber = :pending_sub");
                values.insert(":pending".to_owned(), s(pending.position.stored_text()));
                values.insert(
                    ":pending_sub".to_owned(),
                    n(pending.position.stored_sub_sequence()),
                );
                match &pending.state {
                    Some(state) => {
                        set.push("pendingCheckpointState = :pending_state");
                        values.insert(
                            ":pending_state".to_owned(),
                            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(
                                state.clone(),
                            )),
                        );
                    }
                    None => remove.push(attr::PENDING_STATE),
                }
            }
            None => remove.extend([attr::PENDING, attr::PENDING_SUB, attr::PENDING_STATE]),
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let mut condition = format!("leaseCounter = :expected AND {HELD_BY_OWNER} AND {IS_LEASE}");
        if let Some((progress, progress_values)) =
            DynamoDbLeaseStore::not_behind(&update.checkpoint)
        {
            condition.push_str(" AND ");
            condition.push_str(&progress);
            values.extend(
                progress_values
                    .into_iter()
                    .map(|(name, value)| (name.to_owned(), value)),
            );
        }
        Ok(Self {
            expression,
            condition,
            values,
        })
    }
}

/// The outcome of [`DynamoDbLeaseStore::transact_checkpoint`] when DynamoDB answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transacted {
    /// Everything was written; the lease's new counter.
    Committed(u64),
    /// The lease is not held by the writer at the expected counter, or the checkpoint would
    /// move backwards: nothing was written.
    LeaseMoved,
    /// DynamoDB cancelled the transaction because of the application's items (a failed
    /// condition of theirs, say): nothing was written. The reasons, item by item.
    Refused(String),
}

/// How many application items one transactional checkpoint can carry: DynamoDB allows 100
/// actions in a `TransactWriteItems`, and one is the lease's update.
pub const MAX_TRANSACTION_ITEMS: usize = 99;

/// How many renewals of one `renew_many` call are in flight at once.
const RENEW_CONCURRENCY: usize = 32;

/// A [`LeaseStore`] on a DynamoDB table with the Java KCL 2.x layout.
///
/// The table has the partition key `leaseKey` (S) and the KCL's attributes with the KCL's types,
/// so an application can move between the Java KCL 2.x and shardwise without losing its
/// checkpoints. Attributes written by KCL 3.x are tolerated, and KCL 3.5 rows that are not
/// leases (`entityType` other than `LEASE`) are skipped, never rewritten or deleted.
///
/// Every write is one conditional `PutItem`, `UpdateItem` or `DeleteItem`; a failed condition is
/// [`Race::Lost`]. Reads are strongly consistent.
///
/// The membership record of workers that heartbeat (`Liveness::Heartbeat` in the consumer) is
/// one more item of the table, `__shardwise_membership`, of `entityType` `SHARDWISE_MEMBERSHIP`
/// (so that listings, and KCL 3.5 workers, skip it): a number `hb:<worker id>` per worker and
/// `version`. Workers that renew per lease read it, and write it only once it exists (a
/// shardwise worker heartbeats in the table: they then move the version too), so a table
/// shared only with Java KCL workers stays as the KCL wrote it.
///
/// # What it costs
///
/// | operation | DynamoDB calls |
/// | --- | --- |
/// | `renew`, `update_checkpoint`, `mark_ended`, `request_handoff`, `delete`, `create_if_absent`, `get` | 1 |
/// | `evict` | 1; 2 when it completes a hand-off or loses (a release, then a hand-over) |
/// | `renew_many` of N leases | N `UpdateItem` (DynamoDB has no conditional batch update; run 32 at a time) |
/// | `take` | 1; 2 when the lease was recorded as the taker's own (a restart with the same worker id) or when the take loses |
/// | `update_checkpoint` that is refused | 2 (the write, then a read to tell a lost race from a regression) |
/// | `list` | 1 `Scan` per 1 MB of table (about 4,000 leases) |
/// | `heartbeat`, `bump_version`, `leave`, `membership` | 1 (`UpdateItem`, or `GetItem` for `membership`) on the membership item; each write costs the item's size, about 50 bytes per worker |
///
/// A worker holding N leases with the KCL's default lease duration of 10 s renews every 3.3 s,
/// so it makes N / 3.3 `UpdateItem` calls per second, each one write unit for a lease item under
/// 1 KB: the same as the Java KCL 2.x. A worker that heartbeats makes one `UpdateItem` every
/// 3.3 s whatever it holds, and one `GetItem` per take round (5 s).
///
/// ```no_run
/// # async fn example(sdk_config: &aws_types::SdkConfig) -> Result<(), shardwise_lease_core::StoreError> {
/// use shardwise_lease_core::LeaseStore;
/// use shardwise_lease_dynamodb::DynamoDbLeaseStore;
///
/// let store = DynamoDbLeaseStore::from_sdk_config(sdk_config, "my-application")?;
/// store.create_table_if_missing().await?;
/// let listing = store.list().await?;
/// println!("{} leases", listing.leases.len());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DynamoDbLeaseStore {
    client: Client,
    table: TableName,
    options: TableOptions,
}

/// The attempt timeout of a client made by [`DynamoDbLeaseStore::from_sdk_config`], unless the
/// configuration sets one: 1 s (lease operations take milliseconds; below a worker's default
/// store timeout, so that the SDK's own retries fit in it).
pub const OPERATION_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// The operation timeout (all attempts of one call) of a client made by
/// [`DynamoDbLeaseStore::from_sdk_config`], unless the configuration sets one: 3 s.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

impl DynamoDbLeaseStore {
    /// A store on `table`, using a ready client.
    pub fn new(client: Client, table: impl Into<String>) -> Result<Self, StoreError> {
        Ok(Self {
            client,
            table: TableName::new(table)?,
            options: TableOptions::default(),
        })
    }

    /// A store on `table`, with a client made from the application's AWS configuration. The
    /// library never loads configuration itself.
    ///
    /// Timeouts the configuration leaves unset get this store's defaults, so that a call that
    /// never answers fails instead of stalling its caller: [`OPERATION_ATTEMPT_TIMEOUT`] per
    /// attempt and [`OPERATION_TIMEOUT`] per call, retries included. (A worker bounds each of its
    /// store calls more tightly still: `ConsumerConfig::store_timeout`.)
    pub fn from_sdk_config(
        config: &aws_types::SdkConfig,
        table: impl Into<String>,
    ) -> Result<Self, StoreError> {
        let defaults = TimeoutConfig::builder()
            .operation_attempt_timeout(OPERATION_ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT);
        let timeouts = match config.timeout_config() {
            Some(set) => set.to_builder().take_unset_from(defaults),
            None => defaults,
        };
        let client_config = aws_sdk_dynamodb::config::Builder::from(config)
            .timeout_config(timeouts.build())
            .build();
        Self::new(Client::from_conf(client_config), table)
    }

    /// Sets how the table is created when missing.
    pub fn with_table_options(mut self, options: TableOptions) -> Self {
        self.options = options;
        self
    }

    /// The table's name.
    pub fn table_name(&self) -> &TableName {
        &self.table
    }

    /// The DynamoDB client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn key(&self, key: &LeaseKey) -> (String, AttributeValue) {
        (attr::LEASE_KEY.to_owned(), s(key.as_str()))
    }

    /// [`LeaseStore::update_checkpoint`] and the application's `items` in one
    /// `TransactWriteItems`: all written, or none. The lease's update comes first, with the
    /// checkpoint's usual condition; `items` are the application's puts, updates, deletes and
    /// condition checks, on any tables of the same account and region, at most
    /// [`MAX_TRANSACTION_ITEMS`] and 4 MB in all. A transaction's writes cost twice the write
    /// units of plain ones. This is what makes exactly-once effects possible: see
    /// `shardwise::Checkpointer::commit`.
    ///
    /// `Err` when DynamoDB did not answer with a decision; a retryable error (a timeout, a
    /// broken connection) may hide a transaction that was applied. The SDK's own retries of
    /// one call carry one idempotency token, so they never apply it twice.
    pub async fn transact_checkpoint(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        update: &CheckpointUpdate,
        items: Vec<TransactWriteItem>,
    ) -> Result<Transacted, StoreError> {
        if items.len() > MAX_TRANSACTION_ITEMS {
            return Err(StoreError::new(
                StoreErrorKind::InvalidArgument,
                format!(
                    "{} items in one transactional checkpoint; DynamoDB allows {MAX_TRANSACTION_ITEMS} beside the lease",
                    items.len()
                ),
            ));
        }
        let write = CheckpointWrite::new(owner, expected_counter, update)?;
        let (name, value) = self.key(key);
        let lease_update = Update::builder()
            .table_name(self.table.as_str())
            .key(name, value)
            .update_expression(write.expression)
            .condition_expression(write.condition)
            .set_expression_attribute_values(Some(write.values))
            .build()
            .map_err(|e| {
                StoreError::new(
                    StoreErrorKind::InvalidArgument,
                    format!("transactional checkpoint: {e}"),
                )
            })?;
        let mut actions = Vec::with_capacity(items.len() + 1);
        actions.push(TransactWriteItem::builder().update(lease_update).build());
        actions.extend(items);
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await;
        let error = match sent {
            Ok(_) => return Ok(Transacted::Committed(expected_counter.saturating_add(1))),
            Err(error) => error,
        };
        if let Some(cancelled) = error.as_service_error().and_then(|e| match e {
            TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
            _ => None,
        }) {
            let reasons = cancelled.cancellation_reasons();
            let code = |r: &CancellationReason| r.code().unwrap_or("None").to_owned();
            let codes: Vec<String> = reasons.iter().map(code).collect();
            if codes.first().is_some_and(|c| c == "ConditionalCheckFailed") {
                return Ok(Transacted::LeaseMoved);
            }
            if codes.iter().any(|c| {
                c == "TransactionConflict"
                    || c == "ThrottlingError"
                    || c == "ProvisionedThroughputExceeded"
            }) {
                return Err(StoreError::new(
                    StoreErrorKind::Throttled,
                    format!("transactional checkpoint cancelled: {}", codes.join(", ")),
                )
                .with_lease_key(key.as_str()));
            }
            let refused = reasons
                .iter()
                .enumerate()
                .skip(1)
                .filter(|(_, r)| r.code().is_some_and(|c| c != "None"))
                .map(|(i, r)| {
                    format!(
                        "item {}: {}{}",
                        i - 1,
                        code(r),
                        r.message().map(|m| format!(" ({m})")).unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Ok(Transacted::Refused(refused));
        }
        Err(fault("TransactWriteItems (checkpoint)", error).with_lease_key(key.as_str()))
    }

    /// Adds 1 to the membership item's number attribute `name` (creating the item and the
    /// attribute when missing); returns the new value.
    async fn increment_member(
        &self,
        name: &str,
        expected: Option<u64>,
    ) -> Result<Race<u64>, StoreError> {
        let request = self
            .client
            .update_item()
            .table_name(self.table.as_str())
            .key(attr::LEASE_KEY, s(MEMBERSHIP_KEY))
            .update_expression("SET #type = :type ADD #n :one")
            .expression_attribute_names("#type", attr::ENTITY_TYPE)
            .expression_attribute_names("#n", name)
            .expression_attribute_values(":type", s(MEMBERSHIP_TYPE))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew);
        let request = match expected {
            Some(expected) => request
                .condition_expression("#n = :expected")
                .expression_attribute_values(":expected", n(expected)),
            None => request,
        };
        let out = match request.send().await {
            Ok(out) => out,
            Err(err) => {
                return match classify("UpdateItem", err) {
                    Failure::ConditionFailed => Ok(Race::Lost),
                    Failure::Fault(e) => Err(e),
                };
            }
        };
        match out.attributes().and_then(|a| a.get(name)) {
            Some(AttributeValue::N(value)) => value.parse().map(Race::Won).map_err(|_| {
                StoreError::corrupt(MEMBERSHIP_KEY, format!("{name} is not a counter: {value}"))
            }),
            other => Err(StoreError::corrupt(
                MEMBERSHIP_KEY,
                format!("{name} came back as {other:?}"),
            )),
        }
    }

    /// An `UpdateItem` on `key`, returning the new item, conditional on the counter (and on
    /// `holder` holding the lease).
    fn update(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        holder: Option<&WorkerId>,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        let (name, value) = self.key(key);
        let mut condition = format!("leaseCounter = :expected AND {IS_LEASE}");
        let mut request = self
            .client
            .update_item()
            .table_name(self.table.as_str())
            .key(name, value)
            .expression_attribute_values(":expected", n(expected_counter))
            .expression_attribute_values(":next", n(expected_counter.saturating_add(1)))
            .expression_attribute_values(":lease_type", s("LEASE"));
        if let Some(holder) = holder {
            condition.push_str(" AND ");
            condition.push_str(HELD_BY_OWNER);
            request = request.expression_attribute_values(":owner", s(holder.as_str()));
        }
        request
            .condition_expression(condition)
            .return_values(ReturnValue::AllNew)
    }

    /// Sends an update and reads the lease it returns; a failed condition is a lost race.
    async fn send_update(
        &self,
        operation: &'static str,
        request: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> Result<Race<Lease>, StoreError> {
        match request.send().await {
            Ok(out) => {
                let attributes = out.attributes.unwrap_or_default();
                item::parse_lease(&attributes).map(Race::Won)
            }
            Err(err) => match classify(operation, err) {
                Failure::ConditionFailed => Ok(Race::Lost),
                Failure::Fault(e) => Err(e),
            },
        }
    }

    /// A checkpoint write's condition that the stored checkpoint is not ahead of `new`.
    /// Sequence numbers are decimal strings without leading zeros, so a shorter one is smaller,
    /// and equal lengths compare as text (DynamoDB compares strings by their UTF-8 bytes).
    fn not_behind(new: &Checkpoint) -> Option<(String, Vec<(&'static str, AttributeValue)>)> {
        let starts = "checkpoint IN (:th, :latest, :at_ts)";
        let start_values = vec![
            (":th", s(Checkpoint::TRIM_HORIZON)),
            (":latest", s(Checkpoint::LATEST)),
            (":at_ts", s(Checkpoint::AT_TIMESTAMP)),
        ];
        match new {
            Checkpoint::ShardEnd => None,
            Checkpoint::TrimHorizon | Checkpoint::Latest | Checkpoint::AtTimestamp => {
                Some((starts.to_owned(), start_values))
            }
            Checkpoint::Before(_) | Checkpoint::At(_) => {
                let sequence = new.stored_text();
                let sub = new.stored_sub_sequence();
                let mut values = start_values;
                values.extend([
                    (":shard_end", s(Checkpoint::SHARD_END)),
                    (":seq", s(sequence)),
                    (":seq_len", n(sequence.len())),
                    (":sub", n(sub)),
                ]);
                // A missing sub-sequence number reads as 0, which is not behind a position in
                // the record, but is behind `Before` it.
                let missing_sub = if sub >= 0 {
                    " OR checkpoint = :seq AND attribute_not_exists(checkpointSubSequenceNumber)"
                } else {
                    ""
                };
                // One disjunction of conjunctions (AND binds tighter than OR): the same
                // condition with nested parentheses takes the DynamoDB emulator 100 ms to parse
                // (3 ms like this), which made checkpoints time out under load.
                let condition = format!(
                    "({starts} \
                     OR checkpoint <> :shard_end AND size(checkpoint) < :seq_len \
                     OR checkpoint <> :shard_end AND size(checkpoint) = :seq_len AND checkpoint < :seq \
                     OR checkpoint = :seq AND checkpointSubSequenceNumber <= :sub{missing_sub})"
                );
                Some((condition, values))
            }
        }
    }

    async fn renew_one(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<u64>, StoreError> {
        let (name, value) = self.key(key);
        let request = self
            .client
            .update_item()
            .table_name(self.table.as_str())
            .key(name, value)
            .update_expression("SET leaseCounter = :next")
            .condition_expression(format!(
                "leaseCounter = :expected AND {HELD_BY_OWNER} AND {IS_LEASE}"
            ))
            .expression_attribute_values(":lease_type", s("LEASE"))
            .expression_attribute_values(":expected", n(expected_counter))
            .expression_attribute_values(":next", n(expected_counter.saturating_add(1)))
            .expression_attribute_values(":owner", s(owner.as_str()))
            .return_values(ReturnValue::None);
        match request.send().await {
            Ok(_) => Ok(Race::Won(expected_counter.saturating_add(1))),
            Err(err) => match classify("UpdateItem (renew)", err) {
                Failure::ConditionFailed => Ok(Race::Lost),
                Failure::Fault(e) => Err(e.with_lease_key(key.as_str())),
            },
        }
    }
}

#[async_trait]
impl LeaseStore for DynamoDbLeaseStore {
    async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        table::create_if_missing(&self.client, &self.table, &self.options).await
    }

    async fn list(&self) -> Result<LeaseListing, StoreError> {
        let mut listing = LeaseListing::default();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(self.table.as_str())
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|err| fault("Scan", err))?;
            for raw in out.items() {
                match item::parse(raw) {
                    Ok(Row::Lease(lease)) => listing.leases.push(lease),
                    Ok(Row::NotALease) => {}
                    Err(corrupt) => listing.corrupt.push(corrupt),
                }
            }
            match out.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => break,
            }
        }
        listing.leases.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listing)
    }

    async fn get(&self, key: &LeaseKey) -> Result<Option<Lease>, StoreError> {
        let (name, value) = self.key(key);
        let out = self
            .client
            .get_item()
            .table_name(self.table.as_str())
            .key(name, value)
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| fault("GetItem", err))?;
        match out.item {
            None => Ok(None),
            Some(raw) => match item::parse(&raw) {
                Ok(Row::Lease(lease)) => Ok(Some(lease)),
                Ok(Row::NotALease) => Ok(None),
                Err(corrupt) => Err(StoreError::corrupt(corrupt.raw_key, corrupt.reason)),
            },
        }
    }

    async fn create_if_absent(&self, lease: &Lease) -> Result<Race<Lease>, StoreError> {
        let request = self
            .client
            .put_item()
            .table_name(self.table.as_str())
            .set_item(Some(item::item(lease)))
            .condition_expression("attribute_not_exists(leaseKey)");
        match request.send().await {
            Ok(_) => {
                let mut stored = lease.clone();
                stored.parent_shard_ids = shardwise_lease_core::sorted_set(stored.parent_shard_ids);
                stored.child_shard_ids = shardwise_lease_core::sorted_set(stored.child_shard_ids);
                Ok(Race::Won(stored))
            }
            Err(err) => match classify("PutItem", err) {
                Failure::ConditionFailed => Ok(Race::Lost),
                Failure::Fault(e) => Err(e.with_lease_key(lease.key.as_str())),
            },
        }
    }

    async fn take(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, StoreError> {
        // The usual case: the owner changes, which counts a switch. `checkpointOwner` (a KCL 3.x
        // handoff marker) goes, as the KCL does on a take.
        let switching = self
            .update(key, expected_counter, None)
            .update_expression(
                "SET leaseOwner = :new_owner, leaseCounter = :next \
                 ADD ownerSwitchesSinceCheckpoint :one REMOVE checkpointOwner",
            )
            .condition_expression(format!(
                "leaseCounter = :expected AND {IS_LEASE} \
                 AND (attribute_not_exists(leaseOwner) OR leaseOwner <> :new_owner)"
            ))
            .expression_attribute_values(":new_owner", s(new_owner.as_str()))
            .expression_attribute_values(":one", n(1));
        if let Race::Won(lease) = self.send_update("UpdateItem (take)", switching).await? {
            return Ok(Race::Won(lease));
        }
        // The lease may be recorded as the taker's own already (a restart with the same id).
        // (or the lease being handed to the taker, whose holder is gone).
        let retake = self
            .update(key, expected_counter, None)
            .update_expression("SET leaseCounter = :next REMOVE checkpointOwner")
            .condition_expression(format!(
                "leaseCounter = :expected AND {IS_LEASE} AND leaseOwner = :new_owner"
            ))
            .expression_attribute_values(":new_owner", s(new_owner.as_str()));
        self.send_update("UpdateItem (take)", retake).await
    }

    async fn renew(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<u64>, StoreError> {
        self.renew_one(key, owner, expected_counter).await
    }

    async fn renew_many(
        &self,
        owner: &WorkerId,
        leases: &[(LeaseKey, u64)],
    ) -> Vec<Result<Race<u64>, StoreError>> {
        let renewals: Vec<_> = leases
            .iter()
            .map(|(key, counter)| self.renew_one(key, owner, *counter))
            .collect();
        stream::iter(renewals)
            .buffered(RENEW_CONCURRENCY)
            .collect()
            .await
    }

    async fn evict(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<Lease>, StoreError> {
        // The usual case first: no hand-off pending, the lease goes free.
        let release = self
            .update(key, expected_counter, None)
            .update_expression("SET leaseCounter = :next REMOVE leaseOwner")
            .condition_expression(format!(
                "leaseCounter = :expected AND {IS_LEASE} \
                 AND leaseOwner = :owner AND attribute_not_exists(checkpointOwner)"
            ))
            .expression_attribute_values(":owner", s(owner.as_str()));
        if let Race::Won(lease) = self.send_update("UpdateItem (evict)", release).await? {
            return Ok(Race::Won(lease));
        }
        // A hand-off pending: the lease goes to the worker that asked for it.
        let hand_over = self
            .update(key, expected_counter, None)
            .update_expression("SET leaseCounter = :next REMOVE checkpointOwner")
            .condition_expression(format!(
                "leaseCounter = :expected AND {IS_LEASE} AND checkpointOwner = :owner"
            ))
            .expression_attribute_values(":owner", s(owner.as_str()));
        self.send_update("UpdateItem (hand over)", hand_over).await
    }

    async fn request_handoff(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        holder: &WorkerId,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, StoreError> {
        shardwise_lease_core::validate_handoff(holder, new_owner)?;
        let request = self
            .update(key, expected_counter, None)
            .update_expression(
                "SET leaseOwner = :new_owner, checkpointOwner = :owner, leaseCounter = :next \
                 ADD ownerSwitchesSinceCheckpoint :one",
            )
            .condition_expression(format!(
                "leaseCounter = :expected AND {IS_LEASE} \
                 AND leaseOwner = :owner AND attribute_not_exists(checkpointOwner)"
            ))
            .expression_attribute_values(":owner", s(holder.as_str()))
            .expression_attribute_values(":new_owner", s(new_owner.as_str()))
            .expression_attribute_values(":one", n(1));
        self.send_update("UpdateItem (request hand-off)", request)
            .await
    }

    async fn reset_checkpoint(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        checkpoint: &Checkpoint,
    ) -> Result<Race<Lease>, StoreError> {
        let request = self
            .update(key, expected_counter, None)
            .update_expression(
                "SET leaseCounter = :next, checkpoint = :checkpoint, \
                 checkpointSubSequenceNumber = :checkpoint_sub, \
                 ownerSwitchesSinceCheckpoint = :zero \
                 REMOVE leaseOwner, checkpointOwner, pendingCheckpoint, \
                 pendingCheckpointSubSequenceNumber, pendingCheckpointState",
            )
            .expression_attribute_values(":checkpoint", s(checkpoint.stored_text()))
            .expression_attribute_values(":checkpoint_sub", n(checkpoint.stored_sub_sequence()))
            .expression_attribute_values(":zero", n(0));
        self.send_update("UpdateItem (reset checkpoint)", request)
            .await
    }

    async fn update_checkpoint(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        update: &CheckpointUpdate,
    ) -> Result<Race<Lease>, StoreError> {
        let write = CheckpointWrite::new(owner, expected_counter, update)?;
        let (name, value) = self.key(key);
        let request = self
            .client
            .update_item()
            .table_name(self.table.as_str())
            .key(name, value)
            .update_expression(write.expression)
            .condition_expression(write.condition)
            .set_expression_attribute_values(Some(write.values))
            .return_values(ReturnValue::AllNew);
        match self.send_update("UpdateItem (checkpoint)", request).await? {
            Race::Won(lease) => Ok(Race::Won(lease)),
            Race::Lost => {
                // Lost the race, or refused because it would move backwards? If the lease is
                // still ours at the same counter, only the progress condition can have failed.
                match self.get(key).await? {
                    Some(stored)
                        if stored.counter == expected_counter && stored.is_held_by(owner) =>
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
        }
    }

    async fn mark_ended(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        children: &[ShardId],
    ) -> Result<Race<Lease>, StoreError> {
        let children = shardwise_lease_core::sorted_set(children.iter().cloned());
        let mut request = self
            .update(key, expected_counter, Some(owner))
            .expression_attribute_values(":shard_end", s(Checkpoint::SHARD_END))
            .expression_attribute_values(":zero", n(0));
        let base = "SET leaseCounter = :next, checkpoint = :shard_end, checkpointSubSequenceNumber = :zero, \
                    ownerSwitchesSinceCheckpoint = :zero";
        let removed =
            "pendingCheckpoint, pendingCheckpointSubSequenceNumber, pendingCheckpointState";
        request = if children.is_empty() {
            request.update_expression(format!("{base} REMOVE {removed}, childShardIds"))
        } else {
            request
                .update_expression(format!(
                    "{base}, childShardIds = :children REMOVE {removed}"
                ))
                .expression_attribute_values(":children", ss(&children))
        };
        self.send_update("UpdateItem (mark ended)", request).await
    }

    async fn delete(&self, key: &LeaseKey, expected_counter: u64) -> Result<Race<()>, StoreError> {
        let (name, value) = self.key(key);
        let request = self
            .client
            .delete_item()
            .table_name(self.table.as_str())
            .key(name, value)
            .condition_expression(format!("leaseCounter = :expected AND {IS_LEASE}"))
            .expression_attribute_values(":lease_type", s("LEASE"))
            .expression_attribute_values(":expected", n(expected_counter));
        match request.send().await {
            Ok(_) => Ok(Race::Won(())),
            Err(err) => match classify("DeleteItem", err) {
                Failure::ConditionFailed => Ok(Race::Lost),
                Failure::Fault(e) => Err(e.with_lease_key(key.as_str())),
            },
        }
    }

    async fn heartbeat(
        &self,
        worker: &WorkerId,
        expected: Option<u64>,
    ) -> Result<Race<u64>, StoreError> {
        self.increment_member(&format!("{HEARTBEAT_PREFIX}{worker}"), expected)
            .await
    }

    async fn membership(&self) -> Result<Membership, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table.as_str())
            .key(attr::LEASE_KEY, s(MEMBERSHIP_KEY))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| fault("GetItem", err))?;
        let mut membership = Membership::default();
        let Some(raw) = out.item else {
            return Ok(membership);
        };
        for (name, value) in &raw {
            let counter = || match value {
                AttributeValue::N(v) => v.parse::<u64>().map_err(|_| {
                    StoreError::corrupt(MEMBERSHIP_KEY, format!("{name} is not a counter: {v}"))
                }),
                other => Err(StoreError::corrupt(
                    MEMBERSHIP_KEY,
                    format!("{name} is not a number: {other:?}"),
                )),
            };
            if name == VERSION_ATTR {
                membership.version = counter()?;
            } else if let Some(worker) = name.strip_prefix(HEARTBEAT_PREFIX) {
                let worker = WorkerId::new(worker)
                    .map_err(|e| StoreError::corrupt(MEMBERSHIP_KEY, e.to_string()))?;
                membership.heartbeats.insert(worker, counter()?);
            }
        }
        Ok(membership)
    }

    async fn bump_version(&self) -> Result<u64, StoreError> {
        match self.increment_member(VERSION_ATTR, None).await? {
            Race::Won(version) => Ok(version),
            Race::Lost => Err(StoreError::new(
                StoreErrorKind::Unexpected,
                "an unconditional version increment lost a race",
            )),
        }
    }

    async fn leave(
        &self,
        worker: &WorkerId,
        expected_heartbeat: u64,
    ) -> Result<Race<()>, StoreError> {
        let request = self
            .client
            .update_item()
            .table_name(self.table.as_str())
            .key(attr::LEASE_KEY, s(MEMBERSHIP_KEY))
            .update_expression("REMOVE #w")
            .condition_expression("#w = :expected")
            .expression_attribute_names("#w", format!("{HEARTBEAT_PREFIX}{worker}"))
            .expression_attribute_values(":expected", n(expected_heartbeat))
            .return_values(ReturnValue::None);
        match request.send().await {
            Ok(_) => Ok(Race::Won(())),
            Err(err) => match classify("UpdateItem", err) {
                Failure::ConditionFailed => Ok(Race::Lost),
                Failure::Fault(e) => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts(config: &aws_types::SdkConfig) -> TimeoutConfig {
        let store = DynamoDbLeaseStore::from_sdk_config(config, "leases").unwrap();
        store.client().config().timeout_config().cloned().unwrap()
    }

    #[test]
    fn a_client_made_from_sdk_config_has_timeouts() {
        let version = aws_sdk_dynamodb::config::BehaviorVersion::latest();
        let bare = aws_types::SdkConfig::builder()
            .behavior_version(version)
            .build();
        let set = timeouts(&bare);
        assert_eq!(
            set.operation_attempt_timeout(),
            Some(OPERATION_ATTEMPT_TIMEOUT)
        );
        assert_eq!(set.operation_timeout(), Some(OPERATION_TIMEOUT));

        let own = aws_types::SdkConfig::builder()
            .behavior_version(version)
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(42))
                    .connect_timeout(Duration::from_secs(1))
                    .build(),
            )
            .build();
        let set = timeouts(&own);
        assert_eq!(
            set.operation_timeout(),
            Some(Duration::from_secs(42)),
            "the application's own"
        );
        assert_eq!(set.connect_timeout(), Some(Duration::from_secs(1)));
        assert_eq!(
            set.operation_attempt_timeout(),
            Some(OPERATION_ATTEMPT_TIMEOUT),
            "ours where unset"
        );
    }
}
