//! Configuration of the Splunk HEC sink: documented fields, `validate`
//! (pure, every problem at once) and `build` (reads the token and TLS
//! files, returns the transport).
//!
//! Pipeline position: the daemon fills a [`SplunkHecConfig`] from a
//! `--sink splunk-hec://…` URL or the config file, validates it, then
//! builds the transport. This module must not open sockets.

use std::time::Duration;

use super::service::SplunkHecTransport;
use crate::core::driver::TransportError;
use crate::core::http::{HttpAuth, HttpClient, HttpClientConfig};

/// Indexer acknowledgement settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HecAckConfig {
    /// Time between polls of `/services/collector/ack` (default 1 s).
    pub poll_interval: Duration,
    /// A batch not acknowledged within this is sent again (duplicates carry
    /// the same event id); default 20 s, below the driver's default 30 s
    /// send timeout (which would otherwise cut the wait short).
    pub timeout: Duration,
}

impl Default for HecAckConfig {
    fn default() -> Self {
        HecAckConfig {
            poll_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(20),
        }
    }
}

/// The Splunk HEC sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplunkHecConfig {
    /// Endpoint (`https://host:8088`), TLS and the token
    /// ([`HttpAuth::Splunk`], required).
    pub http: HttpClientConfig,
    /// The `host` of every event: the node name.
    pub host: String,
    /// Default `flowscribe`.
    pub source: String,
    /// Default `flowscribe:flow`.
    pub sourcetype: String,
    /// Target index; `None` uses the token's default index.
    pub index: Option<String>,
    /// gzip request bodies (default on).
    pub gzip: bool,
    /// `X-Splunk-Request-Channel`; default a random GUID per transport.
    /// Required by HEC when the token has acknowledgement enabled.
    pub channel: Option<String>,
    /// Wait for indexer acknowledgement before reporting a batch
    /// delivered; `None`: a 200 (accepted, not yet indexed) is delivery.
    pub ack: Option<HecAckConfig>,
}

impl SplunkHecConfig {
    /// Defaults for everything but the endpoint, the token and the host.
    pub fn new(endpoint: impl Into<String>, token: HttpAuth, host: impl Into<String>) -> Self {
        let mut http = HttpClientConfig::new(endpoint);
        http.auth = token;
        SplunkHecConfig {
            http,
            host: host.into(),
            source: "flowscribe".into(),
            sourcetype: "flowscribe:flow".into(),
            index: None,
            gzip: true,
            channel: None,
            ack: None,
        }
    }

    /// Every problem, as `field: problem`.
    pub fn validate(&self) -> Result<(), SplunkHecConfigError> {
        let mut problems = Vec::new();
        if let Err(e) = self.http.validate() {
            problems.extend(e.0);
        }
        if !matches!(self.http.auth, HttpAuth::Splunk(_)) {
            problems.push("token: HEC needs a token (Authorization: Splunk)".into());
        }
        for (name, v) in [
            ("host", &self.host),
            ("source", &self.source),
            ("sourcetype", &self.sourcetype),
        ] {
            if v.is_empty() {
                problems.push(format!("{name}: must not be empty"));
            }
        }
        if self.index.as_deref() == Some("") {
            problems.push("index: must not be empty when set".into());
        }
        if let Some(c) = &self.channel
            && !is_guid(c)
        {
            problems.push("channel: must be a GUID (8-4-4-4-12 hex digits)".into());
        }
        if let Some(a) = &self.ack {
            if a.poll_interval.is_zero() {
                problems.push("ack.poll_interval: must be positive".into());
            }
            if a.timeout <= a.poll_interval {
                problems.push("ack.timeout: must be longer than ack.poll_interval".into());
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SplunkHecConfigError(problems))
        }
    }

    /// Validate, read the token and TLS files and return the transport.
    /// Opens no connection.
    pub fn build(&self) -> Result<SplunkHecTransport, TransportError> {
        self.validate()
            .map_err(|e| TransportError::InvalidConfig(e.to_string()))?;
        let client = HttpClient::new(&self.http)
            .map_err(|e| TransportError::InvalidConfig(e.to_string()))?;
        Ok(SplunkHecTransport::new(self, client))
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex.
pub(crate) fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A random version-4 GUID for the request channel. Uniqueness, not
/// secrecy, is what matters: the random keys of std's hasher are enough.
pub(crate) fn random_channel() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut words = [0u64; 2];
    for (i, w) in words.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        *w = h.finish();
    }
    let b = (u128::from(words[0]) << 64) | u128::from(words[1]);
    // Version 4, variant 10.
    let b = (b & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{b:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Every problem found by [`SplunkHecConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid splunk-hec sink config: {}", .0.join("; "))]
pub struct SplunkHecConfigError(pub Vec<String>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::http::SecretSource;

    #[test]
    fn validation_lists_every_problem() {
        let tok = HttpAuth::Splunk(SecretSource::Env("HEC_TOKEN".into()));
        let ok = SplunkHecConfig::new("https://splunk:8088", tok, "node-1");
        assert_eq!(ok.validate(), Ok(()));
        let bad = SplunkHecConfig {
            source: String::new(),
            index: Some(String::new()),
            channel: Some("not-a-guid".into()),
            ack: Some(HecAckConfig {
                poll_interval: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
            }),
            ..SplunkHecConfig::new("https://splunk:8088", HttpAuth::None, "n")
        };
        assert_eq!(bad.validate().map_err(|e| e.0.len()), Err(5));
    }

    #[test]
    fn random_channels_are_distinct_v4_guids() {
        let a = random_channel();
        let b = random_channel();
        assert!(is_guid(&a) && is_guid(&b), "{a} {b}");
        assert_ne!(a, b);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }
}
