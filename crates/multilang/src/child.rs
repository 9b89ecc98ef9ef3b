//! One child process: started from the command line the properties name, fed one JSON line per
//! message on its stdin, read line by line on its stdout; its stderr goes to the logs.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::message::{self, FromChild};

/// The longest line read from a child (stdout or stderr); the rest of a longer line is read as
/// another line. A status or checkpoint message is a few hundred bytes.
const MAX_LINE: usize = 64 * 1024;

/// How to start a child and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildCommand {
    /// The program and its arguments (the KCL's `executableName`, split on spaces).
    pub program: Vec<String>,
    /// Where the child runs (the properties file's folder, for the daemon); a relative program
    /// path is found there too.
    pub working_dir: Option<PathBuf>,
    /// The longest wait for the child's next message in one exchange (`timeoutInSeconds`);
    /// `None`: no limit, as in the KCL.
    pub response_timeout: Option<Duration>,
    /// How long a child may take to exit once its stdin is closed, before it is killed.
    pub exit_timeout: Duration,
}

impl ChildCommand {
    /// A command from `executableName`: split on runs of spaces, as the KCL does.
    pub fn from_executable_name(executable_name: &str) -> Self {
        Self {
            program: executable_name
                .split(' ')
                .filter(|part| !part.is_empty())
                .map(str::to_owned)
                .collect(),
            working_dir: None,
            response_timeout: None,
            exit_timeout: Duration::from_secs(10),
        }
    }
}

/// Why an exchange with a child failed: the child is of no more use.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// The command is empty.
    #[error("the child's command (executableName) is empty")]
    NoCommand,
    /// The process could not be started.
    #[error("cannot start the child {program:?}: {source}")]
    Start {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// Writing to the child failed (it closed its stdin or exited).
    #[error("writing to the child: {0}")]
    Write(std::io::Error),
    /// The child closed its stdout (it exited, most likely) before answering.
    #[error("the child exited before answering {0}")]
    Exited(&'static str),
    /// The child answered for another action than the one it was sent.
    #[error("the child answered for {got:?} while {expected} was waiting for its status")]
    WrongStatus {
        /// The action sent.
        expected: &'static str,
        /// The action the status was for.
        got: String,
    },
    /// The child did not answer in time.
    #[error("the child did not answer {action} within {timeout:?}")]
    Timeout {
        /// The action sent.
        action: &'static str,
        /// The limit.
        timeout: Duration,
    },
}

/// A running child process.
#[derive(Debug)]
pub(crate) struct ChildProcess {
    process: Child,
    stdin: Option<ChildStdin>,
    /// What the child's stdout says, read by a task of its own so that the child never blocks
    /// on a full pipe.
    messages: mpsc::Receiver<FromChild>,
    command: ChildCommand,
}

impl ChildProcess {
    /// Starts the child for `shard`.
    pub(crate) fn start(command: &ChildCommand, shard: &str) -> Result<Self, ChildError> {
        let Some((program, args)) = command.program.split_first() else {
            return Err(ChildError::NoCommand);
        };
        let mut program_path = PathBuf::from(program);
        if let Some(dir) = &command.working_dir
            && program_path.is_relative()
            && (program.contains('/') || dir.join(program).is_file())
        {
            program_path = dir.join(program);
        }
        let mut builder = Command::new(&program_path);
        builder
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // A group of its own: a Ctrl-C meant for the daemon does not reach the child before it
        // was asked to shut down, and killing the child kills whatever it started.
        #[cfg(unix)]
        builder.process_group(0);
        if let Some(dir) = &command.working_dir {
            builder.current_dir(dir);
        }
        let mut process = builder.spawn().map_err(|source| ChildError::Start {
            program: program_path.display().to_string(),
            source,
        })?;
        let (sender, messages) = mpsc::channel(16);
        if let Some(stdout) = process.stdout.take() {
            tokio::spawn(read_messages(stdout, sender, shard.to_owned()));
        }
        if let Some(stderr) = process.stderr.take() {
            tokio::spawn(forward_stderr(stderr, shard.to_owned()));
        }
        debug!(shard, pid = process.id(), "child started");
        Ok(Self {
            stdin: process.stdin.take(),
            process,
            messages,
            command: command.clone(),
        })
    }

    /// Writes one message line, within the response timeout (a child that stopped reading
    /// its stdin blocks the write once the pipe is full).
    pub(crate) async fn send(
        &mut self,
        action: &'static str,
        line: &str,
    ) -> Result<(), ChildError> {
        let stdin = self.stdin.as_mut().ok_or_else(|| {
            ChildError::Write(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "stdin already closed",
            ))
        })?;
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let write = async {
            stdin.write_all(&bytes).await.map_err(ChildError::Write)?;
            stdin.flush().await.map_err(ChildError::Write)
        };
        match self.command.response_timeout {
            Some(timeout) => tokio::time::timeout(timeout, write)
                .await
                .unwrap_or(Err(ChildError::Timeout { action, timeout })),
            None => write.await,
        }
    }

    /// The child's next message of the protocol, within `limit` (else the response timeout).
    pub(crate) async fn next(
        &mut self,
        action: &'static str,
        limit: Option<Duration>,
    ) -> Result<FromChild, ChildError> {
        let next = async {
            match self.messages.recv().await {
                Some(message) => Ok(message),
                None => Err(ChildError::Exited(action)),
            }
        };
        match limit.or(self.command.response_timeout) {
            Some(timeout) => tokio::time::timeout(timeout, next)
                .await
                .unwrap_or(Err(ChildError::Timeout { action, timeout })),
            None => next.await,
        }
    }

    /// Closes the child's stdin and waits for it to exit (its output is still read meanwhile);
    /// kills it when it takes longer than the exit timeout.
    pub(crate) async fn close(mut self, shard: &str) {
        self.stdin = None;
        let limit = self.command.exit_timeout;
        // Drain what the child still writes, so that it can finish.
        let drain = async { while self.messages.recv().await.is_some() {} };
        let exited = tokio::time::timeout(limit, async {
            drain.await;
            self.process.wait().await
        })
        .await;
        match exited {
            Ok(Ok(status)) if status.success() => debug!(shard, "child exited"),
            Ok(Ok(status)) => info!(shard, %status, "child exited"),
            Ok(Err(e)) => warn!(shard, error = %e, "waiting for the child failed"),
            Err(_) => {
                warn!(shard, timeout = ?limit, "child did not exit once its input closed; killing it");
                self.kill().await;
            }
        }
    }

    /// Kills the child, and whatever it started, at once.
    pub(crate) async fn kill(&mut self) {
        kill_group(&self.process);
        let _ = self.process.kill().await;
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // `kill_on_drop` kills the child itself; its process group goes too.
        kill_group(&self.process);
    }
}

/// Kills the child's process group (it leads one of its own), unless the child was reaped.
fn kill_group(process: &Child) {
    #[cfg(unix)]
    if let Some(pid) = process.id().and_then(|id| libc::pid_t::try_from(id).ok()) {
        // SAFETY: `killpg` takes two integers and touches no memory of this process; failure
        // (the group already gone) is only its return value, ignored here. The group is the
        // child's: `id()` is `Some` only while the child has not been reaped, so its pid, and
        // with it the group id, cannot have been reused.
        #[allow(unsafe_code)]
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
    }
    #[cfg(not(unix))]
    let _ = process;
}

/// Reads the child's stdout line by line into messages, until it closes.
async fn read_messages(
    stdout: impl AsyncRead + Unpin,
    messages: mpsc::Sender<FromChild>,
    shard: String,
) {
    let mut lines = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        match read_line(&mut lines, &mut line).await {
            Ok(false) => return,
            Ok(true) => match message::parse(&line) {
                // Read and dropped here, so that a child printing between exchanges never
                // fills its stdout pipe and blocks.
                FromChild::Other => {
                    if !line.iter().all(u8::is_ascii_whitespace) {
                        info!(shard = %shard, line = %String::from_utf8_lossy(&line), "skipping a line of the child's output that is no message");
                    }
                }
                message => {
                    if messages.send(message).await.is_err() {
                        return;
                    }
                }
            },
            Err(e) => {
                debug!(shard = %shard, error = %e, "reading the child's output failed");
                return;
            }
        }
    }
}

/// Logs each line the child writes to stderr, with the shard.
async fn forward_stderr(stderr: impl AsyncRead + Unpin, shard: String) {
    let mut lines = BufReader::new(stderr);
    let mut line = Vec::new();
    while let Ok(true) = read_line(&mut lines, &mut line).await {
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if !text.is_empty() {
            info!(target: "shardwise_multilang::child", shard = %shard, "{text}");
        }
    }
}

/// Reads one line (without its end) into `line`, at most [`MAX_LINE`] bytes of it; `false` at
/// the end of the stream.
async fn read_line(
    reader: &mut (impl AsyncBufReadExt + Unpin),
    line: &mut Vec<u8>,
) -> std::io::Result<bool> {
    line.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(!line.is_empty());
        }
        let room = MAX_LINE - line.len();
        let window = &available[..available.len().min(room)];
        match window.iter().position(|&b| b == b'\n') {
            Some(end) => {
                line.extend_from_slice(&window[..end]);
                reader.consume(end + 1);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(true);
            }
            None => {
                let taken = window.len();
                line.extend_from_slice(window);
                reader.consume(taken);
                if line.len() >= MAX_LINE {
                    return Ok(true);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn lines_are_split_and_bounded() {
        let mut input = Vec::new();
        input.extend_from_slice(b"one\r\ntwo\n\n");
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        input.extend_from_slice(b"\nlast");
        let mut reader = BufReader::new(&input[..]);
        let mut line = Vec::new();
        let mut got = Vec::new();
        while read_line(&mut reader, &mut line).await.unwrap() {
            got.push(line.len());
        }
        assert_eq!(got, [3, 3, 0, MAX_LINE, 10, 4]);
    }
}
