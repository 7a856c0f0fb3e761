//! The audit state in a file: the only module of this crate that writes to
//! the filesystem.
//!
//! Every write is atomic and durable: the JSON goes to `<file>.tmp`, which is
//! fsynced, renamed over the file, and the directory is fsynced so the rename
//! itself survives a power loss. A reader therefore sees the old state or the
//! new one, never a torn mix. A leftover `.tmp` from a crash is ignored and
//! overwritten by the next write.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::state::{PersistedState, StateError, StateStore};

/// A [`StateStore`] backed by one JSON file.
#[derive(Debug, Clone)]
pub struct FileStateStore {
    path: PathBuf,
}

impl FileStateStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStateStore { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> StateError {
        StateError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn tmp_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        self.path.with_file_name(name)
    }
}

impl StateStore for FileStateStore {
    fn load(&mut self) -> Result<Option<PersistedState>, StateError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let corrupt = |reason: String| StateError::Corrupt {
            path: self.path.display().to_string(),
            reason,
        };
        let state: PersistedState =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        state.validate().map_err(corrupt)?;
        Ok(Some(state))
    }

    fn store(&mut self, state: &PersistedState) -> Result<(), StateError> {
        let tmp = self.tmp_path();
        let mut bytes =
            serde_json::to_vec_pretty(state).map_err(|e| self.io(std::io::Error::other(e)))?;
        bytes.push(b'\n');
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| self.io(e))?;
        file.write_all(&bytes).map_err(|e| self.io(e))?;
        file.sync_all().map_err(|e| self.io(e))?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io(e))?;
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_then_load_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStateStore::new(dir.path().join("audit-state.json"));
        assert!(store.load().unwrap().is_none());
        let mut s = PersistedState::fresh(&[5; 16]);
        s.run = 2;
        s.reserved_until = 65_536;
        s.clean_next_seq = None;
        store.store(&s).unwrap();
        assert_eq!(store.load().unwrap(), Some(s));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("audit-state.json")]);
    }

    #[test]
    fn a_torn_temp_file_from_a_crash_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let mut store = FileStateStore::new(&path);
        let s = PersistedState::fresh(&[6; 16]);
        store.store(&s).unwrap();
        // A crash during the next write leaves half a temp file behind.
        std::fs::write(dir.path().join("s.json.tmp"), b"{\"version\":1,\"ch").unwrap();
        assert_eq!(store.load().unwrap(), Some(s.clone()));
        store.store(&s).unwrap();
        assert!(!dir.path().join("s.json.tmp").exists());
    }

    #[test]
    fn a_state_file_from_before_checkpoint_runs_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, format!(r#"{{"version":1,"chain":"{}","run":2,"reserved_until":70,"clean_next_seq":null,"written_unix_ms":5,"views":{{"ecs":{{"size":10,"head":"{}","batches":1,"number":3}}}}}}"#, "ab".repeat(16), "A".repeat(43) + "=")).unwrap();
        let s = FileStateStore::new(&path).load().unwrap().unwrap();
        assert_eq!((s.views["ecs"].run, s.views["ecs"].number), (0, 3));
    }

    #[test]
    fn a_corrupt_state_is_an_error_that_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, b"{\"version\":1}").unwrap();
        let err = FileStateStore::new(&path).load().unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StateError::Corrupt { .. }), "{msg}");
        assert!(
            msg.contains("s.json") && msg.contains("missing field"),
            "{msg}"
        );
        std::fs::write(&path, br#"{"version":1,"chain":"xyz","run":1,"reserved_until":0,"clean_next_seq":null,"written_unix_ms":0,"views":{}}"#).unwrap();
        let msg = FileStateStore::new(&path).load().unwrap_err().to_string();
        assert!(msg.contains("not 32 hex digits"), "{msg}");
    }
}
