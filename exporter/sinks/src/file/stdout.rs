//! The stdout sink: one record payload per line on standard output.
//!
//! Pipeline position: a transport for the sink driver, for demos and for
//! log collectors that read container output. Line breaks inside a payload
//! become spaces (valid for JSON, where they can only be whitespace), so
//! one record is one line. Must not buffer records across batches.

use std::io::Write;

use crate::core::classify::{Outcome, TransportFailure};
use crate::core::driver::{SendReport, Transport, TransportError};
use crate::core::queue::QueuedRecord;

/// Writes each batch to stdout and flushes it.
#[derive(Debug, Default)]
pub struct StdoutTransport;

pub(crate) fn json_lines(batch: &[QueuedRecord]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(batch.iter().map(|r| r.payload.len() + 1).sum());
    for r in batch {
        buf.extend(
            r.payload
                .iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
        buf.push(b'\n');
    }
    buf
}

impl Transport for StdoutTransport {
    async fn send(&mut self, batch: &[QueuedRecord]) -> SendReport {
        let buf = json_lines(batch);
        // Stdout is a blocking handle; a slow reader must not stall the
        // runtime's worker.
        let result = tokio::task::spawn_blocking(move || {
            let mut out = std::io::stdout().lock();
            out.write_all(&buf).and_then(|()| out.flush())
        })
        .await;
        match result {
            Ok(Ok(())) => SendReport::batch(Outcome::Written),
            _ => SendReport::batch(Outcome::Transport(TransportFailure::LocalIo)),
        }
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        Ok(())
    }

    async fn shutdown(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
}
