//! `shardwise leases`: an application's leases as a table or JSON, with each shard's lag when
//! asked for.

use std::sync::Arc;

use futures_util::StreamExt;
use serde::Serialize;
use shardwise::kinesis::{KinesisApi, StartPosition, StreamId};
use shardwise::lease::{Checkpoint, Lease, LeaseListing};

use crate::aws::AwsArgs;
use crate::error::{CliError, ExitCode};
use crate::lease_url::StoreArgs;

/// `shardwise leases`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  shardwise leases --app orders-audit --leases dynamodb://orders-audit
  shardwise leases --app audit --leases redis://127.0.0.1:6379 --json | jq '.leases[] | select(.owner)'
  shardwise leases --app audit --leases postgres://app@db/kinesis --stream orders

STATE is held (an owner), handing-off (its holder hands it to the worker that asked for it:
OWNER shows holder -> new owner), free, or ended (SHARD_END). With --stream, LAG is how far the next
unprocessed record is behind the newest in its shard (Kinesis MillisBehindLatest, from one
GetRecords at the checkpoint); n/a when it cannot be known: the shard has no checkpoint yet and
starts at LATEST or AT_TIMESTAMP, or reading failed.")]
pub(crate) struct LeasesArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// JSON instead of a table: {"leases": [...], "corrupt": [...]}.
    #[arg(long)]
    json: bool,
    /// Also show each shard's lag behind the newest record of this stream (name or ARN).
    #[arg(long, value_name = "NAME")]
    stream: Option<String>,
    #[command(flatten)]
    aws: AwsArgs,
}

/// One lease as `--json` prints it.
#[derive(Debug, Serialize)]
struct LeaseView {
    key: String,
    /// The stream's name, for a multi-stream application's lease (`None` otherwise).
    stream: Option<String>,
    /// During a hand-off: the worker the lease goes to.
    owner: Option<String>,
    /// During a hand-off: the worker still holding the lease (the KCL's `checkpointOwner`).
    checkpoint_owner: Option<String>,
    counter: u64,
    checkpoint: String,
    /// -1 before the record (a shard read from `LATEST`, resolved to its first record).
    checkpoint_sub_sequence_number: i128,
    pending_checkpoint: Option<String>,
    parents: Vec<String>,
    children: Vec<String>,
    state: &'static str,
    /// With `--stream` only; `None` for an ended shard.
    #[serde(skip_serializing_if = "Option::is_none")]
    lag: Option<Lag>,
}

/// A shard's lag, or why it is not known.
#[derive(Debug, Clone)]
enum Lag {
    Millis(i64),
    Unknown(String),
}

/// `{"millis_behind_latest": 1500}` or `{"millis_behind_latest": null, "unknown_because": "…"}`.
impl Serialize for Lag {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut lag = serializer.serialize_struct("Lag", 2)?;
        match self {
            Self::Millis(ms) => {
                lag.serialize_field("millis_behind_latest", ms)?;
                lag.skip_field("unknown_because")?;
            }
            Self::Unknown(why) => {
                lag.serialize_field("millis_behind_latest", &None::<i64>)?;
                lag.serialize_field("unknown_because", why)?;
            }
        }
        lag.end()
    }
}

impl Lag {
    fn cell(&self) -> String {
        match self {
            Self::Millis(ms) => format!("{ms} ms"),
            Self::Unknown(_) => "n/a".to_owned(),
        }
    }
}

#[derive(Debug, Serialize)]
struct CorruptView {
    key: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct ListingView {
    leases: Vec<LeaseView>,
    corrupt: Vec<CorruptView>,
}

fn state(lease: &Lease) -> &'static str {
    if lease.is_ended() {
        "ended"
    } else if lease.is_handing_off() {
        "handing-off"
    } else if lease.owner.is_some() {
        "held"
    } else {
        "free"
    }
}

fn view(lease: &Lease) -> LeaseView {
    LeaseView {
        key: lease.key.to_string(),
        stream: lease.key.stream_shard().map(|(s, _)| s.name().to_owned()),
        owner: lease.owner.as_ref().map(ToString::to_string),
        checkpoint_owner: lease.checkpoint_owner.as_ref().map(ToString::to_string),
        counter: lease.counter,
        checkpoint: lease.checkpoint.stored_text().to_owned(),
        checkpoint_sub_sequence_number: lease.checkpoint.stored_sub_sequence(),
        pending_checkpoint: lease
            .pending_checkpoint
            .as_ref()
            .map(|p| p.position.to_string()),
        parents: lease
            .parent_shard_ids
            .iter()
            .map(ToString::to_string)
            .collect(),
        children: lease
            .child_shard_ids
            .iter()
            .map(ToString::to_string)
            .collect(),
        state: state(lease),
        lag: None,
    }
}

/// Runs `shardwise leases`.
pub(crate) async fn run(args: LeasesArgs) -> Result<(), CliError> {
    let leases = args.store.url()?;
    StoreArgs::shared_store(&leases)?;
    let store = leases.open(&args.store.app, &args.aws).await?;
    let listing: LeaseListing = store
        .list()
        .await
        .map_err(|e| CliError::store(&format!("listing the leases in {}", leases), &e))?;
    let mut views: Vec<LeaseView> = listing.leases.iter().map(view).collect();
    if let Some(stream) = &args.stream {
        let kinesis: Arc<dyn KinesisApi> = Arc::new(args.aws.kinesis_client().await?);
        let stream = StreamId::parse(stream);
        match kinesis.describe_stream_summary(&stream).await {
            Ok(_) => {}
            Err(e) if e.kind() == shardwise::kinesis::KinesisErrorKind::ResourceNotFound => {
                return Err(CliError::new(
                    ExitCode::NotFound,
                    format!("stream {stream} not found"),
                ));
            }
            Err(e) => {
                return Err(CliError::kinesis(
                    &format!("describing stream {stream}"),
                    &e,
                ));
            }
        }
        // Two calls per shard; a few shards at a time, so hundreds of shards take seconds, well
        // under the account's GetShardIterator limits (5 per second per shard).
        let lags: Vec<Option<Lag>> = futures_util::stream::iter(&listing.leases)
            .map(|lease| lag(kinesis.as_ref(), &stream, lease))
            .buffered(LAG_CONCURRENCY)
            .collect()
            .await;
        for (view, lag) in views.iter_mut().zip(lags) {
            view.lag = lag;
        }
    }
    let corrupt = listing
        .corrupt
        .iter()
        .map(|c| CorruptView {
            key: c.raw_key.clone(),
            reason: c.reason.clone(),
        })
        .collect();
    let listing = ListingView {
        leases: views,
        corrupt,
    };
    let text = if args.json {
        let mut text = serde_json::to_string_pretty(&listing)
            .map_err(|e| CliError::failure(format!("rendering JSON: {e}")))?;
        text.push('\n');
        text
    } else {
        table(&listing, args.stream.is_some())
    };
    print!("{text}");
    Ok(())
}

/// How many shards' lag is read at once.
const LAG_CONCURRENCY: usize = 16;

/// How far the shard's next unprocessed record is behind the newest; `None` for an ended shard.
async fn lag(kinesis: &dyn KinesisApi, stream: &StreamId, lease: &Lease) -> Option<Lag> {
    let position = match &lease.checkpoint {
        Checkpoint::ShardEnd => return None,
        Checkpoint::TrimHorizon => StartPosition::TrimHorizon,
        Checkpoint::Before(first) => StartPosition::AtSequenceNumber(first.to_string()),
        Checkpoint::At(position) => {
            StartPosition::AfterSequenceNumber(position.sequence.to_string())
        }
        Checkpoint::Latest | Checkpoint::AtTimestamp => {
            return Some(Lag::Unknown(format!(
                "no checkpoint yet; starts at {}",
                lease.checkpoint.stored_text()
            )));
        }
    };
    let shard = lease.key.as_str();
    let read = async {
        let iterator = kinesis.get_shard_iterator(stream, shard, &position).await?;
        kinesis.get_records(stream, &iterator, 1).await
    };
    Some(match read.await {
        Ok(output) => match output.millis_behind_latest {
            Some(ms) => Lag::Millis(ms),
            None => Lag::Unknown("Kinesis did not report MillisBehindLatest".into()),
        },
        Err(e) => Lag::Unknown(format!("reading shard {shard}: {e}")),
    })
}

fn table(listing: &ListingView, with_lag: bool) -> String {
    // A multi-stream application's leases name their stream too.
    let with_stream = listing.leases.iter().any(|l| l.stream.is_some());
    let mut header = vec!["KEY", "OWNER", "COUNTER", "CHECKPOINT", "PARENTS", "STATE"];
    if with_stream {
        header.insert(1, "STREAM");
    }
    if with_lag {
        header.push("LAG");
    }
    let rows: Vec<Vec<String>> = listing
        .leases
        .iter()
        .map(|l| {
            let checkpoint = match l.checkpoint_sub_sequence_number {
                0 => l.checkpoint.clone(),
                Checkpoint::BEFORE_SUB_SEQUENCE => format!("before {}", l.checkpoint),
                sub => format!("{}/{sub}", l.checkpoint),
            };
            let mut row = vec![
                l.key.clone(),
                match (&l.checkpoint_owner, &l.owner) {
                    (Some(holder), Some(owner)) => format!("{holder} -> {owner}"),
                    (_, owner) => owner.clone().unwrap_or_else(|| "-".into()),
                },
                l.counter.to_string(),
                checkpoint,
                if l.parents.is_empty() {
                    "-".into()
                } else {
                    l.parents.join(",")
                },
                l.state.to_owned(),
            ];
            if with_stream {
                row.insert(1, l.stream.clone().unwrap_or_else(|| "-".into()));
            }
            if with_lag {
                row.push(l.lag.as_ref().map_or_else(|| "-".to_owned(), Lag::cell));
            }
            row
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(&header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>());
    for row in &rows {
        line(row);
    }
    if listing.leases.is_empty() {
        out.push_str("(no leases)\n");
    }
    for corrupt in &listing.corrupt {
        out.push_str(&format!(
            "corrupt row {:?}: {} (left as is)\n",
            corrupt.key, corrupt.reason
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use shardwise::lease::{LeaseKey, SequenceNumber, ShardId, WorkerId};

    use super::*;

    #[test]
    fn states_and_table() {
        let free = Lease::new(LeaseKey::new("shardId-1").unwrap(), Checkpoint::TrimHorizon);
        let mut held = Lease::new(
            LeaseKey::new("shardId-2").unwrap(),
            Checkpoint::at(SequenceNumber::new("123").unwrap(), 4),
        )
        .with_parents([ShardId::new("shardId-0").unwrap()]);
        held.owner = Some(WorkerId::new("w1").unwrap());
        held.counter = 7;
        let ended = Lease::new(LeaseKey::new("shardId-0").unwrap(), Checkpoint::ShardEnd);
        assert_eq!(state(&free), "free");
        assert_eq!(state(&held), "held");
        assert_eq!(state(&ended), "ended");

        let mut views: Vec<LeaseView> = [&free, &held, &ended].into_iter().map(view).collect();
        views[0].lag = Some(Lag::Millis(1500));
        views[1].lag = Some(Lag::Unknown("x".into()));
        let listing = ListingView {
            leases: views,
            corrupt: vec![CorruptView {
                key: "bad".into(),
                reason: "no counter".into(),
            }],
        };
        let text = table(&listing, true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "KEY        OWNER  COUNTER  CHECKPOINT    PARENTS    STATE  LAG"
        );
        assert_eq!(
            lines[1],
            "shardId-1  -      0        TRIM_HORIZON  -          free   1500 ms"
        );
        assert_eq!(
            lines[2],
            "shardId-2  w1     7        123/4         shardId-0  held   n/a"
        );
        assert_eq!(
            lines[3],
            "shardId-0  -      0        SHARD_END     -          ended  -"
        );
        assert_eq!(lines[4], "corrupt row \"bad\": no counter (left as is)");

        let json = serde_json::to_value(&listing).unwrap();
        assert_eq!(json["leases"][1]["owner"], "w1");
        assert_eq!(json["leases"][1]["checkpoint"], "123");
        assert_eq!(json["leases"][1]["checkpoint_sub_sequence_number"], 4);
        assert_eq!(
            json["leases"][0]["lag"],
            serde_json::json!({"millis_behind_latest": 1500})
        );
        assert_eq!(
            json["leases"][1]["lag"],
            serde_json::json!({"millis_behind_latest": null, "unknown_because": "x"})
        );
        assert!(json["leases"][2].get("lag").is_none());
        assert_eq!(json["leases"][2]["state"], "ended");
    }

    #[test]
    fn a_lease_in_hand_off() {
        let mut lease = Lease::new(LeaseKey::new("shardId-3").unwrap(), Checkpoint::TrimHorizon);
        lease.owner = Some(WorkerId::new("new").unwrap());
        lease.checkpoint_owner = Some(WorkerId::new("old").unwrap());
        assert_eq!(state(&lease), "handing-off");
        let listing = ListingView {
            leases: vec![view(&lease)],
            corrupt: Vec::new(),
        };
        let text = table(&listing, false);
        assert!(
            text.lines().nth(1).unwrap().contains("old -> new"),
            "{text}"
        );
        let json = serde_json::to_value(&listing).unwrap();
        assert_eq!(json["leases"][0]["owner"], "new");
        assert_eq!(json["leases"][0]["checkpoint_owner"], "old");
        assert_eq!(json["leases"][0]["state"], "handing-off");
    }

    #[test]
    fn multi_stream_leases_name_their_stream() {
        let key = LeaseKey::new("123456789012:orders:1700000000:shardId-000000000001").unwrap();
        let lease = Lease::new(key, Checkpoint::TrimHorizon);
        let listing = ListingView {
            leases: vec![view(&lease)],
            corrupt: Vec::new(),
        };
        let text = table(&listing, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("KEY"), "{text}");
        assert!(lines[0].contains("STREAM"), "{text}");
        assert!(lines[1].contains(" orders "), "{text}");
        let json = serde_json::to_value(&listing).unwrap();
        assert_eq!(json["leases"][0]["stream"], "orders");
    }
}
