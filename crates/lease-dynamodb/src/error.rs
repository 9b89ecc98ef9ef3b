//! Turning DynamoDB errors into lost races and classified `StoreError`s, with the SDK's own
//! predicates (never by matching message text).

use std::error::Error as StdError;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::{
    create_table::CreateTableError, delete_item::DeleteItemError,
    describe_table::DescribeTableError, get_item::GetItemError, put_item::PutItemError,
    scan::ScanError, transact_write_items::TransactWriteItemsError,
    update_continuous_backups::UpdateContinuousBackupsError, update_item::UpdateItemError,
};
use shardwise_lease_core::{StoreError, StoreErrorKind};

/// What a modeled DynamoDB operation error says about retrying.
pub(crate) trait Classify {
    /// The write's condition did not hold (a lost race).
    fn condition_failed(&self) -> bool {
        false
    }
    /// Capacity or request-rate limits.
    fn throttled(&self) -> bool {
        false
    }
    /// A server-side fault.
    fn internal(&self) -> bool {
        false
    }
    /// The table does not exist.
    fn table_missing(&self) -> bool {
        false
    }
}

macro_rules! classify {
    ($ty:ty { $($method:ident => $($pred:ident)||+;)* }) => {
        impl Classify for $ty {
            $(fn $method(&self) -> bool { $(self.$pred())||+ })*
        }
    };
}

classify!(PutItemError {
    condition_failed => is_conditional_check_failed_exception;
    throttled => is_provisioned_throughput_exceeded_exception || is_request_limit_exceeded || is_throttling_exception;
    internal => is_internal_server_error;
    table_missing => is_resource_not_found_exception;
});
classify!(UpdateItemError {
    condition_failed => is_conditional_check_failed_exception;
    throttled => is_provisioned_throughput_exceeded_exception || is_request_limit_exceeded || is_throttling_exception;
    internal => is_internal_server_error;
    table_missing => is_resource_not_found_exception;
});
classify!(TransactWriteItemsError {
    throttled => is_provisioned_throughput_exceeded_exception || is_request_limit_exceeded || is_throttling_exception;
    internal => is_internal_server_error || is_transaction_in_progress_exception;
    table_missing => is_resource_not_found_exception;
});
classify!(DeleteItemError {
    condition_failed => is_conditional_check_failed_exception;
    throttled => is_provisioned_throughput_exceeded_exception || is_request_limit_exceeded || is_throttling_exception;
    internal => is_internal_server_error;
    table_missing => is_resource_not_found_exception;
});
classify!(GetItemError {
    throttled => is_provisioned_throughput_exceeded_exception || is_request_limit_exceeded || is_throttling_exception;
    internal => is_internal_server_error;
    table_missing => is_resource_not_found_exception;
});
classify!(ScanError {
    throttled => is_provisioned_throughput_exceeded_exception || is_request_limit_exceeded || is_throttling_exception;
    internal => is_internal_server_error;
    table_missing => is_resource_not_found_exception;
});
classify!(DescribeTableError {
    internal => is_internal_server_error;
    table_missing => is_resource_not_found_exception;
});
classify!(CreateTableError {
    throttled => is_limit_exceeded_exception;
    internal => is_internal_server_error;
});
classify!(UpdateContinuousBackupsError {
    internal => is_internal_server_error;
    table_missing => is_table_not_found_exception;
});

/// The outcome of a failed call: a lost race, or a fault.
pub(crate) enum Failure {
    ConditionFailed,
    Fault(StoreError),
}

/// Classifies a failed call of `operation`.
pub(crate) fn classify<E, R>(operation: &'static str, err: SdkError<E, R>) -> Failure
where
    E: Classify + StdError + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let kind = match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            if e.condition_failed() {
                return Failure::ConditionFailed;
            }
            if e.throttled() {
                StoreErrorKind::Throttled
            } else if e.internal() {
                StoreErrorKind::Unavailable
            } else if e.table_missing() {
                StoreErrorKind::Config
            } else {
                StoreErrorKind::Unexpected
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => StoreErrorKind::Unavailable,
        // A response that could not be read: the connection broke, or the server answered with
        // something that is not DynamoDB's protocol (a proxy error page). Retrying may help.
        SdkError::ResponseError(_) => StoreErrorKind::Unavailable,
        _ => StoreErrorKind::Unexpected,
    };
    let message = format!("DynamoDB {operation} failed: {}", DisplayErrorContext(&err));
    Failure::Fault(StoreError::new(kind, message).with_source(err))
}

/// Classifies a failure of an operation that has no condition: a condition failure is a fault.
pub(crate) fn fault<E, R>(operation: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: Classify + StdError + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match classify(operation, err) {
        Failure::Fault(e) => e,
        Failure::ConditionFailed => StoreError::new(
            StoreErrorKind::Unexpected,
            format!("DynamoDB {operation}: unexpected condition failure"),
        ),
    }
}
