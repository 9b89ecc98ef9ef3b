//! The lease table: its validated name, creation options, and creation when missing.

use std::fmt;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, PointInTimeRecoverySpecification,
    ProvisionedThroughput, ScalarAttributeType, TableStatus, Tag,
};
use shardwise_lease_core::{StoreError, StoreErrorKind};

use crate::error::{Failure, classify, fault};
use crate::item::attr;

/// A DynamoDB table name: 3 to 255 characters from `a-z A-Z 0-9 _ . -` (DynamoDB's rule).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TableName(String);

impl TableName {
    /// Validates a table name.
    pub fn new(name: impl Into<String>) -> Result<Self, StoreError> {
        let name = name.into();
        let valid_chars = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if (3..=255).contains(&name.len()) && valid_chars {
            Ok(Self(name))
        } else {
            Err(StoreError::new(
                StoreErrorKind::Config,
                format!(
                    "invalid DynamoDB table name {name:?}: use 3 to 255 characters from a-z, A-Z, 0-9, '_', '.' and '-'"
                ),
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// How the table is billed when shardwise creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Billing {
    /// Pay per request (the default, as in the KCL since 2.x).
    #[default]
    OnDemand,
    /// Provisioned capacity; both values are required (a KCL bug let one be missing).
    Provisioned {
        /// Read capacity units.
        read: u32,
        /// Write capacity units.
        write: u32,
    },
}

/// Options for creating the lease table when it is missing. Ignored for an existing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableOptions {
    /// Billing mode (on-demand by default).
    pub billing: Billing,
    /// Tags set on the new table.
    pub tags: Vec<(String, String)>,
    /// Whether the new table refuses deletion.
    pub deletion_protection: bool,
    /// Whether point-in-time recovery is switched on after creation.
    pub point_in_time_recovery: bool,
    /// How long to wait for the new table to become ACTIVE.
    pub creation_timeout: Duration,
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            billing: Billing::OnDemand,
            tags: Vec::new(),
            deletion_protection: false,
            point_in_time_recovery: false,
            creation_timeout: Duration::from_secs(120),
        }
    }
}

/// Creates the table when missing and waits until it is ACTIVE.
pub(crate) async fn create_if_missing(
    client: &Client,
    table: &TableName,
    options: &TableOptions,
) -> Result<(), StoreError> {
    if let Some(status) = status(client, table).await? {
        if status == TableStatus::Active {
            return Ok(());
        }
        return wait_active(client, table, options.creation_timeout).await;
    }
    let mut request = client
        .create_table()
        .table_name(table.as_str())
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attr::LEASE_KEY)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_error)?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(attr::LEASE_KEY)
                .key_type(KeyType::Hash)
                .build()
                .map_err(build_error)?,
        )
        .deletion_protection_enabled(options.deletion_protection);
    request = match options.billing {
        Billing::OnDemand => request.billing_mode(BillingMode::PayPerRequest),
        Billing::Provisioned { read, write } => request
            .billing_mode(BillingMode::Provisioned)
            .provisioned_throughput(
                ProvisionedThroughput::builder()
                    .read_capacity_units(i64::from(read))
                    .write_capacity_units(i64::from(write))
                    .build()
                    .map_err(build_error)?,
            ),
    };
    for (key, value) in &options.tags {
        request = request.tags(
            Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(build_error)?,
        );
    }
    match request.send().await {
        Ok(_) => {}
        // Another worker is creating it at the same time: wait for theirs.
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(err) => return Err(fault("CreateTable", err)),
    }
    wait_active(client, table, options.creation_timeout).await?;
    if options.point_in_time_recovery {
        client
            .update_continuous_backups()
            .table_name(table.as_str())
            .point_in_time_recovery_specification(
                PointInTimeRecoverySpecification::builder()
                    .point_in_time_recovery_enabled(true)
                    .build()
                    .map_err(build_error)?,
            )
            .send()
            .await
            .map_err(|err| fault("UpdateContinuousBackups", err))?;
    }
    Ok(())
}

async fn status(client: &Client, table: &TableName) -> Result<Option<TableStatus>, StoreError> {
    match client
        .describe_table()
        .table_name(table.as_str())
        .send()
        .await
    {
        Ok(out) => Ok(out.table().and_then(|t| t.table_status().cloned())),
        Err(err) => match classify("DescribeTable", err) {
            Failure::Fault(e) if e.kind() == StoreErrorKind::Config => Ok(None),
            Failure::Fault(e) => Err(e),
            Failure::ConditionFailed => Ok(None),
        },
    }
}

async fn wait_active(
    client: &Client,
    table: &TableName,
    timeout: Duration,
) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(50);
    loop {
        if status(client, table).await? == Some(TableStatus::Active) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::unavailable(format!(
                "DynamoDB table {table} did not become ACTIVE within {timeout:?}"
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

fn build_error(err: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::new(
        StoreErrorKind::InvalidArgument,
        format!("invalid DynamoDB request: {err}"),
    )
    .with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_dynamodb_rules() {
        for ok in ["abc", "my-app.leases_v2", &"t".repeat(255)] {
            assert!(TableName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ab",
            "has space",
            "semi;colon",
            "quote'",
            "ünï",
            &"t".repeat(256),
        ] {
            let err = TableName::new(bad).unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Config, "{bad:?}");
        }
    }
}
