//! `shardwise reset` and `shardwise delete-leases`: an operator's changes to the lease table.

use std::io::{BufRead, IsTerminal, Write};

use shardwise::lease::{Checkpoint, LeaseKey, Race};

use crate::aws::AwsArgs;
use crate::error::{CliError, ExitCode};
use crate::lease_url::StoreArgs;
use crate::position::parse_to;

/// How often a change is tried again when a running worker changed the lease in between.
const ATTEMPTS: usize = 5;

/// `shardwise reset`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  # Re-read shard 3 from the oldest retained record:
  shardwise reset --app audit --leases redis://127.0.0.1:6379 --shard shardId-000000000003 --to trim-horizon

  # Skip to new records only, even though a worker holds the lease:
  shardwise reset --app audit --leases dynamodb://audit --shard shardId-000000000003 --to latest --force

The lease is written back free, with the new checkpoint and a higher counter: a worker that held
it loses it at its next renewal (or, when workers heartbeat, at its next listing, which the reset
announces by moving the table version) and cannot checkpoint over the reset. SEQ means that record and
everything before it count as processed; reading resumes after it.")]
pub(crate) struct ResetArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The shard whose checkpoint moves (its lease key), e.g. shardId-000000000003.
    #[arg(long, value_name = "ID")]
    shard: String,
    /// For a multi-stream application: the shard's stream, by name (or as
    /// account-id:name:creation-epoch when a stream of that name was created more than once).
    #[arg(long, value_name = "STREAM")]
    stream: Option<String>,
    /// The new checkpoint: trim-horizon, latest, or a sequence number.
    #[arg(long, value_name = "POSITION", value_parser = parse_to)]
    to: Checkpoint,
    /// Reset even while a worker holds the lease (it loses the lease).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    aws: AwsArgs,
}

/// Runs `shardwise reset`.
pub(crate) async fn reset(args: ResetArgs) -> Result<(), CliError> {
    let leases = args.store.url()?;
    StoreArgs::shared_store(&leases)?;
    let store = leases.open(&args.store.app, &args.aws).await?;
    let where_ = format!("application {} in {}", args.store.app, leases);
    let key = match &args.stream {
        None => LeaseKey::new(args.shard.as_str())
            .map_err(|e| CliError::usage(format!("--shard: {e}")))?,
        Some(stream) => {
            let listing = store
                .list()
                .await
                .map_err(|e| CliError::store(&format!("listing leases of {where_}"), &e))?;
            let matching: Vec<LeaseKey> = listing
                .leases
                .into_iter()
                .map(|l| l.key)
                .filter(|key| {
                    key.stream_shard().is_some_and(|(s, shard)| {
                        (s.name() == stream || s.to_string() == *stream)
                            && shard.as_str() == args.shard
                    })
                })
                .collect();
            match matching.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(CliError::new(
                        ExitCode::NotFound,
                        format!(
                            "no lease for shard {} of stream {stream} in {where_}",
                            args.shard
                        ),
                    ));
                }
                several => {
                    let keys: Vec<&str> = several.iter().map(LeaseKey::as_str).collect();
                    return Err(CliError::usage(format!(
                        "several streams named {stream} have a lease for shard {} ({}); pass --stream as account-id:name:creation-epoch",
                        args.shard,
                        keys.join(", ")
                    )));
                }
            }
        }
    };
    for _ in 0..ATTEMPTS {
        let lease = store
            .get(&key)
            .await
            .map_err(|e| CliError::store(&format!("reading lease {key}"), &e))?
            .ok_or_else(|| {
                CliError::new(
                    ExitCode::NotFound,
                    format!("no lease for shard {key} in {where_}"),
                )
            })?;
        if let (Some(owner), false) = (&lease.owner, args.force) {
            return Err(CliError::new(
                ExitCode::Refused,
                format!(
                    "the lease of shard {key} is held by worker {owner}; stop that worker first, \
                     or pass --force to take the lease away from it"
                ),
            ));
        }
        let previous = lease.checkpoint.clone();
        let outcome = store
            .reset_checkpoint(&key, lease.counter, &args.to)
            .await
            .map_err(|e| CliError::store(&format!("resetting lease {key}"), &e))?;
        if let Race::Won(lease) = outcome {
            println!(
                "shard {key}: checkpoint {} (was {previous}); lease free at counter {}",
                lease.checkpoint, lease.counter
            );
            announce(store.as_ref()).await;
            return Ok(());
        }
        // A worker renewed or checkpointed in between: read the lease again and retry.
    }
    Err(CliError::failure(format!(
        "the lease of shard {key} kept changing while resetting it ({ATTEMPTS} attempts); try again"
    )))
}

/// `shardwise delete-leases`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  shardwise delete-leases --app audit --leases redis://127.0.0.1:6379
  shardwise delete-leases --app audit --leases postgres://app@db/kinesis --yes

Deletes every lease (and so every checkpoint) of the application. Without --yes it asks on the
terminal and goes on only after \"yes\"; with no terminal and no --yes it refuses. Workers still
running recreate leases for the shards they see, from their configured start position.")]
pub(crate) struct DeleteLeasesArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    aws: AwsArgs,
}

/// Runs `shardwise delete-leases`.
pub(crate) async fn delete_leases(args: DeleteLeasesArgs) -> Result<(), CliError> {
    let leases = args.store.url()?;
    StoreArgs::shared_store(&leases)?;
    let store = leases.open(&args.store.app, &args.aws).await?;
    let where_ = format!("application {} in {}", args.store.app, leases);
    let listing = store
        .list()
        .await
        .map_err(|e| CliError::store(&format!("listing the leases of {where_}"), &e))?;
    if listing.leases.is_empty() && listing.corrupt.is_empty() {
        println!("no leases in {where_}");
        return Ok(());
    }
    let held = listing.leases.iter().filter(|l| l.owner.is_some()).count();
    if !args.yes {
        confirm(&format!(
            "delete all {} leases of {where_} ({held} held by running workers)?",
            listing.leases.len()
        ))?;
    }
    let mut deleted = 0;
    for lease in &listing.leases {
        let mut counter = lease.counter;
        let mut done = false;
        for _ in 0..ATTEMPTS {
            let outcome = store
                .delete(&lease.key, counter)
                .await
                .map_err(|e| CliError::store(&format!("deleting lease {}", lease.key), &e))?;
            if outcome.is_won() {
                deleted += 1;
                done = true;
                break;
            }
            // A worker changed it in between (or it is gone): read it again.
            match store
                .get(&lease.key)
                .await
                .map_err(|e| CliError::store(&format!("reading lease {}", lease.key), &e))?
            {
                Some(current) => counter = current.counter,
                None => {
                    done = true;
                    break;
                }
            }
        }
        if !done {
            return Err(CliError::failure(format!(
                "the lease {} kept changing while deleting it; {deleted} deleted so far, try again",
                lease.key
            )));
        }
    }
    println!("deleted {deleted} leases of {where_}");
    announce(store.as_ref()).await;
    if !listing.corrupt.is_empty() {
        eprintln!(
            "shardwise: {} corrupt rows were left as they are (not readable as leases): {}",
            listing.corrupt.len(),
            listing
                .corrupt
                .iter()
                .map(|c| format!("{:?}", c.raw_key))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// Tells workers that heartbeat that the lease table changed (they list it only when its
/// version moves). Nothing to do when no worker heartbeats (the membership record is empty,
/// and a table shared with Java KCL workers must stay as the KCL wrote it). A failure is a
/// warning: the workers' next full listing sees the change.
async fn announce(store: &dyn shardwise::lease::LeaseStore) {
    let moved = match store.membership().await {
        Ok(membership) if membership.heartbeats.is_empty() => return,
        Ok(_) => store.bump_version().await.map(drop),
        Err(e) => Err(e),
    };
    if let Err(e) = moved {
        eprintln!(
            "shardwise: warning: workers that heartbeat were not told of the change ({e}); they see it at their next full listing"
        );
    }
}

/// Asks on the terminal; anything but "yes" refuses.
fn confirm(question: &str) -> Result<(), CliError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::new(
            ExitCode::Refused,
            "refusing to delete leases without confirmation: standard input is not a terminal; \
             pass --yes to delete without asking",
        ));
    }
    eprint!("{question} Type yes to confirm: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::failure(format!("reading the answer: {e}")))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(CliError::new(
            ExitCode::Refused,
            "not confirmed; nothing deleted",
        ))
    }
}
