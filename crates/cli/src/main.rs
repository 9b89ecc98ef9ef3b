//! `shardwise`: consume an Amazon Kinesis data stream to JSON lines with KCL-style leases,
//! inspect and reset an application's leases, and run the demo.
//!
//! Records go to stdout (or `--output`), everything else to stderr: logs through `tracing`
//! (`RUST_LOG`, default `warn`), progress, and errors. Exit codes: 0 done, 1 failed while
//! running, 2 bad usage or value, 3 stream or lease not found, 4 store or Kinesis unreachable,
//! 5 refused (a held lease without `--force`, deletion not confirmed).

mod aws;
mod consume;
mod demo;
mod error;
mod lease_url;
mod leases;
mod multilang;
mod output;
mod position;
mod reset;
mod signals;

use std::io::IsTerminal;

use clap::{Parser, Subcommand};

use crate::error::{CliError, ExitCode};
use crate::lease_url::redact_urls_in;

#[derive(Debug, Parser)]
#[command(
    name = "shardwise",
    version,
    about = "Consume Amazon Kinesis streams with KCL-style leases; inspect and reset leases",
    after_help = "\
Examples:
  shardwise demo
  shardwise consume --stream orders --app audit --leases dynamodb://audit --from trim-horizon
  shardwise leases --app audit --leases dynamodb://audit --stream orders
  shardwise reset --app audit --leases dynamodb://audit --shard shardId-000000000001 --to latest

AWS settings come from the standard environment and config files (AWS_REGION, AWS_PROFILE,
AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL_DYNAMODB, ...). Logs go to stderr (RUST_LOG, default
warn); records to stdout or --output only.

Exit codes: 0 done; 1 failed while running; 2 bad usage or value; 3 stream or lease not found;
4 lease store or Kinesis unreachable; 5 refused (held lease without --force, no confirmation)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one worker of an application: every user record of the shards it holds, as one JSON
    /// object per line, checkpointed once written.
    Consume(consume::ConsumeArgs),
    /// Show an application's leases: owner, counter, checkpoint, parents, state (and lag).
    Leases(leases::LeasesArgs),
    /// Move one shard's checkpoint (refused while a worker holds its lease, unless --force).
    Reset(reset::ResetArgs),
    /// Delete every lease of an application (asks for confirmation).
    DeleteLeases(reset::DeleteLeasesArgs),
    /// Run KCL record processors written for the MultiLangDaemon (Python, Node, Ruby, .NET)
    /// from its properties file: one child process per shard, no JVM.
    Multilang(multilang::MultiLangArgs),
    /// The demo: an in-process Kinesis and lease store, three workers, a split, a graceful
    /// stop, and the count of records produced and processed. No AWS account needed.
    #[command(after_help = "Example:\n  shardwise demo")]
    Demo,
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version as clap prints them (exit 0); mistakes with any URL in them
        // redacted, since clap quotes what was typed (exit 2).
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprint!("{}", redact_urls_in(&e.render().to_string()));
            return std::process::ExitCode::from(ExitCode::Usage as u8);
        }
    };
    // The MultiLang children's stderr is their log: shown unless RUST_LOG says otherwise.
    init_logs(match cli.command {
        Command::Multilang(_) => "warn,shardwise_multilang::child=info",
        _ => "warn",
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&CliError::failure(format!("cannot start the runtime: {e}"))),
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Consume(args) => consume::run(args).await,
            Command::Leases(args) => leases::run(args).await,
            Command::Reset(args) => reset::reset(args).await,
            Command::DeleteLeases(args) => reset::delete_leases(args).await,
            Command::Multilang(args) => multilang::run(args).await,
            Command::Demo => demo::run().await,
        }
    });
    // Leave behind whatever background work is still winding down (SDK connections, pools).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(error: &CliError) -> std::process::ExitCode {
    // Store and SDK errors may quote a URL: never with its password.
    eprintln!("shardwise: error: {}", redact_urls_in(&error.to_string()));
    let code: ExitCode = error.code();
    std::process::ExitCode::from(code as u8)
}

/// Logs to stderr, filtered by `RUST_LOG` (default: `default`, warnings and errors).
fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Redacting(std::io::stderr()))
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Writes log lines with any URL in them redacted (each line arrives in one write).
struct Redacting<W>(W);

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact_urls_in(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
