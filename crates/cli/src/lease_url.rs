//! `--leases URL`: which lease store, chosen by the URL's scheme, and opening it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use shardwise::lease::dynamodb::DynamoDbLeaseStore;
use shardwise::lease::postgres::{PostgresConfig, PostgresLeaseStore};
use shardwise::lease::redis::{RedisConfig, RedisLeaseStore};
use shardwise::lease::{LeaseStore, MemoryLeaseStore, redact_url};

use crate::aws::AwsArgs;
use crate::error::CliError;

/// The schemes `--leases` accepts, for messages.
const SCHEMES: &str =
    "dynamodb://TABLE, postgres://…, postgresql://…, redis://…, rediss://…, memory://";

/// The flags that name an application's leases.
#[derive(Clone, clap::Args)]
pub(crate) struct StoreArgs {
    /// The application name: workers with the same name share the stream's shards. It is the
    /// PostgreSQL namespace, the Redis key prefix, and the DynamoDB table when the URL names
    /// none.
    #[arg(long, value_name = "APP", value_parser = parse_app)]
    pub(crate) app: String,
    /// Where the leases live: dynamodb://TABLE, postgres://USER@HOST/DB (or postgresql://),
    /// redis://HOST:PORT (or rediss://), or memory:// (this process only). A URL with a
    /// password is better given in SHARDWISE_LEASES or --leases-file: `ps` shows the command
    /// line to every user of the machine.
    #[arg(
        long,
        value_name = "URL",
        env = "SHARDWISE_LEASES",
        hide_env_values = true
    )]
    leases: Option<String>,
    /// A file whose first line is the --leases URL.
    #[arg(long, value_name = "FILE")]
    leases_file: Option<PathBuf>,
}

impl fmt::Debug for StoreArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreArgs")
            .field("app", &self.app)
            .field("leases", &self.leases.as_deref().map(redact_url))
            .field("leases_file", &self.leases_file)
            .finish()
    }
}

impl StoreArgs {
    /// The lease store URL, from --leases, SHARDWISE_LEASES or --leases-file (exactly one).
    pub(crate) fn url(&self) -> Result<LeaseUrl, CliError> {
        let text = match (&self.leases, &self.leases_file) {
            (Some(text), None) => text.clone(),
            (None, Some(path)) => {
                let contents = std::fs::read_to_string(path).map_err(|e| {
                    CliError::usage(format!("--leases-file {}: {e}", path.display()))
                })?;
                contents
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            }
            (Some(_), Some(_)) => {
                return Err(CliError::usage(
                    "give the lease store once: --leases (or SHARDWISE_LEASES) or --leases-file",
                ));
            }
            (None, None) => {
                return Err(CliError::usage(
                    "where do the leases live? give --leases URL, SHARDWISE_LEASES or --leases-file",
                ));
            }
        };
        LeaseUrl::parse(&text)
    }

    /// Refuses memory:// for the commands that inspect or change another process's leases.
    pub(crate) fn shared_store(url: &LeaseUrl) -> Result<(), CliError> {
        if url.is_memory() {
            return Err(CliError::usage(
                "memory:// leases live inside one `shardwise consume` process and cannot be \
                 inspected or changed from another; use a shared store",
            ));
        }
        Ok(())
    }
}

fn parse_app(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("the application name must not be empty".into());
    }
    if text.chars().any(char::is_control) {
        return Err("the application name must not contain control characters".into());
    }
    Ok(text.to_owned())
}

/// A lease store named by a URL.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum LeaseUrl {
    /// A DynamoDB table (KCL layout); the table is the application's name when left empty.
    DynamoDb { table: Option<String> },
    /// A PostgreSQL server; the application is the namespace.
    Postgres { url: String },
    /// A Redis server; the application is the key prefix.
    Redis { url: String },
    /// Leases in this process only.
    Memory,
}

impl LeaseUrl {
    /// Reads `--leases`.
    pub(crate) fn parse(text: &str) -> Result<Self, CliError> {
        let Some((scheme, rest)) = text.split_once("://") else {
            // Without a scheme there is no telling a password from a name: never shown.
            return Err(CliError::usage(format!(
                "--leases is not a URL; expected one of {SCHEMES}"
            )));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "dynamodb" => {
                let table = rest.trim_end_matches('/');
                if table.contains('/') || table.contains('?') {
                    return Err(CliError::usage(format!(
                        "--leases {}: a DynamoDB lease URL is dynamodb://TABLE",
                        redact_url(text)
                    )));
                }
                Ok(Self::DynamoDb {
                    table: (!table.is_empty()).then(|| table.to_owned()),
                })
            }
            "postgres" | "postgresql" => Ok(Self::Postgres {
                url: text.to_owned(),
            }),
            "redis" | "rediss" => Ok(Self::Redis {
                url: text.to_owned(),
            }),
            "memory" if rest.trim_end_matches('/').is_empty() => Ok(Self::Memory),
            "memory" => Err(CliError::usage(format!(
                "--leases {}: the in-memory lease store is just memory://",
                redact_url(text)
            ))),
            other => Err(CliError::usage(format!(
                "--leases: unknown scheme {other:?}; expected one of {SCHEMES}"
            ))),
        }
    }

    /// Whether the store lives inside one process (nothing to inspect from outside).
    pub(crate) fn is_memory(&self) -> bool {
        matches!(self, Self::Memory)
    }

    /// Opens the store of application `app`. Nothing is created yet and, for PostgreSQL and
    /// Redis, nothing is contacted: the first operation finds out whether the server is there.
    pub(crate) async fn open(
        &self,
        app: &str,
        aws: &AwsArgs,
    ) -> Result<Arc<dyn LeaseStore>, CliError> {
        let store: Arc<dyn LeaseStore> = match self {
            Self::DynamoDb { table } => {
                let client = aws.dynamodb_client().await?;
                let table = table.as_deref().unwrap_or(app);
                Arc::new(
                    DynamoDbLeaseStore::new(client, table)
                        .map_err(|e| CliError::store("--leases", &e))?,
                )
            }
            Self::Postgres { url } => {
                let config = PostgresConfig::builder(url.as_str(), app)
                    .build()
                    .map_err(|e| CliError::store("--leases", &e))?;
                Arc::new(
                    PostgresLeaseStore::connect(&config)
                        .await
                        .map_err(|e| CliError::store("--leases", &e))?,
                )
            }
            Self::Redis { url } => {
                let config = RedisConfig::builder(url.as_str(), app)
                    .build()
                    .map_err(|e| CliError::store("--leases", &e))?;
                Arc::new(
                    RedisLeaseStore::connect(&config)
                        .await
                        .map_err(|e| CliError::store("--leases", &e))?,
                )
            }
            Self::Memory => Arc::new(MemoryLeaseStore::new()),
        };
        Ok(store)
    }
}

/// Shows the store without any password.
impl fmt::Display for LeaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DynamoDb { table: Some(table) } => write!(f, "dynamodb://{table}"),
            Self::DynamoDb { table: None } => f.write_str("dynamodb://"),
            Self::Postgres { url } | Self::Redis { url } => f.write_str(&redact_url(url)),
            Self::Memory => f.write_str("memory://"),
        }
    }
}

impl fmt::Debug for LeaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Every URL in `text` (a run of non-blank characters around `://`) with its secrets hidden (see
/// [`redact_url`]): for messages that may quote what the user typed, such as clap's.
pub(crate) fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        let is_scheme = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.');
        let start = rest[..found]
            .char_indices()
            .rev()
            .find(|&(_, c)| !is_scheme(c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let stop = |from: usize| {
            rest[from..]
                .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '`'))
                .map_or(rest.len(), |i| from + i)
        };
        // A password may hold a space or a quote: the user part runs to the last `@` before the
        // end of the line or the next URL.
        let after = found + 3;
        let reach = rest[after..]
            .find(['\n'])
            .map_or(rest.len(), |i| after + i)
            .min(rest[after..].find("://").map_or(rest.len(), |i| after + i));
        let end = match rest[after..reach].rfind('@') {
            Some(at) => stop(after + at),
            None => stop(found),
        };
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        let cases: &[(&str, Option<LeaseUrl>)] = &[
            (
                "dynamodb://orders",
                Some(LeaseUrl::DynamoDb {
                    table: Some("orders".into()),
                }),
            ),
            ("dynamodb://", Some(LeaseUrl::DynamoDb { table: None })),
            (
                "DynamoDB://t/",
                Some(LeaseUrl::DynamoDb {
                    table: Some("t".into()),
                }),
            ),
            ("dynamodb://a/b", None),
            (
                "postgres://u@h/db",
                Some(LeaseUrl::Postgres {
                    url: "postgres://u@h/db".into(),
                }),
            ),
            (
                "postgresql://h",
                Some(LeaseUrl::Postgres {
                    url: "postgresql://h".into(),
                }),
            ),
            (
                "redis://127.0.0.1:6379",
                Some(LeaseUrl::Redis {
                    url: "redis://127.0.0.1:6379".into(),
                }),
            ),
            (
                "rediss://h",
                Some(LeaseUrl::Redis {
                    url: "rediss://h".into(),
                }),
            ),
            ("memory://", Some(LeaseUrl::Memory)),
            ("memory://x", None),
            ("mysql://h/db", None),
            ("orders", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(LeaseUrl::parse(text).ok(), *expected, "{text}");
        }
    }

    #[test]
    fn passwords_never_shown() {
        let cases = [
            (
                "error: invalid value 'postgress://u:s3cret@h/db' for '--leases <URL>'",
                "error: invalid value 'postgress://u:***@h/db' for '--leases <URL>'",
            ),
            (
                "unexpected argument \"postgres://u:pa/s3cret@h/db?password=s3cret\" found",
                "unexpected argument \"postgres://u:***@h/db?password=***\" found",
            ),
            (
                "two: redis://:s3cret@h x rediss://s3cret@h",
                "two: redis://:***@h x rediss://***@h",
            ),
            ("no url here", "no url here"),
            (
                "'postgres://u:a b\"c@h/db' refused",
                "'postgres://u:***@h/db' refused",
            ),
            ("dynamodb://orders is fine", "dynamodb://orders is fine"),
        ];
        for (text, shown) in cases {
            assert_eq!(redact_urls_in(text), shown, "{text}");
        }
        let error = match LeaseUrl::parse("mysql://u:s3cret@h") {
            Err(e) => e.to_string(),
            Ok(_) => String::new(),
        };
        assert!(error.contains("unknown scheme"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
    }
}
