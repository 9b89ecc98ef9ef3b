//! AWS settings shared by the commands: the standard environment and config files
//! (`AWS_REGION`, `AWS_ENDPOINT_URL_KINESIS`, `AWS_ENDPOINT_URL_DYNAMODB`, profiles, …), with
//! endpoint and trust-store overrides from the command line.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use base64::Engine;
use tokio::sync::OnceCell;

use crate::error::CliError;

/// How long connecting to an AWS endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3_100);
/// How long one attempt of a call may take until its response starts (a `GetRecords` of 10 MiB
/// included; a `SubscribeToShard` event stream, which lasts minutes, is not cut by it: the
/// timeouts end when the response starts).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a call may take, retries included. (The worker bounds its lease-store calls more
/// tightly still.)
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The command-line flags that change how AWS services are reached.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct AwsArgs {
    /// Kinesis endpoint URL (default: from the AWS environment and config, e.g.
    /// AWS_ENDPOINT_URL_KINESIS).
    #[arg(long, value_name = "URL")]
    pub(crate) kinesis_endpoint: Option<String>,
    /// DynamoDB endpoint URL for dynamodb:// leases (default: from the AWS environment and
    /// config, e.g. AWS_ENDPOINT_URL_DYNAMODB).
    #[arg(long, value_name = "URL")]
    pub(crate) dynamodb_endpoint: Option<String>,
    /// A PEM file of extra certificate authorities to trust for HTTPS (an emulator's test CA),
    /// besides the system's.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca_file: Option<PathBuf>,
    /// The region, when set by other means than the AWS environment (a MultiLang properties
    /// file's `regionName`).
    #[arg(skip)]
    pub(crate) region: Option<String>,
    #[arg(skip)]
    loaded: Arc<OnceCell<SdkConfig>>,
}

impl AwsArgs {
    /// Settings with these endpoints and region, the rest from the AWS environment.
    pub(crate) fn new(
        kinesis_endpoint: Option<String>,
        dynamodb_endpoint: Option<String>,
        region: Option<String>,
    ) -> Self {
        Self {
            kinesis_endpoint,
            dynamodb_endpoint,
            ca_file: None,
            region,
            loaded: Arc::default(),
        }
    }

    /// The AWS configuration, loaded on first use.
    async fn sdk_config(&self) -> Result<&SdkConfig, CliError> {
        self.loaded.get_or_try_init(|| self.load()).await
    }

    async fn load(&self) -> Result<SdkConfig, CliError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        );
        if let Some(region) = &self.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| CliError::usage(format!("--ca-file {}: {e}", path.display())))?;
            check_pem_certificates(&pem)
                .map_err(|e| CliError::usage(format!("--ca-file {}: {e}", path.display())))?;
            let context = TlsContext::builder()
                .with_trust_store(TrustStore::default().with_pem_certificate(pem))
                .build()
                .map_err(|e| CliError::usage(format!("--ca-file {}: {e}", path.display())))?;
            let http = aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .tls_context(context)
                .build_https();
            loader = loader.http_client(http);
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(CliError::usage(
                "no AWS region is configured: set AWS_REGION (or a region in the AWS config file)",
            ));
        }
        Ok(config)
    }

    /// A Kinesis client.
    pub(crate) async fn kinesis_client(&self) -> Result<aws_sdk_kinesis::Client, CliError> {
        let mut config = aws_sdk_kinesis::config::Builder::from(self.sdk_config().await?);
        if let Some(endpoint) = &self.kinesis_endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(aws_sdk_kinesis::Client::from_conf(config.build()))
    }

    /// A DynamoDB client.
    pub(crate) async fn dynamodb_client(&self) -> Result<aws_sdk_dynamodb::Client, CliError> {
        let mut config = aws_sdk_dynamodb::config::Builder::from(self.sdk_config().await?);
        if let Some(endpoint) = &self.dynamodb_endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(aws_sdk_dynamodb::Client::from_conf(config.build()))
    }
}

/// Checks that `pem` holds at least one well-formed certificate and nothing malformed: the TLS
/// layer would otherwise fail on it at the first connection, far from the flag that caused it.
fn check_pem_certificates(pem: &[u8]) -> Result<(), String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = std::str::from_utf8(pem).map_err(|_| "not a PEM file (not text)".to_owned())?;
    let mut rest = text;
    let mut count = 0;
    while let Some(start) = rest.find(BEGIN) {
        let body_and_more = &rest[start + BEGIN.len()..];
        let Some(end) = body_and_more.find(END) else {
            return Err(format!("certificate {} has no END line", count + 1));
        };
        let body: String = body_and_more[..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| format!("certificate {} is not valid base64: {e}", count + 1))?;
        // A certificate is a DER SEQUENCE.
        if der.first() != Some(&0x30) || der.len() < 64 {
            return Err(format!(
                "certificate {} is not a DER certificate",
                count + 1
            ));
        }
        count += 1;
        rest = &body_and_more[end + END.len()..];
    }
    if count == 0 {
        return Err("no certificate in it (expected -----BEGIN CERTIFICATE----- blocks)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_checks() {
        let der = [vec![0x30, 0x82, 0x01, 0x00], vec![7u8; 100]].concat();
        let body = base64::engine::general_purpose::STANDARD.encode(&der);
        let good = format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n");
        assert!(check_pem_certificates(good.as_bytes()).is_ok());
        let two = format!("{good}{good}");
        assert!(check_pem_certificates(two.as_bytes()).is_ok());
        let cases = [
            "".to_owned(),
            "hello".to_owned(),
            "-----BEGIN CERTIFICATE-----\nAAAA".to_owned(),
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----".to_owned(),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----".to_owned(),
            format!("{good}-----BEGIN CERTIFICATE-----\n"),
        ];
        for case in cases {
            assert!(check_pem_certificates(case.as_bytes()).is_err(), "{case}");
        }
    }
}
