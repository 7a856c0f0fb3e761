//! The files of one queue directory: segment files of frames, the ack log,
//! and recovery. Synchronous; the async queue calls it under its lock and
//! runs the slow part (fsync) on the blocking pool.
//!
//! ```text
//! <dir>/00000000000000000001.seg   frames, named by the first seq written
//! <dir>/00000000000000004097.seg
//! <dir>/acks.log                   frames whose payload is a done range
//! ```
//!
//! Filesystem steps and why each crash point is safe:
//! * A segment is created, then the directory is fsynced before any record
//!   in it is acknowledged (so the file survives power loss).
//! * Records are appended and fsynced before the push is acknowledged; a
//!   crash mid-append leaves a torn tail that recovery truncates.
//! * Done ranges are appended to the ack log without fsync: losing one only
//!   redelivers records (duplicates carry their event id), never loses any.
//! * Before segments are deleted the ack log is rewritten to a temp file,
//!   fsynced and renamed over the old one, and the directory fsynced; only
//!   then are the segments unlinked. A crash in between leaves segments
//!   whose records the log already marks done: they are skipped and deleted
//!   on the next pass (the Vector PR #25570 class of bug cannot happen,
//!   because no state points at a file by name).
//!
//! This module must not wait on async primitives or decide policy.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::done::DoneSet;
use super::frame::{self, ScanItem, Scanner};

const ACK_LOG: &str = "acks.log";
const ACK_LOG_TMP: &str = "acks.log.tmp";
const SEGMENT_SUFFIX: &str = ".seg";
/// Rewrite the ack log when it grows past this.
const ACK_LOG_COMPACT_BYTES: u64 = 1024 * 1024;

/// What recovery found when the queue directory was opened. Everything that
/// could not be recovered is counted here; nothing blocks start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files read.
    pub segments_scanned: u64,
    /// Bytes read from segment files.
    pub bytes_scanned: u64,
    /// Valid records that still need delivery.
    pub records_recovered: u64,
    /// Records above the done watermark whose frames were corrupt (gaps in
    /// the sequence numbers between valid frames).
    pub records_lost_corrupt: u64,
    /// Bytes skipped while resynchronising past corrupt frames.
    pub corrupt_bytes: u64,
    /// Bytes truncated from the end of the last segment (a write cut short
    /// by a crash, or a corrupt last frame: the two look the same).
    pub torn_tail_bytes: u64,
    /// Lower bound on the records in the torn tail: 1 when any bytes were
    /// truncated. A torn tail holds at most the push that was being written;
    /// in disk mode that push was never acknowledged.
    pub records_lost_torn_tail: u64,
    /// Segment files that could not be read (I/O error), renamed to
    /// `*.unreadable` and kept for inspection; their records show up as
    /// `records_lost_corrupt` when later segments continue the sequence.
    pub unreadable_segments: u64,
    /// Corrupt bytes in the ack log (only causes redelivery).
    pub ack_log_corrupt_bytes: u64,
    /// Wall time recovery took.
    pub duration: Duration,
}

#[derive(Debug)]
pub(crate) struct SegmentMeta {
    pub first_seq: u64,
    pub path: PathBuf,
    /// Bytes of complete frames in the file.
    pub len: u64,
}

/// A record read back from a segment.
#[derive(Debug)]
pub(crate) struct DiskRecord {
    pub seq: u64,
    pub event_id: String,
    pub payload: Bytes,
}

#[derive(Debug)]
struct Cursor {
    seg_first: u64,
    /// File offset of `buf[0]`.
    file_offset: u64,
    buf: Vec<u8>,
    pos: usize,
    last_seq: Option<u64>,
}

/// Files to fsync to make everything written so far durable.
#[derive(Debug, Default)]
pub(crate) struct SyncWork {
    pub files: Vec<Arc<File>>,
    pub dir: Option<PathBuf>,
}

impl SyncWork {
    pub fn run(&self) -> io::Result<u64> {
        let mut n = 0;
        for f in &self.files {
            f.sync_data()?;
            n += 1;
        }
        if let Some(dir) = &self.dir {
            File::open(dir)?.sync_all()?;
            n += 1;
        }
        Ok(n)
    }
}

/// What [`Storage::open`] hands the queue besides the storage itself.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    pub done: DoneSet,
    pub queued_records: u64,
    pub queued_bytes: u64,
    /// Highest seq seen anywhere (segments, ack log, segment names).
    pub max_seq: u64,
    pub report: RecoveryReport,
}

#[derive(Debug)]
pub(crate) struct Storage {
    dir: PathBuf,
    segments: Vec<SegmentMeta>,
    /// The file appends go to: the last segment, when `Some`.
    writer: Option<Arc<File>>,
    pending_sync: Vec<Arc<File>>,
    dir_sync_pending: bool,
    ack_log: File,
    ack_log_len: u64,
    ack_seq: u64,
    cursor: Option<Cursor>,
    /// Segment and ack-log bytes written by this process.
    pub bytes_written_total: u64,
    pub segments_deleted_total: u64,
    pub unreadable_segments_total: u64,
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn read_range(path: &Path, from: u64, to: u64) -> io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let len = usize::try_from(to.saturating_sub(from))
        .map_err(|_| io::Error::other("segment larger than memory"))?;
    let mut buf = vec![0u8; len];
    // A file shorter than expected (truncated behind our back) is read as
    // far as it goes; the scanner treats the rest as missing.
    let mut filled = 0;
    while filled < len {
        match f.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

fn done_entry(first: u64, last: u64) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&first.to_le_bytes());
    p[8..].copy_from_slice(&last.to_le_bytes());
    p
}

impl Storage {
    /// Open (creating if needed) a queue directory and recover its content.
    ///
    /// Bounded work: one sequential read of every segment file (the queue's
    /// `max_bytes` plus at most one segment), one scan per byte with the
    /// resynchronisation cost described in [`frame`], and one rewrite of
    /// the ack log. No step waits for anything but the disk, and no record
    /// or file can make it loop.
    pub fn open(dir: &Path) -> io::Result<(Storage, Recovered)> {
        let started = Instant::now();
        fs::create_dir_all(dir)?;
        let mut rec = Recovered::default();

        // The ack log first: it says which records are done.
        let _ = fs::remove_file(dir.join(ACK_LOG_TMP));
        let ack_path = dir.join(ACK_LOG);
        let ack_bytes = match fs::read(&ack_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        for item in Scanner::new(&ack_bytes, None) {
            match item {
                ScanItem::Frame(f) if f.payload.len() == 16 => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&f.payload[..8]);
                    let first = u64::from_le_bytes(a);
                    a.copy_from_slice(&f.payload[8..]);
                    let last = u64::from_le_bytes(a);
                    rec.done.insert(first, last);
                    rec.max_seq = rec.max_seq.max(last);
                }
                ScanItem::Frame(f) => rec.report.ack_log_corrupt_bytes += f.len as u64,
                ScanItem::Garbage { len, .. } => rec.report.ack_log_corrupt_bytes += len as u64,
            }
        }

        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(first) = entry.file_name().to_str().and_then(parse_segment_name) {
                names.push((first, entry.path()));
            }
        }
        names.sort();

        let mut segments = Vec::new();
        let mut expected = rec.done.watermark() + 1;
        let mut last_seq: Option<u64> = None;
        let count = names.len();
        for (i, (first_seq, path)) in names.into_iter().enumerate() {
            rec.max_seq = rec.max_seq.max(first_seq.saturating_sub(1));
            let is_last = i + 1 == count;
            let buf = match fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "queue segment unreadable; keeping it aside");
                    rec.report.unreadable_segments += 1;
                    let mut aside = path.clone().into_os_string();
                    aside.push(".unreadable");
                    let _ = fs::rename(&path, aside);
                    continue;
                }
            };
            rec.report.segments_scanned += 1;
            rec.report.bytes_scanned += buf.len() as u64;
            let mut valid_end = 0usize;
            let mut frames_in_segment = 0u64;
            let mut scanner = Scanner::new(&buf, last_seq);
            for item in scanner.by_ref() {
                match item {
                    ScanItem::Frame(f) => {
                        valid_end = f.offset + f.len;
                        let Some((id, record)) = frame::decode_record(f.payload) else {
                            rec.report.corrupt_bytes += f.len as u64;
                            continue;
                        };
                        frames_in_segment += 1;
                        if f.seq > expected {
                            rec.report.records_lost_corrupt +=
                                rec.done.count_undone(expected, f.seq - 1);
                        }
                        expected = expected.max(f.seq + 1);
                        rec.max_seq = rec.max_seq.max(f.seq);
                        if !rec.done.contains(f.seq) {
                            rec.queued_records += 1;
                            rec.queued_bytes += (id.len() + record.len()) as u64;
                        }
                    }
                    ScanItem::Garbage { len, trailing, .. } => {
                        if !(trailing && is_last) {
                            rec.report.corrupt_bytes += len as u64;
                        }
                    }
                }
            }
            last_seq = scanner.last_seq();
            if is_last && valid_end < buf.len() {
                // Torn tail: cut it off so the file ends on a frame boundary.
                rec.report.torn_tail_bytes = (buf.len() - valid_end) as u64;
                rec.report.records_lost_torn_tail = 1;
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(valid_end as u64)?;
                f.sync_all()?;
            }
            if is_last && frames_in_segment == 0 {
                // Nothing valid left (e.g. created just before a crash):
                // remove it so the next segment can take its name.
                fs::remove_file(&path)?;
                continue;
            }
            segments.push(SegmentMeta {
                first_seq,
                path,
                len: if is_last {
                    valid_end as u64
                } else {
                    buf.len() as u64
                },
            });
        }
        rec.report.records_recovered = rec.queued_records;

        let ack_log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&ack_path)?;
        let mut storage = Storage {
            dir: dir.to_path_buf(),
            segments,
            writer: None,
            pending_sync: Vec::new(),
            dir_sync_pending: false,
            ack_log,
            ack_log_len: 0,
            ack_seq: 0,
            cursor: None,
            bytes_written_total: 0,
            segments_deleted_total: 0,
            unreadable_segments_total: rec.report.unreadable_segments,
        };
        // Start with a compact log: drops its torn tail and keeps it small.
        storage.rewrite_ack_log(&rec.done)?;
        rec.report.duration = started.elapsed();
        Ok((storage, rec))
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Bytes of all segment files.
    pub fn segment_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Append encoded frames whose first seq is `first_seq`. Rolls to a new
    /// segment first when the current one reached `segment_max_bytes`. On a
    /// write error the segment is cut back to where it was, so no partial
    /// frame stays behind.
    pub fn append(
        &mut self,
        first_seq: u64,
        frames: &[u8],
        segment_max_bytes: u64,
    ) -> io::Result<()> {
        let roll = match (&self.writer, self.segments.last()) {
            (Some(_), Some(last)) => last.len >= segment_max_bytes,
            _ => true,
        };
        if roll {
            if let Some(old) = self.writer.take() {
                // Records in the old file still need their fsync.
                self.pending_sync.push(old);
            }
            let path = self.dir.join(segment_name(first_seq));
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)?;
            self.writer = Some(Arc::new(file));
            self.dir_sync_pending = true;
            self.segments.push(SegmentMeta {
                first_seq,
                path,
                len: 0,
            });
        }
        let (Some(writer), Some(meta)) = (&self.writer, self.segments.last_mut()) else {
            return Err(io::Error::other("queue segment writer missing"));
        };
        if let Err(e) = (&**writer).write_all(frames) {
            // Leave no half frame: later appends must start on a boundary.
            writer.set_len(meta.len)?;
            return Err(e);
        }
        meta.len += frames.len() as u64;
        self.bytes_written_total += frames.len() as u64;
        Ok(())
    }

    /// Everything that must be fsynced for all appends so far to be durable.
    pub fn take_sync_work(&mut self) -> SyncWork {
        let mut files = std::mem::take(&mut self.pending_sync);
        files.extend(self.writer.clone());
        let dir = std::mem::take(&mut self.dir_sync_pending).then(|| self.dir.clone());
        SyncWork { files, dir }
    }

    /// Append a done range to the ack log (no fsync: see the module docs).
    pub fn log_done(&mut self, first: u64, last: u64) -> io::Result<()> {
        let mut buf = Vec::with_capacity(frame::HEADER_LEN + 16);
        self.ack_seq += 1;
        frame::encode_raw(&mut buf, self.ack_seq, &done_entry(first, last));
        self.ack_log.write_all(&buf)?;
        self.ack_log_len += buf.len() as u64;
        self.bytes_written_total += buf.len() as u64;
        Ok(())
    }

    pub fn sync_ack_log(&self) -> io::Result<()> {
        self.ack_log.sync_data()
    }

    fn rewrite_ack_log(&mut self, done: &DoneSet) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut seq = 0;
        let mut entry = |buf: &mut Vec<u8>, first, last| {
            seq += 1;
            frame::encode_raw(buf, seq, &done_entry(first, last));
        };
        if done.watermark() > 0 {
            entry(&mut buf, 1, done.watermark());
        }
        for (s, e) in done.ranges() {
            entry(&mut buf, s, e);
        }
        let tmp = self.dir.join(ACK_LOG_TMP);
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join(ACK_LOG))?;
        sync_dir(&self.dir)?;
        self.ack_log = OpenOptions::new()
            .append(true)
            .open(self.dir.join(ACK_LOG))?;
        self.ack_log_len = buf.len() as u64;
        self.ack_seq = seq;
        self.bytes_written_total += buf.len() as u64;
        Ok(())
    }

    /// Delete segments whose records are all done (`next_seq` is the seq
    /// the next push gets), rewriting the ack log first; also compacts a
    /// large ack log. Returns how many segments were deleted.
    pub fn collect_garbage(&mut self, done: &DoneSet, next_seq: u64) -> io::Result<u64> {
        let watermark = done.watermark();
        let n = self.segments.len();
        let mut deletable = 0;
        for i in 0..n {
            let bound = match self.segments.get(i + 1) {
                Some(next) => next.first_seq.saturating_sub(1),
                // The last segment: only when nobody appends to it.
                None if self.writer.is_none() => next_seq.saturating_sub(1),
                None => break,
            };
            if bound > watermark {
                break;
            }
            deletable += 1;
        }
        if deletable == 0 && self.ack_log_len < ACK_LOG_COMPACT_BYTES {
            return Ok(0);
        }
        self.rewrite_ack_log(done)?;
        for meta in self.segments.drain(..deletable) {
            fs::remove_file(&meta.path)?;
        }
        self.segments_deleted_total += deletable as u64;
        Ok(deletable as u64)
    }

    /// The next valid record with `min_seq <= seq <= max_seq`, in seq
    /// order, or `None` when none is on disk yet. Corrupt frames are
    /// skipped (the caller sees the gap in the sequence numbers).
    pub fn read_next(&mut self, min_seq: u64, max_seq: u64) -> Option<DiskRecord> {
        // Records served from memory do not move the cursor; when it fell
        // behind a whole segment (or its segment was deleted), seek again
        // instead of scanning forward through files it does not need.
        if let Some(cur) = &self.cursor {
            let gone = !self.segments.iter().any(|s| s.first_seq == cur.seg_first);
            let behind = self
                .segments
                .iter()
                .any(|s| s.first_seq > cur.seg_first && s.first_seq <= min_seq);
            if gone || behind {
                self.cursor = None;
            }
        }
        loop {
            if self.cursor.is_none() {
                let idx = self
                    .segments
                    .iter()
                    .rposition(|s| s.first_seq <= min_seq)
                    .unwrap_or(0);
                let seg_first = self.segments.get(idx)?.first_seq;
                self.load(seg_first, None)?;
            }
            let cur = self.cursor.as_mut()?;
            let item = Scanner::new(&cur.buf[cur.pos..], cur.last_seq).next();
            match item {
                Some(ScanItem::Frame(f)) => {
                    if f.seq > max_seq {
                        return None;
                    }
                    cur.pos += f.len;
                    cur.last_seq = Some(f.seq);
                    if f.seq < min_seq {
                        continue;
                    }
                    let Some((id, record)) = frame::decode_record(f.payload) else {
                        continue;
                    };
                    return Some(DiskRecord {
                        seq: f.seq,
                        event_id: id.to_owned(),
                        payload: Bytes::copy_from_slice(record),
                    });
                }
                Some(ScanItem::Garbage {
                    len,
                    trailing: false,
                    ..
                }) => cur.pos += len,
                Some(ScanItem::Garbage { trailing: true, .. }) | None => {
                    let loaded_end = cur.file_offset + cur.buf.len() as u64;
                    let resume = cur.file_offset + cur.pos as u64;
                    let seg_first = cur.seg_first;
                    let last_seq = cur.last_seq;
                    let grown = self
                        .segments
                        .iter()
                        .any(|s| s.first_seq == seg_first && s.len > loaded_end);
                    if grown {
                        self.load(seg_first, Some((resume, last_seq)))?;
                        continue;
                    }
                    let next = self
                        .segments
                        .iter()
                        .find(|s| s.first_seq > seg_first)?
                        .first_seq;
                    self.load(next, Some((0, last_seq)))?;
                }
            }
        }
    }

    /// Load a segment (from `from.0`, carrying the last seq seen) into the
    /// cursor. An unreadable segment is skipped: its records appear as a
    /// sequence gap.
    fn load(&mut self, seg_first: u64, from: Option<(u64, Option<u64>)>) -> Option<()> {
        let (mut offset, last_seq) = from.unwrap_or((0, None));
        let mut first = seg_first;
        loop {
            let meta = self.segments.iter().find(|s| s.first_seq == first)?;
            match read_range(&meta.path, offset.min(meta.len), meta.len) {
                Ok(buf) => {
                    self.cursor = Some(Cursor {
                        seg_first: first,
                        file_offset: offset.min(meta.len),
                        buf,
                        pos: 0,
                        last_seq,
                    });
                    return Some(());
                }
                Err(e) => {
                    tracing::warn!(path = %meta.path.display(), error = %e, "queue segment unreadable; skipping it");
                    self.unreadable_segments_total += 1;
                    offset = 0;
                    first = self
                        .segments
                        .iter()
                        .find(|s| s.first_seq > first)?
                        .first_seq;
                }
            }
        }
    }
}
