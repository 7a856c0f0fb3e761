//! Configuration of the Loki sink: documented fields, `validate` (pure,
//! every problem at once) and `build`.
//!
//! Pipeline position: the daemon fills a [`LokiConfig`] from a
//! `--sink loki://…` URL or the config file, validates it, then builds the
//! transport. This module must not open sockets.

use super::service::LokiTransport;
use crate::core::driver::TransportError;
use crate::core::http::{HttpClient, HttpClientConfig};

/// A label or structured-metadata entry read from each record: `name` is
/// the Loki name, `path` the dotted field path in the record's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LokiField {
    pub name: String,
    pub path: String,
}

impl LokiField {
    pub fn new(name: impl Into<String>, path: impl Into<String>) -> Self {
        LokiField {
            name: name.into(),
            path: path.into(),
        }
    }
}

/// How a push is written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LokiEncoding {
    /// `application/x-protobuf`: a `logproto.PushRequest` in raw snappy
    /// (the default; what Promtail and Alloy send).
    #[default]
    Protobuf,
    /// `application/json`: `{"streams":[{"stream":{…},"values":[[ns, line,
    /// {metadata}]]}]}`, gzip-compressed unless `gzip` is off. For gateways
    /// and proxies that only pass JSON.
    Json,
}

/// Loki's default `max_label_names_per_series`.
pub const MAX_LABELS: usize = 15;

/// The Loki sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LokiConfig {
    /// Endpoint (`http(s)://host:3100[/prefix]`), TLS, auth (`Bearer` or
    /// `Basic`, usually checked by a gateway), timeouts.
    pub http: HttpClientConfig,
    /// `X-Scope-OrgID` for multi-tenant Loki.
    pub tenant: Option<String>,
    /// Stream labels read from each record. Keep them low-cardinality
    /// (each distinct label set is a stream). Default (ECS paths):
    /// `node` ← `host.name`, `namespace` ← `kubernetes.namespace`,
    /// `verdict` ← `flowscribe.policy.verdict`. A missing value leaves the
    /// label out.
    pub labels: Vec<LokiField>,
    /// Labels with a fixed value on every stream; default `job=flowscribe`
    /// (so a record without the other labels still has one).
    pub static_labels: Vec<(String, String)>,
    /// Structured metadata per entry (high-cardinality values). The event
    /// id is always added as `event_id`. Default: `community_id` ←
    /// `network.community_id`.
    pub structured_metadata: Vec<LokiField>,
    /// Protobuf + snappy (default) or JSON.
    pub encoding: LokiEncoding,
    /// JSON pushes only: compress the body with gzip (`Content-Encoding:
    /// gzip`, default on). Protobuf pushes are always snappy-compressed,
    /// as the format requires.
    pub gzip: bool,
}

impl LokiConfig {
    /// Defaults for everything but the endpoint.
    pub fn new(endpoint: impl Into<String>) -> Self {
        LokiConfig {
            http: HttpClientConfig::new(endpoint),
            tenant: None,
            labels: vec![
                LokiField::new("node", "host.name"),
                LokiField::new("namespace", "kubernetes.namespace"),
                LokiField::new("verdict", "flowscribe.policy.verdict"),
            ],
            static_labels: vec![("job".into(), "flowscribe".into())],
            structured_metadata: vec![LokiField::new("community_id", "network.community_id")],
            encoding: LokiEncoding::Protobuf,
            gzip: true,
        }
    }

    /// Every problem, as `field: problem`.
    pub fn validate(&self) -> Result<(), LokiConfigError> {
        let mut problems = Vec::new();
        if let Err(e) = self.http.validate() {
            problems.extend(e.0);
        }
        let mut names: Vec<&str> = Vec::new();
        for f in &self.labels {
            names.push(&f.name);
            if f.path.is_empty() {
                problems.push(format!("labels.{}: empty path", f.name));
            }
        }
        for (n, v) in &self.static_labels {
            names.push(n);
            if v.is_empty() {
                problems.push(format!("static_labels.{n}: empty value"));
            }
        }
        for n in &names {
            if !is_label_name(n) {
                problems.push(format!(
                    "labels: {n:?} is not a Loki label name ([a-zA-Z_][a-zA-Z0-9_]*, not __*)"
                ));
            }
        }
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != names.len() {
            problems.push("labels: a label name is used twice".into());
        }
        if names.is_empty() {
            problems.push("labels: Loki needs at least one label".into());
        }
        if names.len() > MAX_LABELS {
            problems.push(format!(
                "labels: at most {MAX_LABELS} (Loki's default limit)"
            ));
        }
        for f in &self.structured_metadata {
            if !is_label_name(&f.name) || f.name == "event_id" {
                problems.push(format!(
                    "structured_metadata: {:?} is not a usable name (event_id is added by flowscribe)",
                    f.name
                ));
            }
        }
        if let Some(t) = &self.tenant
            && (t.is_empty() || t.contains(['|', '/']) || t == "." || t == "..")
        {
            problems.push("tenant: not a valid Loki tenant id".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(LokiConfigError(problems))
        }
    }

    /// Validate, read secrets and TLS files and return the transport.
    pub fn build(&self) -> Result<LokiTransport, TransportError> {
        self.validate()
            .map_err(|e| TransportError::InvalidConfig(e.to_string()))?;
        let mut http = self.http.clone();
        if let Some(t) = &self.tenant {
            http.headers.push(("X-Scope-OrgID".into(), t.clone()));
        }
        let client =
            HttpClient::new(&http).map_err(|e| TransportError::InvalidConfig(e.to_string()))?;
        Ok(LokiTransport::new(self, client))
    }
}

/// Prometheus label name rules, minus the reserved `__` prefix.
pub(crate) fn is_label_name(n: &str) -> bool {
    let mut bytes = n.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !n.starts_with("__")
}

/// Every problem found by [`LokiConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid loki sink config: {}", .0.join("; "))]
pub struct LokiConfigError(pub Vec<String>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_problems_are_all_listed() {
        let ok = LokiConfig::new("http://loki:3100");
        assert_eq!(ok.validate(), Ok(()));
        let bad = LokiConfig {
            labels: vec![
                LokiField::new("k8s.namespace", "kubernetes.namespace"),
                LokiField::new("job", "x"),
                LokiField::new("__name__", ""),
            ],
            structured_metadata: vec![LokiField::new("event_id", "x")],
            tenant: Some("a|b".into()),
            ..ok
        };
        // bad name, empty path, reserved name, duplicate job, event_id, tenant.
        assert_eq!(bad.validate().map_err(|e| e.0.len()), Err(6));
        for (n, ok) in [
            ("node", true),
            ("_x1", true),
            ("1x", false),
            ("a-b", false),
            ("", false),
        ] {
            assert_eq!(is_label_name(n), ok, "{n}");
        }
    }
}
