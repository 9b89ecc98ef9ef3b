//! SIGINT and SIGTERM: the first starts a graceful shutdown, a second one ends the process at
//! once.

use tokio_util::sync::CancellationToken;

use crate::error::CliError;

/// The exit code after a second signal (128 + SIGINT, as shells report an interrupted command).
const FORCED_EXIT: i32 = 130;

/// Signal listeners, installed before any work starts so no signal is missed.
#[derive(Debug)]
pub(crate) struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts listening for SIGINT and SIGTERM (Ctrl-C elsewhere).
    pub(crate) fn install() -> Result<Self, CliError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind| {
                signal(kind)
                    .map_err(|e| CliError::failure(format!("cannot listen for signals: {e}")))
            };
            Ok(Self {
                interrupt: listen(SignalKind::interrupt())?,
                terminate: listen(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// The name of the next signal received.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }

    /// Cancels `stop` at the first signal; exits the process at the second.
    pub(crate) async fn cancel_on_signal(mut self, stop: CancellationToken) {
        tokio::select! {
            () = stop.cancelled() => {}
            name = self.next() => {
                eprintln!(
                    "shardwise: {name}: shutting down gracefully (checkpointing, releasing \
                     leases); send it again to stop at once"
                );
                stop.cancel();
            }
        }
        let name = self.next().await;
        eprintln!("shardwise: {name} again: stopping at once, without releasing leases");
        std::process::exit(FORCED_EXIT);
    }
}
