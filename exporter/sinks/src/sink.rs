//! The closed registry of sink transports: one variant per sink, so an
//! exhaustive `match` shows every place a new sink must be handled.
//!
//! Pipeline position: the daemon builds one [`SinkTransport`] per
//! configured sink and hands it to a [`SinkDriver`](crate::core::driver::SinkDriver).
//! This module only dispatches; it must not add behaviour.

use crate::core::driver::{SendReport, Transport, TransportError};
use crate::core::queue::QueuedRecord;
use crate::elasticsearch::ElasticsearchTransport;
use crate::file::{FileTransport, StdoutTransport};
use crate::loki::LokiTransport;
use crate::splunk::SplunkHecTransport;
use crate::syslog::SyslogTransport;

/// Every sink transport.
#[derive(Debug)]
pub enum SinkTransport {
    Syslog(SyslogTransport),
    File(FileTransport),
    Stdout(StdoutTransport),
    Elasticsearch(ElasticsearchTransport),
    SplunkHec(SplunkHecTransport),
    Loki(LokiTransport),
}

impl Transport for SinkTransport {
    async fn send(&mut self, batch: &[QueuedRecord]) -> SendReport {
        match self {
            SinkTransport::Syslog(t) => t.send(batch).await,
            SinkTransport::File(t) => t.send(batch).await,
            SinkTransport::Stdout(t) => t.send(batch).await,
            SinkTransport::Elasticsearch(t) => t.send(batch).await,
            SinkTransport::SplunkHec(t) => t.send(batch).await,
            SinkTransport::Loki(t) => t.send(batch).await,
        }
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        match self {
            SinkTransport::Syslog(t) => t.flush().await,
            SinkTransport::File(t) => t.flush().await,
            SinkTransport::Stdout(t) => t.flush().await,
            SinkTransport::Elasticsearch(t) => t.flush().await,
            SinkTransport::SplunkHec(t) => t.flush().await,
            SinkTransport::Loki(t) => t.flush().await,
        }
    }

    async fn shutdown(&mut self) -> Result<(), TransportError> {
        match self {
            SinkTransport::Syslog(t) => t.shutdown().await,
            SinkTransport::File(t) => t.shutdown().await,
            SinkTransport::Stdout(t) => t.shutdown().await,
            SinkTransport::Elasticsearch(t) => t.shutdown().await,
            SinkTransport::SplunkHec(t) => t.shutdown().await,
            SinkTransport::Loki(t) => t.shutdown().await,
        }
    }
}
