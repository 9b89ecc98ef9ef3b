//! The KCL's MultiLangDaemon without a JVM: record processors written for the KCL in Python
//! (amazon-kclpy), Node (aws-kcl), Ruby or .NET keep running unchanged, one child process per
//! shard speaking the MultiLang protocol (JSON lines on stdin and stdout), while shardwise
//! owns the leases.
//!
//! - [`MultiLangFactory`] / [`MultiLangProcessor`]: a [`shardwise::ShardProcessor`] per shard
//!   that starts the child and exchanges the protocol's messages with it.
//! - [`Properties`] and [`DaemonConfig`]: the daemon's properties file (the one amazon-kclpy's
//!   samples ship), read as `java.util.Properties` reads it and mapped onto the consumer's
//!   settings.
//!
//! The `shardwise multilang --properties FILE` command runs the whole daemon.
//!
//! # Where this daemon differs from the KCL's
//!
//! - A child that exits, writes an answer out of turn or (with `timeoutInSeconds`) does not
//!   answer in time costs its shard only: the child is killed, the lease released without a
//!   checkpoint beyond what the child asked for, and the shard retried with a new child. The
//!   KCL's daemon exits (or halts the JVM) instead.
//! - The child runs in the properties file's folder, where a relative `executableName` is found.
//! - Properties with a false or zero value are applied (the KCL ignores them), and properties
//!   that do not apply are named in a warning (the KCL ignores them silently).

mod child;
mod message;
mod processor;
mod properties;

pub use child::{ChildCommand, ChildError};
pub use processor::{MultiLangFactory, MultiLangProcessor};
pub use properties::{DaemonConfig, Properties, PropertiesError};
