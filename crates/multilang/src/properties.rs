//! The MultiLangDaemon's properties file: read as `java.util.Properties` reads it, and mapped
//! onto the consumer's settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use shardwise::kinesis::PollingConfig;
use shardwise::metrics::MetricsLevel;
use shardwise::{ConsumerConfig, InitialPosition, Retrieval};

use crate::child::ChildCommand;

/// A properties file as `java.util.Properties` reads it: `key = value`, `key: value` or
/// `key value` lines, `#` and `!` comments, `\` at the end of a line to continue it, `\t`,
/// `\n`, `\uXXXX` and other escapes, the last of a repeated key winning. Bytes are ISO-8859-1,
/// as `Properties.load(InputStream)` reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// Each key's value and the line it starts on.
    entries: BTreeMap<String, (String, usize)>,
}

/// What is wrong with a properties file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PropertiesError {
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A line is malformed.
    #[error("line {line}: {message}")]
    Syntax {
        /// The line number (from 1).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A property the daemon needs is missing.
    #[error("the property {0} is required")]
    Missing(&'static str),
    /// A property's value is not one the daemon can use.
    #[error("line {line}: {key} = {value:?}: {message}")]
    Invalid {
        /// The property.
        key: String,
        /// Its value.
        value: String,
        /// The line it is on.
        line: usize,
        /// What is expected.
        message: String,
    },
}

impl Properties {
    /// Reads the file at `path`.
    pub fn read(path: &Path) -> Result<Self, PropertiesError> {
        let bytes = std::fs::read(path).map_err(|e| PropertiesError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        // ISO-8859-1: every byte is the character of the same number.
        let text: String = bytes.iter().map(|&b| char::from(b)).collect();
        Self::parse(&text)
    }

    /// Reads properties from text.
    pub fn parse(text: &str) -> Result<Self, PropertiesError> {
        let mut entries = BTreeMap::new();
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        while let Some((number, first)) = lines.next() {
            let trimmed = first.trim_start_matches([' ', '\t', '\x0c']);
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
                continue;
            }
            // A logical line: continued while a line ends in an odd number of backslashes.
            let mut logical = String::new();
            let mut part = trimmed;
            loop {
                let trailing = part.chars().rev().take_while(|&c| c == '\\').count();
                if trailing % 2 == 1 {
                    logical.push_str(&part[..part.len() - 1]);
                    match lines.next() {
                        Some((_, next)) => part = next.trim_start_matches([' ', '\t', '\x0c']),
                        None => break,
                    }
                } else {
                    logical.push_str(part);
                    break;
                }
            }
            let (key, value) = split_key(&logical);
            let key = unescape(key).map_err(|message| PropertiesError::Syntax {
                line: number,
                message,
            })?;
            let value = unescape(value).map_err(|message| PropertiesError::Syntax {
                line: number,
                message,
            })?;
            entries.insert(key, (value, number));
        }
        Ok(Self { entries })
    }

    /// A property's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(|(value, _)| value.as_str())
    }

    /// Every property, in key order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    fn line(&self, key: &str) -> usize {
        self.entries.get(key).map_or(0, |(_, line)| *line)
    }

    /// A property's value, unless missing or blank.
    fn value(&self, key: &str) -> Option<&str> {
        self.get(key).map(str::trim).filter(|v| !v.is_empty())
    }

    fn invalid(&self, key: &str, message: &str) -> PropertiesError {
        PropertiesError::Invalid {
            key: key.to_owned(),
            value: self.get(key).unwrap_or_default().to_owned(),
            line: self.line(key),
            message: message.to_owned(),
        }
    }

    fn number(&self, key: &str) -> Result<Option<u64>, PropertiesError> {
        self.value(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| self.invalid(key, "expected a whole number"))
            })
            .transpose()
    }

    /// A duration in milliseconds, from 1 ms to a day.
    fn millis(&self, key: &str) -> Result<Option<Duration>, PropertiesError> {
        match self.number(key)? {
            Some(ms @ 1..=86_400_000) => Ok(Some(Duration::from_millis(ms))),
            Some(_) => Err(self.invalid(key, "expected 1 to 86400000 (a day) milliseconds")),
            None => Ok(None),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, PropertiesError> {
        self.value(key)
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(self.invalid(key, "expected true or false")),
            })
            .transpose()
    }
}

/// Splits a logical line at the first unescaped `=`, `:` or blank (and the blanks and one
/// separator around it).
fn split_key(line: &str) -> (&str, &str) {
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' | ' ' | '\t' | '\x0c' => {
                let key = &line[..i];
                let rest = line[i..].trim_start_matches([' ', '\t', '\x0c']);
                let rest = if c.is_whitespace() || c == '\x0c' {
                    rest.strip_prefix(['=', ':']).unwrap_or(rest)
                } else {
                    // `c` itself is the separator, and it was not trimmed.
                    &rest[c.len_utf8()..]
                };
                return (key, rest.trim_start_matches([' ', '\t', '\x0c']));
            }
            _ => {}
        }
    }
    (line, "")
}

/// Resolves the escapes of a key or value.
fn unescape(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .ok_or_else(|| format!("malformed \\uXXXX escape: \\u{hex}"))?;
                out.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

/// The daemon's settings, read from its properties: what to run, what to read, where the
/// leases are, and the consumer's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// How each shard's child is started (`executableName`, `timeoutInSeconds`), in the
    /// properties file's folder.
    pub command: ChildCommand,
    /// The stream: `streamArn` when given, else `streamName`.
    pub stream: String,
    /// `applicationName`: the lease table's name (unless `tableName`) and the fan-out
    /// consumer's name.
    pub application_name: String,
    /// `tableName`: the DynamoDB lease table (default: the application name).
    pub table_name: Option<String>,
    /// `shardwise.leases`: a PostgreSQL (`postgres://…`), Redis (`redis://…`) or DynamoDB
    /// (`dynamodb://TABLE`) lease store instead of the KCL's DynamoDB table.
    pub leases: Option<String>,
    /// `workerId` (default: one made from the host and process).
    pub worker_id: Option<String>,
    /// `regionName`.
    pub region: Option<String>,
    /// `kinesisEndpoint`.
    pub kinesis_endpoint: Option<String>,
    /// `dynamoDBEndpoint`.
    pub dynamodb_endpoint: Option<String>,
    /// The consumer's settings: initial position, lease timing, retrieval, metrics level.
    pub consumer: ConsumerConfig,
    /// Properties that were set but that this daemon does not apply, for one warning at start.
    pub not_applied: Vec<String>,
}

/// Properties read and applied (or, for `processingLanguage`, only informative, as in the KCL).
const APPLIED: &[&str] = &[
    "executableName",
    "streamName",
    "streamArn",
    "applicationName",
    "tableName",
    "workerId",
    "regionName",
    "kinesisEndpoint",
    "dynamoDBEndpoint",
    "initialPositionInStream",
    "initialPositionInStreamExtended",
    "failoverTimeMillis",
    "shardSyncIntervalMillis",
    "parentShardPollIntervalMillis",
    "maxLeasesForWorker",
    "maxLeasesToStealAtOneTime",
    "gracefulLeaseHandoffTimeoutMillis",
    "taskBackoffTimeMillis",
    "shutdownGraceMillis",
    "timeoutInSeconds",
    "retrievalMode",
    "consumerName",
    "maxRecords",
    "idleTimeBetweenReadsInMillis",
    "metricsLevel",
    "processingLanguage",
    "shardwise.leases",
];

impl DaemonConfig {
    /// Reads the properties file at `path`; the child runs in its folder.
    pub fn read(path: &Path) -> Result<Self, PropertiesError> {
        let properties = Properties::read(path)?;
        // Absolute: the child runs there, and a relative program path is found there.
        let folder = std::path::absolute(path)
            .map_err(|e| PropertiesError::Read {
                path: path.display().to_string(),
                message: e.to_string(),
            })?
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        Self::from_properties(&properties, &folder)
    }

    /// The settings `properties` give, for a properties file in `folder`.
    pub fn from_properties(
        properties: &Properties,
        folder: &Path,
    ) -> Result<Self, PropertiesError> {
        let p = properties;
        let executable = p
            .value("executableName")
            .ok_or(PropertiesError::Missing("executableName"))?;
        let mut command = ChildCommand::from_executable_name(executable);
        command.working_dir = Some(folder.to_path_buf());
        command.response_timeout = match p.number("timeoutInSeconds")? {
            Some(seconds @ 1..=86_400) => Some(Duration::from_secs(seconds)),
            Some(_) => return Err(p.invalid("timeoutInSeconds", "expected 1 to 86400 seconds")),
            None => None,
        };
        let stream = p
            .value("streamArn")
            .or_else(|| p.value("streamName"))
            .ok_or(PropertiesError::Missing("streamName (or streamArn)"))?
            .to_owned();
        let application_name = p
            .value("applicationName")
            .ok_or(PropertiesError::Missing("applicationName"))?
            .to_owned();

        let mut consumer = ConsumerConfig {
            initial_position: initial_position(p)?,
            ..ConsumerConfig::default()
        };
        if let Some(lease) = p.millis("failoverTimeMillis")? {
            if lease < Duration::from_millis(100) {
                return Err(p.invalid("failoverTimeMillis", "expected at least 100"));
            }
            consumer.lease_duration = lease;
            consumer.take_interval = lease / 2;
        }
        if let Some(sync) = p.millis("shardSyncIntervalMillis")? {
            consumer.shard_sync_interval = sync;
        }
        if let Some(poll) = p.millis("parentShardPollIntervalMillis")? {
            consumer.parent_poll_interval = poll;
        }
        if let Some(max) = p.number("maxLeasesForWorker")? {
            if max == 0 {
                return Err(p.invalid("maxLeasesForWorker", "expected at least 1"));
            }
            consumer.max_leases_per_worker = usize::try_from(max).unwrap_or(usize::MAX);
        }
        if let Some(max) = p.number("maxLeasesToStealAtOneTime")? {
            if max == 0 {
                return Err(p.invalid("maxLeasesToStealAtOneTime", "expected at least 1"));
            }
            consumer.max_leases_to_steal_at_one_time = usize::try_from(max).unwrap_or(usize::MAX);
        }
        if let Some(timeout) = p.millis("gracefulLeaseHandoffTimeoutMillis")? {
            consumer.handoff_timeout = timeout;
        }
        if let Some(backoff) = p.millis("taskBackoffTimeMillis")? {
            consumer.process_retry_backoff = backoff;
        }
        if let Some(grace) = p.millis("shutdownGraceMillis")? {
            consumer.shutdown_timeout = grace;
        }
        consumer.retrieval = retrieval(p)?;
        if let Some(level) = p.value("metricsLevel") {
            consumer.metrics_level = match level.to_ascii_uppercase().as_str() {
                "NONE" => MetricsLevel::None,
                "SUMMARY" => MetricsLevel::Summary,
                "DETAILED" => MetricsLevel::Detailed,
                _ => return Err(p.invalid("metricsLevel", "expected NONE, SUMMARY or DETAILED")),
            };
        }

        for key in [
            "cleanupLeasesUponShardCompletion",
            "callProcessRecordsEvenForEmptyRecordList",
            "validateSequenceNumberBeforeCheckpointing",
        ] {
            p.boolean(key)?;
        }
        let mut not_applied: Vec<String> = p
            .keys()
            .filter(|k| !APPLIED.contains(k) && !is_default_credentials(p, k))
            .filter(|k| !matches!(p.boolean(k), Ok(Some(v)) if kcl_default_bool(k) == Some(v)))
            .map(str::to_owned)
            .collect();
        not_applied.sort();
        Ok(Self {
            command,
            stream,
            application_name,
            table_name: p.value("tableName").map(str::to_owned),
            leases: p.value("shardwise.leases").map(str::to_owned),
            worker_id: p.value("workerId").map(str::to_owned),
            region: p.value("regionName").map(str::to_owned),
            kinesis_endpoint: p.value("kinesisEndpoint").map(str::to_owned),
            dynamodb_endpoint: p.value("dynamoDBEndpoint").map(str::to_owned),
            consumer,
            not_applied,
        })
    }
}

/// Booleans whose KCL default is what this daemon does anyway: naming them changes nothing.
fn kcl_default_bool(key: &str) -> Option<bool> {
    match key {
        // Finished shards' leases are cleaned up; processRecords is never called empty.
        "cleanupLeasesUponShardCompletion" => Some(true),
        "callProcessRecordsEvenForEmptyRecordList" => Some(false),
        // Checkpoints are checked against what was delivered; the KCL does not use this key.
        "validateSequenceNumberBeforeCheckpointing" => Some(true),
        _ => None,
    }
}

/// The credentials this daemon uses are the AWS SDK's default chain: naming that chain applies.
fn is_default_credentials(p: &Properties, key: &str) -> bool {
    key.to_ascii_lowercase()
        .starts_with("awscredentialsprovider")
        && p.value(key).is_some_and(|v| {
            matches!(
                v,
                "DefaultCredentialsProvider" | "DefaultAWSCredentialsProviderChain"
            )
        })
}

fn initial_position(p: &Properties) -> Result<InitialPosition, PropertiesError> {
    if let Some(seconds) = p.number("initialPositionInStreamExtended")? {
        return Ok(InitialPosition::AtTimestamp(
            UNIX_EPOCH + Duration::from_secs(seconds),
        ));
    }
    match p
        .value("initialPositionInStream")
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("TRIM_HORIZON") => Ok(InitialPosition::TrimHorizon),
        Some("LATEST") => Ok(InitialPosition::Latest),
        Some("AT_TIMESTAMP") => Err(p.invalid(
            "initialPositionInStream",
            "AT_TIMESTAMP needs initialPositionInStreamExtended (epoch seconds)",
        )),
        Some(_) => Err(p.invalid(
            "initialPositionInStream",
            "expected TRIM_HORIZON, LATEST or AT_TIMESTAMP",
        )),
    }
}

/// `retrievalMode`: FANOUT, POLLING, or DEFAULT (the KCL's rule: polling when a polling
/// property is set, enhanced fan-out otherwise).
fn retrieval(p: &Properties) -> Result<Retrieval, PropertiesError> {
    let mut polling = PollingConfig::default();
    let mut polling_set = false;
    if let Some(max) = p.number("maxRecords")? {
        if !(1..=10_000).contains(&max) {
            return Err(p.invalid("maxRecords", "expected 1 to 10000"));
        }
        polling.max_records = u32::try_from(max).unwrap_or(10_000);
        polling_set = true;
    }
    if let Some(idle) = p.millis("idleTimeBetweenReadsInMillis")? {
        polling.idle_time_between_reads = idle;
        polling_set = true;
    }
    let fan_out = || Retrieval::FanOut {
        consumer_name: p.value("consumerName").map(str::to_owned),
        config: shardwise::kinesis::FanOutConfig::default(),
    };
    match p
        .value("retrievalMode")
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("POLLING") => Ok(Retrieval::Polling(polling)),
        Some("FANOUT") => Ok(fan_out()),
        None | Some("DEFAULT") if polling_set => Ok(Retrieval::Polling(polling)),
        None | Some("DEFAULT") => Ok(fan_out()),
        Some(_) => Err(p.invalid("retrievalMode", "expected FANOUT, POLLING or DEFAULT")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn java_properties_syntax() {
        let p = Properties::parse(
            "# comment\n  ! another\n\nexecutableName = python3 app.py\nstreamName:orders\n\
             applicationName   audit\nlong = one \\\n    two\nescaped\\ key = a\\tb\\u0041\n\
             repeated = 1\nrepeated = 2\nempty =\nquoted = \"workerId\"\n",
        )
        .unwrap();
        assert_eq!(p.get("executableName"), Some("python3 app.py"));
        assert_eq!(p.get("streamName"), Some("orders"));
        assert_eq!(p.get("applicationName"), Some("audit"));
        assert_eq!(p.get("long"), Some("one two"));
        assert_eq!(p.get("escaped key"), Some("a\tbA"));
        assert_eq!(p.get("repeated"), Some("2"), "the last one wins");
        assert_eq!(p.get("empty"), Some(""));
        assert_eq!(p.get("quoted"), Some("\"workerId\""), "quotes are kept");
        assert_eq!(
            Properties::parse("a = \\u00zz\n").unwrap_err(),
            PropertiesError::Syntax {
                line: 1,
                message: "malformed \\uXXXX escape: \\u00zz".into()
            }
        );
    }

    fn config(text: &str) -> Result<DaemonConfig, PropertiesError> {
        DaemonConfig::from_properties(&Properties::parse(text).unwrap(), Path::new("/apps/kcl"))
    }

    const BASE: &str = "executableName = sample_kclpy_app.py\nstreamName = kclpysample\napplicationName = PythonKCLSample\n";

    #[test]
    fn the_kclpy_sample_properties() {
        let sample = format!(
            "{BASE}streamArn = arn:aws:kinesis:us-east-5:000000000000:stream/kclpysample\n\
             AwsCredentialsProvider = DefaultCredentialsProvider\nprocessingLanguage = python/3.8\n\
             initialPositionInStream = TRIM_HORIZON\nregionName = us-east-1\n"
        );
        let c = config(&sample).unwrap();
        assert_eq!(c.command.program, ["sample_kclpy_app.py"]);
        assert_eq!(
            c.command.working_dir.as_deref(),
            Some(Path::new("/apps/kcl"))
        );
        assert_eq!(c.command.response_timeout, None, "no limit, as in the KCL");
        assert_eq!(
            c.stream, "arn:aws:kinesis:us-east-5:000000000000:stream/kclpysample",
            "the ARN wins"
        );
        assert_eq!(c.application_name, "PythonKCLSample");
        assert_eq!(c.region.as_deref(), Some("us-east-1"));
        assert_eq!(c.consumer.initial_position, InitialPosition::TrimHorizon);
        assert!(
            matches!(c.consumer.retrieval, Retrieval::FanOut { .. }),
            "the KCL's default retrieval is fan-out"
        );
        assert!(c.not_applied.is_empty(), "{:?}", c.not_applied);
    }

    #[test]
    fn settings_map_onto_the_consumer() {
        let c = config(&format!(
            "{BASE}failoverTimeMillis = 3000\nshardSyncIntervalMillis=1000\nmaxRecords = 500\n\
             idleTimeBetweenReadsInMillis = 250\nparentShardPollIntervalMillis = 100\n\
             initialPositionInStreamExtended = 1636609142\ntimeoutInSeconds = 30\n\
             metricsLevel = summary\nworkerId = w1\nkinesisEndpoint = http://127.0.0.1:4568\n\
             shardwise.leases = postgres://127.0.0.1/test\ncleanupLeasesUponShardCompletion = true\n"
        ))
        .unwrap();
        assert_eq!(c.consumer.lease_duration, Duration::from_millis(3000));
        assert_eq!(c.consumer.take_interval, Duration::from_millis(1500));
        assert_eq!(c.consumer.shard_sync_interval, Duration::from_secs(1));
        assert_eq!(c.consumer.parent_poll_interval, Duration::from_millis(100));
        let Retrieval::Polling(polling) = &c.consumer.retrieval else {
            panic!("a polling property chooses polling")
        };
        assert_eq!(polling.max_records, 500);
        assert_eq!(polling.idle_time_between_reads, Duration::from_millis(250));
        assert_eq!(
            c.consumer.initial_position,
            InitialPosition::AtTimestamp(UNIX_EPOCH + Duration::from_secs(1_636_609_142))
        );
        assert_eq!(c.command.response_timeout, Some(Duration::from_secs(30)));
        assert_eq!(c.consumer.metrics_level, MetricsLevel::Summary);
        assert_eq!(c.worker_id.as_deref(), Some("w1"));
        assert_eq!(c.kinesis_endpoint.as_deref(), Some("http://127.0.0.1:4568"));
        assert_eq!(c.leases.as_deref(), Some("postgres://127.0.0.1/test"));
        assert!(c.not_applied.is_empty(), "{:?}", c.not_applied);
    }

    #[test]
    fn what_does_not_apply_is_named() {
        let c = config(&format!(
            "{BASE}callProcessRecordsEvenForEmptyRecordList = true\n\
             cleanupLeasesUponShardCompletion = false\nmaxActiveThreads = 4\n\
             AwsCredentialsProvider = ProfileCredentialsProvider|dev\nmetricsBufferTimeMillis = 10000\n"
        ))
        .unwrap();
        assert_eq!(
            c.not_applied,
            [
                "AwsCredentialsProvider",
                "callProcessRecordsEvenForEmptyRecordList",
                "cleanupLeasesUponShardCompletion",
                "maxActiveThreads",
                "metricsBufferTimeMillis"
            ]
        );
    }

    /// Read through a relative path, the child's folder is still absolute: the child runs
    /// there, and a relative program is found there once.
    #[test]
    fn a_relative_properties_path_gives_an_absolute_folder() {
        let c = DaemonConfig::read(Path::new("tests/app.properties")).unwrap();
        let folder = c.command.working_dir.unwrap();
        assert!(folder.is_absolute(), "{}", folder.display());
        assert!(folder.ends_with("tests"), "{}", folder.display());
        assert_eq!(c.command.program, ["./app.py"]);
    }

    #[test]
    fn bad_files_say_where() {
        assert_eq!(
            config("streamName = s\napplicationName = a\n").unwrap_err(),
            PropertiesError::Missing("executableName")
        );
        assert_eq!(
            config(&format!("{BASE}failoverTimeMillis = ten\n")).unwrap_err(),
            PropertiesError::Invalid {
                key: "failoverTimeMillis".into(),
                value: "ten".into(),
                line: 4,
                message: "expected a whole number".into()
            }
        );
        let bad_position = config(&format!("{BASE}initialPositionInStream = OLDEST\n"));
        assert!(
            bad_position
                .unwrap_err()
                .to_string()
                .starts_with("line 4: initialPositionInStream"),
        );
        assert!(config(&format!("{BASE}retrievalMode = SOMETIMES\n")).is_err());
        assert!(config(&format!("{BASE}timeoutInSeconds = 0\n")).is_err());
        assert!(config(&format!("{BASE}maxRecords = 20000\n")).is_err());
        for out_of_range in [
            "shardSyncIntervalMillis = 0",
            "failoverTimeMillis = 99999999999999",
            "maxLeasesForWorker = 0",
            "parentShardPollIntervalMillis = 0",
        ] {
            assert!(
                config(&format!("{BASE}{out_of_range}\n")).is_err(),
                "{out_of_range}"
            );
        }
        assert!(config(&format!("{BASE}cleanupLeasesUponShardCompletion = maybe\n")).is_err());
    }
}
