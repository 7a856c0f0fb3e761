//! Configuration of the Elasticsearch / OpenSearch sink: documented fields,
//! `validate` (pure, every problem at once) and `build` (reads secrets and
//! TLS files, returns the transport).
//!
//! Pipeline position: the daemon fills an [`ElasticsearchConfig`] from a
//! `--sink elasticsearch://…` URL or the config file, validates it, then
//! builds the transport for the sink's driver. This module must not open
//! sockets.

use std::time::Duration;

use super::service::ElasticsearchTransport;
use crate::core::driver::TransportError;
use crate::core::http::{HttpClient, HttpClientConfig};

/// The data stream's type and dataset; the namespace is configurable.
pub const DATA_STREAM_PREFIX: &str = "logs-flowscribe.flow-";

/// The Elasticsearch / OpenSearch sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElasticsearchConfig {
    /// Endpoint (`http(s)://host:port[/prefix]`), TLS, auth (`ApiKey` with
    /// the key's `encoded` value, or `Basic`), timeouts.
    pub http: HttpClientConfig,
    /// The data stream namespace: documents go to
    /// `logs-flowscribe.flow-<namespace>`. Default `default`.
    pub namespace: String,
    /// gzip request bodies (default on; ES decompresses them whatever its
    /// `http.compression` setting says).
    pub gzip: bool,
    /// Ingest pipeline to run (`?pipeline=`); default none (the data
    /// stream's default pipeline still applies).
    pub pipeline: Option<String>,
    /// Send `require_data_stream=true`, so a missing index template makes
    /// ES refuse the documents (404 per item, retried, sink degraded)
    /// instead of creating a plain index. Off by default: OpenSearch
    /// rejects the unknown parameter.
    pub require_data_stream: bool,
}

impl ElasticsearchConfig {
    /// Defaults for everything but the endpoint.
    pub fn new(endpoint: impl Into<String>) -> Self {
        ElasticsearchConfig {
            http: HttpClientConfig::new(endpoint),
            namespace: "default".into(),
            gzip: true,
            pipeline: None,
            require_data_stream: false,
        }
    }

    /// `logs-flowscribe.flow-<namespace>`.
    pub fn data_stream(&self) -> String {
        format!("{DATA_STREAM_PREFIX}{}", self.namespace)
    }

    /// Every problem, as `field: problem`.
    pub fn validate(&self) -> Result<(), ElasticsearchConfigError> {
        let mut problems = Vec::new();
        if let Err(e) = self.http.validate() {
            problems.extend(e.0);
        }
        if let Some(p) = namespace_problem(&self.namespace) {
            problems.push(format!("namespace: {p}"));
        }
        if let Some(p) = &self.pipeline
            && (p.is_empty()
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        {
            problems.push("pipeline: use letters, digits, '-', '_' and '.'".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ElasticsearchConfigError(problems))
        }
    }

    /// Validate, read the secret and TLS files and return the transport.
    /// Opens no connection (the first send does).
    pub fn build(&self) -> Result<ElasticsearchTransport, TransportError> {
        self.validate()
            .map_err(|e| TransportError::InvalidConfig(e.to_string()))?;
        let client = HttpClient::new(&self.http)
            .map_err(|e| TransportError::InvalidConfig(e.to_string()))?;
        Ok(ElasticsearchTransport::new(self, client))
    }

    /// Request timeout of the client; the driver's send timeout should be
    /// longer.
    pub fn request_timeout(&self) -> Duration {
        self.http.request_timeout
    }
}

/// Elasticsearch's data stream naming rules for the namespace part: lower
/// case, no `-` (it separates type, dataset and namespace), none of
/// `\ / * ? " < > | , # :` or space, at most 100 bytes.
fn namespace_problem(ns: &str) -> Option<&'static str> {
    if ns.is_empty() {
        return Some("must not be empty");
    }
    if ns.len() > 100 {
        return Some("at most 100 bytes");
    }
    if ns.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some("must be lower case");
    }
    if ns
        .bytes()
        .any(|b| b"-\\/*?\"<>|,#: ".contains(&b) || b.is_ascii_control())
    {
        return Some(
            "must not contain '-', '\\', '/', '*', '?', '\"', '<', '>', '|', ',', '#', ':' or spaces",
        );
    }
    None
}

/// Every problem found by [`ElasticsearchConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid elasticsearch sink config: {}", .0.join("; "))]
pub struct ElasticsearchConfigError(pub Vec<String>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_problems_are_all_listed() {
        let ok = ElasticsearchConfig::new("http://127.0.0.1:9200");
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.data_stream(), "logs-flowscribe.flow-default");
        for (ns, valid) in [
            ("prod", true),
            ("eu_west.1", true),
            ("Prod", false),
            ("a-b", false),
            ("a b", false),
            ("", false),
        ] {
            let c = ElasticsearchConfig {
                namespace: ns.into(),
                ..ok.clone()
            };
            assert_eq!(c.validate().is_ok(), valid, "{ns:?}");
        }
        let bad = ElasticsearchConfig {
            http: HttpClientConfig::new("es:9200"),
            namespace: "A".into(),
            pipeline: Some("a b".into()),
            ..ok
        };
        assert_eq!(bad.validate().map_err(|e| e.0.len()), Err(3));
    }
}
