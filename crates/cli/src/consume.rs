//! `shardwise consume`: one worker of an application, writing every user record as a JSON line
//! and checkpointing each batch once it is written and flushed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use shardwise::kinesis::{KinesisApi, StreamId};
use shardwise::lease::{LeaseStore, LeaseStoreExt, SequenceNumber, WorkerId};
use shardwise::{
    Checkpointer, Consumer, ConsumerError, InitialPosition, ProcessorError, RecordBatch, Retrieval,
    ShardProcessor, StreamConfig, StreamsByPrefix,
};
use tokio_util::sync::CancellationToken;

use crate::aws::AwsArgs;
use crate::error::{CliError, ExitCode};
use crate::lease_url::StoreArgs;
use crate::output::{DataEncoding, Output, render_lines};
use crate::position::{epoch_ms, parse_from};
use crate::signals::Signals;

/// How often progress is reported on stderr.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// `shardwise consume`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  # Every record from the oldest retained, leases in DynamoDB (table orders-audit):
  shardwise consume --stream orders --app orders-audit --leases dynamodb://orders-audit --from trim-horizon

  # Two workers sharing the shards through PostgreSQL leases, records into jq:
  shardwise consume --stream orders --app audit --leases postgres://app@db/kinesis | jq .data

  # Against local emulators, records appended to a file:
  AWS_ENDPOINT_URL_KINESIS=http://127.0.0.1:4567 shardwise consume --stream orders --app audit \\
      --leases redis://127.0.0.1:6379 --output records.jsonl

Several --stream, or --stream-prefix, make one application over several streams (the KCL's
multi-stream mode: lease keys account:stream:creation-epoch:shard).

Each line: {\"data\", \"partition_key\", \"explicit_hash_key\" (when set), \"stream\", \"shard_id\",
\"sequence_number\", \"sub_sequence_number\", \"approximate_arrival_ms\", \"worker\", \"ts_ms\"}.
A batch is checkpointed once it is written and flushed: a killed process re-emits at most what
it had not checkpointed. SIGINT or SIGTERM stops gracefully (checkpoint, release leases, exit 0).")]
pub(crate) struct ConsumeArgs {
    /// The stream, by name or ARN; repeat it to consume several streams.
    #[arg(long, value_name = "NAME", required_unless_present = "stream_prefix")]
    stream: Vec<String>,
    /// Consume every stream whose name starts with PREFIX (found again every minute).
    #[arg(long, value_name = "PREFIX", conflicts_with = "stream")]
    stream_prefix: Option<String>,
    /// With --stream-prefix: only streams tagged KEY (with VALUE, when given); repeat it to
    /// require several tags.
    #[arg(long, value_name = "KEY[=VALUE]", requires = "stream_prefix", value_parser = parse_tag)]
    stream_tag: Vec<(String, Option<String>)>,
    #[command(flatten)]
    store: StoreArgs,
    /// Where shards without a checkpoint start: trim-horizon, latest, or
    /// at-timestamp:RFC3339 (e.g. at-timestamp:2024-05-01T12:00:00Z).
    #[arg(long, value_name = "POSITION", default_value = "latest", value_parser = parse_from)]
    from: InitialPosition,
    /// This worker's id in the lease store (default: host name, process id and a time stamp).
    #[arg(long, value_name = "ID")]
    worker_id: Option<String>,
    /// Where records go: a file (appended to, created when missing) or - for stdout.
    #[arg(long, value_name = "FILE", default_value = "-")]
    output: PathBuf,
    /// How record data is written.
    #[arg(long, value_name = "ENCODING", value_enum, default_value_t = DataEncoding::Utf8)]
    data: DataEncoding,
    /// How long a lease lives without renewal before other workers take it, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    lease_duration: u64,
    /// How this worker shows it is alive: per-lease (renew every lease, as the Java KCL does;
    /// needed when Java KCL workers share the table) or heartbeat (one heartbeat per worker,
    /// and the lease table listed only when it changed: a small fraction of the store's reads
    /// and writes on big streams).
    #[arg(long, value_name = "MODE", value_enum, default_value_t = LivenessArg::PerLease)]
    liveness: LivenessArg,
    /// Read by enhanced fan-out (SubscribeToShard over HTTP/2, a stream consumer named APP,
    /// registered when missing) instead of polling GetRecords.
    #[arg(long)]
    fanout: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    aws: AwsArgs,
}

/// `--liveness`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LivenessArg {
    PerLease,
    Heartbeat,
}

/// What every shard's processor shares.
#[derive(Debug)]
struct Shared {
    output: Output,
    encoding: DataEncoding,
    worker: OnceLock<String>,
    records: AtomicU64,
    /// The first output error; once set, nothing more is written and the worker stops.
    failure: Mutex<Option<std::io::Error>>,
    stop: CancellationToken,
}

impl Shared {
    fn failed(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn fail(&self, error: std::io::Error) {
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if failure.is_none() {
            *failure = Some(error);
        }
        self.stop.cancel();
    }
}

/// Writes each batch, flushes it, then checkpoints it.
struct JsonLinesProcessor {
    shared: Arc<Shared>,
    /// The stream's name when the application reads one (a multi-stream batch names its own).
    stream: Arc<str>,
    /// The last record written and flushed: the furthest a checkpoint may go.
    last_written: Option<(SequenceNumber, u64)>,
}

#[async_trait]
impl ShardProcessor for JsonLinesProcessor {
    async fn process_records(
        &mut self,
        batch: RecordBatch,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        if self.shared.failed() {
            return Err("the output failed; not writing".into());
        }
        let worker = self.shared.worker.get().map_or("", String::as_str);
        let mut lines = Vec::with_capacity(batch.records.len() * 256);
        let stream = batch.stream.as_ref().map_or(&*self.stream, |s| s.name());
        render_lines(
            &mut lines,
            &batch.records,
            stream,
            batch.shard_id.as_str(),
            worker,
            epoch_ms(SystemTime::now()),
            self.shared.encoding,
        )?;
        if let Err(error) = self.shared.output.write_flushed(&lines).await {
            let message = format!("writing records: {error}");
            self.shared.fail(error);
            return Err(message.into());
        }
        self.shared
            .records
            .fetch_add(batch.records.len() as u64, Ordering::Relaxed);
        if let Some(last) = batch.records.last() {
            self.last_written = Some((last.sequence_number.clone(), last.sub_sequence_number));
            checkpointer.checkpoint_at(last).await?;
        }
        Ok(())
    }

    async fn shard_ended(&mut self, checkpointer: &Checkpointer) -> Result<(), ProcessorError> {
        checkpointer.checkpoint().await?;
        Ok(())
    }

    async fn shutdown_requested(
        &mut self,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        // Only what reached the output; a batch whose write failed stays unprocessed.
        if let Some((sequence, sub_sequence)) = self.last_written.clone() {
            checkpointer
                .checkpoint_at_sequence(sequence, sub_sequence)
                .await?;
        }
        Ok(())
    }
}

/// Runs `shardwise consume` until a signal (exit 0) or a failure.
pub(crate) async fn run(args: ConsumeArgs) -> Result<(), CliError> {
    let signals = Signals::install()?;
    let leases = args.store.url()?;
    let streams: Vec<StreamId> = args.stream.iter().map(|s| StreamId::parse(s)).collect();
    if streams.iter().any(|s| s.name().is_empty()) {
        return Err(CliError::usage("--stream must not be empty"));
    }
    let output = Output::open(Some(&args.output)).await.map_err(|e| {
        CliError::failure(format!(
            "cannot open --output {}: {e}",
            args.output.display()
        ))
    })?;

    let kinesis: Arc<dyn KinesisApi> = Arc::new(args.aws.kinesis_client().await?);
    for stream in &streams {
        check_stream(kinesis.as_ref(), stream).await?;
    }
    let store = leases.open(&args.store.app, &args.aws).await?;
    store
        .create_table_if_missing()
        .await
        .map_err(|e| CliError::store(&format!("lease store {}", leases), &e))?;

    let stop = CancellationToken::new();
    let shared = Arc::new(Shared {
        output,
        encoding: args.data,
        worker: OnceLock::new(),
        records: AtomicU64::new(0),
        failure: Mutex::new(None),
        stop: stop.clone(),
    });
    let factory_shared = shared.clone();
    let retrieval = if args.fanout {
        Retrieval::fan_out()
    } else {
        Retrieval::default()
    };
    let builder = Consumer::builder()
        .application_name(args.store.app.as_str())
        .retrieval(retrieval);
    let (builder, described) = match (&args.stream_prefix, args.stream.as_slice()) {
        (Some(prefix), _) => (
            builder.streams(args.stream_tag.iter().fold(
                StreamsByPrefix::new(prefix.as_str(), args.from),
                |tracker, (key, value)| tracker.with_tag(key.as_str(), value.as_deref()),
            )),
            format!("streams {prefix}*"),
        ),
        (None, [one]) => (builder.stream(one), one.clone()),
        (None, several) => (
            builder.streams(
                several
                    .iter()
                    .map(|s| StreamConfig::new(s.as_str(), args.from))
                    .collect::<Vec<_>>(),
            ),
            several.join(","),
        ),
    };
    let single_name: Arc<str> = streams
        .first()
        .filter(|_| streams.len() == 1)
        .map_or("", |s| s.name())
        .into();
    let mut builder = builder
        .kinesis(kinesis)
        .lease_store(store.clone())
        .initial_position(args.from)
        .lease_duration(Duration::from_secs(args.lease_duration))
        .liveness(match args.liveness {
            LivenessArg::PerLease => shardwise::Liveness::PerLease,
            LivenessArg::Heartbeat => shardwise::Liveness::Heartbeat,
        })
        .processor(
            move |_shard: &shardwise::lease::ShardId| JsonLinesProcessor {
                shared: factory_shared.clone(),
                stream: single_name.clone(),
                last_written: None,
            },
        );
    if let Some(id) = &args.worker_id {
        builder = builder.worker_id(id.as_str());
    }
    let consumer = builder
        .build()
        .map_err(|e| CliError::usage(e.to_string()))?;
    let worker = consumer.worker_id().clone();
    let _ = shared.worker.set(worker.to_string());
    tracing::info!(worker = %worker, stream = %described, leases = %leases, "consuming");

    tokio::spawn(signals.cancel_on_signal(stop.clone()));
    if !args.quiet {
        tokio::spawn(report_progress(
            shared.clone(),
            store.clone(),
            worker.clone(),
            stop.clone(),
        ));
    }
    let outcome = consumer.run(stop.clone()).await;
    stop.cancel();
    let flushed = shared.output.flush().await;
    outcome.map_err(|e| match &e {
        ConsumerError::Store(e) => CliError::store(&format!("worker {worker}"), e),
        ConsumerError::Kinesis(e) => CliError::kinesis(&format!("worker {worker}"), e),
        _ => CliError::failure(format!("worker {worker}: {e}")),
    })?;
    let failure = shared
        .failure
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    match failure {
        // The reader went away (`| head`): a normal way for a pipeline to end.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Some(e) => Err(CliError::failure(format!(
            "writing records to {}: {e}",
            args.output.display()
        ))),
        None => flushed.map_err(|e| {
            CliError::failure(format!("writing records to {}: {e}", args.output.display()))
        }),
    }
}

/// Fails early, with a clear message, when the stream is missing or Kinesis is unreachable.
async fn check_stream(kinesis: &dyn KinesisApi, stream: &StreamId) -> Result<(), CliError> {
    match kinesis.describe_stream_summary(stream).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == shardwise::kinesis::KinesisErrorKind::ResourceNotFound => Err(
            CliError::new(ExitCode::NotFound, format!("stream {stream} not found")),
        ),
        Err(e) => Err(CliError::kinesis(
            &format!("describing stream {stream}"),
            &e,
        )),
    }
}

/// Every [`PROGRESS_INTERVAL`]: records per second, records in all, leases held.
async fn report_progress(
    shared: Arc<Shared>,
    store: Arc<dyn LeaseStore>,
    worker: WorkerId,
    stop: CancellationToken,
) {
    let mut last_count = 0;
    let mut last_time = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PROGRESS_INTERVAL) => {}
        }
        let count = shared.records.load(Ordering::Relaxed);
        let now = tokio::time::Instant::now();
        let seconds = now.duration_since(last_time).as_secs_f64().max(0.001);
        let rate = (count - last_count) as f64 / seconds;
        let held = match store.leases_owned_by(&worker).await {
            Ok(leases) => leases.len().to_string(),
            Err(_) => "?".to_owned(),
        };
        eprintln!(
            "shardwise: {rate:.1} records/s, {count} records in all, {held} leases held by {worker}"
        );
        (last_count, last_time) = (count, now);
    }
}

/// Reads `--stream-tag KEY[=VALUE]`.
fn parse_tag(text: &str) -> Result<(String, Option<String>), String> {
    let (key, value) = match text.split_once('=') {
        Some((key, value)) => (key, Some(value.to_owned())),
        None => (text, None),
    };
    if key.is_empty() {
        return Err(format!("{text:?} is not a tag: use KEY or KEY=VALUE"));
    }
    Ok((key.to_owned(), value))
}
