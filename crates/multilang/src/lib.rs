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
//! - A child that exits, answers out of turn or (with `timeoutInSeconds`) does not answer in
//!   time costs its shard only: the child and its process group are killed, the lease is
//!   released without a checkpoint beyond what the child asked for, and the shard is retried
//!   with a new child from there. The KCL's daemon exits (or halts the JVM) instead.
//! - `leaseLost` is answered within the exit timeout (10 s) even without `timeoutInSeconds`,
//!   so a child that ignores it cannot hold its lease forever.
//! - The child runs in the properties file's folder (where a relative `executableName` is
//!   found), in a process group of its own: a Ctrl-C meant for the daemon reaches it as a
//!   `shutdownRequested`, not as a signal.
//! - Properties with a false or zero value are applied or refused with their line (the KCL
//!   ignores them), and properties that do not apply are named in a warning (the KCL ignores
//!   them silently). `approximateArrivalTimestamp` is never `null` (kclpy cannot read it).
//!
//! As in the KCL: a shard is finished only once the child checkpointed its end (`SHARD_END`,
//! a checkpoint without a sequence number during `shardEnded`); otherwise the next holder
//! finishes it again. A checkpoint for a position the child was not given, or behind the
//! stored one, is answered with `IllegalArgumentException`; one asked for when no checkpoint is
//! possible (`initialize`, `leaseLost`) with `InvalidStateException`; a lost lease is
//! `ShutdownException`; a throttled store `ThrottlingException`; another store failure
//! `KinesisClientLibDependencyException`. `shutdownRequested` is followed by `leaseLost`.

mod child;
mod message;
mod processor;
mod properties;

pub use child::{ChildCommand, ChildError};
pub use processor::{MultiLangFactory, MultiLangProcessor};
pub use properties::{DaemonConfig, Properties, PropertiesError};
