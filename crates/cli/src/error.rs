//! What can go wrong, as a message for a person and an exit code for a script.

use std::fmt;

use shardwise::kinesis::{KinesisError, KinesisErrorKind};
use shardwise::lease::{StoreError, StoreErrorKind};

/// Exit codes, documented in `shardwise --help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitCode {
    /// Something failed while running (output not writable, unexpected service answer).
    Failure = 1,
    /// The command line or a value in it is wrong (clap uses 2 as well).
    Usage = 2,
    /// The stream, lease or table named does not exist.
    NotFound = 3,
    /// The lease store or Kinesis could not be reached.
    Unreachable = 4,
    /// The operation was refused (a held lease without `--force`, no confirmation).
    Refused = 5,
}

/// An error the command reports on stderr before exiting with its code.
#[derive(Debug)]
pub(crate) struct CliError {
    code: ExitCode,
    message: String,
}

impl CliError {
    pub(crate) fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Usage, message)
    }

    pub(crate) fn failure(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Failure, message)
    }

    pub(crate) fn code(&self) -> ExitCode {
        self.code
    }

    /// A lease-store fault, with what was being done when it happened.
    pub(crate) fn store(doing: &str, error: &StoreError) -> Self {
        let code = match error.kind() {
            StoreErrorKind::Unavailable | StoreErrorKind::Throttled => ExitCode::Unreachable,
            StoreErrorKind::Config | StoreErrorKind::InvalidArgument => ExitCode::Usage,
            _ => ExitCode::Failure,
        };
        Self::new(code, format!("{doing}: {}", with_causes(error)))
    }

    /// A Kinesis fault, with what was being done when it happened.
    pub(crate) fn kinesis(doing: &str, error: &KinesisError) -> Self {
        let code = match error.kind() {
            KinesisErrorKind::ResourceNotFound => ExitCode::NotFound,
            KinesisErrorKind::Unavailable | KinesisErrorKind::Throttled => ExitCode::Unreachable,
            KinesisErrorKind::InvalidArgument | KinesisErrorKind::AccessDenied => ExitCode::Usage,
            _ => ExitCode::Failure,
        };
        let text = with_causes(error);
        Self::new(code, format!("{doing}: {}", strip_debug_dump(&text)))
    }
}

/// The SDK's error context ends with a `Debug` dump of the whole error
/// (`… (DispatchFailure(DispatchFailure { … }))`): useful in a log, noise in a message.
fn strip_debug_dump(text: &str) -> &str {
    let mut search = 0;
    while let Some(found) = text[search..].find(" (") {
        let start = search + found;
        let rest = &text[start + 2..];
        let name_len = rest
            .char_indices()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
            .count();
        let is_dump = rest.starts_with(|c: char| c.is_ascii_uppercase())
            && matches!(rest[name_len..].chars().next(), Some('(' | '{' | ' '))
            && rest[name_len..].trim_start().starts_with(['(', '{'])
            && text.ends_with(')');
        if is_dump {
            return &text[..start];
        }
        search = start + 2;
    }
    text
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The error and its causes on one line, skipping causes whose text the previous one already
/// holds (SDK errors often repeat themselves).
pub(crate) fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !line.is_empty() && !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_dumps_are_cut() {
        let cases = [
            (
                "Kinesis X failed: dispatch failure: io error (DispatchFailure(DispatchFailure { source: 1 }))",
                "Kinesis X failed: dispatch failure: io error",
            ),
            (
                "service error (ResourceNotFoundException { message: None })",
                "service error",
            ),
            (
                "stream s (in us-east-1) not found",
                "stream s (in us-east-1) not found",
            ),
            ("plain", "plain"),
        ];
        for (text, expected) in cases {
            assert_eq!(strip_debug_dump(text), expected, "{text}");
        }
    }
}
