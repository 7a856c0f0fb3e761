//! The file transport: appends JSON lines to the active file, rotates it by
//! size or age, gzips rotated files, fsyncs before reporting (by default).
//!
//! Pipeline position: a transport for the sink driver. File IO runs on
//! tokio's blocking pool, one batch at a time. A failed write or fsync is
//! [`TransportFailure::LocalIo`] (retry, degraded), never a drop. Rotation
//! never loses data: a rotated file is renamed first, compressed second,
//! and the uncompressed copy is removed only after the compressed one is
//! fsynced; if compression fails the uncompressed file stays.
//!
//! Must not delete rotated files (retention is the operator's policy).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;

use super::config::{FileConfig, FileSync};
use super::stdout::json_lines;
use crate::core::classify::{Outcome, TransportFailure};
use crate::core::driver::{SendReport, Transport, TransportError};
use crate::core::queue::QueuedRecord;

/// The active file and what rotation needs to know about it.
#[derive(Debug)]
struct Active {
    file: File,
    bytes: u64,
    opened_at: Instant,
}

/// The synchronous half, moved into blocking tasks.
#[derive(Debug)]
struct Writer {
    cfg: FileConfig,
    active: Option<Active>,
    rotations: u64,
}

impl Writer {
    fn open(&mut self) -> io::Result<&mut Active> {
        if self.active.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.cfg.path)?;
            let bytes = file.metadata()?.len();
            self.active = Some(Active {
                file,
                bytes,
                opened_at: Instant::now(),
            });
        }
        self.active
            .as_mut()
            .ok_or_else(|| io::Error::other("file not open"))
    }

    fn due(&self) -> bool {
        self.active.as_ref().is_some_and(|a| {
            a.bytes > 0
                && (a.bytes >= self.cfg.max_file_bytes
                    || self
                        .cfg
                        .max_file_age
                        .is_some_and(|age| a.opened_at.elapsed() >= age))
        })
    }

    fn write_batch(&mut self, buf: &[u8]) -> io::Result<()> {
        // An existing file counts from when we opened it; its size is
        // checked at once, so a restart with a full file rotates first.
        self.open()?;
        if self.due() {
            self.rotate()?;
        }
        let sync = self.cfg.sync == FileSync::EveryBatch;
        let active = self.open()?;
        active.file.write_all(buf)?;
        active.bytes += buf.len() as u64;
        if sync {
            active.file.sync_data()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        match self.active.as_mut() {
            Some(a) => a.file.sync_data(),
            None => Ok(()),
        }
    }

    /// Close the active file and move it aside (compressed when asked).
    fn rotate(&mut self) -> io::Result<()> {
        let Some(active) = self.active.take() else {
            return Ok(());
        };
        active.file.sync_all()?;
        drop(active);
        let rotated = self.rotated_name()?;
        std::fs::rename(&self.cfg.path, &rotated)?;
        sync_dir(&self.cfg.path)?;
        self.rotations += 1;
        if self.cfg.compress_rotated
            && let Err(e) = compress(&rotated)
        {
            // The data is safe in the uncompressed file; keep it.
            tracing::warn!(file = %rotated.display(), error = %e, "file sink: compressing a rotated file failed; kept uncompressed");
        }
        Ok(())
    }

    /// `<stem>-<unix ms>[-n].<ext>` that does not exist yet (also as .gz).
    fn rotated_name(&self) -> io::Result<PathBuf> {
        let path = &self.cfg.path;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        for n in 0..10_000u32 {
            let suffix = if n == 0 {
                String::new()
            } else {
                format!("-{n}")
            };
            let candidate = path.with_file_name(format!("{stem}-{ms}{suffix}{ext}"));
            let gz = gz_name(&candidate);
            if !candidate.exists() && !gz.exists() {
                return Ok(candidate);
            }
        }
        Err(io::Error::other("no free name for a rotated file"))
    }
}

fn gz_name(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".gz");
    PathBuf::from(s)
}

/// Gzip `path` to `path.gz`, fsync it and the directory, then remove
/// `path`. A crash in between leaves both (a duplicate, not a loss).
fn compress(path: &Path) -> io::Result<()> {
    let gz = gz_name(path);
    let tmp = {
        let mut s = gz.as_os_str().to_owned();
        s.push(".tmp");
        PathBuf::from(s)
    };
    let mut input = File::open(path)?;
    let out = File::create(&tmp)?;
    let mut enc = GzEncoder::new(out, Compression::default());
    io::copy(&mut input, &mut enc)?;
    let out = enc.finish()?;
    out.sync_all()?;
    std::fs::rename(&tmp, &gz)?;
    sync_dir(&gz)?;
    std::fs::remove_file(path)?;
    sync_dir(path)
}

fn sync_dir(file_in_dir: &Path) -> io::Result<()> {
    let dir = match file_in_dir.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// The file transport. Build with [`FileConfig::build`].
#[derive(Debug)]
pub struct FileTransport {
    /// `None` while a blocking task holds it, or after that task was
    /// abandoned (send timeout); then a fresh writer reopens the file in
    /// append mode.
    writer: Option<Writer>,
    cfg: FileConfig,
}

impl FileTransport {
    pub(crate) fn new(cfg: FileConfig) -> Self {
        FileTransport { writer: None, cfg }
    }

    /// Run `f` on the writer in the blocking pool.
    async fn blocking<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Writer) -> io::Result<R> + Send + 'static,
    ) -> io::Result<R> {
        let mut writer = self.writer.take().unwrap_or_else(|| Writer {
            cfg: self.cfg.clone(),
            active: None,
            rotations: 0,
        });
        let joined = tokio::task::spawn_blocking(move || {
            let r = f(&mut writer);
            (writer, r)
        })
        .await;
        match joined {
            Ok((writer, r)) => {
                self.writer = Some(writer);
                r
            }
            Err(e) => Err(io::Error::other(e)),
        }
    }
}

impl Transport for FileTransport {
    async fn send(&mut self, batch: &[QueuedRecord]) -> SendReport {
        let buf = json_lines(batch);
        match self.blocking(move |w| w.write_batch(&buf)).await {
            Ok(()) => SendReport::batch(Outcome::Written),
            Err(e) => {
                tracing::warn!(file = %self.cfg.path.display(), error = %e, "file sink write failed");
                // Reopen next time: after a failed write the file offset
                // and the page cache are in doubt.
                if let Some(w) = self.writer.as_mut() {
                    w.active = None;
                }
                SendReport::batch(Outcome::Transport(TransportFailure::LocalIo))
            }
        }
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        self.blocking(Writer::sync)
            .await
            .map_err(|source| TransportError::Io {
                context: "file sink fsync",
                source,
            })
    }

    async fn shutdown(&mut self) -> Result<(), TransportError> {
        let r = self.flush().await;
        self.writer = None;
        r
    }
}
