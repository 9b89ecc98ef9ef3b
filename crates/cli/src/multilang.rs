//! `shardwise multilang`: the KCL's MultiLangDaemon, without a JVM.

use std::path::PathBuf;
use std::sync::Arc;

use shardwise::kinesis::{KinesisApi, StreamId};
use shardwise::{Consumer, ConsumerError};
use shardwise_multilang::{DaemonConfig, MultiLangFactory};
use tokio_util::sync::CancellationToken;

use crate::aws::AwsArgs;
use crate::error::{CliError, ExitCode};
use crate::lease_url::LeaseUrl;
use crate::signals::Signals;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Example (an amazon-kclpy application, its jars not needed):
  shardwise multilang --properties samples/sample.properties

Reads the KCL MultiLangDaemon's properties file: executableName (run in the file's folder, one
child per shard), streamName or streamArn, applicationName (the DynamoDB lease table, as the KCL
names it, so existing checkpoints carry over), initialPositionInStream, regionName, workerId,
failoverTimeMillis, endpoints, retrievalMode, timeoutInSeconds and the rest; properties that do
not apply are named in a warning. shardwise.leases = postgres://… or redis://… keeps the leases
there instead. The children's stderr is logged with their shard (RUST_LOG, default
shardwise_multilang::child=info). SIGTERM or SIGINT: every child gets shutdownRequested, may
checkpoint, the leases are released, exit 0.")]
pub(crate) struct MultiLangArgs {
    /// The MultiLangDaemon properties file.
    #[arg(long, short = 'p', value_name = "FILE")]
    properties: PathBuf,
}

/// Runs the daemon until a signal (exit 0) or a failure.
pub(crate) async fn run(args: MultiLangArgs) -> Result<(), CliError> {
    let signals = Signals::install()?;
    let config = DaemonConfig::read(&args.properties)
        .map_err(|e| CliError::usage(format!("{}: {e}", args.properties.display())))?;
    if !config.not_applied.is_empty() {
        tracing::warn!(
            properties = %config.not_applied.join(", "),
            "these properties do not apply to shardwise and are not used"
        );
    }
    let aws = AwsArgs::new(
        config.kinesis_endpoint.clone(),
        config.dynamodb_endpoint.clone(),
        config.region.clone(),
    );
    let leases = match &config.leases {
        Some(url) => LeaseUrl::parse(url)?,
        None => LeaseUrl::DynamoDb {
            table: config.table_name.clone(),
        },
    };
    let kinesis: Arc<dyn KinesisApi> = Arc::new(aws.kinesis_client().await?);
    let stream = StreamId::parse(&config.stream);
    if let Err(e) = kinesis.describe_stream_summary(&stream).await {
        return Err(
            if e.kind() == shardwise::kinesis::KinesisErrorKind::ResourceNotFound {
                CliError::new(ExitCode::NotFound, format!("stream {stream} not found"))
            } else {
                CliError::kinesis(&format!("describing stream {stream}"), &e)
            },
        );
    }
    let store = leases.open(&config.application_name, &aws).await?;
    store
        .create_table_if_missing()
        .await
        .map_err(|e| CliError::store(&format!("lease store {leases}"), &e))?;
    let mut builder = Consumer::builder()
        .application_name(config.application_name.as_str())
        .stream(&config.stream)
        .config(config.consumer.clone())
        .kinesis(kinesis)
        .lease_store(store)
        .processor(MultiLangFactory::new(config.command.clone()));
    if let Some(id) = &config.worker_id {
        builder = builder.worker_id(id.as_str());
    }
    let consumer = builder
        .build()
        .map_err(|e| CliError::usage(e.to_string()))?;
    let worker = consumer.worker_id().clone();
    tracing::info!(worker = %worker, stream = %stream, leases = %leases, command = ?config.command.program, "MultiLang daemon running");
    let stop = CancellationToken::new();
    tokio::spawn(signals.cancel_on_signal(stop.clone()));
    consumer.run(stop).await.map_err(|e| match &e {
        ConsumerError::Store(e) => CliError::store(&format!("worker {worker}"), e),
        ConsumerError::Kinesis(e) => CliError::kinesis(&format!("worker {worker}"), e),
        _ => CliError::failure(format!("worker {worker}: {e}")),
    })
}
