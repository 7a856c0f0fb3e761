//! Configuration of the file sink: documented fields, `validate`, `build`.
//!
//! Pipeline position: filled by the daemon's config loader; `build` returns
//! the transport for the sink's driver. Must not write files.

use std::path::PathBuf;
use std::time::Duration;

use super::service::FileTransport;
use crate::core::driver::TransportError;

/// When written records are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileSync {
    /// Before a batch is reported delivered (and so acked in the queue): a
    /// crash cannot lose an acked record. The default.
    EveryBatch,
    /// Only on `flush`, `shutdown` and rotation: faster; a crash can lose
    /// records acked since the last flush.
    OnFlush,
}

/// The file sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// The active file. Rotated files sit next to it as
    /// `<stem>-<unix ms>[-n].<ext>[.gz]`.
    pub path: PathBuf,
    /// Rotate before a write once the active file has this many bytes.
    pub max_file_bytes: u64,
    /// Rotate before a write once the active file is this old (checked at
    /// writes, so an idle sink rotates at its next record). `None`: never.
    pub max_file_age: Option<Duration>,
    /// Gzip rotated files (the uncompressed file is removed only after the
    /// compressed one is fsynced).
    pub compress_rotated: bool,
    pub sync: FileSync,
}

impl FileConfig {
    /// 100 MiB or 1 hour per file, gzip, fsync every batch.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileConfig {
            path: path.into(),
            max_file_bytes: 100 << 20,
            max_file_age: Some(Duration::from_secs(3_600)),
            compress_rotated: true,
            sync: FileSync::EveryBatch,
        }
    }

    /// Every problem at once.
    pub fn validate(&self) -> Result<(), TransportError> {
        let mut problems = Vec::new();
        if self.path.file_name().is_none() {
            problems.push("path: must name a file");
        }
        if self.max_file_bytes == 0 {
            problems.push("max_file_bytes: must be at least 1");
        }
        if self.max_file_age.is_some_and(|d| d.is_zero()) {
            problems.push("max_file_age: must be positive");
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(TransportError::InvalidConfig(problems.join("; ")))
        }
    }

    /// Validate and return the transport; the file is opened by the first
    /// write.
    pub fn build(&self) -> Result<FileTransport, TransportError> {
        self.validate()?;
        Ok(FileTransport::new(self.clone()))
    }
}
